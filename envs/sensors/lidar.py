"""The lidar's torch core (`cast_lidar_torch`) and its noise as arrays.

The lidar tests each vehicle only against the beams of its angular window (those that pass
within its half diagonal of its centre), keeping the nearest hit per beam.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.sensors.constants import BEAM_SLACK_RAD, FAR
from reflexdrive.envs.sensors.frames import ego_frame_boxes, into_box
from reflexdrive.envs.sensors.noise import NoiseSource, lidar_keys, noise_arrays
from reflexdrive.envs.sensors.tensor_ops import (
    arange_cached,
    beam_directions,
    kept_slots,
    slab_parts,
    world_chunks,
)
from reflexdrive.envs.types import EGO

_NO_HIT_KEY = 0x7F800000 << 16
"""Lidar: the packed key of "no hit" (+inf distance, slot 0)."""


def cast_lidar_torch(position: torch.Tensor, heading: torch.Tensor, speed: torch.Tensor,
                     length: torch.Tensor, width: torch.Tensor, valid: torch.Tensor,
                     config: SensorConfig, *, range_noise: torch.Tensor | None = None,
                     rate_noise: torch.Tensor | None = None,
                     keep: torch.Tensor | None = None) -> torch.Tensor:
    """Torch core of `cast_lidar`: cast the beams of `B` worlds on the tensors' device.

    Only the boxes that can be hit within range are tested (compacted per world), in
    blocks of worlds of about `CHUNK_ELEMENTS` (beam, box) pairs.

    Args:
        position: `(B, N, 2)` vehicle centres, world frame [m] (float64 recommended).
        heading: `(B, N)` world-frame headings [rad].
        speed: `(B, N)` signed speeds along the heading [m/s].
        length, width: `(B, N)` vehicle sizes [m].
        valid: `(B, N)` bool; slot 0 is the ego (the rays start at its centre).
        config: `range_m`, `lidar_beams`.
        range_noise: optional `(B, beams)` added to each return's range [m].
        rate_noise: optional `(B, beams)` added to each return's range rate [m/s].
        keep: optional `(B, beams)` bool, False drops that return.

    Returns:
        `(B, beams, 2)` float32: range [m] to the first valid non-ego vehicle rectangle
        along beam `i` (direction `2 pi i / beams` in the ego frame, towards +y), and its
        range rate `(v_hit - v_ego) . direction` [m/s] from ground velocities. No hit (or a
        dropped return): `(range_m, 0)`. Noisy ranges are clipped to `[0, range_m]`.
    """
    batch, slots = valid.shape
    device = position.device
    beams = config.lidar_beams
    boxes = ego_frame_boxes(position, heading, length, width)
    beam_x, beam_y = beam_directions(beams, device)
    # A beam can hit a box only if it passes within the box's half diagonal r of its
    # centre: within asin(r / d) of the box's direction (every beam when d <= r).
    dist, radius = torch.hypot(boxes.cx, boxes.cy), torch.hypot(boxes.hl, boxes.hw)
    target = valid & (dist - radius < config.range_m + 1.0)
    target &= arange_cached(slots, device, torch.int64) != EGO
    step = 2.0 * math.pi / beams
    bearing = torch.atan2(boxes.cy, boxes.cx)
    spread = torch.asin((radius / dist).clamp_(max=1.0)).add_(BEAM_SLACK_RAD)
    first = torch.ceil((bearing - spread) / step)
    count = torch.floor((bearing + spread) / step) - first + 1.0
    count = torch.where(dist > radius * (1.0 + 1e-6) + 1e-6, count, float(beams))
    target &= count > 0.0
    picked = kept_slots(target)
    key = torch.full((batch, beams), _NO_HIT_KEY, dtype=torch.int64, device=device)
    if picked is not None:
        order, kept = picked
        box = boxes.take(order)
        ox, oy = box.origins()
        fields = (ox, oy, box.ax, box.ay, torch.where(kept, box.hl, -1.0),
                  torch.where(kept, box.hw, -1.0), order, first.gather(1, order))
        window = min(beams, int((count.gather(1, order) * kept).amax()))   # host sync
        offsets = arange_cached(window, device, torch.int64)
        for b0, b1 in world_chunks(batch, order.shape[1] * window):
            _window_hits(key[b0:b1], beam_x, beam_y, [f[b0:b1] for f in fields], offsets)
    distance = (key >> 16).to(torch.int32).view(torch.float32)
    hit_slot = key & 0xFFFF
    hit = distance < config.range_m
    speed = speed.float()
    vx = speed * boxes.ax - speed[:, EGO:EGO + 1]             # ground velocity minus the
    vy = speed * boxes.ay                                     # ego's (speed, 0), ego frame
    rate = (vx.gather(1, hit_slot) * beam_x).add_(vy.gather(1, hit_slot) * beam_y)
    if range_noise is not None:
        distance = (distance + range_noise.float()).clamp_(0.0, config.range_m)
    if rate_noise is not None:
        rate = rate + rate_noise.float()
    if keep is not None:
        hit &= keep
    return torch.stack([distance.masked_fill_(~hit, config.range_m), rate.masked_fill_(~hit, 0.0)],
                       -1)


def _window_hits(key, beam_x, beam_y, box, offsets) -> None:
    """First box along each beam, each box tested on its window of beams only.

    Args:
        key: `(b, beams)` int64 packed hits (`_NO_HIT_KEY`, or the float32 bits of the
            distance `<< 16 | slot`), lowered in place to the nearer hits.
        beam_x, beam_y: `(beams,)` unit beam directions in the ego frame.
        box: `(ox, oy, ax, ay, hl, hw, slot, first)`, each `(b, M)`: the ego centre in each
            box's frame [m], the box's unit axis, half extents [m] (negative: never hit),
            slot (int64), first beam of its window (any integer: taken modulo beams).
        offsets: `(K,)` int64 `0 .. K - 1`, the window's beams (`K <= beams`).
    """
    beams = beam_x.shape[0]
    ox, oy, ax, ay, hl, hw, slot, first = (f[..., None] for f in box)
    beam = (first.long() + offsets).remainder_(beams)                  # (b, M, K)
    flat = beam.view(-1)
    dx, dy = into_box(beam_x.index_select(0, flat).view(beam.shape),
                       beam_y.index_select(0, flat).view(beam.shape), ax, ay)
    t_in, t_out = slab_parts(ox, oy, dx, dy, hl, hw)
    t_in.clamp_min_(0.0)
    miss = (t_in - t_out).mul_(FAR).clamp_(0.0, 1.0).mul_(FAR)       # FAR: misses
    bits = t_in.add_(miss).view(torch.int32).long()                    # +0.0: order kept
    hits = bits.mul_(1 << 16).add_(slot)
    key.scatter_reduce_(1, beam.view(key.shape[0], -1), hits.view(key.shape[0], -1), "amin")


def draw_lidar_noise(rng: NoiseSource, config: SensorConfig,
                     batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one frame's lidar noise (the lidar's keys from `rng`, then the numbers).

    Args:
        rng: the noise source: a `np.random.Generator` (two keys drawn from it) or an
            `EpisodeNoise` (its `lidar` keys), as for `cast_lidar`.
        config: `lidar_beams`, `lidar_range_noise_m`, `lidar_range_rate_noise_mps`,
            `lidar_dropout_prob`.
        batch: `B`.

    Returns:
        `(range_noise [m], rate_noise [m/s], keep bool)`, each `(B, beams)`, noise float32:
        what the lidar kernel applies for the same `rng` state (it draws them on the beams
        that hit only).
    """
    return lidar_noise(lidar_keys(rng, batch), config)


def lidar_noise(keys: np.ndarray,
                 config: SensorConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`draw_lidar_noise` of `(B, 2)` world keys."""
    dropout, normal = noise_arrays(keys, config.lidar_beams)
    return ((normal[..., 0] * config.lidar_range_noise_m).astype(np.float32),
            (normal[..., 1] * config.lidar_range_rate_noise_mps).astype(np.float32),
            dropout >= config.lidar_dropout_prob)
