"""One substep of `B` worlds as a numba CPU kernel: `step_cpu(params, state, commands) -> state`.

The same dynamics as `envs.batched.dynamics.step` (and so highway-env), written per world
and per vehicle as scalar code: `numba.prange` over worlds, plain loops over the `N` vehicle
slots of a world, in `HighwayBackend.substep`'s order (`_substep_task`):

1. the scripted hazard starts at its onset substep (`_trigger_hazard`);
2. `road.act()`: every IDM vehicle, in slot order, runs MOBIL (or the lane-change abort
   rule) and picks its steering and IDM acceleration (`_traffic_act`). Acting in slot
   order with the targets updated in place is exactly highway-env's act loop: the abort
   rule sees the targets of earlier vehicles as already decided, of later ones as not;
3. every vehicle but the ego steps `dt` with the kinematic bicycle (`_traffic_step`), IDM
   vehicles advance their MOBIL timer first;
4. the ego applies `first` for `first_s`, then `second` for `dt - first_s`, never reversing
   (`_ego_step`);
5. the ego against every other vehicle, separating axes (`_ego_collisions`).

Units: metres, seconds, radians, m/s, m/s^2. Everything is float64, as the torch path.

Exactness. Each formula uses the float operations of the torch path in the same order, so
results differ only where the two use different implementations of a function: torch's
vectorised kernels (SLEEF, within 1 ulp) against the C library's here (`cos`, `sin`, `tan`,
`atan`, `asin`), and the IDM's `(v / v0)^4` as two squarings here (within 2 ulp of `pow`).
Over hundreds of substeps that stays around 1e-14 m and m/s (`tests/test_batched_kernel.py`
pins 1e-9); lanes, targets, flags and crash substeps are identical.

Layout and speed. A world is a few KiB: it is loaded into the workspace of its work item
(`F`: float64 rows, `I`: int64 rows, one row per field, named by the row constants below),
stepped there, and stored into the output rows, so every phase works from the cache and
passes two arrays around instead of one per field; the per-world scalars (road, hazard
plan, ego commands) travel in one table `W`. Neighbour queries use the world's
vehicles sorted by `x` (an insertion sort starting from the previous substep's order, kept
in `BatchedState.order_hint`), so a front / rear query walks a few slots from the querying
vehicle instead of scanning all `N`. Most traffic cruises on a lane centre with heading and
steering exactly 0 (`_bicycle` and `_steering_control` take a short path then, same
values), or, long after a lane change, tiny ones (~1e-15 rad): `_sin` and friends return the
correctly rounded `x` (or 1) for `|x| < 2^-27` without calling the C library, which returns
the same there.

The kernel is one module on purpose: numba's on-disk cache (`cache=True`) is invalidated
when the file of a cached function changes, not when a callee in another file does.
If numba is missing, `AVAILABLE` is False and `envs.batched.backend` uses the torch path.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch

from reflexdrive.common.threads import kernel_threads
from reflexdrive.envs.batched.state import (BRAKING_LEAD_KIND, CUT_IN, EGO_KIND, IDM_KIND, LEAD_BRAKE,
                                STOPPED_VEHICLE, BatchedState, EgoCommands, Params)

try:
    import numba
except ImportError:  # numba is a dependency; stay importable without it
    numba = None

AVAILABLE = numba is not None
"""True when numba is importable (else `step_cpu` raises and the backend runs torch)."""

__all__ = ["AVAILABLE", "KernelParams", "TickOutcome", "TickStops", "kernel_params",
           "step_cpu", "supports", "tick_cpu"]

WORLDS_PER_TASK = 16
"""Worlds per parallel work item (each work item has its own workspace)."""
MAX_LANES = 63
"""Most lane slots `L` (a vehicle's lanes are the bits of an int64)."""

# Rows of the float64 workspace `F (N_FLOAT, N)`: one world's vehicles, one row per field.
(X, Y, HEADING, SPEED, LENGTH, WIDTH, DIAGONAL, TARGET_SPEED, TIMER, BRAKING_DECEL, STEERING,
 ACCELERATION, IMPACT_X, IMPACT_Y,
 # per-substep IDM terms of `_fleet_terms`
 COS, SIN, VX, VY, FREE, BASE) = range(20)
N_FLOAT = 20
# Rows of the int64 workspace `I (N_INT, N)` (bools as 0 / 1).
(VALID, KIND, LANE, TARGET_LANE, LANE_CHANGES, BRAKING, CRASHED, IMPACT_PENDING,
 # the neighbour index of `_sort_by_x` / `_lane_members`
 ORDER, START, MEMBER, SEEN) = range(12)
N_INT = 12
# Rows of the float64 world table `W (N_WORLD, B)` (integers as exact floats): each
# world's road, hazard plan, ego command pieces and active flag.
(LANE_COUNT, ROAD_LENGTH, SPEED_LIMIT, HAZARD_KIND, HAZARD_VEHICLE, HAZARD_ONSET,
 HAZARD_DECEL, HAZARD_LANE, HAZARD_SPEED, FIRST_S, FIRST_A, FIRST_STEERING, SECOND_A,
 SECOND_STEERING, ACTIVE) = range(15)
N_WORLD = 15

_TWO_PI = 2 * math.pi
_TINY = 2.0 ** -27
"""Below this magnitude `sin x`, `tan x`, `atan x`, `asin x` round to `x` and `cos x` to 1
(the terms after the first are under half an ulp)."""


def _jit(parallel: bool = False):
    """`numba.njit` with the kernel's options (the function itself without numba).

    `error_model="numpy"`: a float division by zero gives inf / nan as in torch instead of
    raising (it never happens for valid vehicles; it also saves a branch per division).
    All but the parallel driver allocate nothing and are only called from numba: they are
    compiled without reference counting of arrays (`_nrt=False`) and without the wrappers
    that would make them callable from Python (half the compile time). Only the driver is
    cached on disk (`cache=True`): its cache entry holds the compiled callees too.
    """
    if numba is None:
        return lambda function: function
    if parallel:
        return numba.njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
    return numba.njit(fastmath=False, error_model="numpy", _nrt=False,
                      no_cpython_wrapper=True, no_cfunc_wrapper=True)


prange = numba.prange if numba is not None else range


class KernelParams(NamedTuple):
    """`Params` as the kernel reads them (a tuple numba can take), plus derived constants.

    The derived ones are computed in Python exactly as the torch path computes them:
    `two_sqrt_ab = 2 sqrt(a b)` [m/s^2], `member_half_width = w/2 + margin` (on-lane test of
    `Road.neighbour_vehicles`) [m], `reach = reachable_lanes * w` [m].
    """

    dt: float
    max_speed: float
    min_speed: float
    kp_lateral: float
    kp_heading: float
    max_steering_angle: float
    heading_command_limit: float
    acc_max: float
    comfort_acc_max: float
    distance_wanted: float
    time_wanted: float
    delta: float
    politeness: float
    lane_change_min_acc_gain: float
    lane_change_max_braking_imposed: float
    lane_change_delay: float
    mobil_min_speed: float
    lane_width: float
    lane_vehicle_length: float
    not_zero_eps: float
    two_sqrt_ab: float
    member_half_width: float
    reach: float


@functools.lru_cache(maxsize=16)
def kernel_params(params: Params) -> KernelParams:
    """The `KernelParams` of `params`."""
    return KernelParams(
        dt=params.dt, max_speed=params.max_speed, min_speed=params.min_speed,
        kp_lateral=params.kp_lateral, kp_heading=params.kp_heading,
        max_steering_angle=params.max_steering_angle,
        heading_command_limit=params.heading_command_limit, acc_max=params.acc_max,
        comfort_acc_max=params.comfort_acc_max, distance_wanted=params.distance_wanted,
        time_wanted=params.time_wanted, delta=params.delta, politeness=params.politeness,
        lane_change_min_acc_gain=params.lane_change_min_acc_gain,
        lane_change_max_braking_imposed=params.lane_change_max_braking_imposed,
        lane_change_delay=params.lane_change_delay, mobil_min_speed=params.mobil_min_speed,
        lane_width=params.lane_width, lane_vehicle_length=params.lane_vehicle_length,
        not_zero_eps=params.not_zero_eps,
        two_sqrt_ab=2 * math.sqrt(-params.comfort_acc_max * params.comfort_acc_min),
        member_half_width=params.lane_width / 2 + params.neighbour_margin,
        reach=params.reachable_lanes * params.lane_width)


# ------------------------------------------------------------------------------ scalars


@_jit()
def _sin(x):
    """`sin(x)`; `x` itself for `|x| < 2^-27`, where that is the correctly rounded value
    (and what the C library returns) without the call."""
    return x if abs(x) < _TINY else math.sin(x)


@_jit()
def _cos(x):
    """`cos(x)`; 1 for `|x| < 2^-27` (the correctly rounded value)."""
    return 1.0 if abs(x) < _TINY else math.cos(x)


@_jit()
def _tan(x):
    """`tan(x)`; `x` for `|x| < 2^-27` (the correctly rounded value)."""
    return x if abs(x) < _TINY else math.tan(x)


@_jit()
def _atan(x):
    """`atan(x)`; `x` for `|x| < 2^-27` (the correctly rounded value)."""
    return x if abs(x) < _TINY else math.atan(x)


@_jit()
def _asin(x):
    """`asin(x)`; `x` for `|x| < 2^-27` (the correctly rounded value)."""
    return x if abs(x) < _TINY else math.asin(x)


@_jit()
def _clip(x, low, high):
    """`min(max(x, low), high)`."""
    return min(max(x, low), high)


@_jit()
def _not_zero(x, eps):
    """highway-env's `utils.not_zero`: `max(x, eps)` for `x >= 0`, else `min(x, -eps)`."""
    return max(x, eps) if x >= 0.0 else min(x, -eps)


@_jit()
def _wrap_to_pi(x):
    """`((x + pi) mod 2 pi) - pi` [rad], the floored modulo of torch's `remainder`."""
    a = x + math.pi
    if not (0.0 <= a < _TWO_PI):        # else `a mod 2 pi = a` exactly
        a = a % _TWO_PI
    return a - math.pi


# ------------------------------------------------------------------------------ one vehicle


@_jit()
def _closest_lane(x, y, heading, road_length, lane_count, lane_width):
    """`RoadNetwork.get_closest_lane_index` on a straight road (`envs.batched.road`).

    Lane `i < lane_count` (the road's valid lanes, `BatchedRoad.lane_valid`) scores
    `(|y - i w| + max(x - length, 0) + max(-x, 0)) + |wrap(heading)|` [m + rad]; the lowest
    wins, the first one on a tie. The scores fall, then rise with `i` (each operation is
    monotonic), so the scan stops at the first rise.
    """
    off_road = max(x - road_length, 0.0) + max(0.0 - x, 0.0)
    angle = abs(_wrap_to_pi(heading - 0.0))
    best, best_distance = 0, math.inf
    for i in range(lane_count):
        distance = abs(y - i * lane_width) + off_road + angle
        if distance < best_distance:
            best, best_distance = i, distance
        elif distance > best_distance:
            break
    return best


@_jit()
def _bicycle(p, x, y, heading, speed, length, steering, acceleration, crashed,
             impact_x, impact_y, impact_pending, dt):
    """`Vehicle.step` over `dt` [s] (without the lane update): clip, then explicit Euler.

    `clip_actions`: crashed -> `delta = 0`, `a = -v`; `v > v_max` -> `a = min(a, v_max - v)`;
    `v < v_min` -> `a = max(a, v_min - v)`. With `beta = atan(tan(delta) / 2)`:

        p   += v [cos(psi + beta), sin(psi + beta)] dt   (+ the pending impact [m])
        psi += v sin(beta) / (l / 2) dt
        v   += a dt

    Returns:
        x, y [m], heading [rad], speed [m/s], the applied steering [rad] and acceleration
        [m/s^2], crashed (set by an applied impact).
    """
    if crashed:
        steering = 0.0
        acceleration = -1.0 * speed
    if speed > p.max_speed:
        acceleration = min(acceleration, 1.0 * (p.max_speed - speed))
    elif speed < p.min_speed:
        acceleration = max(acceleration, 1.0 * (p.min_speed - speed))
    if steering == 0.0 and heading == 0.0:
        # cruising along +x: beta = 0, cos = 1, sin = 0, so the general formulas below
        # give exactly these values (up to the sign of a zero y or heading)
        x = speed * dt + x
    else:
        beta = _atan(_tan(steering) * 0.5)
        course = heading + beta
        x = speed * _cos(course) * dt + x
        y = speed * _sin(course) * dt + y
        heading = _sin(beta) * speed / (length / 2) * dt + heading
    if impact_pending:
        x = x + impact_x
        y = y + impact_y
        crashed = True
    speed = acceleration * dt + speed
    return x, y, heading, speed, steering, acceleration, crashed


@_jit()
def _steering_control(p, y, heading, speed, length, target_lane):
    """`ControlledVehicle.steering_control`: steer to the centre of `target_lane` [rad].

    With `r = y - target_lane w` and `v = not_zero(speed)`:

        psi_ref = clip(asin(clip(-K_lat r / v, -1, 1)), -pi/4, pi/4)
        dpsi    = wrap(psi_ref - psi) K_psi
        delta   = clip(atan(2 tan(asin(clip(l / 2 / v dpsi, -1, 1)))), -delta_max, delta_max)
    """
    r = y - target_lane * p.lane_width
    v = _not_zero(speed, p.not_zero_eps)
    if r == 0.0 and heading == 0.0:
        # on the lane centre, aligned: psi_ref = dpsi = 0 and the formulas below give
        # exactly this zero (with the sign of l / 2 / v)
        return math.copysign(0.0, v)
    heading_ref = _asin(_clip(r * -p.kp_lateral / v, -1.0, 1.0))
    heading_ref = _clip(heading_ref, -p.heading_command_limit, p.heading_command_limit)
    heading_rate = _wrap_to_pi(heading_ref - heading) * p.kp_heading
    slip_angle = _asin(_clip(length / 2 / v * heading_rate, -1.0, 1.0))
    steering = _atan(_tan(slip_angle) * 2)
    return _clip(steering, -p.max_steering_angle, p.max_steering_angle)


# ------------------------------------------------------------------------------ neighbours


@_jit()
def _sort_by_x(F, I):
    """Key order of the world's vehicles, for `_front` / `_rear`.

    Sorts `I[ORDER]` (a previous order, or any values): the valid slots by `x` ascending,
    ties by slot descending (the "key order" of `envs.batched.traffic.key_order`), then the
    padding slots. Starting from the previous substep's order the insertion sort mostly
    only checks that it is still sorted; a row that is not a permutation of the slots is
    replaced by the slots in order first. Sets `I[START, j]`, the key position of the first
    vehicle with `x == x_j` (valid `j`).

    Returns:
        the number of valid vehicles.
    """
    x, valid, order, start, seen = F[X], I[VALID], I[ORDER], I[START], I[SEEN]
    slots = x.shape[0]
    seen[:] = 0
    for q in range(slots):
        s = order[q]
        if s < 0 or s >= slots or seen[s]:
            for r in range(slots):
                order[r] = r
            break
        seen[s] = 1
    count = 0
    for q in range(slots):                        # valid slots first (stable)
        s = order[q]
        if valid[s]:
            order[count] = s
            count += 1
        else:
            seen[q - count] = s
    for q in range(slots - count):
        order[count + q] = seen[q]
    for q in range(1, count):                     # insertion sort by (x, -slot)
        s = order[q]
        xs = x[s]
        while q > 0:
            t = order[q - 1]
            if x[t] > xs or (x[t] == xs and t < s):
                order[q] = t
                q -= 1
            else:
                break
        order[q] = s
    for q in range(count):
        s = order[q]
        if q > 0 and x[order[q - 1]] == x[s]:
            start[s] = start[order[q - 1]]
        else:
            start[s] = q
    return count


@_jit()
def _lane_members(p, F, I, road_length, lane_slots):
    """`I[MEMBER, j]`: bit `k` set if `j` is on lane `k` for `Road.neighbour_vehicles`:
    valid, `|y - k w| <= w/2 + 1` and `-l_v <= x < length + l_v` [m] (lanes `0 .. L-1`,
    `L <= MAX_LANES`)."""
    x, y, valid, member = F[X], F[Y], I[VALID], I[MEMBER]
    low, high = -p.lane_vehicle_length, road_length + p.lane_vehicle_length
    for j in range(x.shape[0]):
        bits = 0
        if valid[j] and low <= x[j] < high:
            for k in range(lane_slots):
                if abs(y[j] - k * p.lane_width) <= p.member_half_width:
                    bits |= 1 << k
        member[j] = bits


@_jit()
def _front(I, j, lane, count):
    """`Road.neighbour_vehicles(j, lane)[0]`: the nearest vehicle `v != j` on `lane` with
    `x_j <= x_v` (the highest slot on a tie), or -1."""
    order, member = I[ORDER], I[MEMBER]
    bit = 1 << lane
    for q in range(I[START, j], count):
        v = order[q]
        if v != j and member[v] & bit:
            return v
    return -1


@_jit()
def _rear(I, j, lane):
    """`Road.neighbour_vehicles(j, lane)[1]`: the nearest vehicle on `lane` with
    `x_v < x_j` (the lowest slot on a tie), or -1."""
    order, member = I[ORDER], I[MEMBER]
    bit = 1 << lane
    for q in range(I[START, j] - 1, -1, -1):
        v = order[q]
        if member[v] & bit:
            return v
    return -1


# ------------------------------------------------------------------------------ IDM, MOBIL


@_jit()
def _fleet_terms(p, F, I, speed_limit):
    """Per-vehicle IDM terms of this substep, rows `COS .. BASE` (valid slots):

        cos, sin = cos(psi), sin(psi);   vx, vy = v cos, v sin          [m/s]
        free = a_max (1 - (max(v, 0) / max(min(max(v0, 0), limit), eps))^delta)   [m/s^2]
        base = d0 + v tau                                                [m]
    """
    for j in range(F.shape[1]):
        if not I[VALID, j]:
            continue
        speed = F[SPEED, j]
        c, s = _cos(F[HEADING, j]), _sin(F[HEADING, j])
        F[COS, j], F[SIN, j] = c, s
        F[VX, j], F[VY, j] = speed * c, speed * s
        v0 = max(F[TARGET_SPEED, j], 0.0)
        v0 = max(min(v0, speed_limit), p.not_zero_eps)
        ratio = max(speed, 0.0) / v0
        if p.delta == 4.0:                       # IDMVehicle.DELTA: two squarings, no pow
            power = ratio * ratio
            power = power * power
        else:
            power = math.pow(ratio, p.delta)
        F[FREE, j] = (1.0 - power) * p.comfort_acc_max
        F[BASE, j] = speed * p.time_wanted + p.distance_wanted


@_jit()
def _idm(p, F, follower, front):
    """`IDMVehicle.acceleration(follower, front)` [m/s^2]; 0 without a follower:

        dv = (v cos - v_f cos_f) cos + (v sin - v_f sin_f) sin   (closing speed)
        d* = (d0 + v tau) + v dv / (2 sqrt(a b))
        a  = free - a_max (d* / max(x_f - x, eps))^2              (just `free` without front)
    """
    if follower < 0:
        return 0.0
    if front < 0:
        return F[FREE, follower]
    dv = (F[VX, follower] - F[VX, front]) * F[COS, follower]
    dv = dv + (F[VY, follower] - F[VY, front]) * F[SIN, follower]
    gap = dv * F[SPEED, follower] / p.two_sqrt_ab + F[BASE, follower]
    distance = max(F[X, front] - F[X, follower], p.not_zero_eps)
    ratio = gap / distance
    return F[FREE, follower] - ratio * ratio * p.comfort_acc_max


@_jit()
def _mobil_target(p, F, I, j, count, lane_count, road_length, self_a, front):
    """`IDMVehicle.change_lane_policy`'s MOBIL decision for vehicle `j`: its new target lane.

    For the left then the right neighbour lane, if it exists and is reachable
    (`|y - lane w| <= 2 w`, `0 <= x < length + l_v` [m]): with `a(f, l)` the IDM
    acceleration of `f` behind `l` (`_idm`), `nf, nr` the new front / rear and `of, orr`
    the old ones,

        unsafe if a(nr, j) < -b_safe
        gain = a(j, nf) - a(j, of) + p (a(nr, j) - a(nr, nf) + a(orr, of) - a(orr, j))
        change if not unsafe and not gain < a_th

    (highway-env's `mobil` without a route). The right lane wins if both pass.

    Args:
        self_a: `a(j, of)` [m/s^2]; front: `of`.
    """
    lane = I[LANE, j]
    old_rear = _rear(I, j, lane)
    old_following_a = _idm(p, F, old_rear, j)
    old_following_pred_a = _idm(p, F, old_rear, front)
    x, y = F[X, j], F[Y, j]
    target = lane
    for side in (lane - 1, lane + 1):
        if side < 0 or side >= lane_count:
            continue
        if not (abs(y - side * p.lane_width) <= p.reach
                and x >= 0.0 and x < road_length + p.lane_vehicle_length):
            continue
        new_front = _front(I, j, side, count)
        new_rear = _rear(I, j, side)
        new_following_pred_a = _idm(p, F, new_rear, j)
        if new_following_pred_a < -p.lane_change_max_braking_imposed:
            continue
        self_pred_a = _idm(p, F, j, new_front)
        new_following_a = _idm(p, F, new_rear, new_front)
        gain = self_pred_a - self_a + p.politeness * (
            new_following_pred_a - new_following_a + old_following_pred_a - old_following_a)
        if not gain < p.lane_change_min_acc_gain:
            target = side
    return target


@_jit()
def _aborts(p, F, I, j):
    """The abort rule of `change_lane_policy` for `j`, changing lanes into its target.

    True if another controlled (IDM) vehicle `v`, not yet in that lane, targets it too
    (`I[TARGET_LANE]` as the act loop has left it so far) and is ahead within the desired
    gap: `0 < x_v - x_j < d*(j behind v)` [m].
    """
    target = I[TARGET_LANE, j]
    for v in range(F.shape[1]):
        if (v == j or not I[VALID, v]
                or (I[KIND, v] != IDM_KIND and I[KIND, v] != BRAKING_LEAD_KIND)
                or I[LANE, v] == target or I[TARGET_LANE, v] != target):
            continue
        distance = F[X, v] - F[X, j]
        dv = (F[VX, j] - F[VX, v]) * F[COS, j] + (F[VY, j] - F[VY, v]) * F[SIN, j]
        gap = F[BASE, j] + F[SPEED, j] * dv / p.two_sqrt_ab
        if 0.0 < distance < gap:
            return True
    return False


@_jit()
def _traffic_act(p, F, I, count, lane_count, road_length, lane_slots):
    """`road.act()`: every IDM vehicle, in slot order (highway-env's loop).

    - crashed: nothing;
    - a braking lead told to brake: steer to its target lane, `a = -min(decel, max(v, 0) / dt)`;
    - otherwise, with MOBIL enabled: while changing lanes the abort rule (`_aborts`), else
      every `LANE_CHANGE_DELAY` (`timer > delay`; then `timer = 0`) MOBIL if `|v| >= 1 m/s`
      (`_mobil_target`); then steer to the target lane (`_steering_control`) and
      `a = clip(min(IDM on its lane, IDM on the target lane if changing), -a_max, a_max)`
      (a target lane outside `0 .. L-1` is searched as the nearest of them).

    Updates the rows `TARGET_LANE`, `TIMER` [s], `STEERING` [rad], `ACCELERATION` [m/s^2].
    """
    for j in range(F.shape[1]):
        kind = I[KIND, j]
        if not I[VALID, j] or (kind != IDM_KIND and kind != BRAKING_LEAD_KIND) or I[CRASHED, j]:
            continue
        if kind == BRAKING_LEAD_KIND and I[BRAKING, j]:
            F[STEERING, j] = _steering_control(p, F[Y, j], F[HEADING, j], F[SPEED, j],
                                               F[LENGTH, j], I[TARGET_LANE, j])
            F[ACCELERATION, j] = -min(F[BRAKING_DECEL, j], max(F[SPEED, j], 0.0) / p.dt)
            continue
        lane = I[LANE, j]
        front = _front(I, j, lane, count)
        self_a = _idm(p, F, j, front)
        if I[LANE_CHANGES, j]:
            if lane != I[TARGET_LANE, j]:
                if _aborts(p, F, I, j):
                    I[TARGET_LANE, j] = lane
            elif F[TIMER, j] > p.lane_change_delay:
                F[TIMER, j] = F[TIMER, j] * 0.0
                if abs(F[SPEED, j]) >= p.mobil_min_speed:
                    I[TARGET_LANE, j] = _mobil_target(p, F, I, j, count, lane_count,
                                                      road_length, self_a, front)
        target = I[TARGET_LANE, j]
        F[STEERING, j] = _steering_control(p, F[Y, j], F[HEADING, j], F[SPEED, j],
                                           F[LENGTH, j], target)
        acceleration = self_a
        if lane != target:
            target_front = _front(I, j, min(max(target, 0), lane_slots - 1), count)
            acceleration = min(acceleration, _idm(p, F, j, target_front))
        F[ACCELERATION, j] = _clip(acceleration, -p.acc_max, p.acc_max)


# ------------------------------------------------------------------------------ motion


@_jit()
def _traffic_step(p, F, I, road_length, lane_count):
    """Every valid vehicle but the ego steps `dt` (`IDMVehicle.step` / `Vehicle.step`):
    IDM vehicles first advance their MOBIL timer `+= dt` [s]; then `_bicycle` with the
    action of `_traffic_act`, a pending impact applied, and the closest lane."""
    for j in range(F.shape[1]):
        kind = I[KIND, j]
        if not I[VALID, j] or kind == EGO_KIND:
            continue
        if kind == IDM_KIND or kind == BRAKING_LEAD_KIND:
            F[TIMER, j] = F[TIMER, j] + p.dt
        x, y, heading, speed, steering, acceleration, crashed = _bicycle(
            p, F[X, j], F[Y, j], F[HEADING, j], F[SPEED, j], F[LENGTH, j], F[STEERING, j],
            F[ACCELERATION, j], I[CRASHED, j] != 0, F[IMPACT_X, j], F[IMPACT_Y, j],
            I[IMPACT_PENDING, j] != 0, p.dt)
        F[X, j], F[Y, j], F[HEADING, j], F[SPEED, j] = x, y, heading, speed
        F[STEERING, j], F[ACCELERATION, j] = steering, acceleration
        I[CRASHED, j], I[IMPACT_PENDING, j] = crashed, False
        I[LANE, j] = _closest_lane(x, y, heading, road_length, lane_count, p.lane_width)


@_jit()
def _ego_step(p, F, I, first_s, first_a, first_steering, second_a, second_steering,
              road_length, lane_count):
    """The ego (slot 0): `[first_a m/s^2, first_steering rad]` for `first_s` [s], then the
    second command for `dt - first_s` (a zero-length piece does nothing). Brakes stop the
    car, they do not reverse it: `a = max(a_cmd, -max(v, 0) / duration)`, then `_bicycle`
    (a pending impact is applied in the first piece). Then the closest lane."""
    x, y, heading, speed = F[X, 0], F[Y, 0], F[HEADING, 0], F[SPEED, 0]
    steering, acceleration = F[STEERING, 0], F[ACCELERATION, 0]
    crashed, pending = I[CRASHED, 0] != 0, I[IMPACT_PENDING, 0] != 0
    for piece in range(2):
        duration = first_s if piece == 0 else p.dt - first_s
        if duration > 0:
            command_a = first_a if piece == 0 else second_a
            command_steering = first_steering if piece == 0 else second_steering
            acceleration = max(command_a, -max(speed, 0.0) / duration)
            x, y, heading, speed, steering, acceleration, crashed = _bicycle(
                p, x, y, heading, speed, F[LENGTH, 0], command_steering, acceleration, crashed,
                F[IMPACT_X, 0], F[IMPACT_Y, 0], pending, duration)
            pending = False
    F[X, 0], F[Y, 0], F[HEADING, 0], F[SPEED, 0] = x, y, heading, speed
    F[STEERING, 0], F[ACCELERATION, 0] = steering, acceleration
    I[CRASHED, 0], I[IMPACT_PENDING, 0] = crashed, pending
    I[LANE, 0] = _closest_lane(x, y, heading, road_length, lane_count, p.lane_width)


# ------------------------------------------------------------------------------ collisions


@_jit()
def _corners(x, y, heading, length, width, out):
    """`RoadObject.polygon` without the closing point: `out (4, 2)` [m], the body-frame
    corners `(-l/2, -w/2), (-l/2, w/2), (l/2, w/2), (l/2, -w/2)` rotated by `heading` and
    moved to `(x, y)`."""
    c, s = _cos(heading), _sin(heading)
    half_l, half_w = length / 2, width / 2
    for i in range(4):
        local_x = half_l if i >= 2 else -half_l
        local_y = half_w if i == 1 or i == 2 else -half_w
        out[i, 0] = c * local_x + (-s) * local_y + x
        out[i, 1] = s * local_x + c * local_y + y


@_jit()
def _interval_distance(min_a, max_a, min_b, max_b):
    """Gap between `[min_a, max_a]` and `[min_b, max_b]`; negative if they overlap."""
    return min_b - max_a if min_a < min_b else min_a - max_b


@_jit()
def _polygons_intersecting(a, b, displacement_ax, displacement_ay, displacement_bx,
                           displacement_by):
    """`utils.are_polygons_intersecting` for two rectangles `a`, `b` (`(4, 2)` corners [m]).

    On each unit edge normal `n` of `a` then `b`, project both; they intersect unless an
    axis separates them, and will intersect unless an axis separates them once `a`'s
    interval is swept by `n . (d_a - d_b)` (displacements over the substep [m]).

    Returns:
        intersecting, will_intersect, translation `(tx, ty)` [m]: the swept overlap of
        smallest magnitude `|dist| n` (the first axis on a tie), pointed from `b` to `a`.
    """
    intersecting = True
    will_intersect = True
    min_distance = math.inf
    axis_x = axis_y = 0.0
    relative_x = displacement_ax - displacement_bx
    relative_y = displacement_ay - displacement_by
    for edge in range(8):
        polygon = a if edge < 4 else b
        i = edge % 4
        p1x, p1y = polygon[i, 0], polygon[i, 1]
        p2x, p2y = polygon[(i + 1) % 4, 0], polygon[(i + 1) % 4, 1]
        nx, ny = -p2y + p1y, p2x - p1x
        norm = math.sqrt(nx * nx + ny * ny)
        nx, ny = nx / norm, ny / norm
        min_a = max_a = a[0, 0] * nx + a[0, 1] * ny
        min_b = max_b = b[0, 0] * nx + b[0, 1] * ny
        for k in range(1, 4):
            projection = a[k, 0] * nx + a[k, 1] * ny
            min_a, max_a = min(min_a, projection), max(max_a, projection)
            projection = b[k, 0] * nx + b[k, 1] * ny
            min_b, max_b = min(min_b, projection), max(max_b, projection)
        if _interval_distance(min_a, max_a, min_b, max_b) > 0:
            intersecting = False
        sweep = nx * relative_x + ny * relative_y
        if sweep < 0:
            min_a = min_a + sweep
        else:
            max_a = max_a + sweep
        distance = _interval_distance(min_a, max_a, min_b, max_b)
        if distance > 0:
            will_intersect = False
        if abs(distance) < min_distance:
            min_distance = abs(distance)
            axis_x, axis_y = nx, ny
    centre_x = ((a[0, 0] + a[1, 0] + a[2, 0] + a[3, 0]) / 4
                - (b[0, 0] + b[1, 0] + b[2, 0] + b[3, 0]) / 4)
    centre_y = ((a[0, 1] + a[1, 1] + a[2, 1] + a[3, 1]) / 4
                - (b[0, 1] + b[1, 1] + b[2, 1] + b[3, 1]) / 4)
    if not centre_x * axis_x + centre_y * axis_y > 0:
        axis_x, axis_y = -axis_x, -axis_y
    return intersecting, will_intersect, min_distance * axis_x, min_distance * axis_y


@_jit()
def _ego_collisions(p, F, I, corners):
    """`ego.handle_collisions(v, dt)` for every other valid vehicle `v`, in slot order.

    Pre-check `|p_v - p_ego| <= (diag_ego + diag_v) / 2 + v_ego dt` [m], then the separating
    axes with displacements `v e dt` [m]: if they will intersect, `v`'s impact is `-t / 2`
    and the ego's `t / 2` (the last such `v` wins), both pending (applied at their next
    step); if they intersect now, both are crashed. `corners` is `(2, 4, 2)` scratch.
    """
    ego_x, ego_y, ego_speed = F[X, 0], F[Y, 0], F[SPEED, 0]
    have_ego_corners = False
    for v in range(1, F.shape[1]):
        if not I[VALID, v]:
            continue
        dx, dy = F[X, v] - ego_x, F[Y, v] - ego_y
        if math.sqrt(dx * dx + dy * dy) > (F[DIAGONAL, 0] + F[DIAGONAL, v]) / 2 + ego_speed * p.dt:
            continue
        if not have_ego_corners:
            _corners(ego_x, ego_y, F[HEADING, 0], F[LENGTH, 0], F[WIDTH, 0], corners[0])
            have_ego_corners = True
        _corners(F[X, v], F[Y, v], F[HEADING, v], F[LENGTH, v], F[WIDTH, v], corners[1])
        intersecting, will_intersect, tx, ty = _polygons_intersecting(
            corners[0], corners[1],
            ego_speed * _cos(F[HEADING, 0]) * p.dt, ego_speed * _sin(F[HEADING, 0]) * p.dt,
            F[SPEED, v] * _cos(F[HEADING, v]) * p.dt, F[SPEED, v] * _sin(F[HEADING, v]) * p.dt)
        if will_intersect:
            F[IMPACT_X, v], F[IMPACT_Y, v] = -tx / 2, -ty / 2
            F[IMPACT_X, 0], F[IMPACT_Y, 0] = tx / 2, ty / 2
            I[IMPACT_PENDING, v] = True
            I[IMPACT_PENDING, 0] = True
        if intersecting:
            I[CRASHED, v] = True
            I[CRASHED, 0] = True


# ------------------------------------------------------------------------------ one world


@_jit()
def _trigger_hazard(F, I, substep, hazard_kind, vehicle, onset, decel, target_lane,
                    target_speed):
    """`HighwayBackend._trigger_hazard`: start the scripted hazard at its onset substep.

    Lead brake: the braking lead (slot `vehicle`) starts braking at `decel` [m/s^2]. Cut
    in: the vehicle steers to `target_lane` (IDM vehicles) at `target_speed` [m/s].
    """
    if onset < 0 or substep != onset or vehicle < 0 or vehicle >= F.shape[1]:
        return
    kind = I[KIND, vehicle]
    if hazard_kind == LEAD_BRAKE:
        if kind == BRAKING_LEAD_KIND:
            I[BRAKING, vehicle] = True
        F[BRAKING_DECEL, vehicle] = decel
    elif hazard_kind == CUT_IN:
        if kind == IDM_KIND or kind == BRAKING_LEAD_KIND:
            I[TARGET_LANE, vehicle] = target_lane
        F[TARGET_SPEED, vehicle] = target_speed


# ------------------------------------------------------------------------------ all worlds


@_jit()
def _ego_on_road(p, F, I, road_length):
    """`BatchedBackend.ego_on_road` of the world in the workspace: the ego's centre on its
    lane (`road.lane_coordinates` then `road.on_lane`, same float operations)."""
    along, offset = F[X, 0], F[Y, 0] - I[LANE, 0] * p.lane_width
    vl = p.lane_vehicle_length
    return abs(offset) <= p.lane_width / 2 + 0.0 and along >= -vl and along < road_length + vl


@_jit()
def _stopped_vehicle_onset(F, I, hazard_kind, vehicle, trigger_range, onset, substep):
    """`hazards.update_onsets` for the world in the workspace: the onset substep of a
    stopped-vehicle hazard (`substep` the first time its centre is within `trigger_range`
    [m] of the ego's), else `onset` unchanged (-1 while unknown)."""
    slots = F.shape[1]
    if hazard_kind != STOPPED_VEHICLE or onset >= 0 or vehicle < 0 or vehicle >= slots:
        return onset
    if not I[VALID, vehicle]:
        return onset
    dx, dy = F[X, vehicle] - F[X, 0], F[Y, vehicle] - F[Y, 0]
    return substep if math.sqrt(dx * dx + dy * dy) <= trigger_range else onset


@_jit()
def _substep_task(p, first_world, last_world, position0, heading0, speed0, valid, length,
                  width, diagonal, kind, lane0, target_lane0, target_speed0, timer0,
                  lane_changes, braking0, braking_decel0, steering0, acceleration0, crashed0,
                  impact0, impact_pending0, substep0, hint, has_hint, position, heading,
                  speed, lane, target_lane, target_speed, timer, braking, braking_decel,
                  steering, acceleration, crashed, impact, impact_pending, substep, order,
                  W, FS, lane_slots, hazard_writable, track, duration, trigger_range, onset,
                  tracked_kind, tracked_vehicle, progress_target, progress, alive, F, I,
                  corners):
    """`S = FS.shape[0]` substeps of worlds `first_world .. last_world - 1` (one parallel
    work item).

    For each world `b`: load its input rows (suffix 0) into the workspace `F`, `I` (rows
    `(N,)`); while `W[ACTIVE, b]`, run the phases of the module docstring on them `S` times,
    substep `k` with the ego's first piece lasting `FS[k, b]` [s] (`corners`: `(2, 4, 2)`
    scratch); store its output rows once. See `_substep_worlds` for the arguments.

    With `track` (a whole tick, `tick_cpu`), after each substep the world's episode
    bookkeeping of `BatchedDrivingEnv` runs: the stopped-vehicle onset (`onset (B,)`, in
    place; the tracker's hazard `tracked_kind`, `tracked_vehicle (B,)`), the progress
    term `clamp(v_ego / progress_target, 0, 1)` summed into `progress (B,)` (then
    averaged over the substeps run), and the world stops (its `alive (B,)` flag cleared)
    once its ego crashed, left the road or reached `duration (B,)` substeps.
    """
    slots = valid.shape[1]
    for b in range(first_world, last_world):
        for j in range(slots):
            F[X, j], F[Y, j] = position0[b, j, 0], position0[b, j, 1]
            F[HEADING, j], F[SPEED, j] = heading0[b, j], speed0[b, j]
            F[LENGTH, j], F[WIDTH, j], F[DIAGONAL, j] = length[b, j], width[b, j], diagonal[b, j]
            F[TARGET_SPEED, j], F[TIMER, j] = target_speed0[b, j], timer0[b, j]
            F[BRAKING_DECEL, j] = braking_decel0[b, j]
            F[STEERING, j], F[ACCELERATION, j] = steering0[b, j], acceleration0[b, j]
            F[IMPACT_X, j], F[IMPACT_Y, j] = impact0[b, j, 0], impact0[b, j, 1]
            I[VALID, j], I[KIND, j], I[LANE_CHANGES, j] = valid[b, j], kind[b, j], lane_changes[b, j]
            I[LANE, j], I[TARGET_LANE, j] = lane0[b, j], target_lane0[b, j]
            I[BRAKING, j], I[CRASHED, j] = braking0[b, j], crashed0[b, j]
            I[IMPACT_PENDING, j] = impact_pending0[b, j]
            I[ORDER, j] = hint[b, j] if has_hint else j
        step = substep0[b]
        active = W[ACTIVE, b] != 0
        total, count = 0.0, 0.0
        lane_count, road_length = int(W[LANE_COUNT, b]), W[ROAD_LENGTH, b]
        for k in range(FS.shape[0]):
            if not active:
                break
            _trigger_hazard(F, I, step, int(W[HAZARD_KIND, b]), int(W[HAZARD_VEHICLE, b]),
                            int(W[HAZARD_ONSET, b]), W[HAZARD_DECEL, b],
                            int(W[HAZARD_LANE, b]), W[HAZARD_SPEED, b])
            _fleet_terms(p, F, I, W[SPEED_LIMIT, b])
            count_x = _sort_by_x(F, I)
            _lane_members(p, F, I, road_length, lane_slots)
            _traffic_act(p, F, I, count_x, lane_count, road_length, lane_slots)
            _traffic_step(p, F, I, road_length, lane_count)
            _ego_step(p, F, I, FS[k, b], W[FIRST_A, b], W[FIRST_STEERING, b],
                      W[SECOND_A, b], W[SECOND_STEERING, b], road_length, lane_count)
            _ego_collisions(p, F, I, corners)
            step += 1
            if track:
                onset[b] = _stopped_vehicle_onset(F, I, tracked_kind[b], tracked_vehicle[b],
                                                  trigger_range[b], onset[b], step)
                total += min(max(F[SPEED, 0] / progress_target, 0.0), 1.0)
                count += 1.0
                if I[CRASHED, 0] or not _ego_on_road(p, F, I, road_length) \
                        or step >= duration[b]:
                    active = False
        substep[b] = step
        if track:
            progress[b] = total / max(count, 1.0)
            alive[b] = active
        for j in range(slots):
            position[b, j, 0], position[b, j, 1] = F[X, j], F[Y, j]
            heading[b, j], speed[b, j] = F[HEADING, j], F[SPEED, j]
            lane[b, j], target_lane[b, j], timer[b, j] = I[LANE, j], I[TARGET_LANE, j], F[TIMER, j]
            steering[b, j], acceleration[b, j] = F[STEERING, j], F[ACCELERATION, j]
            crashed[b, j] = I[CRASHED, j]
            impact[b, j, 0], impact[b, j, 1] = F[IMPACT_X, j], F[IMPACT_Y, j]
            impact_pending[b, j] = I[IMPACT_PENDING, j]
            order[b, j] = I[ORDER, j]
            if hazard_writable:
                target_speed[b, j] = F[TARGET_SPEED, j]
                braking[b, j] = I[BRAKING, j]
                braking_decel[b, j] = F[BRAKING_DECEL, j]


@_jit(parallel=True)
def _substep_worlds(p, position0, heading0, speed0, valid, length, width, diagonal, kind,
                    lane0, target_lane0, target_speed0, timer0, lane_changes, braking0,
                    braking_decel0, steering0, acceleration0, crashed0, impact0,
                    impact_pending0, substep0, hint, has_hint, position, heading, speed, lane,
                    target_lane, target_speed, timer, braking, braking_decel, steering,
                    acceleration, crashed, impact, impact_pending, substep, order, W, FS,
                    lane_slots, hazard_writable, track, duration, trigger_range, onset,
                    tracked_kind, tracked_vehicle, progress_target, progress, alive, per_task):
    """All `B` worlds: `numba.prange` over work items of `per_task` worlds (`_substep_task`,
    each with its own workspace rows `F (N_FLOAT, N)`, `I (N_INT, N)`).

    Args: the input state's vehicle fields (suffix 0 where the output has its own array;
    `hint`: the previous key order, read if `has_hint`), the output arrays (`order`: the
    last substep's key order; `target_speed`, `braking`, `braking_decel` written only if
    `hazard_writable`), all `(B, N)` but `position`, `impact` `(B, N, 2)`; `substep0`,
    `substep` `(B,)`; the world table `W` (`LANE_COUNT` ...), the first pieces `FS (S, B)`
    [s] of the `S` substeps, the lane slots `L`; the tick bookkeeping (`track` ...
    `alive`, see `_substep_task`; `(B,)` arrays, any size when `track` is False).
    """
    batch, slots = valid.shape
    tasks = (batch + per_task - 1) // per_task
    for task in prange(tasks):
        F = np.empty((N_FLOAT, slots))
        I = np.empty((N_INT, slots), dtype=np.int64)
        corners = np.empty((2, 4, 2))
        _substep_task(p, task * per_task, min(batch, (task + 1) * per_task), position0,
                      heading0, speed0, valid, length, width, diagonal, kind, lane0,
                      target_lane0, target_speed0, timer0, lane_changes, braking0,
                      braking_decel0, steering0, acceleration0, crashed0, impact0,
                      impact_pending0, substep0, hint, has_hint, position, heading, speed,
                      lane, target_lane, target_speed, timer, braking, braking_decel,
                      steering, acceleration, crashed, impact, impact_pending, substep, order,
                      W, FS, lane_slots, hazard_writable, track, duration, trigger_range,
                      onset, tracked_kind, tracked_vehicle, progress_target, progress, alive,
                      F, I, corners)


# ------------------------------------------------------------------------------ entry point


def supports(state: BatchedState) -> bool:
    """True if `step_cpu` can run `state`: numba is there, the state is float64 on CPU."""
    return AVAILABLE and state.device.type == "cpu" and state.dtype == torch.float64


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A numpy view of `tensor` (of a contiguous copy if it is not contiguous)."""
    return tensor.contiguous().numpy()


_INPUTS = ("position", "heading", "speed", "valid", "length", "width", "diagonal", "kind",
           "lane", "target_lane", "target_speed", "timer", "lane_changes", "braking",
           "braking_decel", "steering", "acceleration", "crashed", "impact",
           "impact_pending")
_OUTPUTS = ("position", "heading", "speed", "lane", "target_lane", "target_speed", "timer",
            "braking", "braking_decel", "steering", "acceleration", "crashed", "impact",
            "impact_pending", "substep")
_ON_HAZARD = ("target_speed", "braking", "braking_decel")
"""Fields only a starting hazard changes (shared with the input state otherwise)."""


def step_cpu(params: Params, state: BatchedState, commands: EgoCommands,
             active: torch.Tensor | None = None) -> BatchedState:
    """`envs.batched.dynamics.step` by the numba kernel (same arguments, same result).

    Args:
        params: the model constants (`params.dt` is the substep [s]).
        state: the worlds at substep `k`, float64 on CPU (`supports(state)`); not modified.
        commands: the ego's pieces: `first_s (B,)` [s] in `[0, dt]`, `first`, `second`
            `(B, 2)` `[acceleration m/s^2, steering rad]`.
        active: optional `(B,)` bool; worlds where it is False are returned as they are,
            substep counter included (`BatchedBackend.substep(active=...)`).

    Returns:
        the worlds at substep `k + 1`: new tensors for the fields a substep changes
        (`target_speed`, `braking`, `braking_decel` only when a hazard starts), the others
        shared with `state`. `order_hint` is this substep's key order (valid vehicles by
        `x`, then the padding slots), which the next call starts its sort from.
    """
    first_s = torch.as_tensor(commands.first_s).reshape(1, state.batch_size)
    new, _ = _run(params, state, first_s, commands.first, commands.second, active, None)
    return new


class TickStops(NamedTuple):
    """What `tick_cpu` needs to run a whole tick of `BatchedDrivingEnv`: when each world's
    episode ends and what it tracks meanwhile (all `(B,)`).

    Attributes:
        duration: int64 episode length [substeps]: the world stops at this substep count.
        trigger_range: float64 stopped-vehicle trigger range [m] (`HazardOnsets`).
        onset: int64 hazard onset substep known so far, -1 while unknown (`HazardOnsets`;
            only stopped-vehicle onsets are found here, the others are planned).
        hazard_kind: int64 hazard code of the tracker (`HazardOnsets.kind`).
        hazard_vehicle: int64 slot of the hazard vehicle, -1 if none.
        progress_target: the reward's speed target [m/s] (a float).
    """

    duration: torch.Tensor
    trigger_range: torch.Tensor
    onset: torch.Tensor
    hazard_kind: torch.Tensor
    hazard_vehicle: torch.Tensor
    progress_target: float


class TickOutcome(NamedTuple):
    """What a `tick_cpu` tick reports per world (all `(B,)` numpy arrays).

    Attributes:
        alive: bool, still running after the tick (False where its ego crashed, left the
            road or reached its duration during the tick, or it was not active).
        onset: int64 hazard onset substep after the tick (-1 while unknown).
        progress: float64 mean of `clamp(v_ego / progress_target, 0, 1)` over the substeps
            the world ran (0 if none).
    """

    alive: np.ndarray
    onset: np.ndarray
    progress: np.ndarray


def tick_cpu(params: Params, state: BatchedState, first_s: torch.Tensor,
             first: torch.Tensor, second: torch.Tensor, active: torch.Tensor,
             stops: TickStops) -> tuple[BatchedState, TickOutcome]:
    """A whole tick of `S` substeps in one kernel call, with the env's per-substep
    bookkeeping done inside: the same result as `S` calls of `step_cpu` with
    `BatchedDrivingEnv._run_tick`'s loop around them (each world stops, frozen, after the
    substep on which its ego crashed, left the road or reached `stops.duration`;
    stopped-vehicle onsets found at each substep boundary).

    Why: each world is loaded into its workspace and stored once per tick instead of once
    per substep, and the Python and torch work between substeps disappears.

    Args:
        params, state: as `step_cpu`'s.
        first_s: `(S, B)` float64 [s]: how long the ego applies `first` in substep `k`
            (`BatchedClock.substep_pieces(k)[0]`).
        first, second: `(B, 2)` `[acceleration m/s^2, steering rad]`, the held and the new
            command (the same for every substep of a tick).
        active: `(B,)` bool, the worlds that run this tick.
        stops: durations, hazard onsets and the progress target (`TickStops`).

    Returns:
        `(state after the tick, TickOutcome)`.
    """
    batch = state.batch_size
    first_s = torch.as_tensor(first_s, dtype=torch.float64)
    if first_s.dim() != 2 or first_s.shape[1] != batch:
        raise ValueError(f"first_s must be (S, {batch}), got {tuple(first_s.shape)}")
    return _run(params, state, first_s, first, second, active, stops)


def _run(params: Params, state: BatchedState, first_s: torch.Tensor, first: torch.Tensor,
         second: torch.Tensor, active: torch.Tensor | None, stops: TickStops | None
         ) -> tuple[BatchedState, TickOutcome | None]:
    """`step_cpu` (`stops` None, `first_s (1, B)`) or `tick_cpu`."""
    if not AVAILABLE:
        raise RuntimeError("the numba kernel needs numba; use envs.batched.dynamics.step")
    if not supports(state):
        raise ValueError(f"the numba kernel runs float64 states on CPU, got "
                         f"{state.dtype} on {state.device}")
    if state.road.lane_valid.shape[1] > MAX_LANES:
        raise ValueError(f"the numba kernel handles at most {MAX_LANES} lanes per road")
    batch, slots = state.batch_size, state.num_slots
    road, hazard = state.road, state.hazard
    i = {name: _array(getattr(state, name)) for name in _INPUTS}
    substep, onset = _array(state.substep), _array(hazard.onset_substep)
    world = np.empty((N_WORLD, batch))
    for column, tensor in ((LANE_COUNT, road.lane_count), (ROAD_LENGTH, road.length),
                           (SPEED_LIMIT, road.speed_limit), (HAZARD_KIND, hazard.kind),
                           (HAZARD_VEHICLE, hazard.vehicle), (HAZARD_ONSET, hazard.onset_substep),
                           (HAZARD_DECEL, hazard.decel), (HAZARD_LANE, hazard.target_lane),
                           (HAZARD_SPEED, hazard.target_speed)):
        world[column] = _array(tensor)
    world[FIRST_A:FIRST_STEERING + 1] = _array(torch.as_tensor(first).reshape(batch, 2)).T
    world[SECOND_A:SECOND_STEERING + 1] = _array(torch.as_tensor(second).reshape(batch, 2)).T
    world[ACTIVE] = 1.0 if active is None else _array(
        torch.as_tensor(active, dtype=torch.bool).reshape(batch))
    first_s = np.ascontiguousarray(_array(first_s.to(torch.float64)))
    substeps = first_s.shape[0]
    world[FIRST_S] = first_s[0]
    # the fields only a starting hazard changes are shared unless one starts
    starts = (onset >= 0) & (onset >= substep) & (onset < substep + substeps)
    hazard_writable = bool((starts & (world[ACTIVE] > 0)).any())

    out = {name: torch.empty(getattr(state, name).shape, dtype=getattr(state, name).dtype,
                             device="cpu")
           for name in _OUTPUTS if name not in _ON_HAZARD or hazard_writable}
    for name in _ON_HAZARD:
        out.setdefault(name, getattr(state, name))       # shared: the kernel does not write
    out["order_hint"] = torch.empty((batch, slots), dtype=torch.int64, device="cpu")
    o = {name: out[name].numpy() for name in _OUTPUTS + ("order_hint",)}
    hint = state.order_hint
    has_hint = (hint is not None and tuple(hint.shape) == (batch, slots)
                and hint.dtype == torch.int64 and hint.device.type == "cpu")
    track = stops is not None
    if track:
        duration = np.ascontiguousarray(_array(stops.duration), dtype=np.int64)
        trigger = np.ascontiguousarray(_array(stops.trigger_range), dtype=np.float64)
        tracked_onset = np.array(_array(stops.onset), dtype=np.int64)      # updated in place
        tracked_kind = np.ascontiguousarray(_array(stops.hazard_kind), dtype=np.int64)
        tracked_vehicle = np.ascontiguousarray(_array(stops.hazard_vehicle), dtype=np.int64)
        progress, alive = np.zeros(batch), np.zeros(batch, dtype=np.bool_)
        target = float(stops.progress_target)
    else:
        duration, tracked_onset = np.zeros(0, np.int64), np.zeros(0, np.int64)
        tracked_kind, tracked_vehicle = np.zeros(0, np.int64), np.zeros(0, np.int64)
        trigger, progress, alive = np.zeros(0), np.zeros(0), np.zeros(0, np.bool_)
        target = 1.0
    args = (kernel_params(params), i["position"], i["heading"], i["speed"], i["valid"],
            i["length"], i["width"], i["diagonal"], i["kind"], i["lane"], i["target_lane"],
            i["target_speed"], i["timer"], i["lane_changes"], i["braking"],
            i["braking_decel"], i["steering"], i["acceleration"], i["crashed"], i["impact"],
            i["impact_pending"], substep, _array(hint) if has_hint else o["order_hint"],
            has_hint, o["position"], o["heading"], o["speed"], o["lane"], o["target_lane"],
            o["target_speed"], o["timer"], o["braking"], o["braking_decel"], o["steering"],
            o["acceleration"], o["crashed"], o["impact"], o["impact_pending"], o["substep"],
            o["order_hint"], world, first_s, road.lane_valid.shape[1], hazard_writable,
            track, duration, trigger, tracked_onset, tracked_kind, tracked_vehicle, target,
            progress, alive, WORLDS_PER_TASK)
    # Dynamic scheduling, one work item at a time: a thread whose core is busy with another
    # process takes fewer items instead of holding the others up. No more threads than work
    # items: waking a thread costs up to a scheduler time slice (~8 ms measured) when the
    # other cores are busy, far more than a small batch's substep.
    with kernel_threads(-(-batch // WORLDS_PER_TASK)):
        _substep_worlds(*args)
    outcome = TickOutcome(alive, tracked_onset, progress) if track else None
    return state.replace(**out), outcome
