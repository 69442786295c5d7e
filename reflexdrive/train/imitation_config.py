"""Settings of imitation learning (`ImitationConfig`): what `train_imitation` trains, on
which data, and how; validated on construction, errors name the field."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.common.devices import DEVICES
from reflexdrive.common.validation import (
    ConfigError,
    choice,
    integer,
    number_tuple,
    override,
    real,
    validate_fields,
)
from reflexdrive.envs.config import EGO_FEATURES, SensorConfig
from reflexdrive.envs.latency import parse_latency
from reflexdrive.policies.registry import (
    POLICIES,
    build,
)
from reflexdrive.train.expert_data import (
    DEFAULT_WEIGHTS,
    MAX_ROUND,
    MIX_ENTRIES,
    ROUND_STRIDE,
    CollectionConfig,
    check_weights,
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


ACTION_WEIGHTS_RULE = "must be two numbers >= 0 (acceleration, steering), not both 0"
"""The error of a bad `ImitationConfig.action_weights`."""


def _integer(default: int, low: int, high: int | None, help: str) -> Any:
    """An integer field whose error reads "must be an integer in [low, high]"."""
    return integer(default, low=low, high=high, says_integer=True, help=help)


@dataclass(frozen=True)
class ImitationConfig:
    """Settings of `train_imitation` (validated on construction; errors name the field).

    Attributes:
        policy: the network: cnn, gru, lstm, transformer.
        method: "bc" (behaviour cloning) or "dagger" (BC, then DAgger rounds).
        episodes: expert episodes of the dataset (round 0); ignored when `frames` is set.
        frames: about this many expert frames instead (full-length episodes of the mix:
            `expert_data.episodes_for_frames`); None: use `episodes`.
        scenario_weights: `{entry: weight}` of the mixture over `expert_data.MIX_ENTRIES`:
            the scenarios the expert drives on the batched backend (highway, lead-brake,
            cut-in, stopped-vehicle, merge, roundabout, intersection) and the three hazards
            at the protocol grids' ranges (`lead-brake-protocol`, `cut-in-protocol`,
            `stopped-vehicle-protocol`: `expert_data.PROTOCOL_RANGES`); weights >= 0, not
            all 0; missing entries weigh 0.
        envs: worlds simulated side by side while collecting (batch size of the expert).
        shard_episodes: most episodes per data shard.
        mode: the clock while collecting: "lockstep" (default) or "realtime".
        latency: the clock's latency model while collecting (default "fixed:0";
            `SPEC+LOW..HIGH`: an extra delay drawn per episode, a latency distribution).
        label_shift: "landing" (default) or "none": whether a frame's label is the
            expert's command at the tick its command lands (`CollectionConfig`).
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

    policy: str = choice("cnn", choices=tuple(POLICIES), help="the network")
    method: str = choice("bc", choices=METHODS,
                         help="bc: behaviour cloning; dagger: bc, then DAgger rounds")
    episodes: int = _integer(1000, 1, ROUND_STRIDE - 1, "expert episodes of the dataset")
    frames: int | None = integer(None, low=1, optional=True, says_integer=True,
                                 help="about this many expert frames instead of episodes")
    scenario_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS))
    envs: int = override(CollectionConfig, "envs")
    shard_episodes: int = override(CollectionConfig, "shard_episodes")
    mode: str = override(CollectionConfig, "mode")
    latency: str = override(CollectionConfig, "latency")
    label_shift: str = override(CollectionConfig, "label_shift")
    epochs: int = _integer(4, 0, 10_000, "passes over the expert data")
    batch_size: int = _integer(128, 1, 65_536, "frames per update")
    sequence_length: int = _integer(32, 1, 10_000, "gru/lstm: ticks per truncated-BPTT window")
    burn_in: int = _integer(8, 0, 10_000, "gru/lstm: ticks that warm the state up")
    sequence_batch: int = _integer(8, 1, 65_536, "gru/lstm: windows per update")
    lr: float = real(1e-3, low=0.0, high=1.0, low_inclusive=False,
                     help="Adam's learning rate at the start of each phase")
    lr_final: float = real(0.1, low=0.0, high=1.0, help="the final learning rate / lr")
    weight_decay: float = real(0.0, low=0.0, high=1.0, help="Adam's L2 penalty")
    grad_clip: float = real(1.0, low=0.0, help="gradient-norm clip (0: none)")
    loss: str = choice("mse", choices=LOSSES, help="loss on the normalised action")
    action_weights: tuple[float, float] = number_tuple(
        (1.0, 200.0), low=0.0, finite=True, min_length=2, max_length=2,
        message=ACTION_WEIGHTS_RULE, help="weights of the acceleration and steering terms")
    steer_min_speed_mps: float = real(6.0, low=0.0, high=100.0,
                                      help="the steering term counts from this speed [m/s]")
    command_inputs: str = choice("shuffle", choices=COMMAND_INPUTS,
                                 help="what training shows of the ego's last command")
    val_fraction: float = real(0.05, low=0.0, high=0.5, help="share held out for validation")
    val_samples: int = _integer(2048, 1, 10_000_000, "most frames of a validation pass")
    dagger_rounds: int = _integer(2, 0, MAX_ROUND, "DAgger rounds")
    dagger_episodes: int = _integer(250, 1, ROUND_STRIDE - 1,
                                    "episodes the policy drives per DAgger round")
    dagger_epochs: int = _integer(2, 0, 10_000, "passes over all the data after each round")
    dagger_beta: float = real(0.5, low=0.0, high=1.0,
                              help="probability that the expert's action is executed in "
                                   "round 1")
    dagger_beta_decay: float = real(0.5, low=0.0, high=1.0,
                                    help="factor on that probability per further round")
    eval_every: int = _integer(250, 1, None, "updates between validation passes")
    checkpoint_every: int = _integer(250, 1, None, "updates between resumable checkpoints")
    seed: int = override(CollectionConfig, "seed")
    device: str = choice("cpu", choices=DEVICES, help="torch device: cpu, cuda, auto")
    threads: int = _integer(1, 1, 1024, "torch CPU threads")
    policy_config: Mapping[str, Any] = field(default_factory=dict)
    init: str | None = None

    def __post_init__(self) -> None:
        validate_fields(self)
        weights = self.scenario_weights
        if not isinstance(weights, Mapping):
            raise ConfigError("scenario_weights", weights, "must be a non-empty {entry: "
                              "weight} dict over " + ", ".join(MIX_ENTRIES))
        check_weights("scenario_weights", weights)
        object.__setattr__(self, "scenario_weights", {
            name: float(weights[name]) for name in MIX_ENTRIES if name in weights})
        if not sum(self.action_weights) > 0:
            raise ConfigError("action_weights", self.action_weights, ACTION_WEIGHTS_RULE)
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
                                label_shift=self.label_shift,
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
        if self.mode == "lockstep":      # no latency, no shift: runs begun before it resume
            identity.pop("label_shift")
        return identity
