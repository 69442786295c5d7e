"""`info["map"]` on highway-env road networks: analytic cases on straight and curved lanes."""

import numpy as np
import pytest
from highway_env.road.road import RoadNetwork
from highway_env.utils import wrap_to_pi
from reflexdrive.envs.backends.highway import build_road
from reflexdrive.envs.backends.highway_map import HighwayRoadMap, lane_curve
from reflexdrive.envs.backends.map_kernels import curved_windows, sample_bounds
from reflexdrive.envs.road_map import (
    LANE_POINTS,
    MAP_FIELDS,
    MAP_LANES,
    MAP_RANGE_M,
    MAP_STEP_M,
    ROUTE_POINTS,
)
from reflexdrive.envs.scenarios import RoadSpec
from reflexdrive.envs.sensors.frames import to_ego_frame

from reflexdrive.common.threads import kernel_threads


def rotate(points, angle):
    """Rotate `(n, 2)` points by `angle` [rad]."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * points[:, 0] - s * points[:, 1], s * points[:, 0] + c * points[:, 1]], 1)


def observe_on(network, lane_index, along, offset=0.0, heading_error=0.0, destination=None):
    lane = network.get_lane(lane_index)
    position = lane.position(along, offset)
    heading = lane.heading_at(along) + heading_error
    road_map = HighwayRoadMap(network, destination).observe(position, heading, lane_index)
    return {key: value[0] for key, value in road_map.items()}, position, heading


def test_straight_route_is_the_lane_ahead_rotated_by_the_heading_error():
    network = RoadNetwork.straight_road_network(lanes=3, length=500.0)
    d, psi = 0.7, 0.1
    road_map, _, _ = observe_on(network, ("0", "1", 1), 100.3, d, psi)
    i = np.arange(ROUTE_POINTS)
    expected = rotate(np.stack([i * MAP_STEP_M, np.full(i.shape, -d)], 1), -psi)
    np.testing.assert_allclose(road_map["route"], expected, atol=1e-5)
    np.testing.assert_allclose(road_map["route_heading"], -psi, atol=1e-6)
    np.testing.assert_array_equal(road_map["route_width"], 4.0)
    assert set(road_map) == set(MAP_FIELDS)
    assert road_map["route"].dtype == np.float32 and road_map["lanes"].shape == (
        MAP_LANES, LANE_POINTS, 2)


def test_straight_lanes_are_their_grid_samples_within_range():
    network = RoadNetwork.straight_road_network(lanes=3, length=500.0)
    road_map, position, heading = observe_on(network, ("0", "1", 1), 100.3, 0.7)
    assert road_map["lane_valid"].tolist() == [True] * 3 + [False] * (MAP_LANES - 3)
    assert road_map["lane_on_route"].tolist()[:3] == [False, True, False]
    for lane in range(3):
        y = 4.0 * lane
        half = np.sqrt(MAP_RANGE_M ** 2 - (position[1] - y) ** 2)
        first = int(np.ceil((position[0] - half) / 2.0))
        last = int(np.floor((position[0] + half) / 2.0))
        world = np.stack([2.0 * np.arange(first, last + 1), np.full(last - first + 1, y)], 1)
        expected = to_ego_frame(world[None], position[None], np.array([heading]))[0]
        points = road_map["lanes"][lane]
        np.testing.assert_allclose(points[:last - first + 1], expected, atol=1e-4)
        assert np.isposinf(points[last - first + 1:]).all()
    assert np.isposinf(road_map["lanes"][3:]).all() and (road_map["lane_width"][:3] == 4.0).all()


def test_route_is_absent_past_the_end_of_the_road():
    network = RoadNetwork.straight_road_network(lanes=2, length=500.0)
    road_map, _, _ = observe_on(network, ("0", "1", 0), 450.0)
    finite = np.isfinite(road_map["route"]).all(1)
    assert finite.tolist() == [True] * 26 + [False] * (ROUTE_POINTS - 26)   # 450 + 2 * 25 = 500
    assert np.isposinf(road_map["route_heading"][26:]).all()
    assert np.isposinf(road_map["route_width"][26:]).all()


def test_route_on_the_roundabout_ring_keeps_the_radius_and_the_arc_step():
    network = build_road(RoadSpec(kind="roundabout"), 0).network
    ring = network.get_lane(("se", "ex", 0))
    road_map, position, heading = observe_on(network, ("se", "ex", 0), 1.0, destination="sxs")
    centre = to_ego_frame(ring.center[None, None], position[None], np.array([heading]))[0, 0]
    route = road_map["route"].astype(np.float64)
    assert np.isfinite(route).all()                       # 1 + 78 m < the ring's 109 m to sx
    np.testing.assert_allclose(np.hypot(*(route - centre).T), ring.radius, atol=1e-3)
    chord = np.hypot(*np.diff(route, axis=0).T)           # 2 m of arc across five ring lanes
    np.testing.assert_allclose(chord, 2 * ring.radius * np.sin(1.0 / ring.radius), atol=1e-4)
    # the heading turns by one radian every `radius` metres of arc (anticlockwise, psi < 0)
    np.testing.assert_allclose(np.diff(np.unwrap(road_map["route_heading"])),
                               ring.direction * MAP_STEP_M / ring.radius, atol=1e-5)
    assert road_map["lane_on_route"].sum() >= 5


def test_route_continues_on_the_next_lane_of_the_route_at_a_lane_end():
    network = build_road(RoadSpec(kind="merge"), 0).network
    road_map, _, _ = observe_on(network, ("a", "b", 1), 225.0)   # 5 m before b, then b -> c
    i = np.arange(ROUTE_POINTS)
    np.testing.assert_allclose(road_map["route"], np.stack([2.0 * i, 0.0 * i], 1), atol=1e-4)
    road = HighwayRoadMap(network)
    slots, starts = road.chain(("a", "b", 1))     # 230 m + 78 m reach only b -> c (80 m)
    assert [road.index[k] for k in slots] == [("a", "b", 1), ("b", "c", 1)]
    assert starts.tolist() == [0.0, 230.0]


def test_route_follows_the_destination_and_stops_there():
    network = build_road(RoadSpec(kind="intersection"), 0).network
    road_map, _, _ = observe_on(network, ("o0", "ir0", 0), 90.0, destination="o1")
    chain = HighwayRoadMap(network, "o1")
    assert [chain.index[k] for k in chain.chain(("o0", "ir0", 0))[0]] == [
        ("o0", "ir0", 0), ("ir0", "il1", 0), ("il1", "o1", 0)]
    assert np.isfinite(road_map["route"]).all()
    assert road_map["route_heading"][-1] == pytest.approx(-np.pi / 2, abs=1e-5)  # turned left
    # on the last lane of the route the map ends with the lane: 90 + 2 * 5 = 100 m
    road_map, _, _ = observe_on(network, ("il1", "o1", 0), 90.0, destination="o1")
    assert np.isfinite(road_map["route"]).all(1).sum() == 6
    assert road_map["lane_priority"][road_map["lane_valid"]].max() == 3
    # highway-env's intersection lanes are all limited to 10 m/s
    on_road = np.isfinite(road_map["route"]).all(1)
    np.testing.assert_array_equal(road_map["route_speed_limit"][on_road], 10.0)
    assert np.isposinf(road_map["route_speed_limit"][~on_road]).all()
    np.testing.assert_array_equal(road_map["lane_speed_limit"][road_map["lane_valid"]], 10.0)


def test_inside_the_intersection_the_route_takes_the_turning_lane_not_the_closest():
    """The right, straight and left lanes out of `ir0` start at one point with one heading:
    an ego that has not turned yet is closest to the straight lane `il2`, while its route
    to `o1` turns into `il1`; the map follows the route (while the ego lies on that lane)."""
    network = build_road(RoadSpec(kind="intersection"), 0).network
    closest = ("ir0", "il2", 0)
    turning = network.get_lane(("ir0", "il1", 0))
    position = turning.position(1.0, 0.0)
    assert network.get_closest_lane_index(position, -np.pi / 2) == closest
    road_map = HighwayRoadMap(network, "o1")
    assert road_map.route_lane(position, closest) == ("ir0", "il1", 0)
    turned = road_map.observe(position, turning.heading_at(1.0), closest)
    expected = observe_on(network, ("ir0", "il1", 0), 1.0, destination="o1")[0]
    np.testing.assert_allclose(turned["route"][0], expected["route"], atol=1e-6)
    # without a destination, or off the turning lane, the closest lane stays
    assert HighwayRoadMap(network).route_lane(position, closest) == closest
    straight = network.get_lane(closest)
    assert road_map.route_lane(straight.position(15.0, 0.0), closest) == closest


def test_just_past_the_node_of_its_exit_the_route_turns_off_not_round_again():
    """The roundabout's exit `nx -> nxs` starts 5.6 m outside the ring lane's end at `nx`:
    an ego turning off there is closest to the ring lane `nx -> ne` for its first metres, a
    route read from which goes round the whole ring again. Within BRANCH_CATCH_M (6.5 m)
    along that lane and of the exit lane (L1 distance: |r| + the distance before its
    start), the route follows the exit; farther on it has been missed."""
    network = build_road(RoadSpec(kind="roundabout"), 0).network
    ring, exit_lane = ("nx", "ne", 1), ("nx", "nxs", 0)
    road_map = HighwayRoadMap(network, "nxs")
    lane = network.get_lane(exit_lane)
    # 2 m before the exit lane's start and 3 m right of it: L1 distance 5 m, off the lane
    turning = lane.position(-2.0, 3.0)
    assert network.get_closest_lane_index(turning, lane.heading_at(0.0)) == ring
    assert not lane.on_lane(turning)
    assert np.isclose(lane.distance(turning), 5.0)
    assert network.get_lane(ring).local_coordinates(turning)[0] < 6.5
    assert road_map.route_lane(turning, ring) == exit_lane
    assert road_map.route_lanes(turning[None], ring) == [exit_lane]
    turned = road_map.observe(turning, lane.heading_at(0.0), ring)
    assert np.isfinite(turned["route"][0]).all()
    # the route leads out along the exit road (its heading within 0.4 rad of the exit's
    # once on it: the first points lie on the approach from the node, see below)
    np.testing.assert_allclose(turned["route_heading"][0, 3:8], 0.0, atol=0.4)
    # 8 m round the ring past the node the exit is missed: the route stays on the ring
    missed = network.get_lane(ring).position(8.0, 0.0)
    assert road_map.route_lane(missed, ring) == ring
    # on the inner ring lane 2 m past the node the exit is 8 m away: not caught
    inner_lane = ("nx", "ne", 0)
    inner = network.get_lane(inner_lane).position(2.0, 0.0)
    assert lane.distance(inner) > 6.5
    assert road_map.route_lane(inner, inner_lane) == inner_lane


def test_past_the_node_the_route_runs_on_the_approach_to_the_exit_not_beside_it():
    """Past the node the exit lane `nx -> nxs` starts 5.6 m away: the route of a caught
    ego runs from its foot on the approach (a Hermite curve leaving the node along the
    ring lane, meeting the exit lane along it) into the exit lane, so it is continuous
    with the route before the node instead of the exit's curve extrapolated backwards,
    3-4 m beside the ego."""
    network = build_road(RoadSpec(kind="roundabout"), 0).network
    ring, exit_lane = ("nx", "ne", 1), ("nx", "nxs", 0)
    road_map = HighwayRoadMap(network, "nxs")
    points, arc = road_map.approach(ring, exit_lane)
    ring_lane, lane = network.get_lane(ring), network.get_lane(exit_lane)
    np.testing.assert_allclose(points[0], ring_lane.position(0.0, 0.0), atol=1e-9)
    np.testing.assert_allclose(points[-1], lane.position(0.0, 0.0), atol=1e-9)
    # leaves the node along the ring, meets the exit along the exit
    leave, meet = np.diff(points[:2], axis=0)[0], np.diff(points[-2:], axis=0)[0]
    assert abs(wrap_to_pi(np.arctan2(leave[1], leave[0]) - ring_lane.heading_at(0.0))) < 0.05
    assert abs(wrap_to_pi(np.arctan2(meet[1], meet[0]) - lane.heading_at(0.0))) < 0.05
    # an ego on the approach a third of the way: the route starts at the ego, on the curve
    ego = np.array([np.interp(arc[-1] / 3, arc, points[:, 0]),
                    np.interp(arc[-1] / 3, arc, points[:, 1])])
    assert network.get_closest_lane_index(ego, ring_lane.heading_at(0.0)) == ring
    seen = road_map.observe(ego, ring_lane.heading_at(0.0), ring)
    np.testing.assert_allclose(seen["route"][0, 0], 0.0, atol=1e-2)
    many = road_map.observe_many(ego[None], np.array([ring_lane.heading_at(0.0)]), [ring])
    np.testing.assert_array_equal(many["route"], seen["route"])
    # world-frame samples: every one within 1 cm of the approach or of the exit lane
    c, s = np.cos(ring_lane.heading_at(0.0)), np.sin(ring_lane.heading_at(0.0))
    local = seen["route"][0]
    world = ego + np.stack([local[:, 0] * c - local[:, 1] * s,
                            local[:, 0] * s + local[:, 1] * c], axis=-1)
    world = world[np.isfinite(world).all(1)]
    near_curve = np.hypot(*(world[:, None] - points[None]).transpose(2, 0, 1)).min(1) < 0.3
    road_on = network.get_lane(("nxs", "nxr", 0))         # the exit road after the sine
    on_exit = np.array([min(abs(lane.local_coordinates(p)[1]),
                            abs(road_on.local_coordinates(p)[1])) < 1e-2 for p in world])
    assert (near_curve | on_exit).all()
    assert near_curve[:2].all() and on_exit[-5:].all()
    # samples 2 m apart along the approach, and about so into the exit (a SineLane's arc
    # is measured along its axis)
    step = np.hypot(*np.diff(world[:4], axis=0).T)
    np.testing.assert_allclose(step, 2.0, atol=0.2)


def test_past_the_destination_the_route_goes_on_along_the_road_not_back():
    """The roundabout ego's destination `nxs` is the end of its exit's sine lane: the route
    goes on along the straight exit road (`nxs -> nxr`, the same heading) instead of
    ending there (the stack lost its frame one car length after leaving the ring); at the
    intersection the destination `o1` leads only back in (`o1 -> ir1`, a U-turn): the route
    ends there."""
    roundabout = build_road(RoadSpec(kind="roundabout"), 0).network
    chain = HighwayRoadMap(roundabout, "nxs")
    slots, _ = chain.chain(("nx", "nxs", 0))
    assert [chain.index[k] for k in slots][:2] == [("nx", "nxs", 0), ("nxs", "nxr", 0)]
    road_map, _, _ = observe_on(roundabout, ("nx", "nxs", 0), 60.0, destination="nxs")
    assert np.isfinite(road_map["route"]).all()
    intersection = HighwayRoadMap(build_road(RoadSpec(kind="intersection"), 0).network, "o1")
    slots, _ = intersection.chain(("il1", "o1", 0))
    assert [intersection.index[k] for k in slots] == [("il1", "o1", 0)]


@pytest.mark.parametrize("index", [("ses", "se", 0), ("ir0", "il1", 0)])
def test_lane_curve_matches_highway_env_lane_methods(index):
    kind = "roundabout" if index[0] == "ses" else "intersection"
    lane = build_road(RoadSpec(kind=kind), 0).network.get_lane(index)
    s = np.linspace(0.0, lane.length, 7)
    points, heading, width = lane_curve(lane)(s)
    np.testing.assert_allclose(points, [lane.position(x, 0.0) for x in s], atol=1e-12)
    np.testing.assert_allclose(heading, [lane.heading_at(x) for x in s], atol=1e-12)
    np.testing.assert_allclose(width, [lane.width_at(x) for x in s])


@pytest.mark.parametrize("name", ["merge", "roundabout", "intersection"])
def test_local_coordinates_many_equal_highway_env_point_by_point(name):
    from reflexdrive.envs.backends.batched.lanes import scenario_layout
    from reflexdrive.envs.backends.highway_map import local_coordinates_many, on_lane_many

    network = scenario_layout(name).network
    rng = np.random.default_rng(3)
    for lane in (network.get_lane(index) for index in HighwayRoadMap(network).index):
        middle = lane.position(lane.length / 2, 0.0)
        points = middle + rng.uniform(-lane.length, lane.length, (64, 2))
        points[:8] = [lane.position(s, d) for s, d in zip(rng.uniform(-5, lane.length + 5, 8),
                                                            rng.uniform(-3, 3, 8))]
        along, lateral = local_coordinates_many(lane, points)
        want = np.array([lane.local_coordinates(p) for p in points], np.float64)
        np.testing.assert_array_equal(along, want[:, 0])           # bit for bit
        np.testing.assert_array_equal(lateral, want[:, 1])
        np.testing.assert_array_equal(on_lane_many(lane, points),
                                      [lane.on_lane(p) for p in points])


@pytest.mark.parametrize("name", ["roundabout", "intersection", "merge"])
def test_curved_windows_skip_only_lanes_out_of_range(name):
    """`map_kernels.curved_windows` with `sample_bounds` (lanes out of reach not scanned,
    NaN tails not scanned) equals the full scan of every sample, bit for bit, for egos on,
    near and far from the road (up to 300 m off), and every sample lies within its bounds."""
    road = HighwayRoadMap(build_road(RoadSpec(kind=name), 0).network)
    samples = road._curved_samples
    bounds = sample_bounds(samples, MAP_RANGE_M)
    finite = np.isfinite(samples).all(-1)
    spread = np.hypot(*(samples - bounds[:, None, :2]).transpose(2, 0, 1))
    reach = np.broadcast_to(bounds[:, 2:3] - MAP_RANGE_M, finite.shape)
    assert (spread[finite] <= reach[finite]).all()
    everything = np.column_stack([bounds[:, :2], np.full(len(bounds), 1e9),
                                  np.full(len(bounds), samples.shape[1])])
    rng = np.random.default_rng(1)
    centre = np.nanmean(samples.reshape(-1, 2), 0)
    position = centre + rng.uniform(-300.0, 300.0, (400, 2))
    position[:100] = samples[finite][rng.integers(finite.sum(), size=100)] \
        + rng.normal(0.0, 3.0, (100, 2))
    results = []
    for b in (bounds, everything):
        shape = (len(position), len(samples))
        out = (np.empty(shape, np.int64), np.empty(shape, np.int64), np.empty(shape))
        with kernel_threads(1):
            curved_windows(samples, np.ascontiguousarray(b), position, MAP_RANGE_M ** 2, *out)
        results.append(out)
    for culled, full in zip(*results):
        assert np.array_equal(culled, full)
    assert (results[0][0] <= results[0][1]).any() and (results[0][0] > results[0][1]).any()
