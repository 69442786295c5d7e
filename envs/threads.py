"""Thread counts around the numba kernels (`envs.sensor_kernels`, `envs.batched.kernel`).

numba's default threading layer is OpenMP, which torch's CPU ops use too: calling
`numba.set_num_threads` also sets the OpenMP count torch reads, so a kernel that changed
and restored numba's count would leave torch at numba's count (2 threads after the user
asked `torch.set_num_threads(1)`: on a busy 2-core machine a batch-1 forward pass then
waits ~100 ms for the second core instead of taking ~1.6 ms). `kernel_threads` restores
both.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

try:
    import numba
except ImportError:  # numba is a dependency; stay importable without it
    numba = None


@contextlib.contextmanager
def kernel_threads(limit: int | None = None) -> Iterator[None]:
    """numba's threads for one kernel launch, inside the block: at most `limit` (all of
    them when None), taking work items one at a time (chunk size 1: a thread whose core is
    busy with another process takes fewer items instead of holding the others up).
    numba's thread count, its chunk size and torch's thread count are restored after."""
    if numba is None:
        yield
        return
    torch_threads = torch.get_num_threads()
    threads = numba.get_num_threads()
    if limit is not None and 1 <= limit < threads:
        numba.set_num_threads(limit)
    chunksize = numba.set_parallel_chunksize(1)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(chunksize)
        numba.set_num_threads(threads)
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
