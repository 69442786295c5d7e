"""One substep of `B` worlds on a road network in the kernel: `next_lane`, `network_act`,
`network_move` as scalar loops over one world's vehicles, and the parallel driver
`network_worlds` (`numba.prange` over worlds, as `world.substep_worlds`).

The same model and float operations as `envs.backends.batched.torch.network_traffic`
(which documents the phases) and `torch.network.next_lane`: results differ from the torch
path only where the two use different implementations of `sin`, `cos`, `atan2`, ...
(SLEEF against the C library, within an ulp), ~1e-14 m over hundreds of substeps; the lane
and route decisions are the same. The Python entry point is `numba.network_step`.

A world's phase 1 (`network_act`) reads only the input rows and writes the output rows,
phase 2 (`network_move`) steps the output rows in place: highway-env's `road.act()` does
not move vehicles; the act loop runs in slot order, as highway-env's, since MOBIL's abort
rule reads the targets earlier vehicles chose in the same loop. Phase 3
(`network_collisions`) is `Road.step`'s collision loop over every pair, as
`HighwayBackend.substep` runs it on road networks. The torch substep has no MOBIL and runs
phase 3 only when asked (`collisions=True`, `torch.collision.pair_collisions`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from highway_env.vehicle.controller import ControlledVehicle
from reflexdrive.envs.backends.batched.lanes import LaneTables
from reflexdrive.envs.backends.batched.network_state import OBSTACLE_KIND, NetworkState
from reflexdrive.envs.backends.batched.numba.collision import (
    polygons_intersecting,
    rectangle_corners,
)
from reflexdrive.envs.backends.batched.numba.connected import neighbours_connected
from reflexdrive.envs.backends.batched.numba.jit import jit, prange
from reflexdrive.envs.backends.batched.numba.layout import WORLDS_PER_TASK, kernel_params
from reflexdrive.envs.backends.batched.numba.network import (
    closest_lane_near,
    heading_at,
    lane_band,
    lane_bounds,
    lane_distance,
    lane_position,
    local_coordinates,
    wrap_to_pi,
)
from reflexdrive.envs.backends.batched.numba.scalars import clip, not_zero
from reflexdrive.envs.backends.batched.numba.vehicle import bicycle
from reflexdrive.envs.backends.batched.state import IDM_KIND, Params

from reflexdrive.common.threads import kernel_threads

TAU_PURSUIT_S = float(ControlledVehicle.TAU_PURSUIT)
"""`ControlledVehicle.TAU_PURSUIT`: the steering looks `v * tau` ahead [s]."""


class NetworkArrays(NamedTuple):
    """The per-vehicle fields of a `NetworkState` as numpy arrays (same names, shapes and
    dtypes; `substep` left out): what the kernel reads and writes."""

    position: np.ndarray
    heading: np.ndarray
    speed: np.ndarray
    valid: np.ndarray
    length: np.ndarray
    width: np.ndarray
    diagonal: np.ndarray
    kind: np.ndarray
    lane: np.ndarray
    target_lane: np.ndarray
    target_speed: np.ndarray
    lane_changes: np.ndarray
    timer: np.ndarray
    steering: np.ndarray
    acceleration: np.ndarray
    crashed: np.ndarray
    impact: np.ndarray
    impact_pending: np.ndarray
    route_road: np.ndarray
    route_lane: np.ndarray
    route_next: np.ndarray
    brake_decel: np.ndarray


@jit()
def _route_element(route_road, k):
    """The road row of route element `k` (-1 past the end or on padding)."""
    if k >= route_road.shape[0]:
        return -1
    return route_road[k] if route_road[k] >= 0 else -1


@jit()
def next_lane(t, lane, x, y, route_road, route_lane, route_next):
    """`RoadNetwork.next_lane(lane, route, (x, y))` (rules of `torch.network.next_lane`).

    Args:
        lane: lane row; x, y: position [m]; route_road, route_lane: `(R,)` int64 the
        vehicle's route (road rows, lane ids or -1); route_next: index of its head.

    Returns:
        the next lane row and the updated route pointer.
    """
    road = t.road[lane]
    if _route_element(route_road, route_next) == road:
        route_next += 1
    next_road = _route_element(route_road, route_next)
    next_id = route_lane[min(route_next, route_road.shape[0] - 1)]
    follows = next_road >= 0 and t.road_from[next_road] == t.road_to[road]
    own = next_id if follows and next_id >= 0 else t.lane_id[lane]
    s, _ = local_coordinates(t, lane, x, y)
    px, py = lane_position(t, lane, s, 0.0)
    candidates = 1 if follows else t.next_roads.shape[1]
    best, best_distance, first_present = -1, math.inf, -1
    for c in range(candidates):
        candidate = next_road if follows else t.next_roads[road, c]
        if candidate < 0:
            continue
        first, count = t.road_first_lane[candidate], t.road_lane_count[candidate]
        chosen = own
        if count != t.road_lane_count[road]:         # the closest lane of the candidate
            chosen, closest_distance = 0, math.inf
            for i in range(count):
                s_i, r_i = local_coordinates(t, first + i, px, py)
                d = lane_distance(t, first + i, s_i, r_i)
                if d < closest_distance:
                    chosen, closest_distance = i, d
        distance = math.inf
        if 0 <= chosen < count:
            s_c, r_c = local_coordinates(t, first + chosen, px, py)
            distance = lane_distance(t, first + chosen, s_c, r_c)
        if first_present < 0:
            first_present = first + chosen
        if distance < best_distance:
            best, best_distance = first + chosen, distance
    if best < 0:                     # no road leaves the end node (or all at infinity)
        best = first_present if first_present >= 0 else lane
    return best, route_next


@jit()
def network_steering(p, t, s, r, heading, speed, length, target_lane):
    """`ControlledVehicle.steering_control` to a network lane [rad]
    (`torch.network_traffic.network_steering`, same operations), from the vehicle's
    `local_coordinates` `(s, r)` [m] on `target_lane`."""
    future_heading = heading_at(t, target_lane, s + speed * TAU_PURSUIT_S)
    v = not_zero(speed, p.not_zero_eps)
    command = math.asin(clip(-p.kp_lateral * r / v, -1.0, 1.0))
    heading_ref = future_heading + clip(command, -p.heading_command_limit,
                                        p.heading_command_limit)
    rate = p.kp_heading * wrap_to_pi(heading_ref - heading)
    slip = math.asin(clip(length / 2 / v * rate, -1.0, 1.0))
    steering = math.atan(2 * math.tan(slip))
    return clip(steering, -p.max_steering_angle, p.max_steering_angle)


@jit()
def neighbours(p, t, s, b, j, search_lane):
    """`Road.neighbour_vehicles(j, search_lane)` in world `b`: the slots of the valid
    vehicles on `search_lane` (1 m margin) ahead (smallest `s_v >= s_j`, the last slot on a
    tie) and behind (largest `s_v < s_j`, the first on a tie); -1 where none. A lane with
    connected lanes (the "curve" road) searches them too (`neighbours_connected`)."""
    front, rear, _ = neighbours_gap(p, t, s, b, j, search_lane)
    return front, rear


@jit()
def neighbours_gap(p, t, s, b, j, search_lane):
    """`neighbours`, and the front's `s - s_j` on `search_lane` [m] (inf without one): the
    gap `idm` computes when `search_lane` is `j`'s lane (the same values)."""
    if t.connected[search_lane, 0] >= 0:
        front, rear = neighbours_connected(p, t, s, b, j, search_lane)
        if front < 0:
            return front, rear, math.inf
        s_front, _ = local_coordinates(t, search_lane, s.position[b, front, 0],
                                       s.position[b, front, 1])
        s_j, _ = local_coordinates(t, search_lane, s.position[b, j, 0], s.position[b, j, 1])
        return front, rear, s_front - s_j
    position, valid = s.position, s.valid
    s_own, _ = local_coordinates(t, search_lane, position[b, j, 0], position[b, j, 1])
    half = t.width[search_lane] / 2 + p.neighbour_margin
    end = t.length[search_lane] + p.lane_vehicle_length
    front, s_front, rear, s_rear = -1, math.inf, -1, -math.inf
    for k in range(valid.shape[1]):
        if k == j or not valid[b, k]:
            continue
        inside, s_k = lane_band(t, search_lane, position[b, k, 0], position[b, k, 1], half,
                                -p.lane_vehicle_length, end)
        if not inside:
            continue
        if s_k >= s_own and s_k <= s_front:
            front, s_front = k, s_k
        if s_k < s_own and s_k > s_rear:
            rear, s_rear = k, s_k
    return front, rear, s_front - s_own


