"""Data, training and evaluation of the `learned` perception's bev detector.

Data. Frames come from the straight-road scenarios on the batched backend (Highway
mainly, a denser Highway, and lead-brake / cut-in / stopped-vehicle for variety), at the
default sensor settings (`SensorConfig()`: occlusion on, no bev position noise or
dropout), with `max_objects` raised to `LABEL_OBJECTS` so that no vehicle on the raster is
cut from the ground truth. The ego is driven by a seeded exploration driver (random
cruise speeds and lane changes, steered by a lane-keeping law), and a frame is kept every
`every_ticks` ticks. Training episodes use scenario seeds from `TRAIN_SEED_BASE` up, so
every seed below it is held out; the evaluation's default seeds are `0..n-1`.

Labels. A ground-truth vehicle is labelled when it is *visible in the bev*: at least one
lit pixel of channel 2 (other vehicles) has its centre inside the vehicle's true footprint
grown by `VISIBLE_TOL_M` (`visible_objects`). With the default sensors (no position noise)
this is exactly "the renderer drew it": occluded vehicles and vehicles off the raster are
not labelled, a vehicle cut by the raster's edge is labelled with its full box (its centre
may lie off the raster).

Cache. The training frames are written as shards `OUT/data/<key>/<part>-<k>.npz` (bev
bit-packed, labels, scenario seeds; each written atomically), keyed by a hash of
everything that determines them, so a rerun reuses finished shards and an interrupted
generation resumes at the first missing one. The evaluation frames are cached likewise.

Evaluation. On held-out seeds, one episode per seed and scenario (highway, lead-brake,
cut-in, stopped-vehicle at their default configs): detections and labels of a frame are
matched one-to-one by centre distance (Hungarian, pairs farther than `gate_m` = 2 m never
match), over the whole raster so that nothing changes at the range boundary; then only
vehicles within `range_m` = 40 m of the ego's centre count: precision = matched
detections within range / detections within range, recall = matched labels within range
/ labels within range, centre error = mean distance of the matched labels within range.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from reflexdrive.agents.staged.learned_perception import (
    raster_geometry,
)
from reflexdrive.common.batching import even_chunks
from reflexdrive.common.files import atomic_write
from reflexdrive.common.seed_ranges import TRAINING, require_training_seeds
from reflexdrive.common.threads import torch_threads
from reflexdrive.envs.config import EGO_FEATURES, STEERING_BOUNDS, SensorConfig
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.envs.sensors import BEV_VEHICLES, OBJECT_FIELDS
from reflexdrive.policies.detector import (
    BOX_FIELDS,
    RasterGeometry,
)
from reflexdrive.run.rollout import Rollout
from reflexdrive.train.expert_data import data_key

if TYPE_CHECKING:
    from reflexdrive.train.detector import DetectorTrainingConfig

DATA_VERSION = 1
"""Bumped whenever the generator or the label rule changes (invalidates cached data)."""

TRAIN_SEED_BASE = TRAINING.start
"""Training frames use scenario seeds >= this (`common.seed_ranges.TRAINING`)."""

SEED_STRIDE = 10_000_000
"""Scenario seeds set aside per value of the training seed (`DetectorTrainingConfig.seed`)."""

LABEL_OBJECTS = 96
"""Ground-truth objects requested from the env per frame (nearest first)."""

LABEL_SLOTS = 48
"""Most labels kept per frame (visible vehicles, nearest first)."""

VISIBLE_TOL_M = 0.05
"""A lit pixel centre this far outside a vehicle's footprint still counts as its [m]."""

LANE_WIDTH_M = 4.0
"""Lane width of the straight roads (the exploration driver's lane-change offset) [m]."""

SHARD_FRAMES = 2000
"""Most frames per cached shard."""

EVAL_SCENARIOS = ("highway", "lead-brake", "cut-in", "stopped-vehicle")
"""Scenarios of the held-out evaluation, at their default configs."""

_COLUMN = {name: i for i, name in enumerate(OBJECT_FIELDS)}
_EGO = {name: i for i, name in enumerate(EGO_FEATURES)}


@dataclass(frozen=True)
class DataPart:
    """One scenario's share of the training frames.

    Attributes:
        label: name of the part (shard file names).
        scenario: a straight-road scenario.
        share: fraction of the frames.
        overrides: scenario config overrides (JSON-able).
    """

    label: str
    scenario: str
    share: float
    overrides: dict[str, Any] = field(default_factory=dict)


