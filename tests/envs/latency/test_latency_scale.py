"""Tests for the `*K` latency scale (`ScaledLatency`) and its order with `+SECONDS`."""

from __future__ import annotations

import numpy as np
import pytest
from reflexdrive.envs.latency import (
    EXTRA_STAGE,
    FixedLatency,
    LatencyProfile,
    LatencySpecError,
    MeasuredLatency,
    ScaledLatency,
    ShiftedLatency,
    base_spec,
    parse_latency,
    save_profile,
    split_scale,
    with_scale,
)


def write_profile(path) -> str:
    """A profile whose row i has perception (i + 1) * 10 ms and planning (i + 1) ms."""
    stages = {"perception": tuple((i + 1) * 0.01 for i in range(6)),
              "planning": tuple((i + 1) * 0.001 for i in range(6))}
    save_profile(LatencyProfile(stack="staged", device="cpu: test", batch_size=1,
                                stages=stages, created="2026-11-23T12:00:00Z"), path)
    return f"profile:{path}"


@pytest.mark.parametrize("spec, expected", [
    ("fixed:0.03*2", {"total": 0.06}),
    ("fixed:perception=0.02,planning=0.01*0.5", {"perception": 0.01, "planning": 0.005}),
    (" fixed:0.01 * 3 ", {"total": 0.03}),
    ("fixed:1e+1*1.5", {"total": 15.0}),
    ("fixed:0.04*1", {"total": 0.04}),
])
def test_scale_multiplies_every_stage(spec, expected):
    model = parse_latency(spec)
    assert isinstance(model, ScaledLatency) and isinstance(model.base, FixedLatency)
    assert model.deterministic and model.spec == spec
    assert model.sample() == pytest.approx(expected, rel=1e-15)
    batch = model.sample_batch(np.ones(3, bool))
    assert list(batch) == list(expected)
    for name, value in expected.items():
        assert np.allclose(batch[name], value, rtol=1e-15, atol=0)


@pytest.mark.parametrize("spec, stages, extra", [
    ("fixed:0.03*2+0.05", {"total": 0.06}, 0.05),
    ("fixed:perception=0.02,planning=0.01*3+0.1",
     {"perception": 0.06, "planning": 0.03}, 0.1),
    ("fixed:1e+1*0.5+1e-3", {"total": 5.0}, 0.001),
])
def test_scale_then_extra_charges_scaled_latency_plus_extra(spec, stages, extra):
    """`SPEC*K+S` = (SPEC's latency x K) + S: the extra delay is never scaled."""
    model = parse_latency(spec)
    assert isinstance(model, ShiftedLatency) and isinstance(model.base, ScaledLatency)
    assert model.extra_s == extra and model.spec == spec
    sample = model.sample()
    assert sample == pytest.approx({**stages, EXTRA_STAGE: extra}, rel=1e-15)
    assert list(sample)[-1] == EXTRA_STAGE


def test_scaled_profile_replays_the_same_rows_times_k(tmp_path):
    spec = write_profile(tmp_path / "p.json")
    plain, scaled = parse_latency(spec), parse_latency(f"{spec}*2+0.05")
    plain.reset(7)
    scaled.reset(7)
    for _ in range(20):
        expected = plain.sample()
        assert scaled.sample() == {**{k: 2 * v for k, v in expected.items()},
                                   EXTRA_STAGE: 0.05}
    observing = np.array([True, False, True])
    plain.reset_batch(np.ones(3, bool), [1, 2, 3])
    scaled.reset_batch(np.ones(3, bool), [1, 2, 3])
    for _ in range(5):
        rows, scaled_rows = plain.sample_batch(observing), scaled.sample_batch(observing)
        assert np.array_equal(scaled_rows["perception"], 2 * rows["perception"])
        assert np.array_equal(scaled_rows[EXTRA_STAGE], np.full(3, 0.05))


def test_scaled_measured_scales_the_reported_timings():
    model = parse_latency("measured*3+0.1")
    assert isinstance(model.base.base, MeasuredLatency) and not model.deterministic
    assert model.sample({"policy": 0.004}) == pytest.approx(
        {"policy": 0.012, EXTRA_STAGE: 0.1}, rel=1e-15)


@pytest.mark.parametrize("spec, needle", [
    ("fixed:0.01*0", "0 < K <= 100"),
    ("fixed:0.01*-2", "0 < K <= 100"),
    ("fixed:0.01*101", "0 < K <= 100"),
    ("fixed:0.01*2*3", "only one \\*K"),
    ("fixed:0.01+0.1*2", "write the scale before the extra delay"),
    ("*2", "needs a latency model"),
    ("measured*abc", "followed by a number"),
    ("fixed:0.01*", "followed by a number"),
    ("fixed:extra=0.01*2+0.1", "reserved"),
])
def test_bad_scales_are_one_line_spec_errors(spec, needle):
    with pytest.raises(LatencySpecError, match=needle) as caught:
        parse_latency(spec)
    assert "\n" not in str(caught.value) and "*K" in str(caught.value)


def test_scaled_latency_built_directly_validates():
    with pytest.raises(LatencySpecError, match="0 < K"):
        ScaledLatency(FixedLatency({"total": 0.01}), 0.0)
    with pytest.raises(LatencySpecError, match="only one"):
        ScaledLatency(ScaledLatency(FixedLatency({"total": 0.01}), 2.0), 2.0)


def test_suffix_helpers():
    assert split_scale("profile:a*b.json*2") == ("profile:a*b.json", 2.0)
    assert split_scale("fixed:0.1") == ("fixed:0.1", None)
    assert with_scale("fixed:0.1", 1) == "fixed:0.1"
    assert with_scale("measured+0.1", 2) == "measured*2.0+0.1"
    assert with_scale("fixed:0.01*2", 3) == "fixed:0.01*6.0"
    assert base_spec(" measured*2+0.1") == "measured" and base_spec("fixed:1e+1") == "fixed:1e+1"


def test_scaled_latency_lands_the_command_at_k_times_l_plus_extra():
    """At T = 0.1 s, `fixed:0.02*2+0.01` charges 0.05 s: the command lands at t_k + 0.05
    exactly, the same on the single and the batched env."""
    from reflexdrive.envs.gym.vector import BatchedDrivingEnv
    from reflexdrive.envs.registration import make_env

    spec, config = "fixed:0.02*2+0.01", {"duration_s": 1.0, "onset_s": (0.5, 0.5)}
    single = make_env("lead-brake", latency=spec, scenario_config=config)
    batched = BatchedDrivingEnv(1, "lead-brake", latency=spec, record=True,
                                scenario_config=config, autoreset_mode="disabled")
    try:
        single.reset(seed=2)
        batched.reset(seed=[2])
        action = np.array([-1.0, 0.0])
        _, _, _, _, info = single.step(action)
        _, _, _, _, info_b = batched.step(action[None])
    finally:
        single.close()
        batched.close()
    first = info["ticks"][0]
    assert first.stage_latency_s == {"total": 0.04, EXTRA_STAGE: 0.01}
    assert first.latency_s == pytest.approx(0.05, abs=1e-15) and not first.overrun
    assert first.lands_s == pytest.approx(first.t_s + 0.05, abs=1e-12)
    assert repr(info_b["ticks"][0][0]) == repr(first)
