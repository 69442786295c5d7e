"""Imitation learning of the end-to-end policies from the staged stack: BC, then DAgger.

    config = ImitationConfig(policy="gru", method="dagger", episodes=1000, dagger_rounds=2)
    result = train_imitation(config, "runs/train-gru", command="reflexdrive train ...")

Pipeline (`train_imitation`), every step resumable:

1. Data (`reflexdrive.train.expert_data`): the staged stack (oracle perception) drives a
   seeded mixture of highway / lead-brake / cut-in / stopped-vehicle episodes on the
   batched backend; every tick is recorded (bev, ego, expert action, episode starts) in
   shards under `OUT/data/`.
2. Behaviour cloning (phase "bc", `epochs` passes): minimise the (weighted) MSE or Huber
   loss between the policy's action and the expert's, both mapped to `[-1, 1]` per
   dimension by the policy head's bounds (`ActionHead.to_unit`), each dimension's term
   weighted (`action_weights`: steering far more, the expert steers very little). Adam,
   gradient-norm clipping, cosine learning rate per phase.
   Feed-forward policies (`cnn`, `transformer`) learn from shuffled frames; recurrent
   ones (`gru`, `lstm`) from windows of `sequence_length` consecutive ticks of one stream
   of episodes (truncated BPTT), each preceded by up to `burn_in` ticks of the same
   episode that warm the state up without counting in the loss; the state is reset
   wherever an episode starts (`episode_start`), exactly as at inference. Two guards
   against what the expert's data teaches wrongly: the ego's last command (an input)
   is shuffled across the minibatch while learning, or the policy learns to copy it
   (`command_inputs`), and steering counts only above `steer_min_speed_mps`, below
   which the expert's steering chatters between its bounds.
3. DAgger (`method="dagger"`, rounds 1..`dagger_rounds`): the policy drives
   `dagger_episodes` episodes (the expert's action instead with probability
   `beta_r = dagger_beta * dagger_beta_decay ** (r - 1)` per env and tick), the expert
   labels every visited state, the frames join the dataset, and the policy is fine-tuned
   on everything for `dagger_epochs` passes (phase "dagger-r").

Validation: whole episodes, chosen by a hash of (seed, episode id), `val_fraction` of them;
the loss on (at most `val_samples` of) them is logged every `eval_every` updates.

Logs go to TensorBoard (`OUT/tensorboard`). Every `checkpoint_every` updates and at the
end of each phase, the training state is written atomically: `OUT/state/train_state.pt`
(weights, Adam's state, the torch RNG, the position in the phase, the history; plain
tensors and containers, read back with `torch.load(weights_only=True)`) and
`OUT/state/last.pt` (a policy checkpoint of the current weights). A killed training
started again with `resume=True` (`--resume`) continues from the last one: batches are
drawn in an order that is a function of (seed, phase, epoch) only, so the result is the
one an uninterrupted run gives (bit for bit on the CPU). The final policy checkpoint holds
the command line, the config, the data's description, the metrics and the loss history.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from reflexdrive.agents.end_to_end import EndToEndAgent, policy_spec
from reflexdrive.common.devices import DEVICES, resolve_device
from reflexdrive.common.files import atomic_write
from reflexdrive.common.validation import ConfigError, check_choice, check_real
from reflexdrive.envs.config import EGO_FEATURES, MODES, SensorConfig
from reflexdrive.envs.latency import parse_latency
from reflexdrive.train.expert_data import (
    DEFAULT_WEIGHTS,
    MAX_ROUND,
    MAX_SEED,
    ROUND_STRIDE,
    SCENARIOS,
    CollectionConfig,
    ExpertDataset,
    MissingShardError,
    collect_round,
    episodes_for_frames,
)
from reflexdrive.policies.checkpoint import (
    CheckpointError,
    checksum,
    library_versions,
    load_checkpoint,
)
from reflexdrive.policies.networks import DrivingPolicy
from reflexdrive.policies.registry import (
    POLICIES,
    build,
    load_policy,
    recurrent_from_cnn,
    save_policy,
)
from reflexdrive.run.results import prepare_out_dir, write_json

METHODS = ("bc", "dagger")
"""Imitation methods (`--method ppo` is `reflexdrive.train.ppo`'s)."""

LOSSES = ("mse", "huber")
"""Behaviour-cloning losses on the normalised action."""

COMMAND_INPUTS = ("shuffle", "keep")
"""What training shows of the ego's previous command (`ImitationConfig.command_inputs`)."""

COMMAND_FEATURES = tuple(EGO_FEATURES.index(name)
                         for name in ("acceleration_mps2", "steering_rad"))
"""Columns of `ego` that hold the previous command (applied acceleration, steering)."""

HUBER_DELTA = 0.1
"""Where the Huber loss turns linear, in normalised action units (1 = half the range)."""

STATE_FORMAT = "reflexdrive-imitation-state"
STATE_VERSION = 1


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(name, value, "must be an integer")
    if value < low or (high is not None and value > high):
        raise ConfigError(name, value, f"must be an integer >= {low}" if high is None
                          else f"must be an integer in [{low}, {high}]")


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConfigError(name, value, "must be a number")


@dataclass(frozen=True)
class ImitationConfig:
    """Settings of `train_imitation` (validated on construction; errors name the field).

    Attributes:
        policy: the network: cnn, gru, lstm, transformer.
        method: "bc" (behaviour cloning) or "dagger" (BC, then DAgger rounds).
        episodes: expert episodes of the dataset (round 0); ignored when `frames` is set.
        frames: about this many expert frames instead (full-length episodes of the mix:
            `expert_data.episodes_for_frames`); None: use `episodes`.
        scenario_weights: `{scenario: weight}` of the mixture over highway, lead-brake, cut-in,
            stopped-vehicle (weights >= 0, not all 0; missing scenarios weigh 0).
        envs: worlds simulated side by side while collecting (batch size of the expert).
        shard_episodes: most episodes per data shard.
        mode: the clock while collecting: "lockstep" (default) or "realtime".
        latency: the clock's latency model while collecting (default "fixed:0").
        epochs: passes over the expert data in the BC phase (0: no BC phase, e.g. after
            `init`).
        batch_size: frames per update (cnn, transformer).
        sequence_length: ticks per training window (gru, lstm), the truncated-BPTT length.
        burn_in: ticks of the same episode before a window that warm its state up
            without counting in the loss (gru, lstm).
        sequence_batch: windows per update (gru, lstm).
        lr: Adam's learning rate at the start of each phase (cosine down to
            `lr * lr_final`).
        lr_final: the learning rate at a phase's end, as a fraction of `lr`.
        weight_decay: Adam's L2 penalty.
        grad_clip: gradient-norm clip (0: none).
        loss: "mse" or "huber" (`HUBER_DELTA`), on actions mapped to [-1, 1].
        action_weights: `(acceleration, steering)` weights of the loss's two terms. The
            expert steers very little (std ~0.001 rad on Highway, 0.002 in [-1, 1] units,
            against 0.065 for the acceleration), yet a bias of 0.001 rad drifts the car
            out of its lane within seconds: the default weighs steering 200 times.
        steer_min_speed_mps: the steering term counts only on frames where the ego is at
            least this fast [m/s]. Below ~6 m/s (stopped or creeping behind a braking or
            stopped car) the expert's pure-pursuit steering chatters between the bounds
            from tick to tick (|steer| > 0.05 rad on 93% of its frames below 0.5 m/s,
            22% at 4-6 m/s, 1% at 6-10 m/s): noise that would swamp the weighted loss,
            on frames where steering hardly moves the car.
        command_inputs: what the policy is shown of the ego's previous command while it
            learns (`ego`'s `acceleration_mps2` and `steering_rad`: the command applied
            last tick). "keep": the recorded values. "shuffle" (default): each sample
            gets those of another sample of its minibatch (windows keep their own time
            order), so they tell nothing of the label. In the expert's data the last
            command predicts the next one almost perfectly, and a policy trained on it
            copies its own last command instead of reading the road (the copycat
            problem): it brakes for a braking lead only if it braked already, i.e.
            never (measured: BC gru and cnn, lead-brake, 50-100% collisions).
        val_fraction: share of the episodes held out for validation.
        val_samples: most frames (windows for gru / lstm) of a validation pass.
        dagger_rounds: DAgger rounds (method "dagger").
        dagger_episodes: episodes the learner drives per round.
        dagger_epochs: passes over the aggregated data after each round.
        dagger_beta: probability that the expert's action is executed in round 1.
        dagger_beta_decay: factor on that probability per further round.
        eval_every: updates between validation passes.
        checkpoint_every: updates between training-state checkpoints.
        seed: seeds the data (scenario seeds), the weights, the split and the batch order
            (0..`expert_data.MAX_SEED`).
        device: "cpu" (default), "cuda" or "auto" for training and the learner's driving.
        threads: torch CPU threads for training.
        policy_config: the network's config fields (`policies.registry.build`), e.g.
            `{"hidden_size": 64}`.
        init: a policy checkpoint to start from (fine-tuning); its architecture is used.
            For `gru` / `lstm` it may hold a `cnn`: a warm start
            (`policies.registry.recurrent_from_cnn`: the cnn's encoder and head, the
            recurrent output's weights at zero, so training starts from the cnn's
            driving).
    """

    policy: str = "cnn"
    method: str = "bc"
    episodes: int = 1000
    frames: int | None = None
    scenario_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS))
    envs: int = 256
    shard_episodes: int = 256
    mode: str = "lockstep"
    latency: str = "fixed:0"
    epochs: int = 4
    batch_size: int = 128
    sequence_length: int = 32
    burn_in: int = 8
    sequence_batch: int = 8
    lr: float = 1e-3
    lr_final: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    loss: str = "mse"
    action_weights: tuple[float, float] = (1.0, 200.0)
    steer_min_speed_mps: float = 6.0
    command_inputs: str = "shuffle"
    val_fraction: float = 0.05
    val_samples: int = 2048
    dagger_rounds: int = 2
    dagger_episodes: int = 250
    dagger_epochs: int = 2
    dagger_beta: float = 0.5
    dagger_beta_decay: float = 0.5
    eval_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    policy_config: Mapping[str, Any] = field(default_factory=dict)
    init: str | None = None

    def __post_init__(self) -> None:
        check_choice("policy", self.policy, tuple(POLICIES))
        check_choice("method", self.method, METHODS)
        check_choice("mode", self.mode, MODES)
        check_choice("loss", self.loss, LOSSES)
        check_choice("device", self.device, DEVICES)
        check_choice("command_inputs", self.command_inputs, COMMAND_INPUTS)
        for name, low, high in (("episodes", 1, ROUND_STRIDE - 1), ("envs", 1, 65_536),
                                ("shard_episodes", 1, ROUND_STRIDE - 1), ("epochs", 0, 10_000),
                                ("batch_size", 1, 65_536), ("sequence_length", 1, 10_000),
                                ("burn_in", 0, 10_000), ("sequence_batch", 1, 65_536),
                                ("val_samples", 1, 10_000_000),
                                ("dagger_rounds", 0, MAX_ROUND),
                                ("dagger_episodes", 1, ROUND_STRIDE - 1),
                                ("dagger_epochs", 0, 10_000), ("eval_every", 1, None),
                                ("checkpoint_every", 1, None), ("seed", 0, MAX_SEED),
                                ("threads", 1, 1024)):
            _check_int(name, getattr(self, name), low, high)
        if self.frames is not None:
            _check_int("frames", self.frames, 1, None)
        for name, low, high, low_inclusive in (
                ("lr", 0.0, 1.0, False), ("lr_final", 0.0, 1.0, True),
                ("weight_decay", 0.0, 1.0, True), ("grad_clip", 0.0, None, True),
                ("val_fraction", 0.0, 0.5, True), ("dagger_beta", 0.0, 1.0, True),
                ("steer_min_speed_mps", 0.0, 100.0, True),
                ("dagger_beta_decay", 0.0, 1.0, True)):
            _check_number(name, getattr(self, name))
            check_real(name, getattr(self, name), low, high, low_inclusive=low_inclusive)
        weights = self.scenario_weights
        if not isinstance(weights, Mapping) or not weights:
            raise ConfigError("scenario_weights", weights, "must be a non-empty {scenario: "
                              "weight} dict over " + ", ".join(SCENARIOS))
        for name, weight in weights.items():
            check_choice("scenario_weights", name, SCENARIOS)
            _check_number(f"scenario_weights.{name}", weight)
            check_real(f"scenario_weights.{name}", weight, 0.0, None)
        if not sum(float(w) for w in weights.values()) > 0.0:
            raise ConfigError("scenario_weights", dict(weights),
                              "at least one weight must be > 0")
        object.__setattr__(self, "scenario_weights", {
            name: float(weights[name]) for name in SCENARIOS if name in weights})
        if (not isinstance(self.action_weights, (tuple, list)) or len(self.action_weights) != 2
                or not all(isinstance(w, (int, float)) and not isinstance(w, bool)
                           and math.isfinite(w) and w >= 0 for w in self.action_weights)
                or not sum(self.action_weights) > 0):
            raise ConfigError("action_weights", self.action_weights,
                              "must be two numbers >= 0 (acceleration, steering), not both 0")
        object.__setattr__(self, "action_weights", tuple(float(w) for w in self.action_weights))
        parse_latency(self.latency)
        if not isinstance(self.policy_config, Mapping):
            raise ConfigError("policy_config", self.policy_config,
                              "must be a dict of the policy's config fields")
        try:
            json.dumps(dict(self.policy_config))
        except (TypeError, ValueError):
            raise ConfigError("policy_config", self.policy_config, "must be JSON-able") from None
        if self.init is not None:
            if self.policy_config:
                raise ConfigError("policy_config", dict(self.policy_config),
                                  "must be empty with init: the architecture is the "
                                  "checkpoint's")
            if not Path(self.init).is_file():
                raise ConfigError("init", self.init, "must be an existing policy checkpoint")
        else:
            try:
                build(self.policy, policy_spec()["observation"], **self.policy_config)
            except ValueError as error:
                raise ConfigError("policy_config", dict(self.policy_config), str(error)) \
                    from None

    # -- derived ---------------------------------------------------------------------------

    @property
    def rounds(self) -> int:
        """DAgger rounds that run (0 for behaviour cloning)."""
        return self.dagger_rounds if self.method == "dagger" else 0

    @property
    def expert_episodes(self) -> int:
        """Episodes of the expert's data (from `frames` when given)."""
        if self.frames is None:
            return self.episodes
        return min(episodes_for_frames(self.frames, tuple(self.scenario_weights.items())),
                   ROUND_STRIDE - 1)

    def beta(self, round_: int) -> float:
        """Probability that the expert's action is executed in DAgger round `round_`."""
        return float(self.dagger_beta * self.dagger_beta_decay ** (round_ - 1))

    def collection(self) -> CollectionConfig:
        return CollectionConfig(envs=self.envs, shard_episodes=self.shard_episodes,
                                mode=self.mode, latency=self.latency,
                                weights=tuple(self.scenario_weights.items()), seed=self.seed,
                                sensors=SensorConfig())

    def phases(self) -> list[tuple[str, int]]:
        """`(name, epochs)` of each training phase: "bc", then "dagger-1", ..."""
        return [("bc", self.epochs)] + [(f"dagger-{r}", self.dagger_epochs)
                                        for r in range(1, self.rounds + 1)]

    def identity(self) -> dict[str, Any]:
        """The settings that determine the result (a resumed run must have them equal)."""
        identity = json.loads(json.dumps(asdict(self)))
        for name in ("device", "threads", "eval_every", "checkpoint_every"):
            identity.pop(name)
        return identity


