"""PPO fine-tuning of the end-to-end policies on the batched backend, with the clock in the loop.

    from reflexdrive.train.ppo import PPOConfig, train_ppo
    path = train_ppo(PPOConfig(policy="cnn", init="runs/bc/cnn.pt", num_envs=64,
                               latency="profile:profiles/cnn.json", out_dir="runs/ppo-cnn"))

stable-baselines3's `PPO` trains `cnn` and `transformer`, sb3-contrib's `RecurrentPPO`
trains `lstm` and `gru` (see `reflexdrive.train.sb3_adapters` for how our networks become sb3
policies and why the Gaussian lives on the head's pre-squash output). The envs are
`BatchedDrivingEnv`s in this process (`num_envs` split over `scenarios`), on the clock:
`mode="realtime"` with `latency="profile:PATH"` trains the policy under the latency it
has on the car's computer. Episodes use scenario seeds drawn from `common.seed_ranges.TRAINING`
(1e6 up), so the development and held-out evaluation seeds stay sealed. With
`freeze_encoder` (the default) the policy's encoder keeps its `init` weights and PPO sees
its features as the observations (`sb3_adapters.EncodedObservations`): the updates train
the head, the recurrent core, the critic and the exploration std.

The run folder `out_dir`:

- `ppo_run.json`: the config and the resolved policy architecture of the run;
- `checkpoints/ppo-<timesteps>.zip`: sb3's own resume format (model, optimizer, counters;
  zip with pickled parts: only load run folders you made), written atomically after every
  `checkpoint_every` updates and at the end; the two newest are kept;
- `snapshots/<policy>-<timesteps>.pt`: with `snapshot_every`, the policy at step 0 and
  along the run as safe checkpoints (`train.ppo_snapshots`; for learning curves);
- `tensorboard/ppo_1/`: TensorBoard logs (sb3's `rollout/ep_rew_mean`, `ep_len_mean`,
  `success_rate` = episodes without collision, off-road or deadline termination,
  `train/*` losses, `std`, `time/fps`);
- `<policy>.pt` (or `export_path`): the trained policy as our safe checkpoint
  (`policies.registry.save_policy`, `weights_only`-loadable), which
  `agents.end_to_end.EndToEndAgent` drives with: its action is the PPO policy's
  deterministic action.

Resume: calling `train_ppo` again with the same `out_dir` (after a kill, or with a larger
`total_timesteps` to train on) loads the newest checkpoint and continues: the timestep
counter, the optimizer and the TensorBoard run go on; the envs start fresh episodes and
the random streams are reseeded from `(seed, timesteps)`, so a resumed run is
deterministic given its checkpoint, though not bit-identical to an uninterrupted one.
Settings that define the run must match the stored ones (a `ConfigError` lists the
differences); `total_timesteps`, `checkpoint_every`, `snapshot_every`, `export_path`,
`device`, `threads` and `command` may change.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from tqdm import tqdm

from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.common.files import atomic_write
from reflexdrive.common.seed_ranges import TRAINING, training_meta
from reflexdrive.common.validation import (
    ConfigError,
    boolean,
    check_choice,
    choice,
    count,
    number_tuple,
    real,
    validate_fields,
)
from reflexdrive.envs.gym.reward import RewardConfig
from reflexdrive.envs.gym.single import coerce_config
from reflexdrive.envs.gym.vector import batched_scenarios
from reflexdrive.envs.latency import parse_latency
from reflexdrive.policies.checkpoint import CheckpointError
from reflexdrive.policies.networks import DrivingPolicy
from reflexdrive.policies.registry import POLICIES, build, load_policy, save_policy, with_timing
from reflexdrive.run.results import prepare_out_dir, write_json
from reflexdrive.train.ppo_snapshots import PolicySnapshots
from reflexdrive.train.sb3_adapters import (
    DrivingActorCritic,
    DrivingRecurrentActorCritic,
    EncodedObservations,
    TanhActions,
    make_batched_vec_env,
    to_driving_policy,
)

RECURRENT_POLICIES = ("gru", "lstm")
"""Policies trained with sb3-contrib's `RecurrentPPO`; the others with sb3's `PPO`."""

MODES = ("realtime", "lockstep")

RESUMABLE_FIELDS = ("total_timesteps", "checkpoint_every", "snapshot_every", "export_path",
                    "device", "threads", "command", "out_dir")
"""Fields a resumed run may change; all others must equal the stored run's."""

