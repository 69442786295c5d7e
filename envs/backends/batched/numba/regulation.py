"""The intersection's right-of-way rules in the kernel: highway-env's
`RegulatedRoad.enforce_road_rules` for `B` worlds (`envs.backends.regulation` says what the
rules are and when they run; this is the same computation, scalar numba per world).

`regulate_worlds` runs, in each world where `due`, highway-env's two loops over the world's
vehicles (valid slots but the obstacles, in slot order, as `road.vehicles`):

1. release: a yielding vehicle whose `yield_timer >= YIELD_DURATION * REGULATION_FREQUENCY`
   stops yielding and takes its lane's speed limit as target speed, else its timer counts
   one more enforcement;
2. conflicts: for every pair `i < j`, `conflict` (`is_conflict_possible`) on the two
   vehicles' `predict` (`predict_trajectory_constant_speed`), and the yielding one of a
   conflict (`yielder`, `respect_priorities`) gets target speed 0, `is_yielding` and timer
   0 if it may yield (`regulated`: an IDM vehicle, `VehicleInit.regulated`).

What a vehicle's prediction reads is what highway-env's reads between `road.act()` and the
vehicles' steps: the pose, speed, lane, crash and impact of the substep's start (`s_in`) and
the route pointer after the act phase (`route_next`: `follow_road` may have dropped the
route's head). The rectangle test is highway-env's `utils.rotated_rectangles_intersect`,
which is not the separating-axes test of the collisions (`numba.collision`): a corner, an
edge midpoint or the centre of one rectangle inside the other, the point turned by `+angle`
into the other's frame (as highway-env does).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from highway_env.road.regulation import RegulatedRoad
from reflexdrive.envs.backends.batched.network_state import OBSTACLE_KIND, NetworkState
from reflexdrive.envs.backends.batched.numba.jit import jit, prange
from reflexdrive.envs.backends.batched.numba.layout import WORLDS_PER_TASK, kernel_params
from reflexdrive.envs.backends.batched.numba.network import (
    _python_callable,
    heading_at,
    lane_position,
    local_coordinates,
)
from reflexdrive.envs.backends.batched.numba.network_traffic import network_substep_cpu
from reflexdrive.envs.backends.batched.numba.vehicle import bicycle
from reflexdrive.envs.backends.batched.state import IDM_KIND, Params
from reflexdrive.envs.backends.regulation import regulation_due, regulation_period

from reflexdrive.common.threads import kernel_threads

HORIZON_S = 3.0
PREDICTION_STEP_S = 0.25
"""`is_conflict_possible`'s defaults: predictions at `arange(0.25, 3, 0.25)` [s] (11)."""
PREDICTION_TIMES = np.arange(PREDICTION_STEP_S, HORIZON_S, PREDICTION_STEP_S)
RELEASE_ENFORCEMENTS = float(RegulatedRoad.YIELD_DURATION * RegulatedRoad.REGULATION_FREQUENCY)
"""A yielding vehicle is released once its timer reaches this (0: at the next enforcement)."""
CONFLICT_LENGTH = 1.5
CONFLICT_WIDTH = 0.9
"""`is_conflict_possible`'s rectangles: 1.5 x the length, 0.9 x the width."""


@jit()
def _route_head(t, s_in, b, j, route_next, lane):
    """The lane row of route element `route_next` of vehicle `j` (`position_heading_
    along_route`'s head: a None lane id is the current lane's id), -1 past the route."""
    route_road = s_in.route_road[b, j]
    if route_next >= route_road.shape[0] or route_road[route_next] < 0:
        return -1
    road = route_road[route_next]
    lane_id = s_in.route_lane[b, j, route_next]
    if lane_id < 0:
        lane_id = t.lane_id[lane]
    return t.road_first_lane[road] + lane_id