DATA_MIX = (
    DataPart("highway", "highway", 0.45),
    DataPart("highway-dense", "highway", 0.15, {"vehicles": 60, "min_spacing_m": 8.0}),
    DataPart("lead-brake", "lead-brake", 0.14),
    DataPart("cut-in", "cut-in", 0.13),
    DataPart("stopped-vehicle", "stopped-vehicle", 0.13),
)
"""The training mix: Highway mainly (plus a denser Highway for crowded rasters: cars
bumper to bumper and side by side), and the three hazard scenarios."""


# ----------------------------------------------------------------------------- labels


def visible_objects(vehicles: np.ndarray, objects: np.ndarray, valid: np.ndarray,
                    geometry: RasterGeometry, tol_m: float = VISIBLE_TOL_M) -> np.ndarray:
    """Which ground-truth objects light at least one pixel of the vehicles channel.

    Pure and vectorised: each object is tested on a window of pixels around its centre
    large enough for the biggest box; pixels off the raster count as dark.

    Args:
        vehicles: `(N, H, W)` the bev's channel 2 (nonzero = lit).
        objects: `(N, M, 8)` ground truth, columns `envs.sensors.OBJECT_FIELDS`.
        valid: `(N, M)` bool.
        geometry: the raster.
        tol_m: growth of each footprint [m].

    Returns:
        `(N, M)` bool.
    """
    n, m = valid.shape
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=bool)
    lit = np.asarray(vehicles) != 0
    height, width = lit.shape[1:]
    res = geometry.m_per_px
    x, y = objects[..., _COLUMN["x_m"]], objects[..., _COLUMN["y_m"]]
    half_l = objects[..., _COLUMN["length_m"]] / 2 + tol_m
    half_w = objects[..., _COLUMN["width_m"]] / 2 + tol_m
    heading = objects[..., _COLUMN["heading_rad"]]
    radius = np.where(valid, np.hypot(half_l, half_w), 0.0)
    span = int(math.ceil(2 * float(radius.max()) / res)) + 2        # window side [px]
    u = (geometry.range_m - x) / res                                 # continuous raster coords
    v = (y + geometry.half_width_m) / res
    rows = np.floor(u - radius / res).astype(np.int64)[..., None] + np.arange(span)  # (N, M, S)
    cols = np.floor(v - radius / res).astype(np.int64)[..., None] + np.arange(span)
    px = geometry.range_m - (rows + 0.5) * res                       # pixel centres [m]
    py = (cols + 0.5) * res - geometry.half_width_m
    dx = px[..., :, None] - x[..., None, None]                      # (N, M, S, 1)
    dy = py[..., None, :] - y[..., None, None]                      # (N, M, 1, S)
    cos, sin = np.cos(heading)[..., None, None], np.sin(heading)[..., None, None]
    inside = ((np.abs(dx * cos + dy * sin) <= half_l[..., None, None])
              & (np.abs(dy * cos - dx * sin) <= half_w[..., None, None]))
    on_raster = (((rows >= 0) & (rows < height))[..., :, None]
                 & ((cols >= 0) & (cols < width))[..., None, :])
    frame = np.arange(n)[:, None, None, None]
    pixel = lit[frame, np.clip(rows, 0, height - 1)[..., :, None],
                np.clip(cols, 0, width - 1)[..., None, :]]
    return valid & (inside & on_raster & pixel).any(axis=(-1, -2))


