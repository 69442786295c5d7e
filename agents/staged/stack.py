"""`StagedAgent`: perception -> tracking -> planning -> control, each stage timed."""

from __future__ import annotations

import numpy as np
from reflexdrive.agents.base import Decision, Info, Observation, StageTimer


class StagedAgent:
    """The modular stack. Each stage is a swappable callable with one job:

    - perception(obs, info) -> Detections
    - tracker(detections, ego, time_s) -> Tracks (`time_s` `(N,)`: the observation's
      timestamp [s], from `info["time_s"]`, so the filter knows how long it predicts)
    - planner(tracks, ego, time_s) -> Plan
    - controller(plan, ego) -> actions `(N, 2)`

    Every stage runs on the whole batch of envs; its wall-clock time is recorded separately
    and its product is returned in the `Decision` (the stack's interpretability).
    """

    stage_names = ("perception", "tracking", "planning", "control")

    def __init__(self, perception, tracker, planner, controller, name: str = "staged"):
        self.perception = perception
        self.tracker = tracker
        self.planner = planner
        self.controller = controller
        self.name = name

    def reset(self, done: np.ndarray) -> None:
        for stage in (self.tracker, self.planner, self.controller):
            stage.reset(done)

    def act(self, obs: Observation, info: Info) -> Decision:
        timer = StageTimer()
        with timer("perception"):
            detections = self.perception(obs, info)
        time_s = np.asarray(info["time_s"], dtype=np.float64)
        with timer("tracking"):
            tracks = self.tracker(detections, obs["ego"], time_s)
        with timer("planning"):
            plan = self.planner(tracks, obs["ego"], time_s)
        with timer("control"):
            actions = self.controller(plan, obs["ego"])
        return Decision(actions=np.asarray(actions, dtype=np.float32),
                        stage_latency_s=timer.latencies,
                        products={"detections": detections, "tracks": tracks, "plan": plan})
