"""End-to-end driving policies: raw observations in, bounded `[acceleration, steering]` out.

Every policy is a `DrivingPolicy`: an encoder (`policies.encoders`), an optional recurrent
core, and an `ActionHead`. One interface for all of them::

    action, state = policy(obs, state, episode_start)        # one step, (B, 2)
    actions, state = policy.forward_sequence(obs_seq, state, starts)   # (T, B, 2)

- `obs`: `{"bev": (B, C, H, W) uint8, "ego": (B, 8) float32, "lidar": (B, beams, 2)
  float32}` as the env returns them (normalised inside; `policy.obs_keys` are the entries
  a policy reads: the lidar by default, not in the configs of checkpoints written before
  it was an input); a sequence has a leading time dimension `(T, B, ...)`.
- `state`: a tuple of tensors, `()` for the feed-forward policies; GRU `(h,)`, LSTM
  `(h, c)`, each `(layers, B, hidden)` (torch's and sb3-contrib's layout). None means
  `initial_state` (zeros).
- `episode_start`: bool (or 0/1 float, as stable-baselines3 passes it) `(B,)` per step,
  `(T, B)` for a sequence: where True the state is zeroed *before* that step, so a
  sequence spanning episode boundaries (truncated BPTT) gives exactly the step-by-step
  results.
- `action`: float32 `(B, 2)` `[acceleration m/s^2, steering rad]`, each
  `centre + half_range * tanh(raw)`, so always inside the configured bounds (defaults: the
  envs' action space, `ACCELERATION_BOUNDS = (-8, 4)` m/s^2, `STEERING_BOUNDS = (-0.5,
  0.5)` rad).

Networks (by registry name, `policies.registry.build`):

- `cnn` (`CnnPolicy`): `ConvEncoder` (strided convs on bev + ego MLP) -> head.
- `gru`, `lstm` (`RecurrentPolicy`): the same encoder -> `nn.GRU` / `nn.LSTM` -> head,
  which reads the encoder's features beside the recurrent output (`skip`, default: the
  network is at least the feed-forward one, and the state adds memory on top). The
  core is a plain single-direction torch RNN over `(T, B, features)`: the `lstm`'s
  weights (`rnn.*`) load into sb3-contrib's `lstm_actor` of the same size, its state
  layout is sb3-contrib's.
- `transformer` (`TransformerPolicy`): `PatchEncoder` (ViT over bev patches plus an ego
  token) -> head; `attention_map(obs)` gives the last layer's attention over the patches.

For training: `features(obs)` / `policy.encoder` is the features extractor (stable-
baselines3 `features_dim` = `policy.encoder.features_dim`), `head.to_unit(action)` maps
expert actions to `[-1, 1]` per dimension for a scale-free behaviour-cloning loss, and
`head.raw(...)` gives the pre-squash outputs. Configs are frozen dataclasses validated on
construction; `to_dict` / `from_dict` round-trip them through JSON (checkpoints).

Torch only: this module imports neither `envs` nor `agents`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Mapping

import torch
from reflexdrive.policies.encoders import (
    ConvEncoder,
    ConvEncoderConfig,
    Observation,
    PatchEncoder,
    PatchEncoderConfig,
    check_obs_spec,
)
from torch import nn

from reflexdrive.common.validation import ConfigError, boolean, count, validate_fields

State = tuple[torch.Tensor, ...]
"""Recurrent state: `()` (feed-forward), `(h,)` (GRU) or `(h, c)` (LSTM), each
`(layers, B, hidden)`."""

ACCELERATION_BOUNDS = (-8.0, 4.0)
"""Default acceleration bounds [m/s^2]: the envs' `envs.config.ACCELERATION_BOUNDS`
(repeated here because `policies` does not import `envs`; a test pins them equal)."""
STEERING_BOUNDS = (-0.5, 0.5)
"""Default steering bounds [rad]: the envs' `envs.config.STEERING_BOUNDS`."""


