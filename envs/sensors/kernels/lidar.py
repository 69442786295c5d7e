"""The numba kernel of the lidar (`sensors.lidar.cast_lidar_torch`)."""

from __future__ import annotations

import math

import numba
import numpy as np
from reflexdrive.envs.sensors.kernels.common import BLOCK, F32, HELPER, JIT, njit, slab
from reflexdrive.envs.sensors.kernels.noise import normal_pair_at, uniform_at


@njit(**JIT)
def cast_lidar_kernel(position, speed, length, width, valid, cos_e, sin_e, ax, ay, beam_x,
                      beam_y, keys, range_std, rate_std, dropout_prob, range_m, slack,
                      inv_max, out):
    """Cast the lidar of `B` worlds (`sensors.cast_lidar_torch`).

    Args:
        position: `(B, N, 2)` float64 [m]; speed, length, width: `(B, N)` float64;
            valid: `(B, N)` bool; slot 0 the ego.
        cos_e, sin_e, ax, ay: as `render_bev_kernel`'s.
        beam_x, beam_y: `(beams,)` float32 unit beam directions
            (`sensors.tensor_ops.beam_directions`).
        keys: `(B, 2)` uint64 noise keys of each world (`noise_kernel`), or `(0, 2)` for
            no noise.
        range_std, rate_std: noise scales [m], [m/s]: with keys, beam `i`'s pair of
            `noise_kernel(keys, beams)` times them, rounded to float32, is added to its
            range and rate (`sensors.draw_lidar_noise`), on the beams that hit only.
        dropout_prob: with keys and `dropout_prob > 0`, a return is dropped where its
            uniform is `< dropout_prob`.
        range_m: the sensing range [m]. slack: `BEAM_SLACK_RAD`. inv_max: `INV_MAX`.
        out: `(B, beams, 2)` float32, range [m] and range rate [m/s] of each beam.
    """
    batch, beams = valid.shape[0], beam_x.shape[0]
    for block in numba.prange((batch + BLOCK - 1) // BLOCK):
        best = np.empty(beams, dtype=np.float32)
        slot = np.empty(beams, dtype=np.int64)
        start = np.int64(block) * BLOCK                # worlds of this step
        for b in range(start, min(batch, start + BLOCK)):
            _lidar_world(b, position, speed, length, width, valid, cos_e, sin_e, ax, ay,
                         beam_x, beam_y, keys, range_std, rate_std, dropout_prob, range_m,
                         slack, inv_max, out, best, slot)


@njit(**HELPER)
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
        ox, oy = -(cx * bx + cy * by), -(cy * bx - cx * by)   # `into_box`: the ego centre
        for k in range(count):                                # and the beam in its frame
            i = (start + k) % beams
            ddx, ddy = beam_x[i] * bx + beam_y[i] * by, beam_y[i] * bx - beam_x[i] * by
            t_in, t_out = slab(ox, oy, ddx, ddy, hl, hw, inv_max32)
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
            range_normal, rate_normal = normal_pair_at(keys[b, 0], i)
            distance = min(max(distance + F32(range_normal * range_std), F32(0.0)),
                           range32)
            rate = rate + F32(rate_normal * rate_std)
        if use_keep:
            hit = uniform_at(keys[b, 1], i) >= dropout_prob
        out[b, i, 0] = distance if hit else range32
        out[b, i, 1] = rate if hit else F32(0.0)
