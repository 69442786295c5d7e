"""Observation encoders of the end-to-end policies: raw env observations in, features out.

Inputs are the env's observations as tensors, batch first:

- `bev`: `(B, C, H, W)` uint8 raster, values 0 or 255 (default `(4, 64, 64)`: road, lane
  markings, other vehicles, ego), scaled to [0, 1] here; a float raster must already be
  in [0, 1] (what stable-baselines3 hands a features extractor with its default
  `normalize_images=True`).
- `ego`: `(B, 8)` float32 proprioception in the order of `EGO_NORMALISATION` (the envs'
  `EGO_FEATURES`), normalised here by fixed offsets and scales kept as buffers.
- `lidar` (encoders configured to read it): `(B, beams, 2)` float32, per beam the range
  [m] and the range rate [m/s] of the first vehicle hit (`range_m` and 0 for no return).
- `route` (encoders configured to read it): `(B, K, 2)` float32 route targets [m].
- `timing` (encoders configured to read it, `timing_hidden > 0`): `(B, 4)` float32, the
  observation's age [s] and the command in flight ([m/s^2], [rad], [s]) of
  `envs.clock.timing` (Real-Time RL's state augmentation), normalised by
  `TIMING_NORMALISATION` (`TimingEncoder`).
  It is the only input that carries *motion*: a single bev frame shows where the other
  vehicles are, not how fast the gap closes, so without it a stopped car and a car
  cruising at the ego's speed look alike (`LidarEncoder`).

So raw observations go straight in, in training and at inference alike. Each encoder has
`features_dim` and `forward(obs) -> (B, features_dim)`: it is what stable-baselines3
calls a features extractor (`policy.encoder` of every policy can be wrapped as one).

- `ConvEncoder`: strided 3x3 convolutions on the bev (the spatial map flattened, so
  *where* a vehicle is stays in the features), fused with an MLP on the ego vector and,
  when configured, the `LidarEncoder`'s features.
- `PatchEncoder`: ViT-style: the bev cut into `p x p` patches, each linearly embedded,
  plus a learned positional embedding, an `ego` token, a `lidar` token (when configured)
  and a `cls` token, then pre-norm
  `nn.TransformerEncoderLayer`s (run by `encoder_layer`: the last one for the `cls` token
  alone); the features are the `cls` token's output.
  `attention(obs)` also returns the last layer's attention of `cls` over the patches.

Torch only: this module imports neither `envs` nor `agents`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from reflexdrive.common.validation import (
    ConfigError,
    boolean,
    count,
    number_tuple,
    validate_fields,
)

Observation = Mapping[str, torch.Tensor]
"""`{"bev": (B, C, H, W) uint8 or float in [0, 1], "ego": (B, 8) float, "lidar": (B, beams,
2) float, "route": (B, K, 2) float, "timing": (B, 4) float}` (`lidar`, `route`, `timing` only
for encoders that read them; extra keys ignored)."""

EGO_NORMALISATION: dict[str, tuple[float, float]] = {
    "speed_mps": (20.0, 10.0),          # highway speeds 10-30 m/s -> [-1, 1]
    "acceleration_mps2": (0.0, 4.0),    # command bounds [-8, 4] m/s^2 -> [-2, 1]
    "steering_rad": (0.0, 0.1),         # lane keeping and lane changes stay within 0.1 rad
    "lane_offset_m": (0.0, 2.0),        # half a 4 m lane -> [-1, 1]
    "heading_error_rad": (0.0, 0.1),
    "lane_index": (1.5, 1.5),           # lanes 0..3 -> [-1, 1]
    "lane_count": (4.0, 2.0),
    "on_road": (0.5, 0.5),              # 0 / 1 -> -1 / 1
}
"""`(offset, scale)` per ego feature, in the envs' `EGO_FEATURES` order (a test pins the
order): the encoders feed `(ego - offset) / scale`, clamped to `[-EGO_CLAMP, EGO_CLAMP]`."""

EGO_CLAMP = 10.0
"""Bound of the normalised ego features (an absurd input cannot blow up the features)."""

LIDAR_RANGE_SCALE_M = 50.0
"""Ranges are fed as closeness `1 - range / LIDAR_RANGE_SCALE_M`, clamped to [0, 1] [m]."""
LIDAR_RATE_SCALE_MPS = 10.0
"""Range rates are fed divided by this, clamped to `[-EGO_CLAMP, EGO_CLAMP]` [m/s]."""
LIDAR_MIN_RANGE_M = 1.0
"""Closing rate `max(-rate, 0) / max(range, LIDAR_MIN_RANGE_M)` (an inverse time to
collision [1/s]) is fed clamped to [0, LIDAR_MAX_CLOSING_PER_S]."""
LIDAR_MAX_CLOSING_PER_S = 5.0
ROUTE_SCALE_M = 40.0
"""Route target points (`obs["route"]`, ego frame [m]) are fed divided by this (the farthest
target, `envs.road_map.ROUTE_TARGETS_M[-1]`), clamped to `[-EGO_CLAMP, EGO_CLAMP]`."""


TIMING_NORMALISATION: dict[str, tuple[float, float]] = {
    "latency_s": (0.0, 0.1),                  # a tick: 0-300 ms extra -> [0, 3]
    "pending_acceleration_mps2": (0.0, 4.0),  # as the ego's acceleration
    "pending_steering_rad": (0.0, 0.1),       # as the ego's steering
    "pending_in_s": (0.0, 0.1),
}
"""`(offset, scale)` per entry of `obs["timing"]`, in the order of
`envs.clock.timing.TIMING_FEATURES` (a test pins it): fed `(timing - offset) / scale`,
clamped to `[-EGO_CLAMP, EGO_CLAMP]`."""


def check_obs_spec(obs_spec: Any, lidar: bool = False, route: bool = False,
                   timing: bool = False) -> dict[str, dict[str, Any]]:
    """The entries of an observation spec that a policy reads, validated.

    Args:
        obs_spec: `{"bev": {"shape": [C, H, W], "dtype": "uint8"}, "ego": {"shape":
            [8], "dtype": "float32"}, "lidar": {"shape": [beams, 2], "dtype":
            "float32"}, ...}` as `policies.checkpoint.observation_spec` makes it from an
            env's single observation space (other keys are ignored).
        lidar: whether the `lidar` entry is read (and so required) too.
        route: whether the `route` entry (`{"shape": [K, 2], "dtype": "float32"}`) is read
            (and so required) too.
        timing: whether the `timing` entry (`{"shape": [4], "dtype": "float32"}`) is read
            (and so required) too.

    Returns:
        `{"bev": {...}, "ego": {...}}` (plus `"lidar"`, `"route"`, `"timing"` when read) with
        shapes as lists of ints.

    Raises:
        ValueError: not a dict, an entry missing, or shapes / dtypes the encoders cannot
            read (bev: 3 positive dims, uint8; ego: `(8,)`, float32; lidar: `(beams, 2)`,
            float32; route: `(K, 2)`, float32; timing: `(4,)`, float32).
    """
    if not isinstance(obs_spec, Mapping):
        raise ValueError(f"obs_spec={obs_spec!r} is invalid: must be a dict like "
                         "observation_spec(env.single_observation_space.spaces)")
    expected = {"bev": (3, "uint8"), "ego": (1, "float32")}
    if lidar:
        expected["lidar"] = (2, "float32")
    if route:
        expected["route"] = (2, "float32")
    if timing:
        expected["timing"] = (1, "float32")
    checked = {}
    for key, (ndim, dtype) in expected.items():
        entry = obs_spec.get(key)
        if not isinstance(entry, Mapping) or "shape" not in entry or "dtype" not in entry:
            raise ValueError(f"obs_spec.{key}={entry!r} is invalid: this policy reads "
                             f"{', '.join(map(repr, expected))}; each needs a shape and a "
                             f"dtype (have "
                             f"{', '.join(map(str, obs_spec)) or 'nothing'})")
        shape = entry["shape"]
        if (not isinstance(shape, (list, tuple)) or len(shape) != ndim
                or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                           for n in shape)):
            raise ValueError(f"obs_spec.{key}.shape={shape!r} is invalid: must be "
                             f"{ndim} positive integers")
        if entry["dtype"] != dtype:
            raise ValueError(f"obs_spec.{key}.dtype={entry['dtype']!r} is invalid: "
                             f"allowed values are {dtype}")
        checked[key] = {"shape": [int(n) for n in shape], "dtype": dtype}
    if checked["ego"]["shape"] != [len(EGO_NORMALISATION)]:
        raise ValueError(f"obs_spec.ego.shape={checked['ego']['shape']!r} is invalid: must be "
                         f"[{len(EGO_NORMALISATION)}] (" + ", ".join(EGO_NORMALISATION) + ")")
    if lidar and checked["lidar"]["shape"][1] != 2:
        raise ValueError(f"obs_spec.lidar.shape={checked['lidar']['shape']!r} is invalid: "
                         "must be [beams, 2] (range, range rate)")
    if route and checked["route"]["shape"][1] != 2:
        raise ValueError(f"obs_spec.route.shape={checked['route']['shape']!r} is invalid: "
                         "must be [targets, 2] (x, y in the ego frame)")
    if timing and checked["timing"]["shape"] != [len(TIMING_NORMALISATION)]:
        raise ValueError(f"obs_spec.timing.shape={checked['timing']['shape']!r} is invalid: "
                         f"must be [{len(TIMING_NORMALISATION)}] ("
                         + ", ".join(TIMING_NORMALISATION) + ")")
    return checked


class EgoNormaliser(nn.Module):
    """`(ego - offset) / scale`, clamped: `(B, 8)` raw -> `(B, 8)` float32 near [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        offset, scale = zip(*EGO_NORMALISATION.values())
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, ego: torch.Tensor) -> torch.Tensor:
        x = (ego.float() - self.offset) / self.scale
        return x.clamp(-EGO_CLAMP, EGO_CLAMP)


