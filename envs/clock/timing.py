"""`obs["timing"]`: the age of an observation and the command still in flight, from the clock.

The state augmentation of Real-Time RL (Ramstedt & Pal 2019): a policy acting under
latency sees, besides the world, how old its observation will be when its command lands
and which command is already on its way. `(4,)` float32 per env (`(B, 4)` batched), in the
order of `TIMING_FEATURES`:

- `latency_s` [s]: the latency `L_k` the decision about to be made from this observation
  will be charged, i.e. the age of the observation when its command lands. Known before
  the agent acts for deterministic latency models (fixed, profile, their `*K` and
  `+SECONDS` forms): the env draws the decision's stage latencies when it hands out the
  observation (`envs.latency.lookahead`), the very draws the clock then charges.
  Sequential: their sum (the command lands exactly `L_k` after `t_k`); pipelined: also
  their sum (exact when no stage waits for a busy successor, a lower bound otherwise).
  `measured` latency is only known once the agent has acted: the previous decision's
  measured `L_{k-1}` stands in (0 at an episode's first tick). Lockstep: 0 (the world waits).
- `pending_acceleration` [m/s^2], `pending_steering` [rad]: the newest command already
  decided that has not landed by this tick's start `t_k`; with none in flight, the command
  in force at `t_k` (the held command; zero at an episode's start).
- `pending_in_s` [s]: how long after `t_k` that command lands; 0 with none in flight.

In the sequential execution an agent observes again only once its previous command has
landed (`m = ceil(L / T)` ticks later), so at an observed tick nothing is in flight: the
held command and 0. Pipelined, stage 0 frees up before the last stage finishes, so
commands are in flight: their landing is predicted by running the pipeline on from `t_k`
with no newer frame (a newer frame can only drop a waiting one, never delay it). The
batched env also returns observations at ticks where an agent is busy (`info["observing"]`
False): there the window's command is in flight until it lands.

`timing_vector` (one env, plain Python) and `batched_timing` (`B` envs, torch) compute the
same float64 values in the same order, so both backends give identical vectors.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from reflexdrive.envs.clock.batched_pipeline import run_until
from reflexdrive.envs.clock.contract import TIME_EPS_S
from reflexdrive.envs.config import ClockConfig

if TYPE_CHECKING:
    from reflexdrive.envs.clock.batched import BatchedClockState
    from reflexdrive.envs.clock.single import TickClock

TIMING_FEATURES = ("latency_s", "pending_acceleration_mps2", "pending_steering_rad",
                   "pending_in_s")
"""The entries of `obs["timing"]`, in order (units in the names)."""


def timing_vector(clock: TickClock, latency_s: float) -> np.ndarray:
    """`obs["timing"]` `(4,)` float32 of one env at its clock's current tick `t_k` (the tick
    the agent observes at), with `latency_s` the known latency of the coming decision [s]
    (replaced by 0 in lockstep)."""
    config = clock.config
    pending, pending_in_s = clock.held, 0.0
    if config.mode != "realtime":
        latency_s = 0.0
    elif config.execution == "pipelined" and clock.pipeline is not None:
        t_s = clock.time_of(clock.tick)
        at_start, landing = copy.deepcopy(clock.pipeline).run_until(t_s, math.inf)
        if landing is not None:
            pending, pending_in_s = landing.command, landing.time_s - t_s
        elif at_start is not None:
            pending = at_start.command
    return np.array([latency_s, pending.acceleration, pending.steering, pending_in_s],
                    dtype=np.float32)


def batched_timing(config: ClockConfig, state: BatchedClockState,
                   latency_s: torch.Tensor) -> np.ndarray:
    """`obs["timing"]` `(B, 4)` float32 of `B` envs at their current ticks (between ticks:
    after `advance` / `reset`), with `latency_s` `(B,)` float64 the known latency of each
    env's coming decision [s] (replaced by 0 in lockstep). Row by row what `timing_vector`
    gives for the same env at an observed tick."""
    held = state.held
    t_s = state.time_s(config)
    zero = torch.zeros_like(t_s)
    if config.mode != "realtime":
        return _stack(zero, held, zero)
    if state.pipeline is not None:
        ahead = run_until(state.pipeline, t_s, torch.full_like(t_s, math.inf))
        flying = ahead.landed
        start = ahead.held_tick >= 0
        pending = torch.where(flying[:, None], ahead.landed_command,
                              torch.where(start[:, None], ahead.held_command, held))
        return _stack(latency_s, pending, torch.where(flying, ahead.landed_s - t_s, zero))
    # sequential: the window's command is in flight until it lands (as `advance` decides)
    landed = (state.landing_offset_s < state.window_tick * config.tick_s - TIME_EPS_S) | (
        state.window_tick >= state.window_ticks)
    flying = ~landed
    pending = torch.where(flying[:, None], state.pending, held)
    return _stack(latency_s, pending, torch.where(flying, state.lands_s(config) - t_s, zero))


def _stack(latency_s: torch.Tensor, pending: torch.Tensor, pending_in_s: torch.Tensor
           ) -> np.ndarray:
    return torch.stack([latency_s.to(torch.float64), pending[:, 0], pending[:, 1],
                        pending_in_s], dim=1).cpu().numpy().astype(np.float32)
