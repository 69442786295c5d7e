"""numba's threads per launch of the sensors' kernels, by batch size."""

from __future__ import annotations

from reflexdrive.common.threads import kernel_threads

PARALLEL_MIN_WORLDS = 256
"""Fewer worlds than this run their kernel on the calling thread alone: waking numba's other
threads costs more than they save (up to a scheduler slice when their core is busy)."""


def kernel_threads_for(batch: int):
    """numba's threads for a kernel over `batch` worlds: one for small batches, else all of
    them (`reflexdrive.common.threads.kernel_threads`, which also keeps torch's thread count)."""
    return kernel_threads(1 if batch < PARALLEL_MIN_WORLDS else None)
