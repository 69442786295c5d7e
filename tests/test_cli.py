"""`reflexdrive` CLI: bad input is one clear line and exit 2; a run writes loadable results."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from reflexdrive.cli import main

BASE = ["run", "--episodes", "1", "--no-progress"]


def run_cli(capsys, args):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("extra, needle", [
    (["--scenario", "moon"], "scenario='moon' is invalid: allowed values are highway, merge"),
    (["--stack", "autopilot"], "stack='autopilot' is invalid: allowed values are staged"),
    (["--perception", "radar"], "perception='radar' is invalid: allowed values are oracle"),
    (["--mode", "fast"], "mode='fast' is invalid: allowed values are realtime, lockstep"),
    (["--latency", "fixed:-0.1"], "fixed:-0.1"),
    (["--latency", "fixed:abc"], "fixed:abc"),
    (["--latency", "sometimes"], "unknown latency scheme"),
    (["--policy-frequency", "7"], "policy_frequency"),
    (["--on-overrun", "panic"], "on_overrun='panic' is invalid"),
    (["--execution", "parallel"],
     "execution='parallel' is invalid: allowed values are sequential, pipelined"),
    (["--episodes", "0"], "episodes=0 is invalid: must be an integer >= 1"),
    (["--budget", "-1"], "budget"),
    (["--set", "duration_s=-4"], "duration_s"),
    (["--set", "warp=9"], "warp"),
    (["--backend", "gpu"], "backend='gpu' is invalid: allowed values are auto, highway, batched"),
    (["--device", "tpu"], "device='tpu' is invalid: allowed values are cpu, cuda, auto"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, extra, needle):
    code, out, err = run_cli(capsys, BASE + ["--out", str(tmp_path / "x")] + extra)
    assert code == 2
    assert err.startswith("reflexdrive: error: ") and err.count("\n") == 1, err
    assert needle in err
    assert "Traceback" not in err


def test_corrupt_profile_file(capsys, tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text('{"format": "reflexdrive.latency-profile", "version": 1, "stages": [')
    code, _, err = run_cli(capsys, BASE + ["--out", str(tmp_path / "x"),
                                           "--latency", f"profile:{profile}"])
    assert code == 2 and err.count("\n") == 1 and str(profile) in err


def test_missing_profile_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, BASE + ["--out", str(tmp_path / "x"),
                                           "--latency", "profile:/nonexistent/p.json"])
    assert code == 2 and "/nonexistent/p.json" in err


def test_unwritable_out(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = run_cli(capsys, BASE + ["--out", str(blocker)])
    assert code == 2 and "--out" in err and "a file is in the way" in err
    code, _, err = run_cli(capsys, BASE + ["--out", str(blocker / "below")])
    assert code == 2 and "--out" in err and "writable" in err
    assert blocker.read_text() == "not a directory"


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--episodes", "many", "--out", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--episodes" in err and "invalid int value" in err


def test_console_entry_point_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "reflexdrive.cli", "run", "--scenario", "x",
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "reflexdrive: error: scenario='x' is invalid: allowed values are highway, merge, "
        "roundabout, intersection, lead-brake, cut-in, stopped-vehicle, "
        "stopped-vehicle-curve, intersection-cross-traffic"]


def test_help_explains_itself():
    result = subprocess.run([sys.executable, "-m", "reflexdrive.cli", "run", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--scenario", "--stack", "--latency", "--budget", "--envs", "--out",
                   "profile:PATH", "lockstep"):
        assert option in result.stdout


def test_scenarios_lists_every_scenario(capsys):
    code, out, _ = run_cli(capsys, ["scenarios"])
    assert code == 0
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert names == ["highway", "merge", "roundabout", "intersection", "lead-brake", "cut-in",
                     "stopped-vehicle", "stopped-vehicle-curve", "intersection-cross-traffic"]


@pytest.mark.slow
def test_run_writes_results_and_resumes(capsys, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--scenario", "lead-brake", "--episodes", "2", "--seed", "3",
            "--latency", "fixed:0.03", "--no-progress", "--out", str(out),
            "--set", "duration_s=2", "--set", "onset_s=[0.5, 1.0]"]
    code, stdout, err = run_cli(capsys, args)
    assert code == 0, err
    assert "lead-brake" in stdout
    episodes = pd.read_csv(out / "episodes.csv")
    for column in ("scenario", "stack", "seed", "mode", "latency", "hazard_onset_s",
                   "reaction_time_s", "reaction_wait_s", "reaction_notice_s",
                   "reaction_compute_s", "collided", "min_ttc_s", "min_gap_m",
                   "peak_decel_mps2", "progress_m", "mean_abs_jerk_mps3", "latency_p50_s",
                   "latency_p99_s", "overrun_rate", "ticks"):
        assert column in episodes.columns
    assert episodes["seed"].tolist() == [3, 4]
    ticks = pd.read_csv(out / "ticks.csv")
    assert ticks.groupby("seed").size().tolist() == [20, 20]
    assert (ticks["lands_s"] - ticks["t_s"]).round(9).eq(0.03).all()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"

    # Resume: asking for 3 episodes runs only the third; the first two rows are kept as is.
    before = episodes.copy()
    code, _, err = run_cli(capsys, [a if a != "2" else "3" for a in args])
    assert code == 0, err
    after = pd.read_csv(out / "episodes.csv")
    assert after["seed"].tolist() == [3, 4, 5]
    pd.testing.assert_frame_equal(after.iloc[:2], before)

    # Different settings in the same --out are refused, results left intact.
    code, _, err = run_cli(capsys, args + ["--mode", "lockstep"])
    assert code == 2 and "different settings" in err
    pd.testing.assert_frame_equal(pd.read_csv(out / "episodes.csv"), after)
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_run_with_a_profile_replays_recorded_latencies(capsys, tmp_path):
    """`--latency profile:PATH`: every observed tick's stage latencies are one recorded row
    of the profile, and the same seeds replay the same latencies."""
    from reflexdrive.envs.latency import LatencyProfile, save_profile

    stages = {"perception": (0.010, 0.020, 0.030), "planning": (0.001, 0.002, 0.150)}
    save_profile(LatencyProfile(stack="staged", device="cpu: test", batch_size=1,
                                stages=stages, created="2026-11-23T12:00:00Z"),
                 tmp_path / "profile.json")
    rows = {(p, q) for p, q in zip(*stages.values())}
    ticks = []
    for name in ("a", "b"):
        args = ["run", "--scenario", "lead-brake", "--episodes", "2", "--no-progress",
                "--latency", f"profile:{tmp_path / 'profile.json'}", "--out",
                str(tmp_path / name), "--set", "duration_s=2", "--set", "onset_s=[1,1.5]"]
        code, _, err = run_cli(capsys, args)
        assert code == 0, err
        ticks.append(pd.read_csv(tmp_path / name / "ticks.csv"))
    observed = ticks[0][ticks[0]["observed"]]
    pairs = set(zip(observed["latency_perception_s"], observed["latency_planning_s"]))
    assert pairs <= rows and len(pairs) > 1
    assert (~ticks[0]["observed"]).any()               # the 0.18 s row drops a frame
    pd.testing.assert_frame_equal(ticks[0], ticks[1])


@pytest.mark.slow
def test_killed_run_leaves_whole_files_and_resumes(tmp_path):
    """SIGKILL in the middle of a run: episodes.csv is whole (every row complete), no temp
    file is taken for a result, and the same command finishes the remaining episodes."""
    import os
    import signal
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "reflexdrive.cli", "run", "--scenario", "lead-brake",
               "--episodes", "6", "--no-progress", "--out", str(out),
               "--set", "duration_s=1.5", "--set", "onset_s=[0.5,1]"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "episodes.csv").exists() and len(pd.read_csv(out / "episodes.csv")) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = pd.read_csv(out / "episodes.csv")
    assert 2 <= len(partial) < 6 and partial.notna()["progress_m"].all()
    assert not (out / "ticks.csv").exists()             # written only when the run completes
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    episodes = pd.read_csv(out / "episodes.csv")
    assert episodes["seed"].tolist() == list(range(6))
    pd.testing.assert_frame_equal(episodes.iloc[:len(partial)], partial)
    assert len(pd.read_csv(out / "ticks.csv")) == 6 * 15


def test_demo_compares_the_staged_stack_with_the_shipped_policies(monkeypatch, tmp_path):
    """`reflexdrive demo` is a compare sized to answer: staged (sequential and pipelined)
    plus every end-to-end policy whose shipped checkpoint exists, beside the two UN R157
    reference drivers, on the three hazards, realtime, each cell one batch, 10 s episodes,
    and the staged stack's latency cost curve over extra latencies 0, 0.1, 0.2, 0.3 s."""
    from reflexdrive.policies.registry import shipped_checkpoint

    import reflexdrive.cli as cli

    seen = {}
    monkeypatch.setattr(cli, "_compare_and_report",
                        lambda config, progress, min_critical: seen.update(
                            config=config, min_critical=min_critical) or 0)
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--episodes", "2"]) == 0
    config = seen["config"]
    shipped = [name for name in ("cnn", "gru", "transformer")
               if shipped_checkpoint(name).exists()]
    assert tuple(config.stacks) == ("staged", *shipped, "reference-driver", "r157-regulation")
    assert tuple(config.scenarios) == ("lead-brake", "cut-in", "stopped-vehicle")
    assert tuple(config.extra_latency_s) == (0.0, 0.1, 0.2, 0.3) and config.episodes == 2
    assert config.modes == ("realtime",) and config.envs == 2 and config.latency == "profiled"
    assert config.execution == ("sequential", "pipelined") and seen["min_critical"] == 100
    assert config.scenario_config == {"duration_s": 9.0}
    cells = [(c.stack, c.execution, c.extra_latency_s) for c in config.cells(False)
             if c.scenario == "cut-in"]
    assert cells == ([("staged", "sequential", e) for e in (0.0, 0.1, 0.2, 0.3)]
                     + [("staged", "pipelined", e) for e in (0.0, 0.1, 0.2, 0.3)]
                     + [(s, "sequential", 0.0) for s in (*shipped, "reference-driver",
                                                         "r157-regulation")])
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--episodes", "0"]) == 2


