"""Pipelined execution (`envs.clock.pipeline`, `ClockConfig.execution="pipelined"`), by hand.

Each stage runs on its own processor: a frame enters stage 0 at each tick boundary where
stage 0 is free, waits for each next stage, which takes the newest waiting frame (older
ones are dropped), and its command lands when the last stage finishes. Every case runs on
the `TickClock` and on the `BatchedClock` (B = 1), which must agree.

Notation: `T = 0.1 s` (10 Hz), `dt = 0.02 s` (50 Hz), `S = 5`, `t_k = k T`.
"""

from __future__ import annotations

import math

import pytest
import torch
from reflexdrive.envs.clock import BatchedClock, TickClock, to_tick_records
from reflexdrive.envs.clock.contract import command_landings
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.types import Command

from reflexdrive.common.validation import ConfigError

TOL = 1e-12


def config(execution: str, **kwargs) -> ClockConfig:
    return ClockConfig(simulation_frequency=50, policy_frequency=10, execution=execution,
                       **kwargs)


def command(k: int) -> Command:
    """Distinct per tick: `(k + 1, -k / 100)`."""
    return Command(float(k + 1), -k / 100)


def run_single(cfg: ClockConfig, stages_at, ticks: int):
    """`TickClock` for `ticks` ticks; `stages_at(k)` are the stage latencies of the frame
    observed at tick `k`. Returns (records, pieces per substep)."""
    clock = TickClock(cfg)
    clock.reset()
    records, pieces = [], []
    while clock.tick < ticks:
        window = clock.decide(command(clock.tick), stages_at(clock.tick))
        records.extend(window.records)
        pieces.extend(window.pieces)
    return records[:ticks], pieces[:ticks * cfg.substeps_per_tick]


def run_batched(cfg: ClockConfig, stages_at, ticks: int):
    clock = BatchedClock(cfg, 1)
    records = []
    for k in range(ticks):
        stages = stages_at(k)
        clock.decide(torch.tensor([[command(k).acceleration, command(k).steering]],
                                  dtype=torch.float64),
                     {name: torch.tensor([value], dtype=torch.float64)
                      for name, value in stages.items()})
        records.append(clock.records())
        clock.advance()
    return to_tick_records(records, 0)


def run(cfg: ClockConfig, stages_at, ticks: int):
    """Records of both clocks, checked equal; returns the `TickClock`'s and its pieces."""
    records, pieces = run_single(cfg, stages_at, ticks)
    for got, want in zip(run_batched(cfg, stages_at, ticks), records, strict=True):
        assert comparable(got) == comparable(want)
    return records, pieces


def comparable(record) -> tuple:
    """The record's fields with NaN as None (NaN != NaN)."""
    return tuple(None if isinstance(v, float) and math.isnan(v) else v
                 for v in vars(record).values())


def ages(records) -> dict[int, float]:
    """Observed tick -> age of its command when it landed [s] (absent: never landed)."""
    return {tick: lands - tick * 0.1 for tick, lands in command_landings(records).items()}


def constant(**stages):
    return lambda k: dict(stages)


def test_60_and_50_ms_stages_sequential_overrun_and_drop_every_other_frame():
    records, _ = run(config("sequential"), constant(perception=0.06, planning=0.05), 10)
    assert [r.observed for r in records] == [True, False] * 5
    assert all(r.overrun and r.dropped_after == 1 for r in records if r.observed)
    assert all(math.isclose(age, 0.11, abs_tol=TOL) for age in ages(records).values())
    assert sorted(ages(records)) == [0, 2, 4, 6, 8]


def test_60_and_50_ms_stages_pipelined_decide_every_tick_each_command_110_ms_old():
    records, pieces = run(config("pipelined"), constant(perception=0.06, planning=0.05), 10)
    assert all(r.observed and not r.overrun and r.dropped_after == 0 for r in records)
    assert all(math.isnan(r.lands_s) for r in records)  # two stages: known when it lands
    age = ages(records)
    assert sorted(age) == list(range(9))  # frame 9 lands at 1.01 s, after the 10 ticks
    assert all(math.isclose(value, 0.11, abs_tol=TOL) for value in age.values())
    for k in range(1, 10):  # frame k-1 switches in 10 ms into tick k
        (switch_s, switched), = records[k].switches
        assert records[k].landed_tick == k - 1 and switched == command(k - 1)
        assert math.isclose(switch_s, (k - 1) * 0.1 + 0.11, abs_tol=TOL)
        first = pieces[k * 5]     # substep [t_k, t_k + 20 ms): 10 ms held, then the new one
        assert [p.command for p in first] == [records[k].held, command(k - 1)]
        assert math.isclose(first[0].duration_s, 0.01, abs_tol=TOL)
    assert records[0].switches == () and records[0].landed_tick == -1


