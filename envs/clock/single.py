"""`TickClock`: the tick contract (`contract`) for one env, on plain Python scalars.

A `TickClock` per env turns (command, stage latencies) into a `Window` of per-substep
command `Piece`s and one `TickRecord` per tick; see `contract` and docs/ARCHITECTURE.md,
"One tick, precisely". `ClockConfig.execution="pipelined"` runs each stage on its own
processor (`pipeline`): frames overlap, commands land when the last stage finishes.
"""

from __future__ import annotations

import math
from typing import Mapping

from reflexdrive.envs.clock.contract import (
    TIME_EPS_S,
    TickRecord,
    Window,
    check_overrun,
    split_substeps,
    ticks_spanned,
)
from reflexdrive.envs.clock.pipeline import Frame, Pipeline
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.types import ZERO_COMMAND, Command, Piece


class TickClock:
    """The integer clock of one env: which tick it is and which command is in force."""

    def __init__(self, config: ClockConfig):
        self.config = config
        self.tick = 0
        self.held: Command = ZERO_COMMAND
        self.pipeline: Pipeline | None = None

    def reset(self, initial_command: Command = ZERO_COMMAND) -> None:
        """Back to tick 0 with `initial_command` in force (and, pipelined, empty stages)."""
        self.tick = 0
        self.held = initial_command
        self.pipeline = None

    def time_of(self, tick: int) -> float:
        """`t_k = k * T` [s], computed from integers."""
        return tick / self.config.policy_frequency

    def decide(self, command: Command, stage_latency_s: Mapping[str, float]) -> Window:
        """The window of world time the decision observed at the current tick covers.

        Args:
            command: the command `a_k` the agent returned.
            stage_latency_s: per-stage latencies of that decision [s]; `L_k` is their sum.

        Advances the clock to the next tick the agent observes at.
        """
        config = self.config
        for stage, value in stage_latency_s.items():
            if not (value >= 0.0 and math.isfinite(value)):
                raise ValueError(f"latency of stage {stage!r} is {value!r}: "
                                 "must be finite and >= 0")
        latency_s = float(sum(stage_latency_s.values()))
        overrun, stage_overruns = check_overrun(config, latency_s, stage_latency_s)
        tick_s = config.tick_s
        if config.mode == "realtime" and config.execution == "pipelined":
            return self._decide_pipelined(command, stage_latency_s, latency_s, overrun,
                                          stage_overruns)
        if config.mode == "realtime":
            ticks = ticks_spanned(latency_s, tick_s)
            landing_s = latency_s
        else:
            ticks, landing_s = 1, 0.0
        first = self.tick
        pieces = split_substeps(ticks * config.substeps_per_tick, config.substep_s, landing_s,
                                self.held, command)
        records = []
        for i in range(ticks):
            tick = first + i
            start_offset = i * tick_s
            lands_inside = (start_offset - TIME_EPS_S <= landing_s
                            < start_offset + tick_s - TIME_EPS_S)
            lands_before = landing_s < start_offset - TIME_EPS_S
            observed = i == 0
            records.append(
                TickRecord(
                    tick=tick,
                    t_s=self.time_of(tick),
                    observed=observed,
                    latency_s=latency_s if observed else math.nan,
                    stage_latency_s=dict(stage_latency_s) if observed else {},
                    overrun=overrun if observed else False,
                    stage_overruns=stage_overruns if observed else (),
                    dropped_after=ticks - 1 if observed else 0,
                    command=command if observed else None,
                    lands_s=self.time_of(first) + landing_s if observed else math.nan,
                    held=command if lands_before else self.held,
                    switches=((self.time_of(first) + max(landing_s, start_offset), command),)
                    if lands_inside else (),
                    landed_tick=first if lands_inside else -1,
                )
            )
        self.tick = first + ticks
        self.held = command
        return Window(first, ticks, pieces, tuple(records), overrun, stage_overruns)

    def _decide_pipelined(self, command: Command, stage_latency_s: Mapping[str, float],
                          latency_s: float, overrun: bool, stage_overruns: tuple[str, ...]
                          ) -> Window:
        """Realtime, pipelined (`pipeline`): the frame enters stage 0 now; the window runs
        until stage 0 is free again, `m = max(1, ceil(L_0 / T))` ticks, and per tick the
        newest command that finished the last stage in it switches in. `lands_s` is known
        when observed only for one stage (no waiting, no drops); else NaN (`landed_tick`)."""
        config = self.config
        stages = tuple(float(value) for value in stage_latency_s.values()) or (0.0,)
        if self.pipeline is None:
            self.pipeline = Pipeline(len(stages))
        elif self.pipeline.stages != len(stages):
            raise ValueError(f"decision has {len(stages)} stages, the pipeline "
                             f"{self.pipeline.stages}: the stages must not change in an episode")
        first = self.tick
        ticks = ticks_spanned(stages[0], config.tick_s)
        self.pipeline.admit(Frame(first, command, stages, self.time_of(first)))
        pieces: list[tuple[Piece, ...]] = []
        records = []
        for i in range(ticks):
            tick = first + i
            t_s = self.time_of(tick)
            at_start, landing = self.pipeline.run_until(t_s, self.time_of(tick + 1))
            if at_start is not None:
                self.held = at_start.command
            held = self.held
            if landing is None:
                pieces.extend(split_substeps(config.substeps_per_tick, config.substep_s,
                                             math.inf, held, held))
            else:
                pieces.extend(split_substeps(config.substeps_per_tick, config.substep_s,
                                             landing.time_s - t_s, held, landing.command))
                self.held = landing.command
            observed = i == 0
            records.append(TickRecord(
                tick=tick, t_s=t_s, observed=observed,
                latency_s=latency_s if observed else math.nan,
                stage_latency_s=dict(stage_latency_s) if observed else {},
                overrun=overrun if observed else False,
                stage_overruns=stage_overruns if observed else (),
                dropped_after=ticks - 1 if observed else 0,
                command=command if observed else None,
                lands_s=self.time_of(first) + stages[0]
                if observed and len(stages) == 1 else math.nan,
                held=held,
                switches=((max(landing.time_s, t_s), landing.command),) if landing else (),
                landed_tick=landing.tick if landing else -1,
                held_tick=at_start.tick if at_start else -1))
        self.tick = first + ticks
        return Window(first, ticks, tuple(pieces), tuple(records), overrun, stage_overruns)