@jit()
def predict(p, t, s_in, b, j, route_next, times, out):
    """`predict_trajectory_constant_speed(times)` of vehicle `j` into `out (T, 3)`
    `[x, y, heading]` [m, rad].

    An IDM vehicle (a `ControlledVehicle`) moves along its route at constant speed: at
    `s = s_0 + v t` (`s_0` on its current lane), walking the route from its head while
    `s` passes a lane's length and another element follows (the last lane extended), at
    lateral 0. A plain `Vehicle` (the ego, a static vehicle; "constant_steering") steps the
    kinematic bicycle with its current steering and no acceleration, `times`' increments
    at a time, its crash and pending impact included (its deep copy's)."""
    x, y = s_in.position[b, j, 0], s_in.position[b, j, 1]
    lane, speed = s_in.lane[b, j], s_in.speed[b, j]
    if s_in.kind[b, j] == IDM_KIND:
        s0, _ = local_coordinates(t, lane, x, y)
        for k in range(times.shape[0]):
            longitudinal = s0 + speed * times[k]
            element = route_next
            row = _route_head(t, s_in, b, j, element, lane)
            if row < 0:
                row = lane
            else:
                while longitudinal > t.length[row]:
                    following = _route_head(t, s_in, b, j, element + 1, lane)
                    if following < 0:
                        break
                    longitudinal -= t.length[row]
                    element += 1
                    row = following
            out[k, 0], out[k, 1] = lane_position(t, row, longitudinal, 0.0)
            out[k, 2] = heading_at(t, row, longitudinal)
        return
    heading, steering = s_in.heading[b, j], s_in.steering[b, j]
    crashed, pending = s_in.crashed[b, j], s_in.impact_pending[b, j]
    previous = 0.0
    for k in range(times.shape[0]):
        x, y, heading, speed, steering, _, crashed = bicycle(
            p, x, y, heading, speed, s_in.length[b, j], steering, 0.0, crashed,
            s_in.impact[b, j, 0], s_in.impact[b, j, 1], pending, times[k] - previous)
        pending = False
        previous = times[k]
        out[k, 0], out[k, 1], out[k, 2] = x, y, heading


@jit()
def _has_point_inside(a, length_a, width_a, b, length_b, width_b):
    """`utils.has_corner_inside(a, b)`: one of `a`'s corners, edge midpoints or centre lies
    in `b` (`point_in_rotated_rectangle`: the offset turned by `+b`'s angle, as highway-env
    does). `a`, `b`: `[x, y, heading]`."""
    ca, sa = math.cos(a[2]), math.sin(a[2])
    cb, sb = math.cos(b[2]), math.sin(b[2])
    half_l, half_w = length_a / 2, width_a / 2
    for i in range(9):
        # rect_corners(include_midpoints, include_center): 4 corners, centre, 4 midpoints
        if i < 4:
            local_x = half_l if i >= 2 else -half_l
            local_y = half_w if i == 1 or i == 2 else -half_w
        elif i == 4:
            local_x, local_y = 0.0, 0.0
        elif i < 7:
            local_x, local_y = (-half_l if i == 5 else half_l), 0.0
        else:
            local_x, local_y = 0.0, (-half_w if i == 7 else half_w)
        dx = ca * local_x + (-sa) * local_y + a[0] - b[0]
        dy = sa * local_x + ca * local_y + a[1] - b[1]
        u = cb * dx + (-sb) * dy
        w = sb * dx + cb * dy
        if -length_b / 2 <= u and u <= length_b / 2 and -width_b / 2 <= w and w <= width_b / 2:
            return True
    return False


@jit()
def rectangles_intersect(a, length_a, width_a, b, length_b, width_b):
    """`utils.rotated_rectangles_intersect((a, l_a, w_a), (b, l_b, w_b))`; `a`, `b`:
    `[x, y, heading]` [m, rad]."""
    return _has_point_inside(a, length_a, width_a, b, length_b, width_b) \
        or _has_point_inside(b, length_b, width_b, a, length_a, width_a)