@pytest.mark.parametrize("latencies", [[0.03, 0.25, 0.1, 0.0, 0.17, 0.05, 0.2, 0.04]])
def test_one_stage_end_to_end_records_the_same_in_both_modes(latencies):
    """An end-to-end policy is one stage: pipelining changes nothing."""
    stages_at = lambda k: {"policy": latencies[k % len(latencies)]}  # noqa: E731
    sequential, seq_pieces = run(config("sequential"), stages_at, 24)
    pipelined, pipe_pieces = run(config("pipelined"), stages_at, 24)
    for a, b in zip(sequential, pipelined):
        assert (a.tick, a.observed, a.overrun, a.dropped_after, a.command, a.held) == (
            b.tick, b.observed, b.overrun, b.dropped_after, b.command, b.held)
        assert a.lands_s == pytest.approx(b.lands_s, abs=TOL, nan_ok=True)
    assert command_landings(sequential) == pytest.approx(command_landings(pipelined), abs=TOL)
    for a, b in zip(seq_pieces, pipe_pieces):
        a = [(p.duration_s, p.command) for p in a if p.duration_s > TOL]
        b = [(p.duration_s, p.command) for p in b if p.duration_s > TOL]
        assert [c for _, c in a] == [c for _, c in b]
        assert [d for d, _ in a] == pytest.approx([d for d, _ in b], abs=TOL)


def test_slow_middle_stage_takes_the_newest_waiting_frame_and_drops_older_ones():
    """Stages 20, 250, 10 ms. Frame 0 lands at 0.28 s. Frame 1 finishes perception at
    0.12 s and waits (planning busy until 0.27 s); frame 2 arrives at 0.22 s and replaces
    it; planning takes frame 2 at 0.27 s: it lands at 0.53 s, 330 ms old (50 ms waited).
    Frames 3, 4 wait and are replaced in turn; frame 5 finishes perception at 0.52 s, the
    instant planning frees up: the newest, it is taken (frame 4 dropped) and lands 280 ms
    old at 0.78 s; frame 7 (6 replaced) lands at 1.03 s."""
    records, _ = run(config("pipelined"), constant(perception=0.02, planning=0.25,
                                                    control=0.01), 12)
    assert all(r.observed for r in records)  # perception (20 ms) is free at every tick
    assert all(r.overrun and r.stage_overruns == () for r in records)  # planning > T
    age = ages(records)
    assert sorted(age) == [0, 2, 5, 7]
    assert age[0] == pytest.approx(0.28, abs=TOL) and age[5] == pytest.approx(0.28, abs=TOL)
    assert age[2] == pytest.approx(0.33, abs=TOL) and age[7] == pytest.approx(0.33, abs=TOL)
    assert [r.landed_tick for r in records] == [-1, -1, 0, -1, -1, 2, -1, 5, -1, -1, 7, -1]


def test_commands_finishing_in_one_tick_the_newest_supersedes():
    """Frame 0 (10 + 150 ms) lands at 0.16 s; frame 1 (10 + 10 ms) waits for planning
    until 0.16 s and lands at 0.17 s, in the same tick: it supersedes frame 0, which
    never takes effect (the world integrates one switch per tick)."""
    stages = [{"perception": 0.01, "planning": 0.15}, {"perception": 0.01, "planning": 0.01}]
    records, pieces = run(config("pipelined"), lambda k: stages[min(k, 1)], 4)
    assert records[1].landed_tick == 1 and records[1].switches[0][1] == command(1)
    assert records[1].switches[0][0] == pytest.approx(0.17, abs=TOL)
    assert 0 not in command_landings(records)
    held = [p.command for p in pieces[5 + 3]]  # substep [0.16, 0.18): held, then frame 1
    assert held == [Command(0.0, 0.0), command(1)]


def test_stage_budgets_and_the_budget_bound_each_stage_when_pipelined():
    """Pipelined, the budget bounds every stage (each has a processor), not the sum."""
    stages = constant(perception=0.06, planning=0.05)
    records, _ = run(config("pipelined", stage_budgets_s={"perception": 0.05}), stages, 3)
    assert all(r.overrun and r.stage_overruns == ("perception",) for r in records)
    records, _ = run(config("pipelined", budget_s=0.055), stages, 3)
    assert all(r.overrun and r.stage_overruns == () for r in records)
    records, _ = run(config("pipelined", budget_s=0.06), stages, 3)
    assert not any(r.overrun for r in records)


def test_lockstep_is_unchanged_by_pipelining():
    stages = constant(perception=0.06, planning=0.05)
    want, _ = run(config("sequential", mode="lockstep", budget_s=0.2), stages, 4)
    got, _ = run(config("pipelined", mode="lockstep", budget_s=0.2), stages, 4)
    assert [comparable(r) for r in got] == [comparable(r) for r in want]


def test_execution_is_validated():
    with pytest.raises(ConfigError, match="execution.*sequential, pipelined"):
        ClockConfig(execution="parallel")


def test_the_stage_count_must_not_change_in_an_episode():
    clock = TickClock(config("pipelined"))
    clock.decide(command(0), {"a": 0.01, "b": 0.01})
    with pytest.raises(ValueError, match="stages"):
        clock.decide(command(1), {"a": 0.01})
