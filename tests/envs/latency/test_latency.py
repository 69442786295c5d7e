"""Tests for envs.latency: spec parsing, fixed/profile/measured models, profile files."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.latency import (
    ALLOWED_FORMS,
    EXTRA_STAGE,
    FixedLatency,
    LatencyModel,
    LatencyProfile,
    LatencySpecError,
    MeasuredLatency,
    ProfileError,
    ProfileLatency,
    ShiftedLatency,
    load_profile,
    parse_latency,
    save_profile,
    split_extra,
    with_extra,
)

from reflexdrive.common.validation import ConfigError

STAGES = ("perception", "tracking", "planning", "control")


def make_profile(rows: int = 8) -> LatencyProfile:
    """Stage j of row i is (i + 1) * 10**-(j + 2) s, so a row is recognisable from any stage."""
    stages = {name: tuple((i + 1) * 10.0 ** -(j + 2) for i in range(rows))
              for j, name in enumerate(STAGES)}
    return LatencyProfile(stack="staged", device="cpu: test", batch_size=1, stages=stages,
                          created="2026-11-23T12:00:00Z", meta={"note": "test", "n": 1})


def profile_document(**changes) -> dict:
    doc = {"format": "reflexdrive.latency-profile", "version": 1, "stack": "staged",
           "device": "cpu: test", "batch_size": 1, "created": "2026-11-23T12:00:00Z",
           "meta": {}, "stages": {"perception": [0.01, 0.02, 0.03, 0.04],
                                  "planning": [0.001, 0.002, 0.003, 0.004]}}
    doc.update(changes)
    return doc


def write_json(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("spec, expected", [
    ("fixed:0.03", {"total": 0.03}),
    ("fixed:0", {"total": 0.0}),
    ("  fixed: 1e-3 ", {"total": 0.001}),
    ("fixed:perception=0.01,tracking=0.002,planning=0.005,control=0.001",
     {"perception": 0.01, "tracking": 0.002, "planning": 0.005, "control": 0.001}),
    ("fixed: perception = 0.01 , planning=0", {"perception": 0.01, "planning": 0.0}),
    ("fixed:total=0.5", {"total": 0.5}),
])
def test_fixed_specs_parse_and_return_constants(spec, expected):
    model = parse_latency(spec)
    assert isinstance(model, FixedLatency)
    assert isinstance(model, LatencyModel)
    assert model.spec == spec
    assert model.deterministic is True
    model.reset(123)
    model.mark_observation_returned()
    for _ in range(3):
        sample = model.sample()
        assert sample == expected
        assert list(sample) == list(expected)  # stage order kept
    assert model.sample({"other": 1.0}) == expected  # reported values are ignored
    model.sample()["perception"] = 99.0  # callers get a copy
    assert model.sample() == expected


def test_measured_spec_parses():
    model = parse_latency("measured")
    assert isinstance(model, MeasuredLatency)
    assert model.spec == "measured"
    assert model.deterministic is False
    assert isinstance(model, LatencyModel)


def test_profile_spec_resolves_relative_path_against_base_dir(tmp_path, monkeypatch):
    save_profile(make_profile(), tmp_path / "p.json")
    model = parse_latency("profile:p.json", base_dir=tmp_path)
    assert isinstance(model, ProfileLatency)
    assert model.spec == "profile:p.json"
    assert model.deterministic is True
    assert model.path == tmp_path / "p.json"
    assert set(model.sample()) == set(STAGES)

    monkeypatch.chdir(tmp_path)  # without base_dir: the current directory
    assert parse_latency("profile:p.json").path == tmp_path / "p.json"
    absolute = parse_latency(f"profile:{tmp_path / 'p.json'}", base_dir="/nonexistent")
    assert absolute.path == tmp_path / "p.json"


def test_default_clock_config_spec_parses():
    assert parse_latency(ClockConfig().latency).sample() == {"total": 0.0}


@pytest.mark.parametrize("spec, problem", [
    ("", "empty"),
    ("   ", "empty"),
    ("fixed", "needs"),
    ("fixed:", "needs"),
    ("fixed:abc", "not a number"),
    ("fixed:1_0", "not a number"),
    ("fixed:30ms", "not a number"),
    ("fixed:-0.01", "negative"),
    ("fixed:nan", "not finite"),
    ("fixed:inf", "not finite"),
    ("fixed:-inf", "not finite"),
    ("fixed:60", "60"),
    ("fixed:1e9", "60"),
    ("fixed:0.01,0.02", "stage names"),
    ("fixed:a=", "empty"),
    ("fixed:=0.01", "stage name"),
    ("fixed:a", "not a number"),
    ("fixed:a=0.01,b", "STAGE=SECONDS"),
    ("fixed:a=0.01,", "empty"),
    ("fixed:a=0.01,,b=0.02", "empty"),
    ("fixed:a=0.01,a=0.02", "twice"),
    ("fixed:a=-1", "negative"),
    ("fixed:a=nan", "not finite"),
    ("fixed:a b=0.1", "stage name"),
    ("fixed:a=0.1=0.2", "not a number"),
    ("fixed:total=0.01,perception=0.02", "reserved"),
    ("profile:", "PATH"),
    ("profile:   ", "PATH"),
    ("measured:now", "no argument"),
    ("random:0.1", "unknown"),
    ("FIXED:0.1", "unknown"),
    ("0.03", "unknown"),
])
def test_malformed_specs_raise_with_allowed_forms(spec, problem):
    with pytest.raises(LatencySpecError) as info:
        parse_latency(spec)
    error = info.value
    message = str(error)
    assert isinstance(error, ConfigError) and isinstance(error, ValueError)
    assert error.field == "latency"
    assert "\n" not in message
    assert problem in message
    for form in ("fixed:SECONDS", "fixed:STAGE=SECONDS", "profile:PATH", "measured"):
        assert form in message
    assert ALLOWED_FORMS in message


@pytest.mark.parametrize("spec", [None, 0.03, b"fixed:0.03"])
def test_non_string_spec_raises(spec):
    with pytest.raises(LatencySpecError, match="allowed forms"):
        parse_latency(spec)  # type: ignore[arg-type]


def test_fixed_latency_built_directly_validates():
    model = FixedLatency({"perception": 0.01, "planning": 0.02})
    assert model.sample() == {"perception": 0.01, "planning": 0.02}
    assert parse_latency(model.spec).sample() == model.sample()
    with pytest.raises(LatencySpecError, match="negative"):
        FixedLatency({"perception": -1.0})
    with pytest.raises(LatencySpecError, match="no stages"):
        FixedLatency({})


stage_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True).filter(
    lambda name: name != "total")
seconds = st.floats(min_value=0.0, max_value=60.0, exclude_max=True, allow_nan=False,
                    allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(stage_names, seconds, min_size=1, max_size=6))
def test_fixed_spec_round_trips_stage_dicts(stages):
    spec = "fixed:" + ",".join(f"{name}={value!r}" for name, value in stages.items())
    sample = parse_latency(spec).sample()
    assert list(sample) == list(stages)
    assert sample == pytest.approx(stages, rel=1e-12, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(seconds)
def test_fixed_spec_round_trips_single_value(value):
    assert parse_latency(f"fixed:{value!r}").sample() == pytest.approx({"total": value},
                                                                        rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------- profiles


def test_profile_round_trip(tmp_path):
    profile = make_profile()
    path = tmp_path / "profile.json"
    save_profile(profile, path)
    loaded = load_profile(path)
    assert loaded == profile
    assert loaded.stages["perception"] == profile.stages["perception"]  # exact floats
    assert list(loaded.stages) == list(STAGES)
    assert dict(loaded.meta) == {"note": "test", "n": 1}
    document = json.loads(path.read_text())
    assert document["format"] == "reflexdrive.latency-profile"
    assert document["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["profile.json"]  # no temp files left

    save_profile(profile, str(path))  # overwrite in place, str path
    assert load_profile(str(path)) == profile


def test_save_profile_leaves_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "profile.json"
    save_profile(make_profile(), path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_profile({"stages": {}}, path)  # type: ignore[arg-type]
    with pytest.raises(OSError):
        save_profile(make_profile(), tmp_path / "missing-dir" / "p.json")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["profile.json"]


def test_profile_percentiles_and_summary():
    profile = make_profile(rows=101)
    assert profile.rows == 101
    p50 = profile.percentiles(50)
    assert list(p50) == list(STAGES)
    assert p50["perception"] == pytest.approx(51 * 0.01)
    assert profile.percentiles(100)["control"] == pytest.approx(101 * 1e-5)
    summary = profile.summary()
    assert summary["rows"] == 101
    assert summary["stages"]["planning"]["p50"] == pytest.approx(51 * 1e-4)
    assert summary["stages"]["planning"]["p99"] == pytest.approx(100 * 1e-4)
    assert summary["total"]["p50"] == pytest.approx(51 * 0.01111)
    assert summary["total"]["max"] == pytest.approx(101 * 0.01111)
    with pytest.raises(ConfigError):
        profile.percentiles(101)


def test_profile_sampling_is_seeded_and_joint(tmp_path):
    save_profile(make_profile(rows=50), tmp_path / "p.json")
    model = parse_latency("profile:p.json", base_dir=tmp_path)

    def run(seed, n=200):
        model.reset(seed)
        return [model.sample() for _ in range(n)]

    first = run(7)
    assert run(7) == first
    assert run(8) != first
    for sample in first:
        assert list(sample) == list(STAGES)
        row = round(sample["perception"] / 0.01)  # every stage comes from the same row
        for j, name in enumerate(STAGES):
            assert sample[name] == pytest.approx(row * 10.0 ** -(j + 2), rel=1e-12)
    rows_seen = {round(s["perception"] / 0.01) for s in first}
    assert len(rows_seen) > 30  # draws spread over the rows

    other = parse_latency("profile:p.json", base_dir=tmp_path)  # a second model, same seed
    other.reset(7)
    assert [other.sample() for _ in range(200)] == first


def test_profile_sampling_matches_default_rng(tmp_path):
    save_profile(make_profile(rows=10), tmp_path / "p.json")
    model = ProfileLatency(tmp_path / "p.json")
    model.reset(3)
    rng = np.random.default_rng(3)
    for _ in range(20):
        row = int(rng.integers(10))
        assert model.sample()["perception"] == pytest.approx((row + 1) * 0.01, rel=1e-12)


def test_profile_error_names_file_and_field(tmp_path):
    path = write_json(tmp_path / "bad.json",
                      profile_document(stages={"perception": [0.1, 0.2, 0.3, -0.1]}))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert message == (f"profile {path}: field 'stages.perception[3]' is -0.1: "
                       "must be a finite number of seconds in [0, 60)")
    assert info.value.path == str(path)
    assert info.value.field == "stages.perception[3]"
    assert isinstance(info.value, ConfigError)


def _corrupt_cases():
    def doc(**changes):
        return lambda path: write_json(path, profile_document(**changes))

    def text(content):
        def write(path):
            path.write_text(content)
            return path
        return write

    def without(name):
        def write(path):
            document = profile_document()
            del document[name]
            return write_json(path, document)
        return write

    full = json.dumps(profile_document())
    return {
        "missing file": (lambda path: path, "<file>", "file not found"),
        "directory": (lambda path: (path.mkdir(), path)[1], "<file>", "cannot read"),
        "empty file": (text(""), "<json>", "empty file"),
        "not JSON": (text("stages: perception"), "<json>", "not valid JSON"),
        "truncated JSON": (text(full[: len(full) // 2]), "<json>", "not valid JSON"),
        "not UTF-8": (lambda path: (path.write_bytes(b"\xff\xfe{"), path)[1], "<json>",
                      "UTF-8"),
        "duplicate key": (text('{"format": "a", "format": "b"}'), "<json>", "duplicate"),
        "top-level list": (text("[1, 2]"), "<json>", "JSON object"),
        "wrong format": (doc(format="reflexdrive.profile"), "format",
                         "'reflexdrive.latency-profile'"),
        "missing format": (without("format"), "format", "missing"),
        "wrong version": (doc(version=2), "version", "must be 1"),
        "string version": (doc(version="1"), "version", "must be 1"),
        "float version": (doc(version=1.0), "version", "must be 1"),
        "unknown field": (doc(stage={}), "stage", "allowed fields"),
        "missing stages": (without("stages"), "stages", "missing"),
        "missing stack": (without("stack"), "stack", "missing"),
        "empty stages": (doc(stages={}), "stages", "non-empty"),
        "stages not object": (doc(stages=[[0.1]]), "stages", "object"),
        "stage not list": (doc(stages={"perception": 0.1}), "stages.perception", "list"),
        "empty stage list": (doc(stages={"perception": []}), "stages.perception",
                             "non-empty"),
        "empty stage name": (doc(stages={"": [0.1]}), "stages", "non-empty strings"),
        "negative sample": (doc(stages={"perception": [0.1, -0.1]}),
                            "stages.perception[1]", "[0, 60)"),
        "NaN sample": (text(full.replace("0.03", "NaN")), "stages.perception[2]", "finite"),
        "Infinity sample": (text(full.replace("0.03", "Infinity")), "stages.perception[2]",
                            "finite"),
        "string sample": (doc(stages={"perception": [0.1, "0.2"]}), "stages.perception[1]",
                          "finite number"),
        "bool sample": (doc(stages={"perception": [True]}), "stages.perception[0]", "number"),
        "null sample": (doc(stages={"perception": [None]}), "stages.perception[0]", "number"),
        "too large sample": (doc(stages={"perception": [60.0]}), "stages.perception[0]",
                             "[0, 60)"),
        "unequal lengths": (doc(stages={"perception": [0.1, 0.2], "planning": [0.1]}),
                            "stages.planning", "as many samples"),
        "total mixed with stages": (doc(stages={"total": [0.1], "planning": [0.1]}), "stages",
                                    "reserved"),
        "batch_size zero": (doc(batch_size=0), "batch_size", ">= 1"),
        "batch_size float": (doc(batch_size=1.5), "batch_size", "integer"),
        "batch_size bool": (doc(batch_size=True), "batch_size", "integer"),
        "stack not string": (doc(stack=3), "stack", "string"),
        "device empty": (doc(device=""), "device", "non-empty string"),
        "created not string": (doc(created=20261123), "created", "string"),
        "meta not object": (doc(meta=[1]), "meta", "object"),
    }


CORRUPT = _corrupt_cases()


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_profiles_raise_profile_error(tmp_path, case):
    make, field, fragment = CORRUPT[case]
    path = make(tmp_path / "profile.json")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    error = info.value
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"profile {path}: ")
    assert error.field == field
    if not field.startswith("<"):
        assert f"field {field!r}" in message
    assert fragment in message
    with pytest.raises(ProfileError):  # the spec path raises the same error
        parse_latency(f"profile:{path}")


def test_long_values_are_abbreviated_in_messages(tmp_path):
    path = write_json(tmp_path / "p.json", profile_document(
        stages={"perception": [0.1] * 1000, "planning": [0.1] * 999}))
    with pytest.raises(ProfileError, match="a list of 999 items") as info:
        load_profile(path)
    assert len(str(info.value)) < 300


def test_latency_profile_validates_in_memory():
    with pytest.raises(ProfileError, match=r"^latency profile: field 'stages.a\[1\]'"):
        LatencyProfile(stack="s", device="d", batch_size=1, stages={"a": [0.1, math.nan]},
                       created="")
    with pytest.raises(ProfileError, match="meta"):
        LatencyProfile(stack="s", device="d", batch_size=1, stages={"a": [0.1]}, created="",
                       meta={"x": object()})
    profile = LatencyProfile(stack="s", device="d", batch_size=np.int64(2),
                             stages={"a": np.array([0.1, 0.2], dtype=np.float32)}, created="")
    assert profile.batch_size == 2 and type(profile.batch_size) is int
    assert all(type(v) is float for v in profile.stages["a"])
    with pytest.raises(TypeError):
        profile.stages["a"] = (1.0,)  # type: ignore[index]


# --------------------------------------------------------------------------- measured


def test_measured_passes_reported_values_through():
    model = MeasuredLatency()
    reported = {"perception": 0.01, "planning": np.float32(0.5), "control": 0}
    sample = model.sample(reported)
    assert sample == pytest.approx({"perception": 0.01, "planning": 0.5, "control": 0.0})
    assert all(type(v) is float for v in sample.values())
    assert sample is not reported


@pytest.mark.parametrize("reported", [
    {"perception": -0.001},
    {"perception": math.nan},
    {"perception": math.inf},
    {"perception": "0.1"},
    {"perception": True},
    {"": 0.1},
    {"total": 0.1, "perception": 0.1},
])
def test_measured_rejects_bad_reported_values(reported):
    with pytest.raises(ConfigError):
        MeasuredLatency().sample(reported)


def test_measured_without_mark_returns_zero():
    model = MeasuredLatency()
    assert model.sample() == {"total": 0.0}
    model.mark_observation_returned()
    model.reset(0)  # a reset forgets the mark
    assert model.sample({}) == {"total": 0.0}


def test_measured_wall_clock_after_mark():
    model = parse_latency("measured")
    model.reset(None)
    model.mark_observation_returned()
    sample = model.sample()
    assert list(sample) == ["total"]
    assert sample["total"] >= 0.0
    model.mark_observation_returned()
    time.sleep(0.01)
    assert model.sample()["total"] >= 0.009
    assert model.sample(None)["total"] >= 0.009


# --------------------------------------------------------------------------- +SECONDS


@pytest.mark.parametrize("spec, base, extra", [
    ("fixed:0.03+0.1", {"total": 0.03}, 0.1),
    ("fixed:perception=0.02,planning=0.01+0.05", {"perception": 0.02, "planning": 0.01}, 0.05),
    (" fixed:0.03 + .5 ", {"total": 0.03}, 0.5),
    ("fixed:1e-2+0", {"total": 0.01}, 0.0),
    ("fixed:1e+1+0.25", {"total": 10.0}, 0.25),
])
def test_extra_delay_suffix_adds_one_stage_with_exact_values(spec, base, extra):
    model = parse_latency(spec)
    assert isinstance(model, ShiftedLatency) and isinstance(model, LatencyModel)
    assert model.base.latencies == base and model.extra_s == extra
    assert model.deterministic and model.spec == spec
    sample = model.sample()
    assert sample == {**base, EXTRA_STAGE: extra}
    assert list(sample)[-1] == EXTRA_STAGE                      # appended after the base
    assert sum(sample.values()) == sum(base.values()) + extra  # added once, exactly


def test_exponent_plus_is_not_a_suffix():
    model = parse_latency("fixed:1e+1")
    assert isinstance(model, FixedLatency) and model.sample() == {"total": 10.0}
    assert split_extra("fixed:1e+1") == ("fixed:1e+1", None)
    assert split_extra("profile:a+b.json") == ("profile:a+b.json", None)
    assert split_extra("profile:a+b.json+0.2") == ("profile:a+b.json", 0.2)
    assert with_extra("measured", 0.05) == "measured+0.05"
    assert with_extra("fixed:0.03", 0) == "fixed:0.03"


def test_profile_plus_extra_replays_the_same_rows(tmp_path):
    path = tmp_path / "p.json"
    save_profile(make_profile(), path)
    plain, shifted = parse_latency(f"profile:{path}"), parse_latency(f"profile:{path}+0.2")
    assert isinstance(shifted, ShiftedLatency) and shifted.deterministic
    plain.reset(5)
    shifted.reset(5)
    for _ in range(20):
        expected = plain.sample()
        assert shifted.sample() == {**expected, EXTRA_STAGE: 0.2}


def test_measured_plus_extra_adds_to_reported_timings():
    model = parse_latency("measured+0.1")
    assert isinstance(model.base, MeasuredLatency) and not model.deterministic
    assert model.sample({"policy": 0.004}) == {"policy": 0.004, EXTRA_STAGE: 0.1}
    model.reset(0)
    assert model.sample() == {"total": 0.0, EXTRA_STAGE: 0.1}
    with pytest.raises(ConfigError, match="reserved"):
        model.sample({EXTRA_STAGE: 0.01})


@pytest.mark.parametrize("spec, needle", [
    ("fixed:0.1+0.1+0.1", "only one"),
    ("fixed:0.1+70", "extra delay 70.0 is not below 60"),
    ("fixed:extra=0.1+0.05", "reserved"),
    ("+0.1", "needs a latency model"),
    ("fixed:0.1+abc", "not a number"),
    ("fixed:abc+0.1", "not a number"),
])
def test_bad_extra_delay_specs(spec, needle):
    with pytest.raises(LatencySpecError, match=needle) as caught:
        parse_latency(spec)
    assert "\n" not in str(caught.value) and "+SECONDS" in str(caught.value)


def test_extra_delay_lands_the_command_later_on_both_backends():
    """The clock charges `L_k = base + extra`: the command lands at `t_k + 0.13` s, the same
    records on the single env and on the batched env."""
    from reflexdrive.envs.gym.vector import BatchedDrivingEnv
    from reflexdrive.envs.registration import make_env

    spec, config = "fixed:0.03+0.1", {"duration_s": 1.0, "onset_s": (0.5, 0.5)}
    single = make_env("lead-brake", latency=spec, scenario_config=config)
    batched = BatchedDrivingEnv(1, "lead-brake", latency=spec, record=True,
                                scenario_config=config, autoreset_mode="disabled")
    try:
        single.reset(seed=2)
        batched.reset(seed=[2])
        action = np.array([-1.0, 0.0])
        _, _, _, _, info = single.step(action)
        records_single = list(info["ticks"])
        records_batched = []
        while len(records_batched) < len(records_single):
            _, _, _, _, info_b = batched.step(action[None])
            records_batched.extend(info_b["ticks"][0])
    finally:
        single.close()
        batched.close()
    first = records_single[0]
    assert first.stage_latency_s == {"total": 0.03, EXTRA_STAGE: 0.1}
    assert first.latency_s == 0.03 + 0.1 and first.lands_s == first.t_s + 0.03 + 0.1
    assert first.overrun and len(records_single) == 2      # 0.13 s > 0.1 s: one frame drops
    assert list(map(repr, records_batched)) == list(map(repr, records_single))