ROW_CHUNK = 64
"""Rows per encoder call in `in_row_chunks`."""


def in_row_chunks(encode: Callable[[Observation], torch.Tensor], obs: Observation
                  ) -> torch.Tensor:
    """`encode(obs)` over `ROW_CHUNK` rows at a time, concatenated: `(B, features)`.

    On a CPU a batch of hundreds of rows runs out of cache: per row, 512 rows at once cost
    about 1.7x what 64-row chunks do, for the convolutions and for the transformer
    layers alike (one thread; `scripts/bench_compare.py` measures the whole cell). Each
    row's features depend on that row only, so the chunks give the same rows.
    """
    rows = next(iter(obs.values())).shape[0]
    if rows <= ROW_CHUNK:
        return encode(obs)
    return torch.cat([encode({name: value[start:start + ROW_CHUNK]
                              for name, value in obs.items()})
                      for start in range(0, rows, ROW_CHUNK)])


def bev_to_float(bev: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """A uint8 raster `(B, C, H, W)` (0..255) to float32 in [0, 1]; a float raster is taken
    as is.

    `channels_last`: the result in channels-last memory (NHWC, what `ConvEncoder`'s
    convolutions read). It is filled one channel at a time, each a strided copy that also
    converts to float: torch's generic channels-last copy of a few uint8 channels is the
    slow path (the values are the same either way).
    """
    if not channels_last:
        return bev.float() * (1.0 / 255.0) if bev.dtype == torch.uint8 else bev.float()
    batch, channels, height, width = bev.shape
    out = torch.empty((batch, height, width, channels), dtype=torch.float32, device=bev.device)
    for channel in range(channels):
        out[..., channel] = bev[:, channel]
    out = out.permute(0, 3, 1, 2)                      # (B, C, H, W) view, NHWC memory
    return out.mul_(1.0 / 255.0) if bev.dtype == torch.uint8 else out


def _check_inputs(obs: Observation, bev_shape: tuple[int, ...], ego_dim: int,
                  lidar_shape: tuple[int, ...] | None = None,
                  route_shape: tuple[int, ...] | None = None,
                  timing_shape: tuple[int, ...] | None = None) -> None:
    shapes = {"lidar": lidar_shape, "route": route_shape, "timing": timing_shape}
    keys = ("bev", "ego") + tuple(key for key, shape in shapes.items() if shape is not None)
    for key in keys:
        if key not in obs:
            raise ValueError(f"observation {key!r} is missing (have {', '.join(obs)})")
    bev, ego = obs["bev"], obs["ego"]
    if bev.ndim != 4 or tuple(bev.shape[1:]) != bev_shape:
        raise ValueError(f"bev must be (B, {', '.join(map(str, bev_shape))}), got "
                         f"{tuple(bev.shape)}")
    if ego.ndim != 2 or ego.shape[1] != ego_dim or ego.shape[0] != bev.shape[0]:
        raise ValueError(f"ego must be ({bev.shape[0]}, {ego_dim}), got {tuple(ego.shape)}")
    for key in keys[2:]:
        value, shape = obs[key], shapes[key]
        if (value.ndim != 1 + len(shape) or tuple(value.shape[1:]) != shape
                or value.shape[0] != bev.shape[0]):
            raise ValueError(f"{key} must be ({bev.shape[0]}, "
                             f"{', '.join(map(str, shape))}), got {tuple(value.shape)}")


def lidar_inputs(lidar: torch.Tensor) -> torch.Tensor:
    """Lidar returns `(B, beams, 2)` [m, m/s] to network inputs `(B, beams * 3)` float32.

    Per beam: closeness `1 - range / LIDAR_RANGE_SCALE_M` in [0, 1] (0: nothing near),
    range rate / `LIDAR_RATE_SCALE_MPS`, and the closing rate `max(-rate, 0) / range`
    [1/s] (an inverse time to collision: large when a gap closes fast relative to its
    size, the cue for braking), each clamped so that an absurd input stays bounded.
    """
    lidar = lidar.float()
    distance, rate = lidar[..., 0], lidar[..., 1]
    closeness = (1.0 - distance / LIDAR_RANGE_SCALE_M).clamp(0.0, 1.0)
    scaled_rate = (rate / LIDAR_RATE_SCALE_MPS).clamp(-EGO_CLAMP, EGO_CLAMP)
    closing = ((-rate).clamp(min=0.0) / distance.clamp(min=LIDAR_MIN_RANGE_M)
               ).clamp(0.0, LIDAR_MAX_CLOSING_PER_S)
    return torch.stack([closeness, scaled_rate, closing], dim=-1).flatten(1)


class LidarEncoder(nn.Module):
    """`(B, beams, 2)` lidar returns -> `(B, hidden)`: `lidar_inputs`, then a two-layer MLP.

    An MLP over all beams at once (beam `i` always looks at angle `2 pi i / beams`, so
    which beam sees a return is where the vehicle is).
    """

    def __init__(self, beams: int, hidden: int):
        super().__init__()
        self.beams = beams
        self.mlp = nn.Sequential(nn.Linear(3 * beams, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True))

    def forward(self, lidar: torch.Tensor) -> torch.Tensor:
        return self.mlp(lidar_inputs(lidar))


class RouteEncoder(nn.Module):
    """`(B, K, 2)` route target points [m] -> `(B, hidden)`: the points divided by
    `ROUTE_SCALE_M` and clamped, flattened, then a two-layer MLP."""

    def __init__(self, targets: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * targets, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True))

    def forward(self, route: torch.Tensor) -> torch.Tensor:
        scaled = (route.float() / ROUTE_SCALE_M).clamp(-EGO_CLAMP, EGO_CLAMP)
        return self.mlp(scaled.flatten(1))