def test_run_and_profile_defaults_are_the_config_defaults():
    import dataclasses

    from reflexdrive.cli import build_parser
    from reflexdrive.run.profile import ProfileConfig
    from reflexdrive.run.runner import RunConfig

    args = build_parser().parse_args(["run", "--out", "x"])
    config = RunConfig()
    for flag, name in (("scenario", "scenario"), ("stack", "stack"), ("episodes", "episodes"),
                       ("seed", "seed"), ("mode", "mode"), ("latency", "latency"),
                       ("budget", "budget_s"), ("on_overrun", "on_overrun"), ("envs", "envs"),
                       ("execution", "execution"), ("backend", "backend"), ("device", "device"),
                       ("checkpoint", "checkpoint"), ("perception", "perception"),
                       ("controller", "controller"),
                       ("simulation_frequency", "simulation_frequency"),
                       ("policy_frequency", "policy_frequency")):
        assert getattr(args, flag) == getattr(config, name), flag
    args = build_parser().parse_args(["profile", "--out", "x"])
    for item in dataclasses.fields(ProfileConfig):
        if hasattr(args, item.name):
            assert getattr(args, item.name) == getattr(ProfileConfig(), item.name), item.name



def _subparser(parser, command):
    import argparse

    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[command]


def _helps(parser, command) -> dict[str, str]:
    return {action.dest: action.help for action in _subparser(parser, command)._actions}


