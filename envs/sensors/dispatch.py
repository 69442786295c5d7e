"""The sensors' numpy entry points: `render_bev`, `cast_lidar`, `observe`.

On the CPU they run the numba kernels (`numba_path`), on any other device the torch cores
(`bev.render_bev_torch`, `lidar.cast_lidar_torch`); `kernel=` picks one explicitly (one of
`KERNELS`). Both give the same bev bit for bit and the same lidar. The torch cores run
under `torch.inference_mode()`.
"""

from __future__ import annotations

import numpy as np
import torch
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.sensors.bev import bev_noise, render_bev_torch
from reflexdrive.envs.sensors.lidar import cast_lidar_torch, lidar_noise
from reflexdrive.envs.sensors.noise import NoiseSource, bev_keys, lidar_keys
from reflexdrive.envs.sensors.numba_path import (
    cast_lidar_numba,
    ego_trig,
    render_bev_numba,
    use_numba_kernel,
)
from reflexdrive.envs.sensors.road_plan import road_plan_for
from reflexdrive.envs.sensors.tensor_ops import to_tensor
from reflexdrive.envs.types import RoadGeometry, WorldSnapshot


def render_bev(snapshot: WorldSnapshot, road: RoadGeometry, config: SensorConfig,
               rng: NoiseSource | None = None,
               device: str | torch.device = "cpu", out: np.ndarray | None = None,
               kernel: str = "auto") -> np.ndarray:
    """Rasterise the ego-centred bird's-eye view of `B` worlds.

    Channels: 0 drivable road (pixel centre within the lane half width of a valid lane
    centre segment), 1 lane markings (within half a pixel of a valid marking segment),
    2 other vehicles (inside the rotated rectangle of a valid, visible, not dropped-out
    non-ego vehicle, drawn at its noisy position), 3 ego. Orientation: see the `envs.sensors`
    docstring. With `config.bev_occlusion` a vehicle is hidden when the rays from the ego
    centre to its centre and its four corners all enter another vehicle first.

    The road's static analysis (`prepare_road`) is cached by the identity of `road`: treat
    a `RoadGeometry` as immutable (it is a frozen dataclass; do not write into its arrays).

    Args:
        snapshot: `B` worlds, `N` slots (slot 0 the ego).
        road: the road of each world (batch `B`, or 1 shared by all worlds).
        config: raster geometry, occlusion, noise and dropout settings.
        rng: noise source (`draw_bev_noise`): a `np.random.Generator` (the call draws two
            keys from it; world `b`'s noise is then a function of them and `b`), or an
            `EpisodeNoise` of `B` worlds (`episode_noise_keys`: world `b`'s noise is a
            function of its `bev` keys only; a `ValueError` if they are not `(B, 2)`
            uint64). None draws nothing and renders the truth.
        device: where to compute.
        out: optional `(B, C, H, W)` uint8 C-contiguous array to draw into (CPU only):
            reusing one buffer avoids allocating (and page-faulting) a fresh raster per
            call.
        kernel: "auto" (the numba kernel on the CPU, the torch core elsewhere), "numba"
            (CPU only) or "torch". Both give the same raster, bit for bit.

    Returns:
        `(B, C, H, W)` uint8, values 0 or 255, `(C, H, W) = config.bev_shape` (`out` when
        given).
    """
    dev = torch.device(device)
    batch, slots = snapshot.shape
    if out is not None and (dev.type != "cpu" or out.dtype != np.uint8
                            or out.shape != (batch, *config.bev_shape)
                            or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous uint8 array of shape "
                         f"{(batch, *config.bev_shape)} on the CPU")
    plan = road_plan_for(road, (road.lane_segments, road.lane_half_width, road.lane_valid,
                                 road.marking_segments, road.marking_valid), dev)
    use_numba = use_numba_kernel(kernel, dev)         # (checked before drawing)
    keys = bev_keys(rng, batch)
    if use_numba:
        return render_bev_numba(snapshot, plan, config, keys, out)
    noise = keep = None
    if keys is not None:
        noise_np, keep_np = bev_noise(keys, config, slots)
        noise, keep = torch.from_numpy(noise_np).to(dev), torch.from_numpy(keep_np).to(dev)

    def t(array, dtype=None):
        return to_tensor(array, dtype, dev)

    with torch.inference_mode():                       # nothing escapes but numpy
        bev = render_bev_torch(
            t(snapshot.position), t(snapshot.heading), t(snapshot.length), t(snapshot.width),
            t(snapshot.valid, bool), *plan.segments, config, position_noise=noise, keep=keep,
            road_plan=plan, out=None if out is None else torch.from_numpy(out))
        return out if out is not None else bev.cpu().numpy()


