"""The `batched` backend: many straight-road worlds as torch tensors, stepped by pure functions.

- `BatchedBackend`: the `Backend`-style object (reset worlds one at a time, `substep` all of
  them, numpy `WorldSnapshot`s and `RoadGeometry`).
- `BatchedState`, `Params`, `EgoCommands`: the frozen state and constants.
- Two implementations of one substep with one signature, `step(params, state, commands,
  active=None) -> state`, named in `IMPLEMENTATIONS`: `torch` (`step` here, any device and
  dtype) and `numba` (`step_cpu` here, a CPU kernel for float64 states, which
  `BatchedBackend` runs by default where it can).
- `BatchedHazardTracker`, `update_onsets`, `HazardOnsets`: hazard onset bookkeeping.

It reproduces the `highway` backend's dynamics (highway-env's kinematic bicycle, IDM, MOBIL,
SAT collisions) on straight multi-lane roads: the highway, lead-brake, cut-in and
stopped-vehicle scenarios.
"""

from reflexdrive.envs.backends.batched.backend import (
                                                       IMPLEMENTATIONS,
                                                       KERNELS,
                                                       SUPPORTED_SCENARIOS,
                                                       BatchedBackend,
                                                       commands_from_pieces,
)
from reflexdrive.envs.backends.batched.hazards import (
                                                       BatchedHazardTracker,
                                                       HazardOnsets,
                                                       update_onsets,
)
from reflexdrive.envs.backends.batched.numba import step_cpu
from reflexdrive.envs.backends.batched.state import (
                                                       BatchedHazard,
                                                       BatchedRoad,
                                                       BatchedState,
                                                       EgoCommands,
                                                       Params,
)
from reflexdrive.envs.backends.batched.torch import step

__all__ = [
    "IMPLEMENTATIONS",
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
