"""Expert driving data for imitation: the staged stack's decisions on the batched backend.

The expert is the staged stack with oracle perception (`agents.registry.build_staged(
perception="oracle")`). It drives `envs` worlds side by side on
`envs.gym.vector.BatchedDrivingEnv` (lockstep, zero latency by default), on the straight
roads and on the road networks (merge, roundabout, intersection), and every tick of every
episode is recorded: what the policy will see (`bev`, `ego`, `lidar`, `route`, `timing`) and
what the expert commanded. Episodes are recorded whole, tick after tick, with their
episode-start flags, so the recurrent policies learn from sequences.

DAgger rounds record the same way, with the learner at the wheel: each tick the learner's
action is executed (or, with probability `beta` per env and tick, the expert's) while the
expert is stepped on the very same observations and `info` and labels the state. The
expert keeps its per-env state (tracks, lane-change plan, PID integral) consistent
because it sees every tick of the world the learner drives.

Seeds. Episode `e` of round `r` (round 0: the expert's data; round `r >= 1`: DAgger round
`r`) uses the scenario seed

    IMITATION_SEED_BASE + seed * SEED_STRIDE + r * ROUND_STRIDE + e

with `IMITATION_SEED_BASE = 2_000_000`, inside `common.seed_ranges.TRAINING` (collection
refuses any other seed, so the development and held-out evaluation seeds stay sealed) and
apart from the detector's training frames (1,000,000 up, its default seed 0 uses fewer
than 1,000,000 of them). The scenario seed is also the episode's id in the data.

Mixture. Its entries (`MIX_ENTRIES`) are the scenarios the expert drives on the batched
backend (`SCENARIOS`) and the hazards at the protocol suites' parameter ranges
(`PROTOCOL_RANGES`: the same generators with widened scenario-config ranges; the
evaluation scenarios' defaults are untouched). The episodes of a round are apportioned to
the entries by their weights (largest remainder), then cut into shards of at most
`shard_episodes` episodes of one entry; the shards are interleaved entry by entry, so a
partly generated round is already mixed.

Shards. Each shard is one `.npz` (bev bit-packed: values are 0 or 255), written
atomically (temp file + `os.replace`) under a folder keyed by a hash of everything that
determines its content (and, for DAgger rounds, the learner's weights' checksum); a rerun
reuses the shards on disk and a killed generation resumes at the first missing one.
Rows of a shard are sorted by episode, then tick: each episode is a contiguous block
whose first row has `episode_start` True.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from reflexdrive.agents.base import Agent
from reflexdrive.agents.registry import build_staged
from reflexdrive.common.batching import even_chunks
from reflexdrive.common.files import atomic_write
from reflexdrive.common.seed_ranges import TRAINING, require_training_seeds
from reflexdrive.common.threads import torch_threads
from reflexdrive.common.validation import (
    ConfigError,
    check_choice,
    choice,
    integer,
    string,
    validate_fields,
)
from reflexdrive.envs.clock.timing import TIMING_FEATURES
from reflexdrive.envs.config import (
    ACCELERATION_BOUNDS,
    EGO_FEATURES,
    MODES,
    STEERING_BOUNDS,
    SensorConfig,
)
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.envs.road_map import ROUTE_TARGETS_M
from reflexdrive.envs.scenarios import make_config
from reflexdrive.run.rollout import Rollout
from reflexdrive.train.label_shift import LABEL_SHIFTS, landing_labels

DATA_VERSION = 4
"""Bumped whenever what a shard holds changes (invalidates cached shards)."""

IMITATION_SEED_BASE = TRAINING.start + 1_000_000
"""Imitation episodes use scenario seeds >= this (see the module docstring)."""

SEED_STRIDE = 10_000_000
"""Scenario seeds set aside per value of the data seed."""

ROUND_STRIDE = 1_000_000
"""Scenario seeds set aside per round; a round has fewer episodes than this."""

MAX_SEED = 199
"""Largest data seed: the scenario seeds stay below 2**31 - 1."""

MAX_ROUND = 9
"""Largest round index (1 + DAgger rounds)."""

SCENARIOS = ("highway", "lead-brake", "cut-in", "stopped-vehicle", "merge", "roundabout",
             "intersection")
"""The scenarios the expert drives on the batched backend (of `envs.gym.vector.
batched_scenarios()`: the straight roads and the three road networks, not the hazards on
road networks)."""

PROTOCOL_RANGES: dict[str, tuple[str, dict[str, Any]]] = {
    "lead-brake-protocol": ("lead-brake", {
        "ego_speed_mps": (2.0, 26.0), "gap_m": (2.0, 40.0), "decel_mps2": (2.0, 8.0)}),
    "cut-in-protocol": ("cut-in", {
        "ego_speed_mps": (5.5, 24.0), "gap_m": (0.0, 60.0), "slowdown_mps": (2.5, 14.0),
        "lateral_speed_mps": (0.5, 3.0)}),
    "stopped-vehicle-protocol": ("stopped-vehicle", {
        "ego_speed_mps": (1.3, 24.0), "onset_s": (0.0, 4.0)}),
}
"""Mixture entries `name: (scenario, scenario-config overrides)`: the three straight
hazards with their ranges widened over the protocol grids' (`reflexdrive.protocol`):

