"""The tick contract (docs/ARCHITECTURE.md, "One tick, precisely"), pinned analytically.

Notation used throughout: tick period `T = 1 / policy_frequency`, substep `dt = 1 /
simulation_frequency`, `S = T / dt` substeps per tick, budget `B` (default `T`), tick `k`
starts at `t_k = k / policy_frequency`, the decision observed at `t_k` has latency `L`.

- realtime: the new command lands at exactly `t_k + L`; the substep containing that
  instant is split into a held piece and a new piece. The decision spans
  `m = max(1, ceil(L / T))` ticks (landing times within `TIME_EPS_S` of a boundary snap
  onto it), `m - 1` frames are dropped, and the agent next observes at `t_{k+m}`.
- lockstep: the command applies from `t_k`, one tick per decision, whatever `L` is.
- overrun: `L > B` or a stage over its own stage budget; recorded, never acted on here.

Every expected value below is worked out by hand in the test, not read back from the clock.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reflexdrive.envs.clock import (
    TIME_EPS_S,
    TickClock,
    TickRecord,
    Window,
    check_overrun,
    split_substeps,
    ticks_spanned,
)
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.types import ZERO_COMMAND, Command, Piece

OLD = Command(-3.0, 0.1)
NEW = Command(2.0, -0.2)

T = 0.1  # policy_frequency = 10 Hz
DT = 0.02  # simulation_frequency = 50 Hz, S = 5


def make_clock(mode: str = "realtime", **kwargs) -> TickClock:
    """A 10 Hz / 50 Hz clock (`T = 0.1`, `dt = 0.02`, `S = 5`)."""
    return TickClock(ClockConfig(simulation_frequency=50, policy_frequency=10, mode=mode, **kwargs))


def at_tick(clock: TickClock, k: int, command: Command = OLD) -> TickClock:
    """Reset, then make `k` zero-latency decisions of `command`: the clock stands at tick `k`
    with `command` in force."""
    clock.reset(command)
    for _ in range(k):
        clock.decide(command, {"stack": 0.0})
    assert clock.tick == k and clock.held == command
    return clock


def durations(substep: tuple[Piece, ...]) -> list[float]:
    return [piece.duration_s for piece in substep]


def commands(substep: tuple[Piece, ...]) -> list[Command]:
    return [piece.command for piece in substep]


def assert_whole_substeps(window: Window, n: int, dt: float) -> None:
    """`n` substeps, each cut into pieces of positive duration summing to `dt`."""
    assert len(window.pieces) == n
    for substep in window.pieces:
        assert 1 <= len(substep) <= 2
        assert all(piece.duration_s > 0.0 for piece in substep)
        assert abs(sum(durations(substep)) - dt) <= 1e-12


# -- 1. realtime, fixed latency L <= B ---------------------------------------------------------


@pytest.mark.parametrize("k", [0, 3, 17])
def test_realtime_latency_within_budget_lands_mid_substep(k):
    """T = 0.1, dt = 0.02, L = 0.03 at tick k.

    The window is one tick of 5 substeps. `t_k + 0.03` lies in substep 1 ([0.02, 0.04) after
    `t_k`), which splits into Piece(0.01, held) + Piece(0.01, new); substep 0 is held,
    substeps 2..4 are new. The record lands the command at `t_k + 0.03` and its one switch
    is `(t_k + 0.03, new)`; no frame is dropped, no overrun (0.03 <= B = 0.1).
    """
    clock = at_tick(make_clock(), k)
    t_k = k / 10
    window = clock.decide(NEW, {"perception": 0.01, "planning": 0.02})

    assert window.first_tick == k and window.ticks == 1 and not window.overrun
    assert_whole_substeps(window, 5, DT)
    assert commands(window.pieces[0]) == [OLD]
    assert commands(window.pieces[1]) == [OLD, NEW]
    assert durations(window.pieces[1]) == pytest.approx([0.01, 0.01], abs=1e-12)
    for j in (2, 3, 4):
        assert commands(window.pieces[j]) == [NEW]
    assert durations(window.pieces[0]) == pytest.approx([DT], abs=1e-12)

    (record,) = window.records
    assert record.tick == k and record.t_s == t_k and record.observed
    assert record.latency_s == pytest.approx(0.03, abs=1e-15)
    assert record.stage_latency_s == {"perception": 0.01, "planning": 0.02}
    assert record.command == NEW and record.held == OLD
    assert record.lands_s == pytest.approx(t_k + 0.03, abs=1e-12)
    assert len(record.switches) == 1
    (switch_s, switched_to), = record.switches
    assert switch_s == pytest.approx(t_k + 0.03, abs=1e-12) and switched_to == NEW
    assert record.switches[0][0] == record.lands_s
    assert not record.overrun and record.stage_overruns == () and record.dropped_after == 0

    assert record.applied_at(t_k) == OLD
    assert record.applied_at(t_k + 0.029) == OLD
    assert record.applied_at(t_k + 0.03) == NEW
    assert record.applied_at(t_k + 0.031) == NEW
    assert record.applied_at(t_k + 0.099) == NEW

    assert clock.tick == k + 1 and clock.held == NEW


def test_single_stage_lands_exactly_at_t_k_plus_L():
    """With one stage, `L` is that stage's value bit for bit: `lands_s == t_k + L` exactly."""
    clock = at_tick(make_clock(), 2)
    (record,) = clock.decide(NEW, {"stack": 0.03}).records
    assert record.latency_s == 0.03
    assert record.lands_s == 2 / 10 + 0.03
    assert record.switches == ((2 / 10 + 0.03, NEW),)


