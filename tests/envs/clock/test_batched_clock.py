"""The batched tick clock (`envs.clock.batched`) against the per-env `TickClock`.

Notation as in tests/envs/clock/test_clock.py: tick `T = 1 / policy_frequency`, substep `dt`,
`S = T / dt`, tick `k` starts at `t_k = k / policy_frequency`, latency `L`.

1. Equivalence (hypothesis): `B` envs with their own latency sequences (exact tick
   multiples, substep boundaries +-0.5 ns and +-5 ns, values > T, one or two stages) and
   random per-env resets, stepped one tick at a time; each env's `TickRecord`s (via
   `to_tick_records`) and per-substep pieces must be what a `TickClock` for that env
   produces. On CPU they must match bit for bit.
2. Analytic cases worked out by hand.
3. The same equivalence on CUDA (marked `gpu`, skipped without CUDA).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reflexdrive.envs.clock import TickClock, TickRecord
from reflexdrive.envs.clock.batched import (
    DEFAULT_STAGE,
    BatchedClock,
    TickRecords,
    advance,
    decide,
    initial_state,
    observing,
    reset,
    stack_records,
    substep_pieces,
    tick_records,
    to_tick_records,
    to_tick_records_per_env,
)
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.types import ZERO_COMMAND, Command

F64 = torch.float64
NAN = math.nan
OLD = (-3.0, 0.1)
NEW = (2.0, -0.2)
DT = 0.02


def config(mode: str = "realtime", **kwargs) -> ClockConfig:
    """10 Hz / 50 Hz: `T = 0.1`, `dt = 0.02`, `S = 5`."""
    return ClockConfig(simulation_frequency=50, policy_frequency=10, mode=mode, **kwargs)


def rows(*commands) -> torch.Tensor:
    return torch.tensor(commands, dtype=F64)


def lat(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# -- the reference: one TickClock per env ------------------------------------------------------


@dataclass
class Scenario:
    policy: int
    substeps: int
    mode: str
    budget: float | None
    stage_budgets: dict[str, float]
    two_stages: bool
    latencies: list[list[float]]  # per env, cycled through as the env observes
    extra: list[list[float]]  # per env, the "perception" stage when two_stages
    ticks: int
    resets: list[tuple[int, int]]  # (tick step, env): reset at the end of that step
    execution: str = "sequential"

    @property
    def batch(self) -> int:
        return len(self.latencies)

    def clock_config(self) -> ClockConfig:
        return ClockConfig(simulation_frequency=self.policy * self.substeps,
                           policy_frequency=self.policy, mode=self.mode, budget_s=self.budget,
                           stage_budgets_s=self.stage_budgets, execution=self.execution)


def command_for(env: int, decision: int) -> tuple[float, float]:
    """Distinct per env and decision, never the zero command."""
    return (float(100 * env + decision + 1), 0.001 * (decision + 1) - 0.5 * env)


def substep_as_pieces(first_s: float, first: list[float], second: list[float], dt: float
                      ) -> list[tuple[float, tuple[float, float]]]:
    """(duration, command) pieces of positive duration described by one substep triple."""
    out = []
    if first_s > 0.0:
        out.append((first_s, tuple(first)))
    if dt - first_s > 0.0:
        out.append((dt - first_s, tuple(second)))
    return out


def run_batched(scenario: Scenario, device: str):
    """Step the batched clock tick by tick. Returns the per-tick `TickRecords`, per-tick
    substep triples as Python lists, and per env its episodes: a list of (global tick
    steps, decisions `(stages, command)`)."""
    cfg = scenario.clock_config()
    substeps = cfg.substeps_per_tick
    batch = scenario.batch
    state = initial_state(batch, device)
    cursor = [0] * batch
    episodes = [[([], [])] for _ in range(batch)]
    resets = {}
    for step, env in scenario.resets:
        resets.setdefault(step, set()).add(env)
    all_records, all_pieces = [], []
    for step in range(scenario.ticks):
        seen = observing(state).tolist()
        commands = [[NAN, NAN]] * batch  # busy envs get NaN: must be ignored
        total = [NAN] * batch
        extra = [NAN] * batch
        for env in range(batch):
            steps, decisions = episodes[env][-1]
            steps.append(step)
            if not seen[env]:
                continue
            n = cursor[env]
            cursor[env] += 1
            total[env] = scenario.latencies[env][n % len(scenario.latencies[env])]
            extra[env] = scenario.extra[env][n % len(scenario.extra[env])]
            commands[env] = list(command_for(env, n))
            stages = ({"perception": extra[env], "planning": total[env]} if scenario.two_stages
                      else {DEFAULT_STAGE: total[env]})
            decisions.append((stages, Command(*commands[env])))
        stage_tensors = (
            {"perception": torch.tensor(extra, dtype=F64, device=device),
             "planning": torch.tensor(total, dtype=F64, device=device)}
            if scenario.two_stages else torch.tensor(total, dtype=F64, device=device))
        state, decision = decide(cfg, state, torch.tensor(commands, dtype=F64, device=device),
                                 stage_tensors)
        all_pieces.append([
            [value.cpu().tolist() for value in substep_pieces(cfg, state, j)]
            for j in range(substeps)])
        all_records.append(tick_records(cfg, state, decision))
        state = advance(cfg, state)
        if step in resets:
            mask = torch.zeros(batch, dtype=torch.bool, device=device)
            mask[sorted(resets[step])] = True
            state = reset(state, mask)
            for env in resets[step]:
                episodes[env].append(([], []))
    return all_records, all_pieces, episodes


def same_float(got: float, want: float, tol: float) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    return abs(got - want) <= tol if tol else got == want


def same_command(got: Command | None, want: Command | None, tol: float) -> bool:
    if want is None or got is None:
        return got is want
    return (same_float(got.acceleration, want.acceleration, tol)
            and same_float(got.steering, want.steering, tol))


def assert_same_record(got: TickRecord, want: TickRecord, tol: float, where: str) -> None:
    """Field by field; floats within `tol` (exactly equal when `tol == 0`), NaN == NaN."""
    for item in fields(TickRecord):
        a, b = getattr(got, item.name), getattr(want, item.name)
        name = f"{where}: {item.name}: got {a!r}, want {b!r}"
        if item.name in ("t_s", "latency_s", "lands_s"):
            assert same_float(a, b, tol), name
        elif item.name in ("command", "held"):
            assert same_command(a, b, tol), name
        elif item.name == "stage_latency_s":
            # same names (as dicts compare: order aside), values as floats
            assert a.keys() == b.keys() and all(same_float(a[k], b[k], tol) for k in b), name
        elif item.name == "switches":
            assert len(a) == len(b), name
            for (ta, ca), (tb, cb) in zip(a, b):
                assert same_float(ta, tb, tol) and same_command(ca, cb, tol), name
        else:
            assert a == b and type(a) is type(b), name


def check_equivalence(scenario: Scenario, device: str, tol: float) -> None:
    """Every env's records and substep pieces equal its own TickClock's."""
    cfg = scenario.clock_config()
    substeps, dt = cfg.substeps_per_tick, cfg.substep_s
    records, pieces, episodes = run_batched(scenario, device)
    stacked = stack_records(records)
    per_env = to_tick_records_per_env(records)
    for env in range(scenario.batch):
        converted = to_tick_records(stacked, env)
        assert len(converted) == scenario.ticks == len(per_env[env])
        for step, record in enumerate(converted):  # the other input forms agree
            assert_same_record(per_env[env][step], record, 0.0, f"per_env {env} {step}")
        (last,) = to_tick_records(records[-1], env)
        assert_same_record(last, converted[-1], 0.0, f"one tick, env {env}")
        for steps, decisions in episodes[env]:
            if not steps:
                continue
            clock = TickClock(cfg)
            clock.reset()
            windows = [clock.decide(command, stages) for stages, command in decisions]
            want_records = [r for w in windows for r in w.records]
            want_pieces = [sub for w in windows for sub in w.pieces]
            assert len(want_records) >= len(steps)
            for tick, step in enumerate(steps):
                where = f"env {env}, episode tick {tick} (step {step})"
                assert_same_record(converted[step], want_records[tick], tol, where)
                for j in range(substeps):
                    first_s, first, second = (value[env] for value in pieces[step][j])
                    assert 0.0 <= first_s <= dt, where
                    got = substep_as_pieces(first_s, first, second, dt)
                    want = [(p.duration_s, (p.command.acceleration, p.command.steering))
                            for p in want_pieces[tick * substeps + j]]
                    assert len(got) == len(want), f"{where}, substep {j}: {got} vs {want}"
                    for (dg, cg), (dw, cw) in zip(got, want):
                        assert same_float(dg, dw, tol) and cg == cw, (
                            f"{where}, substep {j}: {got} vs {want}")


# -- 1. equivalence, property-based ------------------------------------------------------------


def latency_strategy(policy: int, substeps: int) -> st.SearchStrategy[float]:
    """Floats in [0, 0.5], exact tick multiples (`k / f` and `k * T`, which differ in
    binary), substep boundaries, and 0.5 ns (snapped), 1.5 ns and 5 ns (not snapped) either
    side of them; the values near boundaries drawn twice as often as the others."""
    tick_s, simulation = 1 / policy, policy * substeps
    boundaries = sorted(
        {k / policy for k in range(0, 11)} | {k * tick_s for k in range(0, 11)}
        | {j / simulation for j in range(0, 5 * substeps)})
    boundaries = [b for b in boundaries if b <= 0.5]
    offsets = (-5e-9, -1.5e-9, -0.5e-9, 0.5e-9, 1.5e-9, 5e-9)
    near = [b + off for b in boundaries for off in offsets if 0.0 <= b + off <= 0.5]
    return st.one_of(st.floats(0.0, 0.5), st.sampled_from(boundaries), st.sampled_from(near),
                     st.sampled_from(near))


LATENCIES = {(p, s): latency_strategy(p, s) for p in (5, 10, 20) for s in (1, 2, 5, 10)}


@st.composite
def scenarios(draw) -> Scenario:
    policy = draw(st.sampled_from([5, 10, 20]))
    substeps = draw(st.sampled_from([1, 2, 5, 10]))
    tick_s = 1 / policy
    mode = draw(st.sampled_from(["realtime", "realtime", "realtime", "lockstep"]))
    budget = draw(st.one_of(st.none(), st.floats(0.001, 0.5),
                            st.sampled_from([tick_s, 0.5 * tick_s, 2 * tick_s])))
    stage_budgets = draw(st.sampled_from([{}, {"perception": 0.01}, {"planning": 0.5 * tick_s},
                                          {"perception": 0.02, "planning": tick_s}]))
    two_stages = draw(st.sampled_from([True, False]))
    batch = draw(st.integers(1, 5))
    latencies = [draw(st.lists(LATENCIES[policy, substeps], min_size=1, max_size=8))
                 for _ in range(batch)]
    perception = [0.0, 0.004, 0.01, 0.01 + 0.5e-9, 0.01 + 1.5e-9, 0.01 + 5e-9, 0.03]
    extra = [draw(st.lists(st.sampled_from(perception), min_size=1, max_size=4))
             for _ in range(batch)]
    ticks = draw(st.integers(1, 30))
    resets = draw(st.lists(st.tuples(st.integers(0, ticks - 1), st.integers(0, batch - 1)),
                           max_size=4))
    return Scenario(policy, substeps, mode, budget, stage_budgets, two_stages, latencies,
                    extra, ticks, resets)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(scenarios())
def test_batched_clock_equals_tick_clock_per_env(scenario):
    """Records and substep pieces of every env equal its own TickClock's, bit for bit."""
    check_equivalence(scenario, "cpu", tol=0.0)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(scenarios())
