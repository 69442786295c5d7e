"""Behaviour cloning: training samples (frames, windows of consecutive ticks with burn-in),
the episode split for validation, and the trainer (`BehaviourCloning`) with its resumable
state."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from reflexdrive.envs.sensors.noise import splitmix64
from reflexdrive.policies.checkpoint import (
    CheckpointError,
)
from reflexdrive.policies.networks import DrivingPolicy
from reflexdrive.train.expert_data import (
    ExpertDataset,
)
from reflexdrive.train.imitation_config import COMMAND_FEATURES, HUBER_DELTA, ImitationConfig

STATE_FORMAT = "reflexdrive-imitation-state"
STATE_VERSION = 1


# ----------------------------------------------------------------------------- samples


def _unit_hash(ids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per id: the top 53 bits of SplitMix64 with key `id` at
    counter `seed` (`envs.sensors.noise.splitmix64`, the project's one SplitMix64), i.e.
    the mix of `id + (seed + 1) * golden`."""
    x = splitmix64(ids.astype(np.uint64), seed)
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

    def observations(self, data: ExpertDataset, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The policy's inputs of dataset `rows` (negative rows, a window's padding, read
        row 0), on the trainer's device: "bev" `(n, C, H, W)` uint8, "ego" `(n, k)`, and
        "lidar" `(n, beams, 2)`, "route" `(n, K, 2)` and "timing" `(n, 4)` for a policy
        that reads them (`policy.obs_keys`)."""
        safe = np.clip(rows, 0, None)
        bev = torch.from_numpy(data.frames_bev(safe)).to(self.device)
        ego = torch.from_numpy(data.ego[safe]).to(self.device)
        obs = {"bev": bev, "ego": ego}
        for key in ("lidar", "route", "timing"):
            if key in self.policy.obs_keys:
                obs[key] = torch.from_numpy(getattr(data, key)[safe]).to(self.device)
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
        obs = self.observations(data, rows)
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


class Killed(Exception):
    """Raised by `kill_after_updates` (tests): the run stops as if killed."""
