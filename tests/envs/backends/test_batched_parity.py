"""Parity of the batched backend with the highway backend (the reference).

The same `ScenarioInit`s (several seeds per straight-road scenario) and the same ego command
sequence (varied accelerations and steering, with mid-substep switches and zero-length
pieces) run on one `HighwayBackend` per seed and on one `BatchedBackend` holding all seeds.
Over 10 s (500 substeps at 50 Hz) positions must agree within 1e-3 m and speeds within
1e-3 m/s (float64 gives about 1e-13), lane changes happen at the same substeps, hazard
onsets and collisions at the same substeps, and snapshots agree field by field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

import numpy as np
import pytest
import torch
from reflexdrive.envs.backends.batched import BatchedBackend, BatchedHazardTracker
from reflexdrive.envs.backends.highway import HighwayBackend
from reflexdrive.envs.hazards import HazardTracker
from reflexdrive.envs.scenarios import generate, make_config
from reflexdrive.envs.types import Command, Piece

F = 50
DT = 1.0 / F
SUBSTEPS = 500
POSITION_TOL_M = 1e-3
SPEED_TOL_MPS = 1e-3
SNAPSHOT_EVERY = 25
HAZARDS = ("lead-brake", "cut-in", "stopped-vehicle")


def _commands(seed: int, worlds: int, substeps: int, accel=(-3.0, 2.0), steer=(-0.01, 0.01)):
    """A fixed, varied ego command sequence: per substep and world `first_s` (0, dt or a switch
    inside the substep), a first and a second command `[acceleration, steering]`."""
    rng = np.random.default_rng(seed)
    first_s = rng.choice([0.0, DT, -1.0], size=(substeps, worlds), p=[0.2, 0.4, 0.4])
    inside = first_s < 0
    first_s[inside] = rng.uniform(0.0, DT, inside.sum())
    commands = []
    for _ in range(2):
        c = np.empty((substeps, worlds, 2))
        c[..., 0] = rng.uniform(*accel, (substeps, worlds))
        c[..., 1] = rng.uniform(*steer, (substeps, worlds))
        commands.append(c)
    return first_s, commands[0], commands[1]


def _pieces(first_s: float, first, second) -> list[Piece]:
    pieces = [Piece(float(first_s), Command(*map(float, first))),
              Piece(DT - float(first_s), Command(*map(float, second)))]
    return [p for p in pieces if p.duration_s > 0]


@dataclass
class Trace:
    """What a run recorded, per world."""

    position_error: float = 0.0
    speed_error: float = 0.0
    lane_changes: list = field(default_factory=list)      # (world, substep, slot, lane)
    target_changes: list = field(default_factory=list)    # (world, substep, slot, lane)
    onsets: list = field(default_factory=list)            # per world, onset substep or -1
    active: list = field(default_factory=list)            # (world, first active substep)
    crashes: list = field(default_factory=list)           # per world, first crashed substep
    snapshot_checks: int = 0


def _compare_snapshots(a, b, world: int) -> None:
    """Highway snapshot `a` (B = 1) against world `world` of batched snapshot `b`."""
    n = a.valid.shape[1]
    for f in fields(a):
        x = getattr(a, f.name)[0]
        y = getattr(b, f.name)[world]
        if x.ndim and f.name not in ("time_s",):
            y = y[:n]
        if x.dtype.kind == "f":
            np.testing.assert_allclose(y, x, rtol=0, atol=POSITION_TOL_M, err_msg=f.name)
        else:
            np.testing.assert_array_equal(y, x, err_msg=f.name)
    assert not b.valid[world, n:].any()
    assert (b.vehicle_id[world, n:] == -1).all()


def run_parity(name: str, seeds, overrides=None, substeps=SUBSTEPS, device="cpu",
               command_seed=0, accel=(-3.0, 2.0), steer=(-0.01, 0.01),
               lateral_speeds=None) -> Trace:
    """Run `seeds` of scenario `name` on both backends with the same commands; assert per
    substep that the worlds agree within tolerance and return the recorded `Trace`.
    `lateral_speeds`: per seed, the cut-in's `HazardPlan.lateral_speed_mps` (None: the
    generated plan's)."""
    config = make_config(name, overrides or {})
    inits = [generate(name, config, seed, F) for seed in seeds]
    if lateral_speeds is not None:
        inits = [dataclasses.replace(init, hazard=dataclasses.replace(
            init.hazard, lateral_speed_mps=speed)) for init, speed in zip(inits, lateral_speeds)]
    worlds = len(inits)
    highway = []
    for init in inits:
        backend = HighwayBackend(F)
        backend.reset(init)
        highway.append(backend)
    batched = BatchedBackend(worlds, F, device=device)
    batched.reset(inits)
    trackers = [HazardTracker(init.hazard, F) for init in inits]
    batched_tracker = BatchedHazardTracker(worlds, F, device=device)
    batched_tracker.reset([init.hazard for init in inits])
    for w, backend in enumerate(highway):
        trackers[w].update(backend.snapshot(), 0)
    state = batched.state
    batched_tracker.update(state)
    first_s, first, second = _commands(command_seed, worlds, substeps, accel, steer)
    trace = Trace()
    lanes_h = [[v.lane_index[2] for v in b.road.vehicles] for b in highway]
    targets_h = [[getattr(v, "target_lane_index", v.lane_index)[2] for v in b.road.vehicles]
                 for b in highway]
    lanes_b = state.lane.cpu().numpy()
    targets_b = state.target_lane.cpu().numpy()
    crashed_h, crashed_b = [-1] * worlds, [-1] * worlds
    active_h, active_b = [-1] * worlds, [-1] * worlds
    batched_changes, batched_targets = [], []
    for k in range(substeps):
        for w, backend in enumerate(highway):
            backend.substep(_pieces(first_s[k, w], first[k, w], second[k, w]))
        batched.substep(first_s[k], first[k], second[k])
        state = batched.state
        position = state.position.cpu().numpy()
        speed = state.speed.cpu().numpy()
        lane_b = state.lane.cpu().numpy()
        target_b = state.target_lane.cpu().numpy()
        onsets_b = batched_tracker.update(state)
        snapshot_b = batched.snapshot() if (k + 1) % SNAPSHOT_EVERY == 0 else None
        for w, backend in enumerate(highway):
            vehicles = backend.road.vehicles
            n = len(vehicles)
            p_h = np.array([v.position for v in vehicles])
            v_h = np.array([v.speed for v in vehicles])
            trace.position_error = max(trace.position_error, np.abs(p_h - position[w, :n]).max())
            trace.speed_error = max(trace.speed_error, np.abs(v_h - speed[w, :n]).max())
            for j, v in enumerate(vehicles):
                if v.lane_index[2] != lanes_h[w][j]:
                    trace.lane_changes.append((w, k, j, v.lane_index[2]))
                    lanes_h[w][j] = v.lane_index[2]
                target = getattr(v, "target_lane_index", v.lane_index)[2]
                if j and target != targets_h[w][j] and hasattr(v, "target_lane_index"):
                    trace.target_changes.append((w, k, j, target))
                targets_h[w][j] = target
            hazard = trackers[w].update(backend.snapshot(), k + 1)
            if hazard.active and active_h[w] < 0:
                active_h[w] = k + 1
            if bool(onsets_b.active[w]) and active_b[w] < 0:
                active_b[w] = k + 1
            if backend.ego.crashed and crashed_h[w] < 0:
                crashed_h[w] = k + 1
            if snapshot_b is not None:
                _compare_snapshots(backend.snapshot(), snapshot_b, w)
                trace.snapshot_checks += 1
        for w, j in zip(*np.nonzero(lane_b != lanes_b)):
            batched_changes.append((int(w), k, int(j), int(lane_b[w, j])))
        kind = state.kind.cpu().numpy()
        for w, j in zip(*np.nonzero((target_b != targets_b) & (kind != 0) & (kind != 2))):
            batched_targets.append((int(w), k, int(j), int(target_b[w, j])))
        lanes_b, targets_b = lane_b, target_b
        crashed_now = state.crashed[:, 0].cpu().numpy()
        for w in range(worlds):
            if crashed_now[w] and crashed_b[w] < 0:
                crashed_b[w] = k + 1
        assert trace.position_error <= POSITION_TOL_M, (k, trace.position_error)
        assert trace.speed_error <= SPEED_TOL_MPS, (k, trace.speed_error)

    assert sorted(batched_changes) == sorted(trace.lane_changes)
    assert sorted(batched_targets) == sorted(trace.target_changes)
    onsets_h = [-1 if t.onset_substep is None else t.onset_substep for t in trackers]
    assert batched_tracker.onsets.onset_substep.cpu().tolist() == onsets_h
    assert active_b == active_h
    assert crashed_b == crashed_h
    trace.onsets, trace.active, trace.crashes = onsets_h, active_h, crashed_h
    return trace