def label_boxes(bev: np.ndarray, objects: np.ndarray, valid: np.ndarray,
                geometry: RasterGeometry, slots: int = LABEL_SLOTS) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """The visible vehicles of each frame as label boxes, nearest first.

    Args:
        bev: `(N, 4, H, W)` uint8 rasters.
        objects, valid: the env's `info["gt_objects"]`, `info["gt_valid"]` (nearest first).
        geometry: the raster.
        slots: labels kept per frame.

    Returns:
        `(boxes (N, slots, 5) float32 with columns policies.detector.BOX_FIELDS,
        valid (N, slots) bool)`.

    Raises:
        RuntimeError: a frame has more visible vehicles than `slots`.
    """
    visible = visible_objects(bev[:, BEV_VEHICLES], objects, valid, geometry)
    if visible.sum(axis=1).max(initial=0) > slots:
        raise RuntimeError(f"a frame has {visible.sum(axis=1).max()} visible vehicles, more "
                           f"than the {slots} label slots")
    order = np.argsort(~visible, axis=1, kind="stable")[:, :slots]   # visible first, in order
    taken = np.take_along_axis(visible, order, axis=1)
    columns = [_COLUMN[name] for name in ("x_m", "y_m", "length_m", "width_m", "heading_rad")]
    picked = np.take_along_axis(objects[..., columns], order[..., None], axis=1)
    boxes = np.zeros((len(bev), slots, len(BOX_FIELDS)), dtype=np.float32)
    mask = np.zeros((len(bev), slots), dtype=bool)
    boxes[:, :order.shape[1]] = np.where(taken[..., None], picked, 0.0)
    mask[:, :order.shape[1]] = taken
    return boxes, mask


# ----------------------------------------------------------------------------- frames


class ExplorationDriver:
    """A seeded, traffic-blind driver that makes the ego wander like a real one would.

    Each env cruises at a target speed (redrawn now and then, 12-32 m/s) and changes lanes
    now and then; steering follows a cascaded lateral-position / heading law on the
    kinematic bicycle (as `agents.staged.control.LaneKeepingController`). It does not look
    at traffic, so it sometimes crashes: the episode then ends, as any would.
    """

    def __init__(self, num_envs: int, rng: np.random.Generator,
                 lane_change_per_tick: float = 0.01, speed_change_per_tick: float = 0.02):
        self.rng = rng
        self.lane_change_per_tick = lane_change_per_tick
        self.speed_change_per_tick = speed_change_per_tick
        self.target_lane = np.zeros(num_envs)
        self.target_speed = np.zeros(num_envs)

    def reset(self, ego: np.ndarray, mask: np.ndarray) -> None:
        """Start the envs of `mask` on their current lane and speed."""
        self.target_lane[mask] = ego[mask, _EGO["lane_index"]]
        self.target_speed[mask] = ego[mask, _EGO["speed_mps"]]

    def act(self, ego: np.ndarray) -> np.ndarray:
        """`(N, 2)` [acceleration m/s^2, steering rad] from the `(N, 8)` ego vectors."""
        n = len(ego)
        lane, lanes = ego[:, _EGO["lane_index"]], ego[:, _EGO["lane_count"]]
        change = self.rng.random(n) < self.lane_change_per_tick
        step = self.rng.choice([-1.0, 1.0], size=n)
        self.target_lane = np.where(change, np.clip(lane + step, 0, lanes - 1),
                                    self.target_lane)
        respeed = self.rng.random(n) < self.speed_change_per_tick
        self.target_speed = np.where(respeed, self.rng.uniform(12.0, 32.0, n),
                                     self.target_speed)
        speed = np.maximum(ego[:, _EGO["speed_mps"]].astype(np.float64), 1.0)
        lateral_error = ego[:, _EGO["lane_offset_m"]] - (self.target_lane - lane) * LANE_WIDTH_M
        heading_reference = np.arcsin(np.clip(-lateral_error / 0.6 / speed, -1.0, 1.0))
        heading_error = heading_reference - ego[:, _EGO["heading_error_rad"]]
        heading_error = (heading_error + np.pi) % (2 * np.pi) - np.pi
        slip = np.arcsin(np.clip(2.5 / speed * heading_error / 0.2, -1.0, 1.0))
        steering = np.clip(np.arctan(2.0 * np.tan(slip)), *STEERING_BOUNDS)
        acceleration = np.clip(0.6 * (self.target_speed - speed), -4.0, 2.0)
        return np.stack([acceleration, steering], axis=1)


def data_sensors() -> SensorConfig:
    """The sensors frames are generated with: the defaults, more ground-truth objects."""
    return SensorConfig(max_objects=LABEL_OBJECTS)


