"""Parity of the batched road-network substep with highway-env (merge, roundabout,
intersection): the torch substep and the numba kernel with lane changes disabled, the
kernel with the scenarios' own MOBIL traffic and the collisions of every pair.

Each scenario's `ScenarioInit`s (several seeds, every IDM vehicle with `lane_changes=False`
unless a test says otherwise) run on highway-env's own objects (the road and vehicles the
highway backend builds: each substep `road.act()`, every vehicle but the ego steps `dt`,
then the ego applies its command; `Road.step`'s collision loop where the batched side
detects collisions) and on one batched `NetworkState` holding all seeds, with
the same varied ego commands. Over 10 s (500 substeps at 50 Hz) every vehicle's position
must agree within 1e-3 m and speed within 1e-3 m/s, and every vehicle's target lane
(its route decisions at lane ends) must be the same at every substep.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from reflexdrive.envs.backends.batched.lanes import NETWORK_KINDS, scenario_layout, torch_tables
from reflexdrive.envs.backends.batched.network_state import network_state
from reflexdrive.envs.backends.batched.numba.network_traffic import network_step_cpu
from reflexdrive.envs.backends.batched.state import Params
from reflexdrive.envs.backends.batched.torch.network_traffic import network_step
from reflexdrive.envs.backends.highway import _make_vehicle, build_road
from reflexdrive.envs.scenarios import generate, make_config

F = 50
DT = 1.0 / F
SUBSTEPS = 500
SEEDS = (0, 1, 2)
POSITION_TOL_M = 1e-3
SPEED_TOL_MPS = 1e-3


def without_lane_changes(name: str, seed: int):
    init = generate(name, make_config(name), seed, F)
    vehicles = tuple(dataclasses.replace(v, lane_changes=False) if v.behavior == "idm" else v
                     for v in init.vehicles)
    return dataclasses.replace(init, vehicles=vehicles)


def ego_commands(worlds: int, substeps: int, acceleration=(-1.0, 1.0), steering=0.02
                 ) -> np.ndarray:
    """`(substeps, worlds, 2)` varied `[acceleration m/s^2, steering rad]` (uniform in
    `acceleration` and `+-steering`)."""
    rng = np.random.default_rng(7)
    return np.stack([rng.uniform(*acceleration, (substeps, worlds)),
                     rng.uniform(-steering, steering, (substeps, worlds))], axis=-1)


def numba_step(params, layout, state, command):
    """The numba kernel's substep on `layout`'s numpy tables (collisions on: the highway-env
    side handles them too)."""
    return network_step_cpu(params, layout.tables, state, command)


def torch_step(params, layout, state, command):
    """The torch substep on `layout`'s tables as tensors."""
    return network_step(params, torch_tables(layout.tables), state, command)


STEPS = {"torch": torch_step, "numba": numba_step}


