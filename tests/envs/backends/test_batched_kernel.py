"""The numba substep kernel (`envs.backends.batched.numba.step_cpu`) against the torch `step`.

Both implement `envs.backends.batched.torch.step`'s semantics with the same float operations;
they differ only in the implementations of `cos`, `sin`, `tan`, `atan`, `asin` (torch's vectorised
SLEEF kernels vs the C library, within 1 ulp) and of `(v / v0)^4` (two squarings vs `pow`).
So every discrete field (lanes, targets, flags, kinds, substep counters) must be identical
and every float field within `FLOAT_TOL` (measured: ~1e-13 m, m/s, rad over 300 substeps).
Trajectories run independently on both paths, so differences would accumulate.

The scenario runs (a) cover the four straight-road scenarios with MOBIL lane changes,
hazards and crashes; the hand-made worlds (b) pin the edge cases: ties in `x`, the lane-change
abort rule, crashed vehicles and pending impacts, hazard triggers, padding slots and lanes,
worlds of different sizes, the ego stopping within a piece, many slots, order hints.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import sys

import numpy as np
import pytest
import torch
from reflexdrive.envs.backends.batched import BatchedBackend, EgoCommands, step, step_cpu
from reflexdrive.envs.backends.batched import numba as numba_kernel
from reflexdrive.envs.backends.batched.state import BatchedState, Params, where_env
from reflexdrive.envs.scenarios import (
    HazardPlan,
    RoadSpec,
    ScenarioInit,
    VehicleInit,
    generate,
    make_config,
)

from reflexdrive.common.validation import ConfigError

pytestmark = pytest.mark.skipif(not numba_kernel.AVAILABLE, reason="needs numba")

F = 50
DT = 1.0 / F
PARAMS = Params.from_highway_env(F)
FLOAT_TOL = 1e-9
"""Largest allowed |kernel - torch| of a float field [m, m/s, rad, s, m/s^2]."""


# ------------------------------------------------------------------------------ helpers


def _tensors(obj, prefix=""):
    """`(name, tensor)` of every tensor field of a state (nested road / hazard included)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, torch.Tensor):
            yield prefix + f.name, value
        elif dataclasses.is_dataclass(value):
            yield from _tensors(value, prefix + f.name + ".")


def assert_same(torch_state: BatchedState, kernel_state: BatchedState, where="") -> float:
    """Discrete fields equal, float fields within `FLOAT_TOL`; returns the largest float error.
    `order_hint` is a cache (each path keeps its own) and not compared."""
    worst = 0.0
    kernel_fields = dict(_tensors(kernel_state))
    for name, a in _tensors(torch_state):
        if name == "order_hint":
            continue
        b = kernel_fields[name]
        assert a.shape == b.shape and a.dtype == b.dtype, (where, name)
        if a.is_floating_point():
            error = float((a - b).abs().max()) if a.numel() else 0.0
            assert error <= FLOAT_TOL, (where, name, error)
            worst = max(worst, error)
        else:
            assert torch.equal(a, b), (where, name, torch.nonzero(a != b)[:5].tolist())
    return worst


def commands(rng, worlds: int, accel=(-3.0, 2.0), steer=(-0.01, 0.01)) -> EgoCommands:
    """Random ego pieces: `first_s` 0, dt or inside the substep; two random commands."""
    first_s = rng.choice([0.0, DT, -1.0], size=worlds, p=[0.2, 0.4, 0.4])
    inside = first_s < 0
    first_s[inside] = rng.uniform(0.0, DT, inside.sum())

    def command():
        return np.stack([rng.uniform(*accel, worlds), rng.uniform(*steer, worlds)], axis=1)

    return EgoCommands(torch.tensor(first_s), torch.tensor(command()), torch.tensor(command()))


