"""Pipelined execution for `B` envs in torch tensors: `pipeline.Pipeline`, batched.

The same rule and the same event order as `pipeline` (one stage per processor, the newest
waiting frame taken, at most one landing per tick), bit for bit: each env's events are
processed one per iteration of `run_until`, earliest first, finishes before starts at equal
times, lowest stage first among exact ties. The loop runs until no env has an event before
its horizon (one device sync per iteration; the sequential clock has none).

Shapes: `B` envs, `n` stages; `(B, n)` per stage slot, commands `(B, n, 2)`, each frame's
stage latencies `(B, n, n)` (slot, stage). Times are float64 absolute seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from reflexdrive.envs.clock.contract import TIME_EPS_S


@dataclass(frozen=True)
class Frames:
    """One frame per env and stage slot (where `valid`).

    Attributes:
        valid: `(B, n)` bool, the slot holds a frame.
        tick: `(B, n)` int64, the tick the frame was observed at.
        command: `(B, n, 2)` float64, its command.
        latency_s: `(B, n, n)` float64, its latency in each stage [s].
        ready_s: `(B, n)` float64, when it finished its previous stage (entered) [s].
    """

    valid: torch.Tensor
    tick: torch.Tensor
    command: torch.Tensor
    latency_s: torch.Tensor
    ready_s: torch.Tensor

    def at(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(tick (B,), command (B, 2), latency_s (B, n))` of each env's slot `index` `(B,)`."""
        rows = torch.arange(index.shape[0], device=index.device)
        return self.tick[rows, index], self.command[rows, index], self.latency_s[rows, index]

    def put(self, mask: torch.Tensor, tick: torch.Tensor, command: torch.Tensor,
            latency_s: torch.Tensor, ready_s: torch.Tensor) -> Frames:
        """These frames with slot `mask` `(B, n)` (at most one per env) set to the given
        `(B,)`, `(B, 2)`, `(B, n)`, `(B,)` frame."""
        return Frames(
            valid=self.valid | mask,
            tick=torch.where(mask, tick[:, None], self.tick),
            command=torch.where(mask[..., None], command[:, None, :], self.command),
            latency_s=torch.where(mask[..., None], latency_s[:, None, :], self.latency_s),
            ready_s=torch.where(mask, ready_s[:, None], self.ready_s))


@dataclass(frozen=True)
class BatchedPipelineState:
    """The stages of `B` envs' stacks (see `pipeline.Pipeline`).

    Attributes:
        free_s: `(B, n)` float64, when each stage finishes (finished) its latest frame [s];
            -inf if never used.
        current: the frame each stage works on.
        waiting: the frame waiting for each stage.
        landed_s: `(B,)` float64, when this tick's landing switched in [s]; NaN if none.
        landed_tick: `(B,)` int64, the tick of the frame that landed this tick; -1 if none.
        landed_command: `(B, 2)` float64, its command (NaN if none).
        held_tick: `(B,)` int64, the tick of the frame that landed exactly at `t_k`
            (in force from it, not a switch); -1 if none.
        held_command: `(B, 2)` float64, its command (NaN if none).
    """

    free_s: torch.Tensor
    current: Frames
    waiting: Frames
    landed_s: torch.Tensor
    landed_tick: torch.Tensor
    landed_command: torch.Tensor
    held_tick: torch.Tensor
    held_command: torch.Tensor

    @property
    def stages(self) -> int:
        return int(self.free_s.shape[1])

    @property
    def landed(self) -> torch.Tensor:
        """`(B,)` bool, a command landed this tick."""
        return self.landed_tick >= 0


def _empty_frames(batch: int, stages: int, device: torch.device) -> Frames:
    return Frames(
        valid=torch.zeros(batch, stages, dtype=torch.bool, device=device),
        tick=torch.full((batch, stages), -1, dtype=torch.int64, device=device),
        command=torch.zeros(batch, stages, 2, dtype=torch.float64, device=device),
        latency_s=torch.zeros(batch, stages, stages, dtype=torch.float64, device=device),
        ready_s=torch.zeros(batch, stages, dtype=torch.float64, device=device))


def empty_pipeline(batch: int, stages: int, device: torch.device) -> BatchedPipelineState:
    """`B` envs with `n` idle stages and nothing waiting."""
    return BatchedPipelineState(
        free_s=torch.full((batch, stages), -math.inf, dtype=torch.float64, device=device),
        current=_empty_frames(batch, stages, device),
        waiting=_empty_frames(batch, stages, device),
        landed_s=torch.full((batch,), math.nan, dtype=torch.float64, device=device),
        landed_tick=torch.full((batch,), -1, dtype=torch.int64, device=device),
        landed_command=torch.full((batch, 2), math.nan, dtype=torch.float64, device=device),
        held_tick=torch.full((batch,), -1, dtype=torch.int64, device=device),
        held_command=torch.full((batch, 2), math.nan, dtype=torch.float64, device=device))


def reset_rows(state: BatchedPipelineState, mask: torch.Tensor) -> BatchedPipelineState:
    """`state` with the envs where `mask` `(B,)` emptied (auto-reset)."""
    empty = empty_pipeline(state.free_s.shape[0], state.stages, state.free_s.device)
    keep = ~mask

    def pick(new, old):
        m = keep.view(-1, *([1] * (old.dim() - 1)))
        return torch.where(m, old, new)

    def frames(new: Frames, old: Frames) -> Frames:
        return Frames(**{name: pick(getattr(new, name), getattr(old, name))
                         for name in ("valid", "tick", "command", "latency_s", "ready_s")})

    return BatchedPipelineState(
        free_s=pick(empty.free_s, state.free_s),
        current=frames(empty.current, state.current),
        waiting=frames(empty.waiting, state.waiting),
        landed_s=pick(empty.landed_s, state.landed_s),
        landed_tick=pick(empty.landed_tick, state.landed_tick),
        landed_command=pick(empty.landed_command, state.landed_command),
        held_tick=pick(empty.held_tick, state.held_tick),
        held_command=pick(empty.held_command, state.held_command))


