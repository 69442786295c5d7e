"""Splitting work into even pieces."""

from __future__ import annotations

import math


def even_chunks(total: int, most: int) -> list[int]:
    """Sizes of the fewest pieces of at most `most` items that add up to `total`, as equal
    as possible (the first `total % pieces` one larger): `even_chunks(10, 4) == [4, 3, 3]`.
    Nothing to split gives no pieces: `even_chunks(0, 4) == []`."""
    if most < 1:
        raise ValueError(f"most={most!r} is invalid: must be an integer >= 1")
    if total <= 0:
        return []
    pieces = math.ceil(total / most)
    return [total // pieces + (1 if i < total % pieces else 0) for i in range(pieces)]