def test_pipelined_batched_clock_equals_tick_clock_per_env(scenario):
    """Pipelined (each stage its own processor, frames overlapping, the newest waiting frame
    taken, at most one landing per tick): the same parity, bit for bit."""
    scenario.execution = "pipelined"
    check_equivalence(scenario, "cpu", tol=0.0)


def test_equivalence_covers_hard_cases():
    """Fixed scenarios the property must also pass: landings exactly on and 0.5 ns around
    tick and substep boundaries, `L = 3 * 0.1` (3.0000000000000004 T), long overruns, resets
    while a command is still pending."""
    hard = [0.0, 0.1, 0.3, 3 * 0.1, 0.2 - 0.5e-9, 0.2 + 0.5e-9, 0.04 + 0.5e-9, 0.04 - 0.5e-9,
            0.06 + 1.5e-9, 0.08 - 1.5e-9, 0.1 + 1.5e-9, 0.1 + 5e-9, 0.25, 0.03, 0.45, 0.7]
    rng = random.Random(7)
    for mode, execution in (("realtime", "sequential"), ("lockstep", "sequential"),
                            ("realtime", "pipelined"), ("lockstep", "pipelined")):
        lists = [hard[i:] + hard[:i] for i in range(0, 12, 2)]
        scenario = Scenario(10, 5, mode, None, {"perception": 0.01}, True, lists,
                            [[0.0, 0.01, 0.01 + 0.5e-9, 0.01 + 1.5e-9]] * 6, 40,
                            [(rng.randrange(40), rng.randrange(6)) for _ in range(5)],
                            execution)
        check_equivalence(scenario, "cpu", tol=0.0)


