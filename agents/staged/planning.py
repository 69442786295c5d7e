"""Planning stages: `Tracks` and ego state to a `Plan` (IDM car-following in the ego lane).

`idm_acceleration` is the Intelligent Driver Model (Treiber, Hennecke, Helbing 2000):

    a = a_max * (1 - (v / v0)^delta - (s* / s)^2),   s* = s0 + max(0, v*T + v*dv / (2*sqrt(a_max*b)))

with `s` the bumper-to-bumper gap and `dv = v - v_lead` the closing speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.staged.types import PLAN_STEP_S, Plan, Tracks
from envs.config import ACCELERATION_BOUNDS, EGO_FEATURES

SPEED = EGO_FEATURES.index("speed_mps")
LANE_OFFSET = EGO_FEATURES.index("lane_offset_m")


@dataclass(frozen=True)
class IDMParams:
    """Intelligent Driver Model parameters.

    Attributes:
        desired_speed_mps: free-road cruise speed `v0` [m/s].
        time_headway_s: desired time gap `T` [s].
        min_gap_m: jam distance `s0`, bumper to bumper [m].
        max_accel_mps2: maximum acceleration `a_max` [m/s^2].
        comfort_decel_mps2: comfortable deceleration `b` [m/s^2].
        delta: free-road exponent.
        lane_width_m: lane width used to decide what is in the ego lane [m].
        lane_overlap_m: how far a vehicle must reach into the ego lane to be followed [m].
        ego_length_m: ego length for bumper gaps [m].
        cut_in_horizon_s: a vehicle whose lateral motion brings it into the ego lane within
            this time is followed already (cut-in anticipation) [s].
    """

    desired_speed_mps: float = 27.0
    time_headway_s: float = 1.0
    min_gap_m: float = 2.0
    max_accel_mps2: float = 3.0
    comfort_decel_mps2: float = 5.0
    delta: float = 4.0
    lane_width_m: float = 4.0
    lane_overlap_m: float = 0.5
    ego_length_m: float = 5.0
    cut_in_horizon_s: float = 1.0


def idm_acceleration(speed: np.ndarray, gap: np.ndarray, closing_speed: np.ndarray,
                     params: IDMParams) -> np.ndarray:
    """IDM acceleration [m/s^2], batched.

    Args:
        speed: `(N,)` ego speed [m/s].
        gap: `(N,)` bumper gap to the lead [m]; `inf` for a free road.
        closing_speed: `(N,)` ego speed minus lead speed along the ego heading [m/s].
    """
    free = 1.0 - np.power(np.maximum(speed, 0.0) / params.desired_speed_mps, params.delta)
    dynamic = speed * params.time_headway_s + speed * closing_speed / (
        2.0 * np.sqrt(params.max_accel_mps2 * params.comfort_decel_mps2))
    desired_gap = params.min_gap_m + np.maximum(0.0, dynamic)
    with np.errstate(divide="ignore", invalid="ignore"):
        interaction = np.where(np.isfinite(gap),
                               np.square(desired_gap / np.maximum(gap, 0.1)), 0.0)
    return params.max_accel_mps2 * (free - interaction)


def select_lead(tracks: Tracks, lane_offset: np.ndarray, params: IDMParams
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nearest track ahead that reaches into the ego lane, now or (moving sideways at
    its current lateral speed) within `params.cut_in_horizon_s`.

    Args:
        tracks: batched tracks in the ego frame.
        lane_offset: `(N,)` ego offset from its lane centre [m] (ego-frame +y positive).

    Returns:
        lead index `(N,)` (-1 if none), bumper gap `(N,)` [m] (inf if none) and the lead's
        longitudinal ground speed `(N,)` [m/s] (0 if none).
    """
    x = tracks.position[..., 0]
    y_from_lane_centre = tracks.position[..., 1] + lane_offset[:, None]
    lateral_speed = np.nan_to_num(tracks.velocity[..., 1])
    y_predicted = y_from_lane_centre + lateral_speed * params.cut_in_horizon_s
    # Closest lateral distance to the lane centre over [now, now + horizon] (linear motion).
    crosses = np.sign(y_from_lane_centre) != np.sign(y_predicted)
    nearest_y = np.where(crosses, 0.0,
                         np.minimum(np.abs(y_from_lane_centre), np.abs(y_predicted)))
    half_width = 0.5 * tracks.size[..., 1]
    reaches_lane = nearest_y - half_width < 0.5 * params.lane_width_m - params.lane_overlap_m
    ahead = tracks.valid & (x > 0.0) & reaches_lane
    gap = np.where(ahead, x - 0.5 * (tracks.size[..., 0] + params.ego_length_m), np.inf)
    lead = np.argmin(gap, axis=1)
    rows = np.arange(gap.shape[0])
    lead_gap = gap[rows, lead]
    has_lead = np.isfinite(lead_gap)
    lead_speed = np.where(has_lead, np.nan_to_num(tracks.velocity[rows, lead, 0]), 0.0)
    return np.where(has_lead, lead, -1), lead_gap, lead_speed


@dataclass
class IDMPlanner:
    """Keep the lane and follow the lead with IDM."""

    params: IDMParams = IDMParams()
    name: str = "idm"

    def reset(self, done) -> None:
        """Stateless."""

    def __call__(self, tracks: Tracks, ego: np.ndarray) -> Plan:
        speed = ego[:, SPEED].astype(np.float64)
        lead, gap, lead_speed = select_lead(tracks, ego[:, LANE_OFFSET].astype(np.float64),
                                            self.params)
        acceleration = np.clip(idm_acceleration(speed, gap, speed - lead_speed, self.params),
                               *ACCELERATION_BOUNDS)
        return straight_plan(speed, acceleration, ego[:, LANE_OFFSET].astype(np.float64),
                             lead, gap)


def straight_plan(speed: np.ndarray, acceleration: np.ndarray, lane_offset: np.ndarray,
                  lead: np.ndarray, gap: np.ndarray, points: int = 31) -> Plan:
    """A lane-keeping `Plan`: constant `acceleration` along the current lane's centre.

    Args:
        speed, acceleration, lane_offset: `(N,)` [m/s], [m/s^2], [m] (ego +y of the centre).
        lead, gap: `(N,)` lead track index and bumper gap [m].
        points: path points `P`, `PLAN_STEP_S` apart.
    """
    t = np.arange(points) * PLAN_STEP_S                                   # (P,)
    path_speed = np.maximum(speed[:, None] + acceleration[:, None] * t, 0.0)
    x = np.concatenate([np.zeros((speed.shape[0], 1)),
                        np.cumsum(0.5 * (path_speed[:, 1:] + path_speed[:, :-1]) * PLAN_STEP_S,
                                  axis=1)], axis=1)
    # converge to the lane centre (ego-frame y = -lane_offset) within ~1 s of travel
    blend = np.clip(t / 1.0, 0.0, 1.0)
    y = -lane_offset[:, None] * blend
    n = speed.shape[0]
    return Plan(acceleration=acceleration,
                target_speed=path_speed[:, 1],
                path=np.stack([x, y], axis=-1), path_speed=path_speed,
                lateral_target=np.zeros(n), lane_change=np.zeros(n, dtype=np.int64),
                emergency=np.zeros(n, dtype=bool), lead_track=lead, lead_gap=gap)
