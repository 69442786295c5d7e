"""Thread counts around the sensors' kernels: numba's threads per launch, torch on one
thread while the numba path calls it."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from reflexdrive.envs.threads import kernel_threads

PARALLEL_MIN_WORLDS = 256
"""Fewer worlds than this run their kernel on the calling thread alone: waking numba's other
threads costs more than they save (up to a scheduler slice when their core is busy)."""


def kernel_threads_for(batch: int):
    """numba's threads for a kernel over `batch` worlds: one for small batches, else all of
    them (`envs.threads.kernel_threads`, which also keeps torch's thread count)."""
    return kernel_threads(1 if batch < PARALLEL_MIN_WORLDS else None)


@contextmanager
def serial_torch():
    """Run torch's CPU ops on the calling thread only, inside the block.

    Torch hands even a few hundred `cos` to its OpenMP pool; on a busy host (or while
    numba's threads hold the cores) waking that pool is slow, once per op. Torch's cos and
    sin give the same bits whatever the thread count or the cut of the tensor
    (tests/envs/sensors/test_sensor_kernels.py checks it).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