def test_sub_substep_latencies_differ_by_their_difference():
    """A 3 ms and a 17 ms stack differ by 14 ms of held command, not by a rounding to `dt`."""
    held_s = {}
    for latency in (0.003, 0.017):
        window = at_tick(make_clock(), 0).decide(NEW, {"stack": latency})
        held_s[latency] = sum(p.duration_s for sub in window.pieces for p in sub
                              if p.command == OLD)
    assert held_s[0.003] == pytest.approx(0.003, abs=1e-12)
    assert held_s[0.017] == pytest.approx(0.017, abs=1e-12)
    assert held_s[0.017] - held_s[0.003] == pytest.approx(0.014, abs=1e-12)


# -- 2. latency on a boundary -------------------------------------------------------------------


def test_latency_on_substep_boundary_does_not_split():
    """L = 0.04 = 2 dt: substeps 0, 1 wholly held, 2..4 wholly new, one piece each."""
    window = at_tick(make_clock(), 0).decide(NEW, {"stack": 0.04})
    assert_whole_substeps(window, 5, DT)
    assert [commands(s) for s in window.pieces] == [[OLD], [OLD], [NEW], [NEW], [NEW]]
    (record,) = window.records
    assert record.switches == ((0.04, NEW),)
    assert record.applied_at(0.039) == OLD and record.applied_at(0.04) == NEW


def test_zero_latency_applies_new_command_from_t_k():
    """L = 0: every piece is the new command; the switch is at `t_k` itself."""
    clock = at_tick(make_clock(), 4)
    window = clock.decide(NEW, {"stack": 0.0})
    assert window.ticks == 1
    assert_whole_substeps(window, 5, DT)
    assert all(commands(s) == [NEW] for s in window.pieces)
    (record,) = window.records
    assert record.held == OLD and record.switches == ((0.4, NEW),)
    assert record.applied_at(0.4) == NEW
    assert clock.tick == 5


def test_no_stages_means_zero_latency():
    """An empty stage mapping (what lockstep envs pass) is L = 0: new command from `t_k`."""
    window = at_tick(make_clock(), 0).decide(NEW, {})
    (record,) = window.records
    assert record.latency_s == 0.0 and not record.overrun and record.switches == ((0.0, NEW),)
    assert all(commands(s) == [NEW] for s in window.pieces)


