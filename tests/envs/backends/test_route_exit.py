"""The route's exit road (`envs.backends.route_exit`) and `WorldSnapshot.ego_on_route_exit`
on both backends: the exit road of every scenario, an ego placed on, before, past and
beside its exit, and seeded episodes driven along the route where both backends must
flag the same substeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import pure_pursuit
from highway_env.road.lane import StraightLane
from highway_env.road.road import RoadNetwork
from reflexdrive.envs.backends.batched.lanes import NETWORK_KINDS, scenario_layout, torch_tables
from reflexdrive.envs.backends.batched.network_backend import NetworkBackend
from reflexdrive.envs.backends.batched.network_snapshot import network_snapshot
from reflexdrive.envs.backends.batched.network_state import network_state
from reflexdrive.envs.backends.batched.state import Params
from reflexdrive.envs.backends.batched.torch.network import (
    closest_lane,
    heading_at,
    lane_position,
)
from reflexdrive.envs.backends.highway import HighwayBackend, build_road
from reflexdrive.envs.backends.route_exit import route_exit_road
from reflexdrive.envs.scenarios import SCENARIOS, generate, make_config
from reflexdrive.envs.types import EGO, Piece

from reflexdrive.common.threads import kernel_threads

F = 50

EXIT_ROADS = {
    "highway": ("0", "1"), "lead-brake": ("0", "1"), "cut-in": ("0", "1"),
    "stopped-vehicle": ("0", "1"),
    "merge": ("c", "d"),                       # the highway after the merge section b -> c
    "roundabout": ("nx", "nxs"),               # the north exit lane, off the ring
    "intersection": ("il1", "o1"),             # the outgoing road after the left turn
    "stopped-vehicle-curve": ("2", "3"),       # the straight after the arc
    "intersection-cross-traffic": ("il3", "o3"),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenarios_exit_road(name):
    init = generate(name, make_config(name), 0, F)
    ego = init.vehicles[0]
    network = build_road(init.road, 0).network
    assert route_exit_road(network, ego.lane, ego.destination) == EXIT_ROADS[name]
    if init.road.kind in NETWORK_KINDS:            # the network backend's row, cached
        layout = scenario_layout(init.road.kind)
        for _ in range(2):
            row = layout.exit_road_row(ego.lane, ego.destination)
            assert layout.road_names[row] == EXIT_ROADS[name]


def test_a_route_that_never_ends_has_no_exit_and_an_unreachable_destination_is_refused():
    ring = RoadNetwork()
    corners = {"a": [0.0, 0.0], "b": [50.0, 0.0], "c": [25.0, 40.0]}
    for start, end in (("a", "b"), ("b", "c"), ("c", "a")):
        ring.add_lane(start, end, StraightLane(corners[start], corners[end]))
    assert route_exit_road(ring, ("a", "b", 0), None) is None
    assert route_exit_road(ring, ("a", "b", 0), "a") == ("c", "a")
    assert route_exit_road(ring, ("a", "b", 0), "b") == ("a", "b")   # already on it
    network = build_road(generate("merge", make_config("merge"), 0, F).road, 0).network
    with pytest.raises(ValueError, match="cannot be reached"):
        route_exit_road(network, ("c", "d", 0), "a")


def _flags(name: str, placements) -> tuple[list[bool], list[bool]]:
    """`ego_on_route_exit` of scenario seed 0's ego (its route, hence its exit road, from
    its own start) moved to each `(lane, s)` of `placements` with the lane's heading: on
    the highway backend (the ego's lane: highway-env's `on_state_update`) and in the
    network backend's snapshot (the ego's lane: `closest_lane`, as its kernel finds it;
    all placements as worlds of one batch)."""
    init = generate(name, make_config(name), 0, F)
    highway = []
    for lane, s in placements:
        backend = HighwayBackend(F)
        backend.reset(init)
        geometry = backend.road.network.get_lane(lane)
        backend.ego.position = geometry.position(s, 0.0)
        backend.ego.heading = geometry.heading_at(s)
        backend.ego.on_state_update()
        highway.append(bool(backend.snapshot().ego_on_route_exit[0]))
    layout = scenario_layout(name)
    tables = torch_tables(layout.tables)
    state = network_state([init] * len(placements), layout, name)
    lanes = torch.tensor([layout.lane_row(lane) for lane, _ in placements])
    s = torch.tensor([s for _, s in placements], dtype=torch.float64)
    position, heading, lane = state.position.clone(), state.heading.clone(), state.lane.clone()
    position[:, EGO] = lane_position(tables, lanes, s, torch.zeros_like(s))
    heading[:, EGO] = heading_at(tables, lanes, s)
    lane[:, EGO] = closest_lane(tables, position[:, EGO], heading[:, EGO])
    params = Params.from_highway_env(F)
    snapshot = network_snapshot(tables, state.replace(position=position, heading=heading,
                                                      lane=lane),
                                params.dt, params.lane_vehicle_length)
    return highway, snapshot.ego_on_route_exit.tolist()


@pytest.mark.parametrize("name, placements, expected", [
    ("roundabout",
     [(("nx", "nxs", 0), 1.0), (("nx", "nxs", 0), 16.0),      # on the exit lane
      (("ee", "nx", 0), 14.0), (("ee", "nx", 1), 14.0),       # on the ring just before it
      (("nx", "ne", 0), 1.0),                                 # circling on past it,
      (("nx", "ne", 1), 0.0),                                 # outer lane, where it branches
      (("ex", "exs", 0), 8.0),                                # another exit
      (("nxs", "nxr", 0), 20.0)],                             # past it: not the exit road
     [True, True, False, False, False, False, False, False]),
    ("intersection",
     [(("il1", "o1", 0), 2.0), (("il1", "o1", 0), 90.0),
      (("ir0", "il1", 0), 19.0),                              # in the turn, before the road
      (("il2", "o2", 0), 5.0), (("o0", "ir0", 0), 99.0)],     # straight on; the approach
     [True, True, False, False, False]),
    ("merge",
     [(("c", "d", 0), 1.0), (("c", "d", 1), 140.0),
      (("b", "c", 1), 79.0), (("a", "b", 1), 30.0)],          # the merge section; the start
     [True, True, False, False]),
])
def test_an_ego_placed_on_before_or_beside_its_exit(name, placements, expected):
    highway, batched = _flags(name, placements)
    assert highway == expected
    assert batched == expected


@pytest.mark.slow
@pytest.mark.parametrize("name, seeds, target_mps, substeps", [
    ("roundabout", (0,), 8.0, 540),              # enters the exit lane at substep 511
    ("intersection", (2,), 8.0, 395),            # 367; seeds 0, 1: crossing traffic hits it
    ("merge", (0,), 25.0, 590),                  # 562; seeds 1-3: it runs into a slower lead
])
def test_both_backends_flag_the_same_substeps_along_the_route(name, seeds, target_mps,
                                                             substeps):
    """Seeded episodes (the scenario's traffic) driven along the ego's route by one
    controller reading the highway backend's map once per 0.1 s tick, the same commands
    on both backends: the flag agrees at every substep, and every ego enters its exit road
    once and stays on it."""
    inits = [generate(name, make_config(name), seed, F) for seed in seeds]
    singles = []
    for init in inits:
        backend = HighwayBackend(F)
        backend.reset(init)
        singles.append(backend)
    batched = NetworkBackend(len(inits), name, F)
    batched.reset(inits)
    history = []
    for k in range(substeps):
        flags = batched.snapshot().ego_on_route_exit
        for b, single in enumerate(singles):
            assert bool(single.snapshot().ego_on_route_exit[0]) == bool(flags[b]), (b, k)
        history.append(flags)
        if k % 5 == 0:
            commands = [pure_pursuit(single.road_map()["route"][0], float(single.ego.speed),
                                      target_mps) for single in singles]
        for single, command in zip(singles, commands):
            single.substep([Piece(1.0 / F, command)])
        first = torch.as_tensor(np.array([c.as_array() for c in commands]))
        with kernel_threads(1):              # one world: a parallel launch only waits
            batched.substep(torch.full((len(inits),), 1.0 / F, dtype=torch.float64), first,
                            first)
    history = np.array(history)                                  # (substeps, B)
    assert not history[0].any()
    for b in range(len(inits)):
        entered = np.flatnonzero(np.diff(history[:, b].astype(int)) == 1)
        assert len(entered) == 1 and history[entered[0] + 1:, b].all(), b
        assert not batched.state.crashed[b, EGO]
