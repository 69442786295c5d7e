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


def test_bad_arguments():
    with pytest.raises(ConfigError, match="device='cuda'"):
        NetworkBackend(2, "merge", F, device="cuda")
    with pytest.raises(ConfigError, match="road.kind='moon'"):
        NetworkBackend(2, "moon", F)
    backend = NetworkBackend(1, "merge", F)
    with pytest.raises(ConfigError, match="road.kind='roundabout'"):
        backend.reset(inits("roundabout", (0,)))
