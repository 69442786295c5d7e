"""Perception stages: observations (and, for the oracle, ground truth) to `Detections`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from reflexdrive.agents.base import Info, Observation
from reflexdrive.agents.staged.types import Detections
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.sensors import OBJECT_FIELDS

from reflexdrive.common.validation import ConfigError

_COLUMN = {name: i for i, name in enumerate(OBJECT_FIELDS)}


@dataclass
class OraclePerception:
    """Ground-truth objects from `info` within the sensors' range, optionally with Gaussian
    position noise.

    Attributes:
        position_noise_m: std of the noise added to each object's position [m].
        range_m: objects whose centre is farther than this from the ego's are not seen
            (`SensorConfig.range_m`: what the real sensors could see) [m]; None: all.
        seed: seed of the noise generator.
    """

    position_noise_m: float = 0.0
    range_m: float | None = SensorConfig().range_m
    seed: int = 0
    name: str = "oracle"

    def __post_init__(self) -> None:
        if not self.position_noise_m >= 0.0:
            raise ConfigError("position_noise_m", self.position_noise_m, "must be >= 0")
        if self.range_m is not None and not self.range_m > 0.0:
            raise ConfigError("range_m", self.range_m, "must be > 0 (or None: unlimited)")
        self._rng = np.random.default_rng(self.seed)

    def __call__(self, obs: Observation, info: Info) -> Detections:
        objects = np.asarray(info["gt_objects"], dtype=np.float64)  # (N, M, 8)
        valid = np.asarray(info["gt_valid"], dtype=bool)
        position = objects[..., [_COLUMN["x_m"], _COLUMN["y_m"]]]
        if self.range_m is not None:
            valid = valid & (np.hypot(position[..., 0], position[..., 1]) <= self.range_m)
        if self.position_noise_m > 0.0:
            position = position + self._rng.normal(0.0, self.position_noise_m, position.shape)
        return Detections(
            position=position,
            velocity=objects[..., [_COLUMN["vx_mps"], _COLUMN["vy_mps"]]],
            size=objects[..., [_COLUMN["length_m"], _COLUMN["width_m"]]],
            heading=objects[..., _COLUMN["heading_rad"]],
            object_id=np.where(valid, objects[..., _COLUMN["vehicle_id"]], -1).astype(np.int64),
            valid=valid,
        )