def run_both(state: BatchedState, substeps: int, seed: int = 0, accel=(-3.0, 2.0),
             steer=(-0.01, 0.01), active=None, aggressive=()):
    """Step `state` on both paths (each from its own previous result), comparing after every
    substep. The egos of the worlds in `aggressive` accelerate at 2-3 m/s^2 straight ahead.
    Returns the torch states (index k: after k substeps) and the largest error."""
    rng = np.random.default_rng(seed)
    a = b = state
    history, worst = [state], 0.0
    rows = list(aggressive)
    for k in range(substeps):
        c = commands(rng, state.batch_size, accel, steer)
        if rows:
            c.first[rows] = torch.tensor(rng.uniform(2.0, 3.0, (len(rows), 1))) * \
                torch.tensor([1.0, 0.0])
            c.second[rows] = c.first[rows]
        mask = None if active is None else active(k)
        new = step(PARAMS, a, c)
        a = new if mask is None else where_env(mask, new, a)
        b = step_cpu(PARAMS, b, c, active=mask)
        worst = max(worst, assert_same(a, b, f"substep {k + 1}"))
        history.append(a)
    return history, worst


def initial_state(inits, max_vehicles=None) -> BatchedState:
    backend = BatchedBackend(len(inits), F, kernel="torch", max_vehicles=max_vehicles)
    backend.reset(inits)
    return backend.state


def vehicle(lane, s, speed, target_speed=None, behavior="idm", lane_changes=True):
    return VehicleInit(("0", "1", lane), float(s), float(speed),
                       float(speed if target_speed is None else target_speed), behavior,
                       lane_changes)


def world(vehicles, lanes=3, hazard=HazardPlan(), length=2000.0) -> ScenarioInit:
    return ScenarioInit("hand-made", 0, F, RoadSpec(lanes=lanes, length_m=length),
                        tuple(vehicles), hazard, 10.0)


def edited(state: BatchedState, **changes) -> BatchedState:
    """`state` with some fields replaced by `fn(clone)` (each change is a function)."""
    return state.replace(**{name: fn(getattr(state, name).clone())
                            for name, fn in changes.items()})


# ------------------------------------------------------------------------------ (a) scenarios


SUBSTEPS = 200
SCENARIOS = {"highway": {}, "lead-brake": {"lane_changes": True, "onset_s": (1.0, 2.0)},
             "cut-in": {"lane_changes": True, "onset_s": (1.0, 2.0)},
             "stopped-vehicle": {"onset_s": (1.0, 2.0)}}
"""The four straight-road scenarios, traffic changing lanes, hazards within the run."""


def test_scenarios_match_the_torch_step():
    """Seeds 0-5 of the four scenarios in one batch (different vehicle and lane counts:
    padding), 200 substeps (4 s) of random ego commands; per scenario the egos of two more
    worlds (seeds 0, 1) accelerate hard into the hazard (crashing into it on the lead-brake
    and stopped-vehicle scenarios)."""
    inits, blocks = [], {}
    for name, overrides in SCENARIOS.items():
        block = [generate(name, make_config(name, overrides), seed, F) for seed in range(6)]
        blocks[name] = slice(len(inits), len(inits) + 8)
        inits += block + block[:2]
    state = initial_state(inits)
    aggressive = [b for rows in blocks.values() for b in range(rows.start + 6, rows.stop)]
    history, _ = run_both(state, SUBSTEPS, seed=3, aggressive=aggressive)
    last = history[-1]
    assert (last.substep == SUBSTEPS).all()
    lane_changes = sum((h.lane[:, 1:] != g.lane[:, 1:]).sum(dim=1)
                       for g, h in zip(history, history[1:]))
    for name, rows in blocks.items():
        if name in ("highway", "cut-in"):
            assert lane_changes[rows].sum() > 0                   # MOBIL, the cutter
        if name in ("lead-brake", "cut-in"):
            onset = state.hazard.onset_substep[rows]
            assert ((onset > 0) & (onset < SUBSTEPS)).all()         # every hazard started
        if name in ("lead-brake", "stopped-vehicle"):
            assert last.crashed[rows][6:, 0].all()                # the aggressive egos
            assert last.crashed[rows][6:, 1:].any()


# ------------------------------------------------------------------------------ (b) edge cases


