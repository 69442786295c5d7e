"""What the numba kernels share: compile options, the block of worlds per `prange` step,
float32 rounding and the slab test."""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
from reflexdrive.envs.sensors.constants import SAMPLE_SIGNS

from reflexdrive.common.numba_cache import cover_sources

F32 = np.float32
"""Rounds to float32, as torch rounds a python scalar in a float32 op."""

JIT = dict(parallel=True, cache=True, nogil=True, error_model="numpy")
"""Kernel options: `error_model="numpy"` so `1 / 0` is `inf` (then clamped, as in torch);
`nogil` so other Python threads (`sensors.observe`'s noise draws) run meanwhile."""

HELPER = dict(cache=True, error_model="numpy")
"""Options of the helpers the kernels call (compiled into them)."""

INLINE = dict(HELPER, inline="always")
"""`HELPER` inlined into the caller in numba's IR (not left to LLVM): for small helpers
called per piece or per pixel with many arguments, where a call (the `GenericGeometry`
tuple and a dozen scalars passed each time) costs more than the work (the generic road
kernel: ~2x faster, the same bits)."""

KERNEL_SOURCES = tuple(sorted(Path(__file__).parent.glob("*.py")))
"""The files every cached kernel and helper here depends on (every module of this package)."""


def njit(**options):
    """`numba.njit(**options)` whose disk cache also depends on every file of this package
    (`reflexdrive.common.numba_cache.cover_sources`): editing a helper recompiles its
    callers in the other files."""
    return lambda function: cover_sources(numba.njit(**options)(function), KERNEL_SOURCES)


BLOCK = 16
"""Worlds per `prange` step of the kernels (scratch arrays are allocated per block)."""

SIGN_X = np.array([s[0] for s in SAMPLE_SIGNS], dtype=np.float32)
SIGN_Y = np.array([s[1] for s in SAMPLE_SIGNS], dtype=np.float32)
"""Occlusion sample points in half extents (`constants.SAMPLE_SIGNS`: centre, 4 corners)."""


@njit(**HELPER)
def slab(ox, oy, dx, dy, hx, hy, inv_max):
    """`sensors.tensor_ops.slab_parts` (float32): `(t_in, t_out)` of the ray `o + t d`
    through the box `|x| <= hx, |y| <= hy`."""
    ix = min(max(F32(1.0) / dx, -inv_max), inv_max)
    iy = min(max(F32(1.0) / dy, -inv_max), inv_max)
    mx, my = -(ox * ix), -(oy * iy)
    sx, sy = abs(ix) * hx, abs(iy) * hy
    return max(mx - sx, my - sy), min(sx + mx, sy + my)
