"""The intersection's right-of-way rules (`envs.backends.regulation`): the highway backend
runs highway-env's `RegulatedRoad` rules where and when `road.step` would, spares the
vehicles that must not yield, and both backends make a hand-built pair yield by the rule
(lower priority yields; at equal priority the one behind), at the 2 Hz cadence.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from highway_env.road.regulation import RegulatedRoad
from reflexdrive.envs.backends.batched.network_backend import NetworkBackend
from reflexdrive.envs.backends.highway import HighwayBackend, build_road
from reflexdrive.envs.backends.regulation import (
    REGULATED_KINDS,
    regulation_due,
    regulation_period,
)
from reflexdrive.envs.scenarios import (
    HazardPlan,
    RoadSpec,
    ScenarioInit,
    VehicleInit,
    generate,
    make_config,
    without_hazard,
)
from reflexdrive.envs.types import Command, Piece

F = 50
DT = 1.0 / F
PERIOD = 25
"""Substeps between enforcements at 50 Hz: `int(1 / 0.02 / 2)`."""


def test_cadence_is_highway_envs():
    # RegulatedRoad.step: steps += 1, then enforce when steps % int(1 / dt / 2) == 0
    assert regulation_period(1 / 50) == PERIOD
    assert regulation_period(1 / 15) == 7                  # intersection-v0's 15 Hz
    due = [k for k in range(100) if regulation_due(k, PERIOD)]
    assert due == [24, 49, 74, 99]


def test_regulated_kinds_are_highway_envs_regulated_roads():
    for kind in ("straight", "merge", "roundabout", "intersection"):
        road = build_road(RoadSpec(kind=kind), 0)
        assert isinstance(road, RegulatedRoad) == (kind in REGULATED_KINDS), kind


def yields_per_substep(backend: HighwayBackend) -> list[bool]:
    return [bool(getattr(v, "is_yielding", False)) for v in backend.road.vehicles]


@pytest.mark.parametrize("seed", [1, 3, 4, 5, 6, 7, 8])
def test_highway_backend_regulates_as_road_step(seed):
    """With the ego cruising (zero command), `HighwayBackend.substep` gives what
    highway-env's own loop gives (`road.act()`, then `RegulatedRoad.step(dt)`, which
    enforces the rules every 25th call, steps every vehicle, the ego included, and checks
    every pair for collisions): the same positions, speeds, yield flags and crashed flags
    at every substep, over 10 s with yields (seeds 0 and 2 have none). In seed 5 two
    traffic vehicles crash into each other and not the ego."""
    init = generate("intersection", make_config("intersection"), seed, F)
    ours, theirs = HighwayBackend(F), HighwayBackend(F)
    ours.reset(init)
    theirs.reset(init)
    yielded = 0
    for _ in range(10 * F):
        ours.substep([Piece(DT, Command(0.0, 0.0))])
        theirs.road.act()
        theirs.road.step(DT)
        for a, b in zip(ours.road.vehicles, theirs.road.vehicles):
            np.testing.assert_allclose(a.position, b.position, rtol=0, atol=1e-12)
            assert a.speed == pytest.approx(b.speed, abs=1e-12)
            assert a.crashed == b.crashed
        flags = yields_per_substep(ours)
        assert flags == yields_per_substep(theirs)
        yielded += sum(flags)
    assert yielded > 0
    if seed == 5:
        assert [v.crashed for v in ours.road.vehicles] == [False] * 4 + [True, False, True]


def crossing_yields(init: ScenarioInit, substeps: int) -> tuple[bool, set]:
    """Run `init` on the highway backend (zero command); whether its slot-1 vehicle ever
    yielded, and the target speeds it had."""
    backend = HighwayBackend(F)
    backend.reset(init)
    crossing = backend.road.vehicles[1]
    yielded, targets = False, set()
    for _ in range(substeps):
        backend.substep([Piece(DT, Command(0.0, 0.0))])
        yielded |= bool(getattr(crossing, "is_yielding", False))
        targets.add(float(crossing.target_speed))
    return yielded, targets


def test_crossing_vehicle_never_yields_to_the_rules():
    """intersection-cross-traffic's crossing vehicle (`regulated=False`) and its twin keep
    their target speed; the same vehicle made regulatable would yield (to the ego, on the
    priority road) in every seed: the flag is what spares it."""
    name = "intersection-cross-traffic"
    for seed in range(3):
        init = generate(name, make_config(name), seed, F)
        assert not init.vehicles[1].regulated
        start = init.vehicles[1].target_speed_mps
        substeps = 3 * F
        for world in (init, without_hazard(init)):
            yielded, targets = crossing_yields(world, substeps)
            assert not yielded
            assert targets == {start}
        vehicles = list(init.vehicles)
        vehicles[1] = dataclasses.replace(vehicles[1], regulated=True)
        yielded, targets = crossing_yields(dataclasses.replace(init, vehicles=tuple(vehicles)),
                                           substeps)
        assert yielded and 0.0 in targets


def two_vehicle_world(vehicles: list[VehicleInit]) -> ScenarioInit:
    """The intersection with a parked ego far up the north approach (it conflicts with
    nobody) and `vehicles`."""
    ego = VehicleInit(("o2", "ir2", 0), 0.0, 0.0, 0.0, "ego", destination="o0")
    return ScenarioInit(name="intersection", seed=0, simulation_frequency=F,
                        road=RoadSpec(kind="intersection"), vehicles=(ego, *vehicles),
                        hazard=HazardPlan(), duration_s=2.0)


def run_both(init: ScenarioInit, substeps: int) -> tuple[np.ndarray, np.ndarray]:
    """`(substeps, N)` yield flags and target speeds [m/s] on the highway backend; asserts
    that the batched backend has the same at every substep."""
    highway = HighwayBackend(F)
    highway.reset(init)
    batched = NetworkBackend(1, "intersection", F)
    batched.reset([init])
    zero = torch.zeros((1, 2), dtype=torch.float64)
    flags, targets = [], []
    for _ in range(substeps):
        highway.substep([Piece(DT, Command(0.0, 0.0))])
        batched.substep(torch.full((1,), DT, dtype=torch.float64), zero, zero)
        vehicles = highway.road.vehicles
        flags.append([bool(getattr(v, "is_yielding", False)) for v in vehicles])
        targets.append([float(getattr(v, "target_speed", 0.0)) for v in vehicles])
        n = len(vehicles)
        assert batched.state.is_yielding[0, :n].tolist() == flags[-1]
        np.testing.assert_allclose(batched.state.target_speed[0, :n].numpy(), targets[-1],
                                   rtol=0, atol=1e-12)
    return np.array(flags), np.array(targets)


def test_lower_priority_yields_at_the_enforcement():
    """A vehicle on the priority road (west approach, priority 3) and one on the side road
    (south approach, priority 1) both 19 m from the conflict point at 8 m/s, going
    straight: their constant-speed predictions meet within 3 s, so at the first enforcement
    (substep 24, t = 0.48 s) and not before, the side road's vehicle yields (target speed
    0), the other does not; IDM then brakes it."""
    main = VehicleInit(("o1", "ir1", 0), 92.0, 8.0, 8.0, lane_changes=False, destination="o3")
    side = VehicleInit(("o0", "ir0", 0), 92.0, 8.0, 8.0, lane_changes=False, destination="o2")
    flags, targets = run_both(two_vehicle_world([main, side]), 2 * PERIOD)
    assert not flags[:24].any()
    assert flags[24].tolist() == [False, False, True]
    assert targets[24, 2] == 0.0 and targets[24, 1] == 8.0


def test_vehicle_behind_yields_at_equal_priority():
    """Two vehicles on the same approach (equal priority), the one behind faster: their
    predictions come within a length, and the one behind (larger `front_distance_to`)
    yields at the first enforcement."""
    front = VehicleInit(("o1", "ir1", 0), 78.0, 5.0, 5.0, lane_changes=False, destination="o3")
    rear = VehicleInit(("o1", "ir1", 0), 70.0, 9.0, 9.0, lane_changes=False, destination="o3")
    flags, targets = run_both(two_vehicle_world([front, rear]), PERIOD)
    assert not flags[:24].any()
    assert flags[24].tolist() == [False, False, True]
    assert targets[24, 2] == 0.0


def test_yield_lasts_one_period():
    """`YIELD_DURATION = 0`: each enforcement first releases every yielding vehicle (target
    speed: its lane's limit, 10 m/s), then makes yield those still in conflict, so the
    flags change only at enforcements, a yield is renewed while the conflict lasts (the
    slowed side-road vehicle's prediction may clear it for a period), and once the
    priority-road vehicle has passed the side-road one drives on at the speed limit. (The
    side-road vehicle starts 25 m from the conflict point: from 19 m, released between two
    yields, it creeps into the other's path and both crash, as in highway-env.)"""
    main = VehicleInit(("o1", "ir1", 0), 92.0, 8.0, 8.0, lane_changes=False, destination="o3")
    side = VehicleInit(("o0", "ir0", 0), 86.0, 8.0, 8.0, lane_changes=False, destination="o2")
    flags, targets = run_both(two_vehicle_world([main, side]), 10 * PERIOD)
    enforcements = set(range(24, 10 * PERIOD, PERIOD))
    for k in range(1, 10 * PERIOD):
        if k not in enforcements:
            assert (flags[k] == flags[k - 1]).all() and (targets[k] == targets[k - 1]).all()
    released = [k for k in sorted(enforcements) if flags[k - PERIOD, 2] and not flags[k, 2]]
    assert released and all(targets[k, 2] == 10.0 for k in released)
    assert flags[24:5 * PERIOD, 2].sum() >= 2 * PERIOD       # it yields at least 2 periods
    assert not flags[-4 * PERIOD:, 2].any()                   # the conflict is over
    assert targets[-1, 2] == 10.0


def test_others_yield_to_the_ego_which_never_yields():
    """The ego on the priority road (a plain `Vehicle`: predicted with its steering, never
    made to yield) and a side-road vehicle meeting it: the side-road vehicle yields at the
    first enforcement, on both backends; with the roles swapped (the ego on the side road)
    nobody yields."""
    def world(ego_lane, other_lane, destinations):
        ego = VehicleInit(ego_lane, 92.0, 8.0, 8.0, "ego", destination=destinations[0])
        other = VehicleInit(other_lane, 92.0, 8.0, 8.0, lane_changes=False,
                            destination=destinations[1])
        return dataclasses.replace(two_vehicle_world([]), vehicles=(ego, other))

    flags, targets = run_both(world(("o1", "ir1", 0), ("o0", "ir0", 0), ("o3", "o2")),
                              PERIOD)
    assert not flags[:24].any() and flags[24].tolist() == [False, True]
    assert targets[24, 1] == 0.0
    flags, _ = run_both(world(("o0", "ir0", 0), ("o1", "ir1", 0), ("o2", "o3")), 3 * PERIOD)
    assert not flags.any()
