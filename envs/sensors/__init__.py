"""The ego's sensors and ground truth, as pure batch-first functions of a `WorldSnapshot`.

What: a bird's-eye raster (`bev`), a 360-degree lidar (`lidar`), the ego's proprioception
(`ego`) and the ground-truth object list that goes in `info`. Every function takes `B`
worlds at once (slot 0 of the `N` axis is the ego) and returns batch-first arrays.

Which code runs where: both backends share one implementation of the sensors
(docs/ARCHITECTURE.md). The numpy entry points (`render_bev`, `cast_lidar`, `observe`,
`ground_truth_objects`) run, on the CPU, the numba kernels of `envs.sensors.kernels`
(parallel over worlds on numba's threads), and on any other device the torch cores
(`render_bev_torch`, `cast_lidar_torch`), which take and return tensors so a batched
backend can run them on CUDA tensors without a round trip through numpy; `kernel=` picks
one explicitly. The kernels repeat the cores' arithmetic operation by operation (and take
their cos and sin from torch), so the two give the same bev bit for bit and the same lidar;
the bev's generic road path (curved lanes) has its own kernel (`kernels.bev_generic`). The
numpy wrappers run the cores under `torch.inference_mode()`; callers of the cores may do
the same when they need no autograd.
A batched backend should also pass `out=` (a reused raster) and keep passing the same road
tensors (or `road_plan=`). Timings: docs/sensors.md.

One module per concept:
- `constants`: channels, tolerances and table layouts shared by the cores and kernels;
- `frames`: the ego frame; `tensor_ops`: the cores' small torch helpers;
- `road_plan`: a road's static analysis (`prepare_road`), cached per road;
- `bev` (the core) with `row_masks`, `bev_roads` (straight roads' fast path),
  `bev_boxes` (vehicles, occlusion), `bev_generic` (any other road);
- `lidar` (the core); `noise` (noise keys, SplitMix64 over arrays);
- `numba_path` (the CPU path), `dispatch` (the numpy entry points), `threads`;
- `ground_truth` (`ego_vector`, `ground_truth_objects`); `kernels/` (numba).

Frames: the world frame is highway-env's (heading measured from +x towards +y). The ego
frame has x forward along the ego heading and y towards the ego's +heading side (world
offsets rotated by `-ego_heading`). With highway-env's screen convention (+y drawn
downwards) the ego's +y side is the driver's right.

BEV raster: ego heading points up. Row 0 is the far front (`x = +range_m`), the last row
is `x = -bev_behind_m`; column 0 is `y = -bev_half_width_m` (driver's left), the last
column `y = +bev_half_width_m` (driver's right), so the image is a top view, not a mirror
image. Pixel `(r, c)` covers the cell centred at `x = range_m - (r + 0.5) * res`,
`y = -bev_half_width_m + (c + 0.5) * res` and is on (255) when that centre lies inside
the shape, boundary included: shapes are grown by `EDGE_TOL_M` so that float32 rounding
cannot split ties (a marking exactly between two pixel centres lights both, in every row).
A pixel centre within float32 rounding (about 1e-5 m) of a grown boundary may go either
way; nothing else depends on how the shape is drawn.

Randomness: the noise of world `b`, slot or beam `k` is a pure function of that world's
64-bit keys and `k` (`noise`); with `rng=None` the sensors return the noiseless truth.
"""

from reflexdrive.envs.sensors.bev import draw_bev_noise, render_bev_torch
from reflexdrive.envs.sensors.constants import BEV_EGO, BEV_MARKINGS, BEV_ROAD, BEV_VEHICLES
from reflexdrive.envs.sensors.dispatch import cast_lidar, observe, render_bev
from reflexdrive.envs.sensors.frames import to_ego_frame
from reflexdrive.envs.sensors.ground_truth import (
    OBJECT_FIELDS,
    ego_vector,
    ground_truth_objects,
)
from reflexdrive.envs.sensors.lidar import cast_lidar_torch, draw_lidar_noise
from reflexdrive.envs.sensors.noise import (
    EPISODE_KEY,
    EpisodeNoise,
    NoiseSource,
    call_noise_keys,
    episode_noise_keys,
    noise_arrays,
    splitmix64,
    world_noise_keys,
)
from reflexdrive.envs.sensors.numba_path import KERNELS
from reflexdrive.envs.sensors.road_plan import RoadPlan, prepare_road

__all__ = [
    "BEV_EGO", "BEV_MARKINGS", "BEV_ROAD", "BEV_VEHICLES", "EPISODE_KEY", "KERNELS",
    "OBJECT_FIELDS", "EpisodeNoise", "NoiseSource", "RoadPlan", "call_noise_keys",
    "cast_lidar", "cast_lidar_torch", "draw_bev_noise", "draw_lidar_noise",
    "ego_vector", "episode_noise_keys", "ground_truth_objects", "noise_arrays", "observe",
    "prepare_road", "render_bev", "render_bev_torch", "splitmix64", "to_ego_frame",
    "world_noise_keys",
]
