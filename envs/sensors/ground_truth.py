"""Ground truth and proprioception: the ego vector of the observation and the object list
that goes in `info`."""

from __future__ import annotations

import numpy as np
from reflexdrive.envs.config import EGO_FEATURES, SensorConfig
from reflexdrive.envs.sensors.frames import wrap_angle
from reflexdrive.envs.sensors.kernels.ground_truth import ground_truth_kernel
from reflexdrive.envs.sensors.numba_path import snapshot_arrays
from reflexdrive.envs.sensors.threads import kernel_threads_for
from reflexdrive.envs.types import EGO, WorldSnapshot

OBJECT_FIELDS = (
    "x_m",
    "y_m",
    "vx_mps",
    "vy_mps",
    "heading_rad",
    "length_m",
    "width_m",
    "vehicle_id",
)
"""Columns of `ground_truth_objects`: centre `x, y` in the ego frame [m]; ground velocity
expressed in the ego frame [m/s] (not relative to the ego); heading relative to the ego's,
wrapped to (-pi, pi] [rad]; length, width [m]; vehicle id (as a float)."""


def ego_vector(snapshot: WorldSnapshot) -> np.ndarray:
    """The ego's proprioception, in the order of `config.EGO_FEATURES`.

    Returns:
        `(B, 8)` float32: speed [m/s], acceleration [m/s^2], steering [rad], lane offset
        [m], heading error [rad], lane index, lane count, on road (0 or 1).
    """
    columns = (
        snapshot.speed[:, EGO],
        snapshot.acceleration[:, EGO],
        snapshot.ego_steering,
        snapshot.ego_lane_offset,
        snapshot.ego_heading_error,
        snapshot.ego_lane_index,
        snapshot.ego_lane_count,
        snapshot.ego_on_road,
    )
    if len(columns) != len(EGO_FEATURES):
        raise AssertionError("ego_vector is out of step with config.EGO_FEATURES")
    return np.stack([np.asarray(c, dtype=np.float32) for c in columns], axis=1)


def ground_truth_objects(snapshot: WorldSnapshot, config: SensorConfig,
                         kernel: str = "numba") -> tuple[np.ndarray, np.ndarray]:
    """The other vehicles as a fixed-size object list in the metric ego frame (for `info`).

    On the host (it goes to `info` there anyway). No noise, no occlusion, no range limit:
    every valid non-ego vehicle, nearest centre first (ties keep slot order), cut to
    `config.max_objects`.

    Args:
        snapshot: `B` worlds, `N` slots (slot 0 the ego).
        config: `max_objects`.
        kernel: "numba" (`kernels.ground_truth.ground_truth_kernel`) or "numpy"; both
            compute in float64 and round to float32, and agree to a float32 ulp (libm's and numpy's
            cos / sin / hypot may differ by a float64 ulp).

    Returns:
        `(objects (B, M, 8) float32, valid (B, M) bool)` with `M = config.max_objects` and
        columns `OBJECT_FIELDS`: x, y [m]; ground velocity in the ego frame vx, vy [m/s];
        heading relative to the ego in (-pi, pi] [rad]; length, width [m]; vehicle id.
        Padding rows are zeros with `valid` False.
    """
    if kernel not in ("numba", "numpy"):
        raise ValueError(f"kernel must be 'numba' or 'numpy', got {kernel!r}")
    batch, slots = snapshot.shape
    if kernel == "numba":
        objects = np.empty((batch, config.max_objects, len(OBJECT_FIELDS)), dtype=np.float32)
        valid = np.empty((batch, config.max_objects), dtype=bool)
        arrays = snapshot_arrays(snapshot, "position", "heading", "speed", "length", "width",
                                  "valid")
        vehicle_id = np.ascontiguousarray(snapshot.vehicle_id, dtype=np.int64)
        with kernel_threads_for(batch):
            ground_truth_kernel(*arrays[:5], vehicle_id, arrays[5], objects, valid)
        return objects, valid
    position = np.asarray(snapshot.position, dtype=np.float64)
    heading = np.asarray(snapshot.heading, dtype=np.float64)
    # `to_ego_frame`, one coordinate at a time (no stacking: this runs on every tick).
    dx = position[..., 0] - position[:, EGO:EGO + 1, 0]
    dy = position[..., 1] - position[:, EGO:EGO + 1, 1]
    cos, sin = np.cos(heading[:, EGO:EGO + 1]), np.sin(heading[:, EGO:EGO + 1])
    x, y = dx * cos + dy * sin, dy * cos - dx * sin
    rel_heading = wrap_angle(heading - heading[:, EGO:EGO + 1])
    speed = np.asarray(snapshot.speed, dtype=np.float64)
    table = np.empty((batch, slots, len(OBJECT_FIELDS)))      # (B, N, 8)
    for i, column in enumerate((x, y, speed * np.cos(rel_heading), speed * np.sin(rel_heading),
                                rel_heading, snapshot.length, snapshot.width,
                                snapshot.vehicle_id)):
        table[..., i] = column
    other = np.asarray(snapshot.valid, dtype=bool).copy()
    other[:, EGO] = False
    distance = np.where(other, np.hypot(x, y), np.inf)
    order = np.argsort(distance, axis=1, kind="stable")[:, :config.max_objects]
    taken = order.shape[1]
    rows = (order + np.arange(batch)[:, None] * slots).reshape(-1)   # flat (world, slot)
    picked_valid = other.reshape(-1)[rows].reshape(batch, taken)
    picked = table.reshape(-1, len(OBJECT_FIELDS))[rows].reshape(batch, taken, -1)
    objects = np.zeros((batch, config.max_objects, len(OBJECT_FIELDS)), dtype=np.float32)
    valid = np.zeros((batch, config.max_objects), dtype=bool)
    objects[:, :taken] = np.where(picked_valid[..., None], picked, 0.0)
    valid[:, :taken] = picked_valid
    return objects, valid
