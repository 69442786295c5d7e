"""The batched `Agent` protocol, its `Decision`, and the stage timer every stack uses.

An agent drives `N` envs at once: `act` takes batched observations (and the batched
ground-truth `info` a vector env returns, which only oracle components may read) and
returns one `Decision` with an action per env, the wall-clock latency of each stage for the
whole batched call, and the stage products (detections, tracks, plan) for inspection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import numpy as np
from reflexdrive.envs.latency import synchronize_cuda

Observation = Mapping[str, np.ndarray]
"""Batched observation: "bev" uint8 (N, C, H, W), "lidar" float32 (N, beams, 2),
"ego" float32 (N, k), "route" float32 (N, K, 2) (`envs.road_map.route_targets`)."""
Info = Mapping[str, Any]
"""Batched info of a Gymnasium vector env: "gt_objects" (N, M, 8), "gt_valid" (N, M), "map"
(the HD map, `envs.road_map`, each array with a leading N), ..."""


@dataclass
class Decision:
    """What an agent returns for one tick of `N` envs.

    Attributes:
        actions: float32 `(N, 2)`: `[acceleration m/s^2, steering rad]` per env.
        stage_latency_s: wall-clock seconds each stage took for the batched call.
        products: intermediate products by stage name (e.g. "detections", "tracks", "plan").
    """

    actions: np.ndarray
    stage_latency_s: dict[str, float]
    products: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_s(self) -> float:
        """Total latency: the stages run one after another [s]."""
        return float(sum(self.stage_latency_s.values()))


class Agent(Protocol):
    """A driving stack over a batch of envs."""

    name: str
    stage_names: tuple[str, ...]

    def reset(self, done: np.ndarray) -> None:
        """Forget per-env state where `done` (bool `(N,)`) is True (new episodes there)."""

    def act(self, obs: Observation, info: Info) -> Decision:
        """Decide the actions of all `N` envs for this tick."""


class StageTimer:
    """Times named stages with `time.perf_counter_ns`, CUDA-synchronised when on a GPU.

    Usage::

        timer = StageTimer()
        with timer("perception"):
            detections = perceive(obs)
        timer.latencies  # {"perception": 0.0012}
    """

    def __init__(self) -> None:
        self.latencies: dict[str, float] = {}
        self._stage: str | None = None
        self._start = 0

    def __call__(self, stage: str) -> "StageTimer":
        self._stage = stage
        return self

    def __enter__(self) -> "StageTimer":
        synchronize_cuda()
        self._start = time.perf_counter_ns()
        return self

    def __exit__(self, *exc) -> None:
        synchronize_cuda()
        self.latencies[self._stage] = (time.perf_counter_ns() - self._start) * 1e-9