# -- 2. analytic cases -------------------------------------------------------------------------


def at_tick(cfg: ClockConfig, batch: int, k: int, command=OLD):
    """`batch` envs started with `command` in force, after `k` zero-latency decisions of
    it: at tick `k`, all observing."""
    state = initial_state(batch, initial_command=torch.tensor(command, dtype=F64))
    for _ in range(k):
        state, _ = decide(cfg, state, rows(*[command] * batch), lat(*[0.0] * batch))
        state = advance(cfg, state)
    assert state.tick.tolist() == [k] * batch and observing(state).all()
    assert state.held.tolist() == [list(command)] * batch
    return state


@pytest.mark.parametrize("k", [0, 3])
def test_latency_30ms_lands_mid_substep(k):
    """T = 0.1, dt = 0.02, env 0 L = 0.03, env 1 L = 0 at tick k.

    Env 0: substep 0 held (first_s = dt), substep 1 ([0.02, 0.04)) split 0.01 held /
    0.01 new, substeps 2..4 new (first_s = 0); lands and switches at t_k + 0.03. Env 1:
    every substep new, the switch at t_k. Both observe again at k + 1 with NEW in force.
    """
    cfg = config()
    state = at_tick(cfg, 2, k)
    t_k = k / 10
    state, decision = decide(cfg, state, rows(NEW, NEW), lat(0.03, 0.0))
    assert decision.observed.tolist() == [True, True]
    first_s = [substep_pieces(cfg, state, j)[0].tolist() for j in range(5)]
    assert [f[0] for f in first_s] == pytest.approx([DT, 0.01, 0.0, 0.0, 0.0], abs=1e-12)
    assert [f[1] for f in first_s] == [0.0] * 5
    _, first, second = substep_pieces(cfg, state, 1)
    assert first.tolist() == [list(OLD)] * 2 and second.tolist() == [list(NEW)] * 2

    records = tick_records(cfg, state, decision)
    assert records.lands_s.tolist() == pytest.approx([t_k + 0.03, t_k], abs=1e-12)
    assert records.switch_s.tolist() == pytest.approx([t_k + 0.03, t_k], abs=1e-12)
    assert records.dropped_after.tolist() == [0, 0] and records.overrun.tolist() == [False] * 2
    (record,) = to_tick_records([records], 0)
    assert record.switches == ((record.lands_s, Command(*NEW)),)
    assert record.held == Command(*OLD) and record.stage_latency_s == {DEFAULT_STAGE: 0.03}

    state = advance(cfg, state)
    assert observing(state).tolist() == [True, True]
    assert state.held.tolist() == [list(NEW)] * 2