def test_ties_in_x():
    """Vehicles level with each other (with the ego too) in one and in different lanes, at
    equal speeds so the ties last, MOBIL due for all: front / rear tie rules."""
    vehicles = [vehicle(1, 100.0, 25.0, behavior="ego"),
                vehicle(0, 100.0, 25.0), vehicle(2, 100.0, 25.0),       # level with the ego
                vehicle(0, 130.0, 20.0), vehicle(1, 130.0, 20.0), vehicle(2, 130.0, 20.0),
                vehicle(1, 160.0, 20.0, 30.0), vehicle(1, 160.0, 20.0, 30.0),  # same spot
                vehicle(0, 70.0, 30.0, 33.0), vehicle(2, 70.0, 30.0, 33.0)]
    # the same vehicles in two slot orders: the tie rules pick by slot
    state = initial_state([world(vehicles), world(vehicles[:1] + vehicles[:0:-1])])
    state = edited(state, timer=lambda t: t.fill_(0.99))       # MOBIL fires at once
    history, _ = run_both(state, 60, steer=(0.0, 0.0))
    targets = torch.stack([h.target_lane for h in history])
    assert (targets[1:] != targets[:-1]).any()                  # some lane change decided


def test_abort_rule_in_list_order():
    """Y (lane 0) and Z (lane 2) both move into lane 1, X (lane 2, far ahead) too: Y aborts
    (X within its gap), then Z depends on whether Y acted first (slot order)."""
    def make(order):
        ego = vehicle(0, 0.0, 20.0, behavior="ego")
        x, y, z = vehicle(2, 150.0, 20.0), vehicle(0, 120.0, 20.0), vehicle(2, 100.0, 20.0)
        return world([ego, y, z, x] if order == "y_first" else [ego, z, y, x])

    state = initial_state([make("y_first"), make("z_first")])
    # positions as in tests/test_batched_backend.py: x at y = 8, y at 1, z at 7
    y_offsets = torch.tensor([[0.0, 1.0, 7.0, 8.0], [0.0, 7.0, 1.0, 8.0]], dtype=torch.float64)
    state = edited(state,
                   position=lambda p: p.index_put_((torch.arange(2)[:, None],
                                                    torch.arange(4)[None, :],
                                                    torch.tensor(1)), y_offsets),
                   target_lane=lambda t: t.index_fill_(1, torch.tensor([1, 2, 3]), 1),
                   timer=lambda t: t.fill_(0.5))
    state = state.replace(lane=torch.tensor([[0, 0, 2, 2], [0, 2, 0, 2]]))
    history, _ = run_both(state, 40)
    after = history[1].target_lane
    assert after[0].tolist() == [0, 0, 1, 1]        # Y aborted, Z goes on (Y acted first)
    assert after[1].tolist() == [0, 2, 0, 1]        # Z acted first, saw Y's old target


def test_crashed_vehicles_and_pending_impacts():
    """Crashed traffic skids to a stop (no act, `a = -v`); a pending impact is applied at the
    next step; a vehicle overlapping the ego crashes both at once; another runs into the
    ego's swept box (impacts on both)."""
    vehicles = [vehicle(1, 100.0, 20.0, behavior="ego"), vehicle(1, 103.0, 15.0),
                vehicle(0, 140.0, 25.0), vehicle(2, 60.0, 30.0), vehicle(1, 300.0, 10.0),
                vehicle(0, 100.0, 20.0)]
    state = initial_state([world(vehicles)] * 2)
    state = edited(state,
                   crashed=lambda c: c.index_fill_(1, torch.tensor([2]), True),
                   impact=lambda i: i.index_fill_(1, torch.tensor([3]), 0.3),
                   impact_pending=lambda i: i.index_fill_(1, torch.tensor([3]), True),
                   position=lambda p: p.index_put_((torch.tensor([1]), torch.tensor([5]),
                                                    torch.tensor([1])),
                                                   torch.tensor([2.2], dtype=torch.float64)))
    history, _ = run_both(state, 80, steer=(0.0, 0.02))
    first = history[1]
    assert first.crashed[:, 0].all() and first.crashed[:, 1].all()     # overlap
    assert first.crashed[:, 3].all() and not first.impact_pending[:, 3].any()
    assert (history[-1].speed[:, 2] < 0.25 * 25.0).all()                # skids: a = -v
    assert (history[-1].steering[:, 2] == 0).all()
    assert any(h.impact_pending[:, 0].any() for h in history)