TIMING_COMMAND_FEATURES = ("pending_acceleration_mps2", "pending_steering_rad")
"""The entries of `obs["timing"]` that carry the command in flight (with a sequential
clock: the policy's own last command)."""


class TimingEncoder(nn.Module):
    """`(B, 4)` `obs["timing"]` -> `(B, hidden)`: normalised by `TIMING_NORMALISATION` and
    clamped, then a two-layer MLP.

    `command=False` feeds zeros for `TIMING_COMMAND_FEATURES`: the MLP reads only how old
    the observation is (`latency_s`, `pending_in_s`). With a sequential clock the command
    in flight is the policy's own last command, and a policy fine-tuned on it learns to
    repeat it (inertia: it brakes late), the copycat problem imitation meets with its
    command inputs (`--command-inputs shuffle`)."""

    def __init__(self, hidden: int, command: bool = True):
        super().__init__()
        offset, scale = zip(*TIMING_NORMALISATION.values())
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        read = [command or name not in TIMING_COMMAND_FEATURES for name in TIMING_NORMALISATION]
        self.register_buffer("read", torch.tensor(read, dtype=torch.float32), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(len(offset), hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True))

    def forward(self, timing: torch.Tensor) -> torch.Tensor:
        x = ((timing.float() - self.offset) / self.scale).clamp(-EGO_CLAMP, EGO_CLAMP)
        return self.mlp(x * self.read)


