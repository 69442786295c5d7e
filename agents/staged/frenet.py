"""Frenet-lattice refinement: candidate lateral manoeuvres as quintic polynomials, checked
against the tracks' predicted motion, the cheapest safe one kept.

Frame: the ego's lane frame (Werling et al. 2010, "Optimal trajectory generation for dynamic
street scenarios in a Frenet frame"): `s` along the lane [m] measured from the ego, `d`
across it [m] measured from the centre of the ego's current lane, +d towards the ego
frame's +y (the next higher lane index). On the straight roads the batched backend runs,
the lane frame is the ego frame rotated by the ego's heading error.

Every function is batched over `N` envs and `C` candidates per env and pure (no state).
"""

from __future__ import annotations

import numba
import numpy as np


def quintic_coefficients(d0: np.ndarray, d0_rate: np.ndarray, d_end: np.ndarray,
                         duration: np.ndarray) -> np.ndarray:
    """Coefficients of the quintic `d(t) = sum_i c_i t^i` that moves from `d0` with lateral
    speed `d0_rate` and no lateral acceleration to rest at `d_end` after `duration`.

    Boundary conditions: `d(0) = d0`, `d'(0) = d0_rate`, `d''(0) = 0`, `d(T) = d_end`,
    `d'(T) = d''(T) = 0` (the minimum-jerk profile for these end states).

    Args:
        d0: `(...)` lateral offset now [m]; d0_rate: `(...)` lateral speed now [m/s];
        d_end: `(...)` final offset [m]; duration: `(...)` `T > 0` [s]. Broadcast together.

    Returns:
        `(..., 6)` coefficients `c_0 .. c_5` [m / s^i].
    """
    d0, d0_rate, d_end, duration = np.broadcast_arrays(d0, d0_rate, d_end, duration)
    t = duration
    # Remaining displacement and speed change the cubic-to-quintic terms must produce.
    gap = d_end - d0 - d0_rate * t
    speed = -d0_rate
    c3 = (10.0 * gap - 4.0 * speed * t) / t**3
    c4 = (-15.0 * gap + 7.0 * speed * t) / t**4
    c5 = (6.0 * gap - 3.0 * speed * t) / t**5
    zero = np.zeros_like(d0, dtype=np.float64)
    return np.stack([d0, d0_rate, zero, c3, c4, c5], axis=-1).astype(np.float64)


