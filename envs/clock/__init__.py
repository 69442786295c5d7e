"""The tick clock: when a decision is observed and when its command takes effect.

- `contract`: the tick contract's records and arithmetic (`TickRecord`, `Window`,
  `DeadlineMiss`, `ticks_spanned`, `split_substeps`, `check_overrun`, `TIME_EPS_S`);
- `single`: `TickClock`, the contract for one env on plain Python scalars;
- `batched`: the same contract for `B` envs in torch tensors (`BatchedClock` and the pure
  functions it wraps), bit for bit what a `TickClock` per env computes;
- `wrapper`: `ClockWrapper`, the contract as a Gymnasium wrapper around a `DrivingEnv`.

See docs/ARCHITECTURE.md, "One tick, precisely". `ClockWrapper` is imported on first use:
it drives `envs.gym.single.DrivingEnv`, which itself runs on this package's `TickClock`.
"""

from __future__ import annotations

from typing import Any

from reflexdrive.envs.clock.batched import (
    BatchedClock,
    BatchedClockState,
    TickDecision,
    TickRecords,
    to_tick_records,
    to_tick_records_per_env,
)
from reflexdrive.envs.clock.contract import (
    TIME_EPS_S,
    DeadlineMiss,
    TickRecord,
    Window,
    check_overrun,
    split_substeps,
    ticks_spanned,
)
from reflexdrive.envs.clock.single import TickClock

__all__ = [
    "TIME_EPS_S",
    "BatchedClock",
    "BatchedClockState",
    "ClockWrapper",
    "DeadlineMiss",
    "TickClock",
    "TickDecision",
    "TickRecord",
    "TickRecords",
    "Window",
    "check_overrun",
    "split_substeps",
    "ticks_spanned",
    "to_tick_records",
    "to_tick_records_per_env",
]


def __getattr__(name: str) -> Any:
    """`ClockWrapper` on first use (an eager import would cycle through `envs.gym`)."""
    if name == "ClockWrapper":
        from reflexdrive.envs.clock.wrapper import ClockWrapper

        return ClockWrapper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
