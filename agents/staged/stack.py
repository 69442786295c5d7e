"""`StagedAgent`: perception -> tracking -> planning -> control, each stage timed."""

from __future__ import annotations

import inspect

import numpy as np
from reflexdrive.agents.base import Decision, Info, Observation, StageTimer


def takes_road_map(stage) -> bool:
    """Whether `stage(...)` accepts a `road_map` keyword (or any keyword)."""
    try:
        parameters = inspect.signature(stage).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "road_map" or p.kind is inspect.Parameter.VAR_KEYWORD
               for p in parameters)


class StagedAgent:
    """The modular stack. Each stage is a swappable callable with one job:

    - perception(obs, info) -> Detections
    - tracker(detections, ego, time_s) -> Tracks (`time_s` `(N,)`: the observation's
      timestamp [s], from `info["time_s"]`, so the filter knows how long it predicts)
    - planner(tracks, ego, time_s) -> Plan
    - controller(plan, ego) -> actions `(N, 2)`

    Where the env gives map data (`info["map"]`, `envs.road_map`), the tracker and the
    planner also get it as the keyword `road_map` if their signature takes one (the
    built-in ones do: they follow the route through turns); other stages never see it.

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
        self._map_stages = {"tracker": takes_road_map(tracker),
                            "planner": takes_road_map(planner)}

    def reset(self, done: np.ndarray) -> None:
        for stage in (self.tracker, self.planner, self.controller):
            stage.reset(done)

    def act(self, obs: Observation, info: Info) -> Decision:
        timer = StageTimer()
        with timer("perception"):
            detections = self.perception(obs, info)
        time_s = np.asarray(info["time_s"], dtype=np.float64)
        road_map = info.get("map")
        with timer("tracking"):
            if road_map is not None and self._map_stages["tracker"]:
                tracks = self.tracker(detections, obs["ego"], time_s, road_map=road_map)
            else:
                tracks = self.tracker(detections, obs["ego"], time_s)
        with timer("planning"):
            if road_map is not None and self._map_stages["planner"]:
                plan = self.planner(tracks, obs["ego"], time_s, road_map=road_map)
            else:
                plan = self.planner(tracks, obs["ego"], time_s)
        with timer("control"):
            actions = self.controller(plan, obs["ego"])
        return Decision(actions=np.asarray(actions, dtype=np.float32),
                        stage_latency_s=timer.latencies,
                        products={"detections": detections, "tracks": tracks, "plan": plan})
