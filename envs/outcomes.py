"""Per-substep outcome measurements, pure functions of a `WorldSnapshot` (any backend).

The metrics layer aggregates these over an episode (min gap and TTC after the hazard
onset, progress, jerk, whether the ego entered its route's exit road); here only what one
instant shows.
"""

from __future__ import annotations

import numpy as np
from reflexdrive.envs.types import EGO, SubstepOutcome, WorldSnapshot

LATERAL_MARGIN_M = 0.0
"""Extra lateral clearance counted as "in the ego's path" [m]."""


def lead_gap_and_ttc(snapshot: WorldSnapshot) -> tuple[np.ndarray, np.ndarray]:
    """Bumper-to-bumper gap to the nearest vehicle ahead in the ego's path, and the TTC to it.

    "In the path" means the vehicle's centre is ahead of the ego's and the two bodies
    overlap laterally in the ego frame (half-widths summed). The gap is measured along the
    ego's heading between the ego's front and the other's rear; the time to collision is
    `gap / closing speed` with ground velocities projected on the ego heading, `inf` when
    not closing or no vehicle is ahead.

    Returns:
        gap_m `(B,)` [m] and ttc_s `(B,)` [s]; `inf` where nothing is ahead.
    """
    position, heading, speed = snapshot.position, snapshot.heading, snapshot.speed
    ego_heading = heading[:, EGO]
    forward = np.stack([np.cos(ego_heading), np.sin(ego_heading)], axis=-1)  # (B, 2)
    left = np.stack([-np.sin(ego_heading), np.cos(ego_heading)], axis=-1)
    offset = position - position[:, EGO:EGO + 1]  # (B, N, 2)
    x = np.einsum("bnd,bd->bn", offset, forward)
    y = np.einsum("bnd,bd->bn", offset, left)
    valid = snapshot.valid.copy()
    valid[:, EGO] = False
    half_widths = 0.5 * (snapshot.width + snapshot.width[:, EGO:EGO + 1]) + LATERAL_MARGIN_M
    in_path = valid & (x > 0.0) & (np.abs(y) < half_widths)
    gap = x - 0.5 * (snapshot.length + snapshot.length[:, EGO:EGO + 1])
    gap = np.where(in_path, gap, np.inf)
    nearest = np.argmin(gap, axis=1)
    rows = np.arange(gap.shape[0])
    gap_m = gap[rows, nearest]
    other_velocity = speed[rows, nearest, None] * np.stack(
        [np.cos(heading[rows, nearest]), np.sin(heading[rows, nearest])], axis=-1)
    closing = speed[:, EGO] - np.einsum("bd,bd->b", other_velocity, forward)
    with np.errstate(divide="ignore", invalid="ignore"):
        ttc_s = np.where(np.isfinite(gap_m) & (closing > 0.0),
                         np.maximum(gap_m, 0.0) / closing, np.inf)
    return gap_m, ttc_s


def substep_outcomes(snapshot: WorldSnapshot, previous_position: np.ndarray,
                     time_s: np.ndarray, rows=None) -> dict[int, SubstepOutcome]:
    """The `SubstepOutcome` of each world in `rows` (all when None) after a substep.

    Args:
        snapshot: the worlds after the substep.
        previous_position: `(B, 2)` ego centres before the substep [m] (for the distance).
        time_s: `(B,)` time at the end of the substep [s].
        rows: indices of the worlds to measure.

    Returns:
        world index -> its outcome.
    """
    gap, ttc = lead_gap_and_ttc(snapshot)
    position = snapshot.position[:, EGO]
    others = np.asarray(snapshot.valid, dtype=bool).copy()
    others[:, EGO] = False
    count = others.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        traffic_speed = np.where(count > 0, np.where(others, snapshot.speed, 0.0).sum(axis=1)
                                 / count, np.nan)
    rows = np.arange(snapshot.position.shape[0]) if rows is None else np.asarray(rows)
    step = position[rows] - previous_position[rows]
    distance = np.sqrt((step * step).sum(axis=1))
    columns = zip(np.asarray(time_s)[rows].tolist(), snapshot.speed[rows, EGO].tolist(),
                  distance.tolist(), gap[rows].tolist(), ttc[rows].tolist(),
                  np.asarray(snapshot.crashed, dtype=bool)[rows].tolist(),
                  np.asarray(snapshot.ego_on_road, dtype=bool)[rows].tolist(),
                  np.asarray(snapshot.ego_on_route_exit, dtype=bool)[rows].tolist(),
                  traffic_speed[rows].tolist())           # in SubstepOutcome's field order
    return dict(zip(rows.tolist(), map(SubstepOutcome._make, columns)))
