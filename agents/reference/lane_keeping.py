"""Steering of the reference drivers: keep the centre of the current lane.

The R157 models are longitudinal (esmini's controller "just maintains the current lane
offset"); here the staged stack's `LaneKeepingController` steers to the lane centre, fed a
straight-ahead `Plan` that carries the reference driver's acceleration.
"""

from __future__ import annotations

import numpy as np
from reflexdrive.agents.reference.scene import SPEED
from reflexdrive.agents.staged.control import LaneKeepingController
from reflexdrive.agents.staged.types import Plan


def lane_keeping_plan(acceleration: np.ndarray, ego: np.ndarray, lead_gap: np.ndarray
                      ) -> Plan:
    """A plan that keeps the lane centre at the given acceleration.

    Args:
        acceleration: `(N,)` commanded acceleration [m/s^2].
        ego: `(N, k)` ego vectors.
        lead_gap: `(N,)` bumper gap to the object the driver watches [m] (inf if none).
    """
    n = acceleration.shape[0]
    speed = np.asarray(ego, np.float64)[:, SPEED]
    return Plan(acceleration=np.asarray(acceleration, np.float64), target_speed=speed,
                path=np.zeros((n, 1, 2)), path_speed=speed[:, None],
                lateral_target=np.zeros(n), lane_change=np.zeros(n, np.int64),
                emergency=np.zeros(n, bool), lead_track=np.full(n, -1, np.int64),
                lead_gap=np.asarray(lead_gap, np.float64))


def keep_lane(controller: LaneKeepingController, acceleration: np.ndarray, ego: np.ndarray,
              lead_gap: np.ndarray) -> tuple[np.ndarray, Plan]:
    """`(actions (N, 2) float32 [acceleration m/s^2, steering rad], plan)`."""
    plan = lane_keeping_plan(acceleration, ego, lead_gap)
    return controller(plan, np.asarray(ego)), plan
