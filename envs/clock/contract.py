"""The tick contract: when a decision is observed, when its command takes effect.

Time is integer: tick `k` starts at `t_k = k * T` and holds `S = T / dt` substeps. At each
observed tick the agent sees the world, and its command `a_k` lands after its latency `L_k`:

- realtime: `a_k` takes effect exactly at `t_k + L_k`. Until then the previous command is
  held. The substep containing `t_k + L_k` is integrated in two pieces, so sub-substep
  latencies count. If `L_k > T` the agent, still busy, skips the tick boundaries that pass
  while it computes and next observes at the first boundary at or after it finishes: the
  decision spans `m = max(1, ceil(L_k / T))` ticks and `m - 1` frames are dropped.
- lockstep: the world waits; `a_k` takes effect at `t_k`, each decision spans one tick.
  Latency is still recorded and budgets still checked.

A tick is an *overrun* when `L_k > B` (the total budget) or a stage exceeds its own
budget. What happens then (`on_overrun`) is up to the env; the clock only records it.

This module holds the contract's data and arithmetic, shared by both clocks: the records
(`TickRecord`, `Window`), the error (`DeadlineMiss`) and the plain-Python functions on
scalars (`ticks_spanned`, `split_substeps`, `check_overrun`). `single.TickClock` applies them
to one env, `batched` to `B` envs in torch tensors. The backend integrates the pieces and
never sees latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.types import Command, Piece

TIME_EPS_S = 1e-9
"""Tolerance when comparing a landing time with a substep or tick boundary [s].

Latencies within a nanosecond of a boundary are snapped onto it, so `L = 2T` (not
representable exactly in binary) still means "lands exactly on the second boundary"."""


class DeadlineMiss(RuntimeError):
    """Raised by an env with `on_overrun="raise"` when a tick overruns its budget."""


@dataclass(frozen=True)
class TickRecord:
    """What happened during one tick `[t_k, t_{k+1})`.

    Attributes:
        tick: tick index `k`.
        t_s: tick start `t_k = k * T` [s].
        observed: the agent observed at `t_k` (False: the frame was dropped, agent busy).
        latency_s: total latency `L_k` of the decision made at this tick [s]; NaN if not observed.
        stage_latency_s: per-stage latencies of that decision [s]; empty if not observed.
        overrun: the decision exceeded its total budget or a stage budget.
        stage_overruns: names of the stages that exceeded their own budgets.
        dropped_after: tick boundaries this decision made the agent skip (`m - 1`).
        command: the command requested at this tick, None if not observed.
        lands_s: absolute time the requested command takes effect [s]; NaN if not observed.
        held: the command in force at `t_k`.
        switches: `(time_s, command)` changes of the applied command inside `[t_k, t_{k+1})`,
            in time order (a command landing exactly on `t_{k+1}` belongs to the next tick).
        landed_tick: the tick whose decision's command switched in during this tick (the
            last switch's), -1 if none. Pipelined, `lands_s` is NaN when the frame is
            observed (its landing depends on later frames): this field says when it landed.
    """

    tick: int
    t_s: float
    observed: bool
    latency_s: float
    stage_latency_s: Mapping[str, float]
    overrun: bool
    stage_overruns: tuple[str, ...]
    dropped_after: int
    command: Command | None
    lands_s: float
    held: Command
    switches: tuple[tuple[float, Command], ...] = ()
    landed_tick: int = -1
    held_tick: int = -1

    def applied_at(self, time_s: float) -> Command:
        """The command applied at `time_s` inside this tick."""
        current = self.held
        for switch_s, command in self.switches:
            if switch_s <= time_s + TIME_EPS_S:
                current = command
        return current


@dataclass(frozen=True)
class Window:
    """The stretch of world time one decision covers: `ticks` ticks from `first_tick`.

    Attributes:
        first_tick: the observed tick `k`.
        ticks: number of ticks `m` until the agent observes again.
        pieces: per substep (`m * S` of them), the command pieces to integrate; durations
            of each substep's pieces sum to `dt`.
        records: one `TickRecord` per tick of the window.
        overrun: the decision overran (copied from the first record).
    """

    first_tick: int
    ticks: int
    pieces: tuple[tuple[Piece, ...], ...]
    records: tuple[TickRecord, ...]
    overrun: bool = False
    stage_overruns: tuple[str, ...] = field(default=())


def ticks_spanned(latency_s: float, tick_s: float) -> int:
    """`m = max(1, ceil(L / T))`: ticks from an observation to the next one the agent can take."""
    return max(1, math.ceil((latency_s - TIME_EPS_S) / tick_s))


def split_substeps(
    n_substeps: int,
    substep_s: float,
    landing_s: float,
    held: Command,
    new: Command,
) -> tuple[tuple[Piece, ...], ...]:
    """Cut `n_substeps` substeps of length `dt` into command pieces around one switch.

    The held command applies before `landing_s` (offset from the window start [s]), the new
    command from it on. The substep containing the switch gets two pieces, every other
    substep one. Landing times within `TIME_EPS_S` of a substep boundary snap onto it.

    Returns:
        a tuple of `n_substeps` tuples of `Piece`, each summing to `dt`.
    """
    pieces = []
    for j in range(n_substeps):
        start = j * substep_s
        end = (j + 1) * substep_s
        if landing_s <= start + TIME_EPS_S:
            pieces.append((Piece(substep_s, new),))
        elif landing_s >= end - TIME_EPS_S:
            pieces.append((Piece(substep_s, held),))
        else:
            first = landing_s - start
            pieces.append((Piece(first, held), Piece(substep_s - first, new)))
    return tuple(pieces)


def check_overrun(
    config: ClockConfig, latency_s: float, stage_latency_s: Mapping[str, float]
) -> tuple[bool, tuple[str, ...]]:
    """Whether a decision overran the budget or any stage budget, and which stages did.

    Sequential, the budget bounds the total `L_k`; pipelined, each stage has a processor of
    its own and the budget bounds every stage (the slowest sets the rate).
    """
    stage_overruns = tuple(
        stage
        for stage, budget in config.stage_budgets_s.items()
        if stage_latency_s.get(stage, 0.0) > budget + TIME_EPS_S
    )
    if config.execution == "pipelined":
        latency_s = max(stage_latency_s.values(), default=0.0)
    return (latency_s > config.budget + TIME_EPS_S) or bool(stage_overruns), stage_overruns


def command_landings(records: Sequence[TickRecord]) -> dict[int, float]:
    """Observed tick -> absolute time its decision's command took effect [s].

    Sequential, that is `lands_s` (known when observed, possibly past the episode's end);
    pipelined, the switch of the record whose `landed_tick` names it (or the `t_k` of the
    one whose `held_tick` does). Decisions absent from
    the result never took effect: dropped between pipeline stages, superseded in their
    tick, or still in flight when the episode ended.
    """
    landings = {r.tick: r.lands_s for r in records if r.observed and r.lands_s == r.lands_s}
    for record in records:
        if record.held_tick >= 0 and record.held_tick not in landings:
            landings[record.held_tick] = record.t_s
        if record.landed_tick >= 0 and record.landed_tick not in landings:
            landings[record.landed_tick] = record.switches[-1][0]
    return landings
