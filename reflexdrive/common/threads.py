"""CPU thread counts of torch and numba, set for a block and restored after.

numba's default threading layer is OpenMP, which torch's CPU ops use too: calling
`numba.set_num_threads` also sets the OpenMP count torch reads. A block that changes and
restores numba's count alone would leave torch at numba's count (two intra-op threads after
the user asked `torch.set_num_threads(1)`, which makes a batch-1 forward pass wait for a busy
second core). So every context here restores both counts.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

try:
    import numba
except ImportError:  # numba is a dependency; stay importable without it
    numba = None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op CPU threads set to `count` inside the block, restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """torch's and numba's CPU threads set to `count` (numba's capped at its maximum)
    inside the block, both restored after."""
    if numba is None:
        with torch_threads(count):
            yield
        return
    torch_count, numba_count = torch.get_num_threads(), numba.get_num_threads()
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(count)
    try:
        yield
    finally:
        numba.set_num_threads(numba_count)
        torch.set_num_threads(torch_count)


@contextlib.contextmanager
def kernel_threads(limit: int | None = None) -> Iterator[None]:
    """numba's threads for one kernel launch, inside the block: at most `limit` (all of
    them when None), taking work items one at a time (chunk size 1: a thread whose core is
    busy with another process takes fewer items instead of holding the others up).
    numba's thread count, its chunk size and torch's thread count are restored after."""
    if numba is None:
        yield
        return
    torch_count = torch.get_num_threads()
    threads = numba.get_num_threads()
    if limit is not None and 1 <= limit < threads:
        numba.set_num_threads(limit)
    chunksize = numba.set_parallel_chunksize(1)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(chunksize)
        numba.set_num_threads(threads)
        if torch.get_num_threads() != torch_count:
            torch.set_num_threads(torch_count)