def _bounds(name: str, value: Any) -> tuple[float, float]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v) for v in value) or not value[0] < value[1]):
        raise ConfigError(name, value, "must be a finite (low, high) pair with low < high")
    return (float(value[0]), float(value[1]))


def _from_dict(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """`cls(**data)` with nested config dataclasses built from dicts and lists made
    tuples; an unknown field raises ValueError listing the allowed ones."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(where, data, f"must be a dict of {cls.__name__} fields")
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"{where + '.' if where else ''}{key} is not a field of "
                             f"{cls.__name__}: allowed fields are " + ", ".join(known))
        nested = known[key].default_factory
        if isinstance(nested, type) and hasattr(nested, "__dataclass_fields__"):
            value = _from_dict(nested, value, f"{where + '.' if where else ''}{key}")
        elif isinstance(value, list):
            value = tuple(value)
        values[key] = value
    return cls(**values)


class _Config:
    """`to_dict` / `from_dict` for the config dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (a checkpoint's `config`)."""
        return asdict(self)                                     # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Inverse of `to_dict`; nested configs may be dicts; unknown fields raise
        ValueError."""
        return _from_dict(cls, data, "")


# ----------------------------------------------------------------------------- head


@dataclass(frozen=True)
class HeadConfig(_Config):
    """`ActionHead`: an MLP to `[acceleration, steering]`, tanh-squashed into bounds.

    Validated on construction; errors name the field as `head.<field>`. The bounds must be
    finite with `low < high` and are stored as floats.

    Attributes:
        hidden: width of the hidden layer.
        acceleration_bounds: `(low, high)` of the acceleration command [m/s^2].
        steering_bounds: `(low, high)` of the steering command [rad].
    """

    hidden: int = count(128, help="width of the hidden layer")
    acceleration_bounds: tuple[float, float] = ACCELERATION_BOUNDS
    steering_bounds: tuple[float, float] = STEERING_BOUNDS

    def __post_init__(self) -> None:
        validate_fields(self, "head.")
        object.__setattr__(self, "acceleration_bounds",
                           _bounds("head.acceleration_bounds", self.acceleration_bounds))
        object.__setattr__(self, "steering_bounds",
                           _bounds("head.steering_bounds", self.steering_bounds))


class ActionHead(nn.Module):
    """`(B, F)` features -> `(B, 2)` float32 `[acceleration m/s^2, steering rad]`.

    Linear `hidden`, ReLU, linear 2 (the raw output), then `centre + half_range * tanh(raw)` per
    dimension, clamped to the bounds (float rounding). The last layer starts near zero
    weights with a bias that makes an untrained policy command zero acceleration and
    zero steering (when the bounds contain 0), i.e. coast straight.
    """

    def __init__(self, features: int, config: HeadConfig):
        super().__init__()
        self.config = config
        self.mlp = nn.Sequential(nn.Linear(features, config.hidden), nn.ReLU(inplace=True),
                                 nn.Linear(config.hidden, 2))
        low, high = zip(config.acceleration_bounds, config.steering_bounds)
        low_t = torch.tensor(low, dtype=torch.float32)
        high_t = torch.tensor(high, dtype=torch.float32)
        self.register_buffer("low", low_t)
        self.register_buffer("high", high_t)
        self.register_buffer("centre", (low_t + high_t) / 2)
        self.register_buffer("half_range", (high_t - low_t) / 2)
        last = self.mlp[-1]
        with torch.no_grad():
            last.weight.mul_(0.01)
            zero = ((0.0 - self.centre) / self.half_range).clamp(-0.999, 0.999)
            last.bias.copy_(torch.where((low_t < 0) & (high_t > 0), torch.atanh(zero), 0.0))

    def raw(self, features: torch.Tensor) -> torch.Tensor:
        """The pre-squash output `(B, 2)` (float32)."""
        return self.mlp(features).float()

    def squash(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs to actions inside the bounds."""
        action = self.centre + self.half_range * torch.tanh(raw.float())
        return torch.clamp(action, self.low, self.high)

    def to_unit(self, action: torch.Tensor) -> torch.Tensor:
        """Actions `(..., 2)` to `[-1, 1]` per dimension (`(a - centre) / half_range`): the scale
        in which a behaviour-cloning loss weighs acceleration and steering alike."""
        return (action.float() - self.centre) / self.half_range

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.squash(self.raw(features))


# ----------------------------------------------------------------------------- policies


class DrivingPolicy(nn.Module):
    """The interface of every end-to-end policy (see the module docstring).

    Attributes:
        name: registry name ("cnn", "gru", "lstm", "transformer").
        is_recurrent: whether `state` carries anything.
        obs_spec: `{"bev": {"shape", "dtype"}, "ego": {...}, ("lidar": {...}), ("route":
            {...})}` the policy
            reads (`obs_keys`: its keys).
        config: its frozen config dataclass.
        encoder: `(obs) -> (B, encoder.features_dim)`.
        head: `ActionHead`.
    """

    name: ClassVar[str] = ""
    is_recurrent: ClassVar[bool] = False
    config_type: ClassVar[type] = _Config

    def __init__(self, obs_spec: Mapping[str, Any], config: Any = None):
        super().__init__()
        self.config = self.config_type() if config is None else config
        if not isinstance(self.config, self.config_type):
            raise ConfigError("config", config,
                              f"{self.name} takes a {self.config_type.__name__}")
        self.obs_spec = check_obs_spec(obs_spec, lidar=self.config.encoder.uses_lidar,
                                       route=self.config.encoder.uses_route,
                                       timing=self.config.encoder.uses_timing)
        self.encoder: nn.Module
        self.head: ActionHead

    @property
    def obs_keys(self) -> tuple[str, ...]:
        """The observation entries the policy reads: `("bev", "ego")`, plus `"lidar"` and
        `"route"`, `"timing"` when its encoder reads them."""
        return tuple(self.obs_spec)

    # -- state -------------------------------------------------------------------------

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> State:
        """The state at an episode's start for `batch` envs: zeros (`()` if stateless)."""
        return ()

    def reset_state(self, state: State, episode_start: torch.Tensor | None) -> State:
        """`state` with the envs where `episode_start` `(B,)` is True set to zeros."""
        if episode_start is None or not state:
            return state
        start = episode_start.to(device=state[0].device, dtype=torch.bool)
        start = start.reshape(1, -1, *([1] * (state[0].ndim - 2)))
        return tuple(torch.where(start, torch.zeros((), dtype=s.dtype, device=s.device), s)
                     for s in state)

    # -- forward -----------------------------------------------------------------------

    def features(self, obs: Observation) -> torch.Tensor:
        """The encoder's features `(B, encoder.features_dim)`."""
        return self.encoder(obs)

    def core(self, features: torch.Tensor, state: State,
             episode_start: torch.Tensor | None) -> tuple[torch.Tensor, State]:
        """Features `(T, B, F)` to head inputs `(T, B, F')` and the state after step T;
        `episode_start` is None or `(T, B)`. Feed-forward: identity."""
        return features, state

    def _state(self, state: State | None, batch: int, device: torch.device) -> State:
        return self.initial_state(batch, device) if state is None else tuple(state)

    def forward(self, obs: Observation, state: State | None = None,
                episode_start: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """One step for `B` envs: `(action (B, 2) float32, new state)`."""
        features = self.features(obs)
        state = self._state(state, features.shape[0], features.device)
        start = None if episode_start is None else episode_start.reshape(1, -1)
        out, state = self.core(features.unsqueeze(0), state, start)
        return self.head(out[0]), state

    def forward_sequence(self, obs: Observation, state: State | None = None,
                         episode_start: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, State]:
        """`T` steps of `B` envs at once (behaviour cloning on sequences).

        Args:
            obs: `{"bev": (T, B, C, H, W), "ego": (T, B, 8), ("lidar": (T, B, beams,
                2))}`.
            state: the state before step 0 (None: zeros).
            episode_start: `(T, B)` (None: no episode starts).

        Returns:
            `(actions (T, B, 2), state after step T - 1)`, equal to `T` calls of
            `forward` with `episode_start[t]`.
        """
        bev = obs["bev"]
        steps, batch = bev.shape[:2]
        flat = {key: obs[key].reshape(steps * batch, *obs[key].shape[2:])
                for key in self.obs_keys}
        features = self.features(flat).reshape(steps, batch, -1)
        state = self._state(state, batch, features.device)
        out, state = self.core(features, state, episode_start)
        actions = self.head(out.reshape(steps * batch, -1)).reshape(steps, batch, 2)
        return actions, state

    def explain(self, obs: Observation, state: State | None = None,
                episode_start: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """`forward` plus what the policy can show of its decision (by name; `{}` here)."""
        action, state = self(obs, state, episode_start)
        return action, state, {}


@dataclass(frozen=True)
class CnnConfig(_Config):
    """`cnn`: `encoder` (`ConvEncoderConfig`) and `head` (`HeadConfig`)."""

    encoder: ConvEncoderConfig = field(default_factory=ConvEncoderConfig)
    head: HeadConfig = field(default_factory=HeadConfig)

    def __post_init__(self) -> None:
        _check_type("encoder", self.encoder, ConvEncoderConfig)
        _check_type("head", self.head, HeadConfig)


def _check_type(name: str, value: Any, cls: type) -> None:
    if not isinstance(value, cls):
        raise ConfigError(name, value, f"must be a {cls.__name__} (or a dict of its fields)")


class CnnPolicy(DrivingPolicy):
    """`cnn`: `ConvEncoder` -> `ActionHead`; stateless."""

    name = "cnn"
    config_type = CnnConfig

    def __init__(self, obs_spec: Mapping[str, Any], config: CnnConfig | None = None):
        super().__init__(obs_spec, config)
        self.encoder = ConvEncoder(self.config.encoder, self.obs_spec)
        self.head = ActionHead(self.encoder.features_dim, self.config.head)


@dataclass(frozen=True)
class RecurrentConfig(_Config):
    """`gru` / `lstm`: the `cnn` encoder, a recurrent core, the head.

    `skip`: the head reads `[features, recurrent output]` (width `encoder.features +
    hidden_size`) instead of the recurrent output alone. A recurrent policy trained on
    short windows carries its state over episodes ten times longer at inference, where the
    state can drift out of what it was trained on; with the skip the current observation
    reaches the head directly. False: the layout of checkpoints written before it existed.
    """

    encoder: ConvEncoderConfig = field(default_factory=ConvEncoderConfig)
    hidden_size: int = count(128, help="width of the recurrent state")
    layers: int = count(1, help="stacked recurrent layers")
    head: HeadConfig = field(default_factory=HeadConfig)
    skip: bool = boolean(True, help="the head also reads the encoder's features")

    def __post_init__(self) -> None:
        _check_type("encoder", self.encoder, ConvEncoderConfig)
        _check_type("head", self.head, HeadConfig)
        validate_fields(self)

    @property
    def head_inputs(self) -> int:
        """Width of the head's input: `encoder.features + hidden_size` with `skip`, else
        `hidden_size`."""
        return self.hidden_size + (self.encoder.features if self.skip else 0)


class RecurrentPolicy(DrivingPolicy):
    """`gru` / `lstm`: `ConvEncoder` -> `nn.GRU` / `nn.LSTM` (`(T, B, F)` layout) -> head
    (on `[features, output]` with `skip`).

    The state is carried per env (column `b` of every state tensor belongs to env `b`
    alone) and zeroed per env where `episode_start` is True.
    """

    is_recurrent = True
    config_type = RecurrentConfig
    rnn_type: ClassVar[type[nn.RNNBase]] = nn.GRU

    def __init__(self, obs_spec: Mapping[str, Any], config: RecurrentConfig | None = None):
        super().__init__(obs_spec, config)
        cfg = self.config
        self.encoder = ConvEncoder(cfg.encoder, self.obs_spec)
        self.rnn = self.rnn_type(self.encoder.features_dim, cfg.hidden_size,
                                 num_layers=cfg.layers)
        self.head = ActionHead(cfg.head_inputs, cfg.head)

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> State:
        zeros = torch.zeros(self.config.layers, batch, self.config.hidden_size, device=device)
        return (zeros, zeros.clone()) if self.rnn_type is nn.LSTM else (zeros,)

    def _run(self, features: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if self.rnn_type is nn.LSTM:
            out, (h, c) = self.rnn(features, (state[0], state[1]))
            return out, (h, c)
        out, h = self.rnn(features, state[0])
        return out, (h,)

    def core(self, features: torch.Tensor, state: State,
             episode_start: torch.Tensor | None) -> tuple[torch.Tensor, State]:
        out, state = self._recur(features, state, episode_start)
        if self.config.skip:
            out = torch.cat([features, out], dim=-1)
        return out, state

    def _recur(self, features: torch.Tensor, state: State,
               episode_start: torch.Tensor | None) -> tuple[torch.Tensor, State]:
        """The recurrent outputs `(T, B, hidden)` with per-step resets."""
        if episode_start is None:
            return self._run(features, state)
        episode_start = episode_start.to(torch.bool)
        state = self.reset_state(state, episode_start[0])
        if features.shape[0] == 1 or not bool(episode_start[1:].any()):
            return self._run(features, state)          # no reset inside: one cuDNN call
        outputs = []
        for t in range(features.shape[0]):
            if t:
                state = self.reset_state(state, episode_start[t])
            out, state = self._run(features[t:t + 1], state)
            outputs.append(out)
        return torch.cat(outputs), state


class GruPolicy(RecurrentPolicy):
    """`gru`: see `RecurrentPolicy`; state `(h,)`."""

    name = "gru"
    rnn_type = nn.GRU


class LstmPolicy(RecurrentPolicy):
    """`lstm`: see `RecurrentPolicy`; state `(h, c)`."""

    name = "lstm"
    rnn_type = nn.LSTM


@dataclass(frozen=True)
class TransformerConfig(_Config):
    """`transformer`: `encoder` (`PatchEncoderConfig`) and `head` (`HeadConfig`)."""

    encoder: PatchEncoderConfig = field(default_factory=PatchEncoderConfig)
    head: HeadConfig = field(default_factory=HeadConfig)

    def __post_init__(self) -> None:
        _check_type("encoder", self.encoder, PatchEncoderConfig)
        _check_type("head", self.head, HeadConfig)


class TransformerPolicy(DrivingPolicy):
    """`transformer`: `PatchEncoder` -> `ActionHead`; stateless. `explain` and
    `attention_map` give the last layer's `cls` attention over the bev patches."""

    name = "transformer"
    config_type = TransformerConfig

    def __init__(self, obs_spec: Mapping[str, Any], config: TransformerConfig | None = None):
        super().__init__(obs_spec, config)
        self.encoder = PatchEncoder(self.config.encoder, self.obs_spec)
        self.head = ActionHead(self.encoder.features_dim, self.config.head)

    @property
    def patch_grid(self) -> tuple[int, int]:
        """`(H / p, W / p)`: the attention map's shape [patches]."""
        return self.encoder.grid

    def attention_map(self, obs: Observation) -> torch.Tensor:
        """`(B, H / p, W / p)`: the last layer's attention of the `cls` token on each bev
        patch (heads averaged; row 0 is the far front, as in the raster)."""
        return self.encoder.attention(obs)[1]

    def explain(self, obs: Observation, state: State | None = None,
                episode_start: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """`forward` plus `{"attention": (B, H / p, W / p)}`, from one encoder pass."""
        features, attention = self.encoder.attention(obs)
        return self.head(features), (), {"attention": attention}