@jit()
def conflict(s_in, b, i, j, path_i, path_j):
    """`is_conflict_possible(v_i, v_j)` from their predictions `path_* (T, 3)`: at some
    time the centres are within `v_i`'s length and the enlarged rectangles intersect."""
    li, wi = CONFLICT_LENGTH * s_in.length[b, i], CONFLICT_WIDTH * s_in.width[b, i]
    lj, wj = CONFLICT_LENGTH * s_in.length[b, j], CONFLICT_WIDTH * s_in.width[b, j]
    for k in range(path_i.shape[0]):
        dx, dy = path_j[k, 0] - path_i[k, 0], path_j[k, 1] - path_i[k, 1]
        if math.sqrt(dx * dx + dy * dy) > s_in.length[b, i]:
            continue
        if rectangles_intersect(path_i[k], li, wi, path_j[k], lj, wj):
            return True
    return False


@jit()
def yielder(t, s_in, b, i, j):
    """`respect_priorities(v_i, v_j)`: the vehicle on the lower-priority lane, at equal
    priority the one behind (`i` if `front_distance_to(j) > j.front_distance_to(i)`)."""
    priority_i, priority_j = t.priority[s_in.lane[b, i]], t.priority[s_in.lane[b, j]]
    if priority_i > priority_j:
        return j
    if priority_i < priority_j:
        return i
    dx = s_in.position[b, j, 0] - s_in.position[b, i, 0]
    dy = s_in.position[b, j, 1] - s_in.position[b, i, 1]
    ahead_i = math.cos(s_in.heading[b, i]) * dx + math.sin(s_in.heading[b, i]) * dy
    ahead_j = math.cos(s_in.heading[b, j]) * -dx + math.sin(s_in.heading[b, j]) * -dy
    return i if ahead_i > ahead_j else j


@jit()
def regulate_world(p, t, s_in, route_next, b, times, paths, target_speed, is_yielding,
                   yield_timer):
    """`enforce_road_rules` for world `b`: reads `s_in` (`RegulationArrays`) and
    `route_next (B, N)`, updates `target_speed`, `is_yielding`, `yield_timer` `(B, N)` in
    place; `paths (N, T, 3)` scratch."""
    slots = s_in.valid.shape[1]
    for j in range(slots):
        if s_in.valid[b, j] and is_yielding[b, j]:
            if yield_timer[b, j] >= RELEASE_ENFORCEMENTS:
                target_speed[b, j] = t.speed_limit[s_in.lane[b, j]]
                is_yielding[b, j] = False
            else:
                yield_timer[b, j] += 1
    for j in range(slots):
        if s_in.valid[b, j] and s_in.kind[b, j] != OBSTACLE_KIND:
            predict(p, t, s_in, b, j, route_next[b, j], times, paths[j])
    for i in range(slots):
        if not s_in.valid[b, i] or s_in.kind[b, i] == OBSTACLE_KIND:
            continue
        for j in range(i + 1, slots):
            if not s_in.valid[b, j] or s_in.kind[b, j] == OBSTACLE_KIND:
                continue
            if not conflict(s_in, b, i, j, paths[i], paths[j]):
                continue
            k = yielder(t, s_in, b, i, j)
            if s_in.kind[b, k] == IDM_KIND and s_in.regulated[b, k]:
                target_speed[b, k] = 0.0
                is_yielding[b, k] = True
                yield_timer[b, k] = 0


@jit(parallel=True)
def regulate_worlds(p, t, s_in, route_next, due, times, target_speed, is_yielding,
                    yield_timer, per_task):
    """`regulate_world` for every world where `due (B,)`: `prange` over work items of
    `per_task` consecutive worlds (as `network_traffic.network_worlds`; the worlds are
    independent, the result does not depend on `per_task` or the threads)."""
    batch, slots = s_in.valid.shape
    tasks = (batch + per_task - 1) // per_task
    for task in prange(tasks):
        paths = np.empty((slots, times.shape[0], 3))
        for b in range(task * per_task, min(batch, (task + 1) * per_task)):
            if due[b]:
                regulate_world(p, t, s_in, route_next, b, times, paths, target_speed,
                               is_yielding, yield_timer)