def test_hazard_triggers():
    """A lead brake and a cut-in starting at substep 3, a stopped vehicle, no hazard, a
    hazard that names no vehicle: the braking flag, deceleration, target lane and speed."""
    ego = vehicle(1, 100.0, 10.0, behavior="ego")
    traffic = [vehicle(1, 130.0, 10.0, lane_changes=False),
               vehicle(0, 110.0, 25.0, lane_changes=False),
               vehicle(2, 160.0, 22.0, lane_changes=False),
               vehicle(1, 200.0, 0.0, behavior="static")]
    plans = [HazardPlan("lead_brake", 1, 3, decel_mps2=7.0),
             HazardPlan("cut_in", 2, 3, target_lane=("0", "1", 1), target_speed_mps=18.0),
             HazardPlan("stopped_vehicle", 4, trigger_range_m=48.0),
             HazardPlan(),
             HazardPlan("lead_brake", -1, 3, decel_mps2=7.0)]
    state = initial_state([world([ego] + traffic, hazard=plan) for plan in plans])
    history, _ = run_both(state, 90)
    assert history[4].braking[0, 1] and history[4].braking_decel[0, 1] == 7.0
    assert history[4].target_lane[1, 2] == 1 and history[4].target_speed[1, 2] == 18.0
    assert history[3].target_lane[1, 2] == 0
    assert abs(history[-1].speed[0, 1]) < 1e-12 and history[-1].lane[1, 2] == 1


def test_cut_ins_with_a_lateral_speed():
    """Cut-ins along the sinusoidal profile at 0.5, 2 and 3 m/s from either side, one whose
    ego drives into the cutter (a crash and pending impacts mid-profile), one from two
    substeps in (a late reset), and the plain cut-in beside them."""
    ego = vehicle(1, 100.0, 12.0, behavior="ego")

    def cut_in(lane, s, speed, lateral_speed, onset=3):
        cutter = vehicle(lane, s, speed, lane_changes=False)
        plan = HazardPlan("cut_in", 1, onset, target_lane=("0", "1", 1),
                          target_speed_mps=speed - 2.0, lateral_speed_mps=lateral_speed)
        return world([ego, cutter, vehicle(2, 180.0, 20.0)], hazard=plan)

    worlds = [cut_in(0, 115.0, 10.0, 0.5), cut_in(2, 140.0, 9.0, 2.0),
              cut_in(0, 108.0, 6.0, 3.0), cut_in(2, 120.0, 10.0, 2.0, onset=0),
              cut_in(0, 115.0, 10.0, None)]
    state = initial_state(worlds)
    history, _ = run_both(state, 200, seed=5, aggressive=[2])
    last = history[-1]
    assert last.crashed[2, 0] and last.crashed[2, 1]          # hit during its lane change
    assert (last.lane[[1, 3, 4], 1] == 1).all()
    # 0.5 m/s (T = 4 pi s): after 197 substeps of its profile, y = 4 - 4 (1 + cos(0.25 t)) / 2
    assert float(last.position[0, 1, 1]) == pytest.approx(
        4.0 - 2.0 * (1.0 + math.cos(0.25 * 197 * DT)), abs=1e-12)
    # 2 m/s: T = pi s, so the profile ends at substep 3 + 158; then on the centre line
    assert history[161].position[1, 1, 1] == 4.0 and history[160].position[1, 1, 1] != 4.0


def test_padding_slots_lanes_and_worlds_of_different_sizes():
    """Worlds with 2, 7 and 16 vehicles, 2 to 5 lanes and two road lengths in one batch
    (padding slots and lanes), 24 slots; padding slots hold finite garbage, IDM kind and
    MOBIL on: neither path may read them."""
    rng = np.random.default_rng(3)
    inits = []
    for count, lanes, length in ((2, 2, 2000.0), (7, 5, 400.0), (16, 4, 2000.0),
                                 (1, 3, 2000.0)):
        vehicles = [vehicle(int(rng.integers(lanes)), 100.0, 22.0, behavior="ego")]
        for _ in range(count - 1):
            vehicles.append(vehicle(int(rng.integers(lanes)), rng.uniform(0, 380),
                                    rng.uniform(15, 30), rng.uniform(15, 32)))
        inits.append(world(vehicles, lanes=lanes, length=length))
    state = initial_state(inits, max_vehicles=24)
    padding = ~state.valid

    def garbage(tensor, value):
        mask = padding.reshape(padding.shape + (1,) * (tensor.dim() - 2))
        return torch.where(mask.expand_as(tensor), torch.full_like(tensor, value), tensor)

    state = edited(state, position=lambda p: garbage(p, 150.0),
                   speed=lambda v: garbage(v, 5.0), kind=lambda k: garbage(k, 1),
                   lane_changes=lambda c: garbage(c, True), timer=lambda t: t.fill_(0.95),
                   length=lambda v: garbage(v, 5.0), width=lambda v: garbage(v, 2.0),
                   diagonal=lambda v: garbage(v, 5.4))
    history, _ = run_both(state, 100)
    last = history[-1]
    for name in ("position", "speed", "kind", "lane", "timer"):
        assert torch.equal(getattr(last, name)[padding], getattr(state, name)[padding])


