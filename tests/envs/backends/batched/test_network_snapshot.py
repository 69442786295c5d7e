"""`network_snapshot` against `HighwayBackend.snapshot` for the same worlds and commands
(merge, roundabout, intersection with its right-of-way rules; lane changes off): every
field at every substep, the ego's lane offset, heading error, lane index and count and
on-road flag included, while the egos drift across lanes, around curves and off the
road."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from reflexdrive.envs.backends.batched.lanes import NETWORK_KINDS, scenario_layout, torch_tables
from reflexdrive.envs.backends.batched.network_snapshot import network_snapshot
from reflexdrive.envs.backends.batched.network_state import network_state
from reflexdrive.envs.backends.batched.numba.network_traffic import network_substep_cpu
from reflexdrive.envs.backends.batched.numba.regulation import network_substep_regulated
from reflexdrive.envs.backends.batched.state import Params
from reflexdrive.envs.backends.highway import HighwayBackend
from reflexdrive.envs.backends.regulation import REGULATED_KINDS
from reflexdrive.envs.scenarios import generate, make_config
from reflexdrive.envs.types import Command, Piece

F = 50
SEEDS = (0, 1, 2, 3)
SUBSTEPS = 300
FLOAT_TOL = 1e-6


def inits_without_lane_changes(name: str):
    inits = []
    for seed in SEEDS:
        init = generate(name, make_config(name), seed, F)
        inits.append(dataclasses.replace(init, vehicles=tuple(
            dataclasses.replace(v, lane_changes=False) if v.behavior == "idm" else v
            for v in init.vehicles)))
    return inits


@pytest.mark.parametrize("name", NETWORK_KINDS)
def test_network_snapshot_matches_highway_backend(name):
    inits = inits_without_lane_changes(name)
    layout = scenario_layout(name)
    tables = torch_tables(layout.tables)
    params = Params.from_highway_env(F)
    state = network_state(inits, layout, name)
    backends = []
    for init in inits:
        backend = HighwayBackend(F)
        backend.reset(init)
        backends.append(backend)
    # world b steers at a constant (b - 1.5) * 0.02 rad: two drift left, two right
    steering = (np.arange(len(SEEDS)) - 1.5) * 0.02
    # as `NetworkBackend.substep`: the intersection's right-of-way rules where highway-env
    # has them (the highway backend runs them)
    step = network_substep_regulated if name in REGULATED_KINDS else network_substep_cpu
    seen = dict(off_road=0, lane_ids=set(), heading_error=0.0)
    for k in range(SUBSTEPS + 1):
        got = network_snapshot(tables, state, params.dt, params.lane_vehicle_length)
        for b, backend in enumerate(backends):
            want = backend.snapshot()
            n = want.valid.shape[1]
            for field in dataclasses.fields(want):
                expected = getattr(want, field.name)
                actual = getattr(got, field.name)[b:b + 1]
                if actual.ndim >= 2:
                    actual = actual[:, :n]
                if expected.dtype.kind == "f":
                    np.testing.assert_allclose(actual, expected, rtol=0, atol=FLOAT_TOL,
                                               err_msg=f"{field.name} at substep {k}")
                else:
                    np.testing.assert_array_equal(actual, expected,
                                                  err_msg=f"{field.name} at substep {k}")
            seen["off_road"] += int(not want.ego_on_road[0])
            seen["lane_ids"].add(int(want.ego_lane_index[0]))
            seen["heading_error"] = max(seen["heading_error"],
                                        abs(float(want.ego_heading_error[0])))
        if k == SUBSTEPS:
            break
        command = np.stack([np.full(len(SEEDS), 0.5), steering], axis=-1)
        command = torch.as_tensor(command)
        state = step(params, layout.tables, state,
                     torch.full((len(SEEDS),), params.dt, dtype=torch.float64), command, command)
        for b, backend in enumerate(backends):
            backend.substep([Piece(params.dt, Command(0.5, float(steering[b])))])
    assert seen["off_road"] > 0                  # some ego left the road ...
    assert seen["heading_error"] > 0.1           # ... at an angle to its lane
