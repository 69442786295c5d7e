"""What the reference drivers read: ground-truth objects in the ego's lane frame.

The reference drivers see no sensors. Each tick they take `info["gt_objects"]`
`(N, M, 8)` (columns `envs.sensors.OBJECT_FIELDS`, ego frame) and `info["gt_valid"]`
`(N, M)`, and the ego vector, and measure what UN R157's models measure (as esmini's
`ControllerALKS_R157SM` does, in road coordinates): the longitudinal free-space gap `s` to
each object, its lateral position `d` relative to the centre of the ego's lane, the
closing speed, time-to-collision and time headway. Everything here is a pure function of
arrays; `(N,)` per env, `(N, M)` per env and object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from reflexdrive.agents.staged.lane_frame import to_lane_frame
from reflexdrive.agents.staged.types import Tracks
from reflexdrive.envs.config import EGO_FEATURES
from reflexdrive.envs.sensors import OBJECT_FIELDS

SPEED = EGO_FEATURES.index("speed_mps")
LANE_OFFSET = EGO_FEATURES.index("lane_offset_m")
HEADING_ERROR = EGO_FEATURES.index("heading_error_rad")

_COLUMN = {name: i for i, name in enumerate(OBJECT_FIELDS)}


@dataclass(frozen=True)
class LaneScene:
    """Ground-truth objects in the ego's lane frame, one tick of `N` envs, `M` slots.

    Attributes:
        ego_speed: `(N,)` ego speed [m/s].
        s: `(N, M)` longitudinal position of each object's centre ahead of the ego's [m].
        d: `(N, M)` lateral position of each object's centre from the centre of the ego's
            lane, +y of the ego frame positive [m].
        vs, vd: `(N, M)` ground velocity along and across the lane [m/s].
        gap: `(N, M)` longitudinal free space, bumper to bumper: `s - (length + ego
            length) / 2` [m] (negative when the boxes overlap longitudinally).
        length, width: `(N, M)` object size [m].
        heading: `(N, M)` heading relative to the lane [rad] (relative to the ego's plus the
            ego's heading error).
        vehicle_id: `(N, M)` int64 simulator ids, -1 in invalid slots.
        valid: `(N, M)` bool.
    """

    ego_speed: np.ndarray
    s: np.ndarray
    d: np.ndarray
    vs: np.ndarray
    vd: np.ndarray
    gap: np.ndarray
    length: np.ndarray
    width: np.ndarray
    heading: np.ndarray
    vehicle_id: np.ndarray
    valid: np.ndarray


def lane_scene(ego: np.ndarray, info: Mapping[str, Any], ego_length_m: float) -> LaneScene:
    """The ground truth of `info` in the ego's lane frame (`staged.lane_frame.to_lane_frame`:
    rotated by the ego's heading error, shifted by its lane offset).

    Args:
        ego: `(N, k)` ego vectors (`EGO_FEATURES`).
        info: batched info with "gt_objects" `(N, M, 8)` and "gt_valid" `(N, M)`.
        ego_length_m: ego length for the bumper gap [m].
    """
    ego = np.asarray(ego, np.float64)
    objects = np.asarray(info["gt_objects"], np.float64)
    valid = np.asarray(info["gt_valid"], bool)
    ids = np.where(valid, objects[..., _COLUMN["vehicle_id"]], -1).astype(np.int64)
    tracks = Tracks(position=objects[..., [_COLUMN["x_m"], _COLUMN["y_m"]]],
                    velocity=objects[..., [_COLUMN["vx_mps"], _COLUMN["vy_mps"]]],
                    size=objects[..., [_COLUMN["length_m"], _COLUMN["width_m"]]],
                    track_id=ids, valid=valid)
    frame = to_lane_frame(tracks, ego[:, LANE_OFFSET], ego[:, HEADING_ERROR])
    return LaneScene(ego_speed=ego[:, SPEED], s=frame.s, d=frame.d, vs=frame.vs, vd=frame.vd,
                     gap=frame.s - 0.5 * (frame.length + ego_length_m),
                     length=frame.length, width=frame.width,
                     heading=objects[..., _COLUMN["heading_rad"]] + ego[:, HEADING_ERROR, None],
                     vehicle_id=ids,
                     valid=valid)


def closing_speed(scene: LaneScene) -> np.ndarray:
    """`(N, M)` ego speed minus each object's speed along the lane [m/s] (esmini's `dv_s`)."""
    return scene.ego_speed[:, None] - scene.vs


def time_to_collision(gap: np.ndarray, closing: np.ndarray) -> np.ndarray:
    """Free-space gap over closing speed [s]; inf where the gap does not close
    (`closing <= 0`), as esmini's `ttc` (LARGE_NUMBER there)."""
    gap, closing = np.asarray(gap, np.float64), np.asarray(closing, np.float64)
    return np.divide(gap, closing, out=np.full(np.broadcast(gap, closing).shape, np.inf),
                     where=closing > 0)