def test_ego_stops_within_a_piece_and_never_reverses():
    """A slow ego braking hard: `a = max(a_cmd, -v / duration)` stops it inside the piece,
    then it stays at 0; a static vehicle and a stopped IDM vehicle around it."""
    vehicles = [vehicle(1, 100.0, 0.4, behavior="ego"), vehicle(1, 120.0, 0.0, 10.0),
                vehicle(0, 90.0, 0.0, behavior="static"), vehicle(2, 95.0, 0.5, 0.0)]
    state = initial_state([world(vehicles)] * 3)
    history, _ = run_both(state, 50, accel=(-6.0, -4.0), steer=(-0.05, 0.05))
    speeds = torch.stack([h.speed[:, 0] for h in history])
    assert (speeds > -1e-12).all() and (speeds[-1].abs() < 1e-12).all()


def test_many_slots_and_order_hints():
    """80 slots (beyond the torch path's bit masks: its pairwise search), dense traffic
    with lane changes due; hints None, garbage, or the torch path's own key order."""
    rng = np.random.default_rng(11)
    vehicles = [vehicle(1, 200.0, 25.0, behavior="ego")]
    for _ in range(79):
        vehicles.append(vehicle(int(rng.integers(4)), rng.uniform(0, 600), rng.uniform(15, 30),
                                rng.uniform(15, 35)))
    state = initial_state([world(vehicles, lanes=4)])
    state = edited(state, timer=lambda t: t.uniform_(0.5, 1.1, generator=torch.Generator()
                                                     .manual_seed(0)))
    run_both(state, 25)
    c = commands(np.random.default_rng(0), 1)
    params = PARAMS
    reference = step(params, state, c)
    for hint in (None, torch.zeros(1, 80, dtype=torch.int64),
                 torch.arange(80).flip(0)[None], reference.order_hint):
        assert_same(reference, step_cpu(params, state.replace(order_hint=hint), c))


def test_active_mask_and_inputs_untouched():
    """Worlds outside `active` come back unchanged (substep counter included), and the
    input state is never modified (also when a hazard starts and its fields are copied)."""
    inits = [generate("lead-brake", make_config("lead-brake"), seed, F) for seed in range(4)]
    state = initial_state(inits)
    state = state.replace(substep=state.hazard.onset_substep.clone())   # hazards start now
    before = {name: t.clone() for name, t in _tensors(state)}
    run_both(state, 30, active=lambda k: torch.tensor([True, k % 2 == 0, False, True]))
    after = dict(_tensors(state))
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name
    c = commands(np.random.default_rng(1), 4)
    new = step_cpu(PARAMS, state, c, active=torch.tensor([1, 0, 1, 0]) > 0)
    assert new.substep.tolist() == (state.substep + torch.tensor([1, 0, 1, 0])).tolist()
    assert new.braking[0, state.hazard.vehicle[0]] and not new.braking[1].any()
    assert not state.braking.any()


# ------------------------------------------------------------------------------ backend


def test_backend_picks_the_kernel_on_cpu_float64():
    assert BatchedBackend(2, F).stepper == "numba"
    assert BatchedBackend(2, F, kernel="torch").stepper == "torch"
    assert BatchedBackend(2, F, dtype=torch.float32).stepper == "torch"
    with pytest.raises(ConfigError, match="kernel='fast'.*auto, numba, torch"):
        BatchedBackend(2, F, kernel="fast")
    with pytest.raises(ConfigError, match="kernel='numba'.*float64 states on CPU"):
        BatchedBackend(2, F, kernel="numba", dtype=torch.float32)


