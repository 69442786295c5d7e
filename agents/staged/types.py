"""The staged stack's intermediate products: batched arrays, padded with a validity mask.

Positions and velocities are in each env's ego frame (x forward, y to the ego's left of
heading as in envs.sensors), metres and metres per second; velocities are ground velocities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Objects perceived this tick.

    Attributes:
        position: `(N, M, 2)` centre [m].
        velocity: `(N, M, 2)` ground velocity [m/s] (NaN where the detector cannot tell).
        size: `(N, M, 2)` length, width [m].
        heading: `(N, M)` heading relative to the ego [rad].
        object_id: `(N, M)` int, the object's id where known (oracle), else -1.
        valid: `(N, M)` bool.
    """

    position: np.ndarray
    velocity: np.ndarray
    size: np.ndarray
    heading: np.ndarray
    object_id: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class Tracks:
    """Objects tracked over time, `K` slots per env.

    Attributes:
        position: `(N, K, 2)` centre [m].
        velocity: `(N, K, 2)` ground velocity [m/s] (NaN where unknown).
        size: `(N, K, 2)` length, width [m].
        track_id: `(N, K)` int, stable over an episode and never reused within it; -1 in
            invalid slots (a tracker's own ids, or the simulator's for the oracle).
        valid: `(N, K)` bool: the slot holds a confirmed track.
        heading: `(N, K)` heading relative to the ego [rad], NaN where unknown; None when
            the tracker does not report it.
        hits: `(N, K)` int, frames a detection was associated with the track (None: not
            reported).
        misses: `(N, K)` int, consecutive frames without a detection: 0 when updated this
            tick, else the track coasts on its prediction (None: not reported).
        age_s: `(N, K)` time since the track's birth [s] (None: not reported).
        position_var: `(N, K, 2)` variance of the position estimate per axis [m^2] (None:
            not reported).
        velocity_var: `(N, K, 2)` variance of the velocity estimate per axis [m^2/s^2]
            (None: not reported).
        acceleration: `(N, K, 2)` ground acceleration [m/s^2] in the ego axes, NaN where
            unknown (None: not reported); the planner's constant-acceleration heuristic
            reads the lead's.
        acceleration_var: `(N, K, 2)` variance of the acceleration estimate per axis
            [m^2/s^4] (None: not reported).
    """

    position: np.ndarray
    velocity: np.ndarray
    size: np.ndarray
    track_id: np.ndarray
    valid: np.ndarray
    heading: np.ndarray | None = None
    hits: np.ndarray | None = None
    misses: np.ndarray | None = None
    age_s: np.ndarray | None = None
    position_var: np.ndarray | None = None
    velocity_var: np.ndarray | None = None
    acceleration: np.ndarray | None = None
    acceleration_var: np.ndarray | None = None


@dataclass(frozen=True)
class Plan:
    """The planner's output for one tick: a path with a speed profile, in the ego frame.

    The path starts at the ego (`path[:, 0] = (0, 0)`) and is sampled every
    `PLAN_STEP_S` seconds of travel over the planning horizon; a controller follows it
    (pure pursuit or Stanley for steering, PID on `target_speed` for speed).

    Attributes:
        acceleration: `(N,)` planned (feed-forward) longitudinal acceleration [m/s^2].
        target_speed: `(N,)` speed the plan wants one tick ahead [m/s].
        path: `(N, P, 2)` path points `(x, y)` in the ego frame [m]; `path[:, 0]` is the ego.
        path_speed: `(N, P)` speed along the path at each point [m/s].
        lateral_target: `(N,)` lateral offset the path ends at, relative to the centre of
            the ego's current lane, in the ego frame (+y) [m]: 0 to keep the lane, about
            one lane width for a lane change.
        lane_change: `(N,)` int, -1 / 0 / +1: the lane the plan moves to relative to the
            current one (+1 = towards +y, i.e. the next higher lane index).
        emergency: `(N,)` bool, the emergency-brake rule (time-to-collision) fired.
        lead_track: `(N,)` int, index of the lead track in `Tracks`, -1 if none.
        lead_gap: `(N,)` bumper gap to the lead [m], inf if none.
        path_curvature: `(N,)` curvature of the path at the ego [1/m] (+ turning towards
            +y) where the planner follows a curved route, 0 elsewhere; None when the
            planner does not report it. A path follower uses it for the slip angle the
            bicycle holds on that curve.
    """

    acceleration: np.ndarray
    target_speed: np.ndarray
    path: np.ndarray
    path_speed: np.ndarray
    lateral_target: np.ndarray
    lane_change: np.ndarray
    emergency: np.ndarray
    lead_track: np.ndarray
    lead_gap: np.ndarray
    path_curvature: np.ndarray | None = None


@dataclass(frozen=True)
class LaneFrameTracks:
    """Tracks in the ego's lane frame (the planner's Frenet frame), all `(N, K)`: on a
    straight road the ego frame rotated by the heading error, on a curved route the route
    frame (`agents.staged.route_frame`).

    Attributes:
        s: along the lane from the ego [m]. d: across it from the ego lane's centre [m]
        (+ towards the next higher lane index). vs, vd: ground velocity [m/s] (NaN -> 0).
        length, width: [m]. valid: bool.
        accel_s: ground acceleration along the lane [m/s^2]; 0 where the tracks carry
            none or it is NaN.
    """

    s: np.ndarray
    d: np.ndarray
    vs: np.ndarray
    vd: np.ndarray
    length: np.ndarray
    width: np.ndarray
    valid: np.ndarray
    accel_s: np.ndarray


PLAN_STEP_S = 0.1
"""Time between consecutive `Plan.path` points [s]."""