@pytest.mark.slow
@pytest.mark.parametrize("name", ("highway",) + HAZARDS)
def test_parity_without_lane_changes(name):
    # On the highway the ego drifts across lane lines (biased steering): its lane index,
    # lane offset and on-road flag are compared in the snapshots.
    steer = (-0.006, 0.008) if name == "highway" else (-0.01, 0.01)
    trace = run_parity(name, seeds=(0, 1), overrides={"lane_changes": False}, steer=steer)
    assert trace.snapshot_checks == 2 * SUBSTEPS // SNAPSHOT_EVERY
    if name == "highway":
        assert any(slot == 0 for _, _, slot, _ in trace.lane_changes)
    else:
        assert all(onset > 0 for onset in trace.onsets)


@pytest.mark.slow
def test_parity_with_mobil_lane_changes():
    trace = run_parity("highway", seeds=(0, 1, 2), overrides={"lane_changes": True})
    assert len(trace.lane_changes) >= 5           # MOBIL really changed lanes
    assert len(trace.target_changes) >= 5


@pytest.mark.slow
def test_parity_cut_in_with_mobil_traffic():
    """Traffic may change lanes while the cutter moves in: the abort rule is exercised."""
    trace = run_parity("cut-in", seeds=(3, 4), overrides={"lane_changes": True},
                       substeps=250, command_seed=1)
    assert trace.onsets[0] > 0


