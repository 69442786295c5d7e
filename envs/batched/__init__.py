"""The `batched` backend: many straight-road worlds as torch tensors, stepped by pure functions.

- `BatchedBackend`: the `Backend`-style object (reset worlds one at a time, `substep` all of
  them, numpy `WorldSnapshot`s and `RoadGeometry`).
- `BatchedState`, `Params`, `EgoCommands`: the frozen state and constants;
  `step(params, state, commands) -> state` is one substep in torch (`envs.batched.dynamics`),
  `step_cpu` the same substep as a numba CPU kernel (`envs.batched.kernel`), which
  `BatchedBackend` runs for float64 states on CPU.
- `BatchedHazardTracker`, `update_onsets`, `HazardOnsets`: hazard onset bookkeeping.

It reproduces the `highway` backend's dynamics (highway-env's kinematic bicycle, IDM, MOBIL,
SAT collisions) on straight multi-lane roads: the highway, lead-brake, cut-in and
stopped-vehicle scenarios.
"""

from reflexdrive.envs.batched.backend import (KERNELS, SUPPORTED_SCENARIOS, BatchedBackend,
                                  commands_from_pieces)
from reflexdrive.envs.batched.dynamics import step
from reflexdrive.envs.batched.kernel import step_cpu
from reflexdrive.envs.batched.hazards import BatchedHazardTracker, HazardOnsets, update_onsets
from reflexdrive.envs.batched.state import BatchedHazard, BatchedRoad, BatchedState, EgoCommands, Params

__all__ = [
    "KERNELS",
    "SUPPORTED_SCENARIOS",
    "BatchedBackend",
    "BatchedHazard",
    "BatchedHazardTracker",
    "BatchedRoad",
    "BatchedState",
    "EgoCommands",
    "HazardOnsets",
    "Params",
    "commands_from_pieces",
    "step",
    "step_cpu",
    "update_onsets",
]