TIMING_HIDDEN_HELP = ("width of the TimingEncoder on obs['timing'] (the observation's age and "
                      "the command in flight; 0: the encoder does not read it, as the "
                      "checkpoints written before it existed)")

ROUTE_HIDDEN_HELP = ("width of the RouteEncoder on obs['route'] (0: the encoder does not read "
                     "the route, as the checkpoints written before it existed)")


# ----------------------------------------------------------------------------- freezing


class FreezableEncoder(nn.Module):
    """What PPO's frozen encoder needs of an encoder (`reflexdrive.train.sb3_adapters`):
    the features split into a part computed once per env step without gradients and a
    part that keeps training.

    `features(obs) == finish_features(frozen_features(obs))`, with the same arithmetic in
    the same order. By default everything is frozen: `frozen_features` is `forward`,
    `finish_features` the identity and `unfrozen_parameters` empty. `ConvEncoder` reading
    `obs["timing"]` overrides it: a timing pathway added to an imitation checkpoint for a
    latency-in-the-loop fine-tune (`policies.registry.with_timing`) starts with zero
    weight and must train, so its `TimingEncoder` and the fusion weights from it stay
    unfrozen; every weight that reads the perception stays the imitation's.
    """

    features_dim: int

    @property
    def frozen_width(self) -> int:
        """Width of `frozen_features`' rows."""
        return self.features_dim

    def frozen_features(self, obs: Observation) -> torch.Tensor:
        """`(B, frozen_width)`: what a frozen encoder computes once per env step."""
        return self(obs)

    def finish_features(self, frozen: torch.Tensor) -> torch.Tensor:
        """`(B, frozen_width)` -> `(B, features_dim)` through the unfrozen parameters."""
        return frozen

    def freeze(self) -> None:
        """Stop the gradients into every parameter but `unfrozen_parameters`."""
        self.requires_grad_(False)

    def unfrozen_parameters(self) -> list[nn.Parameter]:
        """Parameters that keep training while the rest of the encoder is frozen."""
        return []