@_python_callable
def _intersect_many(a, size_a, b, size_b, out):
    for i in range(a.shape[0]):
        out[i] = rectangles_intersect(a[i], size_a[i, 0], size_a[i, 1], b[i], size_b[i, 0],
                                      size_b[i, 1])


def rectangles_intersect_many(a: np.ndarray, size_a: np.ndarray, b: np.ndarray,
                              size_b: np.ndarray) -> np.ndarray:
    """`rectangles_intersect` of `M` pairs (tests): `a`, `b` `(M, 3)` `[x, y, heading]`,
    `size_*` `(M, 2)` `[length, width]` [m]; `(M,)` bool."""
    out = np.empty(len(a), dtype=np.bool_)
    _intersect_many(*(np.ascontiguousarray(x, np.float64) for x in (a, size_a, b, size_b)),
                    out)
    return out


class RegulationArrays(NamedTuple):
    """The `NetworkState` fields the rules read, as numpy arrays (same names)."""

    position: np.ndarray
    heading: np.ndarray
    speed: np.ndarray
    valid: np.ndarray
    length: np.ndarray
    width: np.ndarray
    kind: np.ndarray
    lane: np.ndarray
    steering: np.ndarray
    crashed: np.ndarray
    impact: np.ndarray
    impact_pending: np.ndarray
    route_road: np.ndarray
    route_lane: np.ndarray
    regulated: np.ndarray


def regulate_cpu(params: Params, tables, before: NetworkState, after: NetworkState,
                 due: np.ndarray) -> NetworkState:
    """`after` (the substep's result from `before`) with the rules enforced in the worlds
    where `due (B,)` bool, as highway-env enforces them between `road.act()` and the
    vehicles' steps: from `before`'s poses and `after`'s route pointers; their outcome
    (target speeds, `is_yielding`, `yield_timer`) is what `after` carries. `tables`: the
    numpy `LaneTables`."""
    due = np.ascontiguousarray(due, dtype=bool)
    if not due.any():
        return after
    s_in = RegulationArrays(*(getattr(before, name).contiguous().numpy()
                              for name in RegulationArrays._fields))
    target_speed = after.target_speed.numpy().copy()
    is_yielding = after.is_yielding.numpy().copy()
    yield_timer = after.yield_timer.numpy().copy()
    # no more threads than work items (one world: the calling thread alone), as
    # `network_substep_cpu`: waking a thread whose core is busy costs more than the work
    tasks = -(-len(due) // WORLDS_PER_TASK)
    with kernel_threads(tasks):
        regulate_worlds(kernel_params(params), tables, s_in,
                        np.ascontiguousarray(after.route_next.numpy()), due,
                        PREDICTION_TIMES, target_speed, is_yielding, yield_timer,
                        WORLDS_PER_TASK)
    return after.replace(target_speed=torch.from_numpy(target_speed),
                         is_yielding=torch.from_numpy(is_yielding),
                         yield_timer=torch.from_numpy(yield_timer))


def network_substep_regulated(params: Params, tables, state: NetworkState,
                              first_s: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
                              active: torch.Tensor | None = None) -> NetworkState:
    """`network_traffic.network_substep_cpu` on a `RegulatedRoad` (the intersection): the
    substep, then `regulate_cpu` in the active worlds where the rules run this substep
    (`envs.backends.regulation.regulation_due` of the substep's index, at the period of
    `params.dt`)."""
    after = network_substep_cpu(params, tables, state, first_s, first, second, active)
    due = regulation_due(state.substep.numpy(), regulation_period(params.dt))
    if active is not None:
        due &= torch.as_tensor(active).bool().cpu().numpy()
    return regulate_cpu(params, tables, state, after, due)


__all__ = ["RegulationArrays", "conflict", "network_substep_regulated", "predict",
           "rectangles_intersect", "rectangles_intersect_many", "regulate_cpu",
           "regulate_worlds", "yielder"]
