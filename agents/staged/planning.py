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

import numpy as np
from reflexdrive.agents.staged import frenet, route_planning, yielding
from reflexdrive.agents.staged.car_following import (
    IDMParams,
    acc_model_acceleration,
    braking_lead_floor,
    constant_acceleration_heuristic,
    idm_acceleration,
    mobil_gain,
)
from reflexdrive.agents.staged.lane_frame import (
    lane_neighbours,
    to_lane_frame,
    track_values,
)
from reflexdrive.agents.staged.lattice import Lattice
from reflexdrive.agents.staged.planner_config import PlannerConfig
from reflexdrive.agents.staged.route_frame import (
    ROUTE_KEYS,
    absent_as_nan,
    curve_speed_limit,
    route_is_curved,
    smooth_route_gaps,
)
from reflexdrive.agents.staged.types import PLAN_STEP_S, Plan, Tracks
from reflexdrive.envs.config import ACCELERATION_BOUNDS, EGO_FEATURES

SPEED = EGO_FEATURES.index("speed_mps")
LANE_OFFSET = EGO_FEATURES.index("lane_offset_m")
HEADING_ERROR = EGO_FEATURES.index("heading_error_rad")
LANE_INDEX = EGO_FEATURES.index("lane_index")
LANE_COUNT = EGO_FEATURES.index("lane_count")


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


def _standstill_gap(gap: np.ndarray, lead_speed: np.ndarray, cfg: PlannerConfig
                    ) -> np.ndarray:
    """The gap IDM sees: behind a lead slower than 1 m/s, shortened by
    `standstill_gap_m - s0`, so the ego comes to rest `standstill_gap_m` behind it [m]."""
    return np.where(lead_speed < 1.0, gap - (cfg.standstill_gap_m - cfg.idm.min_gap_m), gap)


def following_acceleration(speed: np.ndarray, lead_gap: np.ndarray, lead_speed: np.ndarray,
                           lead_accel: np.ndarray, cfg: PlannerConfig,
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


# ----------------------------------------------------------------------------- the planner


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
            lead_speed = track_values(frame.vs, lead)
            sides[k] = dict(lead=lead, lead_gap=lead_gap, lead_speed=lead_speed,
                            follower=follower, follower_gap=follower_gap,
                            follower_speed=track_values(frame.vs, follower),
                            accel=following_acceleration(speed, lead_gap, lead_speed,
                                                         track_values(frame.accel_s, lead), cfg,
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
        lattice = Lattice(cfg, self.times, self.sight_speed_mps, frame, offset,
                          lateral_speed, relative)
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
            brake_ahead = np.minimum(
                route_planning.bend_deceleration(route, speed, cfg.max_lateral_accel_mps2,
                                                 window=1),
                route_planning.deceleration_to_speeds(route, limit, speed))
            brake_ahead = route_planning.brake_when_needed(brake_ahead,
                                                           cfg.bend_brake_min_mps2)
            bend = np.minimum(route_planning.curve_acceleration(
                speed, bend_speed, params.max_accel_mps2, params.delta), brake_ahead)
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
        lattice = Lattice(cfg, self.times, self.sight_speed_mps, frame, offset,
                          lateral_speed, relative)
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