def admit(state: BatchedPipelineState, observed: torch.Tensor, tick: torch.Tensor,
          t_s: torch.Tensor, command: torch.Tensor, latency_s: torch.Tensor
          ) -> BatchedPipelineState:
    """The frames of the envs where `observed` `(B,)` wait for stage 0 from `t_s` `(B,)`
    (their `t_k`), with commands `(B, 2)` and stage latencies `(B, n)`."""
    stage0 = torch.zeros_like(state.waiting.valid)
    stage0[:, 0] = observed
    return replace(state, waiting=state.waiting.put(stage0, tick, command, latency_s, t_s))


def _first_min(times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(min (B,), index (B,))` over the slots of `times` `(B, n)`, the lowest index among
    exact ties (as `Pipeline.run_until`'s strict `<` scan)."""
    low = times.min(dim=1).values
    return low, (times == low[:, None]).to(torch.uint8).argmax(dim=1)


def run_until(state: BatchedPipelineState, tick_start_s: torch.Tensor,
              horizon_s: torch.Tensor) -> BatchedPipelineState:
    """Process each env's events of the tick `[tick_start_s, horizon_s)` `(B,)`, as
    `Pipeline.run_until`: `held_*` hold the newest landing at the tick's start, `landed_*`
    the newest after it (or none)."""
    n = state.stages
    slots = torch.arange(n, device=state.free_s.device)
    free_s, current, waiting = state.free_s, state.current, state.waiting
    landed_s = torch.full_like(state.landed_s, math.nan)
    landed_tick = torch.full_like(state.landed_tick, -1)
    landed_command = torch.full_like(state.landed_command, math.nan)
    held_tick, held_command = landed_tick.clone(), landed_command.clone()
    start_limit = tick_start_s + TIME_EPS_S
    limit = horizon_s - TIME_EPS_S
    while True:
        finish_s, finish_stage = _first_min(torch.where(current.valid, free_s, math.inf))
        start_s, start_stage = _first_min(torch.where(
            waiting.valid & ~current.valid, torch.maximum(waiting.ready_s, free_s), math.inf))
        finishing = finish_s <= start_s + TIME_EPS_S
        active = torch.where(finishing, finish_s, start_s) < limit
        if not bool(active.any()):
            break
        finish = active & finishing
        start = active & ~finishing
        # a finish: the frame leaves its stage; the last stage's lands, others wait next
        tick, command, latency = current.at(finish_stage)
        leaving = (slots == finish_stage[:, None]) & finish[:, None]
        current = replace(current, valid=current.valid & ~leaving)
        lands = finish & (finish_stage == n - 1)
        held = lands & (finish_s <= start_limit)
        held_tick = torch.where(held, tick, held_tick)
        held_command = torch.where(held[:, None], command, held_command)
        lands = lands & ~held
        landed_s = torch.where(lands, finish_s, landed_s)
        landed_tick = torch.where(lands, tick, landed_tick)
        landed_command = torch.where(lands[:, None], command, landed_command)
        arriving = (slots == (finish_stage + 1)[:, None]) & (
            finish & (finish_stage < n - 1))[:, None]
        waiting = waiting.put(arriving, tick, command, latency, finish_s)
        # a start: the stage takes its waiting frame
        tick, command, latency = waiting.at(start_stage)
        taking = (slots == start_stage[:, None]) & start[:, None]
        stage_latency = latency.gather(1, start_stage[:, None]).squeeze(1)
        free_s = torch.where(taking, (start_s + stage_latency)[:, None], free_s)
        current = current.put(taking, tick, command, latency, start_s)
        waiting = replace(waiting, valid=waiting.valid & ~taking)
    return BatchedPipelineState(free_s=free_s, current=current, waiting=waiting,
                                landed_s=landed_s, landed_tick=landed_tick,
                                landed_command=landed_command, held_tick=held_tick,
                                held_command=held_command)


def pipelined_tick(state: BatchedPipelineState | None, observed: torch.Tensor,
                   tick: torch.Tensor, t_s: torch.Tensor, command: torch.Tensor,
                   stage_latency_s: list[torch.Tensor], horizon_s: torch.Tensor
                   ) -> BatchedPipelineState:
    """One tick of the pipelines: the observed envs' frames (tick `(B,)`, `t_k` `(B,)`,
    command `(B, 2)`, per-stage `(B,)` latencies) enter, then events run until `t_{k+1}`
    (`horizon_s` `(B,)`). `state` None: empty pipelines of `len(stage_latency_s)` stages."""
    latency_s = torch.stack(stage_latency_s, dim=1)
    if state is None:
        state = empty_pipeline(latency_s.shape[0], latency_s.shape[1], latency_s.device)
    elif state.stages != latency_s.shape[1]:
        raise ValueError(f"decision has {latency_s.shape[1]} stages, the pipeline "
                         f"{state.stages}: the stages must not change")
    return run_until(admit(state, observed, tick, t_s, command, latency_s), t_s, horizon_s)
