"""How critical a hazard is at its onset: gap, TTC, headway, required deceleration, and the
`critical` rule (docs/ARCHITECTURE.md, "Criticality").

Pure numpy functions, batched over `B` worlds (every array argument `(B,)`, broadcastable).
The model is one-dimensional, along the ego's lane: the ego and the hazard vehicle are
points on the lane separated by the bumper-to-bumper `gap` [m]; lateral motion is ignored
(a cut-in vehicle counts as ahead in the ego lane from its onset, even while it is still
in the next lane). Speeds are along the lane [m/s]; decelerations are positive [m/s^2].

The hazard vehicle's planned motion, from its speed `v_h` at onset: constant deceleration
`b` down to a final speed `v_f`, then `v_f` for ever (`hazard_motion`):

- lead brake: `b = plan.decel_mps2`, `v_f = 0` (the braking lead of both backends);
- stopped vehicle: stationary (`b = 0`, `v_f = v_h = 0`);
- cut-in: the backends' IDM slows it to `v_0 = plan.target_speed_mps` on the free-road term
  `dv/dt = clip(a (1 - (v / v_0)^4), -a_max, a_max)` (highway-env's `IDMVehicle`, no
  vehicle ahead of it in the ego lane), approaching `v_0` only asymptotically. The model
  takes the constant `b` that loses the same distance on `v_0` cruising as the IDM does,
  `b = (v_h - v_0)^2 / (2 D)`, `D = integral (v - v_0) dt` in closed form
  (`idm_equivalent_deceleration`).

Everything below is solved in the frame moving at `v_f`, where the hazard vehicle
decelerates from `u_h = v_h - v_f` to standstill and the ego's speed is `u_e = v_e - v_f`:
the ego closing in stops mattering once `u_e <= 0`.

The gap is measured along the ego's lane: projected on the lane's heading at the ego
(`lane_longitudinal`, exact on straight roads), or as the difference of arc lengths along
the lane (`arc_longitudinal`, for curved lanes: on an arc of radius `R` the gap to a vehicle
`phi` further round is `R phi` minus the half lengths).

Cross traffic ("cross_traffic") is not one-dimensional: the two vehicles' paths cross, and
`crossing_criticality` compares when each occupies the conflict zone around the crossing
point of the two centrelines, both at their onset speeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from highway_env.vehicle.behavior import IDMVehicle
from reflexdrive.envs.scenarios import HAZARD_KINDS
from reflexdrive.envs.sensors.frames import wrap_angle
from reflexdrive.envs.types import CRITICALITY_KEYS, WorldSnapshot

CRITICAL_HORIZON_S = 4.0
"""A hazard is critical when an ego that does not respond makes contact within this time of
onset [s]: the TTC at which Euro NCAP's car-to-car AEB tests (CCRs, CCRm) start."""

_IDM_A = float(IDMVehicle.COMFORT_ACC_MAX)
_IDM_A_MAX = float(IDMVehicle.ACC_MAX)
if IDMVehicle.DELTA != 4:       # the closed form of idm_equivalent_deceleration needs it
    raise ImportError(f"envs.criticality assumes IDMVehicle.DELTA == 4, got {IDMVehicle.DELTA}")

_LEAD_BRAKE = HAZARD_KINDS.index("lead_brake")
_CUT_IN = HAZARD_KINDS.index("cut_in")
_STOPPED = HAZARD_KINDS.index("stopped_vehicle")


@dataclass(frozen=True)
class OnsetCriticality:
    """The hazard at onset, per world (all `(B,)`).

    Attributes:
        critical: bool, `contact_time_s <= min(CRITICAL_HORIZON_S, time left in the
            episode)` (`criticality`).
        onset_gap_m: bumper-to-bumper gap along the lane, ego front to hazard rear [m].
        onset_ttc_s: gap / closing speed at onset [s], inf when not closing.
        onset_headway_s: gap / ego speed [s], inf at standstill.
        required_decel_mps2: the constant ego deceleration that avoids contact without
            steering [m/s^2] (0: none needed, inf: already in contact).
        contact_time_s: time from onset to contact of an ego that keeps its onset speed
            [s], inf if it never makes contact.
    """

    critical: np.ndarray
    onset_gap_m: np.ndarray
    onset_ttc_s: np.ndarray
    onset_headway_s: np.ndarray
    required_decel_mps2: np.ndarray
    contact_time_s: np.ndarray

    def row(self, i: int) -> dict:
        """World `i` as `info["hazard"]`'s `CRITICALITY_KEYS` (plus `contact_time_s`)."""
        return {"critical": bool(self.critical[i]),
                **{name: float(getattr(self, name)[i])
                   for name in CRITICALITY_KEYS[1:] + ("contact_time_s",)}}


