"""The learning curve of a PPO run (`reflexdrive.train.learning_curve`,
`scripts/ppo_learning_curve.py`): counts and intervals, the cache, the outputs."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.policies.registry import build, save_policy

from reflexdrive.common.validation import ConfigError
from reflexdrive.run import evaluation
from reflexdrive.train.learning_curve import (
    COLUMNS,
    CurveConfig,
    cell,
    counts,
    curve_table,
    default_title,
    evaluate_snapshot,
    every,
    learning_curve,
    pooled,
)
from reflexdrive.train.ppo import PPOConfig, train_ppo
from reflexdrive.train.ppo_snapshots import snapshot_path, snapshots

ROOT = Path(__file__).resolve().parents[2]
TINY = {"encoder": {"channels": [4], "bev_features": 16, "ego_hidden": 8, "features": 16},
        "head": {"hidden": 16}}
SHORT = {"duration_s": 4.0, "onset_s": (1.0, 2.0)}      # lead-brake, hazard at 1-2 s
Z2 = 1.959963984540054 ** 2


def fake_run(folder: Path, timesteps=(0, 128, 256), latency="fixed:0.05") -> Path:
    """A PPO run folder with a `ppo_run.json` and tiny cnn snapshots (other weights each)."""
    folder.mkdir(parents=True)
    (folder / "ppo_run.json").write_text(json.dumps(
        {"config": {"policy": "cnn", "latency": latency}}))
    for index, steps in enumerate(timesteps):
        write_snapshot(folder, steps, seed=index)
    return folder


def write_snapshot(folder: Path, timesteps: int, seed: int) -> Path:
    torch.manual_seed(seed)
    policy = build("cnn", policy_spec()["observation"], **TINY)
    return save_policy(snapshot_path(folder, "cnn", timesteps), policy, policy_spec(),
                       {"snapshot": {"timesteps": timesteps}})


class FakeEvaluation:
    """Counts as a function of the snapshot and scenario: collisions = timesteps // 64 + the
    scenario's index; records each call."""

    def __init__(self, fail_at: int | None = None):
        self.calls: list[tuple[str, str, str]] = []
        self.fail_at = fail_at

    def __call__(self, path, policy, scenario, latency, config):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt                       # killed mid-curve
        self.calls.append((Path(path).name, scenario, latency))
        steps = int(Path(path).stem.split("-")[1])
        collisions = steps // 64 + config.scenarios.index(scenario)
        return {"collisions": collisions, "offroad": 1, "failures": collisions + 1,
                "episodes": config.episodes, "progress_m_sum": 100.0 * config.episodes,
                "speed_mps_sum": 20.0 * config.episodes}


# ----------------------------------------------------------------------------- counting


def tally(collisions, offroad, failures, episodes, progress=0.0, speed=0.0):
    return {"collisions": collisions, "offroad": offroad, "failures": failures,
            "episodes": episodes, "progress_m_sum": progress, "speed_mps_sum": speed}


def test_wilson_intervals_and_pooling_by_hand():
    none = cell(tally(0, 0, 0, 100))
    # 0 of n: the Wilson interval is [0, z^2 / (n + z^2)]
    assert none["collision_rate"] == 0.0 and none["collision_ci95"][0] == 0.0
    assert none["collision_ci95"][1] == pytest.approx(Z2 / (100 + Z2), rel=1e-12)
    three = cell(tally(3, 1, 3, 100, progress=25_000.0, speed=2_000.0))
    assert three["collision_rate"] == 0.03
    # 3 of 100: centre (0.03 + z^2/200) / (1 + z^2/100) = 0.047387, half-width
    # z sqrt(0.03 * 0.97 / 100 + z^2 / 40000) / (1 + z^2/100) = 0.037133
    assert three["collision_ci95"] == pytest.approx([0.0102545, 0.0845194], abs=1e-6)
    assert three["failure_ci95"] == three["collision_ci95"] and three["offroad_rate"] == 0.01
    assert (three["mean_progress_m"], three["mean_speed_mps"]) == (250.0, 20.0)
    both = pooled({"a": tally(3, 1, 3, 100, 25_000.0, 2_000.0),
                   "b": tally(0, 2, 2, 100, 15_000.0, 1_000.0)})
    assert (both["collisions"], both["offroad"], both["failures"], both["episodes"]) == (
        3, 3, 5, 200)
    assert both["collision_rate"] == 0.015 and both["failure_rate"] == 0.025
    assert (both["mean_progress_m"], both["mean_speed_mps"]) == (200.0, 15.0)
    empty = cell(tally(0, 0, 0, 0))
    assert math.isnan(empty["collision_rate"]) and math.isnan(empty["collision_ci95"][0])