def test_latency_of_exactly_one_tick_lands_on_next_boundary():
    """L = T = 0.1: the command lands exactly at `t_{k+1}`, which belongs to the next tick.

    So the window is 1 tick wholly held, no switch inside it, no dropped frame, no overrun
    (L = B is within budget); the next decision starts at tick k+1 with the command held.
    """
    clock = at_tick(make_clock(), 1)
    window = clock.decide(NEW, {"stack": 0.1})
    assert window.ticks == 1 and not window.overrun
    assert_whole_substeps(window, 5, DT)
    assert all(commands(s) == [OLD] for s in window.pieces)
    (record,) = window.records
    assert record.dropped_after == 0 and record.switches == () and record.held == OLD
    assert record.lands_s == pytest.approx(0.2, abs=1e-12)
    assert record.applied_at(0.1999) == OLD

    (next_record,) = clock.decide(OLD, {"stack": 0.05}).records
    assert next_record.tick == 2 and next_record.t_s == 0.2 and next_record.observed
    assert next_record.held == NEW and next_record.applied_at(0.2) == NEW


@pytest.mark.parametrize("latency", [0.3, 3 * 0.1, 3 / 10], ids=["0.3", "3*0.1", "3/10"])
def test_latency_of_three_ticks_snaps_to_third_boundary(latency):
    """L = 3T (0.3 is 2.9999999999999996 T in binary, 3*0.1 is 3.0000000000000004 T).

    Within `TIME_EPS_S` of the boundary, so: m = 3 ticks (not 4), 15 substeps all held, no
    switch in any record, 2 frames dropped, overrun (0.3 > B = 0.1), next decision at k+3
    with the command already in force there.
    """
    clock = at_tick(make_clock(), 0)
    window = clock.decide(NEW, {"stack": latency})
    assert window.ticks == 3 and window.overrun
    assert_whole_substeps(window, 15, DT)
    assert all(commands(s) == [OLD] for s in window.pieces)
    assert [r.switches for r in window.records] == [(), (), ()]
    assert [r.held for r in window.records] == [OLD, OLD, OLD]
    assert window.records[0].dropped_after == 2
    assert clock.tick == 3 and clock.held == NEW


@pytest.mark.parametrize(
    ("latency", "tick_s", "m"),
    [
        (0.0, 0.1, 1),
        (1e-12, 0.1, 1),
        (0.05, 0.1, 1),
        (0.1, 0.1, 1),
        (0.1 + 0.5 * TIME_EPS_S, 0.1, 1),  # snapped back onto the boundary
        (0.1 + 5 * TIME_EPS_S, 0.1, 2),  # beyond the snap: one more tick
        (0.2, 0.1, 2),
        (0.3, 0.1, 3),  # 0.3 / 0.1 = 2.9999999999999996
        (3 * 0.1, 0.1, 3),  # 0.30000000000000004 / 0.1 = 3.0000000000000004: not 4
        (0.25, 0.1, 3),
        (0.7, 0.1, 7),  # 0.7 / 0.1 = 6.999999999999999
        (0.5, 0.05, 10),
        (0.45, 0.05, 9),
    ],
)
def test_ticks_spanned(latency, tick_s, m):
    """m = max(1, ceil(L / T)), with L within TIME_EPS_S of a boundary snapped onto it."""
    assert ticks_spanned(latency, tick_s) == m


def test_split_substeps_directly():
    """split_substeps(5, 0.02, 0.05, a, b): substeps 0, 1 held, 2 split 0.01/0.01, 3, 4 new."""
    pieces = split_substeps(5, 0.02, 0.05, OLD, NEW)
    assert [commands(s) for s in pieces] == [[OLD], [OLD], [OLD, NEW], [NEW], [NEW]]
    assert durations(pieces[2]) == pytest.approx([0.01, 0.01], abs=1e-12)
    # within TIME_EPS_S of a substep boundary: snapped, no sliver pieces
    assert [commands(s) for s in split_substeps(5, 0.02, 0.04 + 0.5e-9, OLD, NEW)] == [
        [OLD], [OLD], [NEW], [NEW], [NEW]]
    assert [commands(s) for s in split_substeps(5, 0.02, 0.04 - 0.5e-9, OLD, NEW)] == [
        [OLD], [OLD], [NEW], [NEW], [NEW]]