def idm_equivalent_deceleration(speed, target_speed) -> np.ndarray:
    """The constant deceleration [m/s^2] that loses as much distance, against cruising at
    `v_0 = target_speed`, as highway-env's free-road IDM does slowing from `speed` to `v_0`.

    `D = integral_0^inf (v - v_0) dt` of `dv/dt = -min(a ((v / v_0)^4 - 1), a_max)`
    (`a = IDMVehicle.COMFORT_ACC_MAX`, `a_max = IDMVehicle.ACC_MAX`). Above
    `v_1 = (1 + a_max / a)^(1/4) v_0` the command is clipped, so `D = D_clip + D_idm`:
    `D_clip = ((v - v_0)^2 - (v_1 - v_0)^2) / (2 a_max)`, and with
    `(v - v_0) / (v^4 - v_0^4) = 1 / ((v + v_0)(v^2 + v_0^2))`,
    `D_idm = F(min(v, v_1)) - F(v_0)`,
    `F(v) = v_0^2 / (2 a) (ln(v + v_0) - ln(v^2 + v_0^2) / 2 + atan(v / v_0))`.
    Returns `(v - v_0)^2 / (2 D)`; 0 where `speed <= target_speed` (no slowing).
    """
    v, v0 = np.broadcast_arrays(np.asarray(speed, np.float64),
                                np.asarray(target_speed, np.float64))
    slows = (v > v0) & (v0 > 0)
    v0s = np.where(slows, v0, 1.0)
    vs = np.where(slows, v, 2.0)
    v1 = np.minimum(vs, (1.0 + _IDM_A_MAX / _IDM_A) ** 0.25 * v0s)

    def antiderivative(w):
        return (np.log(w + v0s) - 0.5 * np.log(w * w + v0s * v0s) + np.arctan(w / v0s))

    d_idm = v0s * v0s / (2.0 * _IDM_A) * (antiderivative(v1) - antiderivative(v0s))
    d_clip = ((vs - v0s) ** 2 - (v1 - v0s) ** 2) / (2.0 * _IDM_A_MAX)
    decel = (vs - v0s) ** 2 / (2.0 * (d_idm + d_clip))
    # target 0: the IDM brakes at a_max to standstill (v0 = not_zero(0) is tiny)
    return np.where(slows, decel, np.where((v0 <= 0) & (v > 0), _IDM_A_MAX, 0.0))


def hazard_motion(kind, speed, decel_mps2, target_speed_mps) -> tuple[np.ndarray, np.ndarray]:
    """The hazard vehicle's planned motion from onset as `(b, v_f)` [m/s^2, m/s] (module
    docstring): constant deceleration `b` from `speed` down to `v_f`, then `v_f`.

    Args:
        kind: int hazard codes (index into `envs.scenarios.HAZARD_KINDS`).
        speed: the hazard vehicle's speed along the lane at onset [m/s].
        decel_mps2, target_speed_mps: the `HazardPlan`'s fields.
    """
    kind = np.asarray(kind)
    speed = np.maximum(np.asarray(speed, np.float64), 0.0)
    target = np.clip(np.asarray(target_speed_mps, np.float64), 0.0, speed)
    decel = np.where(kind == _LEAD_BRAKE, np.asarray(decel_mps2, np.float64),
                     np.where(kind == _CUT_IN, idm_equivalent_deceleration(speed, target), 0.0))
    final = np.where(kind == _LEAD_BRAKE, 0.0, np.where(kind == _CUT_IN, target, speed))
    return decel, final


