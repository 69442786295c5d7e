"""The ego's collisions in the kernel: rectangle corners and separating axes, as highway-env's
`utils.are_polygons_intersecting` and `Vehicle.handle_collisions`."""

from __future__ import annotations

import math

from reflexdrive.envs.backends.batched.numba.jit import jit
from reflexdrive.envs.backends.batched.numba.layout import (
    CRASHED,
    DIAGONAL,
    HEADING,
    IMPACT_PENDING,
    IMPACT_X,
    IMPACT_Y,
    LENGTH,
    SPEED,
    VALID,
    WIDTH,
    X,
    Y,
)
from reflexdrive.envs.backends.batched.numba.scalars import cos, sin


@jit()
def rectangle_corners(x, y, heading, length, width, out):
    """`RoadObject.polygon` without the closing point: `out (4, 2)` [m], the body-frame
    corners `(-l/2, -w/2), (-l/2, w/2), (l/2, w/2), (l/2, -w/2)` rotated by `heading` and
    moved to `(x, y)`."""
    c, s = cos(heading), sin(heading)
    half_l, half_w = length / 2, width / 2
    for i in range(4):
        local_x = half_l if i >= 2 else -half_l
        local_y = half_w if i == 1 or i == 2 else -half_w
        out[i, 0] = c * local_x + (-s) * local_y + x
        out[i, 1] = s * local_x + c * local_y + y


@jit()
def interval_distance(min_a, max_a, min_b, max_b):
    """Gap between `[min_a, max_a]` and `[min_b, max_b]`; negative if they overlap."""
    return min_b - max_a if min_a < min_b else min_a - max_b


@jit()
def polygons_intersecting(a, b, displacement_ax, displacement_ay, displacement_bx,
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
        if interval_distance(min_a, max_a, min_b, max_b) > 0:
            intersecting = False
        sweep = nx * relative_x + ny * relative_y
        if sweep < 0:
            min_a = min_a + sweep
        else:
            max_a = max_a + sweep
        distance = interval_distance(min_a, max_a, min_b, max_b)
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


@jit()
def ego_collisions(p, F, I, corners):
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
            rectangle_corners(ego_x, ego_y, F[HEADING, 0], F[LENGTH, 0], F[WIDTH, 0], corners[0])
            have_ego_corners = True
        rectangle_corners(F[X, v], F[Y, v], F[HEADING, v], F[LENGTH, v], F[WIDTH, v], corners[1])
        intersecting, will_intersect, tx, ty = polygons_intersecting(
            corners[0], corners[1],
            ego_speed * cos(F[HEADING, 0]) * p.dt, ego_speed * sin(F[HEADING, 0]) * p.dt,
            F[SPEED, v] * cos(F[HEADING, v]) * p.dt, F[SPEED, v] * sin(F[HEADING, v]) * p.dt)
        if will_intersect:
            F[IMPACT_X, v], F[IMPACT_Y, v] = -tx / 2, -ty / 2
            F[IMPACT_X, 0], F[IMPACT_Y, 0] = tx / 2, ty / 2
            I[IMPACT_PENDING, v] = True
            I[IMPACT_PENDING, 0] = True
        if intersecting:
            I[CRASHED, v] = True
            I[CRASHED, 0] = True

