"""The tick clock batched over `B` envs: `TickClock`'s contract in torch tensors.

Same contract as `single.TickClock` (`contract`; docs/ARCHITECTURE.md, "One tick,
precisely"), but for `B` envs stepped **one tick at a time** together (a batched
`VectorEnv` over a batched world backend), with per-env latencies, per-env exact actuation
times, overruns, dropped frames and per-env auto-reset. Every result is bit-for-bit what a
`TickClock` per env computes: the same float64 expressions, evaluated in the same order,
with the same `TIME_EPS_S` snapping (a landing within 1 ns of a substep or tick boundary
snaps onto it).

Notation: `B` envs, tick `T = 1 / policy_frequency` [s], substep `dt = 1 /
simulation_frequency` [s], `S = T / dt` substeps per tick, tick `k` starts at
`t_k = k / policy_frequency` [s]. All times are float64 seconds, ticks int64, commands
float64 `(B, 2)` rows `[acceleration m/s^2, steering rad]`.

One tick for all envs, in this order (`BatchedClock` wraps it):

1. `observing(state)`: `(B,)` bool, the envs whose agent observes at `t_k` (not busy).
2. `decide(config, state, commands, stage_latency_s)`: each observing env's decision
   starts a new *window*: realtime, its command lands at `t_k + L` and the window spans
   `m = max(1, ceil(L / T))` ticks (`m - 1` dropped frames, the agent next observes at
   `k + m`); lockstep, it lands at `t_k` and `m = 1`. Busy envs ignore their row of
   `commands` and latencies (their frame is dropped).
3. `substep_pieces(config, state, j)` for `j = 0..S-1`: per env, the first `first_s`
   seconds of substep `j` apply `first`, the remaining `dt - first_s` apply `second`.
4. `tick_records(config, state, decision)`: the tick's `TickRecords` (optional).
5. `advance(config, state)`: end of the tick; then `reset(state, mask)` for envs whose
   episode ended (auto-reset), which observe again at their tick 0.

The state keeps each env's window as (ticks since it started `i`, ticks it spans `m`,
landing offset from its start `L` [s]): the numbers `TickClock.decide` works from, so
every substep boundary, record time and switch is recomputed from integers and one float,
never accumulated.

Speed: every call is a fixed handful of elementwise torch ops, no per-env Python loop and
no device sync (except `validate=True` in `decide`: one). `(B, 2)` command selects view
each row as one complex128, which keeps them 1-D (timings: docs/clock.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Mapping, Sequence

import torch
from reflexdrive.envs.clock.batched_pipeline import (
    BatchedPipelineState,
    pipelined_tick,
    reset_rows,
)
from reflexdrive.envs.clock.contract import TIME_EPS_S, TickRecord
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.latency.errors import TOTAL_STAGE
from reflexdrive.envs.types import Command

__all__ = [
    "DEFAULT_STAGE",
    "BatchedClock",
    "BatchedClockState",
    "TickDecision",
    "TickRecords",
    "advance",
    "decide",
    "initial_state",
    "observing",
    "reset",
    "stack_records",
    "substep_pieces",
    "tick_records",
    "to_tick_records",
    "to_tick_records_per_env",
]

DEFAULT_STAGE = TOTAL_STAGE
"""Stage name a bare `(B,)` latency tensor is recorded under: "total", the latency models'
name for an undivided latency."""

TIME_DTYPE = torch.float64
"""dtype of every time and command tensor: float64, so results match `TickClock` bit for bit."""


@dataclass(frozen=True)
class BatchedClockState:
    """The clock of `B` envs during tick `tick`. Batch-first tensors, all on one device.

    The current *window* of each env is the latest decision, observed at tick `k_0`: it
    spans `m` ticks, its command lands `landing_offset_s` after `t_{k_0}`, and the agent
    observes again at `k_0 + m`. Window counters are exact integers held as float64 so the
    substep and tick offsets `n * dt`, `i * T` are formed without integer conversions.

    Attributes:
        tick: `(B,)` int64, current tick `k` of each env's episode (`t_k = k / f` [s]).
        window_tick: `(B,)` float64, ticks since the latest observation, `i = k - k_0`.
        window_ticks: `(B,)` float64, ticks the window spans, `m` (0 before the first
            decision). The env observes at `t_k` when `i >= m`.
        landing_offset_s: `(B,)` float64, when the window's command takes effect, as an
            offset from `t_{k_0}` [s]: `L` in realtime, 0 in lockstep.
        held: `(B, 2)` float64 contiguous, the command in force at `t_k` (start of the tick).
        pending: `(B, 2)` float64 contiguous, the window's command; it takes over from `held`
            at `t_{k_0} + landing_offset_s` and equals `held` once landed.
        pipeline: pipelined execution only (realtime), the stages of each env's stack
            (`batched_pipeline`), created at the first decision. Then the window is stage 0's
            (`m` from its latency), and `landing_offset_s`, `pending` describe the current
            tick's landing, offset from `t_k` (inf, `held`: none).
    """

    tick: torch.Tensor
    window_tick: torch.Tensor
    window_ticks: torch.Tensor
    landing_offset_s: torch.Tensor
    held: torch.Tensor
    pending: torch.Tensor
    pipeline: BatchedPipelineState | None = None

    @property
    def batch_size(self) -> int:
        return int(self.tick.shape[0])

    @property
    def device(self) -> torch.device:
        return self.tick.device

    @property
    def window_start(self) -> torch.Tensor:
        """`(B,)` int64, the tick `k_0` of the latest observation."""
        return self.tick - self.window_tick.to(torch.int64)

    @property
    def next_observation_tick(self) -> torch.Tensor:
        """`(B,)` int64, the tick the agent observes at next, `k_0 + m` (at most `k`: the
        agent observes now)."""
        return self.tick + torch.clamp_min(self.window_ticks - self.window_tick, 0.0).to(
            torch.int64)

    def time_s(self, config: ClockConfig) -> torch.Tensor:
        """`(B,)` float64 `t_k = k / policy_frequency` [s], from integers."""
        return self.tick.to(TIME_DTYPE) / float(config.policy_frequency)

    def lands_s(self, config: ClockConfig) -> torch.Tensor:
        """`(B,)` float64 absolute time the window's command takes effect [s] (at or before
        `t_k` once `held == pending`)."""
        return ((self.tick.to(TIME_DTYPE) - self.window_tick) / float(config.policy_frequency)
                + self.landing_offset_s)


@dataclass(frozen=True)
class TickDecision:
    """What `decide` made of the tick's decisions. Values are meaningful where `observed`;
    elsewhere the inputs are passed through unchecked (`tick_records` masks them with NaN).

    Attributes:
        observed: `(B,)` bool, the env's agent observed at `t_k` and decided.
        latency_s: `(B,)` float64 total latency `L` [s], the sum of the stage latencies in
            mapping order (as `TickClock`: `L_1 + L_2 + ...`).
        stage_latency_s: stage name -> `(B,)` float64 latency [s], in the order given.
        command: `(B, 2)` float64, the commands passed in.
        budget_s: the total budget `B` [s] (`config.budget`).
        stage_budgets_s: stage name -> budget [s] (`config.stage_budgets_s`).
    """

    observed: torch.Tensor
    latency_s: torch.Tensor
    stage_latency_s: Mapping[str, torch.Tensor]
    command: torch.Tensor
    budget_s: float
    stage_budgets_s: Mapping[str, float]
    pipelined: bool = False

    @functools.cached_property
    def stage_overrun(self) -> dict[str, torch.Tensor]:
        """Stage name -> `(B,)` bool: observed and the stage's latency exceeds its budget
        (+ `TIME_EPS_S`), for every stage in `config.stage_budgets_s`, in that order (a
        stage missing from the decision counts as 0 s, as in `check_overrun`). Computed
        on first use."""
        out = {}
        for name, budget in self.stage_budgets_s.items():
            value = self.stage_latency_s.get(name)
            out[name] = (((value > budget + TIME_EPS_S) & self.observed) if value is not None
                         else torch.zeros_like(self.observed))
        return out

    @functools.cached_property
    def overrun(self) -> torch.Tensor:
        """`(B,)` bool: observed and (`L > budget + TIME_EPS_S` or a stage overran), as
        `clock.contract.check_overrun` (pipelined: the slowest stage against the budget).
        Computed on first use."""
        latency_s = self.latency_s
        if self.pipelined and self.stage_latency_s:
            latency_s = torch.stack(list(self.stage_latency_s.values())).amax(dim=0)
        overrun = (latency_s > self.budget_s + TIME_EPS_S) & self.observed
        for over in self.stage_overrun.values():
            overrun = overrun | over
        return overrun


@dataclass(frozen=True)
class TickRecords:
    """One tick `[t_k, t_{k+1})` of `B` envs: `clock.contract.TickRecord` as `(B,)` tensors.

    `to_tick_records` turns a sequence of these into one env's `TickRecord`s.

    Attributes:
        tick: `(B,)` int64 tick index `k`.
        t_s: `(B,)` float64 `t_k` [s].
        observed: `(B,)` bool, the agent observed at `t_k` (False: dropped frame).
        latency_s: `(B,)` float64 total latency [s]; NaN if not observed.
        stage_latency_s: stage name -> `(B,)` float64 [s]; NaN if not observed.
        overrun: `(B,)` bool (False if not observed).
        stage_overrun: stage name -> `(B,)` bool, for each stage with a budget, in
            `config.stage_budgets_s` order (False if not observed).
        dropped_after: `(B,)` int64 `m - 1` (0 if not observed).
        command: `(B, 2)` float64 command requested at `t_k`; NaN if not observed.
        lands_s: `(B,)` float64 absolute time it takes effect [s]; NaN if not observed.
        held: `(B, 2)` float64 command in force at `t_k`.
        switch_s: `(B,)` float64 time inside `[t_k, t_{k+1})` the applied command changes
            [s]; NaN if it does not (at most one switch per tick).
        switch_command: `(B, 2)` float64 command switched to; NaN if no switch.
        landed_tick: `(B,)` int64 tick of the decision whose command switched in; -1 if none.
        held_tick: `(B,)` int64, pipelined: tick of the decision whose command landed at
            `t_k` (so is `held`); -1 if none.
    """

    tick: torch.Tensor
    t_s: torch.Tensor
    observed: torch.Tensor
    latency_s: torch.Tensor
    stage_latency_s: Mapping[str, torch.Tensor]
    overrun: torch.Tensor
    stage_overrun: Mapping[str, torch.Tensor]
    dropped_after: torch.Tensor
    command: torch.Tensor
    lands_s: torch.Tensor
    held: torch.Tensor
    switch_s: torch.Tensor
    switch_command: torch.Tensor
    landed_tick: torch.Tensor
    held_tick: torch.Tensor


# --------------------------------------------------------------------------- pure functions


def initial_state(batch_size: int, device: torch.device | str | None = None,
                  initial_command: torch.Tensor | None = None) -> BatchedClockState:
    """`B` envs at tick 0, all observing, `initial_command` `(B, 2)` or `(2,)` in force
    (default: the zero command)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    held = torch.zeros(batch_size, 2, dtype=TIME_DTYPE, device=device)
    if initial_command is not None:
        held = held + torch.as_tensor(initial_command, dtype=TIME_DTYPE, device=device)
    return BatchedClockState(
        tick=torch.zeros(batch_size, dtype=torch.int64, device=device),
        window_tick=torch.zeros(batch_size, dtype=TIME_DTYPE, device=device),
        window_ticks=torch.zeros(batch_size, dtype=TIME_DTYPE, device=device),
        landing_offset_s=torch.zeros(batch_size, dtype=TIME_DTYPE, device=device),
        held=held, pending=held.clone())


