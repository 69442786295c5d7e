"""End-to-end policies by name, and their safe checkpoints.

    policy = build("gru", obs_spec, hidden_size=64)            # untrained, train mode
    save_policy("gru.pt", policy, spec, meta={"command": "reflexdrive train ..."})
    policy, checkpoint = load_policy("gru.pt", spec=env_spec)  # eval mode, CPU

A policy checkpoint is a `policies.checkpoint` file of kind "policy" whose `name` is the
registry name, `config` the policy's config dataclass as a dict and `spec` at least
`{"observation": obs_spec}` (the `bev` and `ego` entries the network was built for); the
agents layer adds what else the observations depend on (sensor geometry, ego feature
names: `agents.end_to_end.policy_spec`) and `load_policy(spec=...)` checks all of it
against the env's with `check_spec`. Files are read only with `torch.load(weights_only=
True)`: a pickle payload is refused without running it.

The end-to-end stacks (`POLICY_STACKS`) are the architectures by name plus named variants,
each an architecture with its own shipped checkpoint `policies/checkpoints/<stack>.pt`
(`cnn-blind`: the cnn trained without latency inputs or latency); `shipped_checkpoint`,
`missing_checkpoint` and `check_stack_policy` serve every stack alike.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import torch
from reflexdrive.policies.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_spec,
    load_checkpoint,
    save_checkpoint,
    spec_mismatches,
)
from reflexdrive.policies.encoders import TIMING_NORMALISATION, ConvEncoder, check_obs_spec
from reflexdrive.policies.networks import (
    CnnPolicy,
    DrivingPolicy,
    GruPolicy,
    LstmPolicy,
    TransformerPolicy,
)

KIND = "policy"
"""Checkpoint kind of end-to-end policies."""

POLICIES: dict[str, type[DrivingPolicy]] = {
    cls.name: cls for cls in (CnnPolicy, GruPolicy, LstmPolicy, TransformerPolicy)}
"""Policy classes by registry name: cnn, gru, lstm, transformer."""

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
"""Where the trained policies ship: `<stack>.pt`."""


def _check_name(name: str) -> type[DrivingPolicy]:
    if name not in POLICIES:
        raise ValueError(f"policy={name!r} is invalid: allowed values are "
                         + ", ".join(POLICIES))
    return POLICIES[name]


@dataclass(frozen=True)
class PolicyStack:
    """A named end-to-end stack: an architecture of `POLICIES` and the checkpoint it ships.

    Attributes:
        name: the stack name (`--stack`, `--checkpoint NAME=PATH`); its shipped checkpoint
            is `CHECKPOINT_DIR / f"{name}.pt"`.
        architecture: the registry policy the checkpoint must hold ("cnn", ...).
        reads_timing: what the checkpoint's encoder must do with `obs["timing"]` (the
            observation's age and the pending command): True read it, False not read it,
            None either (the stacks named after their architecture).
        make: the `reflexdrive train` options that make the shipped checkpoint beside
            `--policy ARCHITECTURE --method dagger` (for the error when it is missing).
    """

    name: str
    architecture: str
    reads_timing: bool | None = None
    make: str = ""

    def __post_init__(self) -> None:
        _check_name(self.architecture)

    @property
    def how_to_make(self) -> str:
        """How to make the shipped checkpoint (one line, naming the file)."""
        target = f"policies/checkpoints/{self.name}.pt"
        return (f"train it with `reflexdrive train --policy {self.architecture} "
                f"--method dagger{self.make} --out DIR` and copy DIR/{self.architecture}.pt "
                f"to {target}")


POLICY_STACKS: dict[str, PolicyStack] = {
    **{name: PolicyStack(name, name) for name in POLICIES},
    "cnn-blind": PolicyStack(
        "cnn-blind", "cnn", reads_timing=False,
        make=" --mode lockstep --latency fixed:0"),
}
"""The end-to-end stacks by name: one per architecture (`cnn`, `gru`, `lstm`,
`transformer`, any checkpoint of it), and named variants of an architecture with their own
shipped checkpoint: `cnn-blind`, the cnn trained without latency inputs or latency (the
baseline of the latency-aware `cnn`, issue 18)."""


def policy_stack(name: str) -> PolicyStack:
    """The end-to-end stack `name` (ValueError listing the names otherwise)."""
    if name not in POLICY_STACKS:
        raise ValueError(f"stack={name!r} is invalid: allowed end-to-end stacks are "
                         + ", ".join(POLICY_STACKS))
    return POLICY_STACKS[name]


def shipped_checkpoint(name: str) -> Path:
    """The path of the checkpoint shipped for the end-to-end stack `name` (a policy name
    or a `POLICY_STACKS` variant; it may not exist yet)."""
    return CHECKPOINT_DIR / f"{policy_stack(name).name}.pt"


def missing_checkpoint(name: str) -> str | None:
    """None when stack `name`'s shipped checkpoint is there, else one line saying it is
    missing and how to make it (naming the file) or pass another."""
    if shipped_checkpoint(name).is_file():
        return None
    return (f"the shipped {name} checkpoint is missing: {policy_stack(name).how_to_make}, "
            f"or pass --checkpoint {name}=PATH")


def check_stack_policy(name: str, policy: DrivingPolicy,
                       path: str | os.PathLike | None = None) -> None:
    """CheckpointError (naming `path`) unless `policy` can drive as stack `name`: the
    stack's architecture and, where it says, reading `obs["timing"]` or not."""
    stack = policy_stack(name)
    if policy.name != stack.architecture:
        raise CheckpointError(path, f"holds a {policy.name!r} policy, not a "
                                    f"{stack.architecture!r} one; use --stack {policy.name}")
    hidden = policy.config.encoder.timing_hidden
    if stack.reads_timing is not None and (hidden > 0) != stack.reads_timing:
        rule = ("must read obs['timing'] (encoder.timing_hidden > 0)" if stack.reads_timing
                else "must not read obs['timing'] (encoder.timing_hidden 0)")
        raise CheckpointError(path, f"the {name} stack {rule}; this {policy.name} has "
                                    f"timing_hidden {hidden}")


