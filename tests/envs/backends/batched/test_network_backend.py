"""`NetworkBackend`: partial resets put a fresh world into its row (the others untouched),
inactive worlds stay frozen, and the geometry is the highway backend's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from reflexdrive.envs.backends.batched.lanes import scenario_layout
from reflexdrive.envs.backends.batched.network_backend import NetworkBackend
from reflexdrive.envs.backends.batched.network_state import network_state
from reflexdrive.envs.backends.highway import HighwayBackend
from reflexdrive.envs.backends.highway_map import HighwayRoadMap
from reflexdrive.envs.scenarios import generate, make_config

from reflexdrive.common.validation import ConfigError

F = 50


def inits(name, seeds):
    return [generate(name, make_config(name), seed, F) for seed in seeds]


def test_partial_reset_and_inactive_worlds():
    backend = NetworkBackend(3, "roundabout", F)
    backend.reset(inits("roundabout", (0, 1, 2)))
    command = torch.zeros((3, 2), dtype=torch.float64)
    first_s = torch.full((3,), 1.0 / F, dtype=torch.float64)
    for _ in range(20):
        backend.substep(first_s, command, command)
    before = backend.state
    backend.reset([None, inits("roundabout", (7,))[0], None])
    fresh = network_state(inits("roundabout", (7,)), scenario_layout("roundabout"),
                          "roundabout", slots=before.valid.shape[1],
                          route_width=before.route_road.shape[-1])
    after = backend.state
    for field in dataclasses.fields(after):
        value = getattr(after, field.name)
        assert torch.equal(value[1], getattr(fresh, field.name)[0]), field.name
        assert torch.equal(value[[0, 2]], getattr(before, field.name)[[0, 2]]), field.name
    assert backend.substep_index.tolist() == [20, 0, 20]
    backend.substep(first_s, command, command, active=torch.tensor([True, False, True]))
    assert backend.substep_index.tolist() == [21, 0, 21]
    assert torch.equal(backend.state.position[1], after.position[1])
    assert not torch.equal(backend.state.position[0], after.position[0])


def test_geometry_is_the_highway_backends():
    backend = NetworkBackend(2, "merge", F)
    single = HighwayBackend(F)
    single.reset(inits("merge", (0,))[0])
    want = single.road_geometry()
    got = backend.road_geometry()
    for field in dataclasses.fields(want):
        expected = getattr(want, field.name)
        np.testing.assert_array_equal(getattr(got, field.name),
                                      np.broadcast_to(expected, (2,) + expected.shape[1:]))


@pytest.mark.parametrize("name", ["merge", "roundabout", "intersection"])
def test_road_map_equals_the_highway_road_map_world_by_world(name):
    worlds = 24
    backend = NetworkBackend(worlds, name, F)
    scenes = inits(name, range(100, 100 + worlds))
    # Egos bound for several destinations (the backend maps each destination's worlds
    # together), one without any.
    others = {"merge": [None], "roundabout": ["nxs", "exr", "wxr", None],
              "intersection": ["o1", "o2", "o3", None]}[name]
    scenes = [dataclasses.replace(scene, vehicles=[dataclasses.replace(
        scene.vehicles[0], destination=others[b % len(others)])] + list(scene.vehicles[1:]))
        for b, scene in enumerate(scenes)]
    backend.reset(scenes)
    rng = np.random.default_rng(5)
    command = torch.zeros((worlds, 2), dtype=torch.float64)
    command[:, 0] = torch.as_tensor(rng.uniform(0.0, 1.5, worlds))      # along the lanes
    first_s = torch.full((worlds,), 1.0 / F, dtype=torch.float64)
    layout = scenario_layout(name)
    fanned_out = 0                   # worlds whose route leaves from another lane than theirs
    for _ in range(10):
        got = backend.road_map()
        state = backend.state
        for b in range(worlds):
            one = HighwayRoadMap(layout.network, scenes[b].vehicles[0].destination)
            position, lane = state.position[b, 0].numpy(), layout.lane_names[int(state.lane[b, 0])]
            want = one.observe(position, float(state.heading[b, 0]), lane)
            fanned_out += one.route_lane(position, lane) != lane
            for key, value in want.items():
                assert got[key][b].dtype == value.dtype, key
                np.testing.assert_array_equal(got[key][b], value[0], err_msg=f"{key} {b}")
        assert np.isposinf(got["lanes"]).any() and got["lane_on_route"].any()
        assert np.isfinite(got["route"]).any() and got["lane_valid"].sum(1).min() >= 1
        if name == "intersection":                 # highway-env's lanes there: 10 m/s
            assert (got["route_speed_limit"][np.isfinite(got["route"]).all(-1)] == 10.0).all()
        for _ in range(25):
            backend.substep(first_s, command, command)
    assert fanned_out >= 10 if name == "intersection" else True


def test_bad_arguments():
    with pytest.raises(ConfigError, match="device='cuda'"):
        NetworkBackend(2, "merge", F, device="cuda")
    with pytest.raises(ConfigError, match="road.kind='moon'"):
        NetworkBackend(2, "moon", F)
    backend = NetworkBackend(1, "merge", F)
    with pytest.raises(ConfigError, match="road.kind='roundabout'"):
        backend.reset(inits("roundabout", (0,)))