- lead-brake: R157 4.3_2 (7.2-60 km/h = 2-16.7 m/s, bumper headway 1.0-1.6 s = 2-27 m,
  6 m/s^2) and NCAP CCRb (50 km/h, gap 12 or 40 m, 2 or 6 m/s^2); the default draws
  22-26 m/s, 15-30 m, 6-8 m/s^2.
- cut-in: R157 4.4 (ego 20-60 km/h = 5.6-16.7 m/s, 10-50 km/h slower = 2.8-13.9 m/s,
  gap at the onset 0-60 m, sinusoidal lane change at 0.5-3 m/s peak lateral speed); the
  default draws 20-24 m/s, 4-10 m, 5-9 m/s slower, highway-env's own lane change.
- stopped-vehicle: R157 4.2 (5-60 km/h = 1.4-16.7 m/s) and NCAP CCRs (10-50 km/h, the
  target in range from the start: onset 0); the default draws 18-24 m/s, onset 2-4 s.

NCAP CCRm (a target cruising at 20 km/h from the start) has no generator here: the
nearest are lead-brake (a lead braking to a stop) and cut-in (a cutter slowing down)."""

MIX_ENTRIES = SCENARIOS + tuple(PROTOCOL_RANGES)
"""Names a mixture may weigh, in the order of the `scenario` column's codes."""

DEFAULT_WEIGHTS = (("highway", 0.55), ("lead-brake", 0.15), ("cut-in", 0.15),
                   ("stopped-vehicle", 0.15))
"""Default mixture: Highway mostly (the driving itself), and the three hazards."""

FIELDS = ("bev", "ego", "lidar", "route", "timing", "action", "executed", "episode_start",
          "episode", "tick", "env", "scenario", "round", "learner")
"""The per-frame arrays of a shard and of an `ExpertDataset` (see `ExpertDataset`): every
observation a policy may read (`bev`, `ego`, `lidar`, `route`, `timing`), the labels and the
bookkeeping."""


def mix_entry(name: str) -> tuple[str, dict[str, Any]]:
    """`(scenario, scenario-config overrides)` of mixture entry `name` (`MIX_ENTRIES`)."""
    check_choice("scenario_weights", name, MIX_ENTRIES)
    if name in PROTOCOL_RANGES:
        scenario, overrides = PROTOCOL_RANGES[name]
        return scenario, dict(overrides)
    return name, {}


def check_weights(field_name: str, weights: Any) -> None:
    """Raise ConfigError naming `field_name` unless `weights` is a non-empty
    `((entry, weight), ...)` (or `{entry: weight}`) over `MIX_ENTRIES`, weights finite and
    >= 0, at least one > 0."""
    pairs = list(weights.items()) if isinstance(weights, Mapping) else weights
    rule = ("must be a non-empty {entry: weight} mapping over " + ", ".join(MIX_ENTRIES))
    if not isinstance(pairs, (list, tuple)) or not pairs or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
        raise ConfigError(field_name, weights, rule)
    for name, weight in pairs:
        check_choice(field_name, name, MIX_ENTRIES)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{field_name}.{name}", weight, "must be a finite number >= 0")
    if not sum(float(w) for _, w in pairs) > 0.0:
        raise ConfigError(field_name, dict(pairs), "at least one weight must be > 0")