def run_parity(name: str, step, seeds=SEEDS, substeps=SUBSTEPS, collisions=False,
               commands=None, inits=None) -> dict:
    """Run both sides (`step(params, layout, state, command)`, one of `STEPS`); return the
    max errors, the decision counts and the worlds whose ego crashed (with `collisions`
    the highway-env side runs `Road.step`'s collision loop over every pair after each
    substep, as `HighwayBackend.substep` on road networks, and crashed flags must agree at
    every substep)."""
    if inits is None:
        inits = [without_lane_changes(name, seed) for seed in seeds]
    layout = scenario_layout(name)
    params = Params.from_highway_env(F)
    state = network_state(inits, layout, name)
    if commands is None:
        commands = ego_commands(len(inits), substeps)
    worlds = []
    for init in inits:
        road = build_road(init.road, init.seed)
        vehicles = [_make_vehicle(road, v, j, init.hazard, DT) for j, v in enumerate(init.vehicles)]
        road.vehicles.extend(vehicles)
        worlds.append((road, vehicles, vehicles + list(road.objects)))
    result = dict(position_error=0.0, speed_error=0.0, decisions=0, mismatches=[],
                  vehicles=int(state.valid.sum()), crashed=set(), traffic_crashed=set(),
                  lane_changes=0)
    previous = [[v.target_lane_index if hasattr(v, "target_lane_index") else None
                 for v in vehicles] for _, vehicles, _ in worlds]
    for k in range(substeps):
        state = step(params, layout, state, torch.as_tensor(commands[k]))
        for b, (road, vehicles, bodies) in enumerate(worlds):
            ego = vehicles[0]
            road.act()
            for vehicle in road.vehicles:
                if vehicle is not ego:
                    vehicle.step(DT)
            ego.act({"acceleration": max(commands[k, b, 0], -max(ego.speed, 0.0) / DT),
                     "steering": commands[k, b, 1]})
            ego.step(DT)
            if collisions:            # `Road.step`'s loop, as `HighwayBackend.substep`
                for i, vehicle in enumerate(road.vehicles):
                    for other in road.vehicles[i + 1:]:
                        vehicle.handle_collisions(other, DT)
                    for other in road.objects:
                        vehicle.handle_collisions(other, DT)
                crashed = np.array([bool(o.crashed) for o in bodies])
                if not np.array_equal(state.crashed[b, :len(bodies)].numpy(), crashed):
                    result["mismatches"].append((k, b, "crashed"))
                if ego.crashed:
                    result["crashed"].add(b)
                if any(o.crashed for o in vehicles[1:]):
                    result["traffic_crashed"].add(b)
            n = len(bodies)
            position = np.array([o.position for o in bodies])
            speed = np.array([o.speed for o in bodies])
            result["position_error"] = max(result["position_error"], float(
                np.abs(state.position[b, :n].numpy() - position).max()))
            result["speed_error"] = max(result["speed_error"], float(
                np.abs(state.speed[b, :n].numpy() - speed).max()))
            for j, vehicle in enumerate(vehicles):
                if not hasattr(vehicle, "target_lane_index"):
                    continue
                if vehicle.target_lane_index != previous[b][j]:
                    result["decisions"] += 1
                    old = previous[b][j]
                    if old is not None and tuple(old[:2]) == tuple(
                            vehicle.target_lane_index[:2]):
                        result["lane_changes"] += 1      # a new lane on the same road
                    previous[b][j] = vehicle.target_lane_index
                got = layout.lane_names[int(state.target_lane[b, j])]
                if got != tuple(vehicle.target_lane_index):
                    result["mismatches"].append((k, b, j, got, vehicle.target_lane_index))
    return result


@pytest.mark.parametrize("implementation", sorted(STEPS))
@pytest.mark.parametrize("name", NETWORK_KINDS)
def test_network_step_matches_highway_env(name, implementation):
    # the kernel detects collisions, the torch substep does not: highway-env follows suit
    result = run_parity(name, STEPS[implementation], collisions=implementation == "numba")
    assert result["mismatches"] == []
    assert result["decisions"] >= len(SEEDS)        # vehicles do reach lane ends and turn
    assert result["position_error"] < POSITION_TOL_M
    assert result["speed_error"] < SPEED_TOL_MPS


@pytest.mark.parametrize("name", ["merge", "roundabout"])
def test_torch_substep_refuses_mobil_on_multi_lane_roads(name):
    from reflexdrive.common.validation import ConfigError

    init = generate(name, make_config(name), 0, F)
    layout = scenario_layout(name)
    state = network_state([init], layout, name)
    with pytest.raises(ConfigError, match=r"lane_changes.*MOBIL"):
        network_step(Params.from_highway_env(F), torch_tables(layout.tables), state,
                     torch.zeros((1, 2), dtype=torch.float64))


@pytest.mark.parametrize("name", NETWORK_KINDS)
def test_numba_mobil_traffic_matches_highway_env(name):
    """The scenarios' own traffic (`lane_changes=True`: MOBIL with highway-env's route rule,
    abort rule and timers), 12 seeds over 10 s: the same lane changes (target lanes at
    every substep), positions and crashes of every vehicle as highway-env (on the
    roundabout and the intersection traffic also crashes where the ego does not)."""
    seeds = tuple(range(12))
    inits = [generate(name, make_config(name), seed, F) for seed in seeds]
    assert all(v.lane_changes for init in inits for v in init.vehicles if v.behavior == "idm")
    result = run_parity(name, numba_step, seeds=seeds, collisions=True, inits=inits)
    assert result["mismatches"] == []
    assert result["position_error"] < POSITION_TOL_M
    assert result["speed_error"] < SPEED_TOL_MPS
    if name != "intersection":              # one-lane roads: MOBIL never changes a lane
        assert result["lane_changes"] >= 1
    if name != "merge":      # traffic crashing into traffic where the ego does not
        assert result["traffic_crashed"] - result["crashed"]


KERNEL_TOL = 1e-9