@jit()
def desired_gap(p, s, b, j, front):
    """`IDMVehicle.desired_gap(j, front)` (projected) [m]:
    `d0 + v tau + v ((v e - v_f e_f) . e) / (2 sqrt(a b))`."""
    v = s.speed[b, j]
    c, sn = math.cos(s.heading[b, j]), math.sin(s.heading[b, j])
    vf = s.speed[b, front]
    cf, sf = math.cos(s.heading[b, front]), math.sin(s.heading[b, front])
    dv = (v * c - vf * cf) * c + (v * sn - vf * sf) * sn
    return p.distance_wanted + v * p.time_wanted + v * dv / p.two_sqrt_ab


@jit()
def idm(p, t, s, b, follower, front):
    """`IDMVehicle.acceleration(follower, front)` [m/s^2] in world `b`: 0 without a follower
    or for an obstacle (not a `Vehicle`); the target speed (0 but for IDM vehicles), speed
    limit and distance `s_front - s` are those of the follower's current lane
    (`torch.network_traffic._idm_behind`, same operations)."""
    if follower < 0 or s.kind[b, follower] == OBSTACLE_KIND or front < 0:
        return idm_gap(p, t, s, b, follower, front, math.inf)
    own_lane = s.lane[b, follower]
    x, y = s.position[b, follower, 0], s.position[b, follower, 1]
    s_front, _ = local_coordinates(t, own_lane, s.position[b, front, 0], s.position[b, front, 1])
    s_own, _ = local_coordinates(t, own_lane, x, y)
    return idm_gap(p, t, s, b, follower, front, s_front - s_own)