def _relative(ego_speed, hazard_speed, hazard_decel, hazard_final_speed):
    """`(u_e, u_h, b, D_h, t_s)` in the frame moving at `v_f`: speeds [m/s], the hazard
    vehicle's deceleration, the distance it takes to stop there [m] and when it has [s]
    (inf when it decelerates at 0 from a nonzero relative speed)."""
    u_e = np.asarray(ego_speed, np.float64) - hazard_final_speed
    u_h = np.maximum(np.asarray(hazard_speed, np.float64) - hazard_final_speed, 0.0)
    b = np.asarray(hazard_decel, np.float64)
    moving = u_h > 0
    safe_b = np.where(b > 0, b, 1.0)
    stop_distance = np.where(moving, np.where(b > 0, u_h * u_h / (2 * safe_b), np.inf), 0.0)
    stop_time = np.where(moving, np.where(b > 0, u_h / safe_b, np.inf), 0.0)
    return u_e, u_h, b, stop_distance, stop_time


def contact_time(gap, ego_speed, hazard_speed, hazard_decel, hazard_final_speed) -> np.ndarray:
    """Time [s] until an ego at constant `ego_speed` closes `gap` [m] on a hazard vehicle
    that decelerates at `hazard_decel` from `hazard_speed` to `hazard_final_speed` (inf: no
    contact ever; 0 when `gap <= 0`).

    While the hazard vehicle decelerates (`t <= t_s`) the gap is
    `g - (u_e - u_h) t - b t^2 / 2`, zero at `t = 2 g / ((u_e - u_h) + sqrt((u_e - u_h)^2
    + 2 b g))` (the numerically stable root; none if the denominator is <= 0); after it,
    the gap `g + D_h - u_e t_s` closes at `u_e`.
    """
    g = np.asarray(gap, np.float64)
    u_e, u_h, b, stop_distance, stop_time = _relative(ego_speed, hazard_speed, hazard_decel,
                                                      hazard_final_speed)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        closing = u_e - u_h
        denominator = closing + np.sqrt(closing * closing + 2.0 * b * np.maximum(g, 0.0))
        first = np.where(denominator > 0, 2.0 * g / denominator, np.inf)
        left = g + stop_distance - u_e * stop_time
        later = np.where(np.isfinite(stop_time) & (u_e > 0), stop_time + left / u_e, np.inf)
        t = np.where(first <= stop_time, first, later)
    return np.where(g <= 0, 0.0, t)


def required_deceleration(gap, ego_speed, hazard_speed, hazard_decel,
                          hazard_final_speed) -> np.ndarray:
    """The least constant ego deceleration [m/s^2] (from `ego_speed` until it stops) that
    keeps `gap` [m] from closing on the hazard vehicle's planned motion (`hazard_motion`).

    The gap is smallest where the ego stops closing in: either its speed meets the hazard
    vehicle's while that still decelerates, `a_M = b + (v_e - v_h)^2 / (2 g)`, which
    holds when that meeting `t* = 2 g / (v_e - v_h)` comes before `t_s`, i.e.
    `2 g b <= u_h (u_e - u_h)` with `u_e > u_h`; or the ego reaches `v_f` after the hazard
    vehicle has, `a_S = u_e^2 / (2 (g + D_h))` (a stationary target: `v^2 / (2 g)`).
    0 when `u_e <= 0` (the ego never closes in), inf when `gap <= 0`.
    """
    g = np.asarray(gap, np.float64)
    u_e, u_h, b, stop_distance, _ = _relative(ego_speed, hazard_speed, hazard_decel,
                                              hazard_final_speed)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        at_stop = np.where(np.isfinite(stop_distance), u_e * u_e / (2.0 * (g + stop_distance)),
                           0.0)
        meeting = b + (u_e - u_h) ** 2 / (2.0 * g)
        meets_first = (u_e > u_h) & (2.0 * g * b <= u_h * (u_e - u_h))
        decel = np.where(meets_first, meeting, at_stop)
    return np.where(g <= 0, np.inf, np.where(u_e <= 0, 0.0, decel))


