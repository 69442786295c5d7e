"""Traffic does not drive backwards (`envs.backends.traffic_vehicle.TrafficVehicle`), on the
highway backend and in both batched kernels: an IDM vehicle standing closer than the jam
distance behind a stopped one brakes and, in highway-env's own `IDMVehicle`, reverses."""

from __future__ import annotations

import pytest
import torch
from highway_env.vehicle.behavior import IDMVehicle
from reflexdrive.envs.backends.batched import BatchedBackend
from reflexdrive.envs.backends.batched.network_backend import NetworkBackend
from reflexdrive.envs.backends.highway import HighwayBackend
from reflexdrive.envs.backends.traffic_vehicle import TrafficVehicle
from reflexdrive.envs.scenarios import HazardPlan, RoadSpec, ScenarioInit, VehicleInit
from reflexdrive.envs.types import Command, Piece

F, DT, SECONDS = 50, 1.0 / 50, 2.0
STOPPED_S, FOLLOWER_S = 300.0, 293.0
"""A stopped car and an IDM car at standstill 7 m behind it (centres; a 2 m bumper gap,
under the jam distance `d0` = 10 m): the IDM's interaction term alone is
`-3 (10 / 7)^2` = -6.1 m/s^2, bounded at -6."""

FLOOR_MPS = IDMVehicle.ACC_MAX * DT + 1e-12
"""How far below 0 the bounded speed goes [m/s]: one substep at -6 m/s^2 takes it to
-0.12, after which `clip_actions` accelerates it by the shortfall (`1/s * (0 - v)`), so it
decays back towards 0 with a 1 s time constant."""
CREEP_M = IDMVehicle.ACC_MAX * DT * 1.0 + 1e-9
"""The most it can roll back: `0.12 m/s * 1 s` (the integral of that decay) [m]."""


def queue(kind: str) -> ScenarioInit:
    """The ego parked 100 m behind, the stopped car (static) and the IDM follower."""
    lane = ("0", "1", 0)
    vehicles = (VehicleInit(lane, 200.0, 0.0, 0.0, "ego"),
                VehicleInit(lane, STOPPED_S, 0.0, 0.0, "static"),
                VehicleInit(lane, FOLLOWER_S, 0.0, 0.0, "idm", lane_changes=False))
    return ScenarioInit("hand-made", 0, F, RoadSpec(kind=kind, lanes=1), vehicles,
                        HazardPlan(), SECONDS)


def test_highway_envs_idm_reverses_and_traffic_vehicle_does_not():
    backend = HighwayBackend(F)
    backend.reset(queue("straight"))
    follower = backend.road.vehicles[2]
    assert type(follower) is TrafficVehicle and TrafficVehicle.MIN_SPEED == 0.0
    for _ in range(int(SECONDS * F)):
        backend.substep([Piece(DT, Command(0.0, 0.0))])
    assert follower.speed >= -FLOOR_MPS
    assert follower.position[0] == pytest.approx(FOLLOWER_S, abs=CREEP_M)

    backend.reset(queue("straight"))
    follower = backend.road.vehicles[2]
    follower.MIN_SPEED = IDMVehicle.MIN_SPEED          # highway-env's own bound, -40 m/s
    for _ in range(int(SECONDS * F)):
        backend.substep([Piece(DT, Command(0.0, 0.0))])
    assert follower.speed < -1.0 and follower.position[0] < FOLLOWER_S - 2.0   # reversed


def zero_commands(batch: int):
    zero = torch.zeros((batch, 2), dtype=torch.float64)
    return torch.full((batch,), DT, dtype=torch.float64), zero, zero


def test_straight_kernel_bounds_the_speed():
    """The batched straight-road kernel keeps the follower as the highway backend does."""
    straight = BatchedBackend(1, F)
    straight.reset([queue("straight")])
    for _ in range(int(SECONDS * F)):
        straight.substep(*zero_commands(1))
    assert float(straight.state.speed[0, 2]) >= -FLOOR_MPS
    assert float(straight.state.position[0, 2, 0]) == pytest.approx(FOLLOWER_S, abs=CREEP_M)


def test_network_kernel_bounds_the_speed():
    """On the merge's highway lane ("a", "b", 0) the road-network kernel keeps it as the
    highway backend does, to 1e-9."""
    lane = ("a", "b", 0)
    vehicles = (VehicleInit(lane, 20.0, 0.0, 0.0, "ego", destination="d"),
                VehicleInit(lane, 100.0, 0.0, 0.0, "static", destination="d"),
                VehicleInit(lane, 93.0, 0.0, 0.0, "idm", lane_changes=False, destination="d"))
    init = ScenarioInit("merge", 0, F, RoadSpec(kind="merge"), vehicles, HazardPlan(), SECONDS)
    network = NetworkBackend(1, "merge", F)
    network.reset([init])
    highway = HighwayBackend(F)
    highway.reset(init)
    for _ in range(int(SECONDS * F)):
        network.substep(*zero_commands(1))
        highway.substep([Piece(DT, Command(0.0, 0.0))])
    follower = highway.road.vehicles[2]
    assert float(network.state.speed[0, 2]) == pytest.approx(follower.speed, abs=1e-9)
    assert follower.speed >= -FLOOR_MPS
    assert float(network.state.position[0, 2, 0]) == pytest.approx(follower.position[0],
                                                                    abs=1e-9)