@jit()
def idm_gap(p, t, s, b, follower, front, gap):
    """`idm` with the front's `s_front - s` on the follower's lane given: `gap` [m]
    (unused without a front)."""
    if follower < 0 or s.kind[b, follower] == OBSTACLE_KIND:
        return 0.0
    own_lane = s.lane[b, follower]
    v = s.speed[b, follower]
    v0 = max(min(max(s.target_speed[b, follower], 0.0), t.speed_limit[own_lane]),
             p.not_zero_eps)
    free = math.pow(max(v, 0.0) / v0, p.delta) * -1.0 + 1.0
    free = free * p.comfort_acc_max
    if front < 0:
        return free
    ratio = desired_gap(p, s, b, follower, front) / not_zero(gap, p.not_zero_eps)
    return free - p.comfort_acc_max * (ratio * ratio)


@jit()
def _sign(x):
    return 1 if x > 0 else (-1 if x < 0 else 0)


@jit()
def mobil(p, t, s, b, j, side, target, route_id):
    """`IDMVehicle.mobil(side)` for vehicle `j` (its target lane now `target`; `route_id`:
    the lane id of its route's head, -1 for none or None): True if the change to lane row
    `side` is safe for the new follower and either goes the route's way (routed, safe
    for `j` too) or gains `a_th` with politeness `p` (MOBIL's incentive)."""
    new_front, new_rear = neighbours(p, t, s, b, j, side)
    new_following_a = idm(p, t, s, b, new_rear, new_front)
    new_following_pred_a = idm(p, t, s, b, new_rear, j)
    if new_following_pred_a < -p.lane_change_max_braking_imposed:
        return False
    old_front, old_rear = neighbours(p, t, s, b, j, s.lane[b, j])
    self_pred_a = idm(p, t, s, b, j, new_front)
    if route_id >= 0:
        target_id = t.lane_id[target]
        if _sign(t.lane_id[side] - target_id) != _sign(route_id - target_id):
            return False
        if self_pred_a < -p.lane_change_max_braking_imposed:
            return False
        return True
    self_a = idm(p, t, s, b, j, old_front)
    old_following_a = idm(p, t, s, b, old_rear, j)
    old_following_pred_a = idm(p, t, s, b, old_rear, old_front)
    jerk = self_pred_a - self_a + p.politeness * (
        new_following_pred_a - new_following_a + old_following_pred_a - old_following_a)
    return not jerk < p.lane_change_min_acc_gain