EARLIER_DEFAULTS = {"freeze_encoder": False}
"""Fields added after runs were stored, with the value those runs trained with (a stored
run without the field resumes with it)."""

RUN_FILE = "ppo_run.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
TB_RUN_NAME = "ppo"
KEEP_CHECKPOINTS = 2
_CHECKPOINT_NAME = re.compile(r"^ppo-(\d+)\.zip$")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


LEARNING_RATE_SCHEDULES = ("linear", "constant")
"""`PPOConfig.learning_rate_schedule` choices."""


@dataclass(frozen=True)
class PPOConfig:
    """Settings of one PPO run (validated on construction: a `ConfigError` names the field
    and the allowed values). The CLI maps `--field-name` to each field 1:1.

    Attributes:
        policy: network, "cnn", "gru", "lstm" or "transformer" (`gru`/`lstm` train with
            sb3-contrib's RecurrentPPO).
        scenarios: straight-road scenarios the envs run (`batched_scenarios()`): highway,
            lead-brake, cut-in, stopped-vehicle; `num_envs` is split evenly over them.
        num_envs: envs stepped together (one batched forward pass per tick).
        total_timesteps: env steps (ticks x envs) to train for in all, counting those of
            earlier runs in the same `out_dir`; rounded up to whole updates.
        n_steps: ticks per env per update (the rollout length).
        batch_size: samples per minibatch; must divide `n_steps * num_envs`.
        n_epochs: passes over each rollout.
        learning_rate: Adam's learning rate at the start.
        learning_rate_schedule: "linear" (decays to 0 at `total_timesteps`: late updates
            cannot undo what early ones learnt) or "constant".
        target_kl: stop an update's epochs early once the approximate KL divergence
            between the rollout's policy and the updated one passes 1.5x this (sb3's
            `target_kl`); None: no early stop. Keeps a fine-tune from leaving its imitation
            policy in one update.
        value_warmup_updates: the first updates train only the critic (value MLP, and the
            recurrent policies' critic LSTM): the policy's weights and its exploration std
            are frozen until the value function has seen some returns, so the first
            policy-gradient steps use advantages of a fitted critic, not of a random one.
        freeze_encoder: keep the perception encoder (`policy.encoder`: the convolutions or
            the patch transformer, with the ego, lidar, route and timing MLPs and their
            fusion) at its `init` weights, bit for bit, and train the head, the critic, the
            exploration std and the recurrent core on its features. The features are then
            computed once per env step, without gradients (`sb3_adapters.
            EncodedObservations`), and the update's epochs never run the encoder: on 2 CPU
            cores its forward and backward passes were about 80 % of a cnn PPO iteration
            (README, Speed). The encoder learnt from the expert what the scene holds; PPO
            adjusts what the policy does about it. A cnn/gru/lstm encoder that reads
            `obs["timing"]` keeps its timing MLP and the fusion weights from it training
            on the frozen perception features and the raw timing (`FreezableEncoder`):
            a timing input added for the fine-tune would otherwise stay at zero weight;
            the critic then reads the features detached. False: the whole
            network trains (the encoder shared by the actor and the critic, so the value
            loss reaches it too).
        gamma: discount per tick.
        gae_lambda: GAE's lambda.
        clip_range: PPO's ratio clip.
        ent_coef: entropy bonus (of the Gaussian on the pre-squash output).
        vf_coef: weight of the value loss.
        max_grad_norm: gradient-norm clip.
        initial_std: `(acceleration, steering)` std of the exploration Gaussian on the
            head's pre-squash output at the start (then learnt, state-independent). Near
            zero commands, 1 unit is 6 m/s^2 and 0.5 rad with the default bounds.
        value_hidden: width of the critic's hidden layer (on the shared encoder features).
        seed: seeds the weights, the action noise, the minibatch order and the scenario
            seeds of the episodes.
        latency: the clock's latency model: "fixed:SECONDS", "fixed:STAGE=S,..." or
            "profile:PATH" (a `reflexdrive profile` file; relative to the working folder),
            each optionally ending in "+SECONDS" (an extra constant delay). "measured" is
            refused: training needs a reproducible latency.
        mode: "realtime" (the world keeps moving while the policy computes) or "lockstep".
        reward: overrides of the envs' reward (`envs.gym.reward.RewardConfig` fields:
            `speed_target_mps`, `collision_penalty`, `offroad_penalty`), e.g.
            `{"collision_penalty": 100}`; None: its defaults (progress up to 1 per tick at
            30 m/s, 10 per collision or off-road: a collision then costs one second of
            full-speed progress).
        init: a policy checkpoint (`policies.registry.save_policy`, e.g. from behaviour
            cloning) whose weights PPO starts from; it must hold `policy`. None: random.
        policy_config: the network's config fields (as for `policies.registry.build`),
            only without `init` (with it, the checkpoint's config is used), except
            `{"encoder": {"timing_hidden": N}}` with `init`: the init policy gains a
            timing input of width N that starts with zero weight
            (`policies.registry.with_timing`), and with `freeze_encoder` that timing
            pathway trains (`FreezableEncoder.unfrozen_parameters`).
        out_dir: run folder (checkpoints, TensorBoard, export); reused to resume.
        checkpoint_every: save a resume checkpoint every this many updates.
        snapshot_every: export the policy to `out_dir/snapshots/` at step 0, after every
            this many updates and at the end (`train.ppo_snapshots`); 0: no snapshots.
        export_path: where to write the trained policy (default `out_dir/<policy>.pt`).
        device: torch device of the networks: "auto" (CUDA if available), "cpu", "cuda",
            "cuda:N". The envs run on the CPU.
        threads: torch CPU threads (None: leave torch's setting). 1 by default, as for
            imitation: the rollout's forward passes are 16-row batches and a frozen
            encoder's update is small matrices, too small to share out, and torch's second
            OpenMP thread competes with the batched env's numba kernels for the 2 cores:
            with 2 threads the default PPO iteration ran 6.5-7.6x slower on the loaded
            machine (README, Speed).
        command: the command line that started the run (recorded in the export).
    """

    policy: str = choice("cnn", choices=tuple(POLICIES), help="the network")
    scenarios: tuple[str, ...] = ("highway",)
    num_envs: int = count(16, help="envs stepped together")
    total_timesteps: int = count(1_000_000, help="env steps to train for in all")
    n_steps: int = count(128, help="ticks per env per update (rollout length)")
    batch_size: int = count(256, low=2, help="samples per minibatch")
    n_epochs: int = count(4, help="passes over each rollout")
    learning_rate: float = real(3e-4, low=0.0, high=1.0, low_inclusive=False, finite=True,
                                help="Adam's learning rate at the start")
    learning_rate_schedule: str = choice("linear", choices=LEARNING_RATE_SCHEDULES,
                                         help="learning-rate schedule over the run")
    target_kl: float | None = real(0.02, low=0.0, low_inclusive=False, finite=True,
                                   optional=True, help="early stop of an update's epochs")
    value_warmup_updates: int = count(4, low=0, help="first updates that train only the "
                                                     "critic")
    freeze_encoder: bool = boolean(True, help="keep the encoder at its init weights and train "
                                              "the head, core and critic on its features")
    gamma: float = real(0.99, low=0.0, high=1.0, finite=True, help="discount per tick")
    gae_lambda: float = real(0.95, low=0.0, high=1.0, finite=True, help="GAE lambda")
    clip_range: float = real(0.2, low=0.0, high=1.0, low_inclusive=False, finite=True,
                             help="PPO ratio clip")
    ent_coef: float = real(0.0, low=0.0, finite=True, help="entropy bonus")
    vf_coef: float = real(0.5, low=0.0, finite=True, help="value-loss weight")
    max_grad_norm: float = real(0.5, low=0.0, low_inclusive=False, finite=True,
                                help="gradient-norm clip")
    initial_std: tuple[float, float] = number_tuple(
        (0.3, 0.05), low=0.0, low_inclusive=False, finite=True, min_length=2, max_length=2,
        message="must be two positive numbers (acceleration, steering)",
        help="std of the exploration Gaussian on the head's pre-squash output")
    value_hidden: int = count(128, help="critic hidden width")
    seed: int = count(0, low=0, help="seeds the weights, the action noise, the minibatch "
                                     "order and the scenario seeds")
    latency: str = "fixed:0"
    mode: str = choice("realtime", choices=MODES, help="the clock's mode")
    reward: Mapping[str, Any] | None = None
    init: str | None = None
    policy_config: Mapping[str, Any] = field(default_factory=dict)
    out_dir: str = "runs/train-ppo"
    checkpoint_every: int = count(10, help="updates between resume checkpoints")
    snapshot_every: int = count(0, low=0, help="updates between policy snapshots (0: none)")
    export_path: str | None = None
    device: str = "auto"
    threads: int | None = count(1, optional=True, help="torch CPU threads")
    command: str | None = None

    def __post_init__(self) -> None:
        validate_fields(self)
        scenarios = (self.scenarios,) if isinstance(self.scenarios, str) else self.scenarios
        if not isinstance(scenarios, (tuple, list)) or not scenarios:
            raise ConfigError("scenarios", self.scenarios, "must be one or more of "
                              + ", ".join(batched_scenarios()))
        for name in scenarios:
            check_choice("scenarios", name, batched_scenarios())
        if len(set(scenarios)) != len(scenarios):
            raise ConfigError("scenarios", self.scenarios, "must not repeat a scenario")
        object.__setattr__(self, "scenarios", tuple(scenarios))
        for name in ("num_envs", "total_timesteps", "n_steps", "n_epochs", "value_hidden",
                     "checkpoint_every", "batch_size", "seed", "threads",
                     "value_warmup_updates", "snapshot_every"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("learning_rate", "gamma", "gae_lambda", "clip_range", "ent_coef", "vf_coef",
                     "max_grad_norm", "target_kl"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))
        if self.num_envs < len(self.scenarios):
            raise ConfigError("num_envs", self.num_envs, f"must be at least one env per "
                              f"scenario ({len(self.scenarios)})")
        rollout = self.n_steps * self.num_envs
        if rollout % self.batch_size:
            raise ConfigError("batch_size", self.batch_size, f"must divide n_steps * num_envs "
                              f"= {rollout} (sb3 would truncate a minibatch)")
        object.__setattr__(self, "initial_std",
                           (float(self.initial_std[0]), float(self.initial_std[1])))
        if not isinstance(self.latency, str):
            raise ConfigError("latency", self.latency, "must be a spec string: fixed:SECONDS, "
                              "fixed:STAGE=SECONDS,... or profile:PATH")
        if not parse_latency(self.latency).deterministic:       # measured (+SECONDS)
            raise ConfigError("latency", self.latency, "training needs a reproducible latency: "
                              "use fixed:SECONDS or profile:PATH")
        for name in ("out_dir", "init", "export_path"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        if self.init is not None and (not isinstance(self.init, str) or not self.init):
            raise ConfigError("init", self.init, "must be a policy checkpoint path or None")
        if self.reward is not None:
            if not isinstance(self.reward, Mapping):
                raise ConfigError("reward", self.reward, "must be a dict of RewardConfig "
                                  "fields or None")
            coerce_config(RewardConfig, dict(self.reward), "reward")
            object.__setattr__(self, "reward", json.loads(json.dumps(dict(self.reward))))
        if not isinstance(self.policy_config, Mapping):
            raise ConfigError("policy_config", self.policy_config,
                              "must be a dict of the network's config fields")
        object.__setattr__(self, "policy_config", self._normalised_policy_config())
        if not isinstance(self.out_dir, str) or not self.out_dir:
            raise ConfigError("out_dir", self.out_dir, "must be a folder path")
        if self.export_path is not None and (not isinstance(self.export_path, str)
                                             or not self.export_path):
            raise ConfigError("export_path", self.export_path, "must be a file path or None")
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ConfigError("device", self.device, "allowed values are auto, cpu, cuda, "
                              "cuda:N")
        if self.command is not None and not isinstance(self.command, str):
            raise ConfigError("command", self.command, "must be a string or None")

    def _normalised_policy_config(self) -> dict[str, Any]:
        """`policy_config` as JSON-able values: with `init`, empty or the timing input to
        add (`added_timing`) as given; without, the given fields with the config's
        defaults filled in below them."""
        if self.init is not None and self.policy_config:
            if added_timing(self.policy_config) is None:
                raise ConfigError("policy_config", dict(self.policy_config),
                                  "must be empty with init (the network comes from the init "
                                  "checkpoint) or {\"encoder\": {\"timing_hidden\": N}} "
                                  "with N >= 1, optionally \"timing_command\": false "
                                  "(add a timing input to it: "
                                  "policies.registry.with_timing)")
            return json.loads(json.dumps(dict(self.policy_config)))
        try:
            config = POLICIES[self.policy].config_type.from_dict(dict(self.policy_config))
        except (TypeError, ValueError) as error:
            raise ConfigError("policy_config", dict(self.policy_config), str(error)) from None
        return json.loads(json.dumps({key: value for key, value in config.to_dict().items()
                                      if key in self.policy_config}))

    @property
    def recurrent(self) -> bool:
        """Whether the policy trains with RecurrentPPO."""
        return self.policy in RECURRENT_POLICIES

    @property
    def steps_per_update(self) -> int:
        """Env steps collected per update: `n_steps * num_envs`."""
        return self.n_steps * self.num_envs

    @property
    def export_file(self) -> Path:
        """Where the trained policy is written."""
        return Path(self.export_path or Path(self.out_dir) / f"{self.policy}.pt")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))


