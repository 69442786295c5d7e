"""Lane math on lane tables in numba (`envs.backends.batched.numba.network`) against
highway-env's own lane methods and `get_closest_lane_index`, on random points of every lane
of the three networks, and against the torch reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reflexdrive.envs.backends.batched.lanes import NETWORK_KINDS, scenario_layout, torch_tables
from reflexdrive.envs.backends.batched.numba import network as nn
from reflexdrive.envs.backends.batched.torch import network as tn

POINTS = 3000
TOL = 1e-6


def _sample(kind: str, seed: int):
    layout = scenario_layout(kind)
    rng = np.random.default_rng(seed)
    lanes = rng.integers(len(layout.lane_names), size=POINTS)
    span = (-20.0, 480.0) if kind == "merge" else (-130.0, 130.0)
    return layout, rng, lanes, rng.uniform(*span, (POINTS, 2))


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_numba_lane_math_matches_highway_env_and_torch(kind):
    layout, rng, lanes, points = _sample(kind, 0)
    t = layout.tables
    objects = [layout.network.get_lane(layout.lane_names[i]) for i in lanes]
    s, r = nn.local_coordinates_many(t, lanes, points)
    expected = np.array([lane.local_coordinates(p) for lane, p in zip(objects, points)])
    np.testing.assert_allclose(np.stack([s, r], -1), expected, rtol=0, atol=TOL)
    s_torch, r_torch = tn.local_coordinates(torch_tables(t), torch.as_tensor(lanes),
                                            torch.as_tensor(points))
    np.testing.assert_allclose(s, s_torch.numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(r, r_torch.numpy(), rtol=0, atol=1e-9)
    s = rng.uniform(-10.0, 150.0, POINTS)
    r = rng.uniform(-6.0, 6.0, POINTS)
    expected = np.array([lane.position(a, b) for lane, a, b in zip(objects, s, r)])
    np.testing.assert_allclose(nn.positions_many(t, lanes, s, r), expected, rtol=0, atol=TOL)
    expected = np.array([lane.heading_at(a) for lane, a in zip(objects, s)])
    np.testing.assert_allclose(nn.headings_many(t, lanes, s), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_numba_closest_lane_matches_get_closest_lane_index(kind):
    """Random poses: the same lane. Poses on a lane's start or end with its heading tie
    that lane with its predecessor or successor (graph order breaks the tie): the same
    lane too, except where the last bit of a norm or dot product decides, and then both
    lanes score equal to 1e-12 in highway-env."""
    layout, rng, lanes, points = _sample(kind, 1)
    t = layout.tables
    headings = rng.uniform(-4.0, 4.0, POINTS)
    half = POINTS // 2
    s = rng.choice([0.0, 1.0], size=half) * t.length[lanes[:half]]
    objects = [layout.network.get_lane(layout.lane_names[i]) for i in lanes[:half]]
    points[:half] = [lane.position(a, 0.0) for lane, a in zip(objects, s)]
    headings[:half] = [lane.heading_at(a) for lane, a in zip(objects, s)]
    got = nn.closest_many(t, points, headings)
    network = layout.network
    expected = [network.get_closest_lane_index(p, h) for p, h in zip(points, headings)]
    assert got[half:].tolist() == [layout.lane_row(e) for e in expected[half:]]
    same = 0
    for i in range(half):
        if layout.lane_names[got[i]] == expected[i]:
            same += 1
            continue
        scores = [network.get_lane(name).distance_with_heading(points[i], headings[i])
                  for name in (expected[i], layout.lane_names[got[i]])]
        assert abs(scores[0] - scores[1]) < 1e-12, (i, expected[i], scores)
    assert same > 0.9 * half


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_closest_lane_near_is_closest_lane(kind):
    """From any hint lane, near the road or far from it, at lane ends (ties) or not: the
    pruned search returns `closest_lane`'s row, and its bounds hold every lane."""
    layout, rng, lanes, points = _sample(kind, 2)
    t = layout.tables
    headings = rng.uniform(-4.0, 4.0, POINTS)
    third = POINTS // 3
    s = rng.uniform(0.0, 1.0, third) * t.length[lanes[:third]]
    s[: third // 2] = rng.choice([0.0, 1.0], size=third // 2) * t.length[lanes[: third // 2]]
    on_lane = nn.positions_many(t, lanes[:third], s, rng.uniform(-3.0, 3.0, third))
    points[:third] = on_lane
    headings[:third] = nn.headings_many(t, lanes[:third], s)
    expected = nn.closest_many(t, points, headings)
    hints = rng.integers(len(layout.lane_names), size=POINTS)
    hints[:third] = expected[:third]                 # the usual case: the previous lane
    assert nn.closest_near_many(t, points, headings, hints).tolist() == expected.tolist()
    bounds = nn.lane_bounds(t)
    for lane in range(len(layout.lane_names)):
        if bounds[lane, 2] < 0:
            continue
        along = np.linspace(0.0, t.length[lane], 200)
        centre = nn.positions_many(t, np.full(200, lane), along, np.zeros(200))
        assert np.hypot(*(centre - bounds[lane, :2]).T).max() <= bounds[lane, 2]


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_lane_band_is_the_local_coordinates_test(kind):
    """`lane_band` (the neighbour search's test, the cheap coordinate first) against
    `local_coordinates` and the band test on its `(s, r)`: the same verdict and, inside,
    the same `s`, bit for bit, on points near the lanes (inside or just outside the band,
    before, on and past the ends) and far from them."""
    layout, rng, lanes, points = _sample(kind, 3)
    t = layout.tables
    third = POINTS // 3
    s = rng.uniform(-8.0, 1.1, third) * np.maximum(t.length[lanes[:third]], 1.0)
    s[: third // 3] = rng.uniform(-6.0, 6.0, third // 3)               # around the start
    points[:third] = nn.positions_many(t, lanes[:third], s, rng.uniform(-4.0, 4.0, third))
    half = t.width[lanes] / 2 + rng.choice([0.0, 1.0], POINTS)
    lower = np.full(POINTS, -5.0)
    upper = t.length[lanes] + 5.0
    inside, s_band = nn.band_many(t, lanes, points, half, lower, upper)
    s, r = nn.local_coordinates_many(t, lanes, points)
    expected = (np.abs(r) <= half) & (s >= lower) & (s < upper)
    assert inside.tolist() == expected.tolist()
    assert np.array_equal(s_band[inside], s[inside])
    assert 0.05 * POINTS < inside.sum() < 0.95 * POINTS


def test_wrap_to_pi_is_the_floored_modulo_bit_for_bit():
    """`wrap_to_pi`'s branches without `fmod` give Python's `((x + pi) % 2 pi) - pi` bit
    for bit: random angles, tiny ones, and the floats around every branch edge (x + pi at
    -4 pi, -2 pi, 0, 2 pi, 4 pi), zeros, infinities and NaN."""
    two_pi = 2 * math.pi
    rng = np.random.default_rng(4)
    edges = np.array([-2 * two_pi, -two_pi, 0.0, two_pi, 2 * two_pi]) - math.pi
    around = [edges]
    for direction in (np.inf, -np.inf):
        step = edges
        for _ in range(40):
            step = np.nextafter(step, direction)
            around.append(step)
    x = np.concatenate([rng.uniform(-30.0, 30.0, 20000), rng.normal(0.0, 1e-9, 2000),
                        rng.uniform(-1e6, 1e6, 2000), *around,
                        [0.0, -0.0, math.pi, -math.pi, np.inf, -np.inf, np.nan]])
    with np.errstate(invalid="ignore"):
        want = np.array([((v + math.pi) % two_pi) - math.pi for v in x])
    got = nn.wrap_many(x)
    same = (got.view(np.int64) == want.view(np.int64)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), x[~same][:5]