def test_tick_times_are_integer_not_accumulated():
    """`t_3 = 3 / 10 = 0.3` exactly, not 0.1 + 0.1 + 0.1 = 0.30000000000000004."""
    clock = at_tick(make_clock(), 3)
    assert clock.decide(NEW, {"stack": 0.0}).records[0].t_s == 0.3
    assert clock.time_of(3) == 0.3 and clock.time_of(30) == 3.0


def test_reset_returns_to_tick_zero_with_initial_command():
    clock = at_tick(make_clock(), 5)
    clock.reset(NEW)
    assert clock.tick == 0 and clock.held == NEW
    (record,) = clock.decide(OLD, {"stack": 0.05}).records
    assert record.tick == 0 and record.held == NEW
    clock.reset()
    assert clock.held == ZERO_COMMAND


# -- 3. realtime, L > B: dropped frames ----------------------------------------------------------


@pytest.mark.parametrize("k", [0, 6])
def test_realtime_overrun_drops_frames_and_lands_late(k):
    """T = 0.1, L = 0.25 at tick k: m = ceil(2.5) = 3 ticks.

    Record k is observed (overrun, dropped_after = 2, held = old, no switch); records k+1
    and k+2 are dropped frames (not observed, no latency, no command); the command lands at
    `t_k + 0.25` inside tick k+2: the switch is on record k+2, whose held is still the old
    command. Pieces: substeps 0..11 held, substep 12 ([0.24, 0.26)) split 0.01/0.01,
    13..14 new. The next decision starts at tick k+3.
    """
    clock = at_tick(make_clock(), k)
    t_k = k / 10
    window = clock.decide(NEW, {"stack": 0.25})

    assert window.first_tick == k and window.ticks == 3 and window.overrun
    assert_whole_substeps(window, 15, DT)
    for j in range(12):
        assert commands(window.pieces[j]) == [OLD]
    assert commands(window.pieces[12]) == [OLD, NEW]
    assert durations(window.pieces[12]) == pytest.approx([0.01, 0.01], abs=1e-12)
    assert commands(window.pieces[13]) == commands(window.pieces[14]) == [NEW]

    first, dropped1, dropped2 = window.records
    assert [r.tick for r in window.records] == [k, k + 1, k + 2]
    assert [r.t_s for r in window.records] == [k / 10, (k + 1) / 10, (k + 2) / 10]
    assert [r.observed for r in window.records] == [True, False, False]

    assert first.latency_s == 0.25 and first.overrun and first.dropped_after == 2
    assert first.command == NEW and first.held == OLD and first.switches == ()
    assert first.lands_s == pytest.approx(t_k + 0.25, abs=1e-12)
    for dropped in (dropped1, dropped2):
        assert math.isnan(dropped.latency_s) and math.isnan(dropped.lands_s)
        assert dropped.command is None and dropped.stage_latency_s == {}
        assert not dropped.overrun and dropped.dropped_after == 0
        assert dropped.held == OLD
    assert dropped1.switches == ()
    ((switch_s, switched_to),) = dropped2.switches
    assert switch_s == pytest.approx(t_k + 0.25, abs=1e-12) and switched_to == NEW
    assert dropped2.applied_at(t_k + 0.249) == OLD and dropped2.applied_at(t_k + 0.25) == NEW

    assert clock.tick == k + 3
    (next_record,) = clock.decide(OLD, {"stack": 0.0}).records
    assert next_record.tick == k + 3 and next_record.observed and next_record.held == NEW


# -- 4. lockstep --------------------------------------------------------------------------------