@dataclass(frozen=True)
class CollectionConfig:
    """How the worlds are run while recording (part of every shard folder's key).

    Attributes:
        envs: worlds simulated side by side (`B` of the batched env).
        shard_episodes: most episodes per shard.
        mode: the clock's mode, "lockstep" or "realtime".
        latency: the clock's latency model (`fixed:0`: none; `SPEC+LOW..HIGH`: an extra
            delay drawn per episode). With `L > T` a world skips the ticks its agent is
            busy; only observed ticks are recorded.
        label_shift: "landing" (default): frame `k`'s label is the expert's command at the
            tick nearest its command's landing `t_k + L_k` (`label_shift`; the expert
            labels every tick, recorded or not), what a learner whose command acts then
            must answer; identical to "none" in lockstep, where `L_k = 0`. "none": the
            expert's command at tick `k`.
        weights: `((entry, weight), ...)` of the mixture, entries from `MIX_ENTRIES`.
        seed: the data seed (see the module docstring).
        sensors: the sensors' settings (default `SensorConfig()`).
    """

    envs: int = integer(256, low=1, high=65_536, says_integer=True,
                        help="worlds simulated side by side")
    shard_episodes: int = integer(256, low=1, high=ROUND_STRIDE - 1, says_integer=True,
                                  help="most episodes per data shard")
    mode: str = choice("lockstep", choices=MODES, help="the clock's mode: lockstep, realtime")
    latency: str = string("fixed:0", help="the clock's latency model")
    label_shift: str = choice("landing", choices=LABEL_SHIFTS,
                              help="label a frame with the expert's command at its command's "
                                   "landing tick (landing) or at its own tick (none)")
    weights: tuple[tuple[str, float], ...] = DEFAULT_WEIGHTS
    seed: int = integer(0, low=0, high=MAX_SEED, says_integer=True,
                        help="seeds the data (scenario seeds), the weights, the split and "
                             "the batch order")
    sensors: SensorConfig = field(default_factory=SensorConfig)

    def __post_init__(self) -> None:
        validate_fields(self)
        check_weights("weights", self.weights)


@dataclass(frozen=True)
class ShardSpec:
    """One shard of a round: `episodes` episodes of `scenario` from episode index `first`.

    Attributes:
        round: 0 for the expert's data, r >= 1 for DAgger round r.
        index: the shard's position in the round.
        scenario: its mixture entry (`MIX_ENTRIES`: a scenario, or a hazard at the
            protocol ranges).
        first: index of its first episode within the round.
        episodes: number of episodes.
    """

    round: int
    index: int
    scenario: str
    first: int
    episodes: int

    def seeds(self, seed: int) -> list[int]:
        """The scenario seeds of its episodes (= the episodes' ids)."""
        base = IMITATION_SEED_BASE + seed * SEED_STRIDE + self.round * ROUND_STRIDE + self.first
        return list(range(base, base + self.episodes))

    @property
    def filename(self) -> str:
        return f"shard-{self.index:04d}-{self.scenario}.npz"


def episode_ticks(entry: str, policy_frequency: int = 10) -> int:
    """Ticks of one full episode of mixture entry `entry` (its scenario's config)."""
    scenario, overrides = mix_entry(entry)
    return int(round(make_config(scenario, overrides).duration_s * policy_frequency))


def episodes_for_frames(frames: int, weights: Sequence[tuple[str, float]]) -> int:
    """Episodes of the mixture that make about `frames` frames (full-length episodes)."""
    total = sum(w for _, w in weights)
    mean = sum(w / total * episode_ticks(name) for name, w in weights)
    return max(1, math.ceil(frames / mean))


def apportion(episodes: int, weights: Sequence[tuple[str, float]]) -> dict[str, int]:
    """Episodes per scenario, proportional to the weights (largest remainder; ties by
    order)."""
    total = sum(w for _, w in weights)
    exact = [episodes * w / total for _, w in weights]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:episodes - sum(counts)]:
        counts[i] += 1
    return {name: n for (name, _), n in zip(weights, counts)}


