"""Row masks: the bev raster as one run of columns per (shape, row), OR-ed per channel.

A "run" is the set of columns `ceil(lo) .. floor(hi)` of one raster row, `lo`, `hi` in
column units (`col(y) = y / res + half_width / res - 0.5`). Runs become int64 row masks
(bit `c` of word `w` is column `64 w + c`) through a table of all runs of one word, and
the masks become bytes 0 / 255 through a 256-entry table at the end.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from reflexdrive.envs.sensors.constants import WORD
from reflexdrive.envs.sensors.tensor_ops import chunk_starts

_TABLES: dict = {}
"""Lookup tables per (name, device): see `_run_table` and `byte_table`."""


def _run_table(device: torch.device) -> torch.Tensor:
    """`(65 * 65,)` int64: entry `first * 65 + end` is the word with bits `[first, end)`."""
    key = ("run", str(device))
    if key not in _TABLES:
        table = np.zeros((65, 65), dtype=np.uint64)
        for first in range(65):
            for end in range(first + 1, 65):
                table[first, end] = ((1 << end) - 1) ^ ((1 << first) - 1)
        with torch.inference_mode(False):
            _TABLES[key] = torch.from_numpy(table.view(np.int64).reshape(-1)).to(device)
    return _TABLES[key]


def byte_table(device: torch.device) -> torch.Tensor:
    """`(256,)` int64: entry `v` holds 8 bytes, byte `j` 255 where bit `j` of `v` is set."""
    key = ("byte", str(device))
    if key not in _TABLES:
        bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
        table = np.ascontiguousarray(bits * np.uint8(255)).view(np.int64).reshape(-1)
        with torch.inference_mode(False):
            _TABLES[key] = torch.from_numpy(table.copy()).to(device)
    return _TABLES[key]


def run_masks(lo: torch.Tensor, end: torch.Tensor, width: int) -> torch.Tensor:
    """Row masks of runs.

    Args:
        lo: `(...)` float32 run start in column units: the first column is `ceil(lo)`.
        end: `(...)` float32 run end plus one: the last column is `floor(end) - 1`.
            Both are consumed (changed in place); NaN gives an empty run.
        width: raster width `W` [px].

    Returns:
        `(..., words)` int64 with `words = ceil(W / 64)`.
    """
    table = _run_table(lo.device)
    first = lo.ceil_().clamp_(0.0, width)
    end = end.floor_().clamp_(0.0, width)
    words = -(-width // WORD)
    if words == 1:                                     # NaN bounds (bad input): no run
        index = end.add_(first, alpha=65.0).nan_to_num_(0.0).to(torch.int32)
        return table.index_select(0, index.view(-1)).view(index.shape + (1,))
    masks = []
    for word in range(words):
        f = (first - WORD * word).clamp_(0.0, WORD)
        e = (end - WORD * word).clamp_(0.0, WORD)
        index = e.add_(f, alpha=65.0).nan_to_num_(0.0).to(torch.int32)
        masks.append(table.index_select(0, index.view(-1)).view(index.shape))
    return torch.stack(masks, -1)


def expand_rows(rows: torch.Tensor, width: int, out: torch.Tensor | None = None):
    """Row masks to the raster: `(B, C, H, words)` int64 -> `(B, C, H, W)` uint8 0 / 255.

    One table lookup per byte of mask (8 pixels), written straight into `out` (allocated
    when None; else a contiguous `(B, C, H, W)` uint8 tensor on the same device)."""
    if sys.byteorder != "little":                     # masks are read byte by byte
        raise NotImplementedError("the bev raster needs a little-endian host")
    batch, channels, height, words = rows.shape
    shape = (batch, channels, height, width)
    if out is None:
        out = torch.empty(shape, dtype=torch.uint8, device=rows.device)
    elif out.shape != shape or out.dtype != torch.uint8 or out.device != rows.device:
        raise ValueError(f"out must be a {shape} uint8 tensor on {rows.device}, got "
                         f"{tuple(out.shape)} {out.dtype} on {out.device}")
    nbytes = -(-width // 8)
    table = byte_table(rows.device)
    masks = rows.view(torch.uint8).view(-1, words * 8)[:, :nbytes]   # (B C H, nbytes)
    direct = width % 8 == 0 and out.is_contiguous() and out.storage_offset() % 8 == 0
    target = out.view(torch.int64).view(-1, nbytes) if direct else None
    starts = chunk_starts(masks.shape[0], nbytes)     # chunks: small index temporaries
    step = starts.step
    for r0 in starts:
        index = masks[r0:r0 + step].to(torch.int32).view(-1)
        if direct:
            torch.index_select(table, 0, index, out=target[r0:r0 + step].view(-1))
        else:
            wide = table.index_select(0, index).view(torch.uint8).view(-1, nbytes * 8)
            out.view(-1, width)[r0:r0 + step] = wide[:, :width]
    return out
