"""Lane tables read from highway-env's road networks (`envs.backends.batched.lanes`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from highway_env.road.lane import CircularLane, SineLane
from reflexdrive.envs.backends.batched.lanes import (
    CIRCULAR,
    NETWORK_KINDS,
    SINE,
    STRAIGHT,
    scenario_layout,
)

from reflexdrive.common.validation import ConfigError


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_rows_follow_the_graph_order_with_the_lanes_own_attributes(kind):
    layout = scenario_layout(kind)
    t = layout.tables
    network = layout.network
    names = [(a, b, i) for a, tos in network.graph.items() for b, lanes in tos.items()
             for i in range(len(lanes))]
    assert list(layout.lane_names) == names
    for row, name in enumerate(names):
        lane = network.get_lane(name)
        assert t.length[row] == lane.length and t.width[row] == lane.width
        assert t.priority[row] == lane.priority and t.forbidden[row] == lane.forbidden
        assert t.speed_limit[row] == lane.speed_limit
        assert layout.road_names[t.road[row]] == name[:2] and t.lane_id[row] == name[2]
        if isinstance(lane, CircularLane):
            assert t.kind[row] == CIRCULAR
            assert t.radius[row] == lane.radius and t.start_phase[row] == lane.start_phase
            assert t.orientation[row] == lane.direction
            np.testing.assert_array_equal(t.origin[row], lane.center)
        else:
            assert t.kind[row] == (SINE if isinstance(lane, SineLane) else STRAIGHT)
            np.testing.assert_array_equal(t.origin[row], lane.start)
            np.testing.assert_array_equal(t.direction[row], lane.direction)
            assert t.heading[row] == lane.heading


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_successors_and_next_roads_are_the_graphs_continuations(kind):
    layout = scenario_layout(kind)
    t = layout.tables
    graph = layout.network.graph
    for row, (_, end, _) in enumerate(layout.lane_names):
        expected = [layout.lane_row((end, after, i)) for after, lanes in graph.get(end, {}).items()
                    for i in range(len(lanes))]
        assert [s for s in t.successors[row] if s >= 0] == expected
    for road, (_, end) in enumerate(layout.road_names):
        expected = [layout.road_row(end, after) for after in graph.get(end, {})]
        assert [r for r in t.next_roads[road] if r >= 0] == expected
        first = t.road_first_lane[road]
        assert layout.lane_names[first][:2] == layout.road_names[road]
        assert t.road_lane_count[road] == len(graph[layout.road_names[road][0]][end])


def test_merge_by_hand():
    """MergeEnv: highway a->b at y = 0 and 4 over 230 m, the ramp's sine part k->b of
    amplitude 3.25 m over 80 m, and one obstacle at the end of the ramp's last straight."""
    layout = scenario_layout("merge")
    t = layout.tables
    row = layout.lane_row(("a", "b", 1))
    assert t.kind[row] == STRAIGHT and t.length[row] == 230.0
    np.testing.assert_array_equal(t.origin[row], [0.0, 4.0])
    sine = layout.lane_row(("k", "b", 0))
    assert t.kind[sine] == SINE and t.amplitude[sine] == 3.25
    assert t.pulsation[sine] == pytest.approx(2 * math.pi / 160) and t.phase[sine] == math.pi / 2
    assert [layout.lane_names[s] for s in t.successors[sine] if s >= 0] == [
        ("b", "c", 0), ("b", "c", 1), ("b", "c", 2)]
    np.testing.assert_allclose(layout.obstacles, [[310.0, 8.0]])


def test_roundabout_ring_is_counter_clockwise_circles():
    layout = scenario_layout("roundabout")
    t = layout.tables
    row = layout.lane_row(("se", "ex", 0))
    assert t.kind[row] == CIRCULAR and t.orientation[row] == -1.0
    assert t.radius[row] == 20.0            # RoundaboutEnv: radius 20 m, lanes 4 m apart
    assert t.radius[layout.lane_row(("se", "ex", 1))] == 24.0


def test_unknown_network_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="road.kind"):
        scenario_layout("straight")
