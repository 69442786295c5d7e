"""Parity of the hazards on road networks: the batched `NetworkBackend` against the highway
backend, episode by episode (cross traffic at the intersection, a stopped vehicle on a
curve; each with its hazard-removed twin).

Each seed's episode and twin run on `HighwayBackend` (one world each, its `HazardTracker`
measuring along the lanes, as `DrivingEnv` does) and together on one `NetworkBackend`
(its `BatchedHazardTracker` given each world's `RoadLanes`, as `BatchedDrivingEnv` does),
with the same ego commands for the whole episode: every vehicle's position within 1e-3 m
and speed within 1e-3 m/s at every substep, the same crashed flags at every substep, the
same onset substep and the same criticality at the onset.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from network_backend_pairs import network_backend_pair
from reflexdrive.envs.backends.batched.hazards import BatchedHazardTracker
from reflexdrive.envs.backends.batched.network_backend import NetworkBackend
from reflexdrive.envs.hazards import HazardTracker
from reflexdrive.envs.lane_paths import RoadLanes
from reflexdrive.envs.scenarios import generate, make_config, without_hazard
from reflexdrive.envs.types import CRITICALITY_KEYS, Command, Piece

F = 50
DT = 1.0 / F
POSITION_TOL_M = 1e-3
SPEED_TOL_MPS = 1e-3


def run_pair(inits, commands) -> dict:
    """Step `inits` on both backends with `commands (substeps, B, 2)` `[m/s^2, rad]`;
    return the worst errors and, per world, `(highway, batched)` onset substeps, crash
    substeps and onset criticality."""
    batched, singles = network_backend_pair(inits, F)
    tracker = BatchedHazardTracker(len(inits), F)
    tracker.reset([init.hazard for init in inits], [init.duration_s for init in inits],
                  [RoadLanes.of(batched.network(b), init) for b, init in enumerate(inits)])
    tracker.update(batched.state, batched.snapshot)
    trackers = []
    for init, single in zip(inits, singles):
        trackers.append(HazardTracker(init.hazard, F, init.duration_s,
                                      RoadLanes.of(single.road.network, init)))
        trackers[-1].update(single.snapshot(), 0)
    worlds = len(inits)
    result = dict(position_error=0.0, speed_error=0.0, crash_mismatch=[],
                  onset=[[None, None] for _ in inits], crash=[[None, None] for _ in inits])
    active = torch.ones(worlds, dtype=torch.bool)
    for k, command in enumerate(commands):
        command = torch.as_tensor(command, dtype=torch.float64)
        batched.substep(torch.full((worlds,), DT, dtype=torch.float64), command, command,
                        active=active)
        tracker.update(batched.state, batched.snapshot)
        snapshot = batched.snapshot()
        for b, single in enumerate(singles):
            if not bool(active[b]):
                continue
            single.substep([Piece(DT, Command(float(command[b, 0]), float(command[b, 1])))])
            mine = single.snapshot()
            trackers[b].update(mine, k + 1)
            valid = mine.valid[0]
            result["position_error"] = max(result["position_error"], float(np.abs(
                snapshot.position[b, :len(valid)][valid] - mine.position[0][valid]).max()))
            result["speed_error"] = max(result["speed_error"], float(np.abs(
                snapshot.speed[b, :len(valid)][valid] - mine.speed[0][valid]).max()))
            if bool(snapshot.crashed[b]) != bool(mine.crashed[0]):
                result["crash_mismatch"].append((k, b))
            for side, crashed in enumerate((bool(mine.crashed[0]), bool(snapshot.crashed[b]))):
                if crashed and result["crash"][b][side] is None:
                    result["crash"][b][side] = k + 1
            if mine.crashed[0]:
                active[b] = False              # the episode ends at the collision
    for b, single_tracker in enumerate(trackers):
        result["onset"][b] = [single_tracker.onset_substep,
                              int(tracker.onsets.onset_substep[b])]
        if single_tracker.criticality is not None:
            for key in CRITICALITY_KEYS:
                mine, theirs = single_tracker.criticality[key], tracker.info()[key][b]
                np.testing.assert_allclose(theirs, mine, rtol=1e-6, atol=1e-6,
                                           err_msg=f"world {b} {key}")
    return result


def episodes_and_twins(name: str, seeds) -> list:
    inits = [generate(name, make_config(name), seed, F) for seed in seeds]
    return inits + [without_hazard(init) for init in inits]


def assert_parity(result):
    assert result["position_error"] < POSITION_TOL_M
    assert result["speed_error"] < SPEED_TOL_MPS
    assert result["crash_mismatch"] == []
    for b, (onset_h, onset_b) in enumerate(result["onset"]):
        assert (onset_b if onset_b >= 0 else None) == onset_h, b
    for b, (crash_h, crash_b) in enumerate(result["crash"]):
        assert crash_h == crash_b, b


CROSS_SEEDS = (0, 1, 2, 3)


def test_cross_traffic_matches_highway_backend():
    """Cross traffic, 4 seeds and their twins, the ego holding its speed and lane (zero
    command) for the whole 10 s: the hazard worlds' crossing vehicles do not yield (the
    default ranges are critical: most hit the ego), the twins' stop at their stop line."""
    name = "intersection-cross-traffic"
    inits = episodes_and_twins(name, CROSS_SEEDS)
    substeps = int(inits[0].duration_s * F)
    result = run_pair(inits, np.zeros((substeps, len(inits), 2)))
    assert_parity(result)
    n = len(CROSS_SEEDS)
    assert all(onset is not None for onset, _ in result["onset"][:n])
    assert all(onset is None for onset, _ in result["onset"][n:])      # twins: no hazard
    assert sum(crash is not None for crash, _ in result["crash"][:n]) >= 2
    assert all(crash is None for crash, _ in result["crash"][n:])      # twins yield