def observing(state: BatchedClockState) -> torch.Tensor:
    """`(B,)` bool: the env's agent observes at `t_k` (it is not busy with an earlier
    decision): its window is over, `i >= m`, i.e. `tick >= next_observation_tick`."""
    return state.window_tick >= state.window_ticks


def _as_time(value, state: BatchedClockState) -> torch.Tensor:
    return torch.as_tensor(value, dtype=TIME_DTYPE, device=state.tick.device)


def _as_commands(value, state: BatchedClockState) -> torch.Tensor:
    """`(B, 2)` contiguous float64 commands on the state's device."""
    value = _as_time(value, state)
    if value.shape != state.held.shape:
        raise ValueError(f"commands have shape {tuple(value.shape)}, "
                         f"expected {tuple(state.held.shape)}")
    return value.contiguous()


def _select_rows(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """`torch.where(mask[:, None], a, b)` for contiguous `(B, 2)` float64 `a` (and `b`).

    Each row is viewed as one complex128 so the select runs over `(B,)`: bit for bit the
    same result as broadcasting the mask over `(B, 2)`, and faster (docs/clock.md)."""
    b = torch.view_as_complex(b) if isinstance(b, torch.Tensor) else complex(b, b)
    return torch.view_as_real(torch.where(mask, torch.view_as_complex(a), b))


def _validate(stages: Mapping[str, torch.Tensor], observed: torch.Tensor) -> None:
    """Raise `ValueError` if an observing env has a negative, NaN or infinite stage latency
    (one reduction and one device sync; the message names the first such env)."""
    values = list(stages.values())
    stacked = values[0] if len(values) == 1 else torch.stack(values)
    low, high = torch.aminmax(torch.where(observed, stacked, 0.0))
    low, high = torch.stack((low, high)).tolist()
    if low >= 0.0 and high < math.inf:  # NaN propagates into both and fails both
        return
    for env in torch.nonzero(observed).flatten().tolist():
        for name, value in stages.items():
            number = float(value[env])
            if not (number >= 0.0 and math.isfinite(number)):
                raise ValueError(f"latency of stage {name!r} is {number!r} in env {env}: "
                                 "must be finite and >= 0")


def _as_latency(name: str, value, state: BatchedClockState) -> torch.Tensor:
    """A `(B,)` float64 latency tensor; lower-precision floats are refused, not widened: a
    float32 0.1 is 0.10000000149 s, past the 1 ns snap, and would drop a frame."""
    dtype = str(getattr(value, "dtype", ""))
    if dtype.replace("torch.", "") in ("float32", "float16", "bfloat16"):
        raise TypeError(f"latency of stage {name!r} is {dtype}: pass float64 seconds "
                        "(lower precision moves landings past the 1 ns boundary snap)")
    value = _as_time(value, state)
    if value.shape != state.tick.shape:
        raise ValueError(f"latency of stage {name!r} has shape {tuple(value.shape)}, "
                         f"expected ({state.batch_size},)")
    return value


def decide(
    config: ClockConfig,
    state: BatchedClockState,
    commands: torch.Tensor,
    stage_latency_s: Mapping[str, torch.Tensor] | torch.Tensor,
    *,
    validate: bool = True,
) -> tuple[BatchedClockState, TickDecision]:
    """Record the decisions of the envs observing at the current tick.

    Args:
        config: the clock settings (one for the whole batch).
        state: the clock before the decisions.
        commands: `(B, 2)` commands `[m/s^2, rad]`; rows of busy envs are ignored (may be NaN).
        stage_latency_s: stage name -> `(B,)` latency [s] (the total `L` is their sum, in
            mapping order), or one `(B,)` tensor recorded as stage `DEFAULT_STAGE`. Rows of
            busy envs are ignored. Must be float64 (torch or numpy) or Python floats:
            float32 is refused (`TypeError`), its rounding exceeds the 1 ns snap.
        validate: raise `ValueError` (as `TickClock.decide`) when an observing env has a
            stage latency that is negative, NaN or infinite. Costs one device sync. With
            `validate=False` such a latency leaves that env's clock undefined.

    Returns:
        the new state (the window of observing envs replaced: realtime, the command lands
        at `t_k + L` and the next observation is at `k + max(1, ceil(L / T))`, `L` within
        `TIME_EPS_S` of a boundary snapped onto it; lockstep, it lands at `t_k` and the next
        observation is at `k + 1`), and the `TickDecision`.
    """
    observed = state.window_tick >= state.window_ticks
    if isinstance(stage_latency_s, torch.Tensor) or not isinstance(stage_latency_s, Mapping):
        stage_latency_s = {DEFAULT_STAGE: stage_latency_s}
    stages = {name: _as_latency(name, value, state) for name, value in stage_latency_s.items()}
    values = list(stages.values())
    if validate and values:
        _validate(stages, observed)
    # `sum(values)` in TickClock: the same additions in the same order (its leading `0 +`
    # only turns a -0.0 total into 0.0, which compares equal).
    if values:
        latency_s = values[0]
        for value in values[1:]:
            latency_s = latency_s + value
    else:
        latency_s = torch.zeros_like(state.landing_offset_s)

    commands = _as_commands(commands, state)
    pipeline = state.pipeline
    pipelined = config.execution == "pipelined" and config.mode == "realtime"
    if config.mode == "realtime":
        # m = max(1, ceil((L - TIME_EPS_S) / T)), as contract.ticks_spanned (pipelined: L of
        # stage 0); rows of busy envs (possibly NaN) are computed too and discarded by `where`.
        first = values[0] if pipelined and values else latency_s
        ticks = (first - TIME_EPS_S).div_(config.tick_s).ceil_().clamp_min_(1.0)
        window_ticks = torch.where(observed, ticks, state.window_ticks)
        landing = torch.where(observed, latency_s, state.landing_offset_s)
        pending = _select_rows(observed, commands, state.pending)
    else:
        window_ticks = torch.where(observed, 1.0, state.window_ticks)
        landing = torch.where(observed, 0.0, state.landing_offset_s)
        pending = _select_rows(observed, commands, state.pending)
    if pipelined:
        pipeline = pipelined_tick(state.pipeline, observed, state.tick, state.time_s(config),
                                  commands, values or [torch.zeros_like(latency_s)],
                                  (state.tick + 1).to(TIME_DTYPE) / float(config.policy_frequency))
        landed = pipeline.landed
        landing = torch.where(landed, pipeline.landed_s - state.time_s(config), math.inf)
        held = _select_rows(pipeline.held_tick >= 0, pipeline.held_command, state.held)
        pending = _select_rows(landed, pipeline.landed_command, held)
    else:
        held = state.held
    new_state = BatchedClockState(
        tick=state.tick,
        window_tick=torch.where(observed, 0.0, state.window_tick),
        window_ticks=window_ticks,
        landing_offset_s=landing,
        held=held,
        pending=pending,
        pipeline=pipeline,
    )
    return new_state, TickDecision(
        observed=observed, latency_s=latency_s, stage_latency_s=stages, command=commands,
        budget_s=config.budget, stage_budgets_s=config.stage_budgets_s,
        pipelined=config.execution == "pipelined")


def substep_pieces(config: ClockConfig, state: BatchedClockState, j: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """How substep `j` (0..S-1) of the current tick is integrated, per env.

    Exactly `contract.split_substeps` for the env's window: with `start = n dt`,
    `end = (n + 1) dt` the substep's offsets from the window start (`n` its integer index
    in the window) and `L` the landing offset: `L <= start + TIME_EPS_S` -> the whole
    substep applies the new command (`first_s = 0`); else `L >= end - TIME_EPS_S` -> the
    whole substep applies the held command (`first_s = dt`); else `first_s = L - start`.

    Returns:
        first_s: `(B,)` float64 in `[0, dt]` [s], how long `first` applies from the
            substep's start; `second` applies for the remaining `dt - first_s`.
        first: `(B, 2)` float64, the command before the landing (`state.held`, the command
            in force at `t_k`).
        second: `(B, 2)` float64, the command from the landing on (`state.pending`).
    """
    substeps = config.substeps_per_tick
    if not 0 <= j < substeps:
        raise ValueError(f"substep index {j} outside 0..{substeps - 1}")
    dt = config.substep_s
    # n = i S + j as an exact float64 integer; start = n * dt and end = (n + 1) * dt are
    # the very products split_substeps forms from its Python ints.
    if state.pipeline is None:
        index = state.window_tick.mul(substeps).add_(j)
    else:  # pipelined: the landing is an offset from t_k
        index = torch.full_like(state.window_tick, float(j))
    start = index * dt
    end_minus_eps = index.add_(1.0).mul_(dt).sub_(TIME_EPS_S)
    landing = state.landing_offset_s
    first_s = torch.where(landing >= end_minus_eps, dt, landing - start)
    first_s = torch.where(landing <= start.add_(TIME_EPS_S), 0.0, first_s)
    return first_s, state.held, state.pending


def tick_records(config: ClockConfig, state: BatchedClockState, decision: TickDecision
                 ) -> TickRecords:
    """The current tick's records, from the state after `decide` and its decision (call it
    before `advance`). Field by field what `TickClock.decide` records for each env."""
    observed = decision.observed
    frequency = float(config.policy_frequency)
    tick_s = config.tick_s
    nan = math.nan
    tick = state.tick.to(TIME_DTYPE)
    window_t_s = (tick - state.window_tick) / frequency  # t_{k_0} = k_0 / f, k_0 exact
    landing = state.landing_offset_s
    start_offset = state.window_tick * tick_s
    inside = (start_offset - TIME_EPS_S <= landing) & (
        landing < start_offset + tick_s - TIME_EPS_S)
    dropped_after = torch.where(observed, state.window_ticks - 1.0, 0.0).to(torch.int64)
    lands_s = torch.where(observed, window_t_s + landing, nan)
    switch_s = torch.where(inside, window_t_s + torch.maximum(landing, start_offset), nan)
    landed_tick = torch.where(inside, state.window_start, -1)
    held_tick = torch.full_like(landed_tick, -1)
    if state.pipeline is not None:  # the tick's landing, if any (`batched_pipeline`)
        t_s = tick / frequency
        inside = state.pipeline.landed
        first_stage = next(iter(decision.stage_latency_s.values()),
                           torch.zeros_like(decision.latency_s))
        lands_s = (torch.where(observed, t_s + first_stage, nan)
                   if state.pipeline.stages == 1 else torch.full_like(lands_s, nan))
        switch_s = torch.where(inside, torch.maximum(state.pipeline.landed_s, t_s), nan)
        landed_tick = state.pipeline.landed_tick
        held_tick = state.pipeline.held_tick
    return TickRecords(
        tick=state.tick,
        t_s=tick / frequency,
        observed=observed,
        latency_s=torch.where(observed, decision.latency_s, nan),
        stage_latency_s={name: torch.where(observed, value, nan)
                         for name, value in decision.stage_latency_s.items()},
        overrun=decision.overrun,
        stage_overrun=dict(decision.stage_overrun),
        dropped_after=dropped_after,
        command=_select_rows(observed, decision.command, nan),
        lands_s=lands_s,
        held=state.held,
        switch_s=switch_s,
        switch_command=_select_rows(inside, state.pending, nan),
        landed_tick=landed_tick,
        held_tick=held_tick,
    )


def advance(config: ClockConfig, state: BatchedClockState) -> BatchedClockState:
    """End the current tick: `tick += 1`, and `held` becomes `pending` where the command
    landed before `t_{k+1} - TIME_EPS_S` or the window ends at `t_{k+1}` (a command landing
    on that boundary, snapped, is in force from the next tick on)."""
    next_tick = state.tick + 1
    window_tick = state.window_tick + 1.0
    # TickClock's `lands_before` for the next record: L < i * T - TIME_EPS_S.
    threshold = (window_tick * config.tick_s).sub_(TIME_EPS_S)
    landed = (state.landing_offset_s < threshold) | (window_tick >= state.window_ticks)
    held = state.pending if state.pipeline is not None else _select_rows(
        landed, state.pending, state.held)   # pipelined: `pending` is the tick's landing
    return BatchedClockState(
        tick=next_tick, window_tick=window_tick, window_ticks=state.window_ticks,
        landing_offset_s=state.landing_offset_s, held=held, pending=state.pending,
        pipeline=state.pipeline)


def reset(state: BatchedClockState, mask: torch.Tensor,
          initial_command: torch.Tensor | None = None) -> BatchedClockState:
    """Auto-reset the envs where `mask` `(B,)` bool: tick 0, observing at tick 0, no pending
    command, `initial_command` (`(B, 2)` or `(2,)`, default zero) in force. Other envs are
    untouched."""
    mask = torch.as_tensor(mask, dtype=torch.bool, device=state.tick.device)
    if initial_command is None:
        command = torch.zeros_like(state.held)
    else:
        command = _as_time(initial_command, state).expand_as(state.held).contiguous()
    zero = torch.zeros((), dtype=torch.int64, device=state.tick.device)
    return BatchedClockState(
        tick=torch.where(mask, zero, state.tick),
        window_tick=torch.where(mask, 0.0, state.window_tick),
        window_ticks=torch.where(mask, 0.0, state.window_ticks),
        landing_offset_s=torch.where(mask, 0.0, state.landing_offset_s),
        held=_select_rows(mask, command, state.held),
        pending=_select_rows(mask, command, state.pending),
        pipeline=None if state.pipeline is None else reset_rows(state.pipeline, mask),
    )


# --------------------------------------------------------------------------- records


def stack_records(records: Sequence[TickRecords]) -> TickRecords:
    """Stack `n` ticks of records into one `TickRecords` of `(n, B)` (`(n, B, 2)`) tensors.

    Stage dicts are stacked over the union of their names, in first-seen order; a stage
    missing at some tick reads NaN latency (so `to_tick_records` leaves it out) and no
    overrun there."""
    if not records:
        raise ValueError("no records to stack")
    values = {}
    for item in fields(TickRecords):
        if item.name not in ("stage_latency_s", "stage_overrun"):
            values[item.name] = torch.stack([getattr(r, item.name) for r in records])

    def gap(record: TickRecords, name: str) -> torch.Tensor:
        if name == "stage_latency_s":
            return torch.full_like(record.latency_s, math.nan)
        return torch.zeros_like(record.observed)

    for name in ("stage_latency_s", "stage_overrun"):
        stages = dict.fromkeys(stage for r in records for stage in getattr(r, name))
        values[name] = {
            stage: torch.stack([getattr(r, name)[stage] if stage in getattr(r, name)
                                else gap(r, name) for r in records])
            for stage in stages}
    return TickRecords(**values)


def _as_stacked(records: Sequence[TickRecords] | TickRecords) -> TickRecords:
    """`(n, B)` records: a stacked `TickRecords` as is, one tick's as a view, a list stacked."""
    if not isinstance(records, TickRecords):
        if len(records) != 1:
            return stack_records(records)
        records = records[0]
    if records.tick.dim() == 2:
        return records

    def lift(value):
        if isinstance(value, Mapping):
            return {name: tensor.unsqueeze(0) for name, tensor in value.items()}
        return value.unsqueeze(0)

    return TickRecords(**{item.name: lift(getattr(records, item.name))
                          for item in fields(TickRecords)})


def to_tick_records(records: Sequence[TickRecords] | TickRecords, env_index: int
                    ) -> list[TickRecord]:
    """One env's `contract.TickRecord`s, equal field by field to what `TickClock` records.

    Args:
        records: the batch's records tick after tick: a sequence of `TickRecords`, one
            tick's `TickRecords`, or `n` ticks stacked by `stack_records`.
        env_index: which env.

    After an auto-reset the env's ticks restart at 0: split episodes where `tick == 0`.
    To convert many envs, `to_tick_records_per_env` reads each tensor once for all of them.
    """
    return to_tick_records_per_env(records, [env_index])[0]


def to_tick_records_per_env(records: Sequence[TickRecords] | TickRecords,
                            env_indices: Sequence[int] | None = None
                            ) -> list[list[TickRecord]]:
    """`to_tick_records` for several envs (all when `env_indices` is None) at once: one
    device-to-host copy per field instead of one per field and env."""
    records = _as_stacked(records)
    if env_indices is None:
        env_indices = range(records.tick.shape[1])
    index = torch.as_tensor(list(env_indices), dtype=torch.int64, device=records.tick.device)

    def columns(tensor: torch.Tensor) -> list:
        """`[tick][env]` (`[tick][env][2]` for commands) Python values."""
        return tensor.index_select(1, index).cpu().tolist()

    ticks = columns(records.tick)
    t_s = columns(records.t_s)
    observed = columns(records.observed)
    latency = columns(records.latency_s)
    stages = {name: columns(value) for name, value in records.stage_latency_s.items()}
    overrun = columns(records.overrun)
    stage_overrun = {name: columns(value) for name, value in records.stage_overrun.items()}
    dropped = columns(records.dropped_after)
    command = columns(records.command)
    lands = columns(records.lands_s)
    held = columns(records.held)
    switch_s = columns(records.switch_s)
    switch_command = columns(records.switch_command)
    landed_tick = columns(records.landed_tick)
    held_tick = columns(records.held_tick)
    stage_names = list(stages)
    overrun_names = list(stage_overrun)
    out = [[] for _ in range(len(index))]
    for n in range(len(ticks)):
        stage_rows = list(zip(*(stages[name][n] for name in stage_names))) if stage_names \
            else [()] * len(out)
        overrun_rows = list(zip(*(stage_overrun[name][n] for name in overrun_names))) \
            if overrun_names else [()] * len(out)
        for env_records, tick, t, seen, total, stage_values, over, stage_over, dropped_n, \
                commanded, lands_n, held_n, switch, switched, landed_n, held_tick_n in zip(
                    out, ticks[n], t_s[n], observed[n], latency[n], stage_rows, overrun[n],
                    overrun_rows, dropped[n], command[n], lands[n], held[n], switch_s[n],
                    switch_command[n], landed_tick[n], held_tick[n]):
            env_records.append(TickRecord(
                tick=tick,
                t_s=t,
                observed=seen,
                latency_s=total,
                stage_latency_s={name: value for name, value in zip(stage_names, stage_values)
                                 if not math.isnan(value)} if seen else {},
                overrun=over,
                stage_overruns=tuple(name for name, flag in zip(overrun_names, stage_over)
                                     if flag),
                dropped_after=dropped_n,
                command=Command(*commanded) if seen else None,
                lands_s=lands_n,
                held=Command(*held_n),
                switches=((switch, Command(*switched)),) if switch == switch else (),  # NaN
                landed_tick=landed_n,
                held_tick=held_tick_n,
            ))
    return out


# --------------------------------------------------------------------------- stateful wrapper


class BatchedClock:
    """The clock of `B` envs as one object: holds a `BatchedClockState` and the tick's
    `TickDecision`. Per tick: `observing()`, `decide(...)`, `substep_pieces(j)` for each
    substep, optionally `records()`, then `advance()`; between ticks, `reset(mask)` for
    finished envs.

    Args:
        config: clock settings shared by all envs.
        batch_size: `B`.
        device: torch device of every tensor (CPU or CUDA).
    """

    def __init__(self, config: ClockConfig, batch_size: int,
                 device: torch.device | str | None = None):
        self.config = config
        self.state = initial_state(batch_size, device)
        self.decision: TickDecision | None = None

    @property
    def batch_size(self) -> int:
        return self.state.batch_size

    @property
    def device(self) -> torch.device:
        return self.state.device

    def observing(self) -> torch.Tensor:
        """`(B,)` bool, see `observing`."""
        return observing(self.state)

    def decide(self, commands: torch.Tensor,
               stage_latency_s: Mapping[str, torch.Tensor] | torch.Tensor,
               *, validate: bool = True) -> TickDecision:
        """See `decide`; call once per tick, before the substeps."""
        if self.decision is not None:
            raise RuntimeError("decide() was already called this tick: advance() first")
        self.state, self.decision = decide(self.config, self.state, commands, stage_latency_s,
                                           validate=validate)
        return self.decision

    def substep_pieces(self, j: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(first_s (B,), first (B, 2), second (B, 2))` of substep `j`, see `substep_pieces`."""
        return substep_pieces(self.config, self.state, j)

    def records(self) -> TickRecords:
        """The current tick's `TickRecords` (between `decide` and `advance`)."""
        if self.decision is None:
            raise RuntimeError("records() needs this tick's decide() first")
        return tick_records(self.config, self.state, self.decision)

    def advance(self) -> None:
        """End the tick (see `advance`)."""
        if self.decision is None:
            raise RuntimeError("advance() needs this tick's decide() first")
        self.state = advance(self.config, self.state)
        self.decision = None

    def reset(self, mask: torch.Tensor | None = None,
              initial_command: torch.Tensor | None = None) -> None:
        """Reset the envs where `mask` (all when None), see `reset`; between ticks only."""
        if self.decision is not None:
            raise RuntimeError("reset() inside a tick: advance() first")
        if mask is None:
            mask = torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
        self.state = reset(self.state, mask, initial_command)
