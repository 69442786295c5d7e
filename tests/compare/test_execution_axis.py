"""Execution as a compare grid axis: the cells (pipelined only in realtime and for stacks
with several stages), `sweep_stacks`, identity and resume, the summary's grouping, the
report's labels, and a tiny compare with both executions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reflexdrive.cli import build_parser, compare_settings, few_critical, main
from reflexdrive.common.validation import ConfigError
from reflexdrive.compare.config import CompareConfig
from reflexdrive.compare.experiment import compare
from reflexdrive.compare.summary import GROUP, group_rng, summarize
from reflexdrive.report.reading import execution_labels, labelled, read_tables

SHORT = {"duration_s": 1.5, "onset_s": (0.5, 1.0)}
BOTH = ("sequential", "pipelined")


def config(**changes) -> CompareConfig:
    settings = dict(stacks=("staged", "reference-driver"), scenarios=("lead-brake",),
                    episodes=2, latency="fixed:0.02", extra_latency_s=(0.0, 0.1),
                    modes=("lockstep", "realtime"), execution=BOTH, scenario_config=SHORT,
                    envs=2)
    return CompareConfig(**{**settings, **changes})


def test_pipelined_cells_only_in_realtime_for_stacks_with_several_stages():
    cells = config(stacks=("staged", "cnn", "reference-driver")).cells(replay_profiles=False)
    grid = [(c.stack, c.mode, c.execution, c.extra_latency_s) for c in cells]
    assert grid == [
        ("staged", "lockstep", "sequential", 0.0),           # lockstep: both agree
        ("staged", "realtime", "sequential", 0.0), ("staged", "realtime", "sequential", 0.1),
        ("staged", "realtime", "pipelined", 0.0), ("staged", "realtime", "pipelined", 0.1),
        ("cnn", "lockstep", "sequential", 0.0),              # one stage: sequential only
        ("cnn", "realtime", "sequential", 0.0), ("cnn", "realtime", "sequential", 0.1),
        ("reference-driver", "lockstep", "sequential", 0.0),
        ("reference-driver", "realtime", "sequential", 0.0)]
    assert [c.run.execution for c in cells] == [c.execution for c in cells]
    assert [c.name for c in cells[1:5]] == [
        "staged/lead-brake/realtime+0.0s", "staged/lead-brake/realtime+0.1s",
        "staged/lead-brake/realtime-pipelined+0.0s", "staged/lead-brake/realtime-pipelined+0.1s"]
    assert cells[4].key == ("staged", "lead-brake", "realtime", "pipelined", 0.1, 1.0)
    scaled = config(latency_scale=(1.0, 2.0)).cells(replay_profiles=False)
    assert "staged/lead-brake/realtime-pipelined-x2.0+0.1s" in [c.name for c in scaled]
    # a user's stack is not built to count its stages: it runs both
    assert config().pipelines("pkg.module:factory", "realtime")
    assert not config().pipelines("staged", "lockstep")


def test_one_execution_and_its_identity():
    assert config(execution="pipelined").execution == ("pipelined",)
    assert config(execution=["sequential"]).execution == ("sequential",)
    assert "execution" not in config(execution="sequential").identity()    # as before
    assert config(execution="pipelined").identity()["execution"] == "pipelined"
    assert config().identity()["execution"] == ["sequential", "pipelined"]
    for bad, needle in (("parallel", "execution='parallel' is invalid: allowed values are "
                                     "sequential, pipelined"),
                        ((), "must be a non-empty list"),
                        (("pipelined", "pipelined"), "must not repeat")):
        with pytest.raises(ConfigError, match=needle):
            config(execution=bad)


def test_sweep_stacks_sweeps_only_those():
    swept = config(stacks=("staged", "cnn"), sweep_stacks=("staged",), modes=("realtime",),
                   execution="sequential")
    assert [(c.stack, c.extra_latency_s) for c in swept.cells(False)] == [
        ("staged", 0.0), ("staged", 0.1), ("cnn", 0.0)]
    assert swept.identity()["sweep_stacks"] == ["staged"]
    assert "sweep_stacks" not in config().identity()
    with pytest.raises(ConfigError, match="sweep_stacks='cnn' is invalid: allowed values "
                                          "are staged, reference-driver"):
        config(sweep_stacks=("cnn",))


def test_cli_and_toml_take_one_or_several_executions(tmp_path):
    args = build_parser().parse_args(["compare", "--execution", "sequential,pipelined"])
    assert compare_settings(args)["execution"] == ["sequential", "pipelined"]
    args = build_parser().parse_args(["compare", "--execution", "pipelined"])
    assert CompareConfig(**compare_settings(args)).execution == ("pipelined",)
    for text, expected in (('execution = "pipelined"', ("pipelined",)),
                           ('execution = ["sequential", "pipelined"]', BOTH)):
        path = tmp_path / "c.toml"
        path.write_text(text + "\n")
        assert CompareConfig.from_toml(path).execution == expected
    path.write_text("execution = 3\n")
    with pytest.raises(ConfigError, match="execution"):
        CompareConfig.from_toml(path)


def _episodes(execution: str | None, reaction: list[float]) -> pd.DataFrame:
    n = len(reaction)
    frame = pd.DataFrame({
        "stack": "staged", "scenario": "lead-brake", "mode": "realtime",
        "extra_latency_s": 0.0, "latency_scale": 1.0, "latency": "fixed:0", "envs": 1,
        "budget_s": 0.1, "seed": range(n), "reaction_time_s": reaction,
        "reaction_wait_s": 0.05, "reaction_notice_s": 0.2, "reaction_compute_s": 0.0,
        "collided": False, "critical": True, "hazard_onset_s": 1.0,
        "min_ttc_s": [math.inf] * n, "min_gap_m": 10.0, "progress_m": 100.0,
        "peak_decel_mps2": 3.0, "mean_abs_jerk_mps3": 1.0, "latency_p50_s": 0.01,
        "latency_p99_s": 0.02, "overrun_rate": 0.0, "dropped_frames": 0})
    if execution is not None:
        frame["execution"] = execution
    return frame


def test_summary_groups_by_execution_and_keeps_older_intervals():
    rows = pd.concat([_episodes("sequential", [0.2, 0.4, 0.6]),
                      _episodes("pipelined", [0.1, 0.1, 0.4])], ignore_index=True)
    summary = summarize(rows, seed=3)
    assert list(summary.columns[:len(GROUP)]) == GROUP
    assert list(summary["execution"]) == ["sequential", "pipelined"]
    assert summary["reaction_time_mean_s"].tolist() == pytest.approx([0.4, 0.2])
    # an episodes.csv from before the axis is sequential, with the same intervals
    older = summarize(_episodes(None, [0.2, 0.4, 0.6]), seed=3)
    pd.testing.assert_series_equal(older.iloc[0], summary.iloc[0], check_names=False)
    # the sequential group's generator is the one keyed as before the axis
    rng = group_rng(3, ("staged", "lead-brake", "realtime", 0.0))
    index = rng.integers(0, 3, size=(2000, 3))
    means = np.array([0.2, 0.4, 0.6])[index].mean(axis=1)
    low = np.percentile(means, 2.5, method="inverted_cdf")
    assert summary.iloc[0]["reaction_time_mean_lo_s"] == pytest.approx(low)


def test_report_labels_tell_the_executions_apart():
    summary = pd.DataFrame({"stack": ["staged", "staged", "cnn"],
                            "execution": ["sequential", "pipelined", "sequential"]})
    labels = execution_labels(summary)
    assert labels == {("staged", "sequential"): "staged sequential",
                      ("staged", "pipelined"): "staged pipelined",
                      ("cnn", "sequential"): "cnn"}
    assert labelled(summary, labels)["stack"].tolist() == [
        "staged sequential", "staged pipelined", "cnn"]
    one = summary.assign(execution="pipelined")
    assert execution_labels(one) == {} and labelled(one, {}) is one
    assert execution_labels(summary.drop(columns="execution")) == {}


def test_few_critical_names_the_short_cells():
    summary = pd.DataFrame({
        "stack": ["staged", "cnn", "staged"], "scenario": ["cut-in", "cut-in", "highway"],
        "mode": "realtime", "execution": ["pipelined", "sequential", "sequential"],
        "extra_latency_s": [0.1, 0.0, 0.0], "latency_scale": 1.0,
        "rates_over": ["critical", "critical", "all"], "rated_episodes": [99, 100, 5]})
    assert few_critical(summary, 100) == ["staged cut-in realtime pipelined +100 ms: 99"]
    assert few_critical(summary, 99) == []


@pytest.fixture(scope="module")
def both_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("execution") / "out"
    result = compare(config(out=str(out), modes=("realtime",), extra_latency_s=(0.0,)),
                     progress=False)
    assert result.ran == 6                       # staged x 2 executions, reference x 1
    return out


def test_tiny_compare_with_both_executions(both_out):
    episodes = pd.read_csv(both_out / "episodes.csv")
    assert list(episodes.columns[:len(GROUP)]) == GROUP
    assert list(zip(episodes["stack"], episodes["execution"])) == [
        ("staged", "sequential")] * 2 + [("staged", "pipelined")] * 2 + [
        ("reference-driver", "sequential")] * 2
    assert episodes["cell"].tolist()[2] == "staged/lead-brake/realtime-pipelined+0.0s"
    summary = pd.read_csv(both_out / "summary.csv")
    assert list(zip(summary["stack"], summary["execution"])) == [
        ("staged", "sequential"), ("staged", "pipelined"), ("reference-driver", "sequential")]
    decisions = pd.read_csv(both_out / "decisions.csv")
    assert set(decisions["execution"]) == set(BOTH)
    # fixed:0.02 on a 0.1 s tick: pipelined stages of the staged stack keep one decision
    # per tick too, so both executions decide 10 times a second
    assert summary["decisions_per_s"].iloc[:2].tolist() == pytest.approx([10.0, 10.0],
                                                                          rel=0.15)
    tables = read_tables(both_out)
    assert set(tables.summary["stack"]) == {"staged sequential", "staged pipelined",
                                            "reference-driver"}
    assert set(tables.episodes["stack"]) == set(tables.summary["stack"])


def test_resuming_with_both_executions_runs_nothing(both_out, capsys):
    result = compare(config(out=str(both_out), modes=("realtime",), extra_latency_s=(0.0,)),
                     progress=False)
    assert result.ran == 0
    assert main(["compare", "--out", str(both_out), "--stacks", "staged,reference-driver",
                 "--scenarios", "lead-brake", "--episodes", "2", "--modes", "realtime",
                 "--latency", "fixed:0.02", "--extra-latency", "0", "--envs", "2",
                 "--set", "duration_s=1.5", "--set", "onset_s=[0.5,1.0]",
                 "--execution", "sequential", "--no-progress"]) == 2
    assert "execution: ['sequential', 'pipelined'] there" in capsys.readouterr().err
