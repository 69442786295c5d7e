"""The bev raster's torch core (`render_bev_torch`) and its noise as arrays.

How the bev is drawn (the cost is per row, not per pixel): every shape is convex, so the
pixel centres of one raster row that lie inside it form one run of columns. Runs are
computed analytically per (shape, row), turned into 64-bit row masks (`row_masks`), OR-ed
per channel, and expanded to bytes at the end: vehicles and the ego (`bev_boxes`),
straight roads (`bev_roads`, the fast path), any other road (`bev_generic`). A world's
raster does not depend on the other worlds of the batch (bit for bit).
"""

from __future__ import annotations

import numpy as np
import torch
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.sensors.bev_boxes import box_window, draw_boxes, visible_vehicles
from reflexdrive.envs.sensors.bev_generic import draw_generic_roads
from reflexdrive.envs.sensors.bev_roads import road_line_rows
from reflexdrive.envs.sensors.constants import BEV_MARKINGS, BEV_ROAD, EDGE_TOL_M, WORD
from reflexdrive.envs.sensors.frames import ego_frame_boxes
from reflexdrive.envs.sensors.noise import NoiseSource, bev_keys, noise_arrays
from reflexdrive.envs.sensors.road_plan import RoadPlan, road_plan_for
from reflexdrive.envs.sensors.row_masks import expand_rows
from reflexdrive.envs.sensors.tensor_ops import arange_cached
from reflexdrive.envs.types import EGO


def render_bev_torch(position: torch.Tensor, heading: torch.Tensor, length: torch.Tensor,
                     width: torch.Tensor, valid: torch.Tensor, lane_segments: torch.Tensor,
                     lane_half_width: torch.Tensor, lane_valid: torch.Tensor,
                     marking_segments: torch.Tensor, marking_valid: torch.Tensor,
                     config: SensorConfig, *, position_noise: torch.Tensor | None = None,
                     keep: torch.Tensor | None = None, road_plan: RoadPlan | None = None,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """Torch core of `render_bev`: rasterise `B` worlds on the tensors' device.

    All tensors on one device; the result is on it too. Host syncs: a few small ones
    (sizes of the compacted tables, whether any world needs the generic road path).

    Args:
        position: `(B, N, 2)` vehicle centres, world frame [m] (float64 recommended: the
            ego-frame offsets are taken before the cast to float32).
        heading: `(B, N)` world-frame headings [rad].
        length, width: `(B, N)` vehicle sizes [m].
        valid: `(B, N)` bool; slot 0 is the ego.
        lane_segments: `(B or 1, S, 2, 2)` lane centre segments, world frame [m].
        lane_half_width: `(B or 1, S)` [m].
        lane_valid: `(B or 1, S)` bool.
        marking_segments: `(B or 1, K, 2, 2)` lane markings, world frame [m].
        marking_valid: `(B or 1, K)` bool.
        config: raster geometry, occlusion switch.
        position_noise: optional `(B, N, 2)` ego-frame offsets added to each non-ego
            vehicle's drawn centre [m] (see `draw_bev_noise`).
        keep: optional `(B, N)` bool, False drops that non-ego vehicle from the frame.
        road_plan: the road's `prepare_road` result (then the five road tensors are not
            read). Without it the plan is looked up in a small cache keyed by the identity
            (and version counter) of the five road tensors, and built (a pass over them)
            on a miss: a batched backend should pass the same road tensors every tick, or
            the plan.
        out: optional `(B, C, H, W)` uint8 contiguous tensor to draw into (saves
            allocating, and on the CPU page-faulting, a fresh raster every call).

    Returns:
        `(B, C, H, W)` uint8 with values 0 or 255, `(C, H, W) = config.bev_shape` (`out`
        when given). Occlusion is decided on the true poses of all valid non-ego vehicles
        (dropped-out ones still block the view); noise only moves where visible vehicles
        are drawn.
    """
    batch, slots = valid.shape
    device = position.device
    channels, height, width_px = config.bev_shape
    plan = road_plan if road_plan is not None else road_plan_for(
        None, (lane_segments, lane_half_width, lane_valid, marking_segments, marking_valid),
        device)
    if plan.batch not in (1, batch):
        raise ValueError(f"road batch {plan.batch} does not match {batch} worlds")
    boxes = ego_frame_boxes(position, heading, length, width)
    is_ego = arange_cached(slots, device, torch.int64) == EGO
    shown = boxes                                             # where vehicles are drawn
    if position_noise is not None:
        moved = (~is_ego).to(boxes.cx.dtype)
        noise = position_noise.to(boxes.cx.dtype)
        shown = boxes._replace(cx=torch.addcmul(boxes.cx, noise[..., 0], moved),
                               cy=torch.addcmul(boxes.cy, noise[..., 1], moved))
    first_row, last_row, touches = box_window(shown, EDGE_TOL_M, config)
    drawn = valid & ~is_ego & touches
    if keep is not None:
        drawn &= keep
    if config.bev_occlusion and slots > 1:
        drawn &= visible_vehicles(boxes, valid & ~is_ego, drawn)

    rows = torch.zeros(batch, channels, height, -(-width_px // WORD), dtype=torch.int64,
                       device=device)
    slow = road_line_rows(rows[:, BEV_ROAD], rows[:, BEV_MARKINGS], plan, position[:, EGO],
                           heading[:, EGO], config)
    draw_boxes(rows, shown, (first_row, last_row), drawn | is_ego, config)
    out = expand_rows(rows, width_px, out)
    if plan.any_generic or bool(slow.any()):
        worlds = slow.nonzero().squeeze(1)
        if worlds.numel():
            draw_generic_roads(out, plan, worlds, position[:, EGO], heading[:, EGO], config)
    return out


def draw_bev_noise(rng: NoiseSource, config: SensorConfig, batch: int,
                   slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one frame's bev noise (the bev's keys from `rng`, then the numbers).

    Args:
        rng: the noise source: a `np.random.Generator` (two keys drawn from it) or an
            `EpisodeNoise` (its `bev` keys), as for `render_bev`.
        config: `bev_position_noise_m`, `bev_dropout_prob`.
        batch, slots: `B`, `N`.

    Returns:
        `(position_noise (B, N, 2) float32 [m], keep (B, N) bool)`; the ego slot's entries
        are drawn too and ignored. What the bev kernel applies for the same `rng` state.
    """
    return bev_noise(bev_keys(rng, batch), config, slots)


def bev_noise(keys: np.ndarray, config: SensorConfig,
               slots: int) -> tuple[np.ndarray, np.ndarray]:
    """`draw_bev_noise` of `(B, 2)` world keys."""
    dropout, normal = noise_arrays(keys, slots)
    return ((normal * config.bev_position_noise_m).astype(np.float32),
            dropout >= config.bev_dropout_prob)
