"""Planning: `Tracks` and ego state to a `Plan` (IDM + MOBIL, refined on a Frenet lattice).

`MobilFrenetPlanner`, per tick and for all envs at once:

1. the tracks go to the ego's lane frame (`s` along the lane, `d` from the ego lane's centre);
2. in the ego lane and its neighbours it finds the lead (nearest ahead reaching into the
   lane, now or within `cut_in_horizon_s` at its lateral speed) and the follower;
3. longitudinal: the Intelligent Driver Model (Treiber, Hennecke, Helbing 2000)

       a = a_max * (1 - (v / v0)^delta - (s* / s)^2),
       s* = s0 + max(0, v*T + v*dv / (2*sqrt(a_max*b)))

   with `s` the bumper-to-bumper gap and `dv = v - v_lead` the closing speed; with
   `anticipation` (default) the lead's tracked acceleration enters too: the ACC model
   (Kesting, Treiber, Helbing 2010; IDM blended with the constant-acceleration heuristic,
   coolness `c`), bounded above by the CAH braking floor that keeps `cah_margin_m` to a
   lead that goes on braking as now (`agents.staged.car_following`), so a lead's braking
   moves the plan in the tick it shows in the track; while changing lanes the minimum of
   the accelerations behind both leads;
4. lateral: MOBIL (Kesting, Treiber, Helbing 2007) decides lane changes: change if the
   new follower is not forced to brake harder than `b_safe` and
   `a_new - a_old + p * (dA_new_follower + dA_old_follower) >= a_th`;
5. a Frenet lattice (quintic lateral profiles of several durations towards the chosen
   lane, `agents.staged.frenet`) is checked against the tracks' constant-velocity
   predictions; the cheapest conflict-free one (jerk + duration) becomes the path; if
   every lane-change candidate conflicts, the change is called off;
6. emergency brake: when the time to collision with a lead falls below
   `emergency_ttc_s`, brake at the action bound.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from reflexdrive.agents.staged import frenet, route_planning, yielding
from reflexdrive.agents.staged.car_following import (
    acc_model_acceleration,
    braking_lead_floor,
    constant_acceleration_heuristic,
)
from reflexdrive.agents.staged.route_frame import (
    ROUTE_KEYS,
    absent_as_nan,
    curve_speed_limit,
    route_is_curved,
    smooth_route_gaps,
)
from reflexdrive.agents.staged.types import PLAN_STEP_S, LaneFrameTracks, Plan, Tracks
from reflexdrive.envs.config import ACCELERATION_BOUNDS, EGO_FEATURES

from reflexdrive.common.validation import boolean, number_tuple, real, validate_fields

SPEED = EGO_FEATURES.index("speed_mps")
LANE_OFFSET = EGO_FEATURES.index("lane_offset_m")
HEADING_ERROR = EGO_FEATURES.index("heading_error_rad")
LANE_INDEX = EGO_FEATURES.index("lane_index")
LANE_COUNT = EGO_FEATURES.index("lane_count")


@dataclass(frozen=True)
class IDMParams:
    """Intelligent Driver Model parameters (units and bounds in each field's metadata;
    validated on construction)."""

    desired_speed_mps: float = real(27.0, low=0.0, low_inclusive=False,
                                    help="free-road cruise speed v0 [m/s]")
    time_headway_s: float = real(1.0, low=0.0, help="desired time gap T [s]")
    min_gap_m: float = real(2.0, low=0.0, help="jam distance s0, bumper to bumper [m]")
    max_accel_mps2: float = real(3.0, low=0.0, low_inclusive=False,
                                 help="maximum acceleration a_max [m/s^2]")
    comfort_decel_mps2: float = real(5.0, low=0.0, low_inclusive=False,
                                     help="comfortable deceleration b [m/s^2]")
    delta: float = real(4.0, low=0.0, low_inclusive=False, help="free-road exponent [-]")
    lane_width_m: float = real(4.0, low=0.0, low_inclusive=False,
                               help="lane width used to decide what is in the ego lane [m]")
    lane_overlap_m: float = real(
        0.5, low=0.0, help="how far a vehicle must reach into the ego lane to be followed [m]")
    ego_length_m: float = real(5.0, low=0.0, low_inclusive=False,
                               help="ego length for bumper gaps [m]")
    cut_in_horizon_s: float = real(
        1.0, low=0.0,
        help="a vehicle whose lateral motion brings it into the ego lane within this time "
             "is followed already (cut-in anticipation) [s]")

    def __post_init__(self) -> None:
        validate_fields(self)


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
    frame = to_lane_frame(tracks, lane_offset, np.zeros_like(lane_offset))
    lead, gap, _, _ = lane_neighbours(frame, np.zeros_like(lane_offset), params)
    return lead, gap, _pick(frame.vs, lead)


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


# ----------------------------------------------------------------------- lane-frame neighbours


def to_lane_frame(tracks: Tracks, lane_offset: np.ndarray, heading_error: np.ndarray
                  ) -> LaneFrameTracks:
    """Rotate ego-frame tracks by the ego's heading error (ego heading minus lane heading)
    and shift by its lane offset: `s = x cos(psi) - y sin(psi)`,
    `d = x sin(psi) + y cos(psi) + lane_offset`; velocities and accelerations rotate alike.

    Args:
        lane_offset, heading_error: `(N,)` [m], [rad].
    """
    c, sn = np.cos(heading_error)[:, None], np.sin(heading_error)[:, None]
    x, y = tracks.position[..., 0], tracks.position[..., 1]
    vx, vy = np.nan_to_num(tracks.velocity[..., 0]), np.nan_to_num(tracks.velocity[..., 1])
    accel_s = np.zeros_like(x)
    if tracks.acceleration is not None:
        ax, ay = tracks.acceleration[..., 0], tracks.acceleration[..., 1]
        known = np.isfinite(ax) & np.isfinite(ay)
        accel_s = np.where(known, np.nan_to_num(ax) * c - np.nan_to_num(ay) * sn, 0.0)
    return LaneFrameTracks(s=x * c - y * sn, d=x * sn + y * c + lane_offset[:, None],
                           vs=vx * c - vy * sn, vd=vx * sn + vy * c,
                           length=tracks.size[..., 0], width=tracks.size[..., 1],
                           valid=tracks.valid.astype(bool), accel_s=accel_s)


def lane_neighbours(frame: LaneFrameTracks, lane_centre: np.ndarray, params: IDMParams,
                    ego_speed: np.ndarray | None = None, ego_width_m: float = 2.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lead and follower of the ego in the lane centred at `lane_centre` (lane frame `d`).

    The lead is the nearest track ahead (`s > 0`) that reaches into the lane now or, at its
    lateral speed, within `params.cut_in_horizon_s` (cut-in anticipation); the follower the
    nearest track behind (`s <= 0`) reaching into it now. Given `ego_speed`, a track that
    is still entering the lane (not in it now) is not a lead when the ego will have passed
    it before it can reach the ego's body (`passes_before_contact`): braking for it would
    keep the ego beside it as it moves in.

    Args:
        lane_centre: `(N,)` [m].
        ego_speed: `(N,)` [m/s], or None (every entering track counts).
        ego_width_m: the ego's width [m] (for when an entering track reaches it).

    Returns:
        lead, follower: `(N,)` track indices (-1 if none); lead_gap, follower_gap: `(N,)`
        bumper gaps [m] (inf if none).
    """
    n, k = frame.s.shape
    if k == 0:
        none, inf = np.full(n, -1, dtype=np.int64), np.full(n, np.inf)
        return none, inf, none.copy(), inf.copy()
    from_centre = frame.d - lane_centre[:, None]
    predicted = from_centre + frame.vd * params.cut_in_horizon_s
    crosses = np.sign(from_centre) != np.sign(predicted)
    nearest = np.where(crosses, 0.0, np.minimum(np.abs(from_centre), np.abs(predicted)))
    reach = 0.5 * params.lane_width_m - params.lane_overlap_m
    half_width = 0.5 * frame.width
    in_lane_soon = frame.valid & (nearest - half_width < reach)
    in_lane_now = frame.valid & (np.abs(from_centre) - half_width < reach)
    half_lengths = 0.5 * (frame.length + params.ego_length_m)
    if ego_speed is not None:
        entering = in_lane_soon & ~in_lane_now
        in_lane_soon = in_lane_soon & ~(entering & passes_before_contact(
            frame, from_centre, half_lengths, np.asarray(ego_speed, dtype=np.float64)[:, None],
            ego_width_m))
    ahead_gap = np.where(in_lane_soon & (frame.s > 0), frame.s - half_lengths, np.inf)
    behind_gap = np.where(in_lane_now & (frame.s <= 0), -frame.s - half_lengths, np.inf)
    rows = np.arange(frame.s.shape[0])
    lead, follower = np.argmin(ahead_gap, axis=1), np.argmin(behind_gap, axis=1)
    lead_gap, follower_gap = ahead_gap[rows, lead], behind_gap[rows, follower]
    return (np.where(np.isfinite(lead_gap), lead, -1), lead_gap,
            np.where(np.isfinite(follower_gap), follower, -1), follower_gap)