def build(name: str, obs_spec: Mapping[str, Any], **config: Any) -> DrivingPolicy:
    """A new (untrained) policy `name` for observations described by `obs_spec`.

    Args:
        name: "cnn", "gru", "lstm" or "transformer".
        obs_spec: `{"bev": {"shape": [C, H, W], "dtype": "uint8"}, "ego": {"shape": [8],
            "dtype": "float32"}, "lidar": {"shape": [beams, 2], "dtype": "float32"}}`
            (`policies.checkpoint.observation_spec` of the env's single observation
            space; keys the policy does not read are ignored).
        **config: fields of the policy's config (`CnnConfig`, `RecurrentConfig`,
            `TransformerConfig`); nested ones as dicts or config objects, e.g.
            `build("gru", spec, hidden_size=64, encoder={"channels": [16, 32]})`.

    Raises:
        ValueError: unknown name (listing the names), a spec without `bev`/`ego` or with
            shapes the network cannot read, an unknown or invalid config field.
    """
    cls = _check_name(name)
    return cls(obs_spec, cls.config_type.from_dict(config))


def recurrent_from_cnn(name: str, cnn: DrivingPolicy, **config: Any) -> DrivingPolicy:
    """A new `gru` / `lstm` policy that starts out driving exactly as `cnn` does.

    The recurrent policy takes the cnn's encoder (config and weights) and head (config and
    weights); its head reads `[features, recurrent output]` (`skip`), and the weights from
    the recurrent output start at zero, so its actions equal the cnn's whatever its
    state, until training gives the state a say. A warm start: the recurrent policy
    learns from windows of a few seconds, far fewer updates per frame than the cnn, and
    begins where the feed-forward one already drives.

    Args:
        name: "gru" or "lstm".
        cnn: a `cnn` policy (weights are copied, it is left unchanged).
        **config: the other `RecurrentConfig` fields (`hidden_size`, `layers`); `encoder`
            and `head` are the cnn's, `skip` must stay True.

    Raises:
        ValueError: not a recurrent name, not a cnn, a config without `skip`, or setting
            `encoder` / `head`.
    """
    cls = _check_name(name)
    if not cls.is_recurrent:
        raise ValueError(f"policy={name!r} is invalid: a warm start from a cnn makes a "
                         "recurrent policy (gru, lstm)")
    if not isinstance(cnn, CnnPolicy):
        raise ValueError(f"cnn={type(cnn).__name__} is invalid: must be a cnn policy")
    for key in ("encoder", "head"):
        if key in config:
            raise ValueError(f"{key} is invalid here: the warm-started policy takes the "
                             f"cnn's {key}")
    if config.get("skip", True) is not True:
        raise ValueError(f"skip={config['skip']!r} is invalid: a warm start from a cnn "
                         "needs skip=True (the head reads the cnn's features)")
    recurrent_config = cls.config_type.from_dict({
        **config, "encoder": asdict(cnn.config.encoder), "head": asdict(cnn.config.head)})
    policy = cls(cnn.obs_spec, recurrent_config)
    policy.encoder.load_state_dict(cnn.encoder.state_dict())
    source, target = cnn.head.mlp, policy.head.mlp
    features = cnn.encoder.features_dim
    with torch.no_grad():
        target[0].weight.zero_()
        target[0].weight[:, :features].copy_(source[0].weight)
        target[0].bias.copy_(source[0].bias)
        target[2].load_state_dict(source[2].state_dict())
    return policy.to(next(cnn.parameters()).device)