@pytest.mark.slow
def test_parity_cut_in_with_a_lateral_speed():
    """The cutter follows its sinusoidal profile (0.5, 1.5 and 3 m/s peak lateral speed:
    the lane change takes 12.6, 4.2 and 2.1 s) while traffic changes lanes around it; then
    it keeps the ego lane (IDM)."""
    trace = run_parity("cut-in", seeds=(3, 4, 5), overrides={"lane_changes": True},
                       substeps=SUBSTEPS, command_seed=2, lateral_speeds=(0.5, 1.5, 3.0))
    assert all(onset > 0 for onset in trace.onsets)
    moved_in = {(w, slot) for w, _, slot, _ in trace.lane_changes if slot == 1}
    assert moved_in == {(0, 1), (1, 1), (2, 1)}          # every cutter reached the ego lane


@pytest.mark.slow
def test_collision_detected_at_the_same_substep():
    """The ego accelerates into the braking lead (and into the stopped vehicle)."""
    lead = run_parity("lead-brake", seeds=(0,), substeps=230, accel=(1.5, 2.5))
    assert lead.crashes[0] > 0                         # substep 219
    stopped = run_parity("stopped-vehicle", seeds=(1,), substeps=200, accel=(0.5, 1.5))
    assert stopped.crashes[0] > 0                      # substep 190


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_on_gpu():
    trace = run_parity("highway", seeds=(0, 1, 2), overrides={"lane_changes": True},
                       substeps=250, device="cuda")
    assert trace.position_error <= POSITION_TOL_M


def test_per_env_reset_matches_a_fresh_highway_backend():
    """Reset world 1 mid-run: it then follows a fresh highway backend, the others go on."""
    name = "lead-brake"
    config = make_config(name)
    inits = [generate(name, config, seed, F) for seed in (0, 1, 2)]
    batched = BatchedBackend(3, F)
    batched.reset(inits)
    reference = BatchedBackend(3, F)
    reference.reset(inits)
    zero = np.zeros((3, 2))
    for _ in range(20):
        batched.substep(np.full(3, DT), zero, zero)
        reference.substep(np.full(3, DT), zero, zero)
    new = generate(name, config, 7, F)
    batched.reset([None, new, None])
    highway = HighwayBackend(F)
    highway.reset(new)
    for _ in range(30):
        batched.substep(np.full(3, DT), zero, zero)
        reference.substep(np.full(3, DT), zero, zero)
        highway.substep([Piece(DT, Command(0.0, 0.0))])
    a, b = batched.state, reference.state
    for f in ("position", "speed", "heading", "lane", "timer", "crashed"):
        assert torch.equal(getattr(a, f)[[0, 2]], getattr(b, f)[[0, 2]]), f
    assert batched.substep_index.tolist() == [50, 30, 50]
    n = len(highway.road.vehicles)
    np.testing.assert_allclose(a.position[1, :n].numpy(),
                               np.array([v.position for v in highway.road.vehicles]),
                               rtol=0, atol=1e-9)
