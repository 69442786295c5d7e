"""Pipelined execution of one env's stack: each stage on its own processor (ROS nodes).

The rule (docs/ARCHITECTURE.md, "One tick, precisely"), for stages `0..n-1` in the order
the latency model gives them:

- a frame enters stage 0 at tick boundary `t_k` when stage 0 is free (has finished its
  previous frame at or before `t_k`); otherwise frame `k` is dropped (never observed);
- a frame that finishes stage `i` waits for stage `i+1`; when stage `i+1` frees up it takes
  the **newest** waiting frame and older waiting frames are dropped (one waiting slot per
  stage: a newer arrival replaces the waiting frame);
- the frame's command lands when it finishes the last stage, so its age is the sum of its
  stage latencies plus its waits; the slowest stage sets the rate;
- at most one command switches in per tick: when several finish inside one tick
  `(t_k, t_{k+1})` the newest takes effect at its finishing time and the older ones are
  superseded (they would be in force for less than a tick; the world backends integrate
  one switch per tick). A command finishing exactly at `t_k` (within `TIME_EPS_S`) is in
  force from `t_k` on, as a sequential one landing on a boundary. With constant stage
  latencies landings are at least a tick apart and nothing is superseded.

Events are taken in time order; at equal times (within `TIME_EPS_S`) a finish goes before
a start (so a stage that frees up as a newer frame arrives takes the newer one), starts go
lowest stage first. Times are absolute float64 seconds, each formed as
`max(arrival, free) + latency`, in the same order as `batched_pipeline` does it, so both
clocks agree bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from reflexdrive.envs.clock.contract import TIME_EPS_S
from reflexdrive.envs.types import Command


@dataclass(frozen=True)
class Frame:
    """One observed frame in the pipeline.

    Attributes:
        tick: the tick `k` it was observed at.
        command: the command the stack decided from it.
        latency_s: its latency in each stage, in stage order [s].
        ready_s: when it finished its latest stage (or entered the pipeline) [s].
    """

    tick: int
    command: Command
    latency_s: tuple[float, ...]
    ready_s: float


@dataclass(frozen=True)
class Landing:
    """A command taking effect: at `time_s` [s], decided from the frame of tick `tick`."""

    time_s: float
    tick: int
    command: Command


class Pipeline:
    """The stages of one env's stack, each busy with at most one frame, one frame waiting
    before each stage.

    Attributes:
        stages: number of stages `n`.
        free_s: per stage, when it finishes (finished) its latest frame [s]; -inf if never
            used.
        current: per stage, the frame it works on (None: idle).
        waiting: per stage, the frame waiting for it (None: none).
    """

    def __init__(self, stages: int):
        self.stages = stages
        self.free_s = [-math.inf] * stages
        self.current: list[Frame | None] = [None] * stages
        self.waiting: list[Frame | None] = [None] * stages

    def admits(self, time_s: float) -> bool:
        """Whether stage 0 is free at `time_s` (its latest frame finished by then)."""
        return self.free_s[0] <= time_s + TIME_EPS_S

    def admit(self, frame: Frame) -> None:
        """Frame `frame` enters: it waits for stage 0 from `frame.ready_s` (its `t_k`)."""
        self.waiting[0] = frame

    def run_until(self, tick_start_s: float, horizon_s: float
                  ) -> tuple[Landing | None, Landing | None]:
        """Process the events of the tick `[tick_start_s, horizon_s)`: those before
        `horizon_s - TIME_EPS_S`; events at the horizon wait for the next call (a newer
        frame may enter then). Returns the newest landing at `tick_start_s` (within
        `TIME_EPS_S`: in force from the tick's start) and the newest landing after it (the
        tick's switch; older ones are superseded), each None if there is none."""
        at_start = landing = None
        while True:
            finish_s, finish_stage = math.inf, -1
            for i, frame in enumerate(self.current):
                if frame is not None and self.free_s[i] < finish_s:
                    finish_s, finish_stage = self.free_s[i], i
            start_s, start_stage = math.inf, -1
            for i, frame in enumerate(self.waiting):
                if frame is not None and self.current[i] is None:
                    begin = max(frame.ready_s, self.free_s[i])
                    if begin < start_s:
                        start_s, start_stage = begin, i
            if finish_s <= start_s + TIME_EPS_S:
                if not finish_s < horizon_s - TIME_EPS_S:
                    return at_start, landing
                frame = self.current[finish_stage]
                self.current[finish_stage] = None
                if finish_stage == self.stages - 1:
                    if finish_s <= tick_start_s + TIME_EPS_S:
                        at_start = Landing(finish_s, frame.tick, frame.command)
                    else:
                        landing = Landing(finish_s, frame.tick, frame.command)
                else:   # a newer arrival replaces (drops) the frame waiting there
                    self.waiting[finish_stage + 1] = Frame(frame.tick, frame.command,
                                                           frame.latency_s, finish_s)
            else:
                if not start_s < horizon_s - TIME_EPS_S:
                    return at_start, landing
                frame = self.waiting[start_stage]
                self.waiting[start_stage] = None
                self.current[start_stage] = frame
                self.free_s[start_stage] = start_s + frame.latency_s[start_stage]