def test_overrun_250ms_drops_two_frames_and_ignores_their_commands():
    """Env 0: L = 0.25 at tick 2 -> m = 3, dropped_after = 2, overrun; at ticks 3 and 4 it
    is busy: the commands and latencies passed for it (OTHER, even NaN) are ignored. The
    command lands at t_2 + 0.25 = 0.45, inside tick 4 at its substep 2 ([0.44, 0.46)),
    split 0.01/0.01; the agent observes again at tick 5 with NEW in force. Env 1 decides
    every tick with L = 0.05 and is unaffected."""
    cfg = config()
    other = (7.0, 0.3)
    state = at_tick(cfg, 2, 2)
    state, decision = decide(cfg, state, rows(NEW, NEW), lat(0.25, 0.05))
    records = [tick_records(cfg, state, decision)]
    assert decision.overrun.tolist() == [True, False]
    assert state.next_observation_tick.tolist() == [5, 3]
    state = advance(cfg, state)
    for k in (3, 4):
        assert observing(state).tolist() == [False, True]
        commands = rows((NAN, NAN) if k == 3 else other, other)
        state, decision = decide(cfg, state, commands, lat(NAN if k == 3 else 0.0, 0.05))
        assert state.pending[0].tolist() == list(NEW)
        firsts = [substep_pieces(cfg, state, j)[0][0].item() for j in range(5)]
        if k == 3:
            assert firsts == [DT] * 5
        else:
            assert firsts[:2] == [DT, DT] and firsts[3:] == [0.0, 0.0]
            assert firsts[2] == pytest.approx(0.01, abs=1e-12)
        records.append(tick_records(cfg, state, decision))
        state = advance(cfg, state)
    assert observing(state).tolist() == [True, True]
    assert state.held[0].tolist() == list(NEW) and state.held[1].tolist() == list(other)

    first, dropped1, dropped2 = to_tick_records(records, 0)
    assert first.observed and first.overrun and first.dropped_after == 2
    assert first.lands_s == pytest.approx(0.45, abs=1e-12) and first.switches == ()
    for dropped in (dropped1, dropped2):
        assert not dropped.observed and dropped.command is None and dropped.stage_latency_s == {}
        assert math.isnan(dropped.latency_s) and math.isnan(dropped.lands_s)
        assert dropped.held == Command(*OLD) and not dropped.overrun
    assert dropped1.switches == ()
    ((switch_s, switched_to),) = dropped2.switches
    assert switch_s == pytest.approx(0.45, abs=1e-12) and switched_to == Command(*NEW)
    assert [r.observed for r in to_tick_records(records, 1)] == [True, True, True]