def criticality(gap, ego_speed, hazard_speed, hazard_decel, hazard_final_speed,
                time_left_s, horizon_s: float = CRITICAL_HORIZON_S) -> OnsetCriticality:
    """The `OnsetCriticality` of `B` worlds from the longitudinal state at onset.

    Args:
        gap: bumper-to-bumper gap along the lane [m] (NaN: no hazard vehicle, not critical).
        ego_speed, hazard_speed: speeds along the lane at onset [m/s].
        hazard_decel, hazard_final_speed: the planned motion (`hazard_motion`).
        time_left_s: episode end minus onset [s].
        horizon_s: the rule's horizon [s].
    """
    g = np.asarray(gap, np.float64)
    v_e = np.asarray(ego_speed, np.float64)
    v_h = np.asarray(hazard_speed, np.float64)
    contact = contact_time(g, v_e, v_h, hazard_decel, hazard_final_speed)
    with np.errstate(divide="ignore", invalid="ignore"):
        closing = v_e - v_h
        ttc = np.where(closing > 0, np.maximum(g, 0.0) / closing, np.inf)
        headway = np.where(v_e > 0, g / v_e, np.inf)
    known = np.isfinite(g)
    nan = np.full(np.shape(g), np.nan)
    return OnsetCriticality(
        critical=known & (contact <= np.minimum(horizon_s, time_left_s)),
        onset_gap_m=g.copy(),
        onset_ttc_s=np.where(known, ttc, nan),
        onset_headway_s=np.where(known, headway, nan),
        required_decel_mps2=np.where(known, required_deceleration(
            g, v_e, v_h, hazard_decel, hazard_final_speed), nan),
        contact_time_s=np.where(known, contact, nan))


