"""Collisions: highway-env's `RoadObject.handle_collisions` with the separating-axis test,
the ego's on the straight road (`ego_collisions`) and every pair's on road networks
(`pair_collisions`).

Bodies are rotated rectangles. `polygons_intersecting` is `utils.are_polygons_intersecting`
(SAT on the 8 edge normals of two rectangles, with a swept test over one substep of
constant velocity), vectorised over any batch shape.
"""

from __future__ import annotations

import torch
from reflexdrive.envs.backends.batched.state import BatchedState, Params, take


def rectangle_corners(position: torch.Tensor, heading: torch.Tensor, length: torch.Tensor,
                      width: torch.Tensor) -> torch.Tensor:
    """`RoadObject.polygon` without the closing point: the 4 corners of a body.

    Corners in body frame `(-l/2, -w/2), (-l/2, w/2), (l/2, w/2), (l/2, -w/2)`, rotated by
    `heading` and moved to `position`.

    Args:
        position `(..., 2)` [m]; heading [rad], length [m], width [m]: `(...)`.

    Returns:
        `(..., 4, 2)` world corners [m].
    """
    half_l, half_w = length / 2, width / 2
    local_x = torch.stack([-half_l, -half_l, half_l, half_l], dim=-1)
    local_y = torch.stack([-half_w, half_w, half_w, -half_w], dim=-1)
    c, s = torch.cos(heading)[..., None], torch.sin(heading)[..., None]
    x = c * local_x + (-s) * local_y + position[..., 0, None]
    y = s * local_x + c * local_y + position[..., 1, None]
    return torch.stack([x, y], dim=-1)


def _interval_distance(min_a, max_a, min_b, max_b):
    """Gap between intervals `[min_a, max_a]` and `[min_b, max_b]`; negative if they overlap."""
    return torch.where(min_a < min_b, min_b - max_a, min_a - max_b)


