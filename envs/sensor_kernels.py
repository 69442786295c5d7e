"""Numba CPU kernels of the sensors; `envs.sensors` is the public API and dispatches here.

What: `render_bev_kernel` (the bev raster: straight roads' fast path, vehicle boxes,
occlusion; curved roads stay on the torch generic path), `cast_lidar_kernel` (the lidar)
and `ground_truth_kernel` (the object list of `info`). Each is `@numba.njit(parallel=True,
cache=True)` with a `numba.prange` loop over blocks of `_BLOCK` worlds (one world at a time
inside), reads numpy arrays and writes into arrays the caller allocated. The first call in
a fresh checkout compiles them (about 20 s of CPU); numba caches them in
`envs/__pycache__`.

Why: on the CPU the torch cores pay per tensor op: tens of passes over `(B, ...)`
temporaries per call, which cost ~100 ms at `B = 4096`. A kernel walks one world at a
time, per row / beam / slot, with that world's data in cache, and writes the raster once.

Exactness: the bev and lidar kernels repeat the torch cores' arithmetic operation by
operation, in the same precision (float64 where the core computes in float64, float32
elsewhere; a python scalar in a float32 torch op is a float32 constant here, as torch
rounds it), with no fast-math (no reassociation, no FMA contraction). Transcendental
functions that decide pixels or ranges are not recomputed: the caller passes the cos and
sin the torch core computes (`sensors._ego_trig`), since libm and torch's vectorised
`cos` may differ by an ulp. So the bev is bit-identical to `render_bev_torch` on the CPU
and the lidar equal to `cast_lidar_torch`'s. What the cores only use to skip work (the
lidar's beam windows, the occluders' distance prefilter) is computed here in float64 with
the same or wider margins: it changes which pairs are tested, never a result. The object
list is `ground_truth_objects`' float64 numpy arithmetic with libm's cos / sin / hypot
(numpy's may differ by an ulp): equal after the cast to float32 to rounding (the tests
allow two float32 ulps).

Conventions (frames, raster rows and columns, runs, line fields) are `envs.sensors`';
the comments name the torch function each block mirrors.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

F32 = np.float32
_JIT = dict(parallel=True, cache=True, nogil=True, error_model="numpy")
"""Kernel options: `error_model="numpy"` so `1 / 0` is `inf` (then clamped, as in torch);
`nogil` so other Python threads (`sensors.observe`'s noise draws) run meanwhile."""
_HELPER = dict(cache=True, error_model="numpy")

_SIGN_X = np.array([0.0, 1.0, 1.0, -1.0, -1.0], dtype=np.float32)
_SIGN_Y = np.array([0.0, 1.0, -1.0, 1.0, -1.0], dtype=np.float32)
"""Occlusion sample points in half extents (`sensors._SAMPLE_SIGNS`: centre, 4 corners)."""

_LINE_NONE, _LINE_BAND, _LINE_EXACT = 0, 1, 2
"""How a column of `RoadPlan.lines` is drawn (`line_mode`): not at all, as a band (exact
runs where its end is near the raster), or by exact runs."""

_BLOCK = 16
"""Worlds per `prange` step of the kernels (scratch arrays are allocated per block)."""

_FIELDS = 20
"""Per-(world, line) fields, `sensors._LINE_FIELDS` order: y0, y1, s0, s1, u0, u1, m_lo,
m_hi, a_ref, period, length, b_last, q_m, omega_lo, omega_hi, sigma, kappa, rho2, band_lo,
band_end."""


class BevGeometry(NamedTuple):
    """Raster geometry and tolerances of `render_bev_kernel` (python floats: float64).

    Built by `sensors._bev_geometry` from a `SensorConfig` and the module's constants, so
    the kernels hold no copy of them. Float32 arithmetic rounds them as torch rounds a
    python scalar.
    """

    height: int           # H [px]
    width: int            # W [px]
    res: float            # [m/px]
    inv_res: float        # 1 / res [px/m]
    x0: float             # x of row 0's centres [m]
    col0_box: float       # column of y = 0, as `_box_window` / `_draw_boxes` compute it
    col0_line: float      # the same, as `_line_params` computes it
    edge_tol: float       # `_EDGE_TOL_M` [m]
    window_tol: float     # `_WINDOW_TOL_PX` [px]
    inv_max: float        # `_INV_MAX`
    far: float            # `_FAR`
    sqrt_floor: float     # `_SQRT_FLOOR`
    min_cos: float        # `_MIN_COS`
    half_px: float        # a marking's radius before growing, `0.5 * res` [m]
    two_rho_mark: float   # `2 * (0.5 res + _EDGE_TOL_M)` [m]
    corner_res: float     # `_line_params`' `corner + res` [m]
    see_through: float    # `1 - _OCCLUSION_EPS`
    tiny: float           # `_TINY`


# ----------------------------------------------------------------------------- row masks


@numba.njit(**_HELPER)
def _or_runs(rows, channel, lo, end, r0, r1, width):
    """OR the runs of rows `r0 .. r1 - 1` into their masks `rows[channel, r]` (`rows (C, H,
    words)` int64: bit `c % 64` of word `c // 64` is column `c`; `sensors._run_masks`).

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


@numba.njit(**_HELPER)
def _expand(rows, out, out64, b, table, width):
    """Row masks `(C, H, words)` to bytes 0 / 255 of world `b`'s raster `out[b] (C, H, W)`
    (`sensors._expand_rows`): one 8-byte table entry per mask byte when `W % 8 == 0`
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


@numba.njit(**_HELPER)
def _band_fields(line, kappa, sigma, s_e, t_e, g, fields):
    """`sensors._line_params` for one (world, line) of a fast world, the fields a band
    needs: `y1`, `band_lo`, `band_end` (float64, rounded to float32 into `fields
    (_FIELDS,)`). Returns `near`: a single segment with an end near the raster (drawn by
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


@numba.njit(**_HELPER)
def _exact_fields(line, kappa, sigma, s_e, t_e, g, fields):
    """`sensors._line_params` for one (world, line) of a fast world: every field (see
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


@numba.njit(**_HELPER)
def _exact_runs(f, j, lo, end, g):
    """The exact runs of line `j` on every row, into `lo`, `end` `(H,)` float32
    (`sensors._line_runs`; `f (L, _FIELDS)` the float32 fields of the world's lines).

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


@numba.njit(**_HELPER)
def _straight_road(rows, b, ego_x, ego_y, cos_h, sin_h, variant, straight, direction, origin,
                   lines, min_gap, line_mode, line_channel, lanes, union, g, fields32, lo,
                   end):
    """`sensors._road_line_rows` for world `b`: OR its lanes and markings into `rows` when
    its road is straight and its ego heads along it. Returns whether it did (the fast
    path); otherwise the caller draws the road by the generic path.

    Scratch: `fields32 (1, _FIELDS)` float32, `lo`, `end` `(H,)` float32.
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
        if mode == _LINE_NONE or lines[v, j, 7] <= 0.0:   # invalid: no run anyway
            continue
        band = mode == _LINE_BAND
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


@numba.njit(**_HELPER)
def _slab(ox, oy, dx, dy, hx, hy, inv_max):
    """`sensors._slab_parts` (float32): `(t_in, t_out)` of the ray `o + t d` through the
    box `|x| <= hx, |y| <= hy`."""
    ix = min(max(F32(1.0) / dx, -inv_max), inv_max)
    iy = min(max(F32(1.0) / dy, -inv_max), inv_max)
    mx, my = -(ox * ix), -(oy * iy)
    sx, sy = abs(ix) * hx, abs(iy) * hy
    return max(mx - sx, my - sy), min(sx + mx, sy + my)


@numba.njit(**_HELPER)
def _visible(n, b, cx, cy, ax, ay, hl, hw, occluder, g):
    """`sensors._visible` for candidate `n` of world `b`: whether the ray from the ego
    centre to one of its 5 sample points enters no occluder before `1 - _OCCLUSION_EPS`
    of the way (true poses: `cx ... hw` `(N,)` of the world, `ax, ay` `(B, N)`).

    The core also skips the occluders farther than the farthest candidate point plus 1 m;
    those cannot block a ray, so testing them changes nothing."""
    inv_max, see, tiny = F32(g.inv_max), F32(g.see_through), F32(g.tiny)
    slots = cx.shape[0]
    for s in range(5):
        lx, ly = _SIGN_X[s] * hl[n], _SIGN_Y[s] * hw[n]
        px = cx[n] + (lx * ax[b, n] - ly * ay[b, n])
        py = cy[n] + (lx * ay[b, n] + ly * ax[b, n])
        blocked = False
        for m in range(slots):
            if not occluder[m] or m == n:
                continue
            bx, by = ax[b, m], ay[b, m]                # `_into_box`: the ego centre and
            ox, oy = -(cx[m] * bx + cy[m] * by), -(cy[m] * bx - cx[m] * by)   # the ray
            dx, dy = px * bx + py * by, py * bx - px * by                     # in its frame
            t_in, t_out = _slab(ox, oy, dx, dy, hl[m], hw[m], inv_max)
            t_enter = max(t_in, F32(0.0))
            # Blocked: entered (t_out >= t_enter) before 1 - eps of the way.
            if min(t_out - t_enter, (-t_enter + see) - tiny) >= F32(0.0):
                blocked = True
                break
        if not blocked:
            return True
    return False


@numba.njit(**_HELPER)
def _box_rows(rows, channel, cx, cy, ax, ay, hl, hw, first, last, lo, end, g):
    """`sensors._draw_boxes` for one box: OR its rectangle's runs on rows `first ..
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


@numba.njit(**_HELPER)
def _box_window(cx, cy, ax, ay, hl, hw, g):
    """`sensors._box_window` for one box: `(first_row, last_row, touches)`."""
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


# ----------------------------------------------------------------------------- noise
#
# Sensor noise is a pure function of a per-world key and the slot or beam it applies to: a
# counter-based generator. A kernel draws only the numbers it uses (the lidar's on beams
# that hit, the bev's when its noise is on), in parallel, and any path (the torch cores take
# the same numbers as arrays from `noise_kernel`) gets the same values whatever the thread
# count. The keys (`(B, 2)`: each world's normals' and uniforms') come from `envs.sensors`
# (`sensors.world_noise_keys`, `sensors.episode_noise_keys`), so a world's noise does not
# depend on its index in the batch or on the other worlds.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_TWO_POW_M53 = 2.0 ** -53


@numba.njit(**_HELPER)
def _hash(key, counter):
    """SplitMix64's output function of `key + (counter + 1) * golden` (uint64): the
    `counter`-th number of SplitMix64's stream from seed `key` (Steele et al. 2014)."""
    z = key + (np.uint64(counter) + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


@numba.njit(**_HELPER)
def _uniform(key, counter):
    """A uniform float64 in `(0, 1)` (53 random bits, never 0 or 1)."""
    return (float(_hash(key, counter) >> np.uint64(11)) + 0.5) * _TWO_POW_M53


@numba.njit(**_HELPER)
def _normal_pair(key, counter):
    """Two independent standard normal float64 (Box-Muller from uniforms `2 counter`,
    `2 counter + 1`)."""
    radius = math.sqrt(-2.0 * math.log(_uniform(key, 2 * counter)))
    angle = 2.0 * math.pi * _uniform(key, 2 * counter + 1)
    return radius * math.cos(angle), radius * math.sin(angle)


@numba.njit(**_JIT)
def noise_kernel(keys, count, normal, uniform):
    """The noise of `B` worlds as arrays: `normal (B, K, 2)` standard normals (pair `k` of
    world `b` is `_normal_pair(keys[b, 0], k)`) and `uniform (B, K)` uniforms in `(0, 1)`
    (`_uniform(keys[b, 1], k)`), `K = count` (vehicle slots or lidar beams), `keys (B, 2)`
    uint64. What the bev and lidar kernels draw for the same keys, element by element."""
    for b in numba.prange(keys.shape[0]):
        for k in range(count):
            normal[b, k, 0], normal[b, k, 1] = _normal_pair(keys[b, 0], k)
            uniform[b, k] = _uniform(keys[b, 1], k)


# ----------------------------------------------------------------------------- bev


@numba.njit(**_JIT)
def render_bev_kernel(position, length, width, valid, cos_e, sin_e, ax, ay, keys, noise_std,
                      dropout_prob, occlusion, variant, straight, direction, origin,
                      lines, min_gap, line_mode, line_channel, lanes, union, byte_table, g,
                      out, out64, slow):
    """Rasterise `B` worlds (`sensors.render_bev_torch`, but the generic road path).

    Args:
        position: `(B, N, 2)` float64 world-frame centres [m]; slot 0 the ego.
        length, width: `(B, N)` float64 [m]. valid: `(B, N)` bool.
        cos_e, sin_e: `(B,)` float64 cos / sin of the ego heading (`_ego_frame`'s and
            `_road_line_rows`').
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
        byte_table: `(256,)` int64 (`sensors._byte_table`). g: `BevGeometry`.
        out: `(B, C, H, W)` uint8, every byte written. out64: `(B, C, H, W / 8)` int64 view
            of `out` when `W % 8 == 0` (else any `(1, 1, 1, 1)` int64 array).
        slow: `(B,)` bool, set to the worlds whose road is left to the generic path.
    """
    batch, slots = valid.shape
    for block in numba.prange((batch + _BLOCK - 1) // _BLOCK):
        scratch = (np.empty((out.shape[1], g.height, (g.width + 63) // 64), dtype=np.int64),
                   np.empty((1, _FIELDS), dtype=np.float32),
                   np.empty((2, g.height), dtype=np.float32),
                   np.empty((6, slots), dtype=np.float32), np.empty((2, slots), dtype=np.int64),
                   np.empty((2, slots), dtype=np.bool_))
        start = np.int64(block) * _BLOCK                # worlds of this step
        for b in range(start, min(batch, start + _BLOCK)):
            slow[b] = not _render_world(
                b, position, length, width, valid, cos_e, sin_e, ax, ay, keys, noise_std,
                dropout_prob, occlusion, variant, straight, direction, origin, lines,
                min_gap, line_mode, line_channel, lanes, union, byte_table, g, out, out64,
                scratch)


@numba.njit(**_HELPER)
def _render_world(b, position, length, width, valid, cos_e, sin_e, ax, ay, keys, noise_std,
                  dropout_prob, occlusion, variant, straight, direction, origin, lines,
                  min_gap, line_mode, line_channel, lanes, union, byte_table, g, out, out64,
                  scratch):
    """`render_bev_kernel` for world `b`; returns whether its road took the fast path.

    `scratch`: `(rows (C, H, words) int64, fields (1, _FIELDS) float32, runs (2, H)
    float32, boxes (6, N) float32, window (2, N) int64, flags (2, N) bool)`.
    """
    rows, fields, runs, boxes, window, flags = scratch
    slots = valid.shape[1]
    rows[:] = 0
    fast = _straight_road(rows, b, position[b, 0, 0], position[b, 0, 1], cos_e[b], sin_e[b],
                          variant, straight, direction, origin, lines, min_gap, line_mode,
                          line_channel, lanes, union, g, fields, runs[0], runs[1])
    # `_ego_frame` (offsets in float64, then float32), and where the boxes are drawn.
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
            nx, ny = _normal_pair(keys[b, 0], n)
            sx[n] = cx[n] + F32(nx * noise_std)
            sy[n] = cy[n] + F32(ny * noise_std)
        first[n], last[n], touches = _box_window(sx[n], sy[n], ax[b, n], ay[b, n], hl[n],
                                                 hw[n], g)
        occluder[n] = valid[b, n] and n > 0
        drawn[n] = occluder[n] and touches and (
            not use_keep or _uniform(keys[b, 1], n) >= dropout_prob)
    if occlusion:
        for n in range(1, slots):
            if drawn[n]:
                drawn[n] = _visible(n, b, cx, cy, ax, ay, hl, hw, occluder, g)
    drawn[0] = True                                    # the ego, always
    for n in range(slots):
        if drawn[n]:
            _box_rows(rows, 3 if n == 0 else 2, sx[n], sy[n], ax[b, n], ay[b, n], hl[n],
                      hw[n], first[n], last[n], runs[0], runs[1], g)   # BEV_EGO, _VEHICLES
    _expand(rows, out, out64, b, byte_table, g.width)
    return fast


# ----------------------------------------------------------------------------- lidar


@numba.njit(**_JIT)
def cast_lidar_kernel(position, speed, length, width, valid, cos_e, sin_e, ax, ay, beam_x,
                      beam_y, keys, range_std, rate_std, dropout_prob, range_m, slack,
                      inv_max, out):
    """Cast the lidar of `B` worlds (`sensors.cast_lidar_torch`).

    Args:
        position: `(B, N, 2)` float64 [m]; speed, length, width: `(B, N)` float64;
            valid: `(B, N)` bool; slot 0 the ego.
        cos_e, sin_e, ax, ay: as `render_bev_kernel`'s.
        beam_x, beam_y: `(beams,)` float32 unit beam directions (`sensors._beams`).
        keys: `(B, 2)` uint64 noise keys of each world (`noise_kernel`), or `(0, 2)` for
            no noise.
        range_std, rate_std: noise scales [m], [m/s]: with keys, beam `i`'s pair of
            `noise_kernel(keys, beams)` times them, rounded to float32, is added to its
            range and rate (`sensors.draw_lidar_noise`), on the beams that hit only.
        dropout_prob: with keys and `dropout_prob > 0`, a return is dropped where its
            uniform is `< dropout_prob`.
        range_m: the sensing range [m]. slack: `_BEAM_SLACK_RAD`. inv_max: `_INV_MAX`.
        out: `(B, beams, 2)` float32, range [m] and range rate [m/s] of each beam.
    """
    batch, beams = valid.shape[0], beam_x.shape[0]
    for block in numba.prange((batch + _BLOCK - 1) // _BLOCK):
        best = np.empty(beams, dtype=np.float32)
        slot = np.empty(beams, dtype=np.int64)
        start = np.int64(block) * _BLOCK                # worlds of this step
        for b in range(start, min(batch, start + _BLOCK)):
            _lidar_world(b, position, speed, length, width, valid, cos_e, sin_e, ax, ay,
                         beam_x, beam_y, keys, range_std, rate_std, dropout_prob, range_m,
                         slack, inv_max, out, best, slot)


@numba.njit(**_HELPER)
def _lidar_world(b, position, speed, length, width, valid, cos_e, sin_e, ax, ay, beam_x,
                 beam_y, keys, range_std, rate_std, dropout_prob, range_m, slack, inv_max,
                 out, best, slot):
    """`cast_lidar_kernel` for world `b` (`best`, `slot`: `(beams,)` scratch)."""
    slots = valid.shape[1]
    beams = beam_x.shape[0]
    step = 2.0 * math.pi / beams
    range32, inv_max32 = F32(range_m), F32(inv_max)
    best[:] = np.inf
    slot[:] = 0
    for n in range(1, slots):
        if not valid[b, n]:
            continue
        dx = position[b, n, 0] - position[b, 0, 0]
        dy = position[b, n, 1] - position[b, 0, 1]
        cx = F32(dx * cos_e[b] + dy * sin_e[b])
        cy = F32(dy * cos_e[b] - dx * sin_e[b])
        hl, hw = F32(length[b, n]) * F32(0.5), F32(width[b, n]) * F32(0.5)
        # The beams that can hit: within the box's half diagonal r of its centre (at d),
        # i.e. within asin(r / d) of its bearing. The core computes this window in float32
        # with `slack`; here in float64 with twice the slack and an upper bound of the
        # asin (`x + (pi / 2 - 1) x^3`: its Taylor terms past x^3 are positive): a
        # superset of the beams the core tests that can hit (the others all miss).
        dist = math.sqrt(float(cx) * float(cx) + float(cy) * float(cy))
        radius = math.sqrt(float(hl) * float(hl) + float(hw) * float(hw))
        if dist - radius >= range_m + 1.0:             # every hit beyond range
            continue
        if dist > radius * (1.0 + 1e-6) + 1e-6:
            bearing = math.atan2(float(cy), float(cx))
            x = radius / dist
            spread = x + (0.5 * math.pi - 1.0) * x * x * x + 2.0 * slack
            start = int(math.ceil((bearing - spread) / step))
            count = min(int(math.floor((bearing + spread) / step)) - start + 1, beams)
        else:
            start, count = 0, beams
        bx, by = ax[b, n], ay[b, n]
        ox, oy = -(cx * bx + cy * by), -(cy * bx - cx * by)   # `_into_box`: the ego centre
        for k in range(count):                                # and the beam in its frame
            i = (start + k) % beams
            ddx, ddy = beam_x[i] * bx + beam_y[i] * by, beam_y[i] * bx - beam_x[i] * by
            t_in, t_out = _slab(ox, oy, ddx, ddy, hl, hw, inv_max32)
            t_in = max(t_in, F32(0.0)) + F32(0.0)      # +0.0, as the core's packed key
            if t_in <= t_out and t_in < best[i]:        # nearest; ties: the first slot
                best[i] = t_in
                slot[i] = n
    speed0 = F32(speed[b, 0])
    use_noise = keys.shape[0] > 0 and (range_std > 0.0 or rate_std > 0.0)
    use_keep = keys.shape[0] > 0 and dropout_prob > 0.0
    for i in range(beams):
        distance = best[i]
        hit = distance < range32
        if not hit:                                    # no return: no noise to draw
            out[b, i, 0], out[b, i, 1] = range32, F32(0.0)
            continue
        n = slot[i]
        vx = F32(speed[b, n]) * ax[b, n] - speed0      # ground velocity minus the ego's,
        vy = F32(speed[b, n]) * ay[b, n]               # ego frame
        rate = vx * beam_x[i] + vy * beam_y[i]
        if use_noise:
            range_normal, rate_normal = _normal_pair(keys[b, 0], i)
            distance = min(max(distance + F32(range_normal * range_std), F32(0.0)),
                           range32)
            rate = rate + F32(rate_normal * rate_std)
        if use_keep:
            hit = _uniform(keys[b, 1], i) >= dropout_prob
        out[b, i, 0] = distance if hit else range32
        out[b, i, 1] = rate if hit else F32(0.0)


# ----------------------------------------------------------------------------- ground truth


@numba.njit(**_JIT)
def ground_truth_kernel(position, heading, speed, length, width, vehicle_id, valid, objects,
                        objects_valid):
    """`sensors.ground_truth_objects` (float64, then float32): every valid non-ego vehicle,
    nearest centre first (ties: slot order), cut to `M` rows.

    Args:
        position: `(B, N, 2)` float64; heading, speed, length, width: `(B, N)` float64;
            vehicle_id: `(B, N)` int64; valid: `(B, N)` bool.
        objects: `(B, M, 8)` float32, written (padding rows zero), `OBJECT_FIELDS` columns.
        objects_valid: `(B, M)` bool, written.
    """
    batch, slots = valid.shape
    for block in numba.prange((batch + _BLOCK - 1) // _BLOCK):
        scratch = np.empty((3, slots))
        order = np.empty(slots, dtype=np.int64)
        start = np.int64(block) * _BLOCK                # worlds of this step
        for b in range(start, min(batch, start + _BLOCK)):
            _truth_world(b, position, heading, speed, length, width, vehicle_id, valid,
                         objects, objects_valid, scratch, order)


@numba.njit(**_HELPER)
def _truth_world(b, position, heading, speed, length, width, vehicle_id, valid, objects,
                 objects_valid, scratch, order):
    """`ground_truth_kernel` for world `b` (`scratch (3, N)`, `order (N,)`)."""
    slots, rows = valid.shape[1], objects.shape[1]
    cos, sin = math.cos(heading[b, 0]), math.sin(heading[b, 0])
    x, y, distance = scratch[0], scratch[1], scratch[2]
    count = 0
    for n in range(1, slots):
        if not valid[b, n]:
            continue
        dx = position[b, n, 0] - position[b, 0, 0]
        dy = position[b, n, 1] - position[b, 0, 1]
        x[n], y[n] = dx * cos + dy * sin, dy * cos - dx * sin
        distance[n] = math.hypot(x[n], y[n])
        k = count                                      # insertion sort: stable, ties keep
        while k > 0 and distance[order[k - 1]] > distance[n]:     # slot order
            order[k] = order[k - 1]
            k -= 1
        order[k] = n
        count += 1
    for k in range(rows):
        objects_valid[b, k] = k < count
        if k >= count:
            for f in range(objects.shape[2]):
                objects[b, k, f] = 0.0
            continue
        n = order[k]
        rel = math.pi - (math.pi - (heading[b, n] - heading[b, 0])) % (2.0 * math.pi)
        cos_rel, sin_rel = (1.0, 0.0) if rel == 0.0 else (math.cos(rel), math.sin(rel))
        objects[b, k, 0] = x[n]
        objects[b, k, 1] = y[n]
        objects[b, k, 2] = speed[b, n] * cos_rel
        objects[b, k, 3] = speed[b, n] * sin_rel
        objects[b, k, 4] = rel
        objects[b, k, 5] = length[b, n]
        objects[b, k, 6] = width[b, n]
        objects[b, k, 7] = float(vehicle_id[b, n])
