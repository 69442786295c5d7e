"""A small CenterNet-style vehicle detector on the bird's-eye raster (`bev`).

What: `CenterNetDetector` maps a batch of rasters `(B, C, H, W)` to four dense maps at
output stride `s` (`h = H / s`, `w = W / s` cells): a heatmap of vehicle centres, the
sub-cell offset of each centre, the vehicle's size (length, width) and heading (sin, cos).
`decode` turns those maps into at most `K` metric boxes per raster in the ego frame
(peaks of the heatmap via a 3x3 max-pool, a score threshold, top-K); `encode_targets` is
its inverse for labels, `detector_loss` the training loss (CenterNet's focal loss on the
heatmap, L1 on the rest at the labelled centre cells).

Why this shape: vehicles in the raster are small axis-aligned-ish blobs (5 x 2 px at 1
m/px), so a centre heatmap with a regressed offset localises them to a fraction of a
pixel without anchors or box NMS, and a stride-2 output keeps two cars in adjacent lanes
(4 m apart, 2 cells) on separate peaks. The network is tiny (a pixel-unshuffle stem and a
few residual 3x3 convolutions with growing dilation, receptive field ~34 px), so it runs
in about a millisecond per raster on one CPU core and trains on a laptop CPU in minutes.

Raster conventions (envs/sensors.py): ego heading up; pixel `(r, c)` is the cell centred
at `x = range_m - (r + 0.5) * m_per_px`, `y = -half_width_m + (c + 0.5) * m_per_px` in
the ego frame (x forward, y to the ego's +heading side). Continuous raster coordinates
`(u, v)` [px] put pixel `r` on `[r, r + 1)`, so `x = range_m - u * m_per_px` and
`y = -half_width_m + v * m_per_px`. Output cell `(i, j)` covers pixels `[i s, (i + 1) s)`
and its centre is `u = (i + 0.5) s`; the offset head predicts `(du, dv)` [px] from that
centre to the vehicle's centre. A vehicle whose centre lies outside the raster (partly
visible at an edge) is assigned the nearest edge cell and the offset carries the rest.

This module is torch only (no envs, no agents); checkpoints go through
`policies.checkpoint`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch
import torch.nn.functional as F
from reflexdrive.policies.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from torch import nn

from reflexdrive.common.validation import ConfigError, choice, count, real, validate_fields

KIND = "detector"
"""Checkpoint kind of detectors."""

SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "detector.pt"
"""The trained detector shipped with the package (see README / `reflexdrive train`)."""

BOX_FIELDS = ("x_m", "y_m", "length_m", "width_m", "heading_rad")
"""Columns of a label box: centre in the ego frame [m], length, width [m], heading
relative to the ego [rad]."""


@dataclass(frozen=True)
class RasterGeometry:
    """Where the raster lies in the ego frame (envs' `SensorConfig` bev fields); each extent
    a whole number of pixels. Row 0 is centred at `range_m - m_per_px / 2`. Validated on
    construction; errors name the field as `geometry.<field>`."""

    range_m: float = real(48.0, low=0.0, help="extent ahead of the ego [m]")
    behind_m: float = real(16.0, low=0.0, help="extent behind the ego [m]")
    half_width_m: float = real(32.0, low=0.0, help="extent to each side [m]")
    m_per_px: float = real(1.0, low=0.0, low_inclusive=False, help="resolution [m/px]")

    def __post_init__(self) -> None:
        validate_fields(self, "geometry.")
        for name in ("range_m", "behind_m", "half_width_m"):
            value = getattr(self, name)
            pixels = value / self.m_per_px
            if abs(pixels - round(pixels)) > 1e-9:
                raise ConfigError(f"geometry.{name}", value,
                                  f"must be a whole number of {self.m_per_px} m pixels")
        if self.height < 1 or self.width < 1:
            raise ConfigError("geometry", f"{self.height} x {self.width} px",
                              "the raster must have at least one pixel")

    @property
    def height(self) -> int:
        """`H` [px]."""
        return round((self.range_m + self.behind_m) / self.m_per_px)

    @property
    def width(self) -> int:
        """`W` [px]."""
        return round(2 * self.half_width_m / self.m_per_px)

    def to_metric(self, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous raster coordinates `(u, v)` [px] to ego-frame `(x, y)` [m]."""
        return self.range_m - u * self.m_per_px, v * self.m_per_px - self.half_width_m

    def to_raster(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ego-frame `(x, y)` [m] to continuous raster coordinates `(u, v)` [px]."""
        return (self.range_m - x) / self.m_per_px, (y + self.half_width_m) / self.m_per_px


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture and decoding defaults of `CenterNetDetector` (validated on
    construction; `geometry` may be given as a dict of its fields).

    The raster's height and width must be multiples of `stride`; residual block `k` has
    dilation `2 ** (k % 3)`; the heatmap target's Gaussian std is a quarter of the box's
    extent along each raster axis, at least `min_sigma_cells`.
    """

    in_channels: int = count(4, help="raster channels C (4: road, markings, vehicles, ego)")
    channels: int = count(24, help="feature width of the trunk")
    stride: int = choice(2, choices=(1, 2, 4), help="output stride s")
    blocks: int = count(3, low=0, help="residual 3x3 blocks after the stem")
    geometry: RasterGeometry = field(default_factory=RasterGeometry)
    """The raster the detector reads (decoding to metres depends on it)."""
    score_threshold: float = real(
        0.3, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False,
        help="default minimum heatmap score of a detection")
    max_detections: int = count(32, help="K, detections returned per raster (top-K peaks)")
    min_sigma_cells: float = real(
        0.5, low=0.0, low_inclusive=False,
        help="floor of the heatmap target's Gaussian std [cells]")

    def __post_init__(self) -> None:
        if isinstance(self.geometry, Mapping):
            object.__setattr__(self, "geometry", RasterGeometry(**self.geometry))
        validate_fields(self)
        g = self.geometry
        if g.height % self.stride or g.width % self.stride:
            raise ConfigError("stride", self.stride,
                              f"must divide the raster's {g.height} x {g.width} px")

    @property
    def output_shape(self) -> tuple[int, int]:
        """`(h, w)` of the output maps [cells]."""
        return self.geometry.height // self.stride, self.geometry.width // self.stride

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the checkpoint's `config`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DetectorConfig":
        """Inverse of `to_dict`; unknown or invalid fields raise `ValueError`/`TypeError`."""
        data = dict(data)
        data["geometry"] = RasterGeometry(**data.get("geometry", {}))
        return cls(**data)


class DetectorOutput(NamedTuple):
    """Dense maps at output stride `s`, `(h, w)` cells.

    Attributes:
        heatmap: `(B, 1, h, w)` logits of "a vehicle centre is in this cell".
        offset: `(B, 2, h, w)` `(du, dv)` from the cell centre to the vehicle centre [px].
        size: `(B, 2, h, w)` length, width [m].
        heading: `(B, 2, h, w)` sin, cos of the heading relative to the ego (unnormalised).
    """

    heatmap: torch.Tensor
    offset: torch.Tensor
    size: torch.Tensor
    heading: torch.Tensor


class Boxes(NamedTuple):
    """Decoded detections, `K` slots per raster, padded (invalid slots are zeros).

    Attributes:
        score: `(B, K)` heatmap score in [0, 1].
        position: `(B, K, 2)` centre `(x, y)` in the ego frame [m].
        size: `(B, K, 2)` length, width [m].
        heading: `(B, K)` heading relative to the ego, in (-pi, pi] [rad].
        valid: `(B, K)` bool, score at or above the threshold.
    """

    score: torch.Tensor
    position: torch.Tensor
    size: torch.Tensor
    heading: torch.Tensor
    valid: torch.Tensor


class Targets(NamedTuple):
    """Training targets of `K` label slots per raster (`encode_targets`).

    Attributes:
        heatmap: `(B, 1, h, w)` Gaussian peaks in [0, 1], exactly 1 at each centre cell.
        index: `(B, K)` int64 flat index `i * w + j` of each label's centre cell.
        offset: `(B, K, 2)` `(du, dv)` from that cell's centre to the label's centre [px].
        size: `(B, K, 2)` length, width [m].
        heading: `(B, K, 2)` sin, cos of the heading.
        mask: `(B, K)` bool, the slot holds a label.
    """

    heatmap: torch.Tensor
    index: torch.Tensor
    offset: torch.Tensor
    size: torch.Tensor
    heading: torch.Tensor
    mask: torch.Tensor


def _conv(inputs: int, outputs: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(outputs), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation,
                              bias=False)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.norm(self.conv(x)))


HEAD_CHANNELS = (1, 2, 2, 2)
"""Output channels of the heads: heatmap, offset, size, heading."""


class CenterNetDetector(nn.Module):
    """Vehicle centres, offsets, sizes and headings from the bev raster.

    Input `(B, C, H, W)`: uint8 rasters (0/255, scaled to [0, 1] here) or floats in [0, 1].
    Output: `DetectorOutput` at stride `config.stride`. Layers: pixel-unshuffle by `s`
    (lossless), a 3x3 conv to `channels`, `blocks` residual 3x3 convs (dilations 1, 2, 4,
    ...), and one 1x1 conv for all heads.
    """

    name = "centernet"

    def __init__(self, config: DetectorConfig | None = None):
        super().__init__()
        self.config = config if config is not None else DetectorConfig()
        c, s = self.config.channels, self.config.stride
        self.stem = nn.Sequential(nn.PixelUnshuffle(s), _conv(self.config.in_channels * s * s, c))
        self.blocks = nn.Sequential(*(_Residual(c, 2 ** (k % 3))
                                      for k in range(self.config.blocks)))
        self.heads = nn.Conv2d(c, sum(HEAD_CHANNELS), 1)
        with torch.no_grad():                 # CenterNet's prior: scores start near 0.1
            self.heads.bias.zero_()
            self.heads.bias[0] = -math.log((1 - 0.1) / 0.1)

    def forward(self, bev: torch.Tensor) -> DetectorOutput:
        expected = (self.config.in_channels, self.config.geometry.height,
                    self.config.geometry.width)
        if bev.ndim != 4 or tuple(bev.shape[1:]) != expected:
            raise ValueError(f"bev must be (B, {', '.join(map(str, expected))}), got "
                             f"{tuple(bev.shape)}")
        x = bev.float() * (1.0 / 255.0) if bev.dtype == torch.uint8 else bev.float()
        out = self.heads(self.blocks(self.stem(x)))
        heat, offset, size, heading = torch.split(out, HEAD_CHANNELS, dim=1)
        return DetectorOutput(heat, offset, size, heading)


DETECTORS = {CenterNetDetector.name: CenterNetDetector}
"""Detector classes by checkpoint model name."""


# ----------------------------------------------------------------------------- decode


def decode(output: DetectorOutput, config: DetectorConfig, *,
           score_threshold: float | None = None,
           max_detections: int | None = None) -> Boxes:
    """Dense maps to at most `K` metric boxes per raster (pure, batched, no Python loops).

    A cell is a detection when its score `sigmoid(heatmap)` is the maximum of its 3x3
    neighbourhood (the max-pool "NMS"), is among the `K` best such peaks of its raster
    and reaches `score_threshold`. Its centre is the cell centre plus the predicted
    offset, converted to metres with `config.geometry` (see the module docstring).

    Args:
        output: the network's maps, `(B, ., h, w)`.
        config: stride, geometry and the defaults of the two options below.
        score_threshold: minimum score in (0, 1] (default `config.score_threshold`).
        max_detections: `K` (default `config.max_detections`).

    Returns:
        `Boxes` with `(B, K, ...)` fields, best score first; slots below the threshold are
        invalid and zero.
    """
    threshold = config.score_threshold if score_threshold is None else float(score_threshold)
    k = config.max_detections if max_detections is None else int(max_detections)
    if not 0.0 < threshold <= 1.0 or k < 1:
        raise ValueError(f"score_threshold={threshold} must lie in (0, 1] and "
                         f"max_detections={k} be >= 1")
    heat = torch.sigmoid(output.heatmap.float())
    batch, _, h, w = heat.shape
    peaks = torch.where(heat == F.max_pool2d(heat, 3, stride=1, padding=1), heat, 0.0)
    taken = min(k, h * w)
    score, index = peaks.reshape(batch, h * w).topk(taken, dim=1)      # (B, taken)
    if taken < k:                                  # pad to K slots (score 0: invalid)
        score, index = F.pad(score, (0, k - taken)), F.pad(index, (0, k - taken))
        taken = k

    def gather(maps: torch.Tensor) -> torch.Tensor:     # (B, n, h, w) -> (B, K, n)
        n = maps.shape[1]
        flat = maps.float().reshape(batch, n, h * w)
        return flat.gather(2, index.unsqueeze(1).expand(batch, n, taken)).transpose(1, 2)

    offset, size, heading = gather(output.offset), gather(output.size), gather(output.heading)
    s = float(config.stride)
    u = (torch.div(index, w, rounding_mode="floor").float() + 0.5) * s + offset[..., 0]
    v = ((index % w).float() + 0.5) * s + offset[..., 1]
    x, y = config.geometry.to_metric(u, v)
    valid = score >= threshold
    position = torch.stack([x, y], dim=-1)
    angle = torch.atan2(heading[..., 0], heading[..., 1])
    return Boxes(torch.where(valid, score, 0.0),
                 torch.where(valid.unsqueeze(-1), position, 0.0),
                 torch.where(valid.unsqueeze(-1), size, 0.0),
                 torch.where(valid, angle, 0.0), valid)


# ----------------------------------------------------------------------------- targets, loss


def encode_targets(boxes: torch.Tensor, valid: torch.Tensor, config: DetectorConfig) -> Targets:
    """Label boxes to training targets (pure, batched; the inverse of `decode`).

    Each label's centre cell is the output cell containing its centre, clamped into the
    map for centres outside the raster; the offset is measured from that cell's centre.
    The heatmap is the maximum over labels of an axis-aligned Gaussian centred on each
    centre cell, with a std along rows (columns) of a quarter of the box's extent along x
    (y) in cells, at least `config.min_sigma_cells`.

    Args:
        boxes: `(B, K, 5)` float, columns `BOX_FIELDS` (x, y [m], length, width [m],
            heading [rad]).
        valid: `(B, K)` bool.
        config: stride and geometry.

    Returns:
        `Targets` (float32; `index` int64).
    """
    boxes = boxes.float()
    valid = valid.bool()
    h, w = config.output_shape
    s = float(config.stride)
    g = config.geometry
    x, y, length, width, heading = boxes.unbind(-1)
    u, v = g.to_raster(x, y)
    i = torch.clamp(torch.floor(u / s), 0, h - 1)
    j = torch.clamp(torch.floor(v / s), 0, w - 1)
    offset = torch.stack([u - (i + 0.5) * s, v - (j + 0.5) * s], dim=-1)
    index = (i * w + j).long()
    cos, sin = torch.cos(heading), torch.sin(heading)
    extent_x = (length * cos.abs() + width * sin.abs()) / (g.m_per_px * s)
    extent_y = (length * sin.abs() + width * cos.abs()) / (g.m_per_px * s)
    sigma_i = torch.clamp(extent_x / 4.0, min=config.min_sigma_cells)
    sigma_j = torch.clamp(extent_y / 4.0, min=config.min_sigma_cells)
    rows = torch.arange(h, dtype=torch.float32, device=boxes.device)
    cols = torch.arange(w, dtype=torch.float32, device=boxes.device)
    gi = torch.exp(-0.5 * ((rows - i.unsqueeze(-1)) / sigma_i.unsqueeze(-1)) ** 2)  # (B, K, h)
    gj = torch.exp(-0.5 * ((cols - j.unsqueeze(-1)) / sigma_j.unsqueeze(-1)) ** 2)  # (B, K, w)
    gauss = gi.unsqueeze(-1) * gj.unsqueeze(-2) * valid[..., None, None]              # (B, K, h, w)
    heat = gauss.amax(dim=1, keepdim=True) if boxes.shape[1] else torch.zeros(
        boxes.shape[0], 1, h, w, device=boxes.device)
    zero = torch.zeros((), device=boxes.device)
    return Targets(
        heatmap=heat,
        index=torch.where(valid, index, 0),
        offset=torch.where(valid.unsqueeze(-1), offset, zero),
        size=torch.where(valid.unsqueeze(-1), torch.stack([length, width], -1), zero),
        heading=torch.where(valid.unsqueeze(-1), torch.stack([sin, cos], -1), zero),
        mask=valid)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (the heatmap's focal loss has weight 1)."""

    offset: float = real(1.0, low=0.0, help="weight of the L1 loss on the offset")
    size: float = real(0.2, low=0.0, help="weight of the L1 loss on the size")
    heading: float = real(0.5, low=0.0, help="weight of the L1 loss on the heading's sin, cos")

    def __post_init__(self) -> None:
        validate_fields(self, "loss_weights.")


def detector_loss(output: DetectorOutput, targets: Targets,
                  weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict[str, float]]:
    """CenterNet's loss: penalty-reduced focal loss on the heatmap (alpha 2, beta 4) plus
    L1 on offset [px], size [m] and heading (sin, cos) at the labelled centre cells, each
    normalised by the number of labels.

    Returns:
        `(total loss (scalar tensor), {"heatmap": ., "offset": ., "size": ., "heading": .})`.
    """
    batch, _, h, w = output.heatmap.shape
    logits = output.heatmap.float()
    mask = targets.mask
    count = mask.sum().clamp(min=1).float()
    positive = torch.zeros(batch, h * w, device=logits.device)
    positive.scatter_(1, targets.index, mask.float())       # label cells (duplicates once)
    positive = positive.reshape(batch, 1, h, w)
    p = torch.sigmoid(logits)
    pos_loss = -F.logsigmoid(logits) * (1 - p) ** 2 * positive
    neg_loss = -F.logsigmoid(-logits) * p ** 2 * (1 - targets.heatmap) ** 4 * (1 - positive)
    heat_loss = (pos_loss.sum() + neg_loss.sum()) / count

    def l1(maps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n = maps.shape[1]
        pred = maps.float().reshape(batch, n, h * w).gather(
            2, targets.index.unsqueeze(1).expand(batch, n, -1)).transpose(1, 2)
        return ((pred - target).abs().sum(-1) * mask).sum() / count

    parts = {"heatmap": heat_loss, "offset": l1(output.offset, targets.offset),
             "size": l1(output.size, targets.size),
             "heading": l1(output.heading, targets.heading)}
    total = (parts["heatmap"] + weights.offset * parts["offset"] + weights.size * parts["size"]
             + weights.heading * parts["heading"])
    return total, {key: float(value.detach()) for key, value in parts.items()}


# ----------------------------------------------------------------------------- checkpoints


def detector_checkpoint(model: CenterNetDetector, spec: Mapping[str, Any],
                        meta: Mapping[str, Any]) -> Checkpoint:
    """A `Checkpoint` of kind "detector" holding `model` (save with `save_checkpoint`)."""
    return Checkpoint(kind=KIND, name=model.name, config=model.config.to_dict(),
                      state_dict=model.state_dict(), spec=spec, meta=meta)


def load_detector(path: str | Path | None = None,
                  device: str | torch.device = "cpu") -> tuple[CenterNetDetector, Checkpoint]:
    """Build the detector stored in a checkpoint, in eval mode on `device`.

    Args:
        path: the checkpoint file (None: `SHIPPED_CHECKPOINT`).
        device: torch device.

    Raises:
        CheckpointError: see `load_checkpoint`; also an invalid config or weights that do
            not fit the model the config describes.
    """
    path = SHIPPED_CHECKPOINT if path is None else Path(path)
    checkpoint = load_checkpoint(path, kind=KIND, names=tuple(DETECTORS))
    try:
        config = DetectorConfig.from_dict(checkpoint.config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(path, f"invalid detector config: {error}") from None
    model = DETECTORS[checkpoint.name](config)
    try:
        model.load_state_dict(dict(checkpoint.state_dict), strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()
        raise CheckpointError(path, "weights do not fit the model: "
                                    + " ".join(line.strip() for line in first[:3])) from None
    return model.to(device).eval(), checkpoint