def test_backends_agree_through_substep_with_active_masks():
    """`BatchedBackend.substep` on both kernels, with `active` masks and a mid-run reset."""
    name = "cut-in"
    config = make_config(name, {"lane_changes": True})
    inits = [generate(name, config, seed, F) for seed in range(3)]
    backends = [BatchedBackend(3, F, kernel=k) for k in ("torch", "numba")]
    for backend in backends:
        backend.reset(inits)
    rng = np.random.default_rng(5)
    for k in range(80):
        c = commands(rng, 3)
        active = torch.tensor(rng.random(3) < 0.8)
        if k == 40:
            for backend in backends:
                backend.reset([None, generate(name, config, 9, F), None])
        for backend in backends:
            backend.substep(c.first_s.numpy(), c.first.numpy(), c.second.numpy(), active=active)
        assert_same(backends[0].state, backends[1].state, f"substep {k}")


def test_without_numba_the_backend_runs_torch(monkeypatch):
    """numba missing: the kernel package still imports (AVAILABLE False, `step_cpu`
    raises), "auto" runs torch and "numba" is a ConfigError."""
    import reflexdrive.envs.backends.batched as batched_package
    import reflexdrive.envs.backends.batched.backend as backend_module
    monkeypatch.setitem(sys.modules, "numba", None)                 # import numba fails
    for name in [n for n in sys.modules if n.startswith(numba_kernel.__name__)]:
        monkeypatch.delitem(sys.modules, name)                       # import it afresh
    monkeypatch.setattr(batched_package, "numba", numba_kernel)      # restored afterwards
    module = importlib.import_module(numba_kernel.__name__)
    assert not module.AVAILABLE
    with pytest.raises(RuntimeError, match="needs numba"):
        module.step_cpu(PARAMS, initial_state([world([vehicle(0, 0.0, 1.0, behavior="ego")])]),
                        commands(np.random.default_rng(0), 1))
    monkeypatch.setattr(backend_module, "numba_impl", module)
    assert BatchedBackend(1, F).stepper == "torch"
    with pytest.raises(ConfigError, match="kernel='numba'.*needs numba"):
        BatchedBackend(1, F, kernel="numba")


# ------------------------------------------------------------------------------ fused ticks


@pytest.mark.parametrize("scenario", ["highway", "lead-brake", "cut-in", "stopped-vehicle"])
def test_a_fused_tick_equals_the_substep_loop(scenario):
    """`BatchedDrivingEnv` runs a tick as one `tick_cpu` call unless it records (then it
    loops over `step_cpu` substeps with its bookkeeping in torch between them). Both must
    give bit-identical worlds, rewards, ends and hazard onsets, including envs that crash,
    leave the road or time out mid-tick and restart (hard random commands)."""
    from reflexdrive.envs.gym.vector import BatchedDrivingEnv

    envs = [BatchedDrivingEnv(8, scenario, latency="fixed:0.03", record=record,
                              observations=False) for record in (False, True)]
    assert envs[0].backend.stepper == envs[1].backend.stepper == "numba"
    for env in envs:
        env.reset(seed=3)
    rng = np.random.default_rng(0)
    ended = 0
    for tick in range(120):
        actions = np.stack([rng.uniform(-6, 4, 8), rng.normal(0, 0.08, 8)], axis=1)
        results = [env.step(actions) for env in envs]
        (_, r0, t0, u0, i0), (_, r1, t1, u1, i1) = results
        np.testing.assert_array_equal(r0, r1)
        np.testing.assert_array_equal(t0, t1)
        np.testing.assert_array_equal(u0, u1)
        np.testing.assert_array_equal(i0["hazard"]["onset_s"], i1["hazard"]["onset_s"])
        np.testing.assert_array_equal(i0["hazard"]["active"], i1["hazard"]["active"])
        for name, a in _tensors(envs[0].backend.state):
            b = dict(_tensors(envs[1].backend.state))[name]
            assert torch.equal(a, b), f"tick {tick}: {name} differs"
        ended += int((t0 | u0).sum())
    assert ended > 0          # the comparison covered episodes ending mid-tick