# ----------------------------------------------------------------------------- building


def load_init(config: PPOConfig) -> tuple[DrivingPolicy, dict[str, Any]] | None:
    """The `init` checkpoint's policy and meta (None without `init`).

    Raises:
        ConfigError (field "init"): the file cannot be used (see `load_policy`), was
            trained on other observations, or holds another policy.
    """
    if config.init is None:
        return None
    try:
        policy, checkpoint = load_policy(config.init, spec=policy_spec())
    except CheckpointError as error:
        raise ConfigError("init", config.init, error.problem) from None
    if policy.name != config.policy:
        raise ConfigError("init", config.init, f"holds a {policy.name!r} policy, not a "
                          f"{config.policy!r} one; use policy={policy.name!r}")
    added = added_timing(config.policy_config)
    if added is not None:
        try:
            policy = with_timing(policy, *added)
        except ValueError as error:
            raise ConfigError("init", config.init, f"cannot take policy_config "
                              f"{dict(config.policy_config)}: {error}") from None
    return policy, dict(checkpoint.meta)


def added_timing(policy_config: Mapping[str, Any]) -> tuple[int, bool] | None:
    """`(N, command)` when `policy_config` is exactly `{"encoder": {"timing_hidden": N}}`
    with an integer N >= 1, optionally with `"timing_command": true|false` beside it
    (default true) (with `init`: add a timing input to the init policy), else None."""
    encoder = policy_config.get("encoder") if len(policy_config) == 1 else None
    if (not isinstance(encoder, Mapping) or "timing_hidden" not in encoder
            or not set(encoder) <= {"timing_hidden", "timing_command"}):
        return None
    hidden, command = encoder["timing_hidden"], encoder.get("timing_command", True)
    if (isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1
            or not isinstance(command, bool)):
        return None
    return hidden, command