def polygons_intersecting(a: torch.Tensor, b: torch.Tensor, displacement_a: torch.Tensor,
                          displacement_b: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`utils.are_polygons_intersecting` for two convex quadrilaterals (separating axes).

    On each unit edge normal `n` of `a` then `b` (8 axes) both bodies are projected to
    intervals. They intersect unless some axis separates them. They *will* intersect unless
    some axis still separates them once `a`'s interval is swept by `n . (d_a - d_b)`. The
    translation is the swept overlap of smallest magnitude, `|dist| n`, pointed from `b`
    towards `a` (the first axis wins a tie).

    Args:
        a, b: `(..., 4, 2)` corners [m]; displacement_a, displacement_b: `(..., 2)` motion
        over the substep `v dt` [m].

    Returns:
        intersecting `(...)` bool, will_intersect `(...)` bool, translation `(..., 2)` [m]
        (meaningful where `will_intersect`).
    """
    a, b = torch.broadcast_tensors(a, b)
    p1 = torch.cat([a, b], dim=-2)                                            # (..., 8, 2)
    p2 = torch.cat([a.roll(-1, dims=-2), b.roll(-1, dims=-2)], dim=-2)
    normal = torch.stack([-p2[..., 1] + p1[..., 1], p2[..., 0] - p1[..., 0]], dim=-1)
    norm = torch.sqrt(normal[..., 0] * normal[..., 0] + normal[..., 1] * normal[..., 1])
    normal = normal / norm[..., None]

    def project(points):                                                     # (..., 8, 4)
        return (points[..., None, :, 0] * normal[..., :, None, 0]
                + points[..., None, :, 1] * normal[..., :, None, 1])

    proj_a, proj_b = project(a), project(b)
    min_a, max_a = proj_a.amin(dim=-1), proj_a.amax(dim=-1)
    min_b, max_b = proj_b.amin(dim=-1), proj_b.amax(dim=-1)
    intersecting = ~(_interval_distance(min_a, max_a, min_b, max_b) > 0).any(dim=-1)
    relative = (displacement_a - displacement_b)[..., None, :]
    sweep = normal[..., 0] * relative[..., 0] + normal[..., 1] * relative[..., 1]
    min_a = torch.where(sweep < 0, min_a + sweep, min_a)
    max_a = torch.where(sweep < 0, max_a, max_a + sweep)
    distance = _interval_distance(min_a, max_a, min_b, max_b)
    will_intersect = ~(distance > 0).any(dim=-1)
    best = distance.abs().argmin(dim=-1, keepdim=True)
    min_distance = torch.gather(distance.abs(), -1, best)[..., 0]
    axis = torch.gather(normal, -2, best[..., None].expand(*best.shape, 2))[..., 0, :]
    centre = a.mean(dim=-2) - b.mean(dim=-2)
    toward_a = (centre[..., 0] * axis[..., 0] + centre[..., 1] * axis[..., 1]) > 0
    axis = torch.where(toward_a[..., None], axis, -axis)
    return intersecting, will_intersect, min_distance[..., None] * axis


def ego_collisions(params: Params, state: BatchedState) -> BatchedState:
    """`ego.handle_collisions(other, dt)` for every other vehicle, in slot order.

    For each valid `v != ego` within the pre-check radius
    `|p_v - p_ego| <= (diag_ego + diag_v) / 2 + v_ego dt`, the SAT test with displacements
    `v e dt`:

    - will intersect: ego impact `= t / 2` (the last such `v` wins), `v`'s impact `= -t / 2`;
      impacts push the body at its next step and mark it crashed;
    - intersects now: ego and `v` crashed.

    Returns:
        the state with `impact`, `impact_pending` and `crashed` updated.
    """
    dt = params.dt
    slots = state.num_slots
    position, heading, speed = state.position, state.heading, state.speed
    # per coordinate (a broadcast over a size-2 last dim is slow on CPU)
    dx = position[..., 0] - position[:, :1, 0]
    dy = position[..., 1] - position[:, :1, 1]
    distance = dx.mul_(dx).add_(dy.mul_(dy)).sqrt_()
    radius = torch.add(state.diagonal[:, :1], state.diagonal).div_(2).add_(speed[:, :1] * dt)
    near = state.valid & ~(distance > radius)
    near[:, 0] = False
    other = torch.nonzero(near.reshape(-1)).flatten()    # b N + j, sorted; usually few
    if other.numel() == 0:
        return state
    pairs = other.numel()
    ego = torch.div(other, slots, rounding_mode="floor") * slots      # b N + 0
    rows = torch.cat([ego, other])                       # the ego, then the other, per pair
    angle = take(heading, rows)
    corners = rectangle_corners(position.reshape(-1, 2).index_select(0, rows), angle,
                                take(state.length, rows), take(state.width, rows))
    direction = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)
    displacement = take(speed, rows)[:, None] * direction * dt           # v e dt [m]
    hit, will, push = polygons_intersecting(corners[:pairs], corners[pairs:],
                                            displacement[:pairs], displacement[pairs:])
    impact = state.impact.clone()
    impact_pending = state.impact_pending.clone()
    crashed = state.crashed.clone()
    # `v` gets -t/2; the ego t/2 of the last (highest slot) `v` of its world that will hit.
    impact.reshape(-1, 2).index_copy_(0, other[will], -push[will] / 2)
    hitting = ego[will]
    last = torch.ones_like(hitting, dtype=torch.bool)
    last[:-1] = hitting[1:] != hitting[:-1]
    impact.reshape(-1, 2).index_copy_(0, hitting[last], push[will][last] / 2)
    impact_pending.reshape(-1).index_fill_(0, torch.cat([other[will], hitting]), True)
    crashed.reshape(-1).index_fill_(0, torch.cat([other[hit], ego[hit]]), True)
    return state.replace(impact=impact, impact_pending=impact_pending, crashed=crashed)


def pair_collisions(params: Params, state, obstacle: torch.Tensor):
    """highway-env's `Road.step` collision loop: `vehicle.handle_collisions(other, dt)` for
    every pair of valid slots `i < j` in slot order, the road networks' phase 3 (the numba
    kernel's `network_collisions`), vectorised over worlds and pairs.

    `obstacle` `(B, N)` bool marks `road.objects` (the last slots): never the first of a
    pair, and an obstacle `j` takes no impact while `i` takes the whole `t`. Elsewhere `i`
    takes `t / 2` and `j` `-t / 2`. Writes happen in pair order, so a body's impact is the
    one of its last pair (lexicographic `(i, j)`) that will intersect. Both bodies of a
    pair that intersects now are crashed. The pre-check is `|p_j - p_i| <= (diag_i +
    diag_j) / 2 + v_i dt`.

    Args:
        state: a `NetworkState` or `BatchedState` (position, heading, speed, length,
            width, diagonal, valid, impact, impact_pending, crashed).

    Returns:
        the state with `impact`, `impact_pending` and `crashed` updated.
    """
    batch, slots = state.valid.shape
    first, second = torch.triu_indices(slots, slots, 1, device=state.valid.device)
    position, speed = state.position, state.speed
    dx = position[:, second, 0] - position[:, first, 0]
    dy = position[:, second, 1] - position[:, first, 1]
    distance = torch.sqrt(dx * dx + dy * dy)
    radius = (state.diagonal[:, first] + state.diagonal[:, second]) / 2 \
        + speed[:, first] * params.dt
    near = (state.valid[:, first] & state.valid[:, second] & ~obstacle[:, first]
            & ~(distance > radius))                                   # (B, P)
    world, pair = torch.nonzero(near, as_tuple=True)                  # sorted: world, pair
    if world.numel() == 0:
        return state
    rows_i = world * slots + first[pair]
    rows_j = world * slots + second[pair]
    rows = torch.cat([rows_i, rows_j])
    angle = take(state.heading, rows)
    corners = rectangle_corners(position.reshape(-1, 2).index_select(0, rows), angle,
                                take(state.length, rows), take(state.width, rows))
    direction = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)
    displacement = take(speed, rows)[:, None] * direction * params.dt
    count = rows_i.numel()
    hit, will, push = polygons_intersecting(corners[:count], corners[count:],
                                            displacement[:count], displacement[count:])
    j_obstacle = obstacle.reshape(-1)[rows_j]
    # every impact write in loop order: (target row, order, value); the last per row wins
    order = world * first.numel() + pair
    targets = torch.cat([rows_i[will], rows_j[will & ~j_obstacle]])
    orders = torch.cat([order[will], order[will & ~j_obstacle]])
    values = torch.cat([torch.where(j_obstacle[will, None], push[will], push[will] / 2),
                        -push[will & ~j_obstacle] / 2])
    impact = state.impact.clone()
    impact_pending = state.impact_pending.clone()
    crashed = state.crashed.clone()
    if targets.numel():
        key = targets * (batch * first.numel() + 1) + orders
        sort = torch.argsort(key)
        targets, values = targets[sort], values[sort]
        last = torch.ones_like(targets, dtype=torch.bool)
        last[:-1] = targets[1:] != targets[:-1]
        impact.reshape(-1, 2).index_copy_(0, targets[last], values[last])
        impact_pending.reshape(-1).index_fill_(0, targets, True)
    crashed.reshape(-1).index_fill_(0, torch.cat([rows_i[hit], rows_j[hit]]), True)
    return state.replace(impact=impact, impact_pending=impact_pending, crashed=crashed)