@jit()
def aborts(p, t, s_in, s_out, b, j, lane, target):
    """The abort rule of `change_lane_policy` for `j` changing from `lane` to `target` on
    the same road: another IDM vehicle `v` not on `target` but targeting it (as the act
    loop has left it: slots before `j` decided this substep) is ahead of `j` on `j`'s lane
    within `j`'s desired gap behind it."""
    x, y = s_in.position[b, j, 0], s_in.position[b, j, 1]
    s_own, _ = local_coordinates(t, lane, x, y)
    for v in range(s_in.valid.shape[1]):
        if v == j or not s_in.valid[b, v] or s_in.kind[b, v] != IDM_KIND:
            continue
        if s_in.lane[b, v] == target:
            continue
        v_target = s_out.target_lane[b, v] if v < j else s_in.target_lane[b, v]
        if v_target != target:
            continue
        s_v, _ = local_coordinates(t, lane, s_in.position[b, v, 0], s_in.position[b, v, 1])
        d = s_v - s_own
        if 0 < d and d < desired_gap(p, s_in, b, j, v):
            return True
    return False


@jit()
def change_lane_policy(p, t, s_in, s_out, b, j, target, route_next, timer):
    """`IDMVehicle.change_lane_policy` for `j` (MOBIL on): returns its target lane row and
    timer [s]. While changing lanes on its road, the abort rule (`aborts`); else every
    `LANE_CHANGE_DELAY < timer` (then `timer = 0`) each side lane of its lane (left, then
    right: the last that passes wins) that is reachable (not forbidden, `|r| <= 2 w`,
    `0 <= s < length + l_v`), at `|v| >= 1 m/s`, passing `mobil`."""
    lane = s_in.lane[b, j]
    if lane != target:
        if t.road[lane] == t.road[target] and aborts(p, t, s_in, s_out, b, j, lane, target):
            target = lane
        return target, timer
    if not p.lane_change_delay < timer:
        return target, timer
    timer = 0.0
    road, lane_id = t.road[lane], t.lane_id[lane]
    route_id = -1
    if _route_element(s_in.route_road[b, j], route_next) >= 0:
        route_id = s_in.route_lane[b, j, route_next]
    x, y = s_in.position[b, j, 0], s_in.position[b, j, 1]
    for side_id in (lane_id - 1, lane_id + 1):
        if side_id < 0 or side_id >= t.road_lane_count[road]:
            continue
        side = t.road_first_lane[road] + side_id
        if t.forbidden[side]:
            continue
        s_side, r_side = local_coordinates(t, side, x, y)
        if not (abs(r_side) <= 2 * t.width[side]
                and 0 <= s_side < t.length[side] + p.lane_vehicle_length):
            continue
        if abs(s_in.speed[b, j]) < p.mobil_min_speed:
            continue
        if mobil(p, t, s_in, b, j, side, target, route_id):
            target = side
    return target, timer


@jit()
def braking_action(p, t, s_in, b, j, target):
    """`BrakingLeadVehicle.act` of a vehicle braking at `brake_decel` (a yielding crossing
    vehicle, `network_state.start_yielding`): steering to its target lane [rad] and
    `-min(decel, max(v, 0) / dt)` [m/s^2] (never below standstill); no route, MOBIL or
    IDM decision."""
    s_target, r_target = local_coordinates(t, target, s_in.position[b, j, 0],
                                           s_in.position[b, j, 1])
    steering = network_steering(p, t, s_target, r_target, s_in.heading[b, j],
                                s_in.speed[b, j], s_in.length[b, j], target)
    return steering, -min(s_in.brake_decel[b, j], max(s_in.speed[b, j], 0.0) / p.dt)


