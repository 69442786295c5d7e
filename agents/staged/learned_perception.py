"""The `learned` perception stage: a CNN detector on the bev raster, to `Detections`.

`LearnedPerception` runs `policies.detector.CenterNetDetector` (the checkpoint shipped at
`policies/checkpoints/detector.pt` unless told otherwise) on all `N` envs' rasters in one
forward pass and decodes its peaks to metric boxes in each ego frame. Unlike the oracle it
reads only `obs["bev"]`, never the ground truth in `info`; it cannot tell velocities
(NaN) nor identities (-1): the tracker estimates both.

`detector_spec(sensors)` is the observation spec a detector checkpoint records and is
checked against (`policies.checkpoint.check_spec`): the bev's shape and dtype and the
`SensorConfig` fields that place the raster in the ego frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from reflexdrive.agents.base import Info, Observation
from reflexdrive.agents.staged.types import Detections
from reflexdrive.envs.config import SensorConfig
from reflexdrive.policies.checkpoint import CheckpointError, check_spec
from reflexdrive.policies.detector import RasterGeometry, decode, load_detector

from reflexdrive.common.devices import resolve_device
from reflexdrive.common.validation import real, validate_fields

SPEC_SENSOR_FIELDS = ("range_m", "bev_behind_m", "bev_half_width_m", "bev_m_per_px")
"""`SensorConfig` fields a detector depends on: where the raster lies in the ego frame."""


def raster_geometry(sensors: SensorConfig) -> RasterGeometry:
    """The detector's view of a `SensorConfig`'s bev raster."""
    return RasterGeometry(range_m=sensors.range_m, behind_m=sensors.bev_behind_m,
                          half_width_m=sensors.bev_half_width_m, m_per_px=sensors.bev_m_per_px)


def detector_spec(sensors: SensorConfig) -> dict[str, Any]:
    """The observation spec of a bev detector for envs with these sensors::

        {"observation": {"bev": {"shape": [C, H, W], "dtype": "uint8"}},
         "sensors": {"range_m": ., "bev_behind_m": ., "bev_half_width_m": ., "bev_m_per_px": .}}
    """
    return {"observation": {"bev": {"shape": list(sensors.bev_shape), "dtype": "uint8"}},
            "sensors": {name: float(getattr(sensors, name)) for name in SPEC_SENSOR_FIELDS}}


@dataclass
class LearnedPerception:
    """Vehicles detected in the bev by a trained CNN (one batched forward pass per tick).

    Attributes:
        checkpoint: a detector checkpoint file; None loads the shipped one.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        score_threshold: minimum detection score in (0, 1); None uses the checkpoint's.
        sensors: the env's sensor config, checked against the checkpoint's observation
            spec at construction (None: only the bev's shape is checked, at each call).
    """

    checkpoint: str | Path | None = None
    device: str = "auto"
    score_threshold: float | None = real(None, low=0.0, high=1.0, low_inclusive=False,
                                         high_inclusive=False, optional=True)
    sensors: SensorConfig | None = None
    name: str = "learned"

    def __post_init__(self) -> None:
        validate_fields(self)
        self._device = resolve_device(self.device)
        self.model, self.checkpoint_data = load_detector(self.checkpoint, self._device)
        self.config = self.model.config
        self._path = self.checkpoint_data.path
        try:
            self._shape = tuple(self.checkpoint_data.spec["observation"]["bev"]["shape"])
        except (KeyError, TypeError):
            raise CheckpointError(self._path, "its spec has no observation.bev.shape") from None
        if self._shape != (self.config.in_channels, self.config.geometry.height,
                           self.config.geometry.width):
            raise CheckpointError(self._path, f"observation spec bev shape {self._shape} does "
                                              "not match the detector's config")
        if self.sensors is not None:
            self.check_sensors(self.sensors)

    def check_sensors(self, sensors: SensorConfig) -> None:
        """Raise `CheckpointError` unless the checkpoint was trained on rasters like these."""
        check_spec(self.checkpoint_data, detector_spec(sensors))

    def reset(self, done: np.ndarray) -> None:
        """Stateless: each tick is detected afresh."""

    def __call__(self, obs: Observation, info: Info) -> Detections:
        bev = obs["bev"]
        if bev.ndim != 4 or tuple(bev.shape[1:]) != self._shape or bev.dtype != np.uint8:
            raise CheckpointError(self._path, f"trained on uint8 bev rasters of shape "
                                              f"{self._shape}, got {bev.dtype} "
                                              f"{tuple(bev.shape[1:])}")
        with torch.inference_mode():
            rasters = torch.from_numpy(np.ascontiguousarray(bev)).to(self._device)
            boxes = decode(self.model(rasters), self.config,
                           score_threshold=self.score_threshold)
            position, size, heading, valid = (t.cpu().numpy() for t in (
                boxes.position, boxes.size, boxes.heading, boxes.valid))
        return Detections(
            position=position.astype(np.float64),
            velocity=np.full(position.shape, np.nan),
            size=size.astype(np.float64),
            heading=heading.astype(np.float64),
            object_id=np.full(valid.shape, -1, dtype=np.int64),
            valid=valid.astype(bool))
