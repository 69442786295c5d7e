"""Traffic decisions: highway-env's `IDMVehicle.act` (IDM car-following + MOBIL lane changes).

Vectorised over worlds `B` and vehicle slots `N`. Vehicle `j`'s neighbours are found by
geometry, as `Road.neighbour_vehicles` does; its IDM acceleration and MOBIL test use the same
float operations as highway-env. Slot indices stand for vehicles: `-1` is "no vehicle"
(highway-env's `None`). On a straight road every lane heads along +x, so the distance along
a lane between two vehicles (`lane_distance_to`, centre to centre) is `x_other - x_self`.

Cost structure of one `traffic_act` (what keeps it cheap at large `B`):

- the neighbour search is a `NeighbourIndex`: the vehicles of each world sorted by `x` once
  (usually verified, not re-sorted: see `key_order`) and one bit mask per lane, so a query
  "front / rear of `j` on lane `k`" is a handful of integer operations per vehicle;
- every vehicle needs only its own lane's front (IDM) and, while it changes lanes, its
  target lane's front; the MOBIL evaluations (side lanes, rears, 8 IDM accelerations) run
  only on the rows `(world, slot)` whose MOBIL timer fires this substep (about one in
  `LANE_CHANGE_DELAY / dt` = 50), the abort rule only on the rows changing lanes;
- per-vehicle terms (`cos`, `sin`, `v cos`, `v sin`, the IDM free-road term, `d0 + v tau`)
  are computed once and gathered.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from reflexdrive.envs.backends.batched.state import (
    BRAKING_LEAD_KIND,
    IDM_KIND,
    BatchedRoad,
    BatchedState,
    Params,
    take,
)
from reflexdrive.envs.backends.batched.torch.road import (
    as_weight,
    blend,
    is_reachable,
    lane_coordinates,
    not_zero,
    not_zero_nonnegative,
)
from reflexdrive.envs.backends.batched.torch.vehicle import steering_control

MAX_BITMASK_SLOTS = 63
"""Most vehicle slots `N` the bit-mask neighbour search handles (int64 masks over sorted
positions); beyond it `NeighbourIndex` falls back to a pairwise `(rows, N)` search."""


# ------------------------------------------------------------------------------ neighbours


def key_order(x: torch.Tensor, hint: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, bool]:
    """Each world's slots sorted by `x` ascending, ties by slot descending ("key order").

    The key `(x, -slot)` is a strict total order (for non-NaN `x`), so a permutation is the
    key order iff consecutive keys increase. `hint` (e.g. the previous substep's order:
    vehicles rarely overtake within 20 ms) is checked that way and only the worlds where
    it fails are sorted again; any `(B, N)` int64 tensor of slots is a valid hint.

    Args:
        x: `(B, N)` longitudinal positions [m]; hint: `(B, N)` int64 or None.

    Returns:
        `(B, N)` int64 `order` (`order[b, p]` is the slot at key position `p`), and True if
        it is known that no two vehicles of a world have the same `x` (else False).
    """
    batch, slots = x.shape
    if hint is not None and hint.shape == x.shape and hint.device == x.device:
        xs = torch.gather(x, 1, hint)
        rising = xs[:, 1:] > xs[:, :-1]
        if bool(rising.all()):                   # the usual case: no tie, no overtaking
            return hint, True
        rising |= (xs[:, 1:] == xs[:, :-1]) & (hint[:, 1:] < hint[:, :-1])
        rows = torch.nonzero(~rising.all(dim=1)).flatten()
        if rows.numel() == 0:
            return hint, False
        order = hint.clone()
        order[rows] = key_order(x.index_select(0, rows))[0]
        return order, False
    # A stable sort of the slots in reverse order puts equal x in descending slot order.
    _, reverse = torch.sort(x.flip(-1), dim=-1, stable=True)
    return (slots - 1) - reverse, False


class NeighbourIndex(NamedTuple):
    """What `Road.neighbour_vehicles` needs, for every vehicle of every world at once.

    With the vehicles in key order (`key_order`: `x` ascending, ties by slot descending),
    vehicle `j` at key position `p(j)` and `start(j) = #{v : x_v < x_j}`:

    - the candidates ahead (`s_j <= s_v`, `v != j`) are the key positions `>= start(j)`
      except `p(j)`; the front is the first lane member among them in key order: the
      smallest `x`, and on a tie the highest slot (highway-env's list scan keeps the last);
    - the candidates behind (`s_v < s_j`) are the key positions `< start(j)`; the rear is
      the last member among them: the largest `x`, on a tie the lowest slot.

    Lane membership (`on_lane` with margin 1 m, valid slots only) of lane `first_lane + k`
    is bit `p` of `lanes[b, k]` for the vehicle at key position `p`, so a query is an `&`
    with `ahead[b, j]` / `behind[b, j]` and a lowest / highest set bit.

    Attributes:
        slot_at: `(B, N + 1)` int64: `slot_at[b, 0] = -1` (none), `slot_at[b, 1 + p]` the
            slot at key position `p` (so the bit number `p + 1` of a mask indexes it).
        ahead: `(B, N)` int64 mask of the key positions ahead of each slot.
        behind: `(B, N)` int64 mask of the key positions behind each slot.
        lanes: `(B, K)` int64 member masks of lanes `first_lane .. first_lane + K - 1`.
        first_lane: lane number of `lanes[:, 0]`.
        order: `(B, N)` int64 key order (a hint for the next substep's `key_order`).
        pairwise: None, or for `N > MAX_BITMASK_SLOTS` the `(x (B, N), member (B, K, N))`
            of the pairwise fallback.
    """

    slot_at: torch.Tensor
    ahead: torch.Tensor
    behind: torch.Tensor
    lanes: torch.Tensor
    first_lane: int
    order: torch.Tensor
    pairwise: tuple | None = None


def neighbour_index(params: Params, road: BatchedRoad, x: torch.Tensor, y: torch.Tensor,
                    valid: torch.Tensor, first_lane: int, lane_count: int,
                    hint: torch.Tensor | None = None) -> NeighbourIndex:
    """Build the `NeighbourIndex` of lanes `first_lane .. first_lane + lane_count - 1`.

    Args:
        x, y: `(B, N)` positions [m] (contiguous); valid: `(B, N)` bool;
        hint: a `key_order` hint or None.
    """
    batch, slots = valid.shape
    device = valid.device
    # on_lane(margin 1) on lane k: |y - k w| <= w/2 + 1 and -l_v <= x < length + l_v,
    # with `y - k w` as `lane_coordinates` computes it
    offsets = torch.arange(first_lane, first_lane + lane_count, device=device).to(x.dtype)
    lateral = torch.sub(y[:, None, :], (offsets * params.lane_width)[None, :, None]).abs_()
    member = lateral <= params.lane_width / 2 + params.neighbour_margin          # (B, K, N)
    vl = params.lane_vehicle_length
    along = (x >= -vl) & (x < road.length[:, None] + vl) & valid
    member &= along[:, None, :]
    order, distinct = key_order(x, hint)
    slot_at = torch.cat([torch.full((batch, 1), -1, dtype=torch.int64, device=device),
                         order], dim=1)
    if slots > MAX_BITMASK_SLOTS:
        empty = torch.zeros((batch, slots), dtype=torch.int64, device=device)
        return NeighbourIndex(slot_at, empty, empty, empty[:, :0], first_lane, order,
                              (x, member))
    ids = torch.arange(slots, device=device)
    key_position = torch.empty_like(order).scatter_(1, order, ids.expand(batch, slots))
    tie = None
    if not distinct:
        xs = torch.gather(x, 1, order)
        tie = xs[:, 1:] == xs[:, :-1]
    if tie is not None and bool(tie.any()):
        # start of each run of equal x, in key positions, then per slot
        new_run = torch.cat([torch.ones_like(tie[:, :1]), ~tie], dim=1)
        run_start = torch.cummax(ids * new_run, dim=1).values
        start = torch.gather(run_start, 1, key_position)
    else:
        start = key_position
    one = torch.ones_like(start)
    ahead = torch.bitwise_left_shift(torch.full_like(start, -1), start)
    ahead ^= torch.bitwise_left_shift(one, key_position)
    behind = torch.bitwise_left_shift(one, start).sub_(1)
    bits = member.to(torch.int64).bitwise_left_shift_(key_position[:, None, :])
    return NeighbourIndex(slot_at, ahead, behind, bits.sum(dim=-1), first_lane, order)


def _bit_number(power: torch.Tensor) -> torch.Tensor:
    """`q + 1` for `power = 2^q` (`q <= 62`), 0 for 0: read from the float64 exponent."""
    exponent = torch.bitwise_right_shift(power.to(torch.float64).view(torch.int64), 52)
    return torch.clamp(exponent - 1022, min=0)


def _lowest_bit(mask: torch.Tensor) -> torch.Tensor:
    """Bit number (`_bit_number`) of the lowest set bit of int64 `mask >= 0`; 0 if none."""
    return _bit_number(torch.bitwise_and(mask, -mask))


def _highest_bit(mask: torch.Tensor, slots: int) -> torch.Tensor:
    """Bit number (`_bit_number`) of the highest set bit of int64 `0 <= mask < 2^slots`."""
    if slots > 53:   # int64 -> float64 could round up: keep the highest bit alone first
        for shift in (1, 2, 4, 8, 16, 32):
            mask = torch.bitwise_or(mask, torch.bitwise_right_shift(mask, shift))
        mask = mask - torch.bitwise_right_shift(mask, 1)
    return _bit_number(mask)   # exact: the float64 of `mask` has its exponent


def neighbours_of(index: NeighbourIndex, lane: torch.Tensor, rear: bool = True,
                  world: torch.Tensor | None = None, slot: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Front and rear slots of vehicles on a lane each (`Road.neighbour_vehicles`).

    Either every vehicle: `lane (B, N)` (vehicle `[b, j]` queries `lane[b, j]`), or given
    rows: `world`, `slot` `(P, 1)` or `(P,)` and `lane` broadcasting with them (e.g. `(P, 3)`:
    three lanes per row). Lanes outside the index's range read its first / last lane.

    Returns:
        front, rear: int64 slots of `lane`'s shape, -1 where there is none (rear None if
        `rear` is False).
    """
    lane_slots = max(index.lanes.shape[1], 1)
    slots = index.ahead.shape[1]
    if index.pairwise is not None:
        return _pairwise_neighbours(index, lane, rear, world, slot)
    k = (lane - index.first_lane).clamp(0, lane_slots - 1)
    if world is None:
        members = torch.gather(index.lanes, 1, k)
        front_bit = _lowest_bit(members & index.ahead)
        front = torch.gather(index.slot_at, 1, front_bit)
        if not rear:
            return front, None
        return front, torch.gather(index.slot_at, 1, _highest_bit(members & index.behind, slots))
    world, slot, k = torch.broadcast_tensors(world, slot, k)
    members = take(index.lanes, world * lane_slots + k)
    row = world * slots + slot
    first = world * (slots + 1)
    front = take(index.slot_at, first + _lowest_bit(members & take(index.ahead, row)))
    if not rear:
        return front, None
    behind = members & take(index.behind, row)
    return front, take(index.slot_at, first + _highest_bit(behind, slots))


def _pairwise_neighbours(index: NeighbourIndex, lane, rear, world, slot):
    """`neighbours_of` by comparing each query with all `N` slots (`N > 63` fallback)."""
    x, member = index.pairwise
    batch, lane_slots, slots = member.shape
    if world is None:
        world = torch.arange(batch, device=x.device)[:, None]
        slot = torch.arange(slots, device=x.device)[None, :]
    world, slot, lane = torch.broadcast_tensors(world, slot, lane)
    shape = lane.shape
    world, slot, lane = world.reshape(-1), slot.reshape(-1), lane.reshape(-1)
    k = (lane - index.first_lane).clamp(0, lane_slots - 1)
    ids = torch.arange(slots, device=x.device)
    candidate = member[world, k] & (ids[None, :] != slot[:, None])               # (P, N)
    s_other, s_self = x[world], x[world, slot][:, None]
    s_ahead = torch.where(candidate & (s_self <= s_other), s_other, math.inf)
    nearest = s_ahead.amin(dim=-1, keepdim=True)
    front = torch.where(s_ahead == nearest, ids, -1).amax(dim=-1)
    front = torch.where(torch.isinf(nearest[..., 0]), -1, front).reshape(shape)
    if not rear:
        return front, None
    s_behind = torch.where(candidate & (s_other < s_self), s_other, -math.inf)
    nearest = s_behind.amax(dim=-1, keepdim=True)
    back = torch.where(s_behind == nearest, ids, slots).amin(dim=-1)
    return front, torch.where(torch.isinf(nearest[..., 0]), -1, back).reshape(shape)


def neighbour_vehicles(params: Params, road: BatchedRoad, position: torch.Tensor,
                       valid: torch.Tensor, query_lane: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """`Road.neighbour_vehicles(vehicle_j, lane)`: the vehicles just ahead and just behind `j`.

    For vehicle `j` at `s_j = x_j` projected on lane `k`, every other vehicle `v` whose centre
    is on lane `k` with margin 1 m (`|y_v - k w| <= w/2 + 1`, `-5 <= x_v < length + 5`) is
    a candidate; the front one is the nearest with `s_j <= s_v` (the last slot on a tie),
    the rear one the nearest with `s_v < s_j` (the first slot on a tie), as highway-env's
    list scan picks them. (Lanes -1 .. L are searched with the same formula; further ones
    read lane -1 or L.)

    Args:
        position: `(B, N, 2)` [m]; valid: `(B, N)` bool;
        query_lane: `(B, N, K)` int, `K` lanes to search for each vehicle `j`.

    Returns:
        front, rear: `(B, N, K)` int64 slots, -1 where there is none.
    """
    lane_slots = road.lane_valid.shape[1]
    index = neighbour_index(params, road, position[..., 0].contiguous(),
                            position[..., 1].contiguous(), valid, -1, lane_slots + 2)
    pairs = [neighbours_of(index, lane) for lane in query_lane.unbind(-1)]
    return (torch.stack([f for f, _ in pairs], dim=-1),
            torch.stack([r for _, r in pairs], dim=-1))


# ------------------------------------------------------------------------------ IDM, MOBIL


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


def _two_sqrt_ab(params: Params) -> float:
    """`2 sqrt(a b)` of the desired gap [m/s^2]."""
    return 2 * math.sqrt(-params.comfort_acc_max * params.comfort_acc_min)


def _desired_gap(params, speed, cos, sin, front_speed, front_cos, front_sin):
    """`desired_gap` from the headings' cosines and sines."""
    dv = ((speed * cos - front_speed * front_cos) * cos
          + (speed * sin - front_speed * front_sin) * sin)
    return (params.distance_wanted + speed * params.time_wanted
            + speed * dv / _two_sqrt_ab(params))


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
    free = _free_road(params, speed, target_speed, speed_limit)
    gap = desired_gap(params, speed, heading, front_speed, front_heading)
    eps = params.not_zero_eps
    following = free - params.comfort_acc_max * torch.pow(gap / not_zero(front_distance, eps), 2)
    return torch.where(has_front, following, free)


def _free_road(params: Params, speed: torch.Tensor, target_speed: torch.Tensor,
               speed_limit: torch.Tensor) -> torch.Tensor:
    """The IDM free-road term `a_max (1 - (max(v, 0) / not_zero(v0))^delta)` [m/s^2].

    `v0 = clip(target_speed, 0, speed_limit) >= 0`, so `|not_zero(v0)| = max(v0, eps)`.
    """
    v0 = torch.clamp(target_speed, min=0.0)
    v0 = not_zero_nonnegative(torch.minimum(v0, speed_limit, out=v0), params.not_zero_eps)
    ratio = torch.clamp(speed, min=0.0).div_(v0)
    return ratio.pow_(params.delta).neg_().add_(1).mul_(params.comfort_acc_max)   # a (1 - r^d)


class _Fleet(NamedTuple):
    """Per-vehicle terms of this substep's IDM evaluations, all `(B, N)`.

    x [m], speed [m/s], cos / sin of the heading, vx / vy = `speed * cos / sin` [m/s],
    free: the IDM free-road term [m/s^2], base: `d0 + speed * tau` [m].
    """

    x: torch.Tensor
    speed: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    vx: torch.Tensor
    vy: torch.Tensor
    free: torch.Tensor
    base: torch.Tensor


def _fleet(params: Params, state: BatchedState, x: torch.Tensor) -> _Fleet:
    """The `_Fleet` of `state` (one cos, sin and pow per vehicle per substep); `x (B, N)`."""
    speed, heading = state.speed, state.heading
    cos, sin = torch.cos(heading), torch.sin(heading)
    free = _free_road(params, speed, state.target_speed, state.road.speed_limit[:, None])
    return _Fleet(x, speed, cos, sin, speed * cos, speed * sin, free,
                  params.distance_wanted + speed * params.time_wanted)


def _idm_behind(params: Params, x, speed, cos, sin, vx, vy, free, base,
                front_x, front_vx, front_vy, has_front) -> torch.Tensor:
    """IDM acceleration of followers (their `_Fleet` terms) behind fronts [m/s^2].

        dv = (v cos - v_f cos_f) cos + (v sin - v_f sin_f) sin
        d* = (d0 + v tau) + v dv / (2 sqrt(a b))
        a  = free - a_max (d* / not_zero(x_f - x))^2   (just `free` without a front)

    Every front searched by `Road.neighbour_vehicles` is level with or ahead of its
    follower (`x_f >= x`), so `not_zero(x_f - x) = max(x_f - x, eps)`.

    Args:
        front_x [m], front_vx, front_vy [m/s]: the front's terms (any finite value where
        there is no front), fresh tensors: they are overwritten; has_front: 0.0 / 1.0
        weight. All broadcast together.
    """
    # in place on the (fresh) front terms, in highway-env's order of operations
    dv = torch.sub(vx, front_vx, out=front_vx).mul_(cos)
    dv.add_(torch.sub(vy, front_vy, out=front_vy).mul_(sin))
    gap = dv.mul_(speed).div_(_two_sqrt_ab(params)).add_(base)
    distance = torch.sub(front_x, x, out=front_x).clamp_(min=params.not_zero_eps)
    ratio = gap.div_(distance)
    following = ratio.mul_(ratio).mul_(params.comfort_acc_max)
    following = torch.sub(free, following, out=following)
    return torch.lerp(free, following, has_front, out=following)     # blend


def _idm_own(params: Params, fleet: _Fleet, front: torch.Tensor) -> torch.Tensor:
    """`(B, N)` IDM acceleration of every vehicle behind `front (B, N)` (-1 = none)."""
    index = front.clamp(min=0)

    def at(values):
        return torch.gather(values, 1, index)

    return _idm_behind(params, *fleet, at(fleet.x), at(fleet.vx), at(fleet.vy),
                       as_weight(front >= 0, fleet.x))


def _idm_rows(params: Params, fleet: _Fleet, world: torch.Tensor, follower: torch.Tensor,
              front: torch.Tensor) -> torch.Tensor:
    """IDM acceleration of slot `follower` behind slot `front` in world `world` [m/s^2].

    `world (P, 1)`, `follower`, `front` `(P, K)` int64, -1 = none. Returns `(P, K)`: 0 where
    there is no follower (`acceleration(None) = 0`), the free-road term without a front.
    """
    slots = fleet.x.shape[1]
    ego = (world * slots + follower.clamp(min=0)).reshape(-1)
    ahead = (world * slots + front.clamp(min=0)).reshape(-1)

    def at(values, rows):
        return values.reshape(-1).index_select(0, rows).reshape(follower.shape)

    terms = [at(values, ego) for values in fleet]
    acceleration = _idm_behind(params, *terms, at(fleet.x, ahead), at(fleet.vx, ahead),
                               at(fleet.vy, ahead), as_weight(front >= 0, terms[0]))
    return acceleration * as_weight(follower >= 0, acceleration)


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


def _mobil_targets(params: Params, state: BatchedState, fleet: _Fleet, index: NeighbourIndex,
                   world: torch.Tensor, slot: torch.Tensor, front: torch.Tensor,
                   self_a: torch.Tensor) -> torch.Tensor:
    """The MOBIL decision of rows `(world, slot)` (`(P,)` each) whose timer fired.

    For the left then the right neighbour lane, if it exists, is reachable
    (`is_reachable_from`) and `mobil` says yes, it becomes the target (the right one wins if
    both pass; the caller keeps only moving vehicles). The six accelerations per side of
    `mobil` are evaluated for these rows only.

    Args:
        front, self_a: `(B, N)` own-lane front slots and IDM accelerations.

    Returns:
        `(P,)` int64 target lanes (the current lane if no change).
    """
    slots = state.num_slots
    row = world * slots + slot
    lane = take(state.lane, row)
    lanes = lane[:, None] + torch.tensor([0, -1, 1], device=lane.device)   # own, left, right
    fronts, rears = neighbours_of(index, lanes, world=world[:, None], slot=slot[:, None])
    old_front, old_rear, me = take(front, row), rears[:, 0], slot
    # a(f, l) for (f, l) = (old_rear, me), (old_rear, old_front), then per side
    # (me, new_front), (new_rear, new_front), (new_rear, me)
    followers = torch.stack([old_rear, old_rear, me, rears[:, 1], rears[:, 1],
                             me, rears[:, 2], rears[:, 2]], dim=-1)
    leaders = torch.stack([me, old_front, fronts[:, 1], fronts[:, 1], me,
                           fronts[:, 2], fronts[:, 2], me], dim=-1)
    acc = _idm_rows(params, fleet, world[:, None], followers, leaders)             # (P, 8)
    per_side = acc[:, 2:].reshape(-1, 2, 3)                                        # left, right
    wanted = mobil(params, per_side[..., 0], take(self_a, row)[:, None], per_side[..., 1],
                   per_side[..., 2], acc[:, :1], acc[:, 1:2])                      # (P, 2)
    side_lanes = lanes[:, 1:]
    exists = (side_lanes >= 0) & (side_lanes < state.road.lane_count[world][:, None])
    s, r = lane_coordinates(state.position.reshape(-1, 2)[row][:, None, :], side_lanes, params)
    allowed = exists & is_reachable(s, r, state.road.length[world][:, None], params) & wanted
    return torch.where(allowed[:, 1], side_lanes[:, 1],
                       torch.where(allowed[:, 0], side_lanes[:, 0], lane))


def _aborted_rows(params: Params, state: BatchedState, fleet: _Fleet, world: torch.Tensor,
                  slot: torch.Tensor, old_target: torch.Tensor,
                  decided_target: torch.Tensor) -> torch.Tensor:
    """The abort rule of `change_lane_policy` for rows `(world, slot)`, in `road.act()` order.

    A vehicle `j` changing lanes (`lane != target`) returns to its lane if another controlled
    vehicle `v`, not yet in that lane, also targets it and is ahead within the desired gap:
    `0 < x_v - x_j < d*(j behind v)`. `v`'s target is read as the act loop leaves it when `j`
    acts: already decided for `v < j` (a MOBIL change, or its own abort), still the old one
    for `v > j`. Aborts chain only through earlier slots (`j` depends on `v < j`), so
    iterating `aborted = rule(aborted)` from "none" until it stops changing reaches the
    one consistent answer (at most `N` passes; one or two in practice).

    Args:
        world, slot: `(P,)` rows the rule applies to (MOBIL on, changing lanes).
        old_target: `(B, N)` targets before this act; decided_target: after MOBIL decisions.

    Returns:
        `(P,)` bool, rows that abort.
    """
    slots = state.num_slots
    ids = torch.arange(slots, device=state.device)
    row = world * slots + slot

    def mine(values):                                        # (P, 1): the changing vehicle
        return take(values, row)[:, None]

    def theirs(values):                                      # (P, N): its world's vehicles
        return values.index_select(0, world)

    controlled = state.valid & ((state.kind == IDM_KIND) | (state.kind == BRAKING_LEAD_KIND))
    target = mine(old_target)
    earlier = ids[None, :] < slot[:, None]
    seen = torch.where(earlier, theirs(decided_target), theirs(old_target))
    distance = theirs(fleet.x) - mine(fleet.x)
    dv = ((mine(fleet.vx) - theirs(fleet.vx)) * mine(fleet.cos)
          + (mine(fleet.vy) - theirs(fleet.vy)) * mine(fleet.sin))
    gap = mine(fleet.base) + mine(fleet.speed) * dv / _two_sqrt_ab(params)
    match = (theirs(controlled) & (ids[None, :] != slot[:, None])
             & (theirs(state.lane) != target) & (seen == target)
             & (distance > 0) & (distance < gap))
    aborted = match.any(dim=1)               # the answer if no earlier vehicle aborts
    if not bool(aborted.any()):
        return aborted
    while True:
        done = torch.zeros_like(state.valid)
        done.reshape(-1).index_copy_(0, row, aborted)
        again = (match & ~(theirs(done) & earlier)).any(dim=1)
        if torch.equal(again, aborted):
            return aborted
        aborted = again


def change_lane_policy(params: Params, state: BatchedState, fleet: _Fleet,
                       index: NeighbourIndex, mobil_on: torch.Tensor, front: torch.Tensor,
                       self_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`IDMVehicle.change_lane_policy` for every vehicle with MOBIL on.

    - changing lanes (`lane != target`): only the abort rule (`_aborted_rows`);
    - else every `LANE_CHANGE_DELAY` (`timer > delay`, then `timer = 0`): MOBIL, if
      `|v| >= 1 m/s` (`_mobil_targets`).

    Args:
        mobil_on: `(B, N)` bool, vehicles that run the policy; front, self_a: `(B, N)`
            own-lane fronts and IDM accelerations.

    Returns:
        target_lane `(B, N)` int64 and timer `(B, N)` [s], unchanged where MOBIL is off.
    """
    lane, old_target, timer = state.lane, state.target_lane, state.timer
    slots = state.num_slots
    changing = lane != old_target
    decide = mobil_on & ~changing & (timer > params.lane_change_delay)
    timer = timer * (1.0 - as_weight(decide, timer))                   # 0 where it fires
    moving = state.speed.abs() >= params.mobil_min_speed
    target = old_target
    rows = torch.nonzero(decide & moving)
    decided = None
    if rows.shape[0]:
        world, slot = rows.unbind(1)
        new = _mobil_targets(params, state, fleet, index, world, slot, front, self_a)
        target = old_target.clone()
        target.reshape(-1).index_copy_(0, world * slots + slot, new)
        turns = new != take(lane, world * slots + slot)
        decided = (world[turns], new[turns])
    # The abort rule needs another controlled vehicle entering the same lane (old or
    # newly decided target, not in it yet): count the entering vehicles per world and lane
    # and keep the changing vehicles whose lane has at least two.
    candidate = mobil_on & changing
    if not bool(candidate.any()):
        return target, timer
    controlled = state.valid & ((state.kind == IDM_KIND) | (state.kind == BRAKING_LEAD_KIND))
    lane_slots = state.road.lane_valid.shape[1]
    entering = torch.zeros((state.batch_size, lane_slots), dtype=torch.int64,
                           device=state.device)
    entering.scatter_add_(1, old_target.clamp(0, lane_slots - 1),
                          (controlled & changing).to(torch.int64))
    if decided is not None:
        entering.index_put_((decided[0], decided[1].clamp(0, lane_slots - 1)),
                            torch.ones_like(decided[1]), accumulate=True)
    crowded = torch.gather(entering, 1, old_target.clamp(0, lane_slots - 1)) >= 2
    rows = torch.nonzero(candidate & crowded)
    if rows.shape[0]:
        world, slot = rows.unbind(1)
        aborted = _aborted_rows(params, state, fleet, world, slot, old_target, target)
        if bool(aborted.any()):
            target = target.clone() if target is old_target else target
            flat = world * slots + slot
            target.reshape(-1).index_copy_(
                0, flat, torch.where(aborted, take(lane, flat), take(target, flat)))
    return target, timer


def traffic_act(params: Params, state: BatchedState) -> BatchedState:
    """`road.act()` for the traffic: every IDM vehicle picks its target lane and action.

    - crashed IDM vehicles do nothing (their action is overridden by `clip_actions`);
    - a braking lead that has been told to brake steers to its lane and applies
      `a = -min(decel, max(v, 0) / dt)` (never below standstill within a substep);
    - every other IDM vehicle: MOBIL (if enabled), then steering to its target lane and
      `a = clip(min(IDM in own lane, IDM in target lane if changing), -a_max, a_max)`.

    `follow_road` is a no-op on a straight road (no lane follows it), the ego's and static
    vehicles' `act()` too.

    Returns:
        the state with `target_lane`, `timer`, `steering` [rad], `acceleration` [m/s^2]
        and the `order_hint` (this substep's key order) updated.
    """
    kind = state.kind
    idm = state.valid & ((kind == IDM_KIND) | (kind == BRAKING_LEAD_KIND))
    braking_now = idm & (kind == BRAKING_LEAD_KIND) & state.braking & ~state.crashed
    acting = idm & ~state.crashed & ~braking_now
    mobil_on = acting & state.lane_changes
    lane_slots = state.road.lane_valid.shape[1]
    x, y = state.position[..., 0].contiguous(), state.position[..., 1].contiguous()
    index = neighbour_index(params, state.road, x, y, state.valid, 0, lane_slots,
                            state.order_hint)
    fleet = _fleet(params, state, x)
    front, _ = neighbours_of(index, state.lane, rear=False)
    self_a = _idm_own(params, fleet, front)
    target, timer = change_lane_policy(params, state, fleet, index, mobil_on, front, self_a)

    steering = steering_control(params, state.position, state.heading, state.speed,
                                state.length, target)
    # While changing lanes (lane != target) also the IDM behind the target lane's front
    # counts: a = min(both), evaluated for those rows only.
    acceleration = self_a
    rows = torch.nonzero((state.lane != target).reshape(-1)).flatten()
    if rows.numel():
        slots = state.num_slots
        world, slot = torch.div(rows, slots, rounding_mode="floor"), torch.remainder(rows, slots)
        target_front, _ = neighbours_of(index, take(target, rows), rear=False, world=world,
                                        slot=slot)
        in_target = _idm_rows(params, fleet, world[:, None], slot[:, None], target_front[:, None])
        acceleration = self_a.clone()
        acceleration.reshape(-1).index_copy_(0, rows, torch.minimum(take(self_a, rows),
                                                                    in_target[:, 0]))
    acceleration = torch.clamp(acceleration, -params.acc_max, params.acc_max)
    steers = acting
    others = state.acceleration
    if bool(braking_now.any()):
        steers = acting | braking_now
        decel = torch.minimum(state.braking_decel, torch.clamp(state.speed, min=0.0) / params.dt)
        others = blend(as_weight(braking_now, x), -decel, others)
    return state.replace(
        target_lane=target,
        timer=timer,
        steering=blend(as_weight(steers, x), steering, state.steering),
        acceleration=blend(as_weight(acting, x), acceleration, others),
        order_hint=index.order,
    )