PASS_MARGIN_S = 0.5
"""How much sooner the ego must be past an entering track than the track can reach it [s]."""


def passes_before_contact(frame: LaneFrameTracks, from_centre: np.ndarray,
                          half_lengths: np.ndarray, ego_speed: np.ndarray, ego_width_m: float
                          ) -> np.ndarray:
    """`(N, K)` bool: the ego, at its speed, is past each track (its rear beyond the track's
    front) `PASS_MARGIN_S` before the track, at its lateral speed towards the lane centre,
    can touch the ego's body there: `(s + half_lengths) / (v_ego - v_s) + margin <
    (|d| - (w + w_ego) / 2) / v_towards`. A track not closing laterally, or one the ego
    does not overtake, never passes.

    Args:
        from_centre: `(N, K)` track offset from the lane centre [m].
        half_lengths: `(N, K)` half the summed lengths [m]; ego_speed: `(N, 1)` [m/s].
    """
    closing = ego_speed - frame.vs
    towards = -np.sign(from_centre) * frame.vd
    clearance = np.abs(from_centre) - 0.5 * (frame.width + ego_width_m)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_pass = np.where(closing > 0.0, (frame.s + half_lengths) / closing, np.inf)
        t_touch = np.where(towards > 0.0, np.maximum(clearance, 0.0) / towards, np.inf)
    return (closing > 0.0) & (t_pass + PASS_MARGIN_S < t_touch)