@jit()
def network_act(p, t, s_in, s_out, b):
    """Phase 1 for world `b` (`IDMVehicle.act` of every acting IDM vehicle, in slot order):
    `next_lane` past `length - l_v / 2` of its target lane (`follow_road`), MOBIL where
    enabled (`change_lane_policy`), then steering [rad] to the target lane and the IDM
    acceleration [m/s^2] (the smaller of those behind the fronts on its lane and on its
    target lane), from the rows of `s_in` into those of `s_out` (`NetworkArrays`); a
    vehicle braking to a stop (`brake_decel >= 0`) takes `braking_action` instead; the
    other slots' rows are copied."""
    for j in range(s_in.valid.shape[1]):
        target, route_next = s_in.target_lane[b, j], s_in.route_next[b, j]
        steering, acceleration = s_in.steering[b, j], s_in.acceleration[b, j]
        timer = s_in.timer[b, j]
        if s_in.valid[b, j] and s_in.kind[b, j] == IDM_KIND and not s_in.crashed[b, j] \
                and s_in.brake_decel[b, j] >= 0.0:
            steering, acceleration = braking_action(p, t, s_in, b, j, target)
        elif s_in.valid[b, j] and s_in.kind[b, j] == IDM_KIND and not s_in.crashed[b, j]:
            x, y = s_in.position[b, j, 0], s_in.position[b, j, 1]
            checked = target
            s_target, r_target = local_coordinates(t, target, x, y)
            if s_target > t.length[target] - p.lane_vehicle_length / 2:
                target, route_next = next_lane(t, target, x, y, s_in.route_road[b, j],
                                               s_in.route_lane[b, j], route_next)
            if s_in.lane_changes[b, j]:
                target, timer = change_lane_policy(p, t, s_in, s_out, b, j, target,
                                                   route_next, timer)
            if target != checked:                  # else the coordinates above
                s_target, r_target = local_coordinates(t, target, x, y)
            steering = network_steering(p, t, s_target, r_target, s_in.heading[b, j],
                                        s_in.speed[b, j], s_in.length[b, j], target)
            lane = s_in.lane[b, j]
            front, _, gap = neighbours_gap(p, t, s_in, b, j, lane)     # on j's lane: idm's
            acceleration = idm_gap(p, t, s_in, b, j, front, gap)
            if lane != target:
                front, _ = neighbours(p, t, s_in, b, j, target)
                acceleration = min(acceleration, idm(p, t, s_in, b, j, front))
            acceleration = clip(acceleration, -p.acc_max, p.acc_max)
        s_out.target_lane[b, j], s_out.route_next[b, j] = target, route_next
        s_out.steering[b, j], s_out.acceleration[b, j] = steering, acceleration
        s_out.timer[b, j] = timer


@jit()
def network_move(p, t, bounds, s_in, s_out, b, first_s, first, second):
    """Phase 2 for world `b`: every valid vehicle but the ego and the obstacles steps `dt`
    (`bicycle` with the action phase 1 left in `s_out`), then the ego applies `first`
    `[m/s^2, rad]` for `first_s` [s] and `second` for `dt - first_s` (a zero-length piece
    does nothing; brakes stop it: `a = max(a_cmd, -max(v, 0) / duration)`); a pending
    impact is applied at a vehicle's first piece and crashes it; every mover then takes its
    closest lane (`closest_lane_near` from its previous one; `bounds`: `lane_bounds`)."""
    for j in range(s_in.valid.shape[1]):
        x, y = s_in.position[b, j, 0], s_in.position[b, j, 1]
        heading, speed, lane = s_in.heading[b, j], s_in.speed[b, j], s_in.lane[b, j]
        crashed, pending = s_in.crashed[b, j], s_in.impact_pending[b, j]
        steering, acceleration = s_out.steering[b, j], s_out.acceleration[b, j]
        if s_in.valid[b, j] and s_in.kind[b, j] == IDM_KIND:
            s_out.timer[b, j] = s_out.timer[b, j] + p.dt        # IDMVehicle.step
        if s_in.valid[b, j] and s_in.kind[b, j] != OBSTACLE_KIND:
            for piece in range(2 if j == 0 else 1):
                duration = p.dt
                if j == 0:
                    duration = first_s if piece == 0 else p.dt - first_s
                    if not duration > 0:
                        continue
                    command = first if piece == 0 else second
                    steering = command[1]
                    acceleration = max(command[0], -max(speed, 0.0) / duration)
                x, y, heading, speed, steering, acceleration, crashed = bicycle(
                    p, x, y, heading, speed, s_in.length[b, j], steering, acceleration,
                    crashed, s_in.impact[b, j, 0], s_in.impact[b, j, 1], pending, duration)
                pending = False
            lane = closest_lane_near(t, bounds, x, y, heading, lane)
        s_out.position[b, j, 0], s_out.position[b, j, 1] = x, y
        s_out.heading[b, j], s_out.speed[b, j], s_out.lane[b, j] = heading, speed, lane
        s_out.steering[b, j], s_out.acceleration[b, j] = steering, acceleration
        s_out.crashed[b, j], s_out.impact_pending[b, j] = crashed, pending
        s_out.impact[b, j, 0], s_out.impact[b, j, 1] = s_in.impact[b, j, 0], s_in.impact[b, j, 1]