# ----------------------------------------------------------------------------- samples


def _unit_hash(ids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per id (SplitMix64 of id and seed)."""
    with np.errstate(over="ignore"):
        x = ids.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2 ** 53)


def split_episodes(data: ExpertDataset, val_fraction: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """`(train_rows, val_rows)`: whole episodes, an episode in validation when the hash of
    (seed, its id) is below `val_fraction` (so the split of an episode never changes as
    DAgger rounds add data). With at least two episodes and `val_fraction > 0`, at least
    one is held out and at least one trains."""
    episodes = data.episodes
    draw = _unit_hash(episodes, seed)
    held = draw < val_fraction
    if val_fraction > 0 and len(episodes) >= 2:
        if not held.any():
            held[np.argmin(draw)] = True
        if held.all():
            held[np.argmax(draw)] = False
    in_val = np.isin(data.episode, episodes[held])
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


@dataclass(frozen=True)
class Samples:
    """Training samples over rows of an `ExpertDataset`.

    Attributes:
        rows: frames: `(S,)` row indices; windows: `(S, W)` row indices, -1 for padding.
        counts: windows only: `(S, W)` bool, the steps whose loss counts (not padding,
            not burn-in).
    """

    rows: np.ndarray
    counts: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def windows(self) -> bool:
        return self.rows.ndim == 2


def frame_samples(rows: np.ndarray) -> Samples:
    """Every row a sample (feed-forward policies)."""
    return Samples(np.asarray(rows, dtype=np.int64))


def window_samples(data: ExpertDataset, rows: np.ndarray, length: int, burn_in: int
                   ) -> Samples:
    """Windows for truncated BPTT over `rows` (whole episodes, in dataset order).

    The rows form one stream of consecutive episodes; it is cut into chunks of `length`
    steps (each step in exactly one chunk), and each chunk is preceded by up to `burn_in`
    steps of its own episode (the stream is not crossed into the previous episode). A
    window is `(burn_in + length,)` row indices, padded with -1 in front (short burn-in)
    or behind (the stream's last chunk).
    """
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    width = burn_in + length
    if n == 0:
        return Samples(np.zeros((0, width), np.int64), np.zeros((0, width), bool))
    start = data.episode_start[rows].copy()
    start[0] = True
    start[1:] |= data.episode[rows[1:]] != data.episode[rows[:-1]]
    episode_first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    chunk = np.arange(0, n, length)
    context = np.maximum(chunk - burn_in, episode_first[chunk])
    offsets = np.arange(width) - burn_in                  # relative to the chunk's start
    positions = chunk[:, None] + offsets[None, :]
    valid = (positions >= context[:, None]) & (positions < n)
    counts = valid & (offsets[None, :] >= 0)
    window_rows = np.where(valid, rows[np.clip(positions, 0, n - 1)], -1)
    return Samples(window_rows, counts)


def _starts(data: ExpertDataset, rows: np.ndarray) -> np.ndarray:
    """`(S, W)` episode-start flags of windows: the data's, and each window's first row."""
    real = rows >= 0
    flags = np.where(real, data.episode_start[np.clip(rows, 0, None)], False)
    first = real & ~np.concatenate([np.zeros((len(rows), 1), bool), real[:, :-1]], axis=1)
    return flags | first


# ----------------------------------------------------------------------------- training


def cosine_lr(step: int, total: int, lr: float, final: float) -> float:
    """Learning rate after `step` of `total` updates: `lr` cosine-annealed to
    `lr * final`."""
    if total <= 1:
        return lr
    progress = min(step, total) / total
    return lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))


class BehaviourCloning:
    """Fits a `DrivingPolicy` to expert actions; resumable (`state_dict`).

    Attributes:
        policy: the network (on `device`, train mode).
        optimizer: Adam over its parameters.
        phase: index of the phase in progress (`len(config.phases())` when all are done).
        phase_step: updates done in that phase.
        global_step: updates done in all phases.
        epoch_sums: running sums of the current epoch's losses (for its mean).
        history: one dict per finished epoch: phase, epoch, step, train and val losses.
        rounds: DAgger rounds collected: `{str(r): {"learner": checksum, "beta": b}}`.
    """

    def __init__(self, policy: DrivingPolicy, config: ImitationConfig,
                 device: torch.device | str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.policy = policy.to(self.device).train()
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr,
                                          weight_decay=config.weight_decay)
        self.phase = 0
        self.phase_step = 0
        self.global_step = 0
        self.epoch_sums: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.rounds: dict[str, dict[str, Any]] = {}
        weights = torch.tensor(config.action_weights, dtype=torch.float32)
        self._weights = weights.to(self.device)

    # -- batches ---------------------------------------------------------------------------

    def _obs(self, data: ExpertDataset, rows: np.ndarray) -> dict[str, torch.Tensor]:
        safe = np.clip(rows, 0, None)
        bev = torch.from_numpy(data.frames_bev(safe)).to(self.device)
        ego = torch.from_numpy(data.ego[safe]).to(self.device)
        obs = {"bev": bev, "ego": ego}
        if "lidar" in self.policy.obs_keys:
            obs["lidar"] = torch.from_numpy(data.lidar[safe]).to(self.device)
        return obs

    def predict(self, data: ExpertDataset, samples: Samples, index: np.ndarray,
                shuffle: np.random.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(predicted, expert, counts)` for samples `index`: the actions, `(n, 2)` (frames)
        or `(W, n, 2)` (windows) float32, and where each dimension's error counts, bool of
        the same shape (not padding or burn-in; steering only at
        `steer_min_speed_mps` and above). With `shuffle`, the previous-command inputs
        are permuted across the samples (see `ImitationConfig.command_inputs`)."""
        rows = samples.rows[index]
        safe = np.clip(rows, 0, None)
        expert = torch.from_numpy(data.action[safe]).to(self.device)
        fast = data.ego[safe, 0] >= self.config.steer_min_speed_mps
        obs = self._obs(data, rows)
        if shuffle is not None and len(rows) > 1:
            order = torch.from_numpy(shuffle.permutation(len(rows))).to(self.device)
            columns = list(COMMAND_FEATURES)
            ego = obs["ego"].clone()
            ego[..., columns] = obs["ego"][order][..., columns]
            obs["ego"] = ego
        if not samples.windows:
            action, _ = self.policy(obs)
            counts = np.ones(len(rows), dtype=bool)
        else:
            obs = {key: value.transpose(0, 1) for key, value in obs.items()}
            starts = torch.from_numpy(_starts(data, rows)).to(self.device).transpose(0, 1)
            action, _ = self.policy.forward_sequence(obs, None, starts)
            counts = samples.counts[index]
            expert = expert.transpose(0, 1)
            fast, counts = fast.T, counts.T
        mask = torch.from_numpy(np.stack([counts, counts & fast], axis=-1)).to(self.device)
        return action, expert, mask

    def loss(self, predicted: torch.Tensor, expert: torch.Tensor, counts: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted loss on normalised actions, and each dimension's mean term over
        the steps where it counts (`counts`, bool like `predicted`)."""
        head = self.policy.head
        error = head.to_unit(predicted) - head.to_unit(expert)
        if self.config.loss == "huber":
            per = F.huber_loss(error, torch.zeros_like(error), reduction="none",
                               delta=HUBER_DELTA)
        else:
            per = error.square()
        mask = counts.to(per.dtype).reshape(-1, 2)
        terms = (per.reshape(-1, 2) * mask).sum(0) / mask.sum(0).clamp(min=1.0)
        return (terms * self._weights).sum(), {"accel": terms[0], "steer": terms[1]}

    # -- updates and validation ------------------------------------------------------------

    def update(self, data: ExpertDataset, samples: Samples, index: np.ndarray, lr: float
               ) -> dict[str, float]:
        """One Adam step on samples `index` at learning rate `lr`; the losses."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        shuffle = (np.random.default_rng([self.config.seed, 23, self.global_step])
                   if self.config.command_inputs == "shuffle" else None)
        predicted, expert, counts = self.predict(data, samples, index, shuffle)
        loss, terms = self.loss(predicted, expert, counts)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}

    @torch.no_grad()
    def evaluate(self, data: ExpertDataset, samples: Samples, batch: int) -> dict[str, float]:
        """Mean losses over `samples`, and the RMSE of each command in its own units
        (`accel_rmse_mps2`, `steer_rmse_rad`)."""
        if not len(samples):
            return {}
        self.policy.eval()
        sums = {"loss": 0.0, "accel": 0.0, "steer": 0.0}
        squared = torch.zeros(2, dtype=torch.float64)
        steps = torch.zeros(2, dtype=torch.float64)
        for begin in range(0, len(samples), batch):
            index = np.arange(begin, min(begin + batch, len(samples)))
            predicted, expert, counts = self.predict(data, samples, index)
            loss, terms = self.loss(predicted, expert, counts)
            mask = counts.reshape(-1, 2).to(torch.float64).cpu()
            n = mask.sum(0)
            steps += n
            sums["loss"] += float(loss) * float(n[0])
            sums["accel"] += float(terms["accel"]) * float(n[0])
            sums["steer"] += float(terms["steer"]) * float(n[1])
            error = (predicted - expert).reshape(-1, 2).double().cpu()
            squared += (error.square() * mask).sum(0)
        self.policy.train()
        rmse = (squared / steps.clamp(min=1.0)).sqrt()
        count = steps.clamp(min=1.0)
        return {"loss": sums["loss"] / float(count[0]), "accel": sums["accel"] / float(count[0]),
                "steer": sums["steer"] / float(count[1]),
                "accel_rmse_mps2": float(rmse[0]), "steer_rmse_rad": float(rmse[1])}

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything to resume, as tensors and plain containers (`weights_only`-loadable)."""
        return {"format": STATE_FORMAT, "version": STATE_VERSION,
                "identity": json.dumps(self.config.identity(), sort_keys=True),
                "phase": self.phase, "phase_step": self.phase_step,
                "global_step": self.global_step,
                "model": {k: v.detach().cpu().clone() for k, v in
                          self.policy.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                "epoch_sums": dict(self.epoch_sums), "history": json.dumps(self.history),
                "rounds": json.dumps(self.rounds)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.policy.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.phase = int(state["phase"])
        self.phase_step = int(state["phase_step"])
        self.global_step = int(state["global_step"])
        self.epoch_sums = {k: float(v) for k, v in state["epoch_sums"].items()}
        self.history = json.loads(state["history"])
        self.rounds = json.loads(state["rounds"])


def load_train_state(path: Path) -> dict[str, Any]:
    """Read `train_state.pt` with `torch.load(weights_only=True)`; CheckpointError if it is
    damaged or not a training state."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:                 # truncated, corrupt, refused pickle
        detail = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise CheckpointError(path, f"unreadable training state ({detail}); start a new --out"
                                    " or delete it") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(path, "not a reflexdrive imitation training state")
    if state.get("version") != STATE_VERSION:
        raise CheckpointError(path, f"training state version {state.get('version')!r} is not "
                                    f"supported (this code reads {STATE_VERSION})")
    return state


class _Killed(Exception):
    """Raised by `kill_after_updates` (tests): the run stops as if killed."""


# ----------------------------------------------------------------------------- pipeline


@dataclass
class _Run:
    """What a running `train_imitation` writes to."""

    out: Path
    config: ImitationConfig
    trainer: BehaviourCloning
    writer: Any
    command: str
    log: Callable[[str], None]
    progress: bool
    kill_after: int | None
    updates: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def state_path(self) -> Path:
        return self.out / "state" / "train_state.pt"

    def save(self) -> None:
        """Write the training state and `last.pt` (both atomically)."""
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        state = self.trainer.state_dict()
        atomic_write(self.state_path, lambda stream: torch.save(state, stream), mode="wb")
        save_policy(self.out / "state" / "last.pt", self.trainer.policy, policy_spec(),
                    {"command": self.command, "phase": self.trainer.phase,
                     "phase_step": self.trainer.phase_step,
                     "global_step": self.trainer.global_step, "metrics": self.metrics})


def _validation_sets(data: ExpertDataset, val_rows: np.ndarray, config: ImitationConfig,
                     recurrent: bool) -> dict[str, Samples]:
    """Validation samples of the expert's data ("expert") and of DAgger rounds
    ("dagger"), each at most `config.val_samples` (a seeded subset)."""
    sets = {}
    for name, rows in (("expert", val_rows[data.round[val_rows] == 0]),
                       ("dagger", val_rows[data.round[val_rows] > 0])):
        if not len(rows):
            continue
        samples = (window_samples(data, rows, config.sequence_length, config.burn_in)
                   if recurrent else frame_samples(rows))
        if len(samples) > config.val_samples:
            keep = np.sort(np.random.default_rng([config.seed, 3]).permutation(
                len(samples))[:config.val_samples])
            samples = Samples(samples.rows[keep],
                              None if samples.counts is None else samples.counts[keep])
        sets[name] = samples
    return sets


def _run_phase(run: _Run, index: int, name: str, epochs: int, data: ExpertDataset) -> None:
    """Train phase `index` from where the trainer stands to its end."""
    config, trainer = run.config, run.trainer
    recurrent = trainer.policy.is_recurrent
    train_rows, val_rows = split_episodes(data, config.val_fraction, config.seed)
    samples = (window_samples(data, train_rows, config.sequence_length, config.burn_in)
               if recurrent else frame_samples(train_rows))
    validation = _validation_sets(data, val_rows, config, recurrent)
    size = config.sequence_batch if recurrent else config.batch_size
    per_epoch = math.ceil(len(samples) / size)
    total = epochs * per_epoch
    eval_batch = max(1, 256 // config.sequence_length) if recurrent else 256
    if trainer.phase_step == 0:
        run.log(f"phase {name}: {len(train_rows)} training frames "
                f"({len(samples)} {'windows' if recurrent else 'frames'}), {len(val_rows)} "
                f"validation frames, {epochs} epochs of {per_epoch} updates")
    run.writer.add_scalar(f"data/frames_{name}", len(data), trainer.global_step)

    def validate() -> dict[str, float]:
        results = {}
        for part, part_samples in validation.items():
            result = trainer.evaluate(data, part_samples, eval_batch)
            for key, value in result.items():
                run.writer.add_scalar(f"val_{part}/{key}", value, trainer.global_step)
            results[part] = result
        return results

    bar = tqdm(total=total, initial=trainer.phase_step, desc=f"{name}", unit="update",
               disable=not run.progress, leave=False)
    order: np.ndarray | None = None
    order_epoch = -1
    try:
        while trainer.phase_step < total:
            epoch, k = divmod(trainer.phase_step, per_epoch)
            if epoch != order_epoch:
                order = np.random.default_rng([config.seed, index, epoch, 5]).permutation(
                    len(samples))
                order_epoch = epoch
            lr = cosine_lr(trainer.phase_step, total, config.lr, config.lr_final)
            losses = trainer.update(data, samples, order[k * size:(k + 1) * size], lr)
            trainer.phase_step += 1
            trainer.global_step += 1
            run.updates += 1
            sums = trainer.epoch_sums
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            sums["updates"] = sums.get("updates", 0.0) + 1
            step = trainer.global_step
            for key, value in losses.items():
                run.writer.add_scalar(f"train/{key}", value, step)
            run.writer.add_scalar("train/lr", lr, step)
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / sums['updates']:.4f}")
            if trainer.phase_step % per_epoch == 0 or trainer.phase_step == total:
                val = validate()
                entry = {"phase": name, "epoch": epoch + 1, "step": step,
                         **{f"train_{key}": round(value / sums["updates"], 6)
                            for key, value in sums.items() if key != "updates"},
                         **{f"val_{part}_{key}": round(value, 6)
                            for part, result in val.items() for key, value in result.items()}}
                trainer.history.append(entry)
                trainer.epoch_sums = {}
                run.metrics = {"phase": name, "epoch": epoch + 1, "step": step, "val": val}
                run.log(f"{name} epoch {epoch + 1}/{epochs}: train loss "
                        f"{entry.get('train_loss', float('nan')):.5f}" + "".join(
                            f", val {part} loss {result['loss']:.5f} (accel rmse "
                            f"{result['accel_rmse_mps2']:.3f} m/s^2, steer rmse "
                            f"{result['steer_rmse_rad']:.4f} rad)"
                            for part, result in val.items()))
            elif step % config.eval_every == 0:
                validate()
            if step % config.checkpoint_every == 0:
                run.save()
            if run.kill_after is not None and run.updates >= run.kill_after:
                raise _Killed
    finally:
        bar.close()
    run.writer.flush()


def train_imitation(config: ImitationConfig, out: str | Path,
                    checkpoint: str | Path | None = None, *, command: str = "",
                    resume: bool = False, progress: bool = True,
                    log: Callable[[str], None] = print, max_shards: int | None = None,
                    kill_after_updates: int | None = None) -> dict[str, Any]:
    """Collect (or reuse) the expert's data, clone it, run the DAgger rounds, save the
    policy.

    Args:
        config: the settings.
        out: working folder: `data/` (shards, reused by any run with the same data
            settings), `tensorboard/`, `state/` (resumable training state and `last.pt`),
            `config.json`, and the default checkpoint location.
        checkpoint: where to write the final policy (default `OUT/<policy>.pt`).
        command: the command line that ran this (stored in the checkpoints).
        resume: continue the training whose state is in `OUT/state/` (it must have been
            started with the same settings). Without it, a folder holding a training
            state is refused.
        progress: show progress bars.
        log: where to print one-line summaries.
        max_shards: tests: collect at most this many new shards per round, then stop
            (as a killed collection would).
        kill_after_updates: tests: stop after this many updates, as if killed (nothing is
            saved beyond the periodic checkpoints).

    Returns:
        {"checkpoint": path or None when stopped early, "stopped": bool, "metrics",
         "history", "data": per-round descriptions, "seconds": {...}, "global_step"}.

    Raises:
        ConfigError: the folder holds another run's state (or one without `resume`), a
            bad `init` checkpoint.
    """
    started = time.perf_counter()
    out = prepare_out_dir(out)
    final_path = Path(checkpoint) if checkpoint is not None else out / f"{config.policy}.pt"
    state_path = out / "state" / "train_state.pt"
    state = None
    if state_path.exists():
        if not resume:
            raise ConfigError("--out", str(out), "holds a training state (state/train_state.pt)"
                              "; pass --resume to continue it, or use a new --out")
        state = load_train_state(state_path)
        if json.loads(state["identity"]) != json.loads(json.dumps(config.identity(),
                                                                  sort_keys=True)):
            raise ConfigError("--out", str(out), "holds a training run with different "
                              "settings (see its config.json); use a new --out")
    write_json(out / "config.json", {"config": asdict(config), "command": command})
    device = resolve_device(config.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    from torch.utils.tensorboard import SummaryWriter

    writer = None
    try:
        torch.manual_seed(config.seed)
        policy = _initial_policy(config)
        trainer = BehaviourCloning(policy, config, device)
        if state is not None:
            trainer.load_state_dict(state)
            log(f"resuming at phase {trainer.phase}, update {trainer.global_step}")
        writer = SummaryWriter(str(out / "tensorboard"),
                               purge_step=trainer.global_step if state is not None else None)
        run = _Run(out, config, trainer, writer, command, log, progress, kill_after_updates)
        collection = config.collection()
        data_root = out / "data"
        rounds: list[ExpertDataset] = []
        descriptions: list[dict[str, Any]] = []
        data_seconds = 0.0
        phases = config.phases()
        for index, (name, epochs) in enumerate(phases):
            clock = time.perf_counter()
            if index == 0:
                data, description = collect_round(0, config.expert_episodes, collection,
                                                  data_root, progress=progress,
                                                  max_shards=max_shards)
            else:
                data, description = _dagger_round(run, index, collection, data_root,
                                                  max_shards)
            data_seconds += time.perf_counter() - clock
            descriptions.append(description)
            if not description["complete"]:
                log(f"stopped: round {index} has {description['shards_on_disk']} of "
                    f"{description['shards']} shards; run again to resume")
                return _stopped(run, descriptions, started, data_seconds)
            if index == 0 or trainer.phase == index:
                log(f"data round {index}: {description['frames']} frames, "
                    f"{description['episodes']} episodes ({description['collect_seconds']} s "
                    f"collecting) in {description['folder']}")
            rounds.append(data)
            if trainer.phase > index:
                continue                                   # done before a resume
            if epochs > 0:
                try:
                    _run_phase(run, index, name, epochs, ExpertDataset.concat(rounds))
                except _Killed:
                    return _stopped(run, descriptions, started, data_seconds)
            trainer.phase, trainer.phase_step = index + 1, 0
            run.save()
        seconds = {"data": round(data_seconds, 1),
                   "total": round(time.perf_counter() - started, 1)}
        seconds["train"] = round(seconds["total"] - seconds["data"], 1)
        meta = {"command": command, "init": _lineage(config.init),
                "training": json.loads(json.dumps(asdict(config))),
                "data": descriptions, "metrics": run.metrics or _last_metrics(trainer),
                "history": trainer.history, "global_step": trainer.global_step,
                "seconds": seconds, "device": str(device),
                "versions": {**library_versions(), "reflexdrive": _version()},
                "created_unix_s": round(time.time())}
        save_policy(final_path, trainer.policy, policy_spec(), meta)
        log(f"wrote {final_path} ({final_path.stat().st_size / 1e6:.2f} MB)")
        return {"checkpoint": str(final_path), "stopped": False, "metrics": meta["metrics"],
                "history": trainer.history, "data": descriptions, "seconds": seconds,
                "global_step": trainer.global_step}
    finally:
        if writer is not None:
            writer.close()
        torch.set_num_threads(threads)


def _lineage(init: str | None) -> dict[str, Any] | None:
    """How the `init` checkpoint was made: `{"path", "weights" (`checksum` of its
    weights), "command", "init"}`, its own
    `init` nested the same way, so a fine-tuned checkpoint records every command that led
    to it (None without `init`; `"missing": True` when the file is gone by now)."""
    if init is None:
        return None
    try:
        parent = load_checkpoint(init, kind="policy")
    except CheckpointError:
        return {"path": str(init), "missing": True}
    return {"path": str(init), "weights": checksum(parent.state_dict),
            "command": parent.meta.get("command"), "init": parent.meta.get("init")}


def _initial_policy(config: ImitationConfig) -> DrivingPolicy:
    spec = policy_spec()
    if config.init is None:
        return build(config.policy, spec["observation"], **config.policy_config)
    try:
        policy, checkpoint = load_policy(config.init, spec=spec)
    except CheckpointError as error:
        raise ConfigError("init", config.init, error.problem) from None
    if policy.name == "cnn" and POLICIES[config.policy].is_recurrent:
        return recurrent_from_cnn(config.policy, policy).train()     # warm start
    if policy.name != config.policy:
        raise ConfigError("init", config.init, f"holds a {policy.name!r} policy, not a "
                                               f"{config.policy!r} one")
    return policy.train()


def _dagger_round(run: _Run, round_: int, collection: CollectionConfig, root: Path,
                  max_shards: int | None) -> tuple[ExpertDataset, dict[str, Any]]:
    """Round `round_`'s data: recorded earlier (its learner's checksum is in the state), or
    collected now with the current weights as the learner."""
    trainer, config = run.trainer, run.config
    record = trainer.rounds.get(str(round_))
    current = checksum(trainer.policy.state_dict())
    if record is None:
        if trainer.phase != round_ or trainer.phase_step != 0:
            raise ConfigError("--out", str(run.out), f"the training state is past DAgger round "
                              f"{round_} but does not record its data; use a new --out")
        record = {"learner": current, "beta": config.beta(round_)}
        trainer.rounds[str(round_)] = record
    learner = None
    if trainer.phase == round_ and trainer.phase_step == 0 and record["learner"] == current:
        learner = EndToEndAgent(copy.deepcopy(trainer.policy), device=str(trainer.device))
    try:
        return collect_round(round_, config.dagger_episodes, collection, root, learner=learner,
                             learner_checksum=record["learner"], beta=record["beta"],
                             progress=run.progress, max_shards=max_shards)
    except MissingShardError:
        raise ConfigError("--out", str(run.out), f"the data of DAgger round {round_} is "
                          f"incomplete under {root} and the weights that collected it are "
                          "gone; use a new --out") from None


def _stopped(run: _Run, descriptions: list, started: float, data_seconds: float
             ) -> dict[str, Any]:
    seconds = {"data": round(data_seconds, 1), "total": round(time.perf_counter() - started, 1)}
    return {"checkpoint": None, "stopped": True, "metrics": run.metrics,
            "history": run.trainer.history, "data": descriptions, "seconds": seconds,
            "global_step": run.trainer.global_step}


def _last_metrics(trainer: BehaviourCloning) -> dict[str, Any]:
    return dict(trainer.history[-1]) if trainer.history else {}


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("reflexdrive")
    except Exception:                                   # not installed: the source tree
        import reflexdrive
        return reflexdrive.__version__


__all__ = ["ImitationConfig", "BehaviourCloning", "Samples", "METHODS", "LOSSES",
           "COMMAND_INPUTS", "frame_samples", "window_samples", "split_episodes",
           "cosine_lr", "train_imitation", "load_train_state"]