# ----------------------------------------------------------------------------- CNN


@dataclass(frozen=True)
class ConvEncoderConfig:
    """`ConvEncoder`'s architecture (validated on construction; errors name the field as
    `encoder.<field>`).

    `channels` are the output channels of the 3x3 stride-2 convolutions, one entry per
    layer (each layer halves the raster, rounding up): 64x64 -> 4x4 with four layers.
    `features` is `features_dim`, the width of the fused features (bev, ego, lidar, route and
    timing concatenated, then a linear layer, LayerNorm, ReLU).
    """

    channels: tuple[int, ...] = number_tuple(
        (32, 64, 64, 64), low=1, integers=True, max_length=6,
        help="output channels of the stride-2 convolutions, one entry per layer (1 to 6)")
    bev_features: int = count(256, help="width of the linear layer on the flattened conv map")
    ego_hidden: int = count(64, help="width of the two-layer MLP on the normalised ego vector")
    features: int = count(256, help="features_dim: width of the fused features")
    lidar_hidden: int = count(
        64, low=0, help="width of the LidarEncoder (0: the encoder does not read the lidar, "
                        "as the checkpoints written before it existed)")
    route_hidden: int = count(0, low=0, help=ROUTE_HIDDEN_HELP)
    timing_hidden: int = count(0, low=0, help=TIMING_HIDDEN_HELP)
    timing_command: bool = boolean(
        True, help="the TimingEncoder reads the command in flight too (False: only the "
                   "observation's age, latency_s and pending_in_s)")

    @property
    def uses_lidar(self) -> bool:
        """Whether the encoder reads the `lidar` observation."""
        return self.lidar_hidden > 0

    @property
    def uses_route(self) -> bool:
        """Whether the encoder reads the `route` observation."""
        return self.route_hidden > 0

    @property
    def uses_timing(self) -> bool:
        """Whether the encoder reads the `timing` observation."""
        return self.timing_hidden > 0

    def __post_init__(self) -> None:
        if isinstance(self.channels, list):
            object.__setattr__(self, "channels", tuple(self.channels))
        validate_fields(self, "encoder.")