def plan_round(round_: int, episodes: int, config: CollectionConfig) -> list[ShardSpec]:
    """The shards of round `round_` with `episodes` episodes (scenario-interleaved)."""
    per_scenario = apportion(episodes, config.weights)
    pieces = {name: even_chunks(n, config.shard_episodes) for name, n in per_scenario.items()}
    shards: list[ShardSpec] = []
    first = 0
    for k in range(max((len(p) for p in pieces.values()), default=0)):
        for name, _ in config.weights:
            if k < len(pieces[name]):
                n = pieces[name][k]
                shards.append(ShardSpec(round_, len(shards), name, first, n))
                first += n
    return shards




def data_key(document: Any) -> str:
    """A short stable hash of a JSON-able document (folder names)."""
    text = json.dumps(document, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def round_folder(root: Path, round_: int, episodes: int, config: CollectionConfig,
                 learner: str | None = None, beta: float = 1.0) -> Path:
    """The folder of a round's shards: `root/round-RR-<key>` (key: data version,
    collection settings, the mixture entries' scenarios and overrides, episodes, and for
    DAgger rounds the learner's checksum and beta)."""
    collection = asdict(config)
    if config.mode == "lockstep":           # no latency: the shift changes no label, and
        collection.pop("label_shift")       # lockstep data keeps its folder
    description = {"version": DATA_VERSION, "round": round_, "episodes": episodes,
                   "collection": collection, "learner": learner, "beta": beta,
                   "entries": {name: mix_entry(name) for name, _ in config.weights}}
    return Path(root) / f"round-{round_:02d}-{data_key(description)}"


# ----------------------------------------------------------------------------- dataset


@dataclass
class ExpertDataset:
    """Frames of expert-labelled driving, `F` rows, each episode a contiguous block.

    Attributes:
        bev: `(F, C, H, ceil(W / 8))` uint8, the bev raster bit-packed along W
            (`np.packbits`; `frames_bev` unpacks to 0 / 255).
        bev_width: `W` [px].
        ego: `(F, 8)` float32, `envs.config.EGO_FEATURES`.
        lidar: `(F, beams, 2)` float32, range [m] and range rate [m/s] per beam.
        route: `(F, K, 2)` float32, `obs["route"]`: the route's points
            `envs.road_map.ROUTE_TARGETS_M` ahead in the ego frame [m] (finite: past the
            route's end its last point, zeros without one; `envs.road_map.route_targets`).
        timing: `(F, 4)` float32, `obs["timing"]`: the observation's age [s] and the command
            in flight ([m/s^2], [rad], [s] until it lands; `envs.clock.timing`).
        action: `(F, 2)` float32, the expert's `[acceleration m/s^2, steering rad]`
            (clipped to the action bounds): the label.
        executed: `(F, 2)` float32, the command executed that tick (the expert's, or the
            learner's in DAgger rounds).
        episode_start: `(F,)` bool, the first recorded tick of its episode.
        episode: `(F,)` int64, the episode id (its scenario seed).
        tick: `(F,)` int32, the tick within the episode.
        env: `(F,)` int32, the world (of the batched env) that drove it.
        scenario: `(F,)` int8, index into `MIX_ENTRIES`.
        round: `(F,)` int8, 0 for the expert's data, r for DAgger round r.
        learner: `(F,)` bool, the learner's action was executed.
    """

    bev: np.ndarray
    bev_width: int
    ego: np.ndarray
    lidar: np.ndarray
    route: np.ndarray
    timing: np.ndarray
    action: np.ndarray
    executed: np.ndarray
    episode_start: np.ndarray
    episode: np.ndarray
    tick: np.ndarray
    env: np.ndarray
    scenario: np.ndarray
    round: np.ndarray
    learner: np.ndarray

    def __len__(self) -> int:
        return int(self.ego.shape[0])

    @property
    def episodes(self) -> np.ndarray:
        """The distinct episode ids, in order of appearance."""
        _, first = np.unique(self.episode, return_index=True)
        return self.episode[np.sort(first)]

    def frames_bev(self, rows: np.ndarray) -> np.ndarray:
        """The bev rasters of `rows` (any integer array shape `S`): `(*S, C, H, W)` uint8
        with values 0 / 255."""
        rows = np.asarray(rows)
        packed = self.bev[rows.reshape(-1)]
        bev = np.unpackbits(packed, axis=-1, count=self.bev_width)
        bev *= np.uint8(255)
        return bev.reshape(*rows.shape, *bev.shape[1:])

    def select(self, rows: np.ndarray) -> "ExpertDataset":
        """The dataset of `rows` (keep whole episodes to keep it well formed)."""
        return ExpertDataset(bev_width=self.bev_width, **{
            name: getattr(self, name)[rows] for name in FIELDS})

    @classmethod
    def concat(cls, parts: Sequence["ExpertDataset"]) -> "ExpertDataset":
        """One dataset from several (same bev shape)."""
        if not parts:
            raise ValueError("no data to concatenate")
        return cls(bev_width=parts[0].bev_width, **{
            name: np.concatenate([getattr(p, name) for p in parts]) for name in FIELDS})

    def summary(self) -> dict[str, Any]:
        """JSON-able counts: frames, episodes, per scenario and per round."""
        per_scenario = {name: int((self.scenario == i).sum())
                        for i, name in enumerate(MIX_ENTRIES) if (self.scenario == i).any()}
        rounds = {int(r): int((self.round == r).sum()) for r in np.unique(self.round)}
        return {"frames": len(self), "episodes": int(len(np.unique(self.episode))),
                "frames_per_scenario": per_scenario, "frames_per_round": rounds,
                "learner_frames": int(self.learner.sum())}


def empty_dataset(sensors: SensorConfig | None = None) -> ExpertDataset:
    sensors = sensors or SensorConfig()
    c, h, w = sensors.bev_shape
    return ExpertDataset(
        bev=np.zeros((0, c, h, (w + 7) // 8), np.uint8), bev_width=w,
        ego=np.zeros((0, len(EGO_FEATURES)), np.float32),
        lidar=np.zeros((0, sensors.lidar_beams, 2), np.float32),
        route=np.zeros((0, len(ROUTE_TARGETS_M), 2), np.float32),
        timing=np.zeros((0, len(TIMING_FEATURES)), np.float32),
        action=np.zeros((0, 2), np.float32),
        executed=np.zeros((0, 2), np.float32), episode_start=np.zeros(0, bool),
        episode=np.zeros(0, np.int64), tick=np.zeros(0, np.int32), env=np.zeros(0, np.int32),
        scenario=np.zeros(0, np.int8), round=np.zeros(0, np.int8), learner=np.zeros(0, bool))


def save_shard(path: Path, data: ExpertDataset, meta: Mapping[str, Any]) -> None:
    """Write a shard atomically (npz, compressed; `meta` as a JSON string)."""
    arrays = {name: getattr(data, name) for name in FIELDS}
    arrays["bev_width"] = np.array(data.bev_width)
    arrays["meta"] = np.array(json.dumps(dict(meta), sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda stream: np.savez_compressed(stream, **arrays), mode="wb")


def load_shard(path: Path) -> tuple[ExpertDataset, dict[str, Any]] | None:
    """A shard and its meta, or None when it is missing or damaged (it is then deleted,
    to be made again)."""
    if not path.exists():
        return None
    try:
        with np.load(path) as stored:
            meta = json.loads(str(stored["meta"]))
            if meta.get("version") != DATA_VERSION:
                raise ValueError("old data version")
            data = ExpertDataset(bev_width=int(stored["bev_width"]),
                                 **{name: stored[name] for name in FIELDS})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        path.unlink(missing_ok=True)
        return None
    return data, meta


# ----------------------------------------------------------------------------- collection


class MissingShardError(RuntimeError):
    """A shard must be collected but what collects it (the DAgger learner) is missing."""

    def __init__(self, path: Path, problem: str):
        self.path = path
        super().__init__(f"{path}: {problem}")




def make_expert(seed: int = 0) -> Agent:
    """The expert: the staged stack with oracle perception (Kalman tracking, IDM/MOBIL/
    Frenet planning, PID + pure pursuit)."""
    return build_staged(perception="oracle", seed=seed)


def collect_shard(spec: ShardSpec, config: CollectionConfig, *,
                  learner: Agent | None = None, beta: float = 1.0,
                  expert: Agent | None = None,
                  on_episode: Callable[[int], None] | None = None) -> ExpertDataset:
    """Drive the episodes of `spec` and record every observed tick (labels: the expert's
    command at the landing tick with `config.label_shift == "landing"`, `label_shift`).

    Args:
        spec: the shard (scenario, episodes).
        config: collection settings (envs, clock, seed, sensors).
        learner: None: the expert drives. Otherwise the learner drives, except where a
            per-env, per-tick coin with probability `beta` picks the expert's action.
            Both agents act on every tick's observations and `info` either way.
        beta: probability that the expert's action is executed (learner given).
        expert: the expert (default: a new `make_expert`); it is reset for all `B`
            worlds at the start and per world at each episode's end.
        on_episode: called with 1 each time an episode of the shard ends.

    Returns:
        The shard's frames, sorted by episode then tick.
    """
    seeds = spec.seeds(config.seed)
    require_training_seeds(seeds[0], seeds[-1], "seed")
    n = min(config.envs, len(seeds))
    expert = expert or make_expert(seed=config.seed)
    rng = np.random.default_rng([config.seed, spec.round, spec.index, 17])
    scenario, overrides = mix_entry(spec.scenario)
    env = BatchedDrivingEnv(num_envs=n, scenario=scenario, mode=config.mode,
                            latency=config.latency, sensors=config.sensors,
                            scenario_config=overrides, autoreset_mode="disabled")
    code = MIX_ENTRIES.index(spec.scenario)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in FIELDS}
    low = np.array([ACCELERATION_BOUNDS[0], STEERING_BOUNDS[0]], np.float32)
    high = np.array([ACCELERATION_BOUNDS[1], STEERING_BOUNDS[1]], np.float32)
    chosen: dict[str, np.ndarray] = {}
    labelled: dict[str, list[np.ndarray]] = {"episode": [], "tick": [], "label": []}

    def reset(obs: dict, info: dict, mask: np.ndarray) -> None:
        for agent in (expert, learner):
            if agent is not None:
                agent.reset(mask)

    def decide(obs: dict, info: dict) -> np.ndarray:
        label = np.clip(expert.act(obs, info).actions, low, high).astype(np.float32)
        executed, by_learner = label, np.zeros(n, dtype=bool)
        if learner is not None:
            own = learner.act(obs, info).actions.astype(np.float32)
            by_learner = rng.random(n) >= beta
            executed = np.where(by_learner[:, None], own, label)
        chosen.update(label=label, by_learner=by_learner)
        return executed

    with Rollout(env, seeds) as rollout:         # idle worlds replay their last seed
        for step in rollout.steps(decide, on_reset=reset):
            obs, executed = step.prior_obs, step.actions
            label, by_learner = chosen["label"], chosen["by_learner"]
            live = np.flatnonzero(step.live)        # the expert labels every live tick
            labelled["episode"].append(rollout.seeds[live].copy())
            labelled["tick"].append(step.ticks[live].copy())
            labelled["label"].append(label[live])
            rows = np.flatnonzero(step.live & step.info["observing"])
            if len(rows):
                values = {
                    "bev": np.packbits(obs["bev"][rows] != 0, axis=-1),
                    "ego": obs["ego"][rows].astype(np.float32),
                    "lidar": obs["lidar"][rows].astype(np.float32),
                    "route": obs["route"][rows].astype(np.float32),
                    "timing": obs["timing"][rows].astype(np.float32),
                    "action": label[rows], "executed": executed[rows].astype(np.float32),
                    "episode_start": step.ticks[rows] == 0,
                    "episode": rollout.seeds[rows].copy(),
                    "tick": step.ticks[rows].astype(np.int32), "env": rows.astype(np.int32),
                    "scenario": np.full(len(rows), code, np.int8),
                    "round": np.full(len(rows), spec.round, np.int8),
                    "learner": by_learner[rows]}
                for name, value in values.items():
                    parts[name].append(value)
            if step.done.any() and on_episode is not None:
                on_episode(int((step.done & step.live).sum()))
    if not parts["ego"]:
        return empty_dataset(config.sensors)
    data = ExpertDataset(bev_width=config.sensors.bev_shape[-1],
                         **{name: np.concatenate(value) for name, value in parts.items()})
    order = np.lexsort((data.tick, data.episode))
    data = data.select(order)
    if config.label_shift == "landing":
        data.action = landing_labels(
            data.episode, data.tick, data.timing[:, 0],
            *(np.concatenate(labelled[name]) for name in ("episode", "tick", "label")),
            tick_s=env.clock_config.tick_s)
    return data


def collect_round(round_: int, episodes: int, config: CollectionConfig, root: Path, *,
                  learner: Agent | None = None, learner_checksum: str | None = None,
                  beta: float = 1.0, progress: bool = True,
                  max_shards: int | None = None) -> tuple[ExpertDataset, dict[str, Any]]:
    """The data of one round: shards on disk are loaded, missing ones are collected.

    Args:
        round_: 0 (the expert drives) or a DAgger round >= 1 (`learner` drives).
        episodes: episodes in the round.
        config: collection settings.
        root: the data folder (`round_folder` picks the round's subfolder).
        learner, learner_checksum, beta: for DAgger rounds (see `collect_shard`); the
            checksum of the learner's weights keys the folder. The learner may be None
            when every shard is on disk.
        progress: a tqdm bar over the round's episodes.
        max_shards: stop after collecting this many new shards (tests: a killed run);
            the dataset returned then holds only the shards on disk.

    Returns:
        `(dataset, description)`, the description JSON-able: folder, episodes, frames,
        shards, beta, learner checksum, seconds spent collecting.

    Raises:
        MissingShardError: a DAgger round's shard is missing and no learner was given.
    """
    folder = round_folder(root, round_, episodes, config,
                          learner_checksum if round_ > 0 else None, beta if round_ > 0 else 1.0)
    shards = plan_round(round_, episodes, config)
    for stale in folder.glob(".shard-*.tmp"):     # left by a collection killed mid-write
        stale.unlink(missing_ok=True)
    bar = tqdm(total=episodes, desc="expert data" if round_ == 0 else f"DAgger round {round_}",
               unit="episode", disable=not progress, leave=False)
    loaded: list[ExpertDataset] = []
    collected = 0
    seconds = 0.0
    with torch_threads(1):                      # small per-tick tensors: one thread is fastest
        for spec in shards:
            path = folder / spec.filename
            stored = load_shard(path)
            if stored is None:
                if max_shards is not None and collected >= max_shards:
                    break
                if round_ > 0 and learner is None:
                    raise MissingShardError(path, f"shard {spec.index} of DAgger round "
                                                  f"{round_} is missing and no learner "
                                                  "was given to collect it")
                started = time.perf_counter()
                data = collect_shard(spec, config, learner=learner, beta=beta,
                                     on_episode=bar.update)     # a fresh expert per shard
                seconds += time.perf_counter() - started
                meta = {"version": DATA_VERSION, "shard": asdict(spec),
                        "seeds": [spec.seeds(config.seed)[0], spec.seeds(config.seed)[-1]],
                        "learner": learner_checksum, "beta": beta, "frames": len(data),
                        "seconds": round(time.perf_counter() - started, 2)}
                save_shard(path, data, meta)
                collected += 1
            else:
                data, meta = stored
                bar.update(spec.episodes)
            loaded.append(data)
    bar.close()
    dataset = ExpertDataset.concat(loaded) if loaded else empty_dataset(config.sensors)
    description = {"round": round_, "folder": str(folder), "episodes": episodes,
                   "shards": len(shards), "shards_on_disk": len(loaded),
                   "complete": len(loaded) == len(shards), "beta": beta,
                   "learner": learner_checksum, "collect_seconds": round(seconds, 1),
                   "seed_range": [IMITATION_SEED_BASE + config.seed * SEED_STRIDE
                                  + round_ * ROUND_STRIDE,
                                  IMITATION_SEED_BASE + config.seed * SEED_STRIDE
                                  + round_ * ROUND_STRIDE + episodes - 1],
                   **dataset.summary()}
    return dataset, description