@jit()
def network_collisions(p, s, b, corners):
    """Phase 3 for world `b`: highway-env's `Road.step` collision loop on the rows of `s`,
    `vehicle.handle_collisions(other, dt)` for every pair of valid slots `i < j` in slot
    order (the obstacles' slots come after the vehicles', and two obstacles are never
    checked, as `road.objects` are not). Pre-check `|p_j - p_i| <= (diag_i + diag_j) / 2 +
    v_i dt` [m], then `numba.collision`'s separating axes with displacements `v e dt` [m]: if
    they will intersect, `j`'s impact is `-t / 2` and `i`'s `t / 2`, or `i`'s `t` and none for
    an obstacle `j` (highway-env's `Obstacle` rule), both pending and the last write wins;
    if they intersect now, both are crashed. Traffic crashing into traffic stops as
    highway-env's does (`vehicle.bicycle`: a crashed vehicle brakes at `-v`) instead of
    driving through it, where the IDM behind an overlapped leader runs its speed negative.
    `corners`: `(2, 4, 2)` scratch."""
    count = s.valid.shape[1]
    for i in range(count):
        if not s.valid[b, i] or s.kind[b, i] == OBSTACLE_KIND:
            continue
        x, y, heading, speed = s.position[b, i, 0], s.position[b, i, 1], s.heading[b, i], \
            s.speed[b, i]
        have_corners = False
        for v in range(i + 1, count):
            if not s.valid[b, v]:
                continue
            dx, dy = s.position[b, v, 0] - x, s.position[b, v, 1] - y
            if math.sqrt(dx * dx + dy * dy) > (s.diagonal[b, i] + s.diagonal[b, v]) / 2 \
                    + speed * p.dt:
                continue
            if not have_corners:
                rectangle_corners(x, y, heading, s.length[b, i], s.width[b, i], corners[0])
                have_corners = True
            rectangle_corners(s.position[b, v, 0], s.position[b, v, 1], s.heading[b, v],
                              s.length[b, v], s.width[b, v], corners[1])
            intersecting, will_intersect, tx, ty = polygons_intersecting(
                corners[0], corners[1], speed * math.cos(heading) * p.dt,
                speed * math.sin(heading) * p.dt,
                s.speed[b, v] * math.cos(s.heading[b, v]) * p.dt,
                s.speed[b, v] * math.sin(s.heading[b, v]) * p.dt)
            if will_intersect:
                if s.kind[b, v] == OBSTACLE_KIND:
                    s.impact[b, i, 0], s.impact[b, i, 1] = tx, ty
                else:
                    s.impact[b, i, 0], s.impact[b, i, 1] = tx / 2, ty / 2
                    s.impact[b, v, 0], s.impact[b, v, 1] = -tx / 2, -ty / 2
                    s.impact_pending[b, v] = True
                s.impact_pending[b, i] = True
            if intersecting:
                s.crashed[b, v] = True
                s.crashed[b, i] = True


@jit()
def _keep_world(s_in, s_out, b):
    """Copy world `b`'s written rows unchanged (an inactive world)."""
    for j in range(s_in.valid.shape[1]):
        s_out.position[b, j, 0], s_out.position[b, j, 1] = \
            s_in.position[b, j, 0], s_in.position[b, j, 1]
        s_out.impact[b, j, 0], s_out.impact[b, j, 1] = s_in.impact[b, j, 0], s_in.impact[b, j, 1]
        s_out.heading[b, j], s_out.speed[b, j] = s_in.heading[b, j], s_in.speed[b, j]
        s_out.lane[b, j], s_out.target_lane[b, j] = s_in.lane[b, j], s_in.target_lane[b, j]
        s_out.steering[b, j], s_out.acceleration[b, j] = \
            s_in.steering[b, j], s_in.acceleration[b, j]
        s_out.route_next[b, j], s_out.crashed[b, j] = s_in.route_next[b, j], s_in.crashed[b, j]
        s_out.impact_pending[b, j] = s_in.impact_pending[b, j]
        s_out.timer[b, j] = s_in.timer[b, j]