def with_timing(policy: DrivingPolicy, timing_hidden: int,
                timing_command: bool = True) -> DrivingPolicy:
    """A copy of `policy` that also reads `obs["timing"]` and starts out driving exactly
    as `policy` does.

    The copy's `ConvEncoder` gets a `TimingEncoder` of width `timing_hidden` (fresh
    weights from torch's generator) whose features enter the fusion layer last; the fusion
    weights from them start at zero, every other weight is `policy`'s. The first gradient
    steps then give the observation's age and the command in flight a say (Real-Time RL's
    state augmentation) in a network that already drives: the latency-aware fine-tune of
    an imitation checkpoint (`reflexdrive train --method ppo --init CKPT --policy-config
    '{"encoder": {"timing_hidden": 16}}'`).

    Args:
        policy: a cnn, gru or lstm (a `ConvEncoder`) that does not read timing; left
            unchanged.
        timing_hidden: width of the new `TimingEncoder`, at least 1.
        timing_command: whether it reads the command in flight too
            (`ConvEncoderConfig.timing_command`; False: only the observation's age).

    Raises:
        ValueError: a transformer (its timing is a token in the attention, which a zero
            weight cannot leave out), a policy that already reads timing, or
            `timing_hidden` < 1; `ConfigError` (a ValueError, from the config's own
            validation) naming `encoder.timing_command` when it is not a bool.
    """
    if not isinstance(policy.encoder, ConvEncoder):
        raise ValueError(f"policy={policy.name!r} is invalid: a timing input can be added to "
                         "a cnn, gru or lstm (a ConvEncoder), not to a "
                         f"{type(policy.encoder).__name__}")
    if policy.config.encoder.uses_timing:
        raise ValueError(f"encoder.timing_hidden={policy.config.encoder.timing_hidden} is "
                         "invalid here: the policy already reads obs['timing']")
    if isinstance(timing_hidden, bool) or not isinstance(timing_hidden, int) or timing_hidden < 1:
        raise ValueError(f"timing_hidden={timing_hidden!r} is invalid: must be an integer >= 1")
    config = policy.config.to_dict()
    config["encoder"] = {**config["encoder"], "timing_hidden": timing_hidden,
                         "timing_command": timing_command}
    spec = {**policy.obs_spec, "timing": {"shape": [len(TIMING_NORMALISATION)],
                                          "dtype": "float32"}}
    widened = type(policy)(spec, type(policy).config_type.from_dict(config))
    source = policy.state_dict()
    target = widened.state_dict()
    fuse = "encoder.fuse.0.weight"
    with torch.no_grad():
        for key, value in source.items():
            if key == fuse:
                target[key].zero_()
                target[key][:, :value.shape[1]].copy_(value)
            else:
                target[key].copy_(value)
    widened.load_state_dict(target)
    return widened.to(next(policy.parameters()).device).train(policy.training)


