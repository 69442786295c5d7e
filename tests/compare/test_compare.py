"""`reflexdrive compare`: the grid, its files, resume, summary statistics, config, CLI errors.

The tiny compare: staged + an untrained cnn, lead-brake, 2 episodes of 1.5 s, fixed 20 ms
latency, extra 0 and 0.1 s, lockstep + realtime: 6 cells (lockstep at extra 0 only).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.policies.registry import build, save_policy

from reflexdrive.cli import main
from reflexdrive.common.validation import ConfigError
from reflexdrive.compare import executors
from reflexdrive.compare import experiment as compare_module
from reflexdrive.compare.config import CompareConfig
from reflexdrive.compare.executors import FixedBatchAgent, chunks
from reflexdrive.compare.experiment import compare
from reflexdrive.compare.summary import GROUP, bootstrap, group_rng, summarize, wilson_interval

SHORT = {"duration_s": 1.5, "onset_s": (0.5, 1.0)}
RUN_COLUMNS = ["scenario", "stack", "seed", "mode", "latency", "backend", "budget_s", "episode",
               "end_reason", "hazard_onset_s", "reaction_time_s", "reaction_wait_s",
               "reaction_notice_s", "reaction_compute_s", "reaction_kind", "brake_onset_s",
               "critical", "onset_gap_m", "onset_ttc_s", "onset_headway_s",
               "required_decel_mps2", "collided",
               "offroad", "route_exit_reached", "min_ttc_s", "min_gap_m", "peak_decel_mps2",
               "progress_m",
               "mean_speed_mps", "traffic_mean_speed_mps", "mean_abs_jerk_mps3",
               "latency_p50_s", "latency_p99_s", "overrun_rate", "decision_age_s",
               "decision_rate_hz", "dropped_frames", "ticks", "duration_s"]
SUMMARY_COLUMNS = [
    "stack", "scenario", "mode", "execution", "extra_latency_s", "latency_scale", "latency",
    "envs",
    "budget_s", "episodes",
    "rates_over", "critical_episodes", "noncritical_episodes", "rated_episodes",
    "reacted", "reaction_rate",
    "reaction_time_mean_s", "reaction_time_mean_lo_s", "reaction_time_mean_hi_s",
    "reaction_time_p50_s", "reaction_time_p50_lo_s", "reaction_time_p50_hi_s",
    "reaction_time_p95_s", "reaction_time_p95_lo_s", "reaction_time_p95_hi_s",
    "reaction_wait_mean_s", "reaction_notice_mean_s", "reaction_compute_mean_s",
    "braked", "brake_onset_p50_s", "brake_onset_p50_lo_s", "brake_onset_p50_hi_s",
    "collisions", "collision_rate", "collision_rate_lo", "collision_rate_hi",
    "min_ttc_p50_s", "min_ttc_p50_lo_s", "min_ttc_p50_hi_s",
    "min_gap_p50_m", "min_gap_p50_lo_m", "min_gap_p50_hi_m",
    "progress_mean_m", "progress_mean_lo_m", "progress_mean_hi_m",
    "jerk_mean_mps3", "jerk_mean_lo_mps3", "jerk_mean_hi_mps3",
    "peak_decel_mean_mps2", "decisions", "latency_p50_s", "latency_p99_s",
    "stack_latency_p50_s", "stack_latency_p99_s", "overrun_rate", "dropped_frames_mean",
    "decision_age_mean_ms", "decisions_per_s"]
CELLS = [("staged", "lockstep", 0.0), ("staged", "realtime", 0.0), ("staged", "realtime", 0.1),
         ("cnn", "lockstep", 0.0), ("cnn", "realtime", 0.0), ("cnn", "realtime", 0.1)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    spec = policy_spec()
    path = tmp_path_factory.mktemp("policy") / "cnn.pt"
    small = {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32}}
    return save_policy(path, build("cnn", spec["observation"], **small), spec,
                       meta={"command": "test"})


def tiny(out: Path, checkpoint: Path, **changes) -> CompareConfig:
    settings = dict(stacks=("staged", "cnn"), scenarios=("lead-brake",), episodes=2,
                    latency="fixed:0.02", extra_latency_s=(0.0, 0.1),
                    modes=("lockstep", "realtime"), checkpoints={"cnn": str(checkpoint)},
                    scenario_config=SHORT, envs=2, out=str(out))
    return CompareConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def tiny_out(tmp_path_factory, checkpoint) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("compare") / "out"
    result = compare(tiny(out, checkpoint), progress=False)
    assert result.ran == 12
    return out


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- outputs


def test_tiny_compare_writes_every_file(tiny_out):
    episodes = pd.read_csv(tiny_out / "episodes.csv")
    assert list(episodes.columns) == (GROUP + [c for c in RUN_COLUMNS if c not in GROUP]
                                      + ["envs", "cell"])
    assert len(episodes) == 12
    keys = list(zip(episodes["stack"], episodes["mode"], episodes["extra_latency_s"]))
    assert keys == [cell for cell in CELLS for _ in range(2)]
    assert (episodes.groupby(GROUP)["seed"].apply(list) == pd.Series([[0, 1]] * 6)
            .set_axis(episodes.groupby(GROUP)["seed"].apply(list).index)).all()
    shifted = episodes["extra_latency_s"] == 0.1
    assert (episodes.loc[shifted, "latency"] == "fixed:0.02+0.1").all()
    assert (episodes.loc[~shifted, "latency"] == "fixed:0.02").all()
    # fixed latency: every decision is charged exactly 20 ms + the extra delay
    assert np.array_equal(episodes["latency_p50_s"], 0.02 + episodes["extra_latency_s"])
    assert (episodes.loc[shifted, "overrun_rate"] == 1.0).all()     # 0.12 s > 0.1 s budget
    realtime = episodes[episodes["mode"] == "realtime"].dropna(subset=["reaction_time_s"])
    assert np.allclose(realtime["reaction_compute_s"], 0.02 + realtime["extra_latency_s"])
    lockstep = episodes[episodes["mode"] == "lockstep"].dropna(subset=["reaction_time_s"])
    assert (lockstep["reaction_compute_s"] == 0).all()

    summary = pd.read_csv(tiny_out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(zip(summary["stack"], summary["mode"], summary["extra_latency_s"])) == CELLS
    assert (summary["episodes"] == 2).all() and (summary["envs"] == 2).all()
    assert np.array_equal(summary["latency_p50_s"], 0.02 + summary["extra_latency_s"])
    assert np.allclose(summary["stack_latency_p99_s"], 0.02)
    assert list(summary["overrun_rate"]) == [0, 0, 1, 0, 0, 1]

    decisions = pd.read_csv(tiny_out / "decisions.csv")
    assert list(decisions.columns) == (GROUP + ["seed", "tick", "t_s", "latency_s", "overrun",
                                                "dropped_after", "latency_total_s",
                                                "latency_extra_s"])
    ticks = 0
    for stack, mode, extra in CELLS:
        folder = tiny_out / "cells" / stack / "lead-brake" / f"{mode}+{extra!r}s"
        assert {p.name for p in folder.iterdir()} >= {"run.json", "episodes.csv", "ticks.csv"}
        assert json.loads((folder / "run.json").read_text())["status"] == "complete"
        cell_ticks = pd.read_csv(folder / "ticks.csv")
        ticks += int(cell_ticks["observed"].sum())
    assert len(decisions) == ticks == summary["decisions"].sum()
    assert decisions["latency_extra_s"].fillna(0).eq(decisions["extra_latency_s"]).all()

    record = json.loads((tiny_out / "compare.json").read_text())
    assert record["status"] == "complete" and record["config"]["video"] == 0
    assert len(record["cells"]) == 6 and record["ran_episodes"] == 12
    assert not list(tiny_out.rglob(".*.tmp"))


def test_resume_recomputes_nothing(tiny_out, checkpoint, monkeypatch):
    before = snapshot(tiny_out / "cells")

    def no_agent(*_, **__):
        raise AssertionError("a finished compare built a stack again")

    monkeypatch.setattr(executors, "cell_agent", no_agent)
    monkeypatch.setattr(compare_module, "cell_agent", no_agent)
    episodes = pd.read_csv(tiny_out / "episodes.csv")
    result = compare(tiny(tiny_out, checkpoint), progress=False)
    assert result.ran == 0
    assert snapshot(tiny_out / "cells") == before
    pd.testing.assert_frame_equal(pd.read_csv(tiny_out / "episodes.csv"), episodes)


def test_an_interrupted_compare_finishes_only_the_rest(tmp_path, checkpoint, monkeypatch):
    out = tmp_path / "out"
    config = tiny(out, checkpoint)
    local = compare_module.run_local
    finished = []

    def interrupted(cells, progress, threads=None):
        def count(n):
            finished.append(n)
            if len(finished) == 3:
                raise KeyboardInterrupt
        local(cells, count, threads)

    monkeypatch.setattr(compare_module, "run_local", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compare(config, progress=False)
    assert json.loads((out / "compare.json").read_text())["status"] == "running"
    assert not (out / "episodes.csv").exists()
    saved = {p: p.read_bytes() for p in (out / "cells").rglob("seed-*.csv")}
    assert len(saved) == 3

    finished.clear()
    monkeypatch.setattr(compare_module, "run_local", lambda cells, progress, threads=None:
                        local(cells, finished.append, threads))
    result = compare(config, progress=False)
    assert result.ran == 9 and sum(finished) == 9
    assert all(path.read_bytes() == data for path, data in saved.items())
    assert len(result.episodes) == 12


def test_more_episodes_extend_every_cell(tmp_path, checkpoint):
    out = tmp_path / "out"
    config = tiny(out, checkpoint, stacks=("staged",), modes=("realtime",), episodes=1,
                  extra_latency_s=(0.0,))
    assert compare(config, progress=False).ran == 1
    result = compare(tiny(out, checkpoint, stacks=("staged",), modes=("realtime",),
                          episodes=2, extra_latency_s=(0.0,)), progress=False)
    assert result.ran == 1 and result.episodes["seed"].tolist() == [0, 1]
    fewer = compare(config, progress=False)
    assert fewer.ran == 0 and fewer.episodes["seed"].tolist() == [0]


# ----------------------------------------------------------------------------- statistics


def test_bootstrap_of_a_constant_is_a_zero_width_interval():
    stats = bootstrap(np.full(7, 0.42), {"mean": np.mean, "median": np.median},
                      np.random.default_rng(0))
    assert stats == {"mean": (0.42, 0.42, 0.42), "median": (0.42, 0.42, 0.42)}
    assert bootstrap(np.array([3.0]), {"mean": np.mean}, np.random.default_rng(0)) == {
        "mean": (3.0, 3.0, 3.0)}
    empty = bootstrap(np.array([]), {"mean": np.mean}, np.random.default_rng(0))["mean"]
    assert all(math.isnan(x) for x in empty)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    values = np.random.default_rng(1).normal(1.0, 0.2, 40)
    mean = {"mean": lambda v: v.mean(axis=-1)}
    first = bootstrap(values, mean, np.random.default_rng([0, 7]))["mean"]
    again = bootstrap(values, mean, np.random.default_rng([0, 7]))["mean"]
    other = bootstrap(values, mean, np.random.default_rng([1, 7]))["mean"]
    assert first == again and first != other
    estimate, low, high = first
    assert low < estimate < high
    # the percentile interval of a mean is close to +-1.96 standard errors
    half = 1.96 * values.std() / math.sqrt(values.size)
    assert abs((high - low) / 2 - half) < 0.25 * half


def test_wilson_interval_matches_the_formula():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    assert wilson_interval(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-6)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def _episodes(stack: str, reaction: list[float], collided: list[bool]) -> pd.DataFrame:
    n = len(reaction)
    return pd.DataFrame({
        "stack": stack, "scenario": "lead-brake", "mode": "realtime", "extra_latency_s": 0.0,
        "latency": "fixed:0", "envs": 1, "budget_s": 0.1, "seed": range(n),
        "reaction_time_s": reaction, "reaction_wait_s": 0.05, "reaction_notice_s": 0.2,
        "reaction_compute_s": 0.0, "collided": collided, "min_ttc_s": [math.inf] * n,
        "min_gap_m": 10.0, "progress_m": np.linspace(100, 120, n), "peak_decel_mps2": 3.0,
        "mean_abs_jerk_mps3": 1.0, "latency_p50_s": 0.01, "latency_p99_s": 0.02,
        "overrun_rate": 0.0, "dropped_frames": 0})


def test_summary_of_analytic_episodes():
    constant = _episodes("staged", [0.5, 0.5, 0.5, math.nan], [False, False, True, False])
    varied = _episodes("cnn", [0.2, 0.4, 0.6, 0.8], [False] * 4)
    summary = summarize(pd.concat([constant, varied], ignore_index=True), seed=3)
    staged, cnn = summary.iloc[0], summary.iloc[1]
    assert staged["reacted"] == 3 and staged["reaction_rate"] == 0.75
    for name in ("mean", "p50", "p95"):
        assert staged[[f"reaction_time_{name}_s", f"reaction_time_{name}_lo_s",
                       f"reaction_time_{name}_hi_s"]].tolist() == [0.5, 0.5, 0.5]
    assert staged["collision_rate"] == 0.25
    assert (staged["collision_rate_lo"], staged["collision_rate_hi"]) == wilson_interval(1, 4)
    assert staged["min_ttc_p50_s"] == math.inf and staged["min_gap_p50_lo_m"] == 10.0
    assert cnn["reaction_time_mean_s"] == pytest.approx(0.5)
    assert 0.2 <= cnn["reaction_time_mean_lo_s"] < 0.5 < cnn["reaction_time_mean_hi_s"] <= 0.8
    assert cnn["reaction_time_p95_s"] == pytest.approx(0.77)
    assert math.isnan(cnn["decisions"]) and cnn["latency_p50_s"] == 0.01
    # seeded, and a group's intervals do not depend on the other groups
    again = summarize(varied, seed=3).iloc[0]
    pd.testing.assert_series_equal(again, cnn, check_names=False)
    many = _episodes("cnn", list(np.linspace(0.2, 0.8, 30)), [False] * 30)
    assert summarize(many, seed=4).iloc[0]["reaction_time_mean_lo_s"] != \
        summarize(many, seed=3).iloc[0]["reaction_time_mean_lo_s"]
    assert group_rng(3, ("a",)).random() == group_rng(3, ("a",)).random()


# ----------------------------------------------------------------------------- executors


def test_chunks_cut_consecutive_seeds():
    assert chunks([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]
    assert chunks([5, 1, 2, 7, 8, 9], 8) == [[1, 2], [5], [7, 8, 9]]
    assert chunks([], 3) == []


def test_fixed_batch_agent_gives_the_same_rows_whatever_the_batch(checkpoint):
    from reflexdrive.agents.registry import make_agent

    rng = np.random.default_rng(0)
    obs = {"bev": (rng.random((4, 4, 64, 64)) > 0.8).astype(np.uint8) * 255,
           "ego": rng.normal(20, 1, (4, 8)).astype(np.float32),
           "lidar": np.zeros((4, 64, 2), np.float32)}
    full = FixedBatchAgent(make_agent("cnn", checkpoint=str(checkpoint), device="cpu"), 4)
    full.reset(np.ones(4, bool))
    reference = full.act(obs, {}).actions
    padded = FixedBatchAgent(make_agent("cnn", checkpoint=str(checkpoint), device="cpu"), 4)
    padded.reset(np.ones(2, bool))
    actions = padded.act({k: v[:2] for k, v in obs.items()}, {}).actions
    assert actions.shape == (2, 2) and np.array_equal(actions, reference[:2])
    with pytest.raises(ValueError, match="5 envs for a batch of 4"):
        padded.act({k: np.concatenate([v, v[:1]]) for k, v in obs.items()}, {})


# ----------------------------------------------------------------------------- config


def test_grid_and_identity(tmp_path, checkpoint):
    config = tiny(tmp_path / "o", checkpoint)
    assert [(c.stack, c.mode, c.extra_latency_s) for c in config.cells()] == CELLS
    assert config.total_episodes == 12
    swept = tiny(tmp_path / "o", checkpoint, sweep_lockstep=True, extra_latency_s=(0.1, 0.0))
    assert swept.extra_latency_s == (0.0, 0.1) and len(swept.cells()) == 8
    assert config.cells()[2].run.latency == "fixed:0.02+0.1"
    assert config.cells()[3].run.checkpoint == str(checkpoint)
    unused = tiny(tmp_path / "o", checkpoint, stacks=("staged",))
    assert unused.checkpoints == {} and unused.cells()[0].run.checkpoint is None
    reference = tiny(tmp_path / "o", checkpoint, stacks=("staged", "reference-driver"))
    cells = [(c.stack, c.mode, c.extra_latency_s, c.run.latency) for c in reference.cells()]
    assert [cell for cell in cells if cell[0] == "reference-driver"] == [
        ("reference-driver", "lockstep", 0.0, "fixed:0"),
        ("reference-driver", "realtime", 0.0, "fixed:0")]       # no compute, no sweep
    measured = tiny(tmp_path / "o", checkpoint, latency="measured", envs=None)
    assert measured.envs_for("staged", "lead-brake") == 1
    assert config.envs_for("staged", "lead-brake") == 2
    assert tiny(tmp_path / "o", checkpoint, envs=None).envs_for("cnn", "lead-brake") == 8
    # how it runs is not part of the identity; what it runs is
    assert tiny(tmp_path / "o", checkpoint, executor="ray", episodes=5).identity() == \
        config.identity()
    assert tiny(tmp_path / "o", checkpoint, seed=1).identity() != config.identity()


@pytest.mark.parametrize("changes, needle", [
    ({"stacks": ("staged", "bogus")}, "stacks='bogus' is invalid: allowed values are staged"),
    ({"stacks": ()}, "stacks=() is invalid: must be a non-empty list"),
    ({"scenarios": ("lead-brake", "lead-brake")}, "must not repeat"),
    ({"modes": ("slow",)}, "modes='slow'"),
    ({"episodes": 0}, "episodes=0 is invalid: must be an integer >= 1"),
    ({"extra_latency_s": (0.0, -0.1)}, "extra_latency_s=-0.1"),
    ({"extra_latency_s": (0.1, 0.1)}, "must not repeat"),
    ({"extra_latency_s": "0.1"}, "must be a non-empty list of seconds"),
    ({"latency": "fixed:0.02+0.1"}, "without a +SECONDS suffix"),
    ({"latency": "fast"}, "unknown latency scheme"),
    ({"budget_s": 0}, "budget_s=0 is invalid"),
    ({"executor": "spark"}, "executor='spark'"),
    ({"address": "10.0.0.1:6379"}, "only the ray executor takes an address"),
    ({"checkpoints": {"staged": "x.pt"}}, "only the end-to-end stacks"),
    ({"checkpoints": {"cnn": "/nonexistent/cnn.pt"}}, "no such file"),
    ({"scenario_config": {"speed": 3}}, "speed"),
    ({"video": -1}, "video=-1"),
])
def test_bad_settings_name_the_field(tmp_path, checkpoint, changes, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")
                       .replace("+", r"\+")):
        tiny(tmp_path / "o", checkpoint, **changes)


def test_a_missing_shipped_checkpoint_says_how_to_get_one(tmp_path, monkeypatch):
    import reflexdrive.policies.registry

    monkeypatch.setattr(reflexdrive.policies.registry, "CHECKPOINT_DIR", tmp_path / "none")
    with pytest.raises(ConfigError, match="shipped gru checkpoint is missing: train it .* "
                       "to policies/checkpoints/gru.pt, or pass --checkpoint gru=PATH"):
        CompareConfig(stacks=("staged", "gru"), out=str(tmp_path / "o"))


def test_toml_sets_the_same_fields(tmp_path, checkpoint):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "cnn.pt").write_bytes(Path(checkpoint).read_bytes())
    (folder / "exp.toml").write_text(
        'stacks = ["staged", "cnn"]\nscenarios = ["lead-brake"]\nepisodes = 3\nseed = 4\n'
        'latency = "fixed:0.03"\nextra_latency_s = [0, 0.2]\nbudget_s = 0.05\n'
        'modes = ["realtime"]\nvideo = 2\nout = "runs/x"\n'
        '[checkpoints]\ncnn = "cnn.pt"\n[scenario_config]\nduration_s = 2.0\n'
        'onset_s = [0.5, 1.0]\n')
    config = CompareConfig.from_toml(folder / "exp.toml")
    assert config.stacks == ("staged", "cnn") and config.episodes == 3 and config.seed == 4
    assert config.extra_latency_s == (0.0, 0.2) and config.budget_s == 0.05
    assert config.video == 2 and config.modes == ("realtime",)
    assert config.scenario_config == {"duration_s": 2.0, "onset_s": (0.5, 1.0)}
    # relative paths in the file are relative to the file's folder
    assert config.checkpoints == {"cnn": str((folder / "cnn.pt").resolve())}
    assert config.out == str((folder / "runs" / "x").resolve())
    # CLI flags (keyword overrides) win over the file
    assert CompareConfig.from_toml(folder / "exp.toml", episodes=7).episodes == 7


@pytest.mark.parametrize("text, needle", [
    ('stack = ["staged"]\n', "key='stack' is invalid: unknown key; allowed keys are stacks, "
                             "scenarios, episodes"),
    ('episodes = "20"\n', "episodes='20' is invalid: must be an integer"),
    ('stacks = "staged"\n', "stacks='staged' is invalid: must be a list of stack names"),
    ('sweep_lockstep = 1\n', "sweep_lockstep=1 is invalid: must be true or false"),
    ('stacks = ["staged", "tesla"]\n', "stacks='tesla' is invalid: allowed values are"),
    ('episodes = \n', "is not valid TOML"),
])
def test_bad_toml_names_the_key(tmp_path, text, needle):
    (tmp_path / "exp.toml").write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        CompareConfig.from_toml(tmp_path / "exp.toml")
    with pytest.raises(ConfigError, match="no such file"):
        CompareConfig.from_toml(tmp_path / "missing.toml")


# ----------------------------------------------------------------------------- CLI


def cli(capsys, args: list[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_flags_override_the_config_file(tiny_out, checkpoint, tmp_path, capsys,
                                            monkeypatch):
    """The tiny compare again through the CLI (its TOML says 5 episodes, --episodes 2
    wins): everything is already there, so it runs nothing, prints the table and writes
    the report."""
    (tmp_path / "exp.toml").write_text(
        'stacks = ["staged", "cnn"]\nscenarios = ["lead-brake"]\nepisodes = 5\n'
        'latency = "fixed:0.02"\nextra_latency_s = [0.0, 0.1]\nenvs = 2\n'
        f'[checkpoints]\ncnn = "{checkpoint}"\n'
        '[scenario_config]\nduration_s = 1.5\nonset_s = [0.5, 1.0]\n')
    before = snapshot(tiny_out / "cells")
    code, out, err = cli(capsys, ["compare", "--config", str(tmp_path / "exp.toml"),
                                  "--episodes", "2", "--out", str(tiny_out), "--no-progress"])
    assert code == 0, err
    assert "reaction_ms [95% CI]" in out and "0 run now" in out
    assert f"report: {tiny_out / 'report.html'}" in out
    assert (tiny_out / "report.html").stat().st_size > 0 and (tiny_out / "report.md").exists()
    assert snapshot(tiny_out / "cells") == before


BAD_INPUT = [
    (["--stacks", "staged,bogus"], "stacks='bogus' is invalid: allowed values are staged"),
    (["--stacks", "staged,,cnn"], "--stacks='staged,,cnn' is invalid"),
    (["--extra-latency", "0,0.1ms"], "--extra-latency='0,0.1ms' is invalid: must be "
                                     "comma-separated seconds"),
    (["--extra-latency", "0,,0.1"], "--extra-latency='0,,0.1' is invalid"),
    (["--extra-latency", "0,-0.1"], "extra_latency_s=-0.1 is invalid"),
    (["--latency", "fixed:x"], "latency='fixed:x' is invalid"),
    (["--checkpoint", "cnn"], "--checkpoint='cnn' is invalid: expected STACK=PATH"),
    (["--executor", "spark"], "executor='spark' is invalid"),
    (["--seed", "1"], "holds a compare with other settings (seed: 0 there, 1 here)"),
]


@pytest.mark.parametrize("extra, needle", BAD_INPUT)
def test_bad_input_exits_2_with_one_line_and_keeps_results(tiny_out, checkpoint, capsys,
                                                           extra, needle):
    base = ["compare", "--stacks", "staged,cnn", "--scenarios", "lead-brake",
            "--episodes", "2", "--latency", "fixed:0.02", "--extra-latency", "0,0.1",
            "--checkpoint", f"cnn={checkpoint}", "--envs", "2", "--set", "duration_s=1.5",
            "--set", "onset_s=[0.5,1]", "--out", str(tiny_out), "--no-progress"]
    before = snapshot(tiny_out)
    code, out, err = cli(capsys, base + extra)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("reflexdrive: error:")
    assert needle in err
    assert snapshot(tiny_out) == before


def test_bad_config_file_and_out(tmp_path, tiny_out, capsys):
    before = snapshot(tiny_out)
    (tmp_path / "exp.toml").write_text('stacks = ["staged"]\nepisode = 3\n')
    code, _, err = cli(capsys, ["compare", "--config", str(tmp_path / "exp.toml"),
                                "--out", str(tiny_out)])
    assert code == 2 and "key='episode' is invalid: unknown key; allowed keys are" in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = cli(capsys, ["compare", "--stacks", "staged", "--latency", "fixed:0",
                                "--out", str(tmp_path / "a-file")])
    assert code == 2 and "must be a directory (a file is in the way)" in err
    assert (tmp_path / "a-file").read_text() == "not a folder"
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, ["compare", "--stacks", "staged", "--latency", "fixed:0",
                                "--out", str(tmp_path / "busy")])
    assert code == 2 and "non-empty directory without compare.json" in err
    code, _, err = cli(capsys, ["compare", "--stacks", "staged", "--latency", "fixed:0"])
    assert code == 2 and "give an output directory" in err
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    code, _, err = cli(capsys, ["compare", "--stacks", "cnn", "--latency", "fixed:0",
                                "--checkpoint", f"cnn={tmp_path / 'broken.pt'}",
                                "--out", str(tmp_path / "fresh")])
    assert code == 2 and "broken.pt" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "fresh").exists()
    assert snapshot(tiny_out) == before


def test_measured_plus_extra_charges_the_stacks_own_timings_plus_the_delay():
    from reflexdrive.run.runner import RunConfig, run

    config = RunConfig(scenario="lead-brake", episodes=1, latency="measured+0.05",
                       mode="lockstep", scenario_config=SHORT)
    _, ticks = run(config, progress=False)
    observed = ticks[ticks["observed"]]
    stages = ["latency_perception_s", "latency_tracking_s", "latency_planning_s",
              "latency_control_s"]
    assert (observed["latency_extra_s"] == 0.05).all()
    assert (observed[stages].sum(axis=1) > 0).all()          # the stack's own wall clock
    assert np.allclose(observed[stages + ["latency_extra_s"]].sum(axis=1),
                       observed["latency_s"])


@pytest.mark.parametrize("value", [True, "3", 3.0])
@pytest.mark.parametrize("name", ["episodes", "seed", "envs", "ray_cpus", "chunk_episodes",
                                  "threads", "video", "bootstrap_resamples"])
def test_compare_config_integers_reject_bools_strings_and_floats(tmp_path, checkpoint, name,
                                                                  value):
    with pytest.raises(ConfigError, match=rf"^{name}=.* is invalid: must be an integer >= "):
        tiny(tmp_path / "o", checkpoint, **{name: value})


def test_compare_config_field_messages(tmp_path, checkpoint):
    with pytest.raises(ConfigError, match=r"^envs=0 is invalid: must be an integer >= 1 "
                                          r"\(or left out\)$"):
        tiny(tmp_path / "o", checkpoint, envs=0)
    with pytest.raises(ConfigError, match=r"^budget_s=60 is invalid: must be a finite number "
                                          r"of seconds in \(0, 60\)$"):
        tiny(tmp_path / "o", checkpoint, budget_s=60)
    with pytest.raises(ConfigError, match=r"^sweep_lockstep=1 is invalid: must be true or "
                                          r"false$"):
        tiny(tmp_path / "o", checkpoint, sweep_lockstep=1)
    with pytest.raises(ConfigError, match=r"^latency=3 is invalid: must be a latency spec "
                                          r"string or a table of STACK = SPEC"):
        tiny(tmp_path / "o", checkpoint, latency=3)
    assert tiny(tmp_path / "o", checkpoint, budget_s=1).budget_s == 1.0
    assert isinstance(tiny(tmp_path / "o", checkpoint, budget_s=1).budget_s, float)


def test_cells_run_on_one_thread_when_measured_and_on_every_core_otherwise(monkeypatch):
    """`cell_threads`: the wall clock is the latency only with `measured` (alone on a core);
    a replayed or fixed latency takes every core unless `threads` says otherwise."""
    monkeypatch.setattr(executors, "available_cores", lambda: 6)
    config = CompareConfig(stacks=("staged",), scenarios=("lead-brake",), modes=("realtime",),
                           extra_latency_s=(0.0,), episodes=1, latency="fixed:0")
    measured, fixed = (replace(config.cells()[0].run, latency=spec)
                       for spec in ("measured+0.05", "fixed:0.03"))
    assert executors.cell_threads(measured) == 1
    assert executors.cell_threads(fixed) == 6
    assert executors.cell_threads(fixed, threads=2) == executors.cell_threads(measured, 2) == 2
