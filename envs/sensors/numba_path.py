"""The CPU path of the numpy entry points: the numba kernels of `envs.sensors.kernels`.

The kernels repeat the torch cores' arithmetic (see `envs.sensors.kernels`). What they
cannot repeat bit for bit (torch's cos and sin) is computed here by the very torch calls
the cores make (`ego_trig`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.sensors import constants
from reflexdrive.envs.sensors.bev_generic import CLIP_MARGIN_M, PIECE_PX, pixel_centres
from reflexdrive.envs.sensors.constants import (
    BEAM_SLACK_RAD,
    BEV_MARKINGS,
    BEV_ROAD,
    EDGE_TOL_M,
    FAR,
    INV_MAX,
    OCCLUSION_EPS,
    SQRT_FLOOR,
    TINY,
    WINDOW_TOL_PX,
)
from reflexdrive.envs.sensors.kernels.bev import (
    LINE_BAND,
    LINE_EXACT,
    LINE_NONE,
    BevGeometry,
    render_bev_kernel,
)
from reflexdrive.envs.sensors.kernels.bev_generic import GenericGeometry, generic_roads_kernel
from reflexdrive.envs.sensors.kernels.lidar import cast_lidar_kernel
from reflexdrive.envs.sensors.road_plan import RoadPlan
from reflexdrive.envs.sensors.row_masks import byte_table
from reflexdrive.envs.sensors.tensor_ops import beam_directions, to_tensor
from reflexdrive.envs.sensors.threads import kernel_threads_for
from reflexdrive.envs.types import EGO, WorldSnapshot

from reflexdrive.common.threads import torch_threads

KERNELS = ("auto", "numba", "torch")
"""Values of the entry points' `kernel` argument."""


def use_numba_kernel(kernel: str, device: torch.device) -> bool:
    """Whether an entry point runs its numba kernel (`kernel`: one of `KERNELS`)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "numba" and device.type != "cpu":
        raise ValueError(f"the numba kernels run on the CPU, not on {device}")
    return kernel == "numba" or (kernel == "auto" and device.type == "cpu")


def bev_geometry(config: SensorConfig) -> BevGeometry:
    """The raster geometry and the tolerances of `constants`, as the bev kernel takes them."""
    _, height, width = config.bev_shape
    res = float(config.bev_m_per_px)
    inv_res = 1.0 / res
    corner = math.hypot(max(config.range_m, config.bev_behind_m), config.bev_half_width_m)
    return BevGeometry(
        height=int(height), width=int(width), res=res, inv_res=inv_res,
        x0=float(config.range_m - 0.5 * res),
        col0_box=float(config.bev_half_width_m * inv_res - 0.5),
        col0_line=float(config.bev_half_width_m / res - 0.5),
        edge_tol=float(EDGE_TOL_M), window_tol=float(WINDOW_TOL_PX),
        inv_max=float(INV_MAX), far=float(FAR), sqrt_floor=float(SQRT_FLOOR),
        min_cos=float(constants.MIN_COS), half_px=0.5 * res,
        two_rho_mark=2.0 * (0.5 * res + EDGE_TOL_M), corner_res=float(corner + res),
        see_through=1.0 - OCCLUSION_EPS, tiny=TINY)


def generic_geometry(config: SensorConfig) -> GenericGeometry:
    """The constants of the generic road path (`sensors.bev_generic`), as its kernel takes
    them."""
    _, height, width = config.bev_shape
    res = float(config.bev_m_per_px)
    return GenericGeometry(
        height=int(height), width=int(width),
        middle_x=0.5 * (config.range_m - config.bev_behind_m),
        half_x=0.5 * (config.range_m + config.bev_behind_m - res) + CLIP_MARGIN_M,
        half_y=config.bev_half_width_m - 0.5 * res + CLIP_MARGIN_M,
        inv_max=float(INV_MAX), inv_piece=1.0 / (PIECE_PX * res), mark_radius=0.5 * res,
        edge_tol=float(EDGE_TOL_M), window_tol=float(WINDOW_TOL_PX), inv_res=1.0 / res,
        row0=config.range_m / res - 0.5, col0=config.bev_half_width_m / res - 0.5,
        far=float(FAR))


_NO_KEYS = np.zeros((0, 2), dtype=np.uint64)
"""The kernels' `keys` for no noise."""


def snapshot_arrays(snapshot: WorldSnapshot, *names: str) -> list[np.ndarray]:
    """Snapshot fields as the kernels take them: C-contiguous float64 (bool `valid`)."""
    return [np.ascontiguousarray(getattr(snapshot, name),
                                 dtype=bool if name == "valid" else np.float64)
            for name in names]


class Trig(NamedTuple):
    """cos and sin as the torch cores compute them (`ego_frame_boxes`, `road_line_rows`): of the
    ego heading, `(B,)` float64 each, and of each heading relative to the ego's, `(B, N)`
    float32 each."""

    cos_e: np.ndarray
    sin_e: np.ndarray
    ax: np.ndarray
    ay: np.ndarray


def ego_trig(heading: np.ndarray) -> Trig:
    """`Trig` of `(B, N)` float64 headings [rad], by torch (as the cores compute them).

    Torch runs on the calling thread only here: it hands even a few hundred `cos` to its
    OpenMP pool, and waking that pool on a busy host (or while numba's threads hold the
    cores) is slow, once per op. Torch's cos and sin give the same bits whatever the thread
    count (tests/envs/sensors/test_sensor_kernels.py checks it)."""
    with torch.inference_mode(), torch_threads(1):
        tensor = to_tensor(heading, np.float64, torch.device("cpu"))
        ego = tensor[:, EGO]
        rel = (tensor - tensor[:, EGO:EGO + 1]).float()
        return Trig(torch.cos(ego).numpy(), torch.sin(ego).numpy(), torch.cos(rel).numpy(),
                    torch.sin(rel).numpy())