def time_headway(gap: np.ndarray, ego_speed: np.ndarray) -> np.ndarray:
    """Free-space gap over the ego's speed [s]; inf at standstill (esmini's `thw`)."""
    gap, speed = np.asarray(gap, np.float64), np.asarray(ego_speed, np.float64)
    return np.divide(gap, speed, out=np.full(np.broadcast(gap, speed).shape, np.inf),
                     where=speed > 0)


def in_ego_lane(scene: LaneScene, lane_width_m: float, range_m: float) -> np.ndarray:
    """`(N, M)` bool: valid objects ahead (`s > 0`) within `range_m` whose centre lies in the
    ego's lane (`|d| < lane_width_m / 2`: esmini's same lane, `dLaneId == 0`)."""
    return (scene.valid & (scene.s > 0) & (scene.s <= range_m)
            & (np.abs(scene.d) < 0.5 * lane_width_m))


def nearest(candidates: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """`(N,)` index of the candidate with the smallest gap, -1 where none is a candidate."""
    if candidates.shape[1] == 0:
        return np.full(candidates.shape[0], -1, np.int64)
    masked = np.where(candidates, gap, np.inf)
    index = np.argmin(masked, axis=1)
    return np.where(candidates.any(axis=1), index, -1)


def pick(values: np.ndarray, index: np.ndarray, missing: float = np.nan) -> np.ndarray:
    """`values[n, index[n]]` `(N,)`, `missing` where `index == -1`."""
    if values.shape[1] == 0:
        return np.full(values.shape[0], missing, np.float64)
    rows = np.arange(values.shape[0])
    return np.where(index >= 0, values[rows, np.maximum(index, 0)], missing)


def slot_of(vehicle_id: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """`(N,)` slot holding the vehicle `wanted[n]` in `vehicle_id` `(N, M)`, -1 if absent
    (or `wanted[n] < 0`)."""
    match = (vehicle_id == wanted[:, None]) & (wanted[:, None] >= 0)
    if match.shape[1] == 0:
        return np.full(match.shape[0], -1, np.int64)
    return np.where(match.any(axis=1), np.argmax(match, axis=1), -1)


def longitudinal_acceleration(scene: LaneScene, previous_id: np.ndarray | None,
                              previous_vs: np.ndarray | None, tick_s: float) -> np.ndarray:
    """`(N, M)` each object's acceleration along the lane over the last tick [m/s^2]: the
    change of its ground-truth `vs` since the previous tick, matched by vehicle id; 0
    where the object was not there then (or on the first tick).

    Args:
        previous_id, previous_vs: `(N, M')` ids and `vs` of the previous tick (None: none).
    """
    if previous_id is None or previous_id.shape[1] == 0 or scene.vs.shape[1] == 0:
        return np.zeros_like(scene.vs)
    same = ((scene.vehicle_id[:, :, None] == previous_id[:, None, :])
            & (scene.vehicle_id[:, :, None] >= 0))                          # (N, M, M')
    before = np.where(same, previous_vs[:, None, :], 0.0).sum(axis=2)
    return np.where(same.any(axis=2), (scene.vs - before) / tick_s, 0.0)