@jit(parallel=True)
def network_worlds(p, t, bounds, s_in, s_out, first_s, first, second, active, collisions,
                   per_task):
    """One substep of the worlds where `active (B,)`: `prange` over work items of
    `per_task` consecutive worlds, each world `network_act`, `network_move` (the egos'
    pieces: `first_s (B,)` [s], `first`, `second` `(B, 2)` `[acceleration, steering]`),
    then (if `collisions`) `network_collisions`; the other worlds' rows are copied. The
    worlds are independent: the result does not depend on `per_task` or the threads."""
    batch = s_in.valid.shape[0]
    tasks = (batch + per_task - 1) // per_task
    for task in prange(tasks):
        corners = np.empty((2, 4, 2))
        for b in range(task * per_task, min(batch, (task + 1) * per_task)):
            if not active[b]:
                _keep_world(s_in, s_out, b)
                continue
            network_act(p, t, s_in, s_out, b)
            network_move(p, t, bounds, s_in, s_out, b, first_s[b], first[b], second[b])
            if collisions:
                network_collisions(p, s_out, b, corners)


WRITTEN = ("position", "heading", "speed", "lane", "target_lane", "steering", "acceleration",
           "route_next", "crashed", "impact", "impact_pending", "timer")
"""The `NetworkArrays` fields a substep writes (the others are shared with the input)."""


_BOUNDS: dict[int, tuple[LaneTables, np.ndarray]] = {}


def _bounds(tables: LaneTables) -> np.ndarray:
    """`lane_bounds(tables)`, computed once per tables object (held with it, so its id
    cannot be reused while cached)."""
    held = _BOUNDS.get(id(tables))
    if held is None or held[0] is not tables:
        held = _BOUNDS[id(tables)] = (tables, lane_bounds(tables))
    return held[1]


def network_arrays(state: NetworkState) -> NetworkArrays:
    """Numpy views of `state`'s fields (float64 on CPU; contiguous copies where needed)."""
    return NetworkArrays(*(getattr(state, name).contiguous().numpy()
                           for name in NetworkArrays._fields))


def _host(values, dtype) -> np.ndarray:
    return np.ascontiguousarray(torch.as_tensor(values).to(dtype).cpu().numpy())


def network_substep_cpu(params: Params, tables: LaneTables, state: NetworkState,
                        first_s: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
                        active: torch.Tensor | None = None, collisions: bool = True,
                        threads: int | None = None) -> NetworkState:
    """One substep of the worlds where `active` by the numba kernel (`network_worlds`),
    with the ego's command in two pieces (what the clock gives `BatchedBackend.substep`).

    Args:
        tables: the numpy `LaneTables` (`LaneLayout.tables`).
        state: float64 on CPU; not modified.
        first_s: `(B,)` [s] in `[0, dt]`; first, second: `(B, 2)` `[m/s^2, rad]`.
        active: `(B,)` bool (None: all); the others are returned as they are.
        collisions: run the collision phase (every pair; the torch substep's `collisions`).
        threads: at most this many numba threads (all when None), and never more than
            the work items of `WORLDS_PER_TASK` worlds (B = 1: the calling thread).

    Returns:
        the next state: new tensors for the fields in `WRITTEN`, the others shared; the
        substep count advanced where active.
    """
    s_in = network_arrays(state)
    s_out = s_in._replace(**{name: np.empty_like(getattr(s_in, name)) for name in WRITTEN})
    batch = state.valid.shape[0]
    live = (np.ones(batch, dtype=bool) if active is None
            else _host(active, torch.bool))
    # No more threads than work items (one world: the calling thread alone), as
    # `numba.step`: waking a thread whose core runs another process can cost a scheduler
    # time slice, far more than a small batch's substep.
    tasks = -(-batch // WORLDS_PER_TASK)
    with kernel_threads(tasks if threads is None else min(threads, tasks)):
        network_worlds(kernel_params(params), tables, _bounds(tables), s_in, s_out,
                       _host(first_s, torch.float64).reshape(batch),
                       _host(first, torch.float64), _host(second, torch.float64), live,
                       bool(collisions), WORLDS_PER_TASK)
    return state.replace(**{name: torch.from_numpy(getattr(s_out, name)) for name in WRITTEN},
                         substep=state.substep + torch.from_numpy(live).long())


def network_step_cpu(params: Params, tables: LaneTables, state: NetworkState,
                     command: torch.Tensor, collisions: bool = True,
                     threads: int | None = None) -> NetworkState:
    """`torch.network_traffic.network_step` by the numba kernel (same result to ~1e-14):
    `network_substep_cpu` with `command (B, 2)` `[m/s^2, rad]` for the whole substep."""
    command = torch.as_tensor(command, dtype=torch.float64)
    first_s = torch.full((command.shape[0],), params.dt, dtype=torch.float64)
    return network_substep_cpu(params, tables, state, first_s, command, command,
                               collisions=collisions, threads=threads)