@pytest.mark.parametrize(("latency", "overrun"), [(0.0, False), (0.03, False), (0.25, True)])
def test_lockstep_latency_does_not_affect_driving(latency, overrun):
    """Lockstep, any L: one tick, every piece the new command from `t_k`, no dropped frame;
    L and the overrun (L > B = 0.1) are still recorded."""
    clock = at_tick(make_clock("lockstep"), 2)
    window = clock.decide(NEW, {"stack": latency})
    assert window.first_tick == 2 and window.ticks == 1 and window.overrun == overrun
    assert_whole_substeps(window, 5, DT)
    assert all(commands(s) == [NEW] and durations(s) == pytest.approx([DT]) for s in window.pieces)
    (record,) = window.records
    assert record.observed and record.latency_s == latency
    assert record.overrun == overrun and record.dropped_after == 0
    assert record.held == OLD and record.switches == ((0.2, NEW),)
    assert record.lands_s == 0.2
    assert record.applied_at(0.2) == NEW
    assert clock.tick == 3


# -- 5. budgets ---------------------------------------------------------------------------------


def test_total_budget_smaller_than_tick():
    """B = 0.05 < T = 0.1: L = 0.07 overruns B but lands inside the tick, so no frame is
    dropped; L = 0.05 = B exactly is within budget."""
    clock = at_tick(make_clock(budget_s=0.05), 0)
    window = clock.decide(NEW, {"stack": 0.07})
    (record,) = window.records
    assert window.overrun and record.overrun and record.dropped_after == 0 and window.ticks == 1
    assert record.switches == ((0.07, NEW),)
    assert clock.tick == 1
    (record,) = clock.decide(OLD, {"stack": 0.05}).records
    assert not record.overrun


def test_stage_budget_overrun_under_total_budget():
    """Stage budget perception <= 0.01: a 0.02 s perception overruns even though the total
    0.03 s is well under B = 0.1; planning has no stage budget and is not flagged."""
    clock = at_tick(make_clock(stage_budgets_s={"perception": 0.01}), 0)
    window = clock.decide(NEW, {"perception": 0.02, "planning": 0.01})
    (record,) = window.records
    assert record.overrun and record.stage_overruns == ("perception",)
    assert window.overrun and window.stage_overruns == ("perception",)
    assert window.ticks == 1 and record.dropped_after == 0
    # exactly on the stage budget is within it
    (record,) = clock.decide(NEW, {"perception": 0.01, "planning": 0.01}).records
    assert not record.overrun and record.stage_overruns == ()


def test_check_overrun():
    """Overrun iff L > B + TIME_EPS_S or some stage exceeds its budget (+ TIME_EPS_S)."""
    config = ClockConfig(simulation_frequency=50, policy_frequency=10,
                         stage_budgets_s={"perception": 0.01, "planning": 0.05})
    assert check_overrun(config, 0.1, {"x": 0.1}) == (False, ())
    assert check_overrun(config, 0.1 + 0.5e-9, {}) == (False, ())
    assert check_overrun(config, 0.1 + 5e-9, {}) == (True, ())
    assert check_overrun(config, 0.07, {"perception": 0.02, "planning": 0.05}) == (
        True, ("perception",))
    assert check_overrun(config, 0.2, {"perception": 0.1, "planning": 0.1}) == (
        True, ("perception", "planning"))


# -- 6. invalid latencies -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1e-3, -1e-12, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("mode", ["realtime", "lockstep"])
def test_invalid_stage_latency_raises_and_leaves_clock_alone(bad, mode):
    clock = at_tick(make_clock(mode), 2)
    with pytest.raises(ValueError, match="latency of stage 'planning'"):
        clock.decide(NEW, {"perception": 0.01, "planning": bad})
    assert clock.tick == 2 and clock.held == OLD


# -- 7. properties ------------------------------------------------------------------------------


def reference_ticks(latency: float, policy_frequency: int) -> int:
    """The first boundary at or after the landing, in exact arithmetic: the smallest m >= 1
    with `m T >= L - TIME_EPS_S`."""
    return max(1, math.ceil((Fraction(latency) - Fraction(TIME_EPS_S)) * policy_frequency))


def reference_overrun(latency: float, budget: float) -> bool:
    return Fraction(latency) > Fraction(budget) + Fraction(TIME_EPS_S)


