"""scripts/eval_latency_aware.py: the goal's arithmetic on hand-counted cells, and one tiny
end-to-end run (small untrained cnn checkpoints, development seeds, short episodes)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.policies.registry import build, save_policy

from reflexdrive.common.validation import ConfigError

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "eval_latency_aware.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("eval_latency_aware_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson 95 % interval written out (z = 1.959964)."""
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def test_rate_cell_is_the_count_the_share_and_its_wilson_interval(script):
    cell = script.rate_cell(10, 200)
    assert (cell["collisions"], cell["episodes"], cell["rate"]) == (10, 200, 0.05)
    assert cell["ci95"] == pytest.approx(wilson(10, 200), abs=1e-12)
    assert script.rate_cell(0, 0) == {"collisions": 0, "episodes": 0, "rate": None,
                                      "ci95": None}


@pytest.mark.parametrize("aware, blind, half, apart", [
    (2, 40, True, True),      # 1 % vs 20 %: [0.27, 3.57] below [15.05, 26.09]
    (20, 40, True, True),     # exactly half: 10 % [6.57, 14.94] just below [15.05, 26.09]
    (10, 20, True, False),    # half: 5 % [2.74, 8.96] overlaps 10 % [6.57, 14.94]
    (21, 40, False, False),   # more than half
    (0, 0, True, False),      # both never: 0 <= 0.5 * 0, the intervals overlap at 0
    (0, 12, True, True),      # 0 % [0, 1.9] below 6 % [3.5, 10.2]
])
def test_the_goal_is_half_the_blind_rate_with_the_intervals_apart(script, aware, blind,
                                                                  half, apart):
    a, b = script.rate_cell(aware, 200), script.rate_cell(blind, 200)
    goal = script.hazard_goal(a, b)
    assert goal["half"] is (aware / 200 <= 0.5 * blind / 200) is half
    assert goal["apart"] is (wilson(aware, 200)[1] < wilson(blind, 200)[0] if blind
                             else False) is apart
    assert goal["met"] is (half and apart)


def test_goals_need_every_hazard_at_every_goal_extra(script):
    met = {"cnn": script.rate_cell(0, 200), "cnn-blind": script.rate_cell(30, 200)}
    missed = {"cnn": script.rate_cell(10, 200), "cnn-blind": script.rate_cell(12, 200)}
    cells = {"lead-brake": {"0": missed, "100": met, "200": met},
             "cut-in": {"100": met, "200": met}}
    goals, ok = script.goals_from_cells(cells)
    assert ok and set(goals) == {"lead-brake", "cut-in"}
    assert set(goals["lead-brake"]) == {"100", "200"}          # +0 ms is no goal
    cells["cut-in"]["200"] = missed
    goals, ok = script.goals_from_cells(cells)
    assert not ok and not goals["cut-in"]["200"]["met"] and goals["cut-in"]["100"]["met"]
    del cells["cut-in"]["200"]
    goals, ok = script.goals_from_cells(cells)
    assert goals["cut-in"]["200"] == {"missing": True, "met": False} and not ok
    assert script.goals_from_cells({}) == ({}, False)


def test_cells_count_every_episode_and_the_critical_ones(script):
    rows = [("cnn", 0.1, True, True), ("cnn", 0.1, False, True), ("cnn", 0.1, True, False),
            ("cnn-blind", 0.1, True, True), ("cnn-blind", 0.1, True, True),
            ("cnn-blind", 0.1, False, False), ("cnn", 0.0, False, True)]
    frame = pd.DataFrame(rows, columns=["stack", "extra_latency_s", "collided", "critical"])
    frame["scenario"], frame["mode"] = "lead-brake", "realtime"
    lockstep = frame.iloc[:1].assign(mode="lockstep")              # not a realtime row
    cells = script.cells_from_episodes(pd.concat([frame, lockstep]), ("lead-brake",),
                                       (0.0, 0.1))
    aware = cells["lead-brake"]["100"]["cnn"]
    assert (aware["collisions"], aware["episodes"]) == (2, 3)
    assert (aware["critical"]["collisions"], aware["critical"]["episodes"]) == (1, 2)
    blind = cells["lead-brake"]["100"]["cnn-blind"]
    assert (blind["collisions"], blind["episodes"], blind["critical"]["collisions"]) == (2, 3, 2)
    assert cells["lead-brake"]["0"]["cnn-blind"]["episodes"] == 0


def test_seeds_must_be_held_out_or_development(script):
    assert script.seed_range(500_000, 200) == "held_out"
    assert script.seed_range(4100, 20) == "development"
    with pytest.raises(ConfigError, match="--seed=.* is invalid: evaluation seeds lie in "
                                          "held_out"):
        script.seed_range(499_990, 20)                          # straddles both
    with pytest.raises(ConfigError, match="--seed"):
        script.seed_range(1_000_000, 1)                         # training seeds


def _cnn(path: Path, timing_hidden: int) -> Path:
    torch.manual_seed(0)
    encoder = {"channels": [8, 8, 8], "bev_features": 32, "features": 32,
               "timing_hidden": timing_hidden}
    spec = policy_spec()
    return save_policy(path, build("cnn", spec["observation"], encoder=encoder), spec,
                       meta={"command": "test"})


def test_a_tiny_run_end_to_end(script, tmp_path, capsys):
    aware, blind = _cnn(tmp_path / "aware.pt", 8), _cnn(tmp_path / "blind.pt", 0)
    figure = tmp_path / "fig" / "latency_aware.png"
    argv = ["--aware", str(aware), "--blind", str(blind), "--scenarios", "lead-brake",
            "--extra-latency", "0.1,0.2", "--episodes", "1", "--envs", "1", "--seed", "4100",
            "--latency", "fixed:0.002", "--set", "duration_s=1.5", "--set",
            "onset_s=[0.5,1.0]", "--device", "cpu", "--out", str(tmp_path / "out"),
            "--figure", str(figure), "--no-report", "--no-progress"]
    assert script.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["cells"]) == {"lead-brake"}
    assert set(result["cells"]["lead-brake"]) == {"100", "200"}
    for extra in ("100", "200"):
        for stack in ("cnn", "cnn-blind"):
            cell = result["cells"]["lead-brake"][extra][stack]
            assert cell["episodes"] == 1 and cell["collisions"] in (0, 1)
            assert cell["ci95"] == pytest.approx(list(wilson(cell["collisions"], 1)))
        assert result["goals"]["lead-brake"][extra] == script.hazard_goal(
            *(result["cells"]["lead-brake"][extra][s] for s in ("cnn", "cnn-blind")))
    assert result["met"] is all(g["met"] for g in result["goals"]["lead-brake"].values())
    assert result["issue_conditions"] == {"held_out_seeds": False, "profiled_latency": False,
                                          "episodes_per_cell>=200": False}
    assert result["config"]["seeds"] == [4100, 4100]
    assert result["own_latency_p50_ms"] == {"cnn": 2.0, "cnn-blind": 2.0}
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result["report"] is None
    episodes = pd.read_csv(tmp_path / "out" / "episodes.csv")
    assert sorted(episodes["stack"].unique()) == ["cnn", "cnn-blind"]
    assert set(episodes["mode"]) == {"realtime"}
    assert script.main(argv) == 0                              # resumes: nothing runs again
    assert json.loads(capsys.readouterr().out)["ran_episodes"] == 0


def test_bad_input_is_one_line(script, tmp_path, capsys):
    assert script.main(["--aware", str(tmp_path / "nope.pt"), "--seed", "4100",
                        "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--aware=" in error and "no such file" in error