def _standstill_gap(gap: np.ndarray, lead_speed: np.ndarray, cfg: "PlannerConfig"
                    ) -> np.ndarray:
    """The gap IDM sees: behind a lead slower than 1 m/s, shortened by
    `standstill_gap_m - s0`, so the ego comes to rest `standstill_gap_m` behind it [m]."""
    return np.where(lead_speed < 1.0, gap - (cfg.standstill_gap_m - cfg.idm.min_gap_m), gap)


def following_acceleration(speed: np.ndarray, lead_gap: np.ndarray, lead_speed: np.ndarray,
                           lead_accel: np.ndarray, cfg: "PlannerConfig",
                           params: IDMParams | None = None) -> np.ndarray:
    """The ego's car-following acceleration behind a lead [m/s^2], batched `(N,)`.

    The IDM on the gap it sees (`_standstill_gap`); with `cfg.anticipation`, the ACC model
    (`acc_model_acceleration` of the IDM and the CAH, coolness `cfg.coolness`) capped by
    the CAH braking floor (`braking_lead_floor`, margin `cfg.cah_margin_m`). Not clipped to
    the action bounds.

    Args:
        speed: ego speed [m/s].
        lead_gap: bumper gap to the lead [m], inf where there is none.
        lead_speed, lead_accel: the lead's speed [m/s] and acceleration [m/s^2] along the
            lane (0 where unknown).
        params: the IDM parameters (default `cfg.idm`).
    """
    params = cfg.idm if params is None else params
    gap = _standstill_gap(lead_gap, lead_speed, cfg)
    idm = idm_acceleration(speed, gap, speed - lead_speed, params)
    if not cfg.anticipation:
        return idm
    cah = constant_acceleration_heuristic(speed, gap, lead_speed, lead_accel,
                                          params.max_accel_mps2)
    acc = np.where(np.isfinite(gap), acc_model_acceleration(
        idm, cah, params.comfort_decel_mps2, cfg.coolness), idm)
    floor = braking_lead_floor(speed, gap, lead_speed, lead_accel, params.max_accel_mps2,
                               cfg.cah_margin_m)
    return np.minimum(acc, floor)


def _pick(values: np.ndarray, index: np.ndarray, missing: float = 0.0) -> np.ndarray:
    """`values[n, index[n]]`, `missing` where `index == -1`. values: `(N, K)`."""
    if values.shape[1] == 0:
        return np.full(values.shape[0], missing, dtype=np.float64)
    rows = np.arange(values.shape[0])
    return np.where(index >= 0, values[rows, np.maximum(index, 0)], missing)