def latency_strategy(policy: int, substeps: int) -> st.SearchStrategy[float]:
    """Floats in [0, 0.5], mixed with exact tick multiples (both `k / f` and `k * T`, which
    differ in binary), substep boundaries, and values 0.5e-9 (snapped) and 5e-9 (not
    snapped) either side of them."""
    tick_s, simulation = 1 / policy, policy * substeps
    boundaries = sorted(
        {k / policy for k in range(0, 11)} | {k * tick_s for k in range(0, 11)}
        | {j / simulation for j in range(0, 5 * substeps)})
    boundaries = [b for b in boundaries if b <= 0.5]
    near = [b + off for b in boundaries for off in (-5e-9, -0.5e-9, 0.5e-9, 5e-9)
            if 0.0 <= b + off <= 0.5]
    return st.one_of(st.floats(0.0, 0.5), st.sampled_from(boundaries), st.sampled_from(near))


LATENCIES = {(p, s): latency_strategy(p, s) for p in (5, 10, 20) for s in (1, 2, 5, 10)}


@st.composite
def scenarios(draw):
    """Frequencies (policy 5, 10, 20 Hz; 1, 2, 5, 10 substeps per tick), a budget (None = T,
    random, or T/2, T, 2T) and a sequence of 1..12 latencies."""
    policy = draw(st.sampled_from([5, 10, 20]))
    substeps = draw(st.sampled_from([1, 2, 5, 10]))
    tick_s = 1 / policy
    budget = draw(st.one_of(st.none(), st.floats(0.001, 0.5),
                            st.sampled_from([tick_s, 0.5 * tick_s, 2 * tick_s])))
    latencies = draw(st.lists(LATENCIES[policy, substeps], min_size=1, max_size=12))
    return policy, substeps, budget, latencies


def decision_command(j: int) -> Command:
    """Distinct per decision (and distinct from ZERO_COMMAND), so each is traceable."""
    return Command(float(j + 1), 0.001 * (j + 1))


def run_clock(config: ClockConfig, latencies: list[float]) -> tuple[TickClock, list[Window]]:
    clock = TickClock(config)
    clock.reset()
    windows = [clock.decide(decision_command(j), {"stack": lat}) for j, lat in enumerate(latencies)]
    return clock, windows