def test_cross_traffic_twin_stops_at_its_stop_line():
    """The yielding twin's crossing vehicle stops with its front at the end of its approach
    lane (`YieldingVehicle`), on the batched backend."""
    name = "intersection-cross-traffic"
    twins = [without_hazard(generate(name, make_config(name), seed, F)) for seed in CROSS_SEEDS]
    backend = NetworkBackend(len(twins), "intersection", F)
    backend.reset(twins)
    zero = torch.zeros((len(twins), 2), dtype=torch.float64)
    braking = torch.zeros(len(twins), dtype=torch.bool)
    for _ in range(int(twins[0].duration_s * F)):
        backend.substep(torch.full((len(twins),), DT, dtype=torch.float64), zero, zero)
        braking |= backend.state.brake_decel[:, 1] >= 0
    assert braking.all()
    state = backend.state
    layout = backend.layout
    for b, init in enumerate(twins):
        lane = layout.lane_row(init.vehicles[1].lane)
        end = np.asarray(layout.network.get_lane(init.vehicles[1].lane).position(
            layout.tables.length[lane], 0.0))
        front = state.position[b, 1].numpy() + np.array(
            [np.cos(float(state.heading[b, 1])), np.sin(float(state.heading[b, 1]))]) * 2.5
        assert float(state.speed[b, 1]) == pytest.approx(0.0, abs=1e-9)
        assert np.linalg.norm(front - end) < 0.1


CURVE_SEEDS = (0, 1, 2, 3)


def arc_steering(init) -> float:
    """The constant steering [rad] that holds the kinematic bicycle on the ego lane's arc:
    `tan(steer) = 2 tan(beta)`, `sin(beta) = l / (2 R)` (`Vehicle.step`'s slip angle)."""
    from reflexdrive.envs.curved_scenarios import curve_lane_radius

    radius = curve_lane_radius(init.road, init.vehicles[0].lane[2])
    beta = np.arcsin(init.vehicles[0].length_m / (2.0 * radius))
    return float(np.sign(init.road.arc_rad) * np.arctan(2.0 * np.tan(beta)))


def test_stopped_vehicle_on_curve_matches_highway_backend():
    """A stopped vehicle on a curve, 4 seeds (radii and turns drawn: both turns among them)
    and their twins, each world on its own road, the scenarios' MOBIL traffic, the ego
    steering along its lane's arc at constant speed for the whole episode (or until it
    hits the stopped vehicle)."""
    name = "stopped-vehicle-curve"
    inits = episodes_and_twins(name, CURVE_SEEDS)
    assert len({init.road for init in inits}) == len(CURVE_SEEDS)
    assert {np.sign(init.road.arc_rad) for init in inits} == {-1.0, 1.0}
    substeps = int(inits[0].duration_s * F)
    commands = np.zeros((substeps, len(inits), 2))
    commands[:, :, 1] = [arc_steering(init) for init in inits]
    result = run_pair(inits, commands)
    assert_parity(result)
    n = len(CURVE_SEEDS)
    assert all(onset is not None for onset, _ in result["onset"][:n])
    assert all(onset is None for onset, _ in result["onset"][n:])
    assert sum(crash is not None for crash, _ in result["crash"][:n]) >= 2
    assert all(crash is None for crash, _ in result["crash"][n:])


def test_torch_substep_refuses_what_only_the_kernel_models():
    """The torch reference substep has no yielding vehicles and no connected-lane search:
    it says so instead of stepping them differently."""
    from reflexdrive.envs.backends.batched.lanes import road_layout, scenario_layout, torch_tables
    from reflexdrive.envs.backends.batched.network_state import network_state
    from reflexdrive.envs.backends.batched.state import Params
    from reflexdrive.envs.backends.batched.torch.network_traffic import network_step

    from reflexdrive.common.validation import ConfigError

    params = Params.from_highway_env(F)
    zero = torch.zeros((1, 2), dtype=torch.float64)
    twin = without_hazard(generate("intersection-cross-traffic",
                                   make_config("intersection-cross-traffic"), 0, F))
    layout = scenario_layout("intersection")
    with pytest.raises(ConfigError, match="yield_substep"):
        network_step(params, torch_tables(layout.tables),
                     network_state([twin], layout, "intersection"), zero)
    curve = generate("stopped-vehicle-curve", make_config("stopped-vehicle-curve"), 0, F)
    layout = road_layout(curve.road)
    with pytest.raises(ConfigError, match="connected"):
        network_step(params, torch_tables(layout.tables),
                     network_state([curve], layout, "curve"), zero)
