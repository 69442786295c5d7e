"""Tests for per-stack latency specs (`compare.latency`) and the latency-scale sweep."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from reflexdrive.envs.latency import LatencyProfile, save_profile

from reflexdrive.cli import build_parser, compare_settings, main
from reflexdrive.common.validation import ConfigError
from reflexdrive.compare.config import PROFILED_ENVS, CompareConfig
from reflexdrive.compare.latency import split_per_stack
from reflexdrive.compare.summary import headline

SHORT = {"duration_s": 1.5, "onset_s": (0.5, 1.0)}


def config(tmp_path: Path, **changes) -> CompareConfig:
    """Staged and the reference driver (no checkpoint needed) on lead-brake."""
    settings = dict(stacks=("staged", "reference-driver"), scenarios=("lead-brake",),
                    episodes=2, latency="fixed:0.02", extra_latency_s=(0.0,),
                    modes=("lockstep", "realtime"), scenario_config=SHORT,
                    out=str(tmp_path / "o"))
    return CompareConfig(**{**settings, **changes})


def profile_file(path: Path) -> Path:
    save_profile(LatencyProfile(stack="staged", device="cpu: test", batch_size=1,
                                stages={"total": (0.01, 0.02)},
                                created="2026-11-23T12:00:00Z"), path)
    return path


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, expected", [
    ("profiled", "profiled"),
    ("fixed:perception=0.01,planning=0.02", "fixed:perception=0.01,planning=0.02"),
    ("staged=profile:a.json,cnn=fixed:0.005", {"staged": "profile:a.json",
                                               "cnn": "fixed:0.005"}),
    ("staged=fixed:perception=0.01,planning=0.02,cnn=measured",
     {"staged": "fixed:perception=0.01,planning=0.02", "cnn": "measured"}),
    (" staged = profiled , default=fixed:0", {"staged": "profiled", "default": "fixed:0"}),
])
def test_split_per_stack_keeps_fixed_stage_lists_together(text, expected):
    assert split_per_stack(text) == expected


def test_one_spec_for_all_and_per_stack_specs(tmp_path):
    shared = config(tmp_path, stacks=("staged", "gru", "reference-driver"), latency="measured")
    assert shared.latency == "measured"
    assert [shared.latency_of(s) for s in shared.stacks] == ["measured", "measured", "fixed:0"]
    path = profile_file(tmp_path / "a.json")
    per_stack = config(tmp_path, stacks=("staged", "gru", "reference-driver"),
                       latency=f"staged=profile:{path},default=fixed:0.005")
    assert per_stack.latency == {"staged": f"profile:{path}", "gru": "fixed:0.005"}
    runs = {cell.stack: cell.run for cell in per_stack.cells() if cell.mode == "realtime"}
    assert runs["staged"].latency == f"profile:{path}"
    assert runs["gru"].latency == "fixed:0.005"
    assert runs["reference-driver"].latency == "fixed:0"           # always, not named
    # entries of stacks not compared are dropped, and the order of the names is not identity
    mapping = config(tmp_path, latency={"gru": "fixed:0.005", "staged": f"profile:{path}",
                                        "cnn": "measured"}, stacks=("staged", "gru"))
    assert mapping.identity() == config(tmp_path, stacks=("staged", "gru"), latency=(
        f"staged=profile:{path},gru=fixed:0.005")).identity()


@pytest.mark.parametrize("latency, needle", [
    ("staged=fixed:0.01,stagd=fixed:0.02",
     "latency='stagd' is invalid: unknown stack; per-stack latencies name stacks from: "),
    ("staged=fixed:0.01,reference-driver=fixed:0", "reference drivers always run at fixed:0"),
    ({"staged": "fixed:0.01"}, "no latency for gru; name them or add default=SPEC"),
    ("staged=fixed:0.01,gru=fixed:x", "latency.gru='fixed:x' is invalid: latency 'x' "
                                      "is not a number of seconds"),
    ("staged=fixed:0.01,gru=fixed:0.01+0.1", "latency.gru='fixed:0.01+0.1' is invalid: give "
                                             "the stack's own latency without a +SECONDS"),
    ("staged=profiled*2,gru=fixed:0", "without a *K scale; scales go in latency_scale"),
    ("staged=fixed:0.01,gru=fixed:0.01+0..0.3", "latency.gru='fixed:0.01+0..0.3' is invalid: "
                                                "a +LOW..HIGH extra delay is drawn per episode"),
    ("fixed:0.01+0..0.3", "a +LOW..HIGH extra delay is drawn per episode, for training"),
    ("staged=fixed:0,staged=measured,gru=fixed:0", "stack 'staged' is given twice"),
    ({}, "must be a latency spec string or a table"),
])
def test_bad_per_stack_specs_are_one_clear_line(tmp_path, latency, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)) as caught:
        config(tmp_path, stacks=("staged", "gru"), latency=latency)
    assert "\n" not in str(caught.value)


def test_cli_takes_per_stack_latency_and_scales(tmp_path, capsys):
    args = build_parser().parse_args(
        ["compare", "--latency", "staged=fixed:0.01,default=measured",
         "--latency-scale", "2,1,0.5", "--out", str(tmp_path / "o")])
    settings = compare_settings(args)
    assert settings["latency"] == "staged=fixed:0.01,default=measured"
    assert settings["latency_scale"] == [2.0, 1.0, 0.5]
    code = main(["compare", "--stacks", "staged", "--latency", "stagd=fixed:0.01",
                 "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown stack" in err
    code = main(["compare", "--stacks", "staged", "--latency-scale", "1,0",
                 "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "latency_scale=0.0 is invalid: must be a factor K with 0 < K" in err
    assert not (tmp_path / "o").exists()


def test_toml_latency_table_with_relative_profile_paths(tmp_path):
    (tmp_path / "profiles").mkdir()
    profile_file(tmp_path / "profiles" / "a.json")
    (tmp_path / "exp.toml").write_text(
        'stacks = ["staged", "gru", "reference-driver"]\nscenarios = ["lead-brake"]\n'
        'latency_scale = [1, 3]\n'
        '[latency]\nstaged = "profile:profiles/a.json"\ndefault = "fixed:0.005"\n')
    loaded = CompareConfig.from_toml(tmp_path / "exp.toml", out=str(tmp_path / "o"))
    assert loaded.latency == {"staged": f"profile:{tmp_path / 'profiles' / 'a.json'}",
                              "gru": "fixed:0.005"}
    assert loaded.latency_scale == (1.0, 3.0)
    (tmp_path / "bad.toml").write_text('[latency]\nstaged = "fixed:0.01"\nbogus = "fixed:0"\n')
    with pytest.raises(ConfigError, match="latency='bogus' is invalid: unknown stack"):
        CompareConfig.from_toml(tmp_path / "bad.toml", stacks=("staged",))
    (tmp_path / "typed.toml").write_text('latency = 3\n')
    with pytest.raises(ConfigError, match="must be a latency spec string or a \\[latency\\]"):
        CompareConfig.from_toml(tmp_path / "typed.toml")


# ----------------------------------------------------------------------------- scale sweep


def test_scale_sweep_cells_are_the_product_with_the_extra_sweep(tmp_path):
    swept = config(tmp_path, latency_scale=(2, 1), extra_latency_s=(0.1, 0.0))
    cells = [(c.stack, c.mode, c.latency_scale, c.extra_latency_s, c.run.latency, c.name)
             for c in swept.cells()]
    assert cells == [
        ("staged", "lockstep", 1.0, 0.0, "fixed:0.02", "staged/lead-brake/lockstep+0.0s"),
        ("staged", "realtime", 1.0, 0.0, "fixed:0.02", "staged/lead-brake/realtime+0.0s"),
        ("staged", "realtime", 1.0, 0.1, "fixed:0.02+0.1", "staged/lead-brake/realtime+0.1s"),
        ("staged", "realtime", 2.0, 0.0, "fixed:0.02*2.0",
         "staged/lead-brake/realtime-x2.0+0.0s"),
        ("staged", "realtime", 2.0, 0.1, "fixed:0.02*2.0+0.1",
         "staged/lead-brake/realtime-x2.0+0.1s"),
        ("reference-driver", "lockstep", 1.0, 0.0, "fixed:0",
         "reference-driver/lead-brake/lockstep+0.0s"),
        ("reference-driver", "realtime", 1.0, 0.0, "fixed:0",
         "reference-driver/lead-brake/realtime+0.0s")]
    assert swept.total_episodes == 2 * 7
    assert len(config(tmp_path, latency_scale=(1, 2), sweep_lockstep=True).cells()) == 6
    # the default scale leaves the identity as it was before the field existed
    assert "latency_scale" not in config(tmp_path).identity()
    assert swept.identity()["latency_scale"] == [1.0, 2.0]


@pytest.mark.parametrize("scales, needle", [
    ((1, 0), "latency_scale=0 is invalid: must be a factor K with 0 < K <= 100"),
    ((1, -2), "latency_scale=-2"),
    ((1, 101), "latency_scale=101"),
    ((2, 2.0), "must not repeat"),
    ((), "must be a non-empty list of factors"),
    ("2", "must be a non-empty list of factors"),
])
def test_bad_scales(tmp_path, scales, needle):
    with pytest.raises(ConfigError, match=needle):
        config(tmp_path, latency_scale=scales)


def test_scaled_cells_charge_k_times_the_latency(tmp_path):
    """A scale-2 cell of fixed 20 ms is charged 40 ms at every decision, +0.03 s on top."""
    from reflexdrive.compare.experiment import compare

    result = compare(config(tmp_path, stacks=("staged",), modes=("realtime",),
                            latency_scale=(1, 2), extra_latency_s=(0.0, 0.03), envs=2),
                     progress=False)
    summary = result.summary
    assert list(zip(summary["latency_scale"], summary["extra_latency_s"])) == [
        (1.0, 0.0), (1.0, 0.03), (2.0, 0.0), (2.0, 0.03)]
    assert summary["latency_p50_s"].tolist() == pytest.approx([0.02, 0.05, 0.04, 0.07],
                                                              abs=1e-12)
    assert summary["stack_latency_p50_s"].tolist() == pytest.approx([0.02, 0.02, 0.04, 0.04],
                                                                    abs=1e-12)
    assert (result.episodes["latency_scale"].tolist()
            == [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    assert summary["latency"].tolist() == ["fixed:0.02", "fixed:0.02+0.03", "fixed:0.02*2.0",
                                           "fixed:0.02*2.0+0.03"]
    table = headline(summary).splitlines()
    assert table[0].split()[4] == "scale" and [line.split()[4] for line in table[1:]] == [
        "x1", "x1", "x2", "x2"]


def test_profiled_runs_many_envs_and_measured_one(tmp_path):
    profiled = config(tmp_path, latency="profiled", envs=None)
    assert profiled.envs_for("staged", "lead-brake") == PROFILED_ENVS >= 64
    assert profiled.envs_for("staged", "merge") == PROFILED_ENVS       # road networks batch too
    on_highway = config(tmp_path, latency="profiled", envs=None, backend="highway")
    assert on_highway.envs_for("staged", "merge") == 2                 # highway backend
    mixed = config(tmp_path, latency="staged=measured", envs=None)
    assert mixed.envs_for("staged", "lead-brake") == 1
    assert mixed.envs_for("reference-driver", "lead-brake") == 8      # fixed:0, batched
