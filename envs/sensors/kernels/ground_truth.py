"""The numba kernel of the ground-truth object list (`sensors.ground_truth`)."""

from __future__ import annotations

import math

import numba
import numpy as np
from reflexdrive.envs.sensors.kernels.common import BLOCK, HELPER, JIT, njit


@njit(**JIT)
def ground_truth_kernel(position, heading, speed, length, width, vehicle_id, valid, objects,
                        objects_valid):
    """`sensors.ground_truth_objects` (float64, then float32): every valid non-ego vehicle,
    nearest centre first (ties: slot order), cut to `M` rows.

    Args:
        position: `(B, N, 2)` float64; heading, speed, length, width: `(B, N)` float64;
            vehicle_id: `(B, N)` int64; valid: `(B, N)` bool.
        objects: `(B, M, 8)` float32, written (padding rows zero), `OBJECT_FIELDS` columns.
        objects_valid: `(B, M)` bool, written.
    """
    batch, slots = valid.shape
    for block in numba.prange((batch + BLOCK - 1) // BLOCK):
        scratch = np.empty((3, slots))
        order = np.empty(slots, dtype=np.int64)
        start = np.int64(block) * BLOCK                # worlds of this step
        for b in range(start, min(batch, start + BLOCK)):
            _truth_world(b, position, heading, speed, length, width, vehicle_id, valid,
                         objects, objects_valid, scratch, order)


@njit(**HELPER)
def _truth_world(b, position, heading, speed, length, width, vehicle_id, valid, objects,
                 objects_valid, scratch, order):
    """`ground_truth_kernel` for world `b` (`scratch (3, N)`, `order (N,)`)."""
    slots, rows = valid.shape[1], objects.shape[1]
    cos, sin = math.cos(heading[b, 0]), math.sin(heading[b, 0])
    x, y, distance = scratch[0], scratch[1], scratch[2]
    count = 0
    for n in range(1, slots):
        if not valid[b, n]:
            continue
        dx = position[b, n, 0] - position[b, 0, 0]
        dy = position[b, n, 1] - position[b, 0, 1]
        x[n], y[n] = dx * cos + dy * sin, dy * cos - dx * sin
        distance[n] = math.hypot(x[n], y[n])
        k = count                                      # insertion sort: stable, ties keep
        while k > 0 and distance[order[k - 1]] > distance[n]:     # slot order
            order[k] = order[k - 1]
            k -= 1
        order[k] = n
        count += 1
    for k in range(rows):
        objects_valid[b, k] = k < count
        if k >= count:
            for f in range(objects.shape[2]):
                objects[b, k, f] = 0.0
            continue
        n = order[k]
        rel = math.pi - (math.pi - (heading[b, n] - heading[b, 0])) % (2.0 * math.pi)
        cos_rel, sin_rel = (1.0, 0.0) if rel == 0.0 else (math.cos(rel), math.sin(rel))
        objects[b, k, 0] = x[n]
        objects[b, k, 1] = y[n]
        objects[b, k, 2] = speed[b, n] * cos_rel
        objects[b, k, 3] = speed[b, n] * sin_rel
        objects[b, k, 4] = rel
        objects[b, k, 5] = length[b, n]
        objects[b, k, 6] = width[b, n]
        objects[b, k, 7] = float(vehicle_id[b, n])