def resolved_policy_config(config: PPOConfig,
                           init: tuple[DrivingPolicy, Any] | None = None) -> dict[str, Any]:
    """The network's full config as a dict: the init checkpoint's, else `policy_config`
    over the defaults."""
    if init is not None:
        return json.loads(json.dumps(init[0].config.to_dict()))
    cls = POLICIES[config.policy]
    return json.loads(json.dumps(cls.config_type.from_dict(dict(config.policy_config))
                                 .to_dict()))


def make_env(config: PPOConfig, policy_config: Mapping[str, Any],
             encode: bool = True) -> TanhActions | EncodedObservations:
    """The training envs: `num_envs` batched envs over `scenarios` on the clock, actions
    squashed with the head's bounds of `policy_config`; with `freeze_encoder` (and
    `encode`) their observations are the frozen encoder's features (`encoded_env`)."""
    head = POLICIES[config.policy].config_type.from_dict(dict(policy_config)).head
    venv = make_batched_vec_env(config.scenarios, config.num_envs, seed=config.seed,
                                mode=config.mode, latency=config.latency,
                                reward=None if config.reward is None else dict(config.reward))
    env = TanhActions(venv, head.acceleration_bounds, head.steering_bounds)
    return encoded_env(env, config, policy_config) if encode else env


