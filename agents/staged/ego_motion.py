"""The ego's own motion between two observations, for the trackers' ego-motion
compensation: its yaw change and the direction it travelled, batched.

On a straight road the yaw change is the change of the ego's `heading_error_rad` (the lane
heading is constant) and the ego is taken to move straight ahead, then yaw. Through a turn
the lane heading changes too, and the ego vector's heading error, measured against the
*closest* lane (which at a junction can switch between overlapping lanes), no longer says
how far the ego turned. There the map's route tells it: in the previous frame the route's
lane heading at the arc length the ego has travelled is `theta_before(distance)`; in the
new frame the lane heading at the ego's projection is `theta_now(0)`; the same lane
direction seen from both frames gives the yaw change `theta_before(distance) -
theta_now(0)`. The ego then travelled along the chord of its arc, at half the yaw change
from its old heading.
"""

from __future__ import annotations

import numpy as np
from reflexdrive.agents.staged.route_frame import (
    route_heading_at,
    route_is_curved,
    unwrapped_heading,
)


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles [rad] wrapped to (-pi, pi]."""
    return np.pi - (np.pi - np.asarray(angle)) % (2.0 * np.pi)


def ego_motion(heading_error_before: np.ndarray, heading_error_now: np.ndarray,
               distance: np.ndarray, route_before: np.ndarray | None = None,
               route_heading_before: np.ndarray | None = None,
               route_heading_now: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """The ego's yaw change and travel direction over one interval, `(N,)` each [rad].

    Args:
        heading_error_before, heading_error_now: `(N,)` the ego vector's
            `heading_error_rad` at the previous and the current observation [rad].
        distance: `(N,)` distance the ego travelled in between [m] (mean speed times dt).
        route_before: `(N, P, 2)` the previous observation's `info["map"]["route"]` [m], or
            None (no map: every env straight).
        route_heading_before, route_heading_now: `(N, P)` the previous and the current
            `route_heading` [rad].

    Returns:
        `yaw_change` (+ towards +y) and `travel_angle`, the direction of the displacement
        relative to the old heading. Where the previous route is straight
        (`route_is_curved` False) or has no heading at the ego: the heading error's change
        and 0, exactly as on a straight road; on a curved route the map's yaw change and
        half of it.
    """
    straight_yaw = wrap_angle(np.asarray(heading_error_now, np.float64)
                              - np.asarray(heading_error_before, np.float64))
    if route_before is None:
        return straight_yaw, np.zeros_like(straight_yaw)
    distance = np.asarray(distance, np.float64)
    before = route_heading_at(route_before, route_heading_before, distance[:, None])[:, 0]
    now = unwrapped_heading(route_heading_now)[:, 0]
    curved = (route_is_curved(route_heading_before) & np.isfinite(now)
              & np.isfinite(np.asarray(route_heading_before, np.float64)[:, 0]))
    map_yaw = wrap_angle(before - np.nan_to_num(now))
    yaw = np.where(curved, map_yaw, straight_yaw)
    return yaw, np.where(curved, 0.5 * map_yaw, 0.0)
