"""The bev's fast path for straight roads (all lane and marking segments parallel; stripes of
a painted line evenly spaced, as highway-env's straight roads are).

Each lane and each painted line is a "line" across the raster (`road_plan`); a row meets a
line's band once, next to one stripe (its nearest), so a run per (line, row) is exact.
Lanes side by side are drawn as one band away from the road's ends.
"""

from __future__ import annotations

import math

import torch
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.sensors import constants
from reflexdrive.envs.sensors.constants import (
    EDGE_TOL_M,
    FAR,
    LINE_FIELDS,
    SQRT_FLOOR,
    WORD,
)
from reflexdrive.envs.sensors.road_plan import RoadPlan
from reflexdrive.envs.sensors.row_masks import run_masks
from reflexdrive.envs.sensors.tensor_ops import arange_cached, world_chunks


def _line_runs(c: dict, rows: torch.Tensor):
    """Exact runs of lines of capsules (a row meets a line next to one stripe only).

    A point of the segment at `w` along the road from where the row crosses the line
    centre (`w` in `[A, B]`, the stripe's ends relative to that crossing) lights the row
    over `eta in w sin -+ sqrt(rho^2 - w^2 cos^2)` (`|w cos| <= rho`). The run's start is
    the minimum of the convex `w sin - sqrt(...)` over `w in [max(A, -q_m), min(B, q_m)]`,
    reached at the clamp of its free minimiser `w = -q_m sin`; its end likewise at the
    clamp of `+q_m sin`. An empty `w` range gives no run.

    Args:
        c: the `EXACT_FIELDS` fields, each a `(Q, 1)` float32 tensor.
        rows: `(H,)` float32 row numbers.

    Returns:
        `(lo, end)`, each `(Q, H)` in column units, as `run_masks` takes them.
    """
    s_c = torch.mul(c["s1"], rows).add_(c["s0"])                       # [m]
    m = torch.mul(c["u1"], rows).add_(c["u0"]).round_()
    torch.maximum(m, c["m_lo"], out=m)
    torch.minimum(m, c["m_hi"], out=m)                                 # nearest stripe
    w1 = m.mul_(c["period"]).add_(c["a_ref"]).sub_(s_c)               # A [m]
    w2 = torch.minimum(w1 + c["length"], c["b_last"] - s_c)           # B [m]
    torch.maximum(w1, c["q_m"].neg(), out=w1)
    torch.minimum(w2, c["q_m"], out=w2)
    empty = (w1 - w2).mul_(FAR).clamp_(0.0, 1.0).mul_(FAR)         # FAR when w1 > w2
    y_c = torch.mul(c["y1"], rows).add_(c["y0"])
    runs = []
    for sign, free in ((-1.0, c["omega_lo"]), (1.0, c["omega_hi"])):
        w = torch.minimum(torch.maximum(w1, free), w2)
        root = (w * c["kappa"]).square_().neg_().add_(c["rho2"]).clamp_min_(SQRT_FLOOR).sqrt_()
        runs.append(w.mul_(c["sigma"]).add_(root, alpha=sign).add_(empty, alpha=-sign)
                    .add_(y_c))
    return runs[0], runs[1].add_(1.0)


def _line_params(lines: torch.Tensor, kappa, sigma, s_e, t_e, fast, config: SensorConfig):
    """Per-(world, line) parameters of the fast path, float64.

    Args:
        lines: `(B, L, 8)` the worlds' lines in the `LINE_COLUMNS` layout.
        kappa, sigma: `(B, 1)` cos and sin of the road's heading in the ego frame.
        s_e, t_e: `(B, 1)` the ego in road coordinates [m].
        fast: `(B, 1)` bool, the world takes the fast path.

    Returns:
        `(table (B, L, F) float32 in the `LINE_FIELDS` layout, near (B, L) bool)`: `near`
        marks the single segments (of fast worlds) with an end near the raster, which need
        exact runs.
    """
    res = config.bev_m_per_px
    inv_res, col0 = 1.0 / res, config.bev_half_width_m / res - 0.5
    x0 = config.range_m - 0.5 * res
    t, a0, period, length, count, end, radius, valid = lines.unbind(-1)
    rho = torch.where(torch.isnan(radius), 0.5 * res, radius) + EDGE_TOL_M
    dt = t - t_e
    k_ref = torch.minimum(torch.floor((s_e - a0) / period).clamp_min_(0.0), count - 1.0)
    a_ref, b_last = a0 + k_ref * period - s_e, end - s_e
    y0 = (dt + x0 * sigma) / kappa * inv_res + col0           # line centre, row 0 [px]
    s0, s1, q_m = (x0 + dt * sigma) / kappa, -res / kappa, rho / kappa
    drawn = (valid > 0) & fast
    corner = math.hypot(max(config.range_m, config.bev_behind_m), config.bev_half_width_m)
    reach = corner + res + rho
    near = drawn & (count <= 1) & ((a_ref > -reach) | (b_last < reach))
    q = q_m * inv_res
    fields = dict(
        y0=y0, y1=-sigma / kappa, s0=s0, s1=s1, u0=(s0 - a_ref - 0.5 * length) / period,
        u1=s1 / period, m_lo=-k_ref, m_hi=count - 1.0 - k_ref, a_ref=a_ref, period=period,
        length=length, b_last=b_last, q_m=torch.where(drawn, q_m, -1.0),   # < 0: no run
        omega_lo=-q_m * sigma, omega_hi=q_m * sigma, sigma=sigma * inv_res,
        kappa=kappa * inv_res, rho2=(rho * inv_res).square(),
        band_lo=torch.where(drawn & ~near, y0 - q, FAR), band_end=y0 + q + 1.0)
    table = torch.empty(y0.shape + (len(LINE_FIELDS),), device=y0.device)
    for i, k in enumerate(LINE_FIELDS):                       # float32, broadcast
        table[..., i] = fields[k]
    return table, near


