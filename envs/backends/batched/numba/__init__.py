"""One substep of `B` worlds as a numba CPU kernel: `step_cpu(params, state, commands,
active=None) -> state`, the signature of the torch implementation's `step`.

The same dynamics as `envs.backends.batched.torch.step` (and so highway-env), written per
world and per vehicle as scalar code: `numba.prange` over worlds, plain loops over the `N` vehicle
slots of a world, in `HighwayBackend.substep`'s order (`substep_task`):

1. the scripted hazard starts at its onset substep (`trigger_hazard`);
2. `road.act()`: every IDM vehicle, in slot order, runs MOBIL (or the lane-change abort
   rule) and picks its steering and IDM acceleration (`traffic_act`). Acting in slot
   order with the targets updated in place is exactly highway-env's act loop: the abort
   rule sees the targets of earlier vehicles as already decided, of later ones as not;
3. every vehicle but the ego steps `dt` with the kinematic bicycle (`traffic_step`), IDM
   vehicles advance their MOBIL timer first;
4. the ego applies `first` for `first_s`, then `second` for `dt - first_s`, never reversing
   (`ego_step`);
5. the ego against every other vehicle, separating axes (`ego_collisions`).

Units: metres, seconds, radians, m/s, m/s^2. Everything is float64, as the torch path.

Exactness. Each formula uses the float operations of the torch path in the same order, so
results differ only where the two use different implementations of a function: torch's
vectorised kernels (SLEEF, within 1 ulp) against the C library's here (`cos`, `sin`, `tan`,
`atan`, `asin`), and the IDM's `(v / v0)^4` as two squarings here (within 2 ulp of `pow`).
Over hundreds of substeps that stays around 1e-14 m and m/s (`tests/envs/backends/
test_batched_kernel.py` pins 1e-9); lanes, targets, flags and crash substeps are identical.

Layout and speed. A world is a few KiB: it is loaded into the workspace of its work item
(`F`: float64 rows, `I`: int64 rows, one row per field, named by the row constants of
`layout`),
stepped there, and stored into the output rows, so every phase works from the cache and
passes two arrays around instead of one per field; the per-world scalars (road, hazard
plan, ego commands) travel in one table `W`. Neighbour queries use the world's
vehicles sorted by `x` (an insertion sort starting from the previous substep's order, kept
in `BatchedState.order_hint`), so a front / rear query walks a few slots from the querying
vehicle instead of scanning all `N`. Most traffic cruises on a lane centre with heading and
steering exactly 0 (`bicycle` and `steering_control` take a short path then, same
values), or, long after a lane change, tiny ones (~1e-15 rad): `sin` and friends return the
correctly rounded `x` (or 1) for `|x| < 2^-27` without calling the C library, which returns
the same there.

Files: `layout` (the argument NamedTuples, `KernelParams` from `Params`' fields, the
workspace rows), `scalars`, `vehicle`, `neighbours`, `traffic`, `collision`, `world` (one
world's substeps and the parallel driver), `step` (the Python entry points), `jit` (the
compile options; the driver's disk cache covers every file here). If numba is missing,
`AVAILABLE` is False and `envs.backends.batched.backend` uses the torch implementation.
"""

from reflexdrive.envs.backends.batched.numba.jit import AVAILABLE
from reflexdrive.envs.backends.batched.numba.layout import KernelParams, kernel_params
from reflexdrive.envs.backends.batched.numba.step import (
                                                          TickOutcome,
                                                          TickStops,
                                                          step_cpu,
                                                          supports,
                                                          tick_cpu,
)

step = step_cpu
"""The implementation's `step(params, state, commands, active=None) -> state`."""

__all__ = ["AVAILABLE", "KernelParams", "TickOutcome", "TickStops", "kernel_params", "step",
           "step_cpu", "supports", "tick_cpu"]