def policy_checkpoint(policy: DrivingPolicy, spec: Mapping[str, Any] | None = None,
                      meta: Mapping[str, Any] | None = None) -> Checkpoint:
    """A `Checkpoint` of kind "policy" holding `policy` (write it with `save_checkpoint`).

    Args:
        policy: the network.
        spec: what it was trained on: `{"observation": {...}, ...}` whose `observation`
            entries `bev` and `ego` are the policy's own `obs_spec` (None: only those).
        meta: JSON-able: the training command, metrics, dataset, ...

    Raises:
        ValueError: `spec["observation"]` disagrees with the network's `obs_spec`.
    """
    if not isinstance(policy, DrivingPolicy) or policy.name not in POLICIES:
        raise ValueError(f"policy={type(policy).__name__} is invalid: must be one of the "
                         "registry's policies (" + ", ".join(POLICIES) + ")")
    spec = {"observation": dict(policy.obs_spec)} if spec is None else dict(spec)
    observation = spec.get("observation")
    if not isinstance(observation, Mapping):
        raise ValueError(f"spec={spec!r} is invalid: needs an 'observation' entry "
                         "(the bev and ego the policy reads)")
    problems = spec_mismatches(policy.obs_spec, {k: observation.get(k)
                                                 for k in policy.obs_spec})
    if problems:
        raise ValueError("spec.observation is invalid: it does not describe the policy's "
                         "inputs: " + "; ".join(problems))
    return Checkpoint(kind=KIND, name=policy.name, config=policy.config.to_dict(),
                      state_dict=policy.state_dict(), spec=spec, meta=dict(meta or {}))


def save_policy(path: str | os.PathLike, policy: DrivingPolicy,
                spec: Mapping[str, Any] | None = None,
                meta: Mapping[str, Any] | None = None) -> Path:
    """Write `policy` as a checkpoint (atomically; see `policy_checkpoint` for the args).

    Raises:
        ValueError: see `policy_checkpoint`.
        CheckpointError: the file cannot be written.
    """
    return save_checkpoint(path, policy_checkpoint(policy, spec, meta))


def _upgrade_older_config(cls: type[DrivingPolicy], config: Any) -> Any:
    """A checkpoint config written before a switch existed is read with the switch in the
    position it then had (the defaults switch them on): the lidar input (`encoder.
    lidar_hidden` = 0 / `encoder.lidar` = False) and the recurrent policies' `skip`
    (False). Anything malformed is returned as is, for the config's own validation to
    name."""
    if not isinstance(config, Mapping) or not isinstance(config.get("encoder"), Mapping):
        return config
    config = dict(config)
    top = {f.name for f in fields(cls.config_type)}
    if "skip" in top and "skip" not in config:
        config["skip"] = False
    encoder = config["encoder"]
    encoder_fields = {f.name for f in fields(cls.config_type.__dataclass_fields__["encoder"]
                                             .default_factory)}
    switch = {"lidar_hidden": 0} if "lidar_hidden" in encoder_fields else {"lidar": False}
    if not any(name in encoder for name in switch):
        config["encoder"] = {**encoder, **switch}
    return config


def load_policy(path: str | os.PathLike, spec: Mapping[str, Any] | None = None,
                device: str | torch.device = "cpu") -> tuple[DrivingPolicy, Checkpoint]:
    """Build the policy stored in a checkpoint, in eval mode on `device`.

    Args:
        path: the checkpoint file.
        spec: the env's spec (`agents.end_to_end.policy_spec(sensors)`); every entry of
            the checkpoint's spec must match it. None skips the check.
        device: torch device.

    Returns:
        `(policy, checkpoint)`; `checkpoint.meta` holds how it was trained.

    Raises:
        CheckpointError: see `policies.checkpoint.load_checkpoint` (missing, truncated,
            corrupt, pickle payload, not a policy, unknown policy name); a spec missing
            `observation` or unlike the env's; an invalid config; weights that do not fit.
    """
    checkpoint = load_checkpoint(path, kind=KIND, names=tuple(POLICIES))
    if spec is not None:
        check_spec(checkpoint, spec)
    cls = POLICIES[checkpoint.name]
    try:
        config = cls.config_type.from_dict(_upgrade_older_config(cls, checkpoint.config))
    except (TypeError, ValueError) as error:
        raise CheckpointError(path, f"invalid {checkpoint.name} config: {error}") from None
    try:
        obs_spec = check_obs_spec(checkpoint.spec.get("observation"),
                                  lidar=config.encoder.uses_lidar,
                                  route=config.encoder.uses_route,
                                  timing=config.encoder.uses_timing)
    except ValueError as error:
        raise CheckpointError(path, f"its spec has no usable observation entry: {error}") \
            from None
    try:
        policy = cls(obs_spec, config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(path, f"invalid {checkpoint.name} config: {error}") from None
    try:
        policy.load_state_dict(dict(checkpoint.state_dict), strict=True)
    except RuntimeError as error:
        lines = str(error).splitlines()
        raise CheckpointError(path, "weights do not fit the model: "
                                    + " ".join(line.strip() for line in lines[:3])) from None
    return policy.to(device).eval(), checkpoint