def lateral_profile(coefficients: np.ndarray, duration: np.ndarray, times: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Lateral offset and squared jerk of quintic manoeuvres sampled at `times`.

    After `duration` the offset holds its end value (the quintic ends at rest).

    Args:
        coefficients: `(..., 6)` from `quintic_coefficients`; duration: `(...)` [s];
        times: `(P,)` sample times from now [s].

    Returns:
        offset `(..., P)` [m] and the integral of the squared lateral jerk over the
        manoeuvre `(...)` [m^2/s^5] (closed form).
    """
    c = coefficients
    t = np.minimum(times, duration[..., None])                               # (..., P)
    power = np.ones_like(t)
    offset = np.zeros_like(t)
    for i in range(6):
        offset = offset + c[..., i:i + 1] * power
        power = power * t
    # jerk(t) = 6 c3 + 24 c4 t + 60 c5 t^2; its square integrated over [0, T]
    T = duration
    a, b, e = 6.0 * c[..., 3], 24.0 * c[..., 4], 60.0 * c[..., 5]
    jerk_cost = (a * a * T + a * b * T**2 + (b * b + 2 * a * e) * T**3 / 3.0
                 + b * e * T**4 / 2.0 + e * e * T**5 / 5.0)
    return offset, jerk_cost


def longitudinal_profile(speed: np.ndarray, acceleration: np.ndarray, times: np.ndarray,
                         max_speed: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance and speed under a constant acceleration, stopping at 0 and capped at
    `max_speed` (the speed profile the controller tracks).

    Args:
        speed: `(N,)` [m/s]; acceleration: `(N,)` [m/s^2]; times: `(P,)` from now [s].

    Returns:
        s `(N, P)` travelled distance [m], v `(N, P)` speed [m/s].
    """
    v = np.maximum(speed[:, None] + acceleration[:, None] * times[None, :], 0.0)
    # accelerating never goes past max(max_speed, current speed)
    cap = np.maximum(speed, max_speed)[:, None]
    v = np.where(acceleration[:, None] > 0, np.minimum(v, cap), v)
    dt = np.diff(times)
    s = np.concatenate([np.zeros((speed.shape[0], 1)),
                        np.cumsum(0.5 * (v[:, 1:] + v[:, :-1]) * dt[None, :], axis=1)], axis=1)
    return s, v


def first_conflict(ego_s: np.ndarray, ego_d: np.ndarray, track_s: np.ndarray,
                   track_d: np.ndarray, track_vs: np.ndarray, track_vd: np.ndarray,
                   half_length: np.ndarray, half_width: np.ndarray, valid: np.ndarray,
                   times: np.ndarray, track_decel: np.ndarray | None = None) -> np.ndarray:
    """Whether each candidate trajectory comes too close to a track's predicted motion.

    Tracks move at constant velocity (`s + vs t`, `d + vd t`), or, where `track_decel > 0`,
    brake at that rate along the lane until they stop (a worst case for a lead); a
    conflict is an overlap of
    the axis-aligned (lane-frame) boxes grown by the safety margins folded into
    `half_length` / `half_width` (the ego's and the track's half sizes plus margins).

    Args:
        ego_s, ego_d: `(N, C, P)` candidate positions in the lane frame [m].
        track_s, track_d, track_vs, track_vd: `(N, K)` positions [m] and velocities [m/s].
        half_length, half_width: `(N, K)` summed half extents incl. margins [m].
        valid: `(N, K)` bool.
        times: `(P,)` [s].
        track_decel: `(N, K)` braking assumed per track [m/s^2] (0: constant velocity).

    Returns:
        `(N, C)` bool: True where some valid track overlaps the candidate at some time.
    """
    n, c, p = ego_s.shape
    k = track_s.shape[1]
    decel = np.zeros((n, k)) if track_decel is None else np.asarray(track_decel, np.float64)
    out = np.zeros((n, c), dtype=np.bool_)
    if n and c and k and p:
        _first_conflict_kernel(
            *(np.ascontiguousarray(a, dtype=np.float64) for a in (
                np.broadcast_to(ego_s, (n, c, p)), np.broadcast_to(ego_d, (n, c, p)),
                track_s, track_d, track_vs, track_vd, half_length, half_width)),
            np.ascontiguousarray(valid, dtype=np.bool_),
            np.ascontiguousarray(times, dtype=np.float64), np.ascontiguousarray(decel), out)
    return out


@numba.njit(cache=True, nogil=True)
def _first_conflict_kernel(ego_s, ego_d, track_s, track_d, track_vs, track_vd, half_length,
                           half_width, valid, times, decel, out):  # pragma: no cover - numba
    """`first_conflict` in loops that stop at a candidate's first overlap: the same float
    operations in the same order as the array form (`s + vs t`, braked
    `s + vs t' - 0.5 a t' t'` with `t' = min(t, vs / a)`), written into `out (N, C)`."""
    n, c, p = ego_s.shape
    k = track_s.shape[1]
    for i in range(n):
        for j in range(c):
            hit = False
            for m in range(k):
                if not valid[i, m]:
                    continue
                vs, a = track_vs[i, m], max(decel[i, m], 0.0)
                moving = vs > 0.0 and a > 0.0
                stop = vs / a if moving else np.inf
                for q in range(p):
                    t = times[q]
                    if moving:
                        tb = min(t, stop)
                        future_s = track_s[i, m] + vs * tb - 0.5 * a * tb * tb
                    else:
                        future_s = track_s[i, m] + vs * t
                    future_d = track_d[i, m] + track_vd[i, m] * t
                    if (abs(ego_s[i, j, q] - future_s) < half_length[i, m]
                            and abs(ego_d[i, j, q] - future_d) < half_width[i, m]):
                        hit = True
                        break
                if hit:
                    break
            out[i, j] = hit