def arc_longitudinal(ego_s, ego_heading, ego_speed, ego_length, ego_lane_heading, hazard_s,
                     hazard_heading, hazard_speed, hazard_length, hazard_lane_heading
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(gap [m], ego speed, hazard speed [m/s])` along the ego's lane from arc lengths.

    `ego_s`, `hazard_s` `(B,)` are the two centres' arc lengths along the ego's lane (lane
    local coordinates, `envs.lane_paths.LanePath.coordinates`) [m]; the gap is their
    difference minus the half lengths. Each speed is projected on the lane's heading where
    that vehicle is (`*_lane_heading` [rad]): on a curve the lane turns between the two.
    """
    gap = (np.asarray(hazard_s, np.float64) - np.asarray(ego_s, np.float64)
           - 0.5 * (np.asarray(ego_length) + np.asarray(hazard_length)))
    return (gap, np.asarray(ego_speed) * np.cos(np.asarray(ego_heading) - ego_lane_heading),
            np.asarray(hazard_speed) * np.cos(np.asarray(hazard_heading)
                                              - hazard_lane_heading))


def lane_longitudinal(ego_position, ego_heading, ego_speed, ego_length, hazard_position,
                      hazard_heading, hazard_speed, hazard_length, lane_heading
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(gap [m], ego speed, hazard speed [m/s])` along the ego's lane.

    Positions `(B, 2)` are centres in the world frame [m]; headings `(B,)` [rad]; the gap
    is the centre distance projected on the lane direction minus the half lengths; speeds
    are projected on the lane direction.
    """
    ux, uy = np.cos(lane_heading), np.sin(lane_heading)
    offset = np.asarray(hazard_position, np.float64) - np.asarray(ego_position, np.float64)
    along = offset[..., 0] * ux + offset[..., 1] * uy
    gap = along - 0.5 * (np.asarray(ego_length) + np.asarray(hazard_length))
    return (gap, np.asarray(ego_speed) * np.cos(np.asarray(ego_heading) - lane_heading),
            np.asarray(hazard_speed) * np.cos(np.asarray(hazard_heading) - lane_heading))


POSE_FIELDS = ("x", "y", "heading", "speed", "length")
"""Columns of the poses `pose_criticality` takes: world-frame centre [m], heading [rad],
speed [m/s], length [m]."""


def pose_criticality(ego_pose, hazard_pose, lane_heading, kind, decel_mps2, target_speed_mps,
                     time_left_s) -> OnsetCriticality:
    """`criticality` of `R` worlds from the ego's and the hazard vehicle's poses at onset.

    Args:
        ego_pose, hazard_pose: `(R, 5)` `POSE_FIELDS`; a NaN hazard row means no hazard
            vehicle (NaN gap, not critical).
        lane_heading: `(R,)` heading of the ego's lane [rad].
        kind: `(R,)` int hazard codes (`HAZARD_KINDS` indices); `decel_mps2`,
            `target_speed_mps`: the plans' fields.
        time_left_s: `(R,)` episode end minus onset [s].
    """
    ego, hazard = np.asarray(ego_pose, np.float64), np.asarray(hazard_pose, np.float64)
    gap, v_e, v_h = lane_longitudinal(ego[:, :2], ego[:, 2], ego[:, 3], ego[:, 4],
                                      hazard[:, :2], hazard[:, 2], hazard[:, 3], hazard[:, 4],
                                      lane_heading)
    return planned_criticality(gap, v_e, v_h, kind, decel_mps2, target_speed_mps, time_left_s)


def planned_criticality(gap, ego_speed, hazard_speed, kind, decel_mps2, target_speed_mps,
                        time_left_s) -> OnsetCriticality:
    """`criticality` of a gap [m] and speeds along the lane [m/s] (`lane_longitudinal` or
    `arc_longitudinal`), the hazard vehicle moving as its plan says (`hazard_motion`)."""
    b, v_f = hazard_motion(kind, np.nan_to_num(hazard_speed), decel_mps2, target_speed_mps)
    return criticality(gap, ego_speed, hazard_speed, b, v_f, time_left_s)


MIN_CROSSING_SIN = 0.1
"""Paths crossing at less than about 6 degrees count as crossing at that angle (the conflict
zone of nearly parallel paths would be unbounded)."""


def conflict_half_extents(ego_width, hazard_width, crossing_angle
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Half lengths of the conflict zone along the ego's path and along the hazard
    vehicle's [m]: the stretch of each path on which its vehicle's footprint overlaps the
    other vehicle's swept strip. For paths crossing at `theta` (`(B,)` [rad]),
    `h_e = w_h / (2 sin theta) + w_e / (2 |tan theta|)` and symmetrically `h_h`; at right
    angles, half the other vehicle's width."""
    sin = np.maximum(np.abs(np.sin(np.asarray(crossing_angle, np.float64))), MIN_CROSSING_SIN)
    cot = np.abs(np.cos(np.asarray(crossing_angle, np.float64))) / sin
    w_e, w_h = np.asarray(ego_width, np.float64), np.asarray(hazard_width, np.float64)
    return w_h / (2 * sin) + w_e * cot / 2, w_e / (2 * sin) + w_h * cot / 2


def zone_occupancy(distance, speed, length, half_extent) -> tuple[np.ndarray, np.ndarray]:
    """`(t_in, t_out)` [s]: when a vehicle at constant `speed` [m/s] whose centre is
    `distance` [m] before the conflict point (negative: past it) has its front enter the
    zone `[-half_extent, half_extent]` around the point, and its rear leave it. `t_in = 0`
    if it is already in; `t_out < 0` if it has left; at standstill `inf` (never enters,
    or never leaves)."""
    d, v = np.asarray(distance, np.float64), np.asarray(speed, np.float64)
    near = d - 0.5 * np.asarray(length) - half_extent
    far = d + 0.5 * np.asarray(length) + half_extent
    moving = v > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t_in = np.where(near <= 0, 0.0, np.where(moving, near / v, np.inf))
        t_out = np.where(moving, far / v, np.where(far > 0, np.inf, -np.inf))
    return t_in, t_out


def crossing_criticality(ego_distance, ego_speed, ego_length, ego_width, hazard_distance,
                         hazard_speed, hazard_length, hazard_width, crossing_angle,
                         time_left_s, horizon_s: float = CRITICAL_HORIZON_S
                         ) -> OnsetCriticality:
    """The `OnsetCriticality` of crossing paths, both vehicles keeping their onset speeds.

    Each occupies the conflict zone (`conflict_half_extents`) from its front's arrival to
    its rear's clearance (`zone_occupancy`); contact is the start of the overlap of the
    two intervals, `max(t_in)` if `max(t_in) < min(t_out)` (else inf), and the hazard is
    critical when that is within `min(horizon_s, time_left_s)`. The other measures:

    - gap: the ego front's distance to the zone [m] (<= 0: it is in the zone);
    - TTC: the contact time [s] (inf without overlap); headway: gap / ego speed [s];
    - required deceleration: the least constant ego braking that keeps its front out of
      the zone until the hazard vehicle's rear has left it at `T = t_out_h`: 0 without
      overlap, `2 (v T - g) / T^2` when the ego is still moving at `T` (`v T <= 2 g`),
      else stopping before the zone `v^2 / (2 g)`; inf when the ego is in the zone.

    Args (all `(B,)`): distances of the centres to the crossing point along each path [m]
    (NaN: no hazard vehicle), speeds along the paths [m/s], lengths and widths [m], the
    angle between the paths [rad], episode end minus onset [s].
    """
    d_e = np.asarray(ego_distance, np.float64)
    v_e = np.asarray(ego_speed, np.float64)
    h_e, h_h = conflict_half_extents(ego_width, hazard_width, crossing_angle)
    in_e, out_e = zone_occupancy(d_e, v_e, ego_length, h_e)
    in_h, out_h = zone_occupancy(hazard_distance, hazard_speed, hazard_length, h_h)
    start, end = np.maximum(in_e, in_h), np.minimum(out_e, out_h)
    overlap = start < end
    contact = np.where(overlap, start, np.inf)
    gap = d_e - 0.5 * np.asarray(ego_length) - h_e
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        headway = np.where(v_e > 0, gap / v_e, np.inf)
        stop = v_e * v_e / (2 * gap)
        late = 2 * (v_e * out_h - gap) / (out_h * out_h)
        decel = np.where(np.isfinite(out_h) & (v_e * out_h <= 2 * gap), late, stop)
    decel = np.where(~overlap, 0.0, np.where(gap <= 0, np.inf, decel))
    known = np.isfinite(d_e) & np.isfinite(np.asarray(hazard_distance, np.float64))
    nan = np.full(np.shape(known), np.nan)
    return OnsetCriticality(
        critical=known & (contact <= np.minimum(horizon_s, time_left_s)),
        onset_gap_m=np.where(known, gap, nan),
        onset_ttc_s=np.where(known, contact, nan),
        onset_headway_s=np.where(known, headway, nan),
        required_decel_mps2=np.where(known, decel, nan),
        contact_time_s=np.where(known, contact, nan))


def snapshot_poses(snapshot: WorldSnapshot, rows, vehicle) -> tuple[np.ndarray, np.ndarray]:
    """`(ego_pose, hazard_pose)`, each `(R, 5)` `POSE_FIELDS`, of the worlds `rows` of
    `snapshot` and their hazard vehicles' slots `vehicle` `(R,)` (NaN where there is none)."""
    rows, slots = np.asarray(rows, np.int64), np.asarray(vehicle, np.int64)
    present = (slots >= 0) & (slots < snapshot.shape[1])
    slot = np.where(present, slots, 0)
    present &= snapshot.valid[rows, slot]

    def pose(j):
        return np.stack([snapshot.position[rows, j, 0], snapshot.position[rows, j, 1],
                         snapshot.heading[rows, j], snapshot.speed[rows, j],
                         snapshot.length[rows, j]], axis=1)

    return pose(np.zeros_like(slot)), np.where(present[:, None], pose(slot), np.nan)


def snapshot_criticality(snapshot: WorldSnapshot, kind, vehicle, decel_mps2, target_speed_mps,
                         time_left_s, rows=None) -> OnsetCriticality:
    """`criticality` of the worlds `rows` (default all) of `snapshot`, taken at their onset;
    the lane heading is the ego's heading minus its heading error.

    Args:
        snapshot: the worlds at the onset boundary `t_h`.
        kind, vehicle, decel_mps2, target_speed_mps, time_left_s: `(R,)`, as
            `pose_criticality`'s (`vehicle`: the hazard vehicle's slot).
        rows: the worlds (indices into `B`) the other arguments describe.
    """
    rows = np.arange(snapshot.shape[0]) if rows is None else np.asarray(rows, np.int64)
    ego, hazard = snapshot_poses(snapshot, rows, vehicle)
    lane_heading = wrap_angle(snapshot.heading[rows, 0] - snapshot.ego_heading_error[rows])
    return pose_criticality(ego, hazard, lane_heading, kind, decel_mps2, target_speed_mps,
                            time_left_s)


def unknown_criticality(batch: int) -> OnsetCriticality:
    """`B` worlds before onset (or without a hazard): False and NaN."""
    nan = np.full(batch, np.nan)
    return OnsetCriticality(np.zeros(batch, bool), nan, nan.copy(), nan.copy(), nan.copy(),
                            nan.copy())


__all__ = ["CRITICAL_HORIZON_S", "CRITICALITY_KEYS", "POSE_FIELDS", "OnsetCriticality",
           "arc_longitudinal", "conflict_half_extents", "contact_time", "criticality",
           "crossing_criticality", "hazard_motion", "idm_equivalent_deceleration",
           "lane_longitudinal", "planned_criticality", "pose_criticality",
           "required_deceleration", "snapshot_criticality", "snapshot_poses",
           "unknown_criticality", "zone_occupancy"]
