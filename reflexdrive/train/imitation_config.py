"""Settings of imitation learning (`ImitationConfig`): what `train_imitation` trains, on
which data, and how; validated on construction, errors name the field."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.common.devices import DEVICES
from reflexdrive.common.validation import ConfigError, check_choice, check_real
from reflexdrive.envs.config import EGO_FEATURES, MODES, SensorConfig
from reflexdrive.envs.latency import parse_latency
from reflexdrive.policies.registry import (
    POLICIES,
    build,
)
from reflexdrive.train.expert_data import (
    DEFAULT_WEIGHTS,
    MAX_ROUND,
    MAX_SEED,
    ROUND_STRIDE,
    SCENARIOS,
    CollectionConfig,
    episodes_for_frames,
)

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
            least this fast [m/s]. Below it (stopped or creeping behind a braking or
            stopped car) the expert's pure-pursuit steering chatters between the bounds
            from tick to tick: noise that would swamp the weighted loss, on frames where
            steering hardly moves the car (measurements: docs/app.md).
        command_inputs: what the policy is shown of the ego's previous command while it
            learns (`ego`'s `acceleration_mps2` and `steering_rad`: the command applied
            last tick). "keep": the recorded values. "shuffle" (default): each sample
            gets those of another sample of its minibatch (windows keep their own time
            order), so they tell nothing of the label. In the expert's data the last
            command predicts the next one almost perfectly, and a policy trained on it
            copies its own last command instead of reading the road (the copycat
            problem): it brakes for a braking lead only if it braked already, i.e.
            never (docs/app.md).
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
