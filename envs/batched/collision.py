"""Ego collisions: highway-env's `RoadObject.handle_collisions` with the separating-axis test.

Bodies are rotated rectangles. `polygons_intersecting` is `utils.are_polygons_intersecting`
(SAT on the 8 edge normals of two rectangles, with a swept test over one substep of
constant velocity), vectorised over any batch shape.
"""

from __future__ import annotations

import torch

from envs.batched.state import BatchedState, Params
from envs.batched.traffic import gather_slots


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
    ids = torch.arange(slots, device=state.device)
    position, heading, speed = state.position, state.heading, state.speed
    direction = torch.stack([torch.cos(heading), torch.sin(heading)], dim=-1)
    displacement = speed[..., None] * direction * dt                        # (B, N, 2)
    offset = position - position[:, :1]
    distance = torch.sqrt(offset[..., 0] * offset[..., 0] + offset[..., 1] * offset[..., 1])
    radius = (state.diagonal[:, :1] + state.diagonal) / 2 + speed[:, :1] * dt
    near = state.valid & (ids != 0) & ~(distance > radius)
    pairs = torch.nonzero(near)                           # (P, 2): world, slot; usually few
    if pairs.shape[0] == 0:
        return state
    world, slot = pairs[:, 0], pairs[:, 1]
    ego = rectangle_corners(position[world, 0], heading[world, 0], state.length[world, 0],
                            state.width[world, 0])
    other = rectangle_corners(position[world, slot], heading[world, slot],
                              state.length[world, slot], state.width[world, slot])
    hit, will, push = polygons_intersecting(ego, other, displacement[world, 0],
                                            displacement[world, slot])
    intersecting = torch.zeros_like(near)
    intersecting[world, slot] = hit
    will_intersect = torch.zeros_like(near)
    will_intersect[world, slot] = will
    translation = torch.zeros_like(position)
    translation[world, slot] = push

    last = torch.where(will_intersect, ids, -1).amax(dim=-1)                # (B,)
    hit_any = last >= 0
    ego_impact = gather_slots(translation, last[:, None])[:, 0] / 2          # (B, 2)
    impact = torch.where(will_intersect[..., None], -translation / 2, state.impact)
    impact[:, 0] = torch.where(hit_any[:, None], ego_impact, state.impact[:, 0])
    impact_pending = state.impact_pending | will_intersect
    impact_pending[:, 0] = state.impact_pending[:, 0] | hit_any
    crashed = state.crashed | intersecting
    crashed[:, 0] = state.crashed[:, 0] | intersecting.any(dim=-1)
    return state.replace(impact=impact, impact_pending=impact_pending, crashed=crashed)
