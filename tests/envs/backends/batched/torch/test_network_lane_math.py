"""Lane math on lane tables (`envs.backends.batched.torch.network`) against highway-env's
own lane and network methods, on many random points of every lane of the three networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reflexdrive.envs.backends.batched.lanes import NETWORK_KINDS, scenario_layout, torch_tables
from reflexdrive.envs.backends.batched.torch import network as tn

POINTS = 3000
TOL = 1e-6


def _sample(kind: str, seed: int):
    layout = scenario_layout(kind)
    rng = np.random.default_rng(seed)
    lanes = rng.integers(len(layout.lane_names), size=POINTS)
    span = (-20.0, 480.0) if kind == "merge" else (-130.0, 130.0)
    points = rng.uniform(*span, (POINTS, 2))
    return layout, torch_tables(layout.tables), rng, lanes, points


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_local_coordinates_position_and_heading_match_highway_env(kind):
    layout, t, rng, lanes, points = _sample(kind, 0)
    objects = [layout.network.get_lane(layout.lane_names[i]) for i in lanes]
    s, r = tn.local_coordinates(t, torch.as_tensor(lanes), torch.as_tensor(points))
    expected = np.array([lane.local_coordinates(p) for lane, p in zip(objects, points)])
    np.testing.assert_allclose(s.numpy(), expected[:, 0], rtol=0, atol=TOL)
    np.testing.assert_allclose(r.numpy(), expected[:, 1], rtol=0, atol=TOL)
    s = rng.uniform(-10.0, 150.0, POINTS)
    r = rng.uniform(-6.0, 6.0, POINTS)
    position = tn.lane_position(t, torch.as_tensor(lanes), torch.as_tensor(s),
                                torch.as_tensor(r))
    expected = np.array([lane.position(a, b) for lane, a, b in zip(objects, s, r)])
    np.testing.assert_allclose(position.numpy(), expected, rtol=0, atol=TOL)
    heading = tn.heading_at(t, torch.as_tensor(lanes), torch.as_tensor(s))
    expected = np.array([lane.heading_at(a) for lane, a in zip(objects, s)])
    np.testing.assert_allclose(heading.numpy(), expected, rtol=0, atol=TOL)


def test_circular_lane_by_hand():
    """A counter-clockwise ring lane (orientation o = -1) of radius R: s = 0 lies at
    centre + R (cos phi0, sin phi0) with heading phi0 - pi/2; a quarter turn along it the
    angle is phi0 - pi/2; 1 m outside the circle is r = o (R - (R + 1)) = +1."""
    layout = scenario_layout("roundabout")
    t = torch_tables(layout.tables)
    row = layout.lane_row(("se", "ex", 0))
    centre, radius = layout.tables.origin[row], layout.tables.radius[row]
    phi0 = layout.tables.start_phase[row]
    lane = torch.tensor([row, row])
    s = torch.tensor([0.0, radius * math.pi / 2])
    position = tn.lane_position(t, lane, s, torch.zeros(2, dtype=torch.float64))
    np.testing.assert_allclose(position[0].numpy(),
                               centre + radius * np.array([math.cos(phi0), math.sin(phi0)]),
                               atol=1e-12)
    # counter-clockwise: the angle decreases along s (orientation -1)
    phi = phi0 - math.pi / 2
    np.testing.assert_allclose(position[1].numpy(),
                               centre + radius * np.array([math.cos(phi), math.sin(phi)]),
                               atol=1e-12)
    np.testing.assert_allclose(tn.heading_at(t, lane, s).numpy(),
                               [phi0 - math.pi / 2, phi0 - math.pi], atol=1e-12)
    # 1 m farther from the centre is r = o (R - (R + 1)) = +1 for o = -1: left of the lane
    outside = torch.as_tensor(centre + (radius + 1.0) * np.array([math.cos(phi0),
                                                                   math.sin(phi0)]))
    s0, r0 = tn.local_coordinates(t, lane[:1], outside[None])
    assert s0.item() == pytest.approx(0.0, abs=1e-12) and r0.item() == pytest.approx(1.0)


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_closest_lane_matches_get_closest_lane_index(kind):
    layout, t, rng, _, points = _sample(kind, 1)
    headings = rng.uniform(-4.0, 4.0, POINTS)
    got = tn.closest_lane(t, torch.as_tensor(points), torch.as_tensor(headings)).numpy()
    expected = [layout.lane_row(layout.network.get_closest_lane_index(p, h))
                for p, h in zip(points, headings)]
    assert got.tolist() == expected


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_closest_lane_at_lane_junctions_differs_only_on_exact_ties(kind):
    """Points on a lane's start or end with its heading tie that lane with its predecessor
    or successor; the graph order breaks the tie, unless the last bit of torch's `atan2`
    (which may differ from numpy's) decides it: then both lanes score equal to 1e-12."""
    layout, t, rng, _, _ = _sample(kind, 3)
    network = layout.network
    lanes = rng.integers(len(layout.lane_names), size=POINTS)
    s = rng.choice([0.0, 1.0], size=POINTS) * layout.tables.length[lanes]
    points = tn.lane_position(t, torch.as_tensor(lanes), torch.as_tensor(s),
                              torch.zeros(POINTS, dtype=torch.float64))
    headings = tn.heading_at(t, torch.as_tensor(lanes), torch.as_tensor(s))
    got = tn.closest_lane(t, points, headings).numpy()
    points, headings = points.numpy(), headings.numpy()
    same = 0
    for i in range(POINTS):
        expected = network.get_closest_lane_index(points[i], headings[i])
        if layout.lane_names[got[i]] == expected:
            same += 1
            continue
        scores = [network.get_lane(name).distance_with_heading(points[i], headings[i])
                  for name in (expected, layout.lane_names[got[i]])]
        assert abs(scores[0] - scores[1]) < 1e-12, (i, expected, scores)
    assert same > 0.9 * POINTS


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_next_lane_matches_highway_env_with_and_without_routes(kind):
    layout, t, rng, lanes, points = _sample(kind, 2)
    network = layout.network
    nodes = list(layout.node_names)
    routes = []
    for i, lane in enumerate(lanes):
        name = layout.lane_names[lane]
        if i % 3 == 0:
            route = []
        else:
            path = network.shortest_path(name[1], nodes[rng.integers(len(nodes))])
            route = [name] * (i % 3 == 1) + [(path[k], path[k + 1], None)
                                            for k in range(len(path) - 1)]
        routes.append(route)
    width = max(len(r) for r in routes) + 1
    road = np.full((POINTS, width), -1)
    lane_id = np.full((POINTS, width), -1)
    for i, route in enumerate(routes):
        for k, (a, b, n) in enumerate(route):
            road[i, k] = layout.road_row(a, b)
            lane_id[i, k] = -1 if n is None else n
    got, pointer = tn.next_lane(t, torch.as_tensor(lanes), torch.as_tensor(points),
                                torch.as_tensor(road), torch.as_tensor(lane_id),
                                torch.zeros(POINTS, dtype=torch.int64))
    for i, lane in enumerate(lanes):
        route = list(routes[i])
        expected = network.next_lane(layout.lane_names[lane], route=route, position=points[i])
        assert layout.lane_names[got[i]] == expected, i
        assert pointer[i] == len(routes[i]) - len(route), i