@pytest.mark.parametrize("latency", [0.0, 0.03, 0.25])
def test_lockstep_applies_from_t_k_whatever_the_latency(latency):
    """Lockstep: every substep new from t_k (first_s = 0), one tick per decision, latency
    and overrun (L > B = 0.1) still recorded."""
    cfg = config("lockstep")
    state = at_tick(cfg, 1, 2)
    state, decision = decide(cfg, state, rows(NEW), lat(latency))
    assert [substep_pieces(cfg, state, j)[0].item() for j in range(5)] == [0.0] * 5
    (record,) = to_tick_records([tick_records(cfg, state, decision)], 0)
    assert record.latency_s == latency and record.overrun == (latency > 0.1)
    assert record.dropped_after == 0 and record.lands_s == 0.2
    assert record.switches == ((0.2, Command(*NEW)),) and record.held == Command(*OLD)
    state = advance(cfg, state)
    assert observing(state).item() and state.held[0].tolist() == list(NEW)


def test_reset_mid_run_leaves_other_envs_alone():
    """Three envs mid-window (env 1 busy with L = 0.25, its command pending); resetting env
    1 puts it at tick 0, observing, zero command, nothing pending; envs 0 and 2 keep every
    state value and continue exactly as an unreset run."""
    cfg = config()
    state = at_tick(cfg, 3, 2)
    state, _ = decide(cfg, state, rows(NEW, NEW, NEW), lat(0.05, 0.25, 0.15))
    state = advance(cfg, state)
    untouched = state
    state = reset(state, torch.tensor([False, True, False]))
    assert state.tick.tolist() == [3, 0, 3]
    assert observing(state).tolist() == [True, True, False]
    assert state.held[1].tolist() == [0.0, 0.0] and state.pending[1].tolist() == [0.0, 0.0]
    assert state.landing_offset_s[1].item() == 0.0 and state.window_start[1].item() == 0
    for name in ("tick", "window_tick", "window_ticks", "landing_offset_s", "held",
                 "pending"):
        for env in (0, 2):
            assert torch.equal(getattr(state, name)[env], getattr(untouched, name)[env]), name
    # the reset env's first decision starts from the zero command at t = 0
    state, decision = decide(cfg, state, rows(OLD, OLD, (NAN, NAN)), lat(0.03, 0.03, NAN))
    (record,) = to_tick_records([tick_records(cfg, state, decision)], 1)
    assert record.tick == 0 and record.t_s == 0.0 and record.held == ZERO_COMMAND
    assert record.lands_s == 0.03


