"""The example stack of docs/your-stack.md: its control law by hand, and a run of it
through the CLI exactly as the docs give it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reflexdrive.agents.factories import check_agent

from examples.headway_agent import RANGE_M, HeadwayAgent, make
from reflexdrive.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPEC = "examples.headway_agent:make"


def _obs(speed_mps: float, lane_offset_m: float, hit: tuple[float, float] | None):
    """One env: 64 lidar beams that hit nothing, or beam 0 (straight ahead) hitting at
    `hit = (range m, range rate m/s)`."""
    lidar = np.zeros((1, 64, 2), np.float32)
    lidar[..., 0] = RANGE_M
    if hit is not None:
        lidar[0, 0] = hit
    ego = np.array([[speed_mps, 0.0, 0.0, lane_offset_m, 0.0, 1.0, 3.0, 1.0]], np.float32)
    return {"lidar": lidar, "ego": ego}


def test_the_control_law_by_hand():
    agent = make()
    check_agent("stack", SPEC, agent)
    # a closing lead 25 m ahead (range 27.5 m from the ego's centre) at 20 m/s, closing 5:
    # cruise 0.5 (30 - 20) = 5; follow 0.4 (25 - 2 - 1.5 * 20) - 5 = -7.8;
    # stop -5^2 / (2 (25 - 2)) = -0.543; the smallest wins
    decision = agent.act(_obs(20.0, 0.0, (27.5, -5.0)), {})
    assert decision.actions[0, 0] == pytest.approx(-7.8, abs=1e-5)
    assert decision.actions[0, 1] == 0.0
    assert set(decision.stage_latency_s) == set(agent.stage_names) == {"control"}
    # nothing ahead: cruise, 0.5 (30 - 20) = 5, capped at 2 m/s^2; 0.5 m left of the
    # centre at 20 m/s steers right: 5 (-0.5 / (1.5 * 20)) / (0.5 * 20) = -1/120 rad
    decision = agent.act(_obs(20.0, 0.5, None), {})
    np.testing.assert_allclose(decision.actions[0], [2.0, -1 / 120], rtol=1e-5)
    # a vehicle in the next lane (4 m to the left, seen by beam 5 at 31.6 m) is ignored
    obs = _obs(20.0, 0.0, None)
    obs["lidar"][0, 5] = (4.0 / np.sin(2 * np.pi * 5 / 64), -5.0)
    assert agent.act(obs, {}).actions[0, 0] == 2.0
    assert isinstance(HeadwayAgent().name, str)


def test_the_example_runs_through_the_cli_from_the_repository_root(
        capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)                   # as a console script: ROOT not on sys.path
    monkeypatch.setattr(sys, "path", [p for p in sys.path
                                      if Path(p or ".").resolve() != ROOT])
    for name in ("examples", "examples.headway_agent"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    out = tmp_path / "headway"
    code = main(["run", "--stack", SPEC, "--scenario", "lead-brake", "--episodes", "2",
                 "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    episodes = pd.read_csv(out / "episodes.csv")
    assert list(episodes["seed"]) == [0, 1]
    assert set(episodes["stack"]) == {SPEC}
    assert set(episodes["end_reason"]) == {"time_limit"}          # no collision, on the road
    assert not episodes["collided"].any() and not episodes["offroad"].any()
    assert (episodes["brake_onset_s"] > 0).all()                   # it brakes for the lead
    assert (episodes["min_ttc_s"] > 1.0).all()
    ticks = pd.read_csv(out / "ticks.csv")
    assert len(ticks) == 2 * 120                     # two episodes of 12 s at 10 Hz


def test_the_walk_through_quotes_the_example_verbatim():
    source = (ROOT / "examples" / "headway_agent.py").read_text()
    doc = (ROOT / "docs" / "your-stack.md").read_text()
    blocks = [block.split("```", 1)[0] for block in doc.split("```python\n")[1:]]
    quotes = [block for block in blocks if block.splitlines()[0] in source]
    assert len(quotes) == 4                  # the class, the lead, the control law, make()
    for block in quotes:
        assert block in source, block
