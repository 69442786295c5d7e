"""The numba kernel of the bev raster (`sensors.bev.render_bev_torch` but its generic road
path, which is `kernels.bev_generic`): straight roads' fast path, vehicle boxes, occlusion.
Names in the comments are the torch functions each block mirrors (`sensors.row_masks`,
`sensors.bev_roads`, `sensors.bev_boxes`)."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from reflexdrive.envs.sensors.constants import BEV_EGO, BEV_VEHICLES, LINE_FIELDS
from reflexdrive.envs.sensors.kernels.common import (
    BLOCK,
    F32,
    HELPER,
    JIT,
    SIGN_X,
    SIGN_Y,
    njit,
    slab,
)
from reflexdrive.envs.sensors.kernels.noise import normal_pair_at, uniform_at

LINE_NONE, LINE_BAND, LINE_EXACT = 0, 1, 2
"""How a column of `RoadPlan.lines` is drawn (`line_mode`): not at all, as a band (exact
runs where its end is near the raster), or by exact runs."""

FIELDS = len(LINE_FIELDS)
"""Per-(world, line) fields, in `constants.LINE_FIELDS` order: y0, y1, s0, s1, u0, u1,
m_lo, m_hi, a_ref, period, length, b_last, q_m, omega_lo, omega_hi, sigma, kappa, rho2,
band_lo, band_end."""


class BevGeometry(NamedTuple):
    """Raster geometry and tolerances of `render_bev_kernel` (python floats: float64).

    Built by `sensors.numba_path.bev_geometry` from a `SensorConfig` and
    `sensors.constants`, so the kernels hold no copy of them. Float32 arithmetic rounds
    them as torch rounds a python scalar.
    """

    height: int           # H [px]
    width: int            # W [px]
    res: float            # [m/px]
    inv_res: float        # 1 / res [px/m]
    x0: float             # x of row 0's centres [m]
    col0_box: float       # column of y = 0, as `box_window` / `draw_boxes` compute it
    col0_line: float      # the same, as `_line_params` computes it
    edge_tol: float       # `EDGE_TOL_M` [m]
    window_tol: float     # `WINDOW_TOL_PX` [px]
    inv_max: float        # `INV_MAX`
    far: float            # `FAR`
    sqrt_floor: float     # `SQRT_FLOOR`
    min_cos: float        # `MIN_COS`
    half_px: float        # a marking's radius before growing, `0.5 * res` [m]
    two_rho_mark: float   # `2 * (0.5 res + EDGE_TOL_M)` [m]
    corner_res: float     # `_line_params`' `corner + res` [m]
    see_through: float    # `1 - OCCLUSION_EPS`
    tiny: float           # `TINY`


# ----------------------------------------------------------------------------- row masks


@njit(**HELPER)
def _or_runs(rows, channel, lo, end, r0, r1, width):
    """OR the runs of rows `r0 .. r1 - 1` into their masks `rows[channel, r]` (`rows (C, H,
    words)` int64: bit `c % 64` of word `c // 64` is column `c`;
    `sensors.row_masks.run_masks`).

    Row `r`'s run is columns `ceil(lo[r]) .. floor(end[r]) - 1` (`lo`, `end` `(H,)` float32
    column units), clamped to the raster; NaN gives no run. A raster one word wide takes a
    branch-free loop (the compiler vectorises it). Hot loops pass whole arrays and indices:
    a view per row would cost a reference count.
    """
    for r in range(r0, r1):
        ok = lo[r] == lo[r] and end[r] == end[r]      # NaN: no run
        first = int(min(max(np.ceil(lo[r] if ok else F32(0.0)), F32(0.0)), F32(width)))
        last = int(min(max(np.floor(end[r] if ok else F32(0.0)), F32(0.0)), F32(width)))
        if width <= 64:
            high = np.int64(-1) if last >= 64 else (np.int64(1) << min(last, 63)) - 1
            low = -(np.int64(1) << min(first, 63))
            rows[channel, r, 0] |= high & low if first < last else np.int64(0)
            continue
        while first < last:                            # word by word
            word = first >> 6
            stop = min(last - (word << 6), 64)
            high = np.int64(-1) if stop == 64 else (np.int64(1) << stop) - 1
            rows[channel, r, word] |= high & -(np.int64(1) << (first & 63))
            first = (word + 1) << 6


@njit(**HELPER)
def _expand(rows, out, out64, b, table, width):
    """Row masks `(C, H, words)` to bytes 0 / 255 of world `b`'s raster `out[b] (C, H, W)`
    (`sensors.row_masks.expand_rows`): one 8-byte table entry per mask byte when `W % 8 == 0`
    (`out64 (B, C, H, W / 8)`, the same memory), else pixel by pixel."""
    channels, height = rows.shape[0], rows.shape[1]
    if width % 8 == 0:
        for c in range(channels):
            for r in range(height):
                for k in range(width // 8):
                    out64[b, c, r, k] = table[(rows[c, r, k >> 3] >> (8 * (k & 7))) & 255]
    else:
        for c in range(channels):
            for r in range(height):
                for col in range(width):
                    on = (rows[c, r, col >> 6] >> (col & 63)) & 1
                    out[b, c, r, col] = 255 if on else 0


# ----------------------------------------------------------------------------- straight roads


@njit(**HELPER)
def _band_fields(line, kappa, sigma, s_e, t_e, g, fields):
    """`sensors.bev_roads._line_params` for one (world, line) of a fast world, the fields a
    band needs: `y1`, `band_lo`, `band_end` (float64, rounded to float32 into `fields
    (FIELDS,)`). Returns `near`: a single segment with an end near the raster (drawn by
    exact runs rather than as a band)."""
    t, a0, period, count, end, radius, valid = (line[0], line[1], line[2], line[4], line[5],
                                                line[6], line[7])
    rho = (g.half_px if radius != radius else radius) + g.edge_tol
    k_ref = min(max(np.floor((s_e - a0) / period), 0.0), count - 1.0)
    a_ref = a0 + k_ref * period - s_e
    b_last = end - s_e
    y0 = (t - t_e + g.x0 * sigma) / kappa * g.inv_res + g.col0_line
    q = rho / kappa * g.inv_res
    drawn = valid > 0.0
    reach = g.corner_res + rho
    near = drawn and count <= 1.0 and (a_ref > -reach or b_last < reach)
    fields[1] = F32(-sigma / kappa)
    fields[18] = F32(y0 - q if drawn and not near else g.far)
    fields[19] = F32(y0 + q + 1.0)
    return near


@njit(**HELPER)
def _exact_fields(line, kappa, sigma, s_e, t_e, g, fields):
    """`sensors.bev_roads._line_params` for one (world, line) of a fast world: every field (see
    `_band_fields`)."""
    _band_fields(line, kappa, sigma, s_e, t_e, g, fields)
    t, a0, period, length, count, radius, valid = (line[0], line[1], line[2], line[3],
                                                   line[4], line[6], line[7])
    rho = (g.half_px if radius != radius else radius) + g.edge_tol
    dt = t - t_e
    k_ref = min(max(np.floor((s_e - a0) / period), 0.0), count - 1.0)
    a_ref = a0 + k_ref * period - s_e
    s0 = (g.x0 + dt * sigma) / kappa
    s1 = (1.0 / kappa) * (-g.res)                # torch: `-res / kappa` is reciprocal * -res
    q_m = rho / kappa
    fields[0] = F32((dt + g.x0 * sigma) / kappa * g.inv_res + g.col0_line)
    fields[2] = F32(s0)
    fields[3] = F32(s1)
    fields[4] = F32((s0 - a_ref - 0.5 * length) / period)
    fields[5] = F32(s1 / period)
    fields[6] = F32(-k_ref)
    fields[7] = F32(count - 1.0 - k_ref)
    fields[8] = F32(a_ref)
    fields[9] = F32(period)
    fields[10] = F32(length)
    fields[11] = F32(line[5] - s_e)
    fields[12] = F32(q_m if valid > 0.0 else -1.0)
    fields[13] = F32(-q_m * sigma)
    fields[14] = F32(q_m * sigma)
    fields[15] = F32(sigma * g.inv_res)
    fields[16] = F32(kappa * g.inv_res)
    fields[17] = F32((rho * g.inv_res) * (rho * g.inv_res))


@njit(**HELPER)
def _exact_runs(f, j, lo, end, g):
    """The exact runs of line `j` on every row, into `lo`, `end` `(H,)` float32
    (`sensors.bev_roads._line_runs`; `f (L, FIELDS)` the float32 fields of the world's lines).

    A row meets the line next to one stripe; its run spans `w` in `[w1, w2]` along the
    road from where the row crosses the line centre (`w1 > w2`: no run, the `empty` term
    pushes it off the raster). Branch-free, so the compiler vectorises the rows.
    """
    far, floor = F32(g.far), F32(g.sqrt_floor)
    y0, y1, s0, s1, u0, u1 = f[j, 0], f[j, 1], f[j, 2], f[j, 3], f[j, 4], f[j, 5]
    m_lo, m_hi, a_ref, period, length, b_last = (f[j, 6], f[j, 7], f[j, 8], f[j, 9],
                                                 f[j, 10], f[j, 11])
    q_m, omega_lo, omega_hi, sigma, kappa, rho2 = (f[j, 12], f[j, 13], f[j, 14], f[j, 15],
                                                   f[j, 16], f[j, 17])
    for r in range(lo.shape[0]):
        row = F32(r)
        s_c = s1 * row + s0
        m = np.rint(u1 * row + u0)                     # ties to even, as torch.round
        m = min(max(m, m_lo), m_hi)                    # the nearest stripe
        w1 = m * period + a_ref - s_c
        w2 = min(w1 + length, b_last - s_c)
        w1 = max(w1, -q_m)
        w2 = min(w2, q_m)
        empty = min(max((w1 - w2) * far, F32(0.0)), F32(1.0)) * far
        y_c = y1 * row + y0
        w = min(max(w1, omega_lo), w2)
        root = np.sqrt(max(rho2 - (w * kappa) * (w * kappa), floor))
        lo[r] = w * sigma - root + empty + y_c
        w = min(max(w1, omega_hi), w2)
        root = np.sqrt(max(rho2 - (w * kappa) * (w * kappa), floor))
        end[r] = w * sigma + root - empty + y_c + F32(1.0)


@njit(**HELPER)
def _straight_road(rows, b, ego_x, ego_y, cos_h, sin_h, variant, straight, direction, origin,
                   lines, min_gap, line_mode, line_channel, lanes, union, g, fields32, lo,
                   end):
    """`sensors.bev_roads.road_line_rows` for world `b`: OR its lanes and markings into `rows` when
    its road is straight and its ego heads along it. Returns whether it did (the fast
    path); otherwise the caller draws the road by the generic path.

    Scratch: `fields32 (1, FIELDS)` float32, `lo`, `end` `(H,)` float32.
    """
    v = variant[0] if variant.shape[0] == 1 else variant[b]
    d0, d1 = direction[v, 0], direction[v, 1]
    kappa = d0 * cos_h + d1 * sin_h                     # cos, sin of the road's heading
    sigma = d1 * cos_h - d0 * sin_h                     # in the ego frame
    rx, ry = ego_x - origin[v, 0], ego_y - origin[v, 1]
    s_e = rx * d0 + ry * d1                             # ego in road coordinates [m]
    t_e = ry * d0 - rx * d1
    tan_max = 0.5 * (min_gap[v] - g.two_rho_mark) / g.two_rho_mark
    if not (straight[v] and kappa >= g.min_cos and abs(sigma) <= tan_max * kappa):
        return False
    fields = fields32[0]
    for j in range(lines.shape[1]):
        mode = line_mode[j]
        if mode == LINE_NONE or lines[v, j, 7] <= 0.0:   # invalid: no run anyway
            continue
        band = mode == LINE_BAND
        near = band and _band_fields(lines[v, j], kappa, sigma, s_e, t_e, g, fields)
        if band and not near:                          # lo = y1 r + band_lo, end likewise
            for r in range(g.height):
                step = fields[1] * F32(r)
                lo[r] = step + fields[18]
                end[r] = step + fields[19]
            _or_runs(rows, line_channel[j], lo, end, np.int64(0), g.height, g.width)
            continue
        # Exact runs: of the line, or of the lanes one by one near the union's ends.
        k0, k1 = (0, lanes) if band and j == union else (j, j + 1)
        for k in range(k0, k1):
            if lines[v, k, 7] > 0.0:
                _exact_fields(lines[v, k], kappa, sigma, s_e, t_e, g, fields)
                _exact_runs(fields32, 0, lo, end, g)
                _or_runs(rows, line_channel[k], lo, end, np.int64(0), g.height, g.width)
    return True


# ----------------------------------------------------------------------------- boxes


@njit(**HELPER)
def _visible(n, b, cx, cy, ax, ay, hl, hw, occluder, g):
    """`sensors.bev_boxes.visible_vehicles` for candidate `n` of world `b`: whether the ray
    from the ego centre to one of its 5 sample points enters no occluder before `1 - OCCLUSION_EPS`
    of the way (true poses: `cx ... hw` `(N,)` of the world, `ax, ay` `(B, N)`).

    The core also skips the occluders farther than the farthest candidate point plus 1 m;
    those cannot block a ray, so testing them changes nothing."""
    inv_max, see, tiny = F32(g.inv_max), F32(g.see_through), F32(g.tiny)
    slots = cx.shape[0]
    for s in range(5):
        lx, ly = SIGN_X[s] * hl[n], SIGN_Y[s] * hw[n]
        px = cx[n] + (lx * ax[b, n] - ly * ay[b, n])
        py = cy[n] + (lx * ay[b, n] + ly * ax[b, n])
        blocked = False
        for m in range(slots):
            if not occluder[m] or m == n:
                continue
            bx, by = ax[b, m], ay[b, m]                # `into_box`: the ego centre and
            ox, oy = -(cx[m] * bx + cy[m] * by), -(cy[m] * bx - cx[m] * by)   # the ray
            dx, dy = px * bx + py * by, py * bx - px * by                     # in its frame
            t_in, t_out = slab(ox, oy, dx, dy, hl[m], hw[m], inv_max)
            t_enter = max(t_in, F32(0.0))
            # Blocked: entered (t_out >= t_enter) before 1 - eps of the way.
            if min(t_out - t_enter, (-t_enter + see) - tiny) >= F32(0.0):
                blocked = True
                break
        if not blocked:
            return True
    return False


@njit(**HELPER)
def _box_rows(rows, channel, cx, cy, ax, ay, hl, hw, first, last, lo, end, g):
    """`sensors.bev_boxes.draw_boxes` for one box: OR its rectangle's runs on rows `first ..
    last` into `rows[channel]` (`lo`, `end` `(H,)` float32 scratch)."""
    inv_res, col0 = F32(g.inv_res), F32(g.col0_box)
    inv_max, edge = F32(g.inv_max), F32(g.edge_tol)
    dx0 = F32(g.x0) - cx
    inv_ax = min(max(F32(1.0) / ax, -inv_max), inv_max)
    inv_ay = min(max(F32(1.0) / ay, -inv_max), inv_max)
    c_u = (cy - dx0 * ax * inv_ay) * inv_res + col0
    c_v = (cy + dx0 * ay * inv_ax) * inv_res + col0
    h_u = (hl + edge) * abs(inv_ay) * inv_res
    h_v = (hw + edge) * abs(inv_ax) * inv_res
    lo_u, lo_v = c_u - h_u, c_v - h_v
    end_u, end_v = c_u + h_u + F32(1.0), c_v + h_v + F32(1.0)
    du, dv = ax * inv_ay, -(ay * inv_ax)
    for r in range(first, last + 1):
        du_r, dv_r = du * F32(r), dv * F32(r)
        lo[r] = max(du_r + lo_u, dv_r + lo_v)
        end[r] = min(du_r + end_u, dv_r + end_v)
    _or_runs(rows, channel, lo, end, first, last + 1, g.width)


@njit(**HELPER)
def _box_window(cx, cy, ax, ay, hl, hw, g):
    """`sensors.bev_boxes.box_window` for one box: `(first_row, last_row, touches)`."""
    inv_res, edge, tol = F32(g.inv_res), F32(g.edge_tol), F32(g.window_tol)
    aax, aay = abs(ax), abs(ay)
    hlg, hwg = hl + edge, hw + edge
    ext_x = (aax * hlg + aay * hwg) * inv_res
    ext_y = (aay * hlg + aax * hwg) * inv_res
    row = (F32(g.x0) - cx) * inv_res
    col = cy * inv_res + F32(g.col0_box)
    first_row = max(np.ceil(row - ext_x - tol), F32(0.0))
    last_row = min(np.floor(row + ext_x + tol), F32(g.height - 1.0))
    first_col = max(np.ceil(col - ext_y - tol), F32(0.0))
    last_col = min(np.floor(col + ext_y + tol), F32(g.width - 1.0))
    return int(first_row), int(last_row), first_row <= last_row and first_col <= last_col


# ----------------------------------------------------------------------------- bev


@njit(**JIT)
def render_bev_kernel(position, length, width, valid, cos_e, sin_e, ax, ay, keys, noise_std,
                      dropout_prob, occlusion, variant, straight, direction, origin,
                      lines, min_gap, line_mode, line_channel, lanes, union, byte_table, g,
                      out, out64, slow):
    """Rasterise `B` worlds (`sensors.render_bev_torch`, but the generic road path).

    Args:
        position: `(B, N, 2)` float64 world-frame centres [m]; slot 0 the ego.
        length, width: `(B, N)` float64 [m]. valid: `(B, N)` bool.
        cos_e, sin_e: `(B,)` float64 cos / sin of the ego heading (`ego_frame_boxes`' and
            `road_line_rows`').
        ax, ay: `(B, N)` float32 cos / sin of each heading relative to the ego's.
        keys: `(B, 2)` uint64 noise keys of each world (`noise_kernel`), or `(0, 2)` for
            no noise.
        noise_std: position noise [m]: with keys and `noise_std > 0`, vehicle `n` is
            drawn moved by the float32 of `normal * noise_std` in the ego frame, `normal`
            its pair of `noise_kernel(keys, N)` (`sensors.draw_bev_noise`).
        dropout_prob: with keys and `dropout_prob > 0`, vehicle `n` is dropped where its
            uniform is `< dropout_prob`.
        occlusion: hide vehicles the ego cannot see.
        variant ... min_gap: the `RoadPlan`'s arrays (numpy).
        line_mode, line_channel: `(L,)` int64 per line column: `_LINE_*`, bev channel.
        lanes, union: the plan's lane count and the column of the lanes' union.
        byte_table: `(256,)` int64 (`sensors.row_masks.byte_table`). g: `BevGeometry`.
        out: `(B, C, H, W)` uint8, every byte written. out64: `(B, C, H, W / 8)` int64 view
            of `out` when `W % 8 == 0` (else any `(1, 1, 1, 1)` int64 array).
        slow: `(B,)` bool, set to the worlds whose road is left to the generic path.
    """
    batch, slots = valid.shape
    for block in numba.prange((batch + BLOCK - 1) // BLOCK):
        scratch = (np.empty((out.shape[1], g.height, (g.width + 63) // 64), dtype=np.int64),
                   np.empty((1, FIELDS), dtype=np.float32),
                   np.empty((2, g.height), dtype=np.float32),
                   np.empty((6, slots), dtype=np.float32), np.empty((2, slots), dtype=np.int64),
                   np.empty((2, slots), dtype=np.bool_))
        start = np.int64(block) * BLOCK                # worlds of this step
        for b in range(start, min(batch, start + BLOCK)):
            slow[b] = not _render_world(
                b, position, length, width, valid, cos_e, sin_e, ax, ay, keys, noise_std,
                dropout_prob, occlusion, variant, straight, direction, origin, lines,
                min_gap, line_mode, line_channel, lanes, union, byte_table, g, out, out64,
                scratch)


@njit(**HELPER)
def _render_world(b, position, length, width, valid, cos_e, sin_e, ax, ay, keys, noise_std,
                  dropout_prob, occlusion, variant, straight, direction, origin, lines,
                  min_gap, line_mode, line_channel, lanes, union, byte_table, g, out, out64,
                  scratch):
    """`render_bev_kernel` for world `b`; returns whether its road took the fast path.

    `scratch`: `(rows (C, H, words) int64, fields (1, FIELDS) float32, runs (2, H)
    float32, boxes (6, N) float32, window (2, N) int64, flags (2, N) bool)`.
    """
    rows, fields, runs, boxes, window, flags = scratch
    slots = valid.shape[1]
    rows[:] = 0
    fast = _straight_road(rows, b, position[b, 0, 0], position[b, 0, 1], cos_e[b], sin_e[b],
                          variant, straight, direction, origin, lines, min_gap, line_mode,
                          line_channel, lanes, union, g, fields, runs[0], runs[1])
    # `ego_frame_boxes` (offsets in float64, then float32), and where the boxes are drawn.
    cx, cy, hl, hw, sx, sy = boxes[0], boxes[1], boxes[2], boxes[3], boxes[4], boxes[5]
    first, last = window[0], window[1]
    drawn, occluder = flags[0], flags[1]
    use_noise = keys.shape[0] > 0 and noise_std > 0.0
    use_keep = keys.shape[0] > 0 and dropout_prob > 0.0
    for n in range(slots):
        dx = position[b, n, 0] - position[b, 0, 0]
        dy = position[b, n, 1] - position[b, 0, 1]
        cx[n] = F32(dx * cos_e[b] + dy * sin_e[b])
        cy[n] = F32(dy * cos_e[b] - dx * sin_e[b])
        hl[n] = F32(length[b, n]) * F32(0.5)
        hw[n] = F32(width[b, n]) * F32(0.5)
        sx[n], sy[n] = cx[n], cy[n]
        if use_noise and n > 0:                        # `draw_bev_noise`'s float32 noise
            nx, ny = normal_pair_at(keys[b, 0], n)
            sx[n] = cx[n] + F32(nx * noise_std)
            sy[n] = cy[n] + F32(ny * noise_std)
        first[n], last[n], touches = _box_window(sx[n], sy[n], ax[b, n], ay[b, n], hl[n],
                                                 hw[n], g)
        occluder[n] = valid[b, n] and n > 0
        drawn[n] = occluder[n] and touches and (
            not use_keep or uniform_at(keys[b, 1], n) >= dropout_prob)
    if occlusion:
        for n in range(1, slots):
            if drawn[n]:
                drawn[n] = _visible(n, b, cx, cy, ax, ay, hl, hw, occluder, g)
    drawn[0] = True                                    # the ego, always
    for n in range(slots):
        if drawn[n]:
            _box_rows(rows, BEV_EGO if n == 0 else BEV_VEHICLES, sx[n], sy[n], ax[b, n],
                      ay[b, n], hl[n], hw[n], first[n], last[n], runs[0], runs[1], g)
    _expand(rows, out, out64, b, byte_table, g.width)
    return fast
