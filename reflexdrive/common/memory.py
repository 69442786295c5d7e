"""Python's cyclic garbage collector paused for a block of many small long-lived objects.

A compare cell keeps every episode's tick records and per-substep outcomes (hundreds of
thousands of small tuples) until the episode ends. Each automatic collection of the oldest
generation walks all of them, and they hardly ever form cycles: with the collector on, a
cell of 256 episodes spent about a quarter of its CPU time in those walks
(`scripts/bench_compare.py`). Reference counting still frees everything as usual inside the
block; only cycles wait for the one collection at its end.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Automatic cyclic garbage collection off inside the block; on exit the collector's
    previous state is restored and, if it was on, one full collection runs."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect()