def test_counts_read_the_runners_episode_columns():
    frame = pd.DataFrame({"collided": [True, False, True, False],
                          "offroad": [False, False, True, True],
                          "progress_m": [10.0, 20.0, 30.0, 40.0],
                          "mean_speed_mps": [5.0, 6.0, 7.0, 8.0]})
    assert counts(frame) == {"collisions": 2, "offroad": 2, "failures": 3, "episodes": 4,
                             "progress_m_sum": 100.0, "speed_mps_sum": 26.0}


# ----------------------------------------------------------------------------- the curve


def test_the_curve_covers_every_snapshot_and_caches_each(tmp_path):
    run = fake_run(tmp_path / "run")
    config = CurveConfig(run_dir=str(run), out_dir=str(tmp_path / "curve"),
                         scenarios=("lead-brake", "cut-in"), episodes=50)
    fake = FakeEvaluation()
    document, frame = learning_curve(config, progress=False, evaluate=fake)
    # the run's own latency by default; every snapshot x scenario once
    assert [call[2] for call in fake.calls] == ["fixed:0.05"] * 6
    assert [t["timesteps"] for t in document["snapshots"]] == [0, 128, 256]
    last = document["snapshots"][-1]
    assert last["scenarios"]["lead-brake"]["collisions"] == 4
    assert last["scenarios"]["cut-in"]["collisions"] == 5
    assert (last["pooled"]["collisions"], last["pooled"]["episodes"]) == (9, 100)
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 3 * 3
    pooled_rows = frame[frame["scenario"] == "pooled"]
    assert pooled_rows["collision_rate"].tolist() == [1 / 100, 5 / 100, 9 / 100]
    assert document["settings"]["seed"] == 300_000
    assert default_title({**document, "settings": {
        **document["settings"], "latency": "profile:policies/profiles/cnn-cpu.json+0.1"}}) == (
        "cnn PPO: realtime, latency profile:cnn-cpu.json+0.1, seeds 300000+")

    # rerun: nothing to do; a snapshot rewritten with other weights (a resumed run) is
    # evaluated again, and so is everything at another latency
    again = FakeEvaluation()
    assert learning_curve(config, progress=False, evaluate=again)[0] == document
    assert again.calls == []
    write_snapshot(run, 128, seed=99)
    learning_curve(config, progress=False, evaluate=again)
    assert [call[:2] for call in again.calls] == [("cnn-000000000128.pt", "lead-brake"),
                                                  ("cnn-000000000128.pt", "cut-in")]
    other = CurveConfig(run_dir=str(run), out_dir=str(tmp_path / "curve"),
                        scenarios=("lead-brake", "cut-in"), episodes=50,
                        latency="fixed:0.15")
    shifted = FakeEvaluation()
    learning_curve(other, progress=False, evaluate=shifted)
    assert len(shifted.calls) == 6 and {c[2] for c in shifted.calls} == {"fixed:0.15"}


def test_snapshots_with_the_same_weights_are_evaluated_once(tmp_path):
    run = fake_run(tmp_path / "run", timesteps=(0, 128))
    write_snapshot(run, 256, seed=0)          # as the warm-up leaves the policy: step 0's
    config = CurveConfig(run_dir=str(run), out_dir=str(tmp_path / "curve"),
                         scenarios=("cut-in",), episodes=10)
    fake = FakeEvaluation()
    document, _ = learning_curve(config, progress=False, evaluate=fake)
    assert [call[0] for call in fake.calls] == ["cnn-000000000000.pt", "cnn-000000000128.pt"]
    first, _, last = document["snapshots"]
    assert last["scenarios"] == first["scenarios"] and last["checksum"] == first["checksum"]
    cached = json.loads((tmp_path / "curve" / "snapshots" / "cnn-000000000256.json")
                        .read_text())
    assert cached["checksum"] == first["checksum"] and cached["timesteps"] == 256


def test_a_stride_evaluates_every_nth_snapshot_and_the_last():
    assert every([0, 1, 2, 3, 4, 5], 2) == [0, 2, 4, 5]
    assert every([0, 1, 2, 3, 4], 2) == [0, 2, 4]
    assert every([0, 1, 2], 1) == [0, 1, 2] and every([7], 3) == [7] and every([], 2) == []


def test_a_killed_curve_resumes_at_the_next_scenario(tmp_path):
    run = fake_run(tmp_path / "run", timesteps=(0, 128))
    config = CurveConfig(run_dir=str(run), out_dir=str(tmp_path / "curve"),
                         scenarios=("lead-brake", "cut-in", "stopped-vehicle"), episodes=10)
    with pytest.raises(KeyboardInterrupt):
        learning_curve(config, progress=False, evaluate=FakeEvaluation(fail_at=4))
    rest = FakeEvaluation()
    learning_curve(config, progress=False, evaluate=rest)
    assert [call[:2] for call in rest.calls] == [("cnn-000000000128.pt", "cut-in"),
                                                 ("cnn-000000000128.pt", "stopped-vehicle")]


