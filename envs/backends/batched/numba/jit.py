"""How the kernel's functions are compiled: `jit`, `prange`, `AVAILABLE`, and the disk cache.

The kernel is split into files by concept, but only its parallel driver
(`world.substep_worlds`) is cached on disk, and its cache entry holds every compiled callee.
numba invalidates a cache entry when the source of the cached function's own file changes,
not when a callee in another file does; so `cover_sources` makes the driver's entry depend
on every file of this package (`KERNEL_SOURCES`).
"""

from __future__ import annotations

from pathlib import Path

from reflexdrive.common.numba_cache import cover_sources

try:
    import numba
except ImportError:  # numba is a dependency; stay importable without it
    numba = None

AVAILABLE = numba is not None
"""True when numba is importable (else `step_cpu` raises and the backend runs torch)."""

KERNEL_SOURCES = tuple(sorted(Path(__file__).parent.glob("*.py")))
"""The files whose content the driver's disk cache depends on (every module here)."""


def jit(parallel: bool = False):
    """`numba.njit` with the kernel's options (the function itself without numba).

    `error_model="numpy"`: a float division by zero gives inf / nan as in torch instead of
    raising (it never happens for valid vehicles; it also saves a branch per division).
    All but the parallel driver allocate nothing and are only called from numba: they are
    compiled without reference counting of arrays (`_nrt=False`) and without the wrappers
    that would make them callable from Python (half the compile time). Only the driver is
    cached on disk (`cache=True`, see `cover_sources`): its cache entry holds the compiled
    callees too.
    """
    if numba is None:
        return lambda function: function
    if parallel:
        return lambda function: cover_sources(numba.njit(
            parallel=True, cache=True, fastmath=False, error_model="numpy")(function),
            KERNEL_SOURCES)
    return numba.njit(fastmath=False, error_model="numpy", _nrt=False,
                      no_cpython_wrapper=True, no_cfunc_wrapper=True)


prange = numba.prange if numba is not None else range