def cast_lidar(snapshot: WorldSnapshot, config: SensorConfig,
               rng: NoiseSource | None = None,
               device: str | torch.device = "cpu", kernel: str = "auto") -> np.ndarray:
    """Cast the ego's 360-degree lidar in `B` worlds.

    Beam `i` leaves the ego centre at angle `2 pi i / beams` in the ego frame (0 straight
    ahead, turning towards +y) and stops at the first valid non-ego vehicle rectangle
    (slab method), at most `range_m` away. With `rng`: Gaussian range and range-rate noise
    on hits, ranges clipped to `[0, range_m]`, then each hit lost with
    `lidar_dropout_prob`.

    Args:
        snapshot: `B` worlds, `N` slots (slot 0 the ego).
        config: range, beams, noise and dropout settings.
        rng: noise source (`draw_lidar_noise`): a `np.random.Generator` or an
            `EpisodeNoise` (its `lidar` keys), as for `render_bev`; None returns the
            noiseless truth.
        device: where to compute.
        kernel: "auto" (the numba kernel on the CPU, the torch core elsewhere), "numba"
            (CPU only) or "torch". Both give the same ranges and rates.

    Returns:
        `(B, beams, 2)` float32: range [m] (`range_m` for no return) and range rate [m/s]
        (0 for no return; negative when closing).
    """
    dev = torch.device(device)
    use_numba = use_numba_kernel(kernel, dev)         # (checked before drawing)
    keys = lidar_keys(rng, snapshot.shape[0])
    if use_numba:
        return cast_lidar_numba(snapshot, config, keys)
    extra = {}
    if keys is not None:
        range_noise, rate_noise, keep = lidar_noise(keys, config)
        extra = dict(range_noise=torch.from_numpy(range_noise).to(dev),
                     rate_noise=torch.from_numpy(rate_noise).to(dev),
                     keep=torch.from_numpy(keep).to(dev))

    def t(array, dtype=None):
        return to_tensor(array, dtype, dev)

    with torch.inference_mode():                       # nothing escapes but numpy
        lidar = cast_lidar_torch(t(snapshot.position), t(snapshot.heading), t(snapshot.speed),
                                 t(snapshot.length), t(snapshot.width), t(snapshot.valid, bool),
                                 config, **extra)
        return lidar.cpu().numpy()


def observe(snapshot: WorldSnapshot, road: RoadGeometry, config: SensorConfig,
            rng: NoiseSource | None = None, device: str | torch.device = "cpu",
            out: np.ndarray | None = None,
            kernel: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """`render_bev` then `cast_lidar` of the same worlds with the same `rng`, in one call.

    Returns what the two calls return, drawing the same numbers from `rng` in the same
    order (the bev's, then the lidar's; an `EpisodeNoise` gives its `bev` keys to the one
    and its `lidar` keys to the other). On the numba path the work they share (the cos
    and sin of the headings) is done once. Arguments as `render_bev`'s.

    Returns:
        `(bev (B, C, H, W) uint8, lidar (B, beams, 2) float32)`.
    """
    dev = torch.device(device)
    if not use_numba_kernel(kernel, dev):
        return (render_bev(snapshot, road, config, rng, dev, out, kernel),
                cast_lidar(snapshot, config, rng, dev, kernel))
    batch, slots = snapshot.shape
    if out is not None and (out.dtype != np.uint8 or out.shape != (batch, *config.bev_shape)
                            or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous uint8 array of shape "
                         f"{(batch, *config.bev_shape)}")
    plan = road_plan_for(road, (road.lane_segments, road.lane_half_width, road.lane_valid,
                                 road.marking_segments, road.marking_valid), dev)
    trig = ego_trig(np.ascontiguousarray(snapshot.heading, dtype=np.float64))
    keys_bev, keys_lidar = bev_keys(rng, batch), lidar_keys(rng, batch)
    return (render_bev_numba(snapshot, plan, config, keys_bev, out, trig),
            cast_lidar_numba(snapshot, config, keys_lidar, trig))