def encoded_env(env: Any, config: PPOConfig, policy_config: Mapping[str, Any]) -> Any:
    """`env` as PPO sees it: with `freeze_encoder`, an `EncodedObservations` around it
    (`build_model` attaches the policy's encoder); else `env` itself."""
    if not config.freeze_encoder:
        return env
    network = build(config.policy, policy_spec()["observation"], **dict(policy_config))
    return EncodedObservations(env, network.encoder.frozen_width)


def _algorithm(config: PPOConfig) -> tuple[type, type]:
    if config.recurrent:
        from sb3_contrib import RecurrentPPO
        return RecurrentPPO, DrivingRecurrentActorCritic
    from stable_baselines3 import PPO
    return PPO, DrivingActorCritic


def build_model(config: PPOConfig, env: TanhActions, policy_config: Mapping[str, Any],
                init: tuple[DrivingPolicy, Any] | None = None,
                tensorboard_log: str | None = None) -> Any:
    """A new sb3 `PPO` (`RecurrentPPO` for gru/lstm) on `env` (`make_env`'s) with our
    network built from `policy_config`, its weights copied from `init`'s policy when given
    (then its deterministic action equals that policy's output); a frozen encoder is
    attached to the env's `EncodedObservations`."""
    algorithm, policy_class = _algorithm(config)
    policy_kwargs = {"policy_name": config.policy, "policy_config": dict(policy_config),
                     "obs_spec": policy_spec()["observation"],
                     "value_hidden": config.value_hidden, "initial_std": config.initial_std,
                     "freeze_encoder": config.freeze_encoder}
    model = algorithm(policy_class, env, learning_rate=learning_rate(config),
                      target_kl=config.target_kl,
                      n_steps=config.n_steps, batch_size=config.batch_size,
                      n_epochs=config.n_epochs, gamma=config.gamma,
                      gae_lambda=config.gae_lambda, clip_range=config.clip_range,
                      ent_coef=config.ent_coef, vf_coef=config.vf_coef,
                      max_grad_norm=config.max_grad_norm, tensorboard_log=tensorboard_log,
                      policy_kwargs=policy_kwargs, seed=config.seed, device=config.device,
                      verbose=0)
    if init is not None:
        model.policy.driving.load_state_dict(init[0].state_dict())
    attach_encoder(model, env)
    return model


