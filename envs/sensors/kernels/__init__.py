"""Numba CPU kernels of the sensors; `envs.sensors` is the public API and dispatches here.

What: `bev.render_bev_kernel` (the bev raster: straight roads' fast path, vehicle boxes,
occlusion), `bev_generic.generic_roads_kernel` (curved roads: the generic road path,
called after it for the worlds it leaves), `lidar.cast_lidar_kernel` (the
lidar) and `ground_truth.ground_truth_kernel` (the object list of `info`), with
`noise` (SplitMix64, Box-Muller) and `common` (compile options, the slab test). Each
kernel is `@numba.njit(parallel=True, cache=True)` with a `numba.prange` loop over blocks of
`common.BLOCK` worlds (one world at a time inside), reads numpy arrays and writes into
arrays the caller allocated. The first call in a fresh checkout compiles them; numba
caches them in `envs/sensors/kernels/__pycache__`, each entry stamped with every file of
this package (`common.njit`), so editing a helper recompiles the kernels that call it.

Why: on the CPU the torch cores pay per tensor op, over `(B, ...)` temporaries. A kernel
walks one world at a time, per row / beam / slot, with that world's data in cache, and
writes the raster once (timings: docs/sensors.md).

Exactness: the bev and lidar kernels repeat the torch cores' arithmetic operation by
operation, in the same precision (float64 where the core computes in float64, float32
elsewhere; a python scalar in a float32 torch op is a float32 constant here, as torch
rounds it), with no fast-math (no reassociation, no FMA contraction). Transcendental
functions that decide pixels or ranges are not recomputed: the caller passes the cos and
sin the torch core computes (`sensors.numba_path.ego_trig`), since libm and torch's
vectorised `cos` may differ by an ulp. So the bev is bit-identical to `render_bev_torch`
on the CPU and the lidar equal to `cast_lidar_torch`'s. What the cores only use to skip
work (the lidar's beam windows, the occluders' distance prefilter) is computed here in
float64 with the same or wider margins: it changes which pairs are tested, never a result.
The object list is `ground_truth_objects`' float64 numpy arithmetic with libm's cos / sin /
hypot (numpy's may differ by an ulp): equal after the cast to float32 to rounding (the
tests allow two float32 ulps).

Conventions (frames, raster rows and columns, runs, line fields) are `envs.sensors`';
the comments name the torch function each block mirrors.
"""
