"""stable-baselines3 adapters: the batched envs as an sb3 `VecEnv`, our networks as sb3 policies.

Env side:

- `BatchedVecEnv`: one or more `envs.gym.vector.BatchedDrivingEnv` (one per scenario, all
  with the same sensors and clock) presented as one sb3 `VecEnv` of `num_envs` envs. One
  `step` is one tick of every env on the clock (realtime or lockstep, any `latency=`), so
  PPO trains with the latency in the loop. Observations are the `bev` (uint8 `(C, H, W)`)
  and `ego` (float32 `(8,)`) entries of the env's `Dict` space. The batched envs run with
  autoreset disabled and the adapter resets the finished rows itself (a masked reset), so
  `infos[i]["terminal_observation"]` is the true last observation of the finished episode
  and the returned row already the new episode's first one (sb3's auto-reset contract).
  A finished env's info also carries `"TimeLimit.truncated"` (time limit, not a crash: sb3
  bootstraps its value), `"is_success"` (no collision, off-road or deadline termination)
  and `"episode"` `{"r", "l", "t"}` as sb3's `Monitor` writes it. Every other info dict is
  empty: nothing is built per env and step beyond one empty dict.
  Scenario seeds come from the adapter's generator (`seed()`), drawn from
  `common.seed_ranges.TRAINING`, so the development and held-out evaluation seeds are
  never trained on.
- `TanhActions`: a `VecEnvWrapper` whose action space is the policy head's pre-squash
  output; it applies the head's squash `centre + half_range * tanh(raw)` (same float32
  arithmetic as `policies.networks.ActionHead.squash`) before the env.
- `EncodedObservations` (a frozen encoder, `PPOConfig.freeze_encoder`): a `VecEnvWrapper`
  whose observations are the policy's frozen encoder's features `(N, frozen_width)`
  (`policies.encoders.FreezableEncoder.frozen_features`: the features, or for a cnn
  reading `obs["timing"]` its perception features and the raw timing), computed once per
  step without gradients (finished envs' terminal observations too). sb3's rollout buffer
  then stores features, not rasters, and the update's epochs never run the convolutions:
  they train the head, the critic and the log-std (and the recurrent core, and a timing
  pathway and its fusion weights: `FreezableEncoder.unfrozen_parameters`). On 2 CPU cores
  the encoder's forward and backward passes over every minibatch of every epoch were
  about 80 % of a cnn PPO iteration (`scripts/bench_training.py`).

Policy side (`DrivingActorCritic`, `DrivingRecurrentActorCritic`): sb3 actor-critic
policies assembled from a `policies.networks.DrivingPolicy`'s own modules, so PPO trains
exactly our network and exports it without conversion:

    features = policy.encoder(obs)                        # sb3 features extractor
    [recurrent] features = [features, policy.rnn(features, state)]   # lstm_actor (SkipCore)
    mean = policy.head.mlp(features)                      # head.raw: the Gaussian's mean
    action ~ Normal(mean, exp(log_std))                   # log_std: state-independent
    env command = head.squash(action)                     # TanhActions

The Gaussian lives on the pre-squash output. Its deterministic action `squash(mean)` is
then exactly `DrivingPolicy.forward`, commands stay inside the bounds whatever is
sampled, and PPO's likelihood ratio is exact: tanh is a bijection, so the ratio of the
densities of the raw action equals that of the squashed command (the Jacobian cancels).
sb3's own `squash_output` is reserved for gSDE, and a Gaussian on the bounded command
with clipping would put mass on the bounds that its log-probability does not see. sb3
insists on finite action bounds: the raw space is `[-RAW_ACTION_LIMIT, RAW_ACTION_LIMIT]`,
where tanh is already +-1 in float32, so sb3's clip before the env changes no command.
Entropy (for `ent_coef`) is the Gaussian's on the raw output.

The critic is a value MLP on the shared encoder features (recurrent: sb3-contrib's own
critic LSTM on them), then a linear value. With `freeze_encoder=True` the observations are
`EncodedObservations`' features: the features extractor (`PrecomputedFeatures`) passes
them through and only holds the encoder (frozen, outside the optimizer) so that the
policy's weights, checkpoints and export stay the whole network. The sb3 policy keeps a
reference to the `DrivingPolicy` whose modules it holds (`policy.driving`);
`to_driving_policy` copies it out (CPU, eval mode) for `policies.registry.save_policy`.
Observations reach the encoder as the env gives them (uint8 bev, float32 ego), not through
sb3's image normalisation, so features are computed exactly as at inference.

Recurrent policies: sb3-contrib's `RecurrentPPO` calls its core `lstm_actor` with LSTM
states `(h, c)`; the `lstm` policy's own `nn.LSTM` is that core. sb3-contrib has no GRU:
`GruAsLstm` runs the `gru` policy's `nn.GRU` under the LSTM calling convention with a
cell state that stays zero (sb3-contrib only stores, masks and passes it back), so GRU
weights train and export exactly as well (costs one unused state buffer).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from torch import nn

from reflexdrive.common.seed_ranges import TRAINING
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.policies.networks import DrivingPolicy, LstmPolicy, RecurrentPolicy
from reflexdrive.policies.registry import build

OBS_KEYS = ("bev", "ego", "lidar", "route", "timing")
"""Observation entries handed to sb3 (all of the env's; a policy reads those in its
`obs_keys`)."""

RAW_ACTION_LIMIT = 10.0
"""Bound of the pre-squash action space sb3 sees (tanh(10) is 1.0 in float32)."""


# ----------------------------------------------------------------------------- env side


class BatchedVecEnv(VecEnv):
    """`BatchedDrivingEnv`s as one sb3 `VecEnv` (see the module docstring).

    Args:
        envs: batched envs with `autoreset_mode="disabled"`, observations on and
            `copy=True` (each step's arrays fresh: sb3 keeps the previous ones), the same
            single observation and action spaces; env `i` of the adapter is the
            concatenation of their envs in order.
        seed: seeds the scenario seeds of every episode (see `seed`).

    Attributes:
        envs: the batched envs.
        scenario_seeds: `(num_envs,)` int64 scenario seed of each env's current episode.
    """

    def __init__(self, envs: Sequence[BatchedDrivingEnv], seed: int | None = None):
        envs = tuple(envs)
        if not envs:
            raise ValueError("envs must hold at least one BatchedDrivingEnv")
        first = envs[0]
        for env in envs:
            if not isinstance(env, BatchedDrivingEnv):
                raise ValueError(f"envs must be BatchedDrivingEnv, got {type(env).__name__}")
            if env.autoreset_mode != gym.vector.AutoresetMode.DISABLED:
                raise ValueError("the batched envs need autoreset_mode='disabled' (the adapter "
                                 "resets finished envs itself)")
            if not env.observations or not env.copy:
                raise ValueError("the batched envs need observations=True and copy=True")
            if (env.single_observation_space != first.single_observation_space
                    or env.single_action_space != first.single_action_space):
                raise ValueError("the batched envs must share observation and action spaces")
        self.envs = envs
        bounds = np.cumsum([0] + [env.num_envs for env in envs])
        self._rows = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self._owner = np.repeat(np.arange(len(envs)), [env.num_envs for env in envs])
        space = gym.spaces.Dict({key: first.single_observation_space[key] for key in OBS_KEYS})
        super().__init__(int(bounds[-1]), space, first.single_action_space)
        self.scenario_seeds = np.zeros(self.num_envs, dtype=np.int64)
        self._rng = np.random.default_rng(seed)
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._actions: np.ndarray | None = None
        self._start = time.perf_counter()

    # -- VecEnv API ------------------------------------------------------------------------

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Reseed the generator of scenario seeds (used from the next reset on)."""
        self._rng = np.random.default_rng(seed)
        return [seed] * self.num_envs

    def reset(self) -> dict[str, np.ndarray]:
        """Start a new episode in every env; `{"bev": (N, C, H, W), "ego": (N, 8)}`."""
        parts = []
        for env, rows in zip(self.envs, self._rows):
            seeds = self._draw_seeds(env.num_envs)
            obs, _ = env.reset(seed=seeds)
            self.scenario_seeds[rows] = seeds
            parts.append(obs)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._concat(parts)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        """One tick of every env. Returns `(obs, rewards (N,) float32, dones (N,) bool,
        infos)`; finished envs are already reset (see the module docstring)."""
        if self._actions is None:
            raise RuntimeError("step_async must be called before step_wait")
        actions, self._actions = self._actions, None
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        dones = np.zeros(self.num_envs, dtype=bool)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        parts = []
        for env, rows in zip(self.envs, self._rows):
            obs, reward, terminated, truncated, info = env.step(actions[rows])
            done = terminated | truncated
            rewards[rows] = reward
            dones[rows] = done
            self._returns[rows] += reward
            self._lengths[rows] += 1
            if done.any():
                self._finish(env, rows, obs, terminated, truncated, info, infos)
            parts.append(obs)
        return self._concat(parts), rewards, dones, infos

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """The attribute of the batched env each index belongs to (one value per index)."""
        return [getattr(self.envs[self._owner[i]], attr_name) for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Set the attribute on every batched env any index belongs to (env-wide)."""
        for k in sorted({int(self._owner[i]) for i in self._indices(indices)}):
            setattr(self.envs[k], attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: Any = None,
                   **method_kwargs) -> list[Any]:
        """Call the method once per batched env involved; its result repeated per index."""
        results: dict[int, Any] = {}
        for k in sorted({int(self._owner[i]) for i in self._indices(indices)}):
            results[k] = getattr(self.envs[k], method_name)(*method_args, **method_kwargs)
        return [results[int(self._owner[i])] for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    # -- internals -------------------------------------------------------------------------

    def _draw_seeds(self, n: int) -> list[int]:
        return [int(s) for s in self._rng.integers(TRAINING.start, TRAINING.stop, size=n)]

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, (int, np.integer)):
            return [int(indices)]
        return [int(i) for i in indices]

    def _concat(self, parts: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if len(parts) == 1:
            return {key: parts[0][key] for key in OBS_KEYS}
        return {key: np.concatenate([part[key] for part in parts]) for key in OBS_KEYS}

    def _finish(self, env: BatchedDrivingEnv, rows: slice, obs: dict[str, np.ndarray],
                terminated: np.ndarray, truncated: np.ndarray, info: Mapping[str, Any],
                infos: list[dict[str, Any]]) -> None:
        """Fill the finished envs' infos, reset them and put their first observations
        into `obs` (in place)."""
        done = terminated | truncated
        local = np.flatnonzero(done)
        final = {key: obs[key][local] for key in OBS_KEYS}              # copies
        seeds = self._draw_seeds(env.num_envs)
        fresh, _ = env.reset(seed=seeds, options={"reset_mask": done})
        elapsed = round(time.perf_counter() - self._start, 6)
        for j, i in enumerate(local):
            g = rows.start + int(i)
            infos[g] = {
                "terminal_observation": {key: final[key][j] for key in OBS_KEYS},
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                "is_success": not bool(terminated[i]),
                "episode": {"r": float(self._returns[g]), "l": int(self._lengths[g]),
                            "t": elapsed},
                "scenario_seed": int(self.scenario_seeds[g]),
                "crashed": bool(info["crashed"][i]),
                "offroad": bool(info["offroad"][i]),
            }
            self.scenario_seeds[g] = seeds[i]
        for key in OBS_KEYS:
            obs[key][local] = fresh[key][local]
        self._returns[rows][local] = 0.0
        self._lengths[rows][local] = 0


def make_batched_vec_env(scenarios: Sequence[str], num_envs: int, *, seed: int | None = None,
                         **env_kwargs: Any) -> BatchedVecEnv:
    """`num_envs` envs split over `scenarios` as evenly as possible (the first ones get one
    more), one `BatchedDrivingEnv` per scenario, as a `BatchedVecEnv`.

    Args:
        scenarios: straight-road scenario names (`envs.gym.vector.batched_scenarios()`).
        num_envs: total envs, at least one per scenario.
        seed: see `BatchedVecEnv`.
        **env_kwargs: `BatchedDrivingEnv` arguments (mode, latency, sensors, ...);
            `autoreset_mode`, `observations` and `copy` are set here.
    """
    if num_envs < len(scenarios):
        raise ValueError(f"num_envs={num_envs} is invalid: needs at least one env per "
                         f"scenario ({len(scenarios)})")
    share, extra = divmod(num_envs, len(scenarios))
    envs = [BatchedDrivingEnv(share + (k < extra), name, autoreset_mode="disabled",
                              observations=True, copy=True, **env_kwargs)
            for k, name in enumerate(scenarios)]
    return BatchedVecEnv(envs, seed=seed)


class TanhActions(VecEnvWrapper):
    """Actions are the policy head's pre-squash outputs; the env gets
    `clamp(centre + half_range * tanh(raw), low, high)` per dimension (float32, the
    arithmetic of `ActionHead.squash`).

    Args:
        venv: the env (commands `[acceleration m/s^2, steering rad]`).
        acceleration_bounds, steering_bounds: the head's `(low, high)` bounds.
    """

    def __init__(self, venv: VecEnv, acceleration_bounds: Sequence[float],
                 steering_bounds: Sequence[float]):
        low, high = zip(acceleration_bounds, steering_bounds)
        self.low = torch.tensor(low, dtype=torch.float32)
        self.high = torch.tensor(high, dtype=torch.float32)
        self.centre = (self.low + self.high) / 2
        self.half_range = (self.high - self.low) / 2
        space = gym.spaces.Box(-RAW_ACTION_LIMIT, RAW_ACTION_LIMIT, shape=(2,), dtype=np.float32)
        super().__init__(venv, action_space=space)

    def squash(self, raw: np.ndarray) -> np.ndarray:
        """`(N, 2)` raw outputs -> `(N, 2)` float32 commands inside the bounds."""
        raw_t = torch.as_tensor(np.asarray(raw, dtype=np.float32))
        action = self.centre + self.half_range * torch.tanh(raw_t)
        return torch.clamp(action, self.low, self.high).numpy()

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(self.squash(actions))

    def step_wait(self):
        return self.venv.step_wait()

    def reset(self):
        return self.venv.reset()


class EncodedObservations(VecEnvWrapper):
    """Observations as a frozen encoder's features (see the module docstring).

    Each `reset`/`step` runs the attached encoder's `frozen_features` once on the wrapped
    env's dict observations, without gradients, on the encoder's device, and returns `(N,
    frozen_width)` float32 rows; a finished env's `infos[i]["terminal_observation"]`
    becomes its row `(frozen_width,)` too (sb3 bootstraps truncated episodes from it).
    `encoder.finish_features` of a batch of rows equals what the encoder computes inside
    the policy on the same batch, so the rollout's actions are the unfrozen path's.

    Args:
        venv: env with the raw dict observations (`TanhActions` over a `BatchedVecEnv`).
        frozen_width: the encoder's `frozen_width` (`features_dim` for most encoders).

    Attributes:
        encoder: the encoder (`attach`; the sb3 policy's own frozen one), None before.
        raw_observations: the raw observations of the last `reset`/`step` (dict of `(N,
            ...)` arrays), what the returned features were computed from.
    """

    def __init__(self, venv: VecEnv, frozen_width: int):
        space = gym.spaces.Box(-np.inf, np.inf, shape=(int(frozen_width),), dtype=np.float32)
        super().__init__(venv, observation_space=space)
        self.encoder: nn.Module | None = None
        self.raw_observations: dict[str, np.ndarray] | None = None

    def attach(self, encoder: nn.Module) -> None:
        """Use `encoder` (its `frozen_width` must be the observation width)."""
        if encoder.frozen_width != self.observation_space.shape[0]:
            raise ValueError(f"encoder.frozen_width={encoder.frozen_width} is invalid: the "
                             f"observations are {self.observation_space.shape[0]} wide")
        self.encoder = encoder

    def encode(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """`(N, frozen_width)` float32 rows of dict observations `obs`."""
        encoder = self._encoder()
        device = next(encoder.parameters()).device
        with torch.no_grad():
            features = encoder.frozen_features(
                {key: torch.as_tensor(np.asarray(value), device=device)
                 for key, value in obs.items()})
        return features.float().cpu().numpy()

    def _encoder(self) -> nn.Module:
        if self.encoder is None:
            raise RuntimeError("EncodedObservations needs attach(encoder) before reset/step")
        return self.encoder

    def reset(self) -> np.ndarray:
        self._encoder()                     # before the envs move on
        self.raw_observations = self.venv.reset()
        return self.encode(self.raw_observations)

    def step_async(self, actions: np.ndarray) -> None:
        self._encoder()
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.raw_observations = obs
        finished = [i for i, info in enumerate(infos) if "terminal_observation" in info]
        if finished:
            final = self.encode({key: np.stack([infos[i]["terminal_observation"][key]
                                                for i in finished])
                                 for key in infos[finished[0]]["terminal_observation"]})
            for row, i in enumerate(finished):
                infos[i]["terminal_observation"] = final[row]
        return self.encode(obs), rewards, dones, infos


# ----------------------------------------------------------------------------- policy side


class DrivingFeatures(BaseFeaturesExtractor):
    """sb3 features extractor: a `DrivingPolicy`'s encoder on the raw observations.

    The policies pass the observations through unchanged (uint8 bev); the few sb3 paths
    that preprocess them first (`predict_values`, `get_distribution`) hand the raster as
    float 0..255 (`normalize_images=False`), which goes back to uint8 exactly.
    """

    def __init__(self, observation_space: gym.spaces.Dict, encoder: nn.Module):
        super().__init__(observation_space, encoder.features_dim)
        self.encoder = encoder

    def forward(self, observations: Mapping[str, torch.Tensor]) -> torch.Tensor:
        bev = observations["bev"]
        if bev.dtype != torch.uint8:
            bev = bev.to(torch.uint8)
        return self.encoder({**observations, "bev": bev})


class PrecomputedFeatures(BaseFeaturesExtractor):
    """sb3 features extractor of a frozen encoder: the observations are its
    `frozen_features` (`EncodedObservations`), finished by `encoder.finish_features` (the
    identity unless part of the encoder stays unfrozen). It holds the encoder as a
    submodule, so the policy's state dict, sb3's checkpoints and the export keep it."""

    def __init__(self, observation_space: gym.spaces.Box, encoder: nn.Module):
        super().__init__(observation_space, encoder.features_dim)
        self.encoder = encoder

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        width = self.encoder.frozen_width
        if (not isinstance(observations, torch.Tensor) or observations.ndim != 2
                or observations.shape[1] != width):
            raise ValueError(f"observations must be (B, {width}) frozen encoder features "
                             "(the encoder is frozen: EncodedObservations)")
        return self.encoder.finish_features(observations.float())


class DrivingLatent(nn.Module):
    """sb3's `mlp_extractor` role: the actor latent is the head's hidden layer (the head's
    last linear is the action net), the critic latent a value MLP on the same input.

    Args:
        actor: the head's layers up to its last linear (`head.mlp[:-1]`).
        actor_dim: their output width (`head.config.hidden`).
        features_dim: width of the features the critic reads (sb3-contrib's critic LSTM
            output for recurrent policies, whose actor may read a wider input: `skip`).
        value_hidden: width of the value MLP.
        detach_critic: the critic reads the features without passing gradients back
            (a frozen encoder whose timing pathway trains: the value loss then does not
            shape the actor's features).
    """

    def __init__(self, actor: nn.Module, actor_dim: int, features_dim: int, value_hidden: int,
                 detach_critic: bool = False):
        super().__init__()
        self.detach_critic = bool(detach_critic)
        self.policy_net = actor
        self.value_net = nn.Sequential(nn.Linear(features_dim, value_hidden), nn.ReLU())
        nn.init.orthogonal_(self.value_net[0].weight, math.sqrt(2))
        nn.init.zeros_(self.value_net[0].bias)
        self.latent_dim_pi = actor_dim
        self.latent_dim_vf = value_hidden

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy_net(features)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(features.detach() if self.detach_critic else features)


class _LstmConvention(nn.Module):
    """A module sb3-contrib can use as its `lstm_actor`: the sizes it reads
    (`input_size`, `hidden_size`: the state's width, `num_layers`) are those of the
    wrapped recurrent module `inner`."""

    @property
    def inner(self) -> nn.Module:
        raise NotImplementedError

    @property
    def input_size(self) -> int:
        return self.inner.input_size

    @property
    def hidden_size(self) -> int:
        """The state's width (what sb3-contrib sizes its state buffers by)."""
        return self.inner.hidden_size

    @property
    def num_layers(self) -> int:
        return self.inner.num_layers


class GruAsLstm(_LstmConvention):
    """An `nn.GRU` under `nn.LSTM`'s calling convention, for sb3-contrib's `lstm_actor`:
    `forward(x, (h, c)) -> (out, (h', c))`; `c` is carried unchanged (zeros)."""

    def __init__(self, gru: nn.GRU):
        super().__init__()
        self.gru = gru

    @property
    def inner(self) -> nn.Module:
        return self.gru

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, h = self.gru(x, state[0])
        return out, (h, state[1])


class SkipCore(_LstmConvention):
    """A recurrent core under `nn.LSTM`'s calling convention whose output is `[x, out]`:
    the `skip` of `policies.networks.RecurrentConfig` (the head reads the encoder's
    features beside the recurrent output), for sb3-contrib's `lstm_actor`."""

    def __init__(self, core: nn.Module):
        super().__init__()
        self.core = core

    @property
    def inner(self) -> nn.Module:
        return self.core

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = self.core(x, state)
        return torch.cat([x, out], dim=-1), state


class _DrivingParts:
    """What both sb3 policies of this module share (a mixin before the sb3 base class).

    Constructor keyword arguments (sb3 `policy_kwargs`, saved in its checkpoints):
        policy_name: registry name ("cnn", "gru", "lstm", "transformer").
        policy_config: the policy's config as a dict (`config.to_dict()`).
        obs_spec: `{"bev": {...}, "ego": {...}}` the network reads.
        value_hidden: width of the critic's hidden layer.
        initial_std: `(acceleration, steering)` std of the Gaussian on the pre-squash
            output at the start (`log_std` is then learnt).
        freeze_encoder: the encoder is frozen (no gradient, not in the optimizer) and the
            observations are its features (`EncodedObservations`, `PrecomputedFeatures`);
            False: the observations are the env's dicts and the encoder trains.
    """

    _driving: tuple[DrivingPolicy]
    initial_std: tuple[float, float]
    value_hidden: int
    freeze_encoder: bool

    def _setup_driving(self, policy_name: str, policy_config: Mapping[str, Any],
                       obs_spec: Mapping[str, Any], value_hidden: int,
                       initial_std: Sequence[float], freeze_encoder: bool) -> DrivingPolicy:
        driving = build(policy_name, obs_spec, **dict(policy_config))
        self._driving = (driving,)          # a plain attribute: its modules register below
        self._driving_args = {"policy_name": policy_name,
                              "policy_config": dict(policy_config),
                              "obs_spec": dict(obs_spec), "value_hidden": int(value_hidden),
                              "initial_std": tuple(float(s) for s in initial_std),
                              "freeze_encoder": bool(freeze_encoder)}
        self.value_hidden = int(value_hidden)
        self.initial_std = tuple(float(s) for s in initial_std)
        self.freeze_encoder = bool(freeze_encoder)
        if self.freeze_encoder:
            driving.encoder.freeze()
        return driving

    @property
    def driving(self) -> DrivingPolicy:
        """The `DrivingPolicy` whose encoder, core and head this sb3 policy trains."""
        return self._driving[0]

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        if self.freeze_encoder:
            return PrecomputedFeatures(self.observation_space, self.driving.encoder)
        return DrivingFeatures(self.observation_space, self.driving.encoder)

    def frozen_parameter_ids(self) -> set[int]:
        """`id`s of the parameters a frozen encoder keeps (all of the encoder's but its
        `unfrozen_parameters`); empty unless `freeze_encoder`."""
        if not self.freeze_encoder:
            return set()
        encoder = self.driving.encoder
        unfrozen = {id(p) for p in encoder.unfrozen_parameters()}
        return {id(p) for p in encoder.parameters()} - unfrozen

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer updates: all but a frozen encoder's."""
        frozen = self.frozen_parameter_ids()
        return [p for p in self.parameters() if id(p) not in frozen]

    def extract_features(self, obs, features_extractor=None):
        """The encoder on the observations as the env gives them (no sb3 preprocessing)."""
        extractor = self.features_extractor if features_extractor is None else features_extractor
        return extractor(obs)

    def _head_latent(self, features_dim: int, detach_critic: bool = False) -> DrivingLatent:
        head = self.driving.head
        return DrivingLatent(head.mlp[:-1], head.config.hidden, features_dim, self.value_hidden,
                             detach_critic=detach_critic)

    def _adopt_head(self, lr_schedule) -> None:
        """After sb3's `_build`: the head's last linear is the action net, `log_std` starts
        at `log(initial_std)`, the value layer gets sb3's orthogonal init, and the optimizer
        is rebuilt over the final parameters."""
        self.action_net = self.driving.head.mlp[-1]
        with torch.no_grad():
            self.log_std.copy_(torch.log(torch.tensor(self.initial_std, dtype=torch.float32)))
        nn.init.orthogonal_(self.value_net.weight, 1.0)
        nn.init.zeros_(self.value_net.bias)
        self._rebuild_optimizer(lr_schedule)

    def _rebuild_optimizer(self, lr_schedule) -> None:
        self.optimizer = self.optimizer_class(self.trainable_parameters(),
                                              lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in _FIXED_KWARGS:
            data.pop(key, None)
        data.update(self._driving_args)
        return data


_FIXED_KWARGS = frozenset({
    "net_arch", "activation_fn", "ortho_init", "features_extractor_class",
    "features_extractor_kwargs", "share_features_extractor", "normalize_images",
    "squash_output", "lstm_hidden_size", "n_lstm_layers", "shared_lstm", "enable_critic_lstm",
    "lstm_kwargs"})
"""sb3 policy arguments the driving policy's architecture decides."""


def _check_kwargs(kwargs: Mapping[str, Any]) -> None:
    clash = sorted(_FIXED_KWARGS & set(kwargs))
    if clash:
        raise ValueError("policy_kwargs " + ", ".join(clash) + " are fixed by the driving "
                         "policy's own architecture")
    if kwargs.get("use_sde"):
        raise ValueError("use_sde is not supported: the policy is a Gaussian on the head's "
                         "pre-squash output with a state-independent log-std")


class DrivingActorCritic(_DrivingParts, ActorCriticPolicy):
    """sb3 `ActorCriticPolicy` of a feed-forward `DrivingPolicy` (`cnn`, `transformer`).

    Args:
        observation_space, action_space, lr_schedule: from sb3 (the action space is
            `TanhActions`' raw one).
        policy_name, policy_config, obs_spec, value_hidden, initial_std, freeze_encoder:
            see `_DrivingParts`.
        **kwargs: further `ActorCriticPolicy` arguments (optimizer_class, ...).
    """

    def __init__(self, observation_space, action_space, lr_schedule, *, policy_name: str,
                 policy_config: Mapping[str, Any], obs_spec: Mapping[str, Any],
                 value_hidden: int = 128, initial_std: Sequence[float] = (0.3, 0.05),
                 freeze_encoder: bool = False, **kwargs: Any):
        _check_kwargs(kwargs)
        driving = self._setup_driving(policy_name, policy_config, obs_spec, value_hidden,
                                      initial_std, freeze_encoder)
        if isinstance(driving, RecurrentPolicy):
            raise ValueError(f"policy_name={policy_name!r} is recurrent: use "
                             "DrivingRecurrentActorCritic (RecurrentPPO)")
        super().__init__(observation_space, action_space, lr_schedule, net_arch=[],
                         activation_fn=nn.ReLU, ortho_init=False, normalize_images=False,
                         share_features_extractor=True, **kwargs)

    def _build_mlp_extractor(self) -> None:
        # a frozen encoder's trainable timing pathway serves the actor; the critic reads
        # the features detached (recurrent policies: sb3-contrib's critic LSTM reads them
        # and passes its gradient on)
        self.mlp_extractor = self._head_latent(self.features_dim,
                                               detach_critic=self.freeze_encoder)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self._adopt_head(lr_schedule)


class DrivingRecurrentActorCritic(_DrivingParts, RecurrentActorCriticPolicy):
    """sb3-contrib `RecurrentActorCriticPolicy` of a recurrent `DrivingPolicy` (`lstm`,
    `gru`): its encoder is the features extractor, its `nn.LSTM` (or `GruAsLstm` around
    its `nn.GRU`) the actor core, its head the actor head; the critic is sb3-contrib's own
    LSTM of the same size on the shared features, then the value MLP.

    Args: as `DrivingActorCritic`.
    """

    def __init__(self, observation_space, action_space, lr_schedule, *, policy_name: str,
                 policy_config: Mapping[str, Any], obs_spec: Mapping[str, Any],
                 value_hidden: int = 128, initial_std: Sequence[float] = (0.3, 0.05),
                 freeze_encoder: bool = False, **kwargs: Any):
        _check_kwargs(kwargs)
        driving = self._setup_driving(policy_name, policy_config, obs_spec, value_hidden,
                                      initial_std, freeze_encoder)
        if not isinstance(driving, RecurrentPolicy):
            raise ValueError(f"policy_name={policy_name!r} is not recurrent: use "
                             "DrivingActorCritic (PPO)")
        config = driving.config
        super().__init__(observation_space, action_space, lr_schedule, net_arch=[],
                         activation_fn=nn.ReLU, ortho_init=False, normalize_images=False,
                         share_features_extractor=True, lstm_hidden_size=config.hidden_size,
                         n_lstm_layers=config.layers, shared_lstm=False,
                         enable_critic_lstm=True, **kwargs)
        core = driving.rnn if isinstance(driving, LstmPolicy) else GruAsLstm(driving.rnn)
        self.lstm_actor = SkipCore(core) if config.skip else core
        self._rebuild_optimizer(lr_schedule)

    def _build_mlp_extractor(self) -> None:
        # the critic reads its own LSTM's output (hidden_size wide) whatever the actor's
        self.mlp_extractor = self._head_latent(self.lstm_output_dim)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self._adopt_head(lr_schedule)


def to_driving_policy(policy: _DrivingParts) -> DrivingPolicy:
    """A standalone copy of the `DrivingPolicy` an sb3 policy of this module trains, on
    the CPU in eval mode (for `save_policy`): `forward` gives the sb3 policy's
    deterministic action, squashed."""
    if not isinstance(policy, _DrivingParts):
        raise ValueError(f"policy={type(policy).__name__} is invalid: must be a "
                         "DrivingActorCritic or DrivingRecurrentActorCritic")
    return copy.deepcopy(policy.driving).cpu().eval()