def attach_encoder(model: Any, env: Any) -> None:
    """Give the env's `EncodedObservations` (if any, under other wrappers) the model's
    frozen encoder (`build_model` and resuming do; for a model loaded otherwise)."""
    while env is not None:
        if isinstance(env, EncodedObservations):
            env.attach(model.policy.driving.encoder)
            return
        env = getattr(env, "venv", None)


# ----------------------------------------------------------------------------- checkpoints


def checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """The resume checkpoints of a run folder as `(timesteps, path)`, oldest first."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = _CHECKPOINT_NAME.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest resume checkpoint of a run folder (None if there is none)."""
    found = checkpoints(out_dir)
    return found[-1][1] if found else None


def save_checkpoint(model: Any, out_dir: str | Path, keep: int = KEEP_CHECKPOINTS) -> Path:
    """Write `model` (sb3's zip) as `checkpoints/ppo-<timesteps>.zip` atomically; keep the
    `keep` newest."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    model.save(buffer)
    path = folder / f"ppo-{model.num_timesteps:012d}.zip"
    atomic_write(path, lambda stream: stream.write(buffer.getvalue()), mode="wb")
    for _, old in checkpoints(out_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def _load_latest(config: PPOConfig, env: TanhActions, tensorboard_log: str) -> Any | None:
    """The newest loadable checkpoint of the run as a model on `env` (None if none)."""
    algorithm, _ = _algorithm(config)
    for timesteps, path in reversed(checkpoints(config.out_dir)):
        try:
            model = algorithm.load(path, env=env, device=config.device,
                                   print_system_info=False, custom_objects={
                                       "learning_rate": learning_rate(config),
                                       "lr_schedule": learning_rate(config)})
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError) as error:
            warnings.warn(f"checkpoint {path} is unusable ({error}); trying an older one",
                          stacklevel=2)
            continue
        attach_encoder(model, env)
        model.tensorboard_log = tensorboard_log
        model.verbose = 0
        seed = int(np.random.SeedSequence([config.seed, model.num_timesteps])
                   .generate_state(1)[0]) & 0x7FFFFFFF
        model.set_random_seed(seed)
        return model
    return None


def _check_run(out: Path, config: PPOConfig, policy_config: Mapping[str, Any],
               init_command: str | None) -> dict:
    """Compare with the run stored in `out` (or store this one); returns the stored run:
    `{"config", "policy_config", "init_command"}`.

    Raises:
        ConfigError (field "out_dir"): the folder holds a run with other settings.
    """
    path = out / RUN_FILE
    current = {"config": config.to_dict(), "policy_config": dict(policy_config),
               "init_command": init_command}
    if not path.exists():
        write_json(path, current)
        return current
    stored = json.loads(path.read_text())
    old = {**EARLIER_DEFAULTS, **stored.get("config", {})}
    differences = [f"{name}: {old.get(name)!r} there, {value!r} now"
                   for name, value in current["config"].items()
                   if name not in RESUMABLE_FIELDS and old.get(name) != value]
    if differences:
        raise ConfigError("out_dir", config.out_dir, "holds a PPO run with other settings ("
                          + "; ".join(differences) + "); use another out_dir to start anew")
    write_json(path, {**stored, "config": current["config"]})
    return stored


# ----------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class LinearDecay:
    """sb3 learning-rate schedule: `initial * progress_remaining` (1 at the start of the
    run, 0 at `total_timesteps`). A top-level class, so sb3's checkpoint pickles it."""

    initial: float

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * max(float(progress_remaining), 0.0)