class ConvEncoder(FreezableEncoder):
    """bev through strided convolutions, ego through an MLP, fused: `(B, features_dim)`.

    Layers: `len(channels)` x [3x3 conv stride 2 padding 1, ReLU] -> flatten -> linear
    `bev_features`, ReLU; ego: normalise -> linear `ego_hidden`, ReLU -> linear
    `ego_hidden`, ReLU; lidar (if `lidar_hidden`): `LidarEncoder`; route (if
    `route_hidden`): `RouteEncoder`; timing (if `timing_hidden`): `TimingEncoder`; all
    concatenated ->
    linear `features`, LayerNorm, ReLU.
    """

    def __init__(self, config: ConvEncoderConfig, obs_spec: Mapping[str, Any]):
        super().__init__()
        spec = check_obs_spec(obs_spec, lidar=config.uses_lidar, route=config.uses_route,
                              timing=config.uses_timing)
        self.config = config
        self.bev_shape = tuple(spec["bev"]["shape"])
        self.ego_dim = spec["ego"]["shape"][0]
        self.lidar_shape = tuple(spec["lidar"]["shape"]) if config.uses_lidar else None
        self.route_shape = tuple(spec["route"]["shape"]) if config.uses_route else None
        self.timing_shape = tuple(spec["timing"]["shape"]) if config.uses_timing else None
        c, h, w = self.bev_shape
        layers: list[nn.Module] = []
        for out in config.channels:
            layers += [nn.Conv2d(c, out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            c, h, w = out, (h + 1) // 2, (w + 1) // 2
        self.conv = nn.Sequential(*layers, nn.Flatten(),
                                  nn.Linear(c * h * w, config.bev_features),
                                  nn.ReLU(inplace=True))
        # channels-last (NHWC) convolutions: oneDNN's fast path on CPU (about twice the
        # rows per second of NCHW at batch 128, one thread) and the tensor-core layout on
        # GPU. The weights keep their shapes; checkpoints load unchanged.
        self.conv.to(memory_format=torch.channels_last)
        self.normalise_ego = EgoNormaliser()
        self.ego = nn.Sequential(nn.Linear(self.ego_dim, config.ego_hidden), nn.ReLU(inplace=True),
                                 nn.Linear(config.ego_hidden, config.ego_hidden),
                                 nn.ReLU(inplace=True))
        self.lidar = (LidarEncoder(self.lidar_shape[0], config.lidar_hidden)
                      if self.lidar_shape is not None else None)
        self.route = (RouteEncoder(self.route_shape[0], config.route_hidden)
                      if self.route_shape is not None else None)
        self.timing = (TimingEncoder(config.timing_hidden, command=config.timing_command)
                       if self.timing_shape is not None else None)
        self.fuse = nn.Sequential(nn.Linear(self.perception_width + config.timing_hidden,
                                            config.features),
                                  nn.LayerNorm(config.features), nn.ReLU(inplace=True))
        self.features_dim = config.features

    def forward(self, obs: Observation) -> torch.Tensor:
        _check_inputs(obs, self.bev_shape, self.ego_dim, self.lidar_shape, self.route_shape,
                      self.timing_shape)
        return in_row_chunks(self._features, obs)

    def _features(self, obs: Observation) -> torch.Tensor:
        parts = self._perception(obs)
        if self.timing is not None:
            parts.append(self.timing(obs["timing"]))
        return self.fuse(torch.cat(parts, dim=1))

    def _perception(self, obs: Observation) -> list[torch.Tensor]:
        """The per-input features before the fusion, timing aside: bev, ego, (lidar),
        (route), each `(B, width)`."""
        bev = bev_to_float(obs["bev"], channels_last=True)
        parts = [self.conv(bev), self.ego(self.normalise_ego(obs["ego"]))]
        if self.lidar is not None:
            parts.append(self.lidar(obs["lidar"]))
        if self.route is not None:
            parts.append(self.route(obs["route"]))
        return parts

    @property
    def perception_width(self) -> int:
        """Width of the perception features fused with the timing's: bev, ego, lidar,
        route."""
        config = self.config
        return (config.bev_features + config.ego_hidden + config.lidar_hidden
                + config.route_hidden)

    @property
    def frozen_width(self) -> int:
        """`features_dim`; reading timing: the perception features and the raw timing
        `perception_width + 4`."""
        if self.timing is None:
            return self.features_dim
        return self.perception_width + len(TIMING_NORMALISATION)

    def frozen_features(self, obs: Observation) -> torch.Tensor:
        """The features; reading timing: `[perception features, raw obs["timing"]]`, so
        that the timing pathway and the fusion can train on them (`finish_features`)."""
        if self.timing is None:
            return self(obs)
        _check_inputs(obs, self.bev_shape, self.ego_dim, self.lidar_shape, self.route_shape,
                      self.timing_shape)
        return in_row_chunks(lambda chunk: torch.cat(
            [*self._perception(chunk), chunk["timing"].float()], dim=1), obs)

    def finish_features(self, frozen: torch.Tensor) -> torch.Tensor:
        """`frozen_features`' rows to the features: reading timing, the `TimingEncoder`
        on the raw timing and the fusion (the same arithmetic as `forward`)."""
        if self.timing is None:
            return frozen
        width = self.perception_width
        return self.fuse(torch.cat([frozen[:, :width], self.timing(frozen[:, width:])], dim=1))

    def freeze(self) -> None:
        """Reading timing, the `TimingEncoder` and the fusion layer's weight keep training,
        the latter only in its columns from the timing features: a gradient hook zeroes
        the others (Adam then never moves them), and the fusion's bias and LayerNorm stay
        frozen, so everything that reads the perception keeps the imitation's weights."""
        super().freeze()
        if self.timing is None:
            return
        self.timing.requires_grad_(True)
        weight = self.fuse[0].weight
        weight.requires_grad_(True)
        if not getattr(weight, "_timing_columns_only", False):
            mask = torch.zeros_like(weight)
            mask[:, self.perception_width:] = 1.0
            weight.register_hook(lambda grad: grad * mask.to(grad.device))
            weight._timing_columns_only = True

    def unfrozen_parameters(self) -> list[nn.Parameter]:
        """Reading timing: the `TimingEncoder`'s and the fusion layer's weight (`freeze`)."""
        if self.timing is None:
            return []
        return [*self.timing.parameters(), self.fuse[0].weight]


# ----------------------------------------------------------------------------- ViT


@dataclass(frozen=True)
class PatchEncoderConfig:
    """`PatchEncoder`'s architecture (validated on construction; errors name the field as
    `encoder.<field>`).

    `patch_size` must divide the bev's `H` and `W` (64 x 64 with `p = 8`: 64 patch
    tokens); `heads` must divide `d_model`.
    """

    patch_size: int = count(8, help="side p of the square bev patches [px]")
    d_model: int = count(64, help="token width")
    heads: int = count(4, help="attention heads; must divide d_model")
    layers: int = count(2, help="nn.TransformerEncoderLayers (pre-norm, GELU, no dropout)")
    feedforward: int = count(128, help="hidden width of each layer's MLP")
    lidar: bool = boolean(
        True, help="add a lidar token (a LidarEncoder of width d_model, then a linear layer); "
                   "False: the encoder does not read the lidar, as the checkpoints written "
                   "before it existed")
    route_hidden: int = count(
        0, low=0, help="width of the RouteEncoder of a route token (then a linear layer to "
                       "d_model); 0: the encoder does not read the route, as the checkpoints "
                       "written before it existed")
    timing_hidden: int = count(
        0, low=0, help="width of the TimingEncoder of a timing token (then a linear layer to "
                       "d_model); 0: the encoder does not read obs['timing'], as the "
                       "checkpoints written before it existed")

    @property
    def uses_lidar(self) -> bool:
        """Whether the encoder reads the `lidar` observation."""
        return self.lidar

    @property
    def uses_route(self) -> bool:
        """Whether the encoder reads the `route` observation."""
        return self.route_hidden > 0

    @property
    def uses_timing(self) -> bool:
        """Whether the encoder reads the `timing` observation."""
        return self.timing_hidden > 0

    def __post_init__(self) -> None:
        validate_fields(self, "encoder.")
        if self.d_model % self.heads:
            raise ConfigError("encoder.heads", self.heads,
                              f"must divide encoder.d_model={self.d_model}")


def encoder_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor,
                  queries: int | None = None) -> torch.Tensor:
    """A pre-norm `nn.TransformerEncoderLayer` (no dropout) on `x` `(B, T, d)`: the same
    function as `layer(x)`, to float rounding, with two savings.

    - All tokens (`queries` None): attention is `scaled_dot_product_attention` on the
      layer's own projections (one fused kernel, where the layer's eval fast path runs a
      matmul, a softmax and another matmul).
    - `queries`: only the first `queries` tokens' outputs `(B, queries, d)` are computed.
      Every token still serves as a key and a value, but the query projection, the
      attention rows, the output projection and the MLP run for those tokens only: the
      encoder's last layer needs the `cls` token alone, which saves most of that layer.
      Their attention is `softmax(q k^T / sqrt(d / heads)) v` as matrix products: the
      fused kernel splits so short a query block over the threads along the keys, which
      would make a row's last bits depend on where in the batch it sits.
    """
    attention = layer.self_attn
    batch, tokens, width = x.shape
    heads = attention.num_heads
    normed = layer.norm1(x)
    weight, bias = attention.in_proj_weight, attention.in_proj_bias
    if queries is None:
        rows = tokens
        qkv = F.linear(normed, weight, bias).view(batch, tokens, 3, heads, width // heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)                # (B, heads, T, d/heads)
        mixed = F.scaled_dot_product_attention(query, key, value)
    else:
        rows = queries
        kv = F.linear(normed, weight[width:], bias[width:])
        key, value = kv.view(batch, tokens, 2, heads, width // heads).permute(2, 0, 3, 1, 4)
        query = F.linear(normed[:, :rows], weight[:width], bias[:width]
                         ).view(batch, rows, heads, width // heads).transpose(1, 2)
        scores = (query * (width // heads) ** -0.5) @ key.transpose(-2, -1)
        mixed = scores.softmax(dim=-1) @ value                      # (B, heads, rows, d/heads)
        x = x[:, :rows]
    x = x + attention.out_proj(mixed.transpose(1, 2).reshape(batch, rows, width))
    return x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))


CLS, EGO_TOKEN, LIDAR_TOKEN = 0, 1, 2
"""Token indices of the `cls`, `ego` and (when read) `lidar` tokens; the `route` and `timing`
tokens (when read) follow them, then the patch tokens, row-major
(`PatchEncoder.first_patch`)."""


class PatchEncoder(FreezableEncoder):
    """ViT-style encoder: `(B, features_dim = d_model)`, the `cls` token's output.

    Tokens: `[cls, ego, (lidar,) (route,) (timing,) patch_0 .. patch_{n-1}]`, patches
    row-major over the raster (row 0 is the far front). Patch embedding: a `p x p`
    stride-`p` convolution (a linear map of each flattened patch); learned positional
    embeddings for every token; the ego token is an MLP of the normalised ego vector, the
    lidar token a `LidarEncoder` followed by a linear layer, the route token a
    `RouteEncoder` of width `route_hidden` followed by a linear layer, the timing token a
    `TimingEncoder` of width `timing_hidden` followed by a linear layer.
    A final LayerNorm follows the layers.
    """

    def __init__(self, config: PatchEncoderConfig, obs_spec: Mapping[str, Any]):
        super().__init__()
        spec = check_obs_spec(obs_spec, lidar=config.uses_lidar, route=config.uses_route,
                              timing=config.uses_timing)
        self.config = config
        self.bev_shape = tuple(spec["bev"]["shape"])
        self.ego_dim = spec["ego"]["shape"][0]
        self.lidar_shape = tuple(spec["lidar"]["shape"]) if config.uses_lidar else None
        self.route_shape = tuple(spec["route"]["shape"]) if config.uses_route else None
        self.timing_shape = tuple(spec["timing"]["shape"]) if config.uses_timing else None
        self.first_patch = (2 + int(config.uses_lidar) + int(config.uses_route)
                            + int(config.uses_timing))
        c, h, w = self.bev_shape
        p, d = config.patch_size, config.d_model
        if h % p or w % p:
            divisors = [n for n in range(1, min(h, w) + 1) if h % n == 0 and w % n == 0]
            raise ConfigError("encoder.patch_size", p, f"must divide the bev's {h} x {w} px; "
                              "allowed values are " + ", ".join(map(str, divisors)))
        self.grid = (h // p, w // p)
        tokens = self.first_patch + self.grid[0] * self.grid[1]
        self.patch = nn.Conv2d(c, d, p, stride=p)
        self.normalise_ego = EgoNormaliser()
        self.ego = nn.Sequential(nn.Linear(self.ego_dim, d), nn.GELU(), nn.Linear(d, d))
        self.lidar = (nn.Sequential(LidarEncoder(self.lidar_shape[0], d), nn.Linear(d, d))
                      if self.lidar_shape is not None else None)
        self.route = (nn.Sequential(RouteEncoder(self.route_shape[0], config.route_hidden),
                                    nn.Linear(config.route_hidden, d))
                      if self.route_shape is not None else None)
        self.timing = (nn.Sequential(TimingEncoder(config.timing_hidden),
                                     nn.Linear(config.timing_hidden, d))
                       if self.timing_shape is not None else None)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.position = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, config.heads, config.feedforward, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(config.layers))
        self.norm = nn.LayerNorm(d)
        self.features_dim = d

    def tokens(self, obs: Observation) -> torch.Tensor:
        """The input tokens `(B, first_patch + n_patches, d_model)`, positions added."""
        _check_inputs(obs, self.bev_shape, self.ego_dim, self.lidar_shape, self.route_shape,
                      self.timing_shape)
        patches = self.patch(bev_to_float(obs["bev"])).flatten(2).transpose(1, 2)
        ego = self.ego(self.normalise_ego(obs["ego"])).unsqueeze(1)
        cls = self.cls.expand(patches.shape[0], -1, -1)
        tokens = [cls, ego]
        if self.lidar is not None:
            tokens.append(self.lidar(obs["lidar"]).unsqueeze(1))
        if self.route is not None:
            tokens.append(self.route(obs["route"]).unsqueeze(1))
        if self.timing is not None:
            tokens.append(self.timing(obs["timing"]).unsqueeze(1))
        return torch.cat([*tokens, patches], dim=1) + self.position

    def forward(self, obs: Observation) -> torch.Tensor:
        return in_row_chunks(self._features, obs)

    def _features(self, obs: Observation) -> torch.Tensor:
        x = self.tokens(obs)
        for layer in self.layers[:-1]:
            x = encoder_layer(layer, x)
        return self.norm(encoder_layer(self.layers[-1], x, queries=CLS + 1)[:, CLS])

    def attention(self, obs: Observation) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and the last layer's attention of `cls` over the patches.

        The weights are those the last layer uses (its own attention module on its own
        normalised input, recomputed with `need_weights=True`), averaged over heads; the
        features are `forward`'s, bit for bit.

        Returns:
            `(features (B, d_model), attention (B, H / p, W / p))`: the share of the
            `cls` token's attention on each patch, in [0, 1]; the rest (summing to 1)
            goes to the `cls`, `ego` and `lidar` tokens.
        """
        x = self.tokens(obs)
        for layer in self.layers[:-1]:
            x = encoder_layer(layer, x)
        last = self.layers[-1]
        query = last.norm1(x)
        _, weights = last.self_attn(query, query, query, need_weights=True,
                                    average_attn_weights=True)         # (B, tokens, tokens)
        features = self.norm(encoder_layer(last, x, queries=CLS + 1)[:, CLS])
        attention = weights[:, CLS, self.first_patch:].float().reshape(-1, *self.grid)
        return features, attention