def test_reset_with_initial_command():
    state = reset(initial_state(2), torch.tensor([True, False]), torch.tensor(OLD, dtype=F64))
    assert state.held.tolist() == [list(OLD), [0.0, 0.0]]
    assert state.pending.tolist() == [list(OLD), [0.0, 0.0]]


def test_stage_budgets_flag_per_env_and_per_stage():
    """Stage budget perception <= 0.01, total B = 0.1: env 0 overruns on perception only,
    env 1 on the total only, env 2 on both, env 3 on nothing (exactly on both budgets)."""
    cfg = config(stage_budgets_s={"perception": 0.01})
    state = initial_state(4)
    stages = {"perception": lat(0.02, 0.0, 0.02, 0.01), "planning": lat(0.01, 0.15, 0.1, 0.09)}
    state, decision = decide(cfg, state, rows(*[NEW] * 4), stages)
    assert decision.overrun.tolist() == [True, True, True, False]
    assert decision.stage_overrun["perception"].tolist() == [True, False, True, False]
    got = to_tick_records([tick_records(cfg, state, decision)], 2)[0]
    assert got.stage_overruns == ("perception",) and got.overrun
    assert got.stage_latency_s == {"perception": 0.02, "planning": 0.1}


def test_invalid_latencies():
    """Negative/NaN/inf latencies of observing envs raise ValueError naming stage and env;
    busy envs' values are ignored; float32 is refused (0.1f is 0.1000000015 s)."""
    cfg = config()
    state = initial_state(2)
    with pytest.raises(ValueError, match="latency of stage 'planning' is nan in env 1"):
        decide(cfg, state, rows(NEW, NEW), {"perception": lat(0.0, 0.0),
                                            "planning": lat(0.01, NAN)})
    for bad in (-1e-12, math.inf):
        with pytest.raises(ValueError, match="in env 0"):
            decide(cfg, state, rows(NEW, NEW), lat(bad, 0.0))
    with pytest.raises(TypeError, match="float32"):
        decide(cfg, state, rows(NEW, NEW), torch.tensor([0.1, 0.1]))
    with pytest.raises(ValueError, match="shape"):
        decide(cfg, state, rows(NEW, NEW), lat(0.1))
    busy, _ = decide(cfg, state, rows(NEW, NEW), lat(0.25, 0.0))
    busy = advance(cfg, busy)
    _, decision = decide(cfg, busy, rows((NAN, NAN), NEW), lat(NAN, 0.0))  # env 0 busy: fine
    assert decision.observed.tolist() == [False, True]