@pytest.mark.parametrize("fields, message", [
    ({"seed": 500_000}, "seed=.*development seeds lie in \\[0, 500,000\\)"),
    ({"seed": 499_950, "episodes": 100}, "seed=\\[499950, 500049\\] is invalid"),
    ({"seed": 1_000_000}, "development seeds"),
    ({"scenarios": ("moon",)}, "scenarios='moon' is invalid: allowed values are highway"),
    ({"scenarios": ("cut-in", "cut-in")}, "must not repeat"),
    ({"episodes": 0}, "episodes=0 is invalid: must be an integer >= 1"),
    ({"latency": "measured"}, "latency='measured' is invalid: a learning curve needs a "
                              "reproducible latency"),
    ({"latency": "profile:/no/such.json"}, "latency='profile:/no/such.json' is invalid"),
    ({"mode": "fast"}, "mode='fast' is invalid: allowed values are realtime, lockstep"),
])
def test_bad_settings_name_the_field(tmp_path, fields, message):
    with pytest.raises(ConfigError, match=message):
        CurveConfig(run_dir=str(tmp_path), out_dir=str(tmp_path / "c"), **fields)


def test_a_folder_without_a_run_or_snapshots_is_refused(tmp_path):
    config = CurveConfig(run_dir=str(tmp_path / "none"), out_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="run_dir=.* must be a PPO run folder"):
        learning_curve(config, progress=False, evaluate=FakeEvaluation())
    run = fake_run(tmp_path / "empty", timesteps=())
    config = CurveConfig(run_dir=str(run), out_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="holds no policy snapshots"):
        learning_curve(config, progress=False, evaluate=FakeEvaluation())


# ----------------------------------------------------------------------------- for real


def load_script():
    spec = importlib.util.spec_from_file_location(
        "ppo_learning_curve", ROOT / "scripts" / "ppo_learning_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_tiny_runs_snapshots_evaluated_end_to_end_by_the_script(tmp_path, capsys):
    torch.manual_seed(3)
    config = PPOConfig(policy="cnn", num_envs=2, n_steps=64, batch_size=64, n_epochs=1,
                       total_timesteps=256, policy_config=TINY, out_dir=str(tmp_path / "run"),
                       snapshot_every=1, device="cpu", threads=1, seed=2, mode="realtime",
                       latency="fixed:0.05", value_warmup_updates=0)
    train_ppo(config, progress=False)
    run = tmp_path / "run"
    assert [t for t, _ in snapshots(run)] == [0, 128, 256]
    # what the curve counts is what the runner's episodes say for that checkpoint
    curve = CurveConfig(run_dir=str(run), out_dir=str(tmp_path / "x"), scenarios=(
        "lead-brake",), episodes=3, envs=3, latency="fixed:0.1", scenario_config=SHORT)
    path = snapshot_path(run, "cnn", 128)
    frame = evaluation.episodes("lead-brake", "cnn", 3, 300_000, 3, checkpoint=str(path),
                                mode="realtime", latency="fixed:0.1", twins=False,
                                scenario_config=SHORT)
    assert frame["seed"].tolist() == [300_000, 300_001, 300_002]
    assert evaluate_snapshot(path, "cnn", "lead-brake", "fixed:0.1", curve) == counts(frame)

    out, figure = tmp_path / "curve", tmp_path / "docs" / "curve.png"
    script = load_script()
    # the script has no --scenario-config: the test shortens the episodes through it
    original = script.CurveConfig
    script.CurveConfig = lambda **kw: original(**kw, scenario_config=SHORT)
    try:
        assert script.main([str(run), "--out", str(out), "--figure", str(figure),
                            "--scenarios", "lead-brake", "--episodes", "2", "--envs", "2",
                            "--latency", "fixed:0.1"]) == 0
    finally:
        script.CurveConfig = original
    document = json.loads((out / "learning_curve.json").read_text())
    assert json.loads(capsys.readouterr().out) == document
    assert [s["timesteps"] for s in document["snapshots"]] == [0, 128, 256]
    assert document["settings"]["latency"] == "fixed:0.1"
    table = pd.read_csv(out / "learning_curve.csv")
    assert list(table.columns) == list(COLUMNS)
    assert table["scenario"].tolist() == ["lead-brake", "pooled"] * 3
    assert table["episodes"].tolist() == [2] * 6
    pd.testing.assert_frame_equal(table, curve_table(document), check_dtype=False)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == [
        f"cnn-{t:012d}.json" for t in (0, 128, 256)]
    # bad input: one line naming the field, exit 2
    assert script.main([str(run), "--out", str(out), "--seed", "600000"]) == 2
    assert "seed=" in capsys.readouterr().err
