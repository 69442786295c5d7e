"""The distinct rows of a batch: which rows hold byte-identical inputs, to compute them once.

In a compare cell with hazard-removed twins, a twin and its real episode see the same
observation (and, for a recurrent policy, carry the same state) until the hazard starts:
about one row in eight of a lead-brake cell's forward pass repeats another row.
`distinct_rows` finds such rows; `EndToEndAgent` then runs the network on the distinct
rows only (`padded_rows`: in whole chunks of rows) and gives every row its
representative's output.

Rows are grouped only when all their bytes are equal (not their values: -0.0 and 0.0, or
two NaNs of different payloads, stay apart), so a row's inputs and its representative's
are the same bits, and so are the outputs wherever the network's output for a row does
not depend on the other rows of its call (see `EndToEndAgent.act`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _row_bytes(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` `(rows, ...)` as `(rows, bytes)` uint8 (a view when contiguous)."""
    flat = np.ascontiguousarray(array).reshape(rows, -1)
    return flat.view(np.uint8).reshape(rows, -1)


def distinct_rows(keyed: Sequence[np.ndarray], checked: Sequence[np.ndarray] = ()
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Group the rows (axis 0) that are byte-identical in every array.

    Args:
        keyed: arrays `(N, ...)` whose row bytes are sorted to group the rows (put the
            small ones here: the sort compares whole rows).
        checked: arrays `(N, ...)` compared only between a row and its group's first row
            (put the large ones here, e.g. the bev raster: most rows are told apart by the
            keyed arrays alone).

    Returns:
        `(first (M,), inverse (N,))`, int64: `first` the ascending indices of one row per
        group (its first), `inverse[r]` the position in `first` of row `r`'s group; row `r`
        is byte-identical to row `first[inverse[r]]` in every array. A row that matches
        its keyed group but not in a checked array gets a group of its own (exact, though
        two such rows are not merged with each other).

    Raises:
        ValueError: no keyed array, or the arrays disagree on `N`.
    """
    if not keyed:
        raise ValueError("distinct_rows needs at least one keyed array")
    rows = keyed[0].shape[0]
    if any(array.shape[0] != rows for array in (*keyed, *checked)):
        raise ValueError("distinct_rows: the arrays have different numbers of rows: "
                         + ", ".join(str(array.shape[0]) for array in (*keyed, *checked)))
    if rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = np.concatenate([_row_bytes(array, rows) for array in keyed], axis=1)
    width = key.shape[1]
    if width == 0:
        labels = np.zeros(rows, np.int64)
    else:
        _, labels = np.unique(np.ascontiguousarray(key).view(f"V{width}").ravel(),
                              return_inverse=True)
        labels = labels.astype(np.int64).ravel()
    # the first row of each keyed group, then every other row checked against it
    order = np.argsort(labels, kind="stable")
    starts = np.ones(rows, bool)
    starts[1:] = labels[order][1:] != labels[order][:-1]
    leader = np.empty(rows, np.int64)
    leader[order] = order[starts][np.cumsum(starts) - 1]
    others = np.flatnonzero(leader != np.arange(rows))
    for array in checked:
        if not others.size:
            break
        flat = _row_bytes(array, rows)
        same = np.array([np.array_equal(flat[row], flat[leader[row]]) for row in others],
                        dtype=bool)
        leader[others[~same]] = others[~same]                 # a group of its own
        others = others[same]
    first, inverse = np.unique(leader, return_inverse=True)
    return first.astype(np.int64), inverse.astype(np.int64).ravel()


def padded_rows(first: np.ndarray, chunk: int) -> np.ndarray:
    """The rows to compute: `first`, followed by copies of `first[0]` up to the next
    multiple of `chunk` rows (their outputs are dropped)."""
    first = np.asarray(first, dtype=np.int64)
    missing = -first.size % chunk
    if not missing or not first.size:
        return first
    return np.concatenate([first, np.full(missing, first[0], np.int64)])