def generate_frames(scenario: str, seeds: Iterable[int], *, count: int | None = None,
                    overrides: dict[str, Any] | None = None, envs: int = 32,
                    every_ticks: int = 5, driver_seed: int = 0,
                    sensors: SensorConfig | None = None,
                    progress: tqdm | None = None) -> dict[str, np.ndarray]:
    """Roll out episodes on the batched backend and keep labelled frames.

    Each env plays episodes with the scenario seeds drawn from `seeds` in turn (an env
    whose episode ends takes the next seed); a frame is kept at each episode's ticks
    `0, every_ticks, 2 every_ticks, ...` and at its last tick. Generation stops when
    `count` frames are kept, or (count None) when `seeds` is exhausted and every episode
    has ended.

    Returns:
        {"bev": (F, 4, H, W) uint8, "boxes": (F, LABEL_SLOTS, 5) float32,
         "valid": (F, LABEL_SLOTS) bool, "seed": (F,) int64 scenario seed,
         "tick": (F,) int64 tick of the episode}.
    """
    if envs < 1 or every_ticks < 1:
        raise ValueError(f"envs={envs} and every_ticks={every_ticks} must be >= 1")
    sensors = sensors or data_sensors()
    geometry = raster_geometry(sensors)
    with torch_threads(1):        # tiny tensors: extra threads only add sync overhead
        return _generate(scenario, iter(seeds), count, overrides, envs, every_ticks, driver_seed,
                         sensors, geometry, progress)




def _generate(scenario, seeds, count, overrides, envs, every_ticks, driver_seed, sensors,
              geometry, progress) -> dict[str, np.ndarray]:
    """`generate_frames`' loop (its arguments validated, torch on one thread)."""
    env = BatchedDrivingEnv(num_envs=envs, scenario=scenario, sensors=sensors,
                            scenario_config=dict(overrides or {}), autoreset_mode="disabled")
    driver = ExplorationDriver(envs, np.random.default_rng(driver_seed))
    kept: dict[str, list] = {"bev": [], "boxes": [], "valid": [], "seed": [], "tick": []}
    total = 0

    def keep(obs: dict, info: dict, mask: np.ndarray, seed: np.ndarray,
             tick: np.ndarray) -> None:
        nonlocal total
        rows = np.flatnonzero(mask)
        if count is not None:
            rows = rows[:count - total]
        if not len(rows):
            return
        objects, valid = info["gt_objects"][rows], info["gt_valid"][rows]
        _check_complete(objects, valid, geometry)
        boxes, labels = label_boxes(obs["bev"][rows], objects, valid, geometry)
        for key, value in (("bev", obs["bev"][rows]), ("boxes", boxes), ("valid", labels),
                           ("seed", seed[rows].copy()), ("tick", tick[rows].copy())):
            kept[key].append(value)
        total += len(rows)
        if progress is not None:
            progress.update(len(rows))

    def decide(obs: dict, info: dict) -> np.ndarray | None:
        if count is not None and total >= count:
            return None
        keep(obs, info, rollout.live & (rollout.ticks % every_ticks == 0), rollout.seeds,
             rollout.ticks)
        if count is not None and total >= count:
            return None
        return driver.act(obs["ego"])

    with Rollout(env, seeds) as rollout:         # idle worlds replay their last seed
        steps = rollout.steps(decide,
                              on_reset=lambda obs, info, mask: driver.reset(obs["ego"], mask))
        for step in steps:                       # each episode's last frame
            keep(step.obs, step.info, step.live & step.done, rollout.seeds, step.ticks + 1)
    if not kept["bev"]:
        return {"bev": np.zeros((0, *sensors.bev_shape), np.uint8),
                "boxes": np.zeros((0, LABEL_SLOTS, len(BOX_FIELDS)), np.float32),
                "valid": np.zeros((0, LABEL_SLOTS), bool), "seed": np.zeros(0, np.int64),
                "tick": np.zeros(0, np.int64)}
    return {key: np.concatenate(value) for key, value in kept.items()}


def _check_complete(objects: np.ndarray, valid: np.ndarray, geometry: RasterGeometry) -> None:
    """Raise if the env's nearest-first object list may have cut a vehicle on the raster."""
    full = valid[:, -1]
    if full.any():
        reach = math.hypot(max(geometry.range_m, geometry.behind_m), geometry.half_width_m) + 4.0
        farthest = np.hypot(objects[full, -1, _COLUMN["x_m"]], objects[full, -1, _COLUMN["y_m"]])
        if (farthest < reach).any():
            raise RuntimeError(f"more than {valid.shape[1]} vehicles within {reach:.0f} m: "
                               "raise LABEL_OBJECTS")