def _fields(table: torch.Tensor) -> dict:
    """Named `(..., 1)` views of the columns of a `_line_params` table `(..., F)`."""
    return dict(zip(LINE_FIELDS, table.unsqueeze(-1).unbind(-2)))


def _columns(table: torch.Tensor, cols: list) -> torch.Tensor:
    """`table[:, cols]` by `index_select` (advanced indexing wakes OpenMP threads even for
    tiny tensors, which stalls on a busy host)."""
    if not cols:
        return table[:, :0]
    if cols == list(range(cols[0], cols[0] + len(cols))):      # a slice: a view
        return table[:, cols[0]:cols[0] + len(cols)]
    return table.index_select(1, torch.tensor(cols, device=table.device))


def road_line_rows(road: torch.Tensor, marks: torch.Tensor, plan: RoadPlan,
                    ego_position: torch.Tensor, ego_heading: torch.Tensor,
                    config: SensorConfig) -> torch.Tensor:
    """Row masks of the road (lanes) and markings of straight roads: the fast path.

    Lines whose ends are far from the raster (lanes and continuous lines, mostly) are a
    band: one run of constant width per row, moving linearly with the row. Striped lines
    get the exact runs of `_line_runs`, and so do the (rare) other lines with an end near
    the raster.

    Args:
        road, marks: `(B, H, words)` int64 row masks of the road and marking channels
            (zeros), OR-ed into in place.
        plan: the road's `RoadPlan`.
        ego_position: `(B, 2)` world frame [m]; ego_heading: `(B,)` [rad].

    Returns:
        `slow (B,)` bool: worlds the fast path does not draw (their masks stay 0), to be
        drawn by the generic path.
    """
    batch = ego_position.shape[0]
    _, height, width = config.bev_shape
    res = config.bev_m_per_px
    words = -(-width // WORD)
    device = ego_position.device
    variant = plan.variant if plan.batch == batch else plan.variant.expand(batch)
    d, origin = plan.direction.index_select(0, variant), plan.origin.index_select(0, variant)
    pos, heading = ego_position.double(), ego_heading.double()
    cos_h, sin_h = torch.cos(heading), torch.sin(heading)
    kappa = d[:, 0] * cos_h + d[:, 1] * sin_h                 # cos, sin of the road's
    sigma = d[:, 1] * cos_h - d[:, 0] * sin_h                 # heading in the ego frame
    rel = pos - origin
    s_e = rel[:, 0] * d[:, 0] + rel[:, 1] * d[:, 1]           # ego in road coordinates [m]
    t_e = rel[:, 1] * d[:, 0] - rel[:, 0] * d[:, 1]
    rho_mark = 0.5 * res + EDGE_TOL_M
    # One stripe per (line, row): the run's s-extent 2 rho |tan| stays under half a gap.
    tan_max = 0.5 * (plan.min_gap.index_select(0, variant) - 2.0 * rho_mark) / (2.0 * rho_mark)
    fast = plan.straight.index_select(0, variant) & (kappa >= constants.MIN_COS)
    fast &= sigma.abs() <= tan_max * kappa
    lines = plan.lines.shape[1]
    if lines == 0 or not bool(fast.any()):
        return ~fast

    per_world = (kappa.clamp_min(constants.MIN_COS)[:, None], sigma[:, None], s_e[:, None],
                 t_e[:, None], fast[:, None])                 # clamped: finite everywhere
    table, near = _line_params(plan.lines.index_select(0, variant), *per_world,
                               config)                        # (B, L, F)
    rows = arange_cached(height, device)
    union = lines - 1                                         # the lanes' union, if any
    merged = plan.merged and plan.lanes > 0
    cols = range(plan.lanes, union) if merged else range(union)
    band_cols = ([union] if merged else []) + [j for j in cols if not plan.striped[j]]
    exact_cols = [j for j in range(union) if plan.striped[j]]

    def target(j):
        return road if j < plan.lanes or j == union else marks

    band = _fields(_columns(table, band_cols))
    exact = _columns(table, exact_cols).reshape(-1, table.shape[-1])   # (B * Le, F)
    for b0, b1 in world_chunks(batch, len(band_cols + exact_cols) * height):
        parts = []
        if band_cols:
            lo, end, slope = (band[k][b0:b1] for k in ("band_lo", "band_end", "y1"))
            parts.append((band_cols, run_masks(torch.mul(slope, rows).add_(lo),
                                                torch.mul(slope, rows).add_(end), width)))
        if exact_cols:
            runs = _line_runs(_fields(exact[b0 * len(exact_cols):b1 * len(exact_cols)]), rows)
            parts.append((exact_cols, run_masks(*runs, width).view(
                b1 - b0, len(exact_cols), height, words)))
        for columns, masks in parts:
            for i, j in enumerate(columns):                   # OR the lines per channel
                target(j)[b0:b1].bitwise_or_(masks[:, i])
    # Rare: exact runs for lines with an end near the raster (all the lanes, when their
    # union's ends are near).
    if band_cols and bool(near[:, band_cols].any()):
        for j in band_cols:
            worlds = near[:, j].nonzero().squeeze(1)
            for k in (range(plan.lanes) if j == union else (j,)):
                if worlds.numel():
                    runs = _line_runs(_fields(table[worlds, k]), rows)
                    target(k)[worlds] |= run_masks(*runs, width)
    return ~fast