def learning_rate(config: PPOConfig) -> float | LinearDecay:
    """What sb3 gets as `learning_rate` for `config`'s schedule."""
    if config.learning_rate_schedule == "linear":
        return LinearDecay(config.learning_rate)
    return config.learning_rate


# ----------------------------------------------------------------------------- callbacks


class ValueWarmup(BaseCallback):
    """Freeze the policy (the `DrivingPolicy`'s weights and the exploration log-std) for
    the first `updates` updates, so they train only the critic; unfreeze after.

    Decided when each rollout ends, right before its update, from the timestep count, so
    a resumed run freezes exactly the updates an uninterrupted one would."""

    def __init__(self, steps_per_update: int, updates: int):
        super().__init__()
        self.steps_per_update = steps_per_update
        self.updates = updates

    def _on_rollout_end(self) -> None:
        update = self.model.num_timesteps // self.steps_per_update   # 1 for the first one
        set_policy_frozen(self.model.policy, update <= self.updates)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        set_policy_frozen(self.model.policy, False)


def set_policy_frozen(policy: Any, frozen: bool) -> None:
    """Stop (or restart) gradients into an sb3 policy's actor: the `DrivingPolicy` it
    trains and its log-std; the critic's own parameters keep training. A frozen encoder
    (`freeze_encoder`) stays frozen either way."""
    encoder = policy.frozen_parameter_ids()
    for parameter in [*policy.driving.parameters(), policy.log_std]:
        if id(parameter) not in encoder:
            parameter.requires_grad_(not frozen)


class _Checkpoints(BaseCallback):
    """Save a resume checkpoint after every `every` updates (checked when the next rollout
    starts, i.e. right after the update) and at the end of training."""

    def __init__(self, out_dir: Path, steps_per_update: int, every: int):
        super().__init__()
        self.out_dir = out_dir
        self.steps_per_update = steps_per_update
        self.every = every
        self.saved = 0

    def _on_training_start(self) -> None:
        self.saved = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        timesteps = self.model.num_timesteps
        if timesteps > self.saved and (timesteps // self.steps_per_update) % self.every == 0:
            self._save()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self.model.num_timesteps > self.saved:
            self._save()

    def _save(self) -> None:
        save_checkpoint(self.model, self.out_dir)
        self.saved = self.model.num_timesteps


class _Progress(BaseCallback):
    """A tqdm bar over the total timesteps (starting at the resumed count), with the
    recent mean episode return and success rate."""

    def __init__(self, total: int, enabled: bool):
        super().__init__()
        self.total = total
        self.enabled = enabled
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, initial=self.model.num_timesteps, unit="step",
                        desc="ppo", disable=not self.enabled, dynamic_ncols=True)

    def _on_step(self) -> bool:
        assert self.bar is not None
        self.bar.update(self.model.num_timesteps - self.bar.n)
        return True

    def _on_rollout_end(self) -> None:
        metrics = episode_metrics(self.model)
        if self.bar is not None and metrics["episodes"]:
            self.bar.set_postfix(ret=f"{metrics['mean_return']:.2f}",
                                 success=f"{metrics['success_rate']:.2f}", refresh=False)

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


