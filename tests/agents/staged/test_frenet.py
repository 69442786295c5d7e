"""`frenet.first_conflict` (a numba loop that stops at the first overlap) against the
array form it replaces, written out here as the reference, and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from reflexdrive.agents.staged import frenet


def conflicts_by_arrays(ego_s, ego_d, track_s, track_d, track_vs, track_vd, half_length,
                        half_width, valid, times, track_decel=None):
    """Every candidate x track x time at once: `(N, C, K, P)` overlaps, any over K, P."""
    future_s = track_s[..., None] + track_vs[..., None] * times
    if track_decel is not None:
        decel = np.maximum(track_decel, 0.0)[..., None]
        moving = (track_vs[..., None] > 0) & (decel > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            stop = np.where(moving, track_vs[..., None] / decel, np.inf)
        t = np.minimum(times, stop)
        braked = track_s[..., None] + track_vs[..., None] * t - 0.5 * decel * t * t
        future_s = np.where(moving, braked, future_s)
    future_d = track_d[..., None] + track_vd[..., None] * times
    ds = np.abs(ego_s[:, :, None, :] - future_s[:, None, :, :])
    dd = np.abs(ego_d[:, :, None, :] - future_d[:, None, :, :])
    overlap = (ds < half_length[:, None, :, None]) & (dd < half_width[:, None, :, None])
    overlap &= valid[:, None, :, None]
    return overlap.any(axis=(2, 3))


@pytest.mark.parametrize("braking", [False, True])
def test_first_conflict_equals_the_array_form(braking):
    rng = np.random.default_rng(7)
    n, c, k, p = 64, 9, 6, 21
    times = np.linspace(0.0, 4.0, p)
    speed = rng.uniform(0.0, 30.0, (n, c, 1))
    ego_s = speed * times + rng.normal(0.0, 0.5, (n, c, p))
    ego_d = rng.uniform(-4.0, 4.0, (n, c, 1)) * np.minimum(times / 3.0, 1.0)
    track_s, track_d = rng.uniform(-20.0, 80.0, (n, k)), rng.uniform(-6.0, 6.0, (n, k))
    track_vs, track_vd = rng.uniform(-5.0, 30.0, (n, k)), rng.uniform(-1.5, 1.5, (n, k))
    half_length, half_width = rng.uniform(4.0, 7.0, (n, k)), rng.uniform(1.5, 2.5, (n, k))
    valid = rng.random((n, k)) < 0.8
    decel = rng.uniform(-2.0, 8.0, (n, k)) if braking else None
    args = (ego_s, ego_d, track_s, track_d, track_vs, track_vd, half_length, half_width,
            valid, times, decel)
    expected = conflicts_by_arrays(*args)
    assert 0.1 < expected.mean() < 0.9                   # both answers occur
    np.testing.assert_array_equal(frenet.first_conflict(*args), expected)


def test_a_lead_braking_to_a_stop_is_met_only_by_a_candidate_that_reaches_it():
    """Lead 20 m ahead at 10 m/s braking at 5 m/s^2 stops after 2 s at 30 m; an ego path
    ending at 26 m stays 4 m short of a 2 m half length, one ending at 29 m overlaps."""
    times = np.array([0.0, 1.0, 2.0, 3.0])
    ego_s = np.array([[[0.0, 10.0, 20.0, 26.0], [0.0, 10.0, 20.0, 29.0]]])
    ego_d = np.zeros_like(ego_s)
    one = np.ones((1, 1))
    meets = frenet.first_conflict(ego_s, ego_d, 20.0 * one, 0.0 * one, 10.0 * one, 0.0 * one,
                                  2.0 * one, one, np.ones((1, 1), bool), times, 5.0 * one)
    np.testing.assert_array_equal(meets, [[False, True]])
    empty = frenet.first_conflict(ego_s, ego_d, *(np.zeros((1, 0)),) * 6,
                                  np.zeros((1, 0), bool), times)
    np.testing.assert_array_equal(empty, [[False, False]])
