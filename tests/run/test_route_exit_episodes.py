"""`route_exit_reached` in `episodes.csv` rows from real runs on both backends: an agent
that follows the HD map's route through the roundabout and the intersection reaches the
exit on each, one whose time runs out on the ring does not, and both backends agree."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import pure_pursuit
from reflexdrive.agents.base import Decision

from reflexdrive.run.runner import RunConfig, run


class RouteFollower:
    """`pure_pursuit` (tests/conftest.py) on `info["map"]["route"]` for `N` envs (the
    ego's speed: `obs["ego"][:, 0]`)."""

    name = "route-follower"
    stage_names = ("total",)

    def __init__(self, target_mps: float):
        self.target_mps = target_mps

    def reset(self, done: np.ndarray) -> None:
        pass

    def act(self, obs, info) -> Decision:
        route = np.asarray(info["map"]["route"])
        speed = np.asarray(obs["ego"], dtype=np.float64)[:, 0]
        commands = [pure_pursuit(route[i], speed[i], self.target_mps).as_array()
                    for i in range(len(speed))]
        return Decision(actions=np.array(commands, dtype=np.float32), stage_latency_s={})


@pytest.mark.slow
@pytest.mark.parametrize("scenario, seed, duration_s, target_mps, reached", [
    ("roundabout", 0, 11.0, 8.0, True),      # enters the exit lane after ~10.2 s
    ("intersection", 2, 8.0, 8.0, True),     # enters the outgoing road after ~7.3 s
    ("roundabout", 0, 5.0, 8.0, False),      # the time limit ends it on the ring
])
def test_both_backends_record_whether_the_route_exit_was_reached(scenario, seed, duration_s,
                                                                target_mps, reached):
    rows = {}
    for backend in ("highway", "batched"):
        config = RunConfig(scenario=scenario, episodes=1, seed=seed, mode="lockstep",
                           latency="fixed:0", envs=1, backend=backend,
                           scenario_config={"duration_s": duration_s})
        frame, _ = run(config, agent=RouteFollower(target_mps), progress=False)
        rows[backend] = frame.iloc[0]
    for row in rows.values():
        assert row["end_reason"] == "time_limit"
        assert bool(row["route_exit_reached"]) is reached
    assert rows["highway"]["progress_m"] == pytest.approx(rows["batched"]["progress_m"],
                                                          abs=1e-6)