def test_batched_clock_object_and_plain_floats():
    """The stateful wrapper steps like the functions; latencies may be Python floats."""
    cfg = config()
    clock = BatchedClock(cfg, 2)
    seen = []
    for k in range(4):
        seen.append(clock.observing().tolist())
        clock.decide(rows(NEW, OLD), [0.15, 0.0])
        # env 0's command lands at 0.15 after its observation: its tick's last substep is
        # held at the observed ticks 0, 2 and new at the dropped ticks 1, 3
        assert clock.substep_pieces(4)[0].tolist() == [DT if k % 2 == 0 else 0.0, 0.0]
        assert isinstance(clock.records(), TickRecords)
        clock.advance()
    assert seen == [[True, True], [False, True], [True, True], [False, True]]
    with pytest.raises(RuntimeError):
        clock.advance()
    clock.decide(rows(NEW, OLD), [0.0, 0.0])
    with pytest.raises(RuntimeError, match="already"):
        clock.decide(rows(NEW, OLD), [0.0, 0.0])
    with pytest.raises(RuntimeError, match="inside a tick"):
        clock.reset()
    clock.advance()
    clock.reset(torch.tensor([True, False]))
    assert clock.state.tick.tolist() == [0, 5]
    with pytest.raises(ValueError, match="substep index"):
        clock.substep_pieces(5)


# -- 3. GPU ------------------------------------------------------------------------------------


def random_scenarios(count: int, seed: int) -> list[Scenario]:
    """Scenarios for the GPU run, drawn with `random` (no hypothesis shrinking on a GPU)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        policy, substeps = rng.choice([5, 10, 20]), rng.choice([1, 2, 5, 10])
        tick_s = 1 / policy
        pool = ([k / policy for k in range(6)] + [k * tick_s for k in range(6)]
                + [j / (policy * substeps) + off for j in range(3 * substeps)
                   for off in (-0.5e-9, 0.0, 0.5e-9) if j or off >= 0.0])
        batch = rng.randint(1, 16)
        latencies = [[rng.choice([rng.uniform(0, 0.5), rng.choice(pool)]) for _ in range(6)]
                     for _ in range(batch)]
        out.append(Scenario(policy, substeps, rng.choice(["realtime", "lockstep"]), None,
                            {"perception": 0.01}, rng.random() < 0.5, latencies,
                            [[0.0, 0.02]] * batch, 30,
                            [(rng.randrange(30), rng.randrange(batch)) for _ in range(3)]))
    return out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_clock_equals_tick_clock_on_cuda():
    for scenario in random_scenarios(40, seed=1):
        check_equivalence(scenario, "cuda", tol=1e-12)
        scenario.execution = "pipelined"
        check_equivalence(scenario, "cuda", tol=1e-12)


def test_random_scenarios_on_cpu():
    """The GPU test's scenarios pass on CPU too (so a GPU failure is the device's)."""
    for scenario in random_scenarios(10, seed=1):
        check_equivalence(scenario, "cpu", tol=0.0)


def test_pipelined_random_scenarios_on_cpu():
    """The GPU test's scenarios, pipelined."""
    for scenario in random_scenarios(10, seed=1):
        scenario.execution = "pipelined"
        check_equivalence(scenario, "cpu", tol=0.0)


def test_stage_names_changing_between_ticks():
    """A stage missing at some tick is left out of that tick's TickRecord, as TickClock
    records exactly the stages it was given."""
    cfg = config(stage_budgets_s={"perception": 0.01})
    clock, reference = BatchedClock(cfg, 1), TickClock(cfg)
    reference.reset()
    records, want = [], []
    for stages in ({"perception": 0.02}, {"planning": 0.03}, {}, {"planning": 0.0,
                                                                  "perception": 0.0}):
        clock.decide(rows(NEW), {name: lat(value) for name, value in stages.items()})
        records.append(clock.records())
        clock.advance()
        want.extend(reference.decide(Command(*NEW), stages).records)
    got = to_tick_records(records, 0)
    assert len(got) == len(want) == 4
    for tick, (a, b) in enumerate(zip(got, want)):
        assert_same_record(a, b, 0.0, f"tick {tick}")
