"""Rows of a batch that repeat an earlier row exactly, so a network computes them once.

A compare cell runs every hazard episode beside its hazard-free twin, and until the hazard
starts the two see bit-identical observations (and, for a recurrent policy, hold identical
states); idle env slots that replay the same seed repeat each other too. A row's action
depends on that row alone, so each distinct row needs one forward pass.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch


def _fingerprints(array: np.ndarray) -> np.ndarray:
    """`(N,)` int64 per-row sums of the row's bytes read as 64-bit words (wrapping): equal
    rows give equal sums; `unique_rows` checks every match byte for byte."""
    rows = np.ascontiguousarray(array).reshape(array.shape[0], -1).view(np.uint8)
    if rows.shape[1] % 8:
        rows = np.pad(rows, ((0, 0), (0, 8 - rows.shape[1] % 8)))
    return rows.view(np.int64).sum(axis=1)


def _rows_equal(array: np.ndarray, rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """`(D,)` bool: `array[rows[i]]` equals `array[others[i]]` byte for byte."""
    a = np.ascontiguousarray(array[rows]).reshape(rows.shape[0], -1).view(np.uint8)
    b = np.ascontiguousarray(array[others]).reshape(others.shape[0], -1).view(np.uint8)
    return (a == b).all(axis=1)


def unique_rows(arrays: Mapping[str, np.ndarray], state: Sequence[torch.Tensor] = ()
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """The first row of each group of identical rows, and for every row its group.

    Rows are grouped by a cheap fingerprint, then every row of a group is compared byte
    for byte with the group's first row; a row that differs keeps a group of its own.

    Args:
        arrays: `(N, ...)` arrays of one batch (the observation entries a policy reads).
        state: recurrent state tensors on the CPU with the batch on dimension 1
            (`(layers, N, H)`); rows are identical only if their states are too.

    Returns:
        `(first (U,), group (N,))` with `rows[first][group] == rows` exactly (and
        `first` ascending), or None when every row is distinct (nothing to save).
    """
    columns = [array for array in arrays.values()]
    columns += [tensor.detach().numpy().swapaxes(0, 1) for tensor in state]
    n = columns[0].shape[0]
    fingerprints = np.stack([_fingerprints(column) for column in columns], axis=1)
    _, first_of_print, print_group = np.unique(fingerprints, axis=0, return_index=True,
                                               return_inverse=True)
    if first_of_print.shape[0] == n:
        return None
    representative = first_of_print[print_group.reshape(-1)]
    rows = np.flatnonzero(representative != np.arange(n))
    same = np.ones(rows.shape[0], dtype=bool)
    for column in columns:
        same &= _rows_equal(column, rows, representative[rows])
    representative[rows[~same]] = rows[~same]        # a fingerprint collision: its own row
    first, group = np.unique(representative, return_inverse=True)
    if first.shape[0] == n:
        return None
    return first, group.reshape(-1)