def applied_timeline(clock: TickClock, records: list[TickRecord]) -> list[tuple[float, Command]]:
    """(time, command) each time the applied command changes, from ZERO_COMMAND at t = 0:
    a changed `held` at a tick start, the switches inside ticks, and the command in force at
    the boundary after the last window."""
    events, current = [], ZERO_COMMAND
    for record in records:
        if record.held != current:
            events.append((record.t_s, record.held))
        current = record.held
        for switch_s, command in record.switches:
            events.append((switch_s, command))
            current = command
    if clock.held != current:
        events.append((clock.time_of(clock.tick), clock.held))
    return events


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(scenarios())
def test_realtime_invariants(scenario):
    """Realtime, random frequencies, budget and latencies L_0, L_1, ...; decision j observed
    at tick k_j. Expected, with m_j = max(1, ceil(L_j / T)) (exact arithmetic, L snapped
    within TIME_EPS_S of a boundary):

    (a) records cover ticks 0, 1, 2, ... once each, t_s = tick / policy_frequency;
    (b) k_{j+1} = k_j + m_j, and only the first record of each window is observed;
    (c) the applied-command timeline is non-decreasing, each switch inside its tick;
    (d) command j takes effect at t_{k_j} + L_j (1e-9), no later than t_{k_j + m_j};
    (e) dropped_after = m_j - 1, overrun iff L_j > B + TIME_EPS_S;
    (f) each window has m_j * S substeps whose pieces sum to dt (1e-12), held then new;
    (g) each piece's command is the record's applied_at at the piece's midpoint.
    """
    policy, substeps, budget, latencies = scenario
    config = ClockConfig(simulation_frequency=policy * substeps, policy_frequency=policy,
                         mode="realtime", budget_s=budget)
    tick_s, dt, budget_s = 1 / policy, 1 / (policy * substeps), config.budget
    clock, windows = run_clock(config, latencies)
    records = [r for w in windows for r in w.records]

    # (a) ticks 0, 1, 2, ... with none lost or doubled; t_s from integers
    assert [r.tick for r in records] == list(range(len(records)))
    assert all(r.t_s == r.tick / policy for r in records)
    assert clock.tick == len(records)

    expected_first = 0
    for j, (window, latency) in enumerate(zip(windows, latencies)):
        m = reference_ticks(latency, policy)
        t_k = expected_first / policy
        # (b) one observation per decision, the first record of its window
        assert window.first_tick == expected_first and window.ticks == m == len(window.records)
        assert [r.observed for r in window.records] == [True] + [False] * (m - 1)
        first = window.records[0]
        assert first.command == decision_command(j) and first.latency_s == latency
        # (e) dropped frames and overrun, against the exact reference
        assert first.dropped_after == m - 1
        assert first.overrun == window.overrun == reference_overrun(latency, budget_s)
        assert not any(r.overrun for r in window.records[1:])
        # (d) lands at t_k + L, never after the next observation
        assert abs(first.lands_s - (t_k + latency)) <= 1e-9
        assert first.lands_s <= (expected_first + m) / policy + 1e-9
        # (f) m * S whole substeps
        assert_whole_substeps(window, m * substeps, dt)
        # pieces: held before the landing, new from it on, at most one split substep
        flat = [p.command for s in window.pieces for p in s]
        n_held = sum(c != decision_command(j) for c in flat)
        assert flat[n_held:] == [decision_command(j)] * (len(flat) - n_held)
        assert sum(len(s) == 2 for s in window.pieces) <= 1
        held_s = sum(p.duration_s for s in window.pieces for p in s
                     if p.command != decision_command(j))
        assert abs(held_s - min(latency, m * tick_s)) <= 1e-9
        # (g) pieces agree with the records' applied command at their midpoints
        for s_index, substep in enumerate(window.pieces):
            record = window.records[s_index // substeps]
            offset = t_k + s_index * dt
            for piece in substep:
                assert record.applied_at(offset + piece.duration_s / 2) == piece.command
                offset += piece.duration_s
        expected_first += m
    assert (sum(w.overrun for w in windows)
            == sum(reference_overrun(lat, budget_s) for lat in latencies))

    # (c) the applied-command timeline is non-decreasing, switches lie inside their tick
    for record in records:
        for switch_s, _ in record.switches:
            assert record.t_s - 1e-9 <= switch_s < record.t_s + tick_s
    timeline = applied_timeline(clock, records)
    times = [t for t, _ in timeline]
    assert times == sorted(times)
    # (d) every decision's command appears exactly once, at t_k + L (within 1e-9)
    assert [c for _, c in timeline] == [decision_command(j) for j in range(len(latencies))]
    firsts = [w.first_tick for w in windows]
    for (time_s, _), k, latency in zip(timeline, firsts, latencies):
        assert abs(time_s - (k / policy + latency)) <= 1e-9


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(scenarios())
def test_lockstep_invariants(scenario):
    """Lockstep, same latencies: every window is one tick of new-command pieces, the switch at
    `t_k`; latency and overrun recorded as in realtime, never a dropped frame."""
    policy, substeps, budget, latencies = scenario
    config = ClockConfig(simulation_frequency=policy * substeps, policy_frequency=policy,
                         mode="lockstep", budget_s=budget)
    dt = 1 / (policy * substeps)
    clock, windows = run_clock(config, latencies)
    assert clock.tick == len(latencies)
    for k, (window, latency) in enumerate(zip(windows, latencies)):
        assert window.first_tick == k and window.ticks == 1
        assert_whole_substeps(window, substeps, dt)
        assert all(commands(s) == [decision_command(k)] for s in window.pieces)
        (record,) = window.records
        assert record.observed and record.t_s == k / policy and record.latency_s == latency
        assert record.dropped_after == 0
        assert record.overrun == reference_overrun(latency, config.budget)
        assert record.held == (decision_command(k - 1) if k else ZERO_COMMAND)
        assert record.switches == ((k / policy, decision_command(k)),)