def episode_metrics(model: Any) -> dict[str, Any]:
    """Mean return, length and success rate of the model's recent episodes (sb3's window
    of 100) and the timestep count."""
    episodes = list(model.ep_info_buffer or [])
    success = list(model.ep_success_buffer or [])
    return {"timesteps": int(model.num_timesteps), "episodes": len(episodes),
            "mean_return": float(np.mean([e["r"] for e in episodes])) if episodes else None,
            "mean_length": float(np.mean([e["l"] for e in episodes])) if episodes else None,
            "success_rate": float(np.mean(success)) if success else None}


# ----------------------------------------------------------------------------- training


def export_policy(model: Any, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
    """Write the model's network as a policy checkpoint (`save_policy` with
    `policy_spec()`), loadable by `load_policy` / `EndToEndAgent.from_checkpoint`."""
    return save_policy(path, to_driving_policy(model.policy), policy_spec(), meta)


def train_ppo(config: PPOConfig, progress: bool = True) -> Path:
    """Train (or resume) the PPO run `config` describes; returns the exported checkpoint.

    See the module docstring for the run folder, resume and export.

    Raises:
        ConfigError: bad `init` (field "init"), an `out_dir` that is not a writable folder
            or holds another run's settings, a latency profile that cannot be read.
    """
    out = prepare_out_dir(config.out_dir)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    run_file = out / RUN_FILE
    resuming = run_file.exists() and latest_checkpoint(out) is not None
    init = None if resuming else load_init(config)
    if resuming:
        policy_config = json.loads(run_file.read_text())["policy_config"]
    else:
        policy_config = resolved_policy_config(config, init)
    run = _check_run(out, config, policy_config,
                     None if init is None else init[1].get("command"))
    tensorboard_log = str(out / TENSORBOARD_DIR)
    env = make_env(config, policy_config)
    try:
        model = _load_latest(config, env, tensorboard_log) if resuming else None
        resumed_at = None if model is None else int(model.num_timesteps)
        if model is None:
            if init is None:
                init = load_init(config)
            model = build_model(config, env, policy_config, init, tensorboard_log)
        remaining = config.total_timesteps - model.num_timesteps
        if remaining > 0:
            callbacks = [
                ValueWarmup(config.steps_per_update, config.value_warmup_updates),
                _Checkpoints(out, config.steps_per_update, config.checkpoint_every),
                _Progress(config.total_timesteps, progress)]
            if config.snapshot_every:
                callbacks.append(PolicySnapshots(out, config, export_policy,
                                                 run.get("init_command")))
            callback = CallbackList(callbacks)
            model.learn(remaining, callback=callback, tb_log_name=TB_RUN_NAME,
                        reset_num_timesteps=resumed_at is None, progress_bar=False)
        meta = {
            "command": config.command,
            "method": "ppo",
            "ppo": config.to_dict(),
            "init": None if config.init is None else {
                "path": config.init, "command": run.get("init_command")},
            "resumed_from_timesteps": resumed_at,
            "metrics": episode_metrics(model),
            "seed_ranges": training_meta([[TRAINING.start, TRAINING.stop - 1]]),
            "sb3": _sb3_versions(),
        }
        return export_policy(model, config.export_file, meta)
    finally:
        env.close()


def _sb3_versions() -> dict[str, str]:
    import sb3_contrib
    import stable_baselines3
    return {"stable_baselines3": stable_baselines3.__version__,
            "sb3_contrib": sb3_contrib.__version__}


def config_fields() -> tuple[str, ...]:
    """`PPOConfig`'s field names, in order (the CLI's `--field-name` flags)."""
    return tuple(f.name for f in fields(PPOConfig))