@pytest.mark.parametrize("name", NETWORK_KINDS)
def test_numba_network_step_matches_torch(name):
    """The kernel and the torch substep from the same state (several seeds in one batch,
    varied ego commands, 10 s): floats within 1e-9, lanes, targets and route pointers
    identical at every substep, fields a substep does not write shared."""
    inits = [without_lane_changes(name, seed) for seed in SEEDS]
    layout = scenario_layout(name)
    tables = torch_tables(layout.tables)
    params = Params.from_highway_env(F)
    reference = kernel = network_state(inits, layout, name)
    commands = ego_commands(len(inits), SUBSTEPS)
    error, moved = 0.0, 0.0
    for k in range(SUBSTEPS):
        command = torch.as_tensor(commands[k])
        reference = network_step(params, tables, reference, command)
        kernel = network_step_cpu(params, layout.tables, kernel, command, collisions=False)
        for field in ("position", "heading", "speed", "steering", "acceleration"):
            error = max(error, float((getattr(reference, field)
                                      - getattr(kernel, field)).abs().max()))
        for field in ("lane", "target_lane", "route_next", "substep"):
            assert torch.equal(getattr(reference, field), getattr(kernel, field)), (k, field)
    moved = float((kernel.position - network_state(inits, layout, name).position).abs().max())
    assert error < KERNEL_TOL
    assert moved > 50.0                              # the worlds did move


@pytest.mark.parametrize("name", NETWORK_KINDS)
def test_torch_pair_collisions_match_the_kernel(name):
    """Phase 3 in torch (`network_step(..., collisions=True)`, `pair_collisions`) and in the
    kernel: 12 seeds of the scenario's traffic (lane changes off where MOBIL could act, the
    torch substep has none), 10 s of varied ego commands: crashed flags, pending impacts and
    impacts identical at every substep, floats within 1e-9; traffic crashes into traffic
    in some world where the ego does not (roundabout, intersection)."""
    seeds = tuple(range(12))
    inits = [generate(name, make_config(name), seed, F) if name == "intersection"
             else without_lane_changes(name, seed) for seed in seeds]
    layout = scenario_layout(name)
    tables = torch_tables(layout.tables)
    params = Params.from_highway_env(F)
    reference = kernel = network_state(inits, layout, name)
    commands = ego_commands(len(inits), SUBSTEPS)
    error = 0.0
    for k in range(SUBSTEPS):
        command = torch.as_tensor(commands[k])
        reference = network_step(params, tables, reference, command, collisions=True)
        kernel = network_step_cpu(params, layout.tables, kernel, command)
        for field in ("crashed", "impact_pending"):
            assert torch.equal(getattr(reference, field), getattr(kernel, field)), (k, field)
        for field in ("position", "heading", "speed", "impact"):
            error = max(error, float((getattr(reference, field)
                                      - getattr(kernel, field)).abs().max()))
    assert error < KERNEL_TOL
    traffic_only = kernel.crashed[:, 1:].any(dim=1) & ~kernel.crashed[:, 0]
    if name != "merge":
        assert bool(traffic_only.any())


@pytest.mark.parametrize("name", NETWORK_KINDS)
def test_numba_network_threads_do_not_change_results(name):
    """The kernel on the calling thread alone (`threads=1`, what B = 1 gets), on every
    numba thread, and world by world (B = 1 each) gives the same bits: 40 worlds (three
    work items of `WORLDS_PER_TASK`, varied seeds, MOBIL traffic, collisions on) over 2 s."""
    seeds = tuple(range(40))
    layout = scenario_layout(name)
    params = Params.from_highway_env(F)
    inits = [generate(name, make_config(name), seed % 12, F) for seed in seeds]
    initial = serial = parallel = network_state(inits, layout, name)
    singles = [network_state([init], layout, name, slots=serial.valid.shape[1],
                             route_width=serial.route_road.shape[-1]) for init in inits]
    commands = ego_commands(len(inits), 100, acceleration=(-3.0, 2.0), steering=0.2)
    for k in range(100):
        command = torch.as_tensor(commands[k])
        serial = network_step_cpu(params, layout.tables, serial, command, threads=1)
        parallel = network_step_cpu(params, layout.tables, parallel, command)
        singles = [network_step_cpu(params, layout.tables, single, command[b:b + 1])
                   for b, single in enumerate(singles)]
    for field in dataclasses.fields(serial):
        one, many = getattr(serial, field.name), getattr(parallel, field.name)
        assert torch.equal(one, many), field.name
        assert torch.equal(one, torch.cat([getattr(s, field.name) for s in singles])), \
            field.name
    assert float((serial.position - initial.position).abs().max()) > 10.0   # they moved