def _patch_default(monkeypatch, cls, name, value):
    """Change the default of dataclass field `cls.name` (as an edit of the class would)."""
    import dataclasses

    item = next(f for f in dataclasses.fields(cls) if f.name == name)
    monkeypatch.setattr(item, "default", value)


def test_compare_defaults_are_the_config_defaults(monkeypatch):
    """The compare options default to None (so a --config file's values apply) and say
    CompareConfig's defaults in their help: the help is read from the dataclass."""
    from reflexdrive.cli import build_parser, compare_settings, shown
    from reflexdrive.common.validation import field_default
    from reflexdrive.compare.config import CompareConfig

    args = build_parser().parse_args(["compare"])
    assert compare_settings(args) == {}          # every field keeps CompareConfig's default
    helps = _helps(build_parser(), "compare")
    for flag, name in (("stacks", "stacks"), ("scenarios", "scenarios"),
                       ("episodes", "episodes"), ("seed", "seed"), ("modes", "modes"),
                       ("latency", "latency"), ("extra_latency", "extra_latency_s"),
                       ("budget", "budget_s"), ("backend", "backend"), ("device", "device"),
                       ("perception", "perception"), ("controller", "controller"),
                       ("execution", "execution"), ("executor", "executor"),
                       ("threads", "threads"), ("video", "video")):
        assert f"(default {shown(field_default(CompareConfig, name))})" in helps[flag], flag
    _patch_default(monkeypatch, CompareConfig, "episodes", 7)
    _patch_default(monkeypatch, CompareConfig, "budget_s", 0.25)
    helps = _helps(build_parser(), "compare")
    assert helps["episodes"].endswith("(default 7)")
    assert helps["budget"].endswith("(default 0.25)")