def _line_modes(plan: RoadPlan) -> tuple[np.ndarray, np.ndarray, int]:
    """How `road_line_rows` draws each line column of a plan, for the bev kernel.

    Returns:
        `(mode (L,) int64, channel (L,) int64, union)`: `kernels.bev.LINE_*` (the lanes'
        union as a band when the plan is merged, then the lanes themselves only near
        their ends; striped columns by exact runs; the others as bands), the bev channel
        of each column, and the union's column.
    """
    count = plan.lines.shape[1]
    union = count - 1
    merged = plan.merged and plan.lanes > 0
    mode = np.zeros(count, dtype=np.int64)
    channel = np.zeros(count, dtype=np.int64)
    for j in range(count):
        channel[j] = BEV_ROAD if j < plan.lanes or j == union else BEV_MARKINGS
        if j == union:
            mode[j] = LINE_BAND if merged else LINE_NONE
        elif plan.striped[j]:
            mode[j] = LINE_EXACT
        elif merged and j < plan.lanes:
            mode[j] = LINE_NONE
        else:
            mode[j] = LINE_BAND
    return mode, channel, union


def render_bev_numba(snapshot: WorldSnapshot, plan: RoadPlan, config: SensorConfig,
                      keys: np.ndarray | None, out: np.ndarray | None,
                      trig: Trig | None = None) -> np.ndarray:
    """`render_bev` on the CPU: the numba kernel, then the generic road path's kernel for
    the worlds whose road is not on the fast path.

    Args:
        snapshot: the worlds. plan: their road's plan, on the CPU. config: the sensors.
        keys: the bev's `(B, 2)` uint64 world noise keys (`bev_keys`), or None for no
            noise.
        out: `(B, C, H, W)` uint8 C-contiguous array to draw into, or None.
        trig: `ego_trig` of the snapshot's headings, when the caller has it.
    """
    batch, slots = snapshot.shape
    if plan.batch not in (1, batch):
        raise ValueError(f"road batch {plan.batch} does not match {batch} worlds")
    position, heading, length, width, valid = snapshot_arrays(
        snapshot, "position", "heading", "length", "width", "valid")
    cos_e, sin_e, ax, ay = ego_trig(heading) if trig is None else trig
    channels, height, width_px = config.bev_shape
    if out is None:
        out = np.empty((batch, channels, height, width_px), dtype=np.uint8)
    out64 = out.view(np.int64) if width_px % 8 == 0 else np.zeros((1, 1, 1, 1), np.int64)
    keys = _NO_KEYS if keys is None else keys
    mode, channel, union = _line_modes(plan)
    slow = np.empty(batch, dtype=bool)
    with kernel_threads_for(batch):
        render_bev_kernel(
            position, length, width, valid, cos_e, sin_e, ax, ay, keys,
            float(config.bev_position_noise_m), float(config.bev_dropout_prob),
            bool(config.bev_occlusion and slots > 1), plan.variant.numpy(),
            plan.straight.numpy(), plan.direction.numpy(), plan.origin.numpy(),
            plan.lines.numpy(), plan.min_gap.numpy(), mode, channel, plan.lanes, union,
            byte_table(torch.device("cpu")).numpy(), bev_geometry(config), out, out64,
            slow)
    worlds = np.flatnonzero(slow)
    if len(worlds):
        lanes, lane_half, lane_valid, marks, mark_valid = (t.numpy() for t in plan.segments)
        with kernel_threads_for(len(worlds)):
            generic_roads_kernel(
                worlds, np.ascontiguousarray(position[:, EGO, 0]),
                np.ascontiguousarray(position[:, EGO, 1]), cos_e, sin_e, plan.variant.numpy(),
                lanes, lane_half, lane_valid, marks, mark_valid, *pixel_centres(config),
                generic_geometry(config), out)
    return out


def cast_lidar_numba(snapshot: WorldSnapshot, config: SensorConfig,
                      keys: np.ndarray | None,
                      trig: Trig | None = None) -> np.ndarray:
    """`cast_lidar` on the CPU, by the numba kernel (`keys`: the lidar's `(B, 2)` world
    noise keys (`lidar_keys`), or None for no noise; `trig`: as `render_bev_numba`'s)."""
    batch = snapshot.shape[0]
    position, heading, speed, length, width, valid = snapshot_arrays(
        snapshot, "position", "heading", "speed", "length", "width", "valid")
    cos_e, sin_e, ax, ay = ego_trig(heading) if trig is None else trig
    beam_x, beam_y = (b.numpy() for b in beam_directions(config.lidar_beams, torch.device("cpu")))
    keys = _NO_KEYS if keys is None else keys
    out = np.empty((batch, config.lidar_beams, 2), dtype=np.float32)
    with kernel_threads_for(batch):
        cast_lidar_kernel(
            position, speed, length, width, valid, cos_e, sin_e, ax, ay, beam_x, beam_y,
            keys, float(config.lidar_range_noise_m),
            float(config.lidar_range_rate_noise_mps), float(config.lidar_dropout_prob),
            float(config.range_m), float(BEAM_SLACK_RAD), float(INV_MAX), out)
    return out
