"""Frames: world-frame poses seen from each world's ego.

The world frame is highway-env's (heading measured from +x towards +y). The ego frame has
x forward along the ego heading and y towards the ego's +heading side (world offsets
rotated by `-ego_heading`). With highway-env's screen convention (+y drawn downwards) the
ego's +y side is the driver's right.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from reflexdrive.envs.types import EGO


def to_ego_frame(points_world, ego_position, ego_heading):
    """Express world-frame points in each world's ego frame.

    Works on numpy arrays and torch tensors alike (returns the same kind and dtype). Plain
    element-wise arithmetic (no matrix product: no BLAS threads for tiny products).

    Args:
        points_world: `(B, ..., 2)` points in the world frame [m].
        ego_position: `(B, 2)` ego centre in the world frame [m].
        ego_heading: `(B,)` ego heading in the world frame [rad].

    Returns:
        `(B, ..., 2)` points in the ego frame [m]: x forward, y towards the +heading side.
    """
    lib = torch if isinstance(points_world, torch.Tensor) else np
    batch, middle = points_world.shape[0], (1,) * (points_world.ndim - 2)
    offset = points_world - ego_position.reshape((batch,) + middle + (2,))
    cos = lib.cos(ego_heading).reshape((batch,) + middle)
    sin = lib.sin(ego_heading).reshape((batch,) + middle)
    dx, dy = offset[..., 0], offset[..., 1]
    return lib.stack([dx * cos + dy * sin, dy * cos - dx * sin], -1)


def wrap_angle(angle):
    """Wrap angles [rad] to (-pi, pi] (numpy or torch)."""
    return math.pi - (math.pi - angle) % (2.0 * math.pi)


class Boxes(NamedTuple):
    """Vehicle boxes in the ego frame, one `(B, N)` float32 tensor per field: centre `cx`,
    `cy` [m]; unit heading `ax, ay` (cos and sin of the heading relative to the ego's);
    half length `hl` and half width `hw` [m]."""

    cx: torch.Tensor
    cy: torch.Tensor
    ax: torch.Tensor
    ay: torch.Tensor
    hl: torch.Tensor
    hw: torch.Tensor

    def take(self, order: torch.Tensor) -> "Boxes":
        """The boxes at `order` `(B, P)` (slot numbers) of each world."""
        return Boxes(*(field.gather(1, order) for field in self))

    def origins(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ego centre (the ego frame's origin) in each box's frame [m]."""
        ox, oy = into_box(self.cx, self.cy, self.ax, self.ay)
        return ox.neg_(), oy.neg_()


def ego_frame_boxes(position: torch.Tensor, heading: torch.Tensor, length: torch.Tensor,
               width: torch.Tensor) -> Boxes:
    """Vehicle boxes in the ego frame, float32 (`to_ego_frame`, one field at a time).

    Args:
        position: `(B, N, 2)` world-frame centres [m] (float64 keeps far-away worlds
            precise: the offsets are taken before the cast).
        heading: `(B, N)` world-frame headings [rad].
        length, width: `(B, N)` sizes [m].
    """
    dx = position[..., 0] - position[:, EGO:EGO + 1, 0]
    dy = position[..., 1] - position[:, EGO:EGO + 1, 1]
    cos, sin = torch.cos(heading[:, EGO:EGO + 1]), torch.sin(heading[:, EGO:EGO + 1])
    rel_heading = (heading - heading[:, EGO:EGO + 1]).float()
    return Boxes((dx * cos + dy * sin).float(), (dy * cos - dx * sin).float(),
                  torch.cos(rel_heading), torch.sin(rel_heading),
                  length.float().mul_(0.5), width.float().mul_(0.5))


def into_box(px: torch.Tensor, py: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Ego-frame vectors `(px, py)` seen in box frames of heading `(cos, sin)` (broadcast):
    `(px cos + py sin, py cos - px sin)`, each rounded as `fl(fl(a b) + fl(c d))`."""
    return (px * cos).add_(py * sin), (py * cos).sub_(px * sin)