def test_demo_defaults_are_the_config_defaults(monkeypatch):
    from reflexdrive.cli import _seconds_list, build_parser
    from reflexdrive.common.validation import field_default
    from reflexdrive.compare.config import (
        DEMO_EPISODES,
        DEMO_EXTRA_LATENCY_S,
        DEMO_OUT,
        CompareConfig,
    )

    args = build_parser().parse_args(["demo"])
    assert args.seed == field_default(CompareConfig, "seed")
    assert args.video == field_default(CompareConfig, "video")
    assert (args.episodes, args.out) == (DEMO_EPISODES, DEMO_OUT)
    assert tuple(_seconds_list("--extra-latency", args.extra_latency)) == DEMO_EXTRA_LATENCY_S
    _patch_default(monkeypatch, CompareConfig, "seed", 11)
    _patch_default(monkeypatch, CompareConfig, "video", 2)
    args = build_parser().parse_args(["demo"])
    assert (args.seed, args.video) == (11, 2)


def test_train_defaults_are_the_config_defaults(monkeypatch):
    from reflexdrive.cli import build_parser
    from reflexdrive.common.validation import field_default
    from reflexdrive.train.detector import DetectorTrainingConfig
    from reflexdrive.train.imitation_config import ImitationConfig
    from reflexdrive.train.ppo import PPOConfig

    args = build_parser().parse_args(["train"])
    assert args.seed == field_default(ImitationConfig, "seed")
    assert args.seed == field_default(DetectorTrainingConfig, "seed")
    assert args.seed == field_default(PPOConfig, "seed")
    helps = _helps(build_parser(), "train")
    assert "(default 1,200:" in helps["action_weights"]
    _patch_default(monkeypatch, ImitationConfig, "seed", 5)
    _patch_default(monkeypatch, ImitationConfig, "action_weights", (1.0, 50.0))
    _patch_default(monkeypatch, ImitationConfig, "latency", "fixed:0.05")
    args = build_parser().parse_args(["train"])
    helps = _helps(build_parser(), "train")
    assert args.seed == 5 and "(default 5)" in helps["seed"]
    assert "(default 1,50:" in helps["action_weights"]
    assert "(default fixed:0.05)" in helps["latency"]


def test_run_default_is_the_run_config_default(monkeypatch):
    from reflexdrive.cli import build_parser
    from reflexdrive.run.runner import RunConfig

    _patch_default(monkeypatch, RunConfig, "episodes", 3)
    assert build_parser().parse_args(["run", "--out", "x"]).episodes == 3