def _pack(frames: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    packed = dict(frames)
    packed["bev"] = np.packbits(frames["bev"] != 0, axis=-1)
    packed["bev_width"] = np.array(frames["bev"].shape[-1])
    return packed


def _unpack(packed: Any) -> dict[str, np.ndarray]:
    frames = {key: packed[key] for key in ("boxes", "valid", "seed", "tick")}
    width = int(packed["bev_width"])
    frames["bev"] = np.unpackbits(packed["bev"], axis=-1, count=width) * np.uint8(255)
    return frames


def _cached(path: Path, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Load frames from `path` (.npz) or make and store them there atomically."""
    if path.exists():
        try:
            with np.load(path) as packed:
                return _unpack(packed)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            path.unlink()                            # a damaged shard: make it again
    frames = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda stream: np.savez_compressed(stream, **_pack(frames)), mode="wb")
    return frames


def _concat(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def training_frames(config: DetectorTrainingConfig, out: Path,
                    progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The training frames of `config` (cached under `out/data/<key>/`).

    Returns:
        `(frames, description)`: see `generate_frames` for the arrays; the description
        (JSON-able) records the mix, seeds and sensors, for the checkpoint's metadata.
    """
    sensors = data_sensors()
    shares = np.array([part.share for part in DATA_MIX])
    counts = np.floor(shares / shares.sum() * config.samples).astype(int)
    counts[0] += config.samples - counts.sum()
    description = {
        "version": DATA_VERSION, "samples": config.samples, "seed": config.seed,
        "envs": config.envs, "every_ticks": config.every_ticks,
        "sensors": asdict(sensors), "train_seed_base": TRAIN_SEED_BASE,
        "mix": [{**asdict(part), "frames": int(n)} for part, n in zip(DATA_MIX, counts)],
        "labels": f"visible in bev channel 2 (tolerance {VISIBLE_TOL_M} m), up to "
                  f"{LABEL_SLOTS} per frame",
    }
    folder = out / "data" / f"train-{data_key(description)}"
    shards = [(p, part, k, n) for p, (part, total) in enumerate(zip(DATA_MIX, counts))
              for k, n in enumerate(even_chunks(int(total), SHARD_FRAMES))]
    bar = tqdm(total=config.samples, desc="training frames", unit="frame", disable=not progress,
               leave=False)
    loaded = []
    for p, part, k, n in shards:
        path = folder / f"{part.label}-{k:02d}.npz"
        base = TRAIN_SEED_BASE + config.seed * SEED_STRIDE + (p * 100 + k) * 10_000
        require_training_seeds(base, base + 9_999, "seed")

        def make(part=part, n=n, base=base):
            return generate_frames(part.scenario, range(base, base + 10_000), count=n,
                                   overrides=part.overrides, envs=config.envs,
                                   every_ticks=config.every_ticks, driver_seed=base,
                                   sensors=sensors, progress=bar)
        cached = path.exists()
        loaded.append(_cached(path, make))
        if cached:
            bar.update(n)
    bar.close()
    description["folder"] = str(folder)
    return _concat(loaded), description




def evaluation_frames(seeds: Sequence[int], scenarios: Sequence[str] = EVAL_SCENARIOS, *,
                      every_ticks: int = 5, cache: Path | None = None,
                      progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Held-out frames: one episode per seed and scenario (default configs), by scenario.

    Args:
        seeds: scenario seeds; they should be below `TRAIN_SEED_BASE` to be held out.
        scenarios: straight-road scenarios.
        every_ticks: keep one frame every this many ticks (and each episode's last).
        cache: folder to cache the frames in (None: no caching).
    """
    seeds = [int(s) for s in seeds]
    frames = {}
    bar = tqdm(total=len(scenarios), desc="held-out frames", unit="scenario",
               disable=not progress, leave=False)
    for scenario in scenarios:
        def make(scenario=scenario):
            return generate_frames(scenario, seeds, envs=max(1, len(seeds)),
                                   every_ticks=every_ticks, driver_seed=seeds[0] if seeds else 0)
        if cache is None:
            frames[scenario] = make()
        else:
            key = data_key({"version": DATA_VERSION, "scenario": scenario, "seeds": seeds,
                        "every_ticks": every_ticks, "sensors": asdict(data_sensors())})
            frames[scenario] = _cached(cache / f"eval-{scenario}-{key}.npz", make)
        bar.update(1)
    bar.close()
    return frames