def mobil_gain(params: IDMParams, speed: np.ndarray, accel_now: np.ndarray,
               accel_new: np.ndarray, old_follower_speed: np.ndarray,
               old_follower_gaps: tuple[np.ndarray, np.ndarray],
               old_follower_closing: tuple[np.ndarray, np.ndarray],
               new_follower_speed: np.ndarray, new_follower_gaps: tuple[np.ndarray, np.ndarray],
               new_follower_closing: tuple[np.ndarray, np.ndarray], politeness: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """MOBIL's incentive and the braking imposed on the new follower.

    Each follower's IDM acceleration is evaluated before and after the change
    (`*_gaps = (before, after)` bumper gaps [m], inf = free road; `*_closing` the closing
    speeds [m/s]); a follower that does not exist has gap inf both times and adds 0.

    Returns:
        gain `(N,)` [m/s^2] `= a_new - a_now + p (dA_new_follower + dA_old_follower)` and the
        new follower's acceleration after the change `(N,)` [m/s^2].
    """
    def idm(v, gap, closing):
        return idm_acceleration(v, gap, closing, params)

    new_before = idm(new_follower_speed, new_follower_gaps[0], new_follower_closing[0])
    new_after = idm(new_follower_speed, new_follower_gaps[1], new_follower_closing[1])
    old_before = idm(old_follower_speed, old_follower_gaps[0], old_follower_closing[0])
    old_after = idm(old_follower_speed, old_follower_gaps[1], old_follower_closing[1])
    gain = accel_new - accel_now + politeness * ((new_after - new_before)
                                                 + (old_after - old_before))
    return gain, new_after


# ----------------------------------------------------------------------------- the planner


@dataclass(frozen=True)
class PlannerConfig:
    """What `MobilFrenetPlanner` does; validated on construction (units and bounds in each
    field's metadata).

    The lattice's cost is `jerk_weight * int(jerk^2) + duration_weight * T`; its conflict
    check adds `margin_s_m` / `margin_d_m` to the summed half sizes along / across the lane.
    The assured-clear-distance rule caps the cruise speed so that the ego, reacting within
    `sight_reaction_s` and braking at `sight_decel_mps2`, stops before anything that appears
    at the edge of sight (`v t_r + v^2 / (2 b) <= sight_distance - car lengths - margin`).
    """

    idm: IDMParams = IDMParams()
    """Car-following parameters (also the followers' model in MOBIL)."""
    yielding: yielding.YieldConfig = yielding.YieldConfig()
    """Gap acceptance where a curved route crosses or joins a lane with the right of way
    (`agents.staged.yielding`)."""
    lane_changes: bool = boolean(True, help="let MOBIL change lanes (False: keep the lane)")
    politeness: float = real(
        0.3, low=0.0, help="MOBIL p [-], weight of the followers' accelerations")
    min_gain_mps2: float = real(0.2, low=0.0, help="MOBIL threshold a_th [m/s^2]")
    max_imposed_braking_mps2: float = real(
        2.0, low=0.0,
        help="MOBIL safety b_safe: the new follower must not need to brake harder than this "
             "[m/s^2]")
    min_side_gap_m: float = real(
        4.0, low=0.0, help="bumper gap required to the new lead and follower [m]")
    min_change_speed_mps: float = real(0.0, low=0.0,
                                       help="no lane changes below this speed [m/s]")
    cooldown_s: float = real(
        3.0, low=0.0, help="time after a lane change ends before the next can start [s]")
    change_durations_s: tuple[float, ...] = number_tuple(
        (3.0, 4.0, 5.0), low=0.0, low_inclusive=False,
        help="durations of the lane-change candidates of the lattice [s]")
    keep_durations_s: tuple[float, ...] = number_tuple(
        (1.5, 2.5), low=0.0, low_inclusive=False,
        help="durations of the lane-keeping candidates [s]")
    horizon_s: float = real(
        5.0, low=0.0, low_inclusive=False,
        help="length of the planned path [s] (points every PLAN_STEP_S)")
    jerk_weight: float = real(1.0, low=0.0, help="lattice cost weight w_j of int(jerk^2)")
    duration_weight: float = real(0.5, low=0.0, help="lattice cost weight w_T of T [1/s]")
    margin_s_m: float = real(1.0, low=0.0, help="conflict margin along the lane [m]")
    margin_d_m: float = real(0.2, low=0.0, help="conflict margin across the lane [m]")
    ego_width_m: float = real(2.0, low=0.0, low_inclusive=False, help="ego width [m]")
    max_path_slope: float = real(
        0.5, low=0.0, low_inclusive=False,
        help="a candidate may move at most this many metres sideways per metre travelled "
             "(a kinematic bicycle cannot move sideways on the spot) [-]")
    standstill_gap_m: float = real(
        12.0, low=0.0, low_inclusive=False,
        help="jam distance s0 behind a lead slower than 1 m/s, so that the ego stops with "
             "room to pull out around it [m]")
    sight_distance_m: float = real(
        48.0, low=0.0, low_inclusive=False,
        help="how far ahead the perception sees (SensorConfig.range_m) [m]")
    sight_decel_mps2: float = real(
        7.0, low=0.0, low_inclusive=False,
        help="braking b of the assured-clear-distance rule [m/s^2]")
    sight_reaction_s: float = real(
        0.2, low=0.0, help="reaction time t_r of the assured-clear-distance rule [s]")
    anticipation: bool = boolean(
        True, help="use the leads' tracked accelerations: the ACC model (IDM + CAH) under the "
                   "CAH braking floor (False: the plain IDM on gap and speeds)")
    coolness: float = real(
        0.99, low=0.0, high=1.0,
        help="the ACC model's coolness factor c: weight of the CAH in its blend (0: the "
             "IDM) [-]")
    cah_margin_m: float = real(
        2.0, low=0.0,
        help="gap the CAH braking floor keeps to a lead that goes on braking as now (to "
             "the gap the IDM sees, shortened behind a stopped lead) [m]")
    emergency_ttc_s: float = real(
        1.2, low=0.0, low_inclusive=False,
        help="brake at the action bound when the time to collision with a lead (gap / "
             "closing speed) falls below this [s]")
    done_offset_m: float = real(
        0.5, low=0.0, low_inclusive=False,
        help="a lane change is over once the ego is this close to the target lane's "
             "centre [m]")
    max_lateral_accel_mps2: float = real(
        3.0, low=0.0, low_inclusive=False,
        help="lateral acceleration bound on a curved route: the speed on a curve of "
             "curvature kappa is at most sqrt(a / |kappa|) [m/s^2]")
    curve_decel_mps2: float = real(
        2.0, low=0.0, low_inclusive=False,
        help="deceleration planned to slow down before a bend to its speed [m/s^2]")

    def __post_init__(self) -> None:
        validate_fields(self)


class MobilFrenetPlanner:
    """IDM + MOBIL decisions refined on a Frenet lattice, with an emergency-brake rule.

    Stateful per env: the lane it is changing to (absolute lane index, -1 if none) and when
    its last lane change ended (for the cooldown). `reset(done)` forgets both for `done`.
    """

    name = "mobil-frenet"

    def __init__(self, config: PlannerConfig | None = None):
        self.config = config or PlannerConfig()
        self._target = np.zeros(0, dtype=np.int64)
        self._last_change = np.zeros(0)
        cfg = self.config
        clear = cfg.sight_distance_m - cfg.idm.ego_length_m - cfg.idm.min_gap_m
        b, t = cfg.sight_decel_mps2, cfg.sight_reaction_s
        self.sight_speed_mps = max(-b * t + math.sqrt((b * t) ** 2 + 2.0 * b * max(clear, 0.0)),
                                   1.0)
        """Cruise-speed cap of the assured-clear-distance rule [m/s]."""
        self.capped_idm = dataclasses.replace(
            cfg.idm, desired_speed_mps=min(cfg.idm.desired_speed_mps, self.sight_speed_mps))
        """The IDM parameters planned with: the cruise speed capped by `sight_speed_mps`
        (built once, not per tick)."""
        steps = int(round(self.config.horizon_s / PLAN_STEP_S))
        self.times = np.arange(steps + 1) * PLAN_STEP_S                       # (P,)

    def reset(self, done: np.ndarray) -> None:
        done = np.asarray(done, dtype=bool)
        if self._target.shape[0] == done.shape[0]:
            self._target[done] = -1
            self._last_change[done] = -np.inf

    def _state(self, n: int) -> None:
        if self._target.shape[0] != n:
            self._target = np.full(n, -1, dtype=np.int64)
            self._last_change = np.full(n, -np.inf)

    def __call__(self, tracks: Tracks, ego: np.ndarray, time_s: np.ndarray,
                 road_map=None) -> Plan:
        """Plan for `N` envs. `ego`: `(N, 8)` (`EGO_FEATURES`); `time_s`: `(N,)` observation
        time [s] (for the lane-change cooldown); `road_map`: `info["map"]` or None.

        Where the map's route is curved (`route_frame.route_is_curved`), or crosses a
        junction with ranked lanes (`yielding.ranked_lanes`), the lane frame is
        the route frame (`agents.staged.route_planning`): tracks, the ego's offset and
        heading error are measured on the route, lane changes need a neighbour lane on the
        map, the speed is bounded by the route's curvature (`max_lateral_accel_mps2`) and
        the path goes back to the ego frame along the route. Elsewhere (no map, or a
        straight route) the plan is the straight-road one, bit for bit."""
        road_map = absent_as_nan(road_map, ROUTE_KEYS)
        cfg, params = self.config, self.config.idm
        n = ego.shape[0]
        self._state(n)
        time_s = np.asarray(time_s, dtype=np.float64)
        ego = np.asarray(ego, dtype=np.float64)
        speed, offset = ego[:, SPEED], ego[:, LANE_OFFSET]
        psi = ego[:, HEADING_ERROR]
        lane = np.rint(ego[:, LANE_INDEX]).astype(np.int64)
        lanes = np.rint(ego[:, LANE_COUNT]).astype(np.int64)
        frame = to_lane_frame(tracks, offset, psi)
        w = params.lane_width_m
        params = self.capped_idm
        mapped = np.zeros(n, dtype=bool)
        if road_map is not None:
            raw_route = np.asarray(road_map["route"], np.float64)
            route = smooth_route_gaps(raw_route,
                                      np.asarray(road_map["route_heading"], np.float64)[:, 0])
            mapped = route_is_curved(road_map["route_heading"]) | yielding.ranked_lanes(
                road_map)
        if mapped.any():
            road_map = absent_as_nan(road_map, ("lanes",))    # read on such routes only
            s0, route_offset, route_psi = route_planning.ego_on_route(
                route, road_map["route_heading"])
            frame = route_planning.select_frame(
                mapped, route_planning.route_frame_tracks(tracks, route, s0), frame)
            # crossing traffic is yielding's, never a lead or a follower
            crossing = mapped[:, None] & route_planning.crossing_tracks(frame)
            offset = np.where(mapped, route_offset, offset)
            psi = np.where(mapped, route_psi, psi)
            beside = route_planning.neighbour_lanes(road_map, route, s0, w)
        # the lattice starts along the ego centre's velocity: on a curve the bicycle's
        # heading is off it by the slip angle it holds there
        lateral_speed = speed * np.sin(psi)
        if mapped.any():
            slip = route_planning.slip_angle(route_planning.path_curvature_at_ego(route),
                                             cfg.idm.ego_length_m)
            lateral_speed = np.where(mapped, speed * np.sin(psi + slip), lateral_speed)

        # leads and followers in the lanes at -1, 0, +1 (relative to the ego lane)
        followed = frame
        if mapped.any():
            followed = dataclasses.replace(frame, valid=frame.valid & ~crossing)
        sides = {}
        for k in (-1, 0, 1):
            lead, lead_gap, follower, follower_gap = lane_neighbours(
                followed, np.full(n, k * w), params, speed, cfg.ego_width_m)
            lead_speed = _pick(frame.vs, lead)
            sides[k] = dict(lead=lead, lead_gap=lead_gap, lead_speed=lead_speed,
                            follower=follower, follower_gap=follower_gap,
                            follower_speed=_pick(frame.vs, follower),
                            accel=following_acceleration(speed, lead_gap, lead_speed,
                                                         _pick(frame.accel_s, lead), cfg,
                                                         params),
                            exists=(lane + k >= 0) & (lane + k < lanes))
            if mapped.any() and k != 0:
                sides[k]["exists"] = np.where(mapped, beside[k], sides[k]["exists"])

        # the lane change under way: finished, or called off when the target became unsafe
        changing = self._target >= 0
        relative = np.where(changing, self._target - lane, 0)
        finished = changing & (relative == 0) & (np.abs(offset) < cfg.done_offset_m)
        lost = changing & (np.abs(relative) > 1)
        self._last_change = np.where(finished, time_s, self._last_change)
        self._target = np.where(finished | lost, -1, self._target)

        # MOBIL for envs free to decide
        gains, safe = {}, {}
        for k in (-1, 1):
            side, own = sides[k], sides[0]
            gain, imposed = mobil_gain(
                params, speed, own["accel"], side["accel"],
                old_follower_speed=own["follower_speed"],
                old_follower_gaps=(own["follower_gap"], own["follower_gap"]
                                   + own["lead_gap"] + params.ego_length_m),
                old_follower_closing=(own["follower_speed"] - speed,
                                      own["follower_speed"] - own["lead_speed"]),
                new_follower_speed=side["follower_speed"],
                new_follower_gaps=(side["follower_gap"] + side["lead_gap"]
                                   + params.ego_length_m, side["follower_gap"]),
                new_follower_closing=(side["follower_speed"] - side["lead_speed"],
                                      side["follower_speed"] - speed),
                politeness=cfg.politeness)
            safe[k] = (side["exists"] & (imposed >= -cfg.max_imposed_braking_mps2)
                       & (side["lead_gap"] >= cfg.min_side_gap_m)
                       & (side["follower_gap"] >= cfg.min_side_gap_m))
            gains[k] = np.where(safe[k], gain, -np.inf)
        free = ((self._target < 0) & (speed >= cfg.min_change_speed_mps)
                & (time_s - self._last_change >= cfg.cooldown_s))
        if cfg.lane_changes:
            best = np.where(gains[1] > gains[-1], 1, -1)
            best_gain = np.maximum(gains[1], gains[-1])
            start = free & (best_gain >= cfg.min_gain_mps2)
            self._target = np.where(start, lane + best, self._target)
        # call off a change whose target side became unsafe before the ego crossed over
        relative = np.where(self._target >= 0, self._target - lane, 0)
        unsafe_now = np.where(relative == 1, ~safe[1], np.where(relative == -1, ~safe[-1], False))
        self._target = np.where(unsafe_now, -1, self._target)
        relative = np.where(self._target >= 0, self._target - lane, 0)

        # Longitudinal. Keeping the lane: IDM behind the own-lane lead. Changing lanes: IDM
        # behind the target lane's lead alone if some lane-change path is conflict-free
        # with that profile (the own-lane lead is then passed or left behind: a stopped car
        # is driven around), else the minimum of both (highway-env's rule).
        changing = relative != 0
        target_accel = sides[0]["accel"].copy()
        for k in (-1, 1):
            target_accel = np.where(relative == k, sides[k]["accel"], target_accel)
        lattice = _Lattice(self, frame, offset, lateral_speed, relative)
        target_accel = np.clip(target_accel, *ACCELERATION_BOUNDS)
        # ... judged against the own-lane lead braking as hard as it can from now on
        worst = np.zeros_like(frame.s)
        own_lead = sides[0]["lead"]
        rows = np.flatnonzero(own_lead >= 0)
        worst[rows, own_lead[rows]] = -ACCELERATION_BOUNDS[0]
        # and only while the ego could still stop behind that lead at the brake bound
        # (so calling the change off later is never too late)
        stopping = speed**2 / (-2.0 * ACCELERATION_BOUNDS[0]) + cfg.margin_s_m
        can_stop = (sides[0]["lead_gap"] - speed * PLAN_STEP_S) > stopping
        around = changing & can_stop & lattice.feasible(speed, target_accel, change=True,
                                                        track_decel=worst)
        accel = np.where(around, target_accel,
                         np.clip(np.minimum(sides[0]["accel"], target_accel), *ACCELERATION_BOUNDS))

        # emergency brake on time to collision with the lead that matters: the target
        # lane's while changing lanes, the own lane's unless the ego is driving around it
        emergency = np.zeros(n, dtype=bool)
        for k in (0, -1, 1):
            side = sides[k]
            closing = speed - side["lead_speed"]
            with np.errstate(divide="ignore", invalid="ignore"):
                ttc = np.where(closing > 0, side["lead_gap"] / closing, np.inf)
            relevant = (relative == k) & (k != 0) | ((k == 0) & ~around)
            emergency |= relevant & (ttc < cfg.emergency_ttc_s)
        max_speed = params.desired_speed_mps
        if mapped.any():
            # the lanes' speed limits (+inf: none): the one here caps the cruise speed,
            # lower ones ahead are braked for like bends
            limit = np.full(raw_route.shape[:2], np.inf)
            if "route_speed_limit" in road_map:
                limit = np.asarray(road_map["route_speed_limit"], np.float64)
            limit_here = np.where(np.isfinite(limit[:, 0]), limit[:, 0], np.inf)
            bend_speed = np.where(mapped, np.minimum(curve_speed_limit(
                route, cfg.max_lateral_accel_mps2, cfg.curve_decel_mps2, max_speed),
                limit_here), max_speed)
            bend = np.minimum.reduce([
                route_planning.curve_acceleration(speed, bend_speed, params.max_accel_mps2,
                                                  params.delta),
                route_planning.bend_deceleration(route, speed, cfg.max_lateral_accel_mps2),
                route_planning.deceleration_to_speeds(route, limit, speed)])
            accel = np.where(mapped, np.clip(np.minimum(accel, bend), *ACCELERATION_BOUNDS),
                             accel)
            max_speed = bend_speed
            give_way, _, _ = yielding.yield_acceleration(
                raw_route, road_map, np.asarray(tracks.position, np.float64),
                np.nan_to_num(np.asarray(tracks.velocity, np.float64)), tracks.size[..., 0],
                tracks.heading, tracks.valid.astype(bool), speed, cfg.yielding,
                lambda v, gap: idm_acceleration(v, gap, v, params))
            accel = np.where(mapped, np.clip(np.minimum(accel, give_way), *ACCELERATION_BOUNDS),
                             accel)
        accel = np.where(emergency, ACCELERATION_BOUNDS[0], accel)

        # the Frenet lattice under the final profile; a lane change none of whose
        # candidates is conflict-free is called off (the lane is kept instead)
        path_s, path_v = frenet.longitudinal_profile(speed, accel, self.times, max_speed)
        called_off = changing & ~lattice.feasible(speed, accel, change=True, path_s=path_s)
        self._target = np.where(called_off, -1, self._target)
        relative = np.where(called_off, 0, relative)
        lattice = _Lattice(self, frame, offset, lateral_speed, relative)
        d_path = lattice.best_path(path_s)                                    # (N, P)
        # lane frame -> ego frame (ego at s = 0, d = offset), rotated by -psi
        ds, dd = path_s, d_path - offset[:, None]
        c, sn = np.cos(psi)[:, None], np.sin(psi)[:, None]
        path = np.stack([ds * c + dd * sn, -ds * sn + dd * c], axis=-1)
        path_curvature = None
        if road_map is not None:
            path_curvature = np.zeros(n)
        if mapped.any():
            path = np.where(mapped[:, None, None],
                            route_planning.route_path(route, s0, path_s, d_path), path)
            path_curvature = np.where(mapped, route_planning.path_curvature_at_ego(route), 0.0)
        lead = sides[0]["lead"]
        return Plan(acceleration=accel, target_speed=path_v[:, 1], path=path, path_speed=path_v,
                    lateral_target=relative * w, lane_change=relative, emergency=emergency,
                    lead_track=lead, lead_gap=sides[0]["lead_gap"],
                    path_curvature=path_curvature)


class _Lattice:
    """The Frenet candidates of one planning call: lateral quintics towards the lane each
    env moves to (`relative` lanes away; 0 = keep), one per duration, over a longitudinal
    profile `path_s`, checked against the tracks' constant-velocity predictions.

    Candidates `C`: the lane-change durations then the lane-keeping ones; an env changing
    lanes uses the change candidates, one keeping its lane the keeping ones.
    """

    def __init__(self, planner: MobilFrenetPlanner, frame: LaneFrameTracks,
                 offset: np.ndarray, lateral_speed: np.ndarray, relative: np.ndarray):
        cfg, params = planner.config, planner.config.idm
        self.config, self.times = cfg, planner.times
        change = np.asarray(cfg.change_durations_s, dtype=np.float64)
        keep = np.asarray(cfg.keep_durations_s, dtype=np.float64)
        durations = np.concatenate([change, keep])                           # (C,)
        self.is_change = np.arange(durations.shape[0]) < change.shape[0]
        d_end = np.where(self.is_change[None, :],
                         (relative * params.lane_width_m)[:, None], 0.0)     # (N, C)
        coefficients = frenet.quintic_coefficients(offset[:, None], lateral_speed[:, None],
                                                   d_end, durations[None, :])
        self.lateral, jerk = frenet.lateral_profile(
            coefficients, np.broadcast_to(durations, d_end.shape), self.times)  # (N, C, P)
        self.cost = cfg.jerk_weight * jerk + cfg.duration_weight * durations[None, :]
        self.usable = self.is_change[None, :] == (relative != 0)[:, None]
        # tracks ahead of the ego, or outside its lane, can conflict (the ones behind in
        # the own lane are the follower's business)
        self.frame = frame
        self.relevant = frame.valid & ((frame.s > 0)
                                       | (np.abs(frame.d) > 0.5 * params.lane_width_m))
        self.half_length = 0.5 * (frame.length + params.ego_length_m) + cfg.margin_s_m
        self.half_width = 0.5 * (frame.width + cfg.ego_width_m) + cfg.margin_d_m
        self.max_speed = min(params.desired_speed_mps, planner.sight_speed_mps)

    def conflicts(self, path_s: np.ndarray, track_decel: np.ndarray | None = None
                  ) -> np.ndarray:
        """`(N, C)` bool: the candidate meets a track (constant velocity, or braking at
        `track_decel (N, K)`), or moves sideways more steeply than `max_path_slope`, with
        longitudinal profile `path_s`."""
        f = self.frame
        meets = frenet.first_conflict(np.broadcast_to(path_s[:, None, :], self.lateral.shape),
                                      self.lateral, f.s, f.d, f.vs, f.vd, self.half_length,
                                      self.half_width, self.relevant, self.times, track_decel)
        sideways = np.abs(np.diff(self.lateral, axis=-1))                     # (N, C, P-1)
        forward = np.diff(path_s, axis=-1)[:, None, :]
        steep = (sideways > self.config.max_path_slope * forward + 1e-3).any(axis=-1)
        return meets | steep

    def feasible(self, speed: np.ndarray, accel: np.ndarray, change: bool,
                 path_s: np.ndarray | None = None, track_decel: np.ndarray | None = None
                 ) -> np.ndarray:
        """`(N,)` bool: some usable candidate of that kind is conflict-free under the
        constant-acceleration profile `accel` (or the given `path_s`)."""
        if path_s is None:
            path_s, _ = frenet.longitudinal_profile(speed, accel, self.times, self.max_speed)
        kind = self.is_change if change else ~self.is_change
        free = ~self.conflicts(path_s, track_decel)
        return (self.usable & kind[None, :] & free).any(axis=1)

    def best_path(self, path_s: np.ndarray) -> np.ndarray:
        """`(N, P)` lateral offsets of the cheapest conflict-free usable candidate; if every
        usable one conflicts, the cheapest usable one (the emergency rule brakes)."""
        cost = np.where(self.usable, self.cost, np.inf)
        free = np.where(~self.conflicts(path_s), cost, np.inf)
        cost = np.where(np.isfinite(free).any(axis=1)[:, None], free, cost)
        choice = np.argmin(cost, axis=1)
        return self.lateral[np.arange(cost.shape[0]), choice]
