"""The bev's vehicle boxes (ego and others, as rectangles) and the occlusion test.

Boxes are evaluated on the few rows their box spans (only the ones that touch the raster;
occlusion only for those, against nearby vehicles).
"""

from __future__ import annotations

import torch
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.sensors.constants import (
    BEV_EGO,
    BEV_VEHICLES,
    EDGE_TOL_M,
    FAR,
    INV_MAX,
    OCCLUSION_EPS,
    SAMPLE_SIGNS,
    TINY,
    WINDOW_TOL_PX,
)
from reflexdrive.envs.sensors.frames import Boxes, into_box
from reflexdrive.envs.sensors.row_masks import run_masks
from reflexdrive.envs.sensors.tensor_ops import (
    arange_cached,
    kept_slots,
    slab_parts,
    world_chunks,
)
from reflexdrive.envs.types import EGO


def box_window(boxes: Boxes, grow: float, config: SensorConfig):
    """Pixel rows a box's bounding box covers, clipped to the raster.

    Args:
        boxes: `(B, P)` boxes; grow: added to their half extents [m].

    Returns:
        `(first_row, last_row, touches)`: `(B, P)` float32 rows (`first > last`: none),
        and whether the box can light any pixel at all (its bounding box meets the grid
        of pixel centres).
    """
    _, height, width = config.bev_shape
    inv_res = 1.0 / config.bev_m_per_px
    x0 = config.range_m - 0.5 * config.bev_m_per_px
    col0 = config.bev_half_width_m * inv_res - 0.5
    ax, ay = boxes.ax.abs(), boxes.ay.abs()
    hl, hw = boxes.hl + grow, boxes.hw + grow
    ext_x = (ax * hl).add_(ay * hw).mul_(inv_res)            # half extents [px]
    ext_y = (ay * hl).add_(ax * hw).mul_(inv_res)
    row = (x0 - boxes.cx) * inv_res
    col = boxes.cy * inv_res + col0
    first_row = (row - ext_x).sub_(WINDOW_TOL_PX).ceil_().clamp_min_(0.0)
    last_row = (row + ext_x).add_(WINDOW_TOL_PX).floor_().clamp_max_(height - 1.0)
    first_col = (col - ext_y).sub_(WINDOW_TOL_PX).ceil_().clamp_min_(0.0)
    last_col = (col + ext_y).add_(WINDOW_TOL_PX).floor_().clamp_max_(width - 1.0)
    return first_row, last_row, (first_row <= last_row) & (first_col <= last_col)


def draw_boxes(rows: torch.Tensor, boxes: Boxes, window_rows: tuple, drawn: torch.Tensor,
                config: SensorConfig) -> None:
    """OR the rectangles of the drawn boxes into the row masks (ego: channel 3, others 2).

    A row at `x` meets the box where `|u| <= half_length` and `|v| <= half_width`, `u`, `v`
    the box-frame coordinates; both are linear in the column, so each gives a run whose
    bounds move linearly with the row (computed from row 0, so a box's runs do not depend
    on the other worlds of the batch). Each box is evaluated on the `R` rows of a window
    (`R` the tallest bounding box in the batch), slid inside the raster.

    Args:
        rows: `(B, C, H, words)` int64 row masks, updated in place.
        boxes: `(B, N)` boxes, centred where they are drawn.
        window_rows: `(first_row, last_row)` of their grown boxes (`box_window`).
        drawn: `(B, N)` bool.
    """
    batch = drawn.shape[0]
    channels, height, width = config.bev_shape
    res = config.bev_m_per_px
    inv_res = 1.0 / res
    x0 = config.range_m - 0.5 * res
    col0 = config.bev_half_width_m * inv_res - 0.5
    picked = kept_slots(drawn)
    if picked is None:
        return
    order, keep = picked
    box = boxes.take(order)
    first, last = (r.gather(1, order) for r in window_rows)
    window = int(((last - first + 1.0) * keep).amax())         # host sync
    if window <= 0:
        return
    r0 = first.clamp_max(height - window)
    # Column bounds at row r: u-run c_u + r du -+ h_u, v-run c_v + r dv -+ h_v [px].
    dx0 = x0 - box.cx                                         # x offset of row 0 [m]
    inv_ax = box.ax.reciprocal().clamp_(-INV_MAX, INV_MAX)
    inv_ay = box.ay.reciprocal().clamp_(-INV_MAX, INV_MAX)
    c_u = (box.cy - dx0 * box.ax * inv_ay).mul_(inv_res).add_(col0)
    c_v = (box.cy + dx0 * box.ay * inv_ax).mul_(inv_res).add_(col0)
    h_u = (box.hl + EDGE_TOL_M) * inv_ay.abs() * inv_res
    h_v = (box.hw + EDGE_TOL_M) * inv_ax.abs() * inv_res
    coef = [(c_u - h_u).masked_fill_(~keep, FAR), c_v - h_v, c_u + h_u + 1.0,
            c_v + h_v + 1.0, box.ax * inv_ay, (box.ay * inv_ax).neg_(), r0]   # padding: no run
    steps = arange_cached(window, rows.device)
    items = keep.shape[1]
    masks = torch.empty(batch, items, window, rows.shape[-1], dtype=torch.int64,
                        device=rows.device)
    for b0, b1 in world_chunks(batch, items * window):
        lo_u, lo_v, end_u, end_v, du, dv, start = (c[b0:b1, :, None] for c in coef)
        row = start + steps                                   # absolute rows
        du_r, dv_r = du * row, dv * row
        lo = torch.maximum(du_r + lo_u, dv_r + lo_v)
        end = torch.minimum(du_r.add_(end_u), dv_r.add_(end_v))
        masks[b0:b1] = run_masks(lo, end, width)
    # OR box by box: boxes of one world may share rows (and pixels).
    channel = torch.where(order == EGO, BEV_EGO, BEV_VEHICLES)
    world = arange_cached(batch, rows.device, torch.int64)[:, None] * channels
    base = (world + channel) * height + r0.long()             # (B, P) flat row of r0
    flat = rows.view(-1, rows.shape[-1])
    offsets = arange_cached(window, rows.device, torch.int64)
    for p in range(items):
        index = base[:, p, None] + offsets
        index = index.view(-1)
        flat.index_copy_(0, index, flat.index_select(0, index).bitwise_or_(
            masks[:, p].reshape(-1, flat.shape[1])))


