"""Traffic decisions: highway-env's `IDMVehicle.act` (IDM car-following + MOBIL lane changes).

Vectorised over worlds `B` and vehicle slots `N`. Vehicle `j`'s neighbours are found by
geometry, as `Road.neighbour_vehicles` does; its IDM acceleration and MOBIL test use the same
float operations as highway-env. Slot indices stand for vehicles: `-1` is "no vehicle"
(highway-env's `None`). On a straight road every lane heads along +x, so the distance along
a lane between two vehicles (`lane_distance_to`, centre to centre) is `x_other - x_self`.
"""

from __future__ import annotations

import math

import torch

from envs.batched.road import is_reachable, lane_coordinates, not_zero, on_lane
from envs.batched.state import (BRAKING_LEAD_KIND, IDM_KIND, BatchedRoad, BatchedState,
                                Params)
from envs.batched.vehicle import steering_control


def gather_slots(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`values[b, index[b, ...]]` for `values (B, N, ...)` and int `index (B, ...)`.

    Index -1 ("no vehicle") reads slot 0; callers mask it. Returns `index.shape + values.shape[2:]`.
    """
    batch, trailing = values.shape[0], values.shape[2:]
    flat = index.clamp(min=0).reshape(batch, -1)
    flat = flat.reshape(flat.shape + (1,) * len(trailing)).expand(*flat.shape, *trailing)
    return torch.gather(values, 1, flat).reshape(index.shape + trailing)


def neighbour_vehicles(params: Params, road: BatchedRoad, position: torch.Tensor,
                       valid: torch.Tensor, query_lane: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """`Road.neighbour_vehicles(vehicle_j, lane)`: the vehicles just ahead and just behind `j`.

    For vehicle `j` at `s_j = x_j` projected on lane `k`, every other vehicle `v` whose centre
    is on lane `k` with margin 1 m (`|y_v - k w| <= w/2 + 1`, `-5 <= x_v < length + 5`) is
    a candidate; the front one is the nearest with `s_j <= s_v` (the last slot on a tie),
    the rear one the nearest with `s_v < s_j` (the first slot on a tie), as highway-env's
    list scan picks them.

    Args:
        position: `(B, N, 2)` [m]; valid: `(B, N)` bool;
        query_lane: `(B, N, K)` int, `K` lanes to search for each vehicle `j`.

    Returns:
        front, rear: `(B, N, K)` int64 slots, -1 where there is none.
    """
    batch, slots = valid.shape
    lane_slots = road.lane_valid.shape[1]
    x = position[..., 0]
    # Membership of every vehicle in every lane a query can name (-1 .. L, beyond the road
    # too: the formula is the same), then one gather per query.
    lanes = torch.arange(-1, lane_slots + 1, device=valid.device)
    _, r = lane_coordinates(position[:, None, :, :], lanes[None, :, None], params)  # (B, L+2, N)
    member = on_lane(x[:, None, :], r, road.length[:, None, None], params,
                     margin=params.neighbour_margin) & valid[:, None, :]
    row = (query_lane + 1).clamp(0, lane_slots + 1).reshape(batch, -1, 1).expand(-1, -1, slots)
    ids = torch.arange(slots, device=valid.device)
    not_self = (ids[:, None] != ids[None, :])[None, :, None, :]                 # (1, N, 1, N)
    candidate = torch.gather(member, 1, row).reshape(query_lane.shape + (slots,)) & not_self
    s_self = x[:, :, None, None]                                                # (B, N, 1, 1)
    s_other = x[:, None, None, :]                                               # (B, 1, 1, N)
    s_ahead = torch.where(candidate & (s_self <= s_other), s_other, math.inf)
    nearest = s_ahead.amin(dim=-1, keepdim=True)
    front = torch.where(s_ahead == nearest, ids, -1).amax(dim=-1)
    front = torch.where(torch.isinf(nearest[..., 0]), -1, front)
    s_behind = torch.where(candidate & (s_other < s_self), s_other, -math.inf)
    nearest = s_behind.amax(dim=-1, keepdim=True)
    rear = torch.where(s_behind == nearest, ids, slots).amin(dim=-1)
    return front, torch.where(torch.isinf(nearest[..., 0]), -1, rear)


def desired_gap(params: Params, speed: torch.Tensor, heading: torch.Tensor,
                front_speed: torch.Tensor, front_heading: torch.Tensor) -> torch.Tensor:
    """`IDMVehicle.desired_gap` (projected): the IDM desired centre distance `d*` [m].

        dv = (v e - v_f e_f) . e     (closing speed along the follower's heading `e`)
        d* = d0 + v tau + v dv / (2 sqrt(a b))

    Args:
        speed, front_speed [m/s], heading, front_heading [rad]: same shape.
    """
    return _desired_gap(params, speed, torch.cos(heading), torch.sin(heading), front_speed,
                        torch.cos(front_heading), torch.sin(front_heading))


def _desired_gap(params, speed, cos, sin, front_speed, front_cos, front_sin):
    """`desired_gap` from the headings' cosines and sines."""
    dv = ((speed * cos - front_speed * front_cos) * cos
          + (speed * sin - front_speed * front_sin) * sin)
    ab = -params.comfort_acc_max * params.comfort_acc_min
    return (params.distance_wanted + speed * params.time_wanted
            + speed * dv / (2 * math.sqrt(ab)))


def idm_acceleration(params: Params, speed: torch.Tensor, heading: torch.Tensor,
                     target_speed: torch.Tensor, speed_limit: torch.Tensor,
                     front_distance: torch.Tensor, front_speed: torch.Tensor,
                     front_heading: torch.Tensor, has_front: torch.Tensor) -> torch.Tensor:
    """`IDMVehicle.acceleration`: the Intelligent Driver Model [m/s^2].

        v0 = clip(target_speed, 0, speed_limit)
        a  = a_max (1 - (max(v, 0) / |not_zero(v0)|)^delta)  [- a_max (d* / not_zero(d))^2]

    with the bracket only when there is a front vehicle at centre distance `d` along the lane
    and `d*` from `desired_gap`. A follower with no target speed (a plain `Vehicle`: the ego,
    a static car) has `target_speed = 0`, so `v0 = 0.01` and it "wants" to brake hard: that
    is how highway-env's MOBIL judges the ego as a new follower.

    Args:
        all `(...)`: speed [m/s], heading [rad], target_speed [m/s], speed_limit [m/s],
        front_distance [m], front_speed [m/s], front_heading [rad], has_front (bool).
    """
    return _idm(params, speed, torch.cos(heading), torch.sin(heading), target_speed,
                speed_limit, front_distance, front_speed, torch.cos(front_heading),
                torch.sin(front_heading), has_front)


def _idm(params, speed, cos, sin, target_speed, speed_limit, front_distance, front_speed,
         front_cos, front_sin, has_front):
    """`idm_acceleration` from the headings' cosines and sines."""
    eps = params.not_zero_eps
    v0 = torch.minimum(torch.clamp(target_speed, min=0.0), speed_limit)
    free = params.comfort_acc_max * (
        1 - torch.pow(torch.clamp(speed, min=0.0) / not_zero(v0, eps).abs(), params.delta))
    gap = _desired_gap(params, speed, cos, sin, front_speed, front_cos, front_sin)
    following = free - params.comfort_acc_max * torch.pow(gap / not_zero(front_distance, eps), 2)
    return torch.where(has_front, following, free)


def idm_between(params: Params, state: BatchedState, follower: torch.Tensor,
                front: torch.Tensor) -> torch.Tensor:
    """IDM acceleration of slot `follower` behind slot `front` (`(B, ...)` int, -1 = none).

    Returns `(B, ...)` [m/s^2]: 0 where there is no follower (`acceleration(None) = 0`), the
    free-road term where there is no front vehicle.
    """
    heading = state.heading
    features = torch.stack([state.position[..., 0], state.speed, torch.cos(heading),
                            torch.sin(heading), state.target_speed], dim=-1)   # (B, N, 5)
    x, speed, cos, sin, target_speed = gather_slots(features, follower).unbind(-1)
    x_front, speed_front, cos_front, sin_front, _ = gather_slots(features, front).unbind(-1)
    speed_limit = state.road.speed_limit.reshape((-1,) + (1,) * (follower.dim() - 1))
    acceleration = _idm(params, speed, cos, sin, target_speed, speed_limit, x_front - x,
                        speed_front, cos_front, sin_front, front >= 0)
    return torch.where(follower >= 0, acceleration, torch.zeros_like(acceleration))


def mobil(params: Params, self_pred_a: torch.Tensor, self_a: torch.Tensor,
          new_following_a: torch.Tensor, new_following_pred_a: torch.Tensor,
          old_following_a: torch.Tensor, old_following_pred_a: torch.Tensor) -> torch.Tensor:
    """`IDMVehicle.mobil` (no route): is a change into the candidate lane worth it and safe?

    With `a(f, l)` the IDM acceleration of `f` behind `l` (all `(...)` [m/s^2]):
    `self_pred_a = a(me, new_preceding)`, `self_a = a(me, old_preceding)`,
    `new_following_a = a(new_following, new_preceding)`, `new_following_pred_a =
    a(new_following, me)`, `old_following_a = a(old_following, me)`,
    `old_following_pred_a = a(old_following, old_preceding)`:

        unsafe if new_following_pred_a < -b_safe
        gain = self_pred_a - self_a + p (new_following_pred_a - new_following_a
                                         + old_following_pred_a - old_following_a)
        change if not unsafe and not gain < a_th

    Returns:
        `(...)` bool.
    """
    unsafe = new_following_pred_a < -params.lane_change_max_braking_imposed
    jerk = self_pred_a - self_a + params.politeness * (
        new_following_pred_a - new_following_a + old_following_pred_a - old_following_a)
    return ~unsafe & ~(jerk < params.lane_change_min_acc_gain)


def _aborted_changes(params: Params, state: BatchedState, candidate: torch.Tensor,
                     old_target: torch.Tensor, decided_target: torch.Tensor) -> torch.Tensor:
    """The abort rule of `change_lane_policy`, in `road.act()` list order.

    A vehicle `j` changing lanes (`lane != target`) returns to its lane if another controlled
    vehicle `v`, not yet in that lane, also targets it and is ahead within the desired gap:
    `0 < x_v - x_j < d*(j behind v)`. `v`'s target is read as the act loop leaves it when `j`
    acts: already decided for `v < j` (a MOBIL change, or its own abort), still the old one
    for `v > j`. Only aborts of earlier changing vehicles chain, so one pass over the slots
    holding a changing vehicle somewhere in the batch resolves them exactly.

    Args:
        candidate: `(B, N)` bool, vehicles to which the rule applies (MOBIL on, changing).
        old_target: `(B, N)` targets before this act; decided_target: after MOBIL decisions.

    Returns:
        `(B, N)` bool, vehicles that abort.
    """
    slots = state.num_slots
    ids = torch.arange(slots, device=state.device)
    x, speed, heading, lane = (state.position[..., 0], state.speed, state.heading, state.lane)
    controlled = state.valid & ((state.kind == IDM_KIND) | (state.kind == BRAKING_LEAD_KIND))
    distance = x[:, None, :] - x[:, :, None]                                  # [b, j, v]
    gap = desired_gap(params, speed[:, :, None], heading[:, :, None], speed[:, None, :],
                      heading[:, None, :])
    earlier = (ids[None, :] < ids[:, None])[None]                              # v < j
    target_seen = torch.where(earlier, decided_target[:, None, :], old_target[:, None, :])
    match = (controlled[:, None, :] & (ids[:, None] != ids[None, :])[None]
             & (lane[:, None, :] != old_target[:, :, None])
             & (target_seen == old_target[:, :, None])
             & (distance > 0) & (distance < gap))
    aborted = torch.zeros_like(candidate)
    for j in torch.nonzero(candidate.any(dim=0)).flatten().tolist():
        aborted[:, j] = candidate[:, j] & (match[:, j] & ~aborted).any(dim=-1)
    return aborted


def change_lane_policy(params: Params, state: BatchedState, mobil_on: torch.Tensor,
                       wants_left: torch.Tensor, wants_right: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """`IDMVehicle.change_lane_policy` for every vehicle with MOBIL on.

    - changing lanes (`lane != target`): only the abort rule (`_aborted_changes`);
    - else every `LANE_CHANGE_DELAY` (`timer > delay`, then `timer = 0`): for the left then
      the right neighbour lane, if it exists, is reachable, `|v| >= 1 m/s` and `mobil` says
      yes, it becomes the target (the right one wins if both pass).

    Args:
        mobil_on: `(B, N)` bool, vehicles that run the policy.
        wants_left, wants_right: `(B, N)` bool, `mobil` for the lanes `lane - 1`, `lane + 1`.

    Returns:
        target_lane `(B, N)` int64 and timer `(B, N)` [s], unchanged where MOBIL is off.
    """
    lane, old_target, timer = state.lane, state.target_lane, state.timer
    changing = lane != old_target
    decide = mobil_on & ~changing & (timer > params.lane_change_delay)
    timer = torch.where(decide, torch.zeros_like(timer), timer)
    moving = state.speed.abs() >= params.mobil_min_speed
    target = old_target
    for side, wanted in ((-1, wants_left), (1, wants_right)):
        lane_k = lane + side
        exists = (lane_k >= 0) & (lane_k < state.road.lane_count[:, None])
        s, r = lane_coordinates(state.position, lane_k, params)
        reachable = is_reachable(s, r, state.road.length[:, None], params)
        target = torch.where(decide & exists & reachable & moving & wanted, lane_k, target)
    candidate = mobil_on & changing
    if bool(candidate.any()):
        aborted = _aborted_changes(params, state, candidate, old_target, target)
        target = torch.where(aborted, lane, target)
    return target, timer


def traffic_act(params: Params, state: BatchedState) -> BatchedState:
    """`road.act()` for the traffic: every IDM vehicle picks its target lane and action.

    - crashed IDM vehicles do nothing (their action is overridden by `clip_actions`);
    - a braking lead that has been told to brake steers to its lane and applies
      `a = -min(decel, max(v, 0) / dt)` (never below standstill within a substep);
    - every other IDM vehicle: MOBIL (if enabled), then steering to its target lane and
      `a = clip(min(IDM in own lane, IDM in target lane if changing), -a_max, a_max)`.

    `follow_road` is a no-op on a straight road (no lane follows it), the ego's and static
    vehicles' `act()` too. All IDM accelerations of the substep (own lane, MOBIL's six per
    side, target lane) are evaluated in one batched call.

    Returns:
        the state with `target_lane`, `timer`, `steering` [rad], `acceleration` [m/s^2]
        updated.
    """
    kind = state.kind
    idm = state.valid & ((kind == IDM_KIND) | (kind == BRAKING_LEAD_KIND))
    braking_now = idm & (kind == BRAKING_LEAD_KIND) & state.braking & ~state.crashed
    acting = idm & ~state.crashed & ~braking_now
    mobil_on = acting & state.lane_changes
    lane, old_target = state.lane, state.target_lane
    # Neighbours in: own lane (0), left (1), right (2), current target (3).
    queries = torch.stack([lane, lane - 1, lane + 1, old_target], dim=-1)
    front, rear = neighbour_vehicles(params, state.road, state.position, state.valid, queries)
    me = torch.arange(state.num_slots, device=state.device).expand_as(lane)
    f0, f1, f2, f3 = front.unbind(-1)
    r0, r1, r2, _ = rear.unbind(-1)
    followers = torch.stack([me, me, me, me, r1, r1, r2, r2, r0, r0], dim=-1)
    fronts = torch.stack([f0, f1, f2, f3, f1, me, f2, me, me, f0], dim=-1)
    acc = idm_between(params, state, followers, fronts)                      # (B, N, 10)
    self_a, old_following_a, old_following_pred_a = acc[..., 0], acc[..., 8], acc[..., 9]
    wants_left = mobil(params, acc[..., 1], self_a, acc[..., 4], acc[..., 5],
                       old_following_a, old_following_pred_a)
    wants_right = mobil(params, acc[..., 2], self_a, acc[..., 6], acc[..., 7],
                        old_following_a, old_following_pred_a)
    target, timer = change_lane_policy(params, state, mobil_on, wants_left, wants_right)
    target = torch.where(mobil_on, target, old_target)
    timer = torch.where(mobil_on, timer, state.timer)

    steering = steering_control(params, state.position, state.heading, state.speed,
                                state.length, target)
    steering = torch.clamp(steering, -params.max_steering_angle, params.max_steering_angle)
    in_target = torch.where(target == old_target, acc[..., 3],
                            torch.where(target == lane - 1, acc[..., 1],
                                        torch.where(target == lane + 1, acc[..., 2], self_a)))
    acceleration = torch.where(lane != target, torch.minimum(self_a, in_target), self_a)
    acceleration = torch.clamp(acceleration, -params.acc_max, params.acc_max)
    decel = torch.minimum(state.braking_decel, torch.clamp(state.speed, min=0.0) / params.dt)

    steers = acting | braking_now
    return state.replace(
        target_lane=target,
        timer=timer,
        steering=torch.where(steers, steering, state.steering),
        acceleration=torch.where(acting, acceleration,
                                 torch.where(braking_now, -decel, state.acceleration)),
    )