def visible_vehicles(boxes: Boxes, occluder: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """Which candidate vehicles the ego sees past the occluders (vehicle rectangles).

    A candidate is visible when the ray from the ego centre to at least one of its five
    sample points (centre, four corners) enters no other occluder's rectangle before
    `1 - OCCLUSION_EPS` of the way. Only candidates, and the occluders near enough to
    block a ray to one, are evaluated.

    Args:
        boxes: `(B, N)` true poses in the ego frame.
        occluder: `(B, N)` bool: the boxes that block rays.
        candidate: `(B, N)` bool: the vehicles whose visibility matters.

    Returns:
        `(B, N)` bool, False for the hidden candidates (True elsewhere).
    """
    batch = candidate.shape[0]
    visible = torch.ones_like(candidate)
    distance, radius = torch.hypot(boxes.cx, boxes.cy), torch.hypot(boxes.hl, boxes.hw)
    farthest = torch.where(candidate, distance + radius, 0.0).amax(1, keepdim=True)
    occluder = occluder & (distance - radius <= farthest + 1.0)
    targets, blockers = kept_slots(candidate), kept_slots(occluder)
    if targets is None or blockers is None:
        return visible
    (t_order, t_keep), (b_order, b_keep) = targets, blockers
    target, blocker = boxes.take(t_order), boxes.take(b_order)
    ox, oy = blocker.origins()
    hl = torch.where(b_keep, blocker.hl, -1.0)                # padding blocks nothing
    hw = torch.where(b_keep, blocker.hw, -1.0)
    own = (t_order[:, :, None] == b_order[:, None, :]) * FAR  # (B, J, M): itself
    seen = torch.empty_like(t_keep)
    per_world = t_order.shape[1] * len(SAMPLE_SIGNS) * b_order.shape[1]
    for b0, b1 in world_chunks(batch, per_world):
        part = slice(b0, b1)
        seen[part] = _visible_chunk(Boxes(*(f[part] for f in target)),
                                    (ox[part], oy[part], blocker.ax[part], blocker.ay[part],
                                     hl[part], hw[part]), own[part])
    visible.scatter_(1, t_order, seen | ~t_keep)
    return visible


def _visible_chunk(target: Boxes, blocker: tuple, own: torch.Tensor) -> torch.Tensor:
    """`visible_vehicles` for one block of worlds.

    Args:
        target: `(b, J)` candidate boxes.
        blocker: `(ox, oy, ax, ay, hl, hw)`, each `(b, M)`: the ego centre in each
            occluder's frame [m], its unit axis and half extents [m].
        own: `(b, J, M)` float32, `FAR` where the occluder is the candidate itself.

    Returns:
        `(b, J)` bool, whether some sample point's ray is blocked by no occluder.
    """
    signs = target.cx.new_tensor(SAMPLE_SIGNS)
    cx, cy, ax, ay, hl, hw = (f[..., None] for f in target)
    lx, ly = signs[:, 0] * hl, signs[:, 1] * hw                # (b, J, 5)
    px = cx + (lx * ax - ly * ay)                             # sample points [m]
    py = cy + (lx * ay + ly * ax)
    ox, oy, bx, by, bl, bw = (f[:, None, None, :] for f in blocker)   # (b, 1, 1, M)
    dx, dy = into_box(px[..., None], py[..., None], bx, by)  # (b, J, 5, M)
    t_in, t_out = slab_parts(ox, oy, dx, dy, bl, bw)
    t_enter = t_in.clamp_min_(0.0).add_(own[:, :, None, :])
    # Blocked: t_out >= t_enter and t_enter < 1 - eps, i.e. min(both margins) >= 0.
    margin = torch.minimum(t_out.sub_(t_enter),
                           t_enter.neg_().add_(1.0 - OCCLUSION_EPS).sub_(TINY))
    return (margin.amax(-1) < 0.0).any(-1)
