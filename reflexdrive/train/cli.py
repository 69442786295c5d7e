"""`reflexdrive train`: train a learned component and save it as a safe checkpoint.

    reflexdrive train --target detector --seed 0 --out runs/train-detector \\
        --checkpoint policies/checkpoints/detector.pt      # the shipped detector
    reflexdrive train --policy cnn --method dagger --episodes 1000 --dagger-rounds 2 \\
        --out runs/train-cnn                               # an end-to-end policy
    reflexdrive train --policy cnn --method ppo --init runs/train-cnn/cnn.pt \\
        --latency profile:profiles/cnn.json --out runs/ppo-cnn

`--target` picks what to train: `detector` (the learned perception's CNN) or `policy` (an
end-to-end policy; implied by `--policy`). Each target owns the options only it reads
and refuses the others' (the detector: `--samples`, `--channels`, `--blocks`,
`--eval-episodes`; the policies: `--policy`, `--method`, `--episodes`, `--frames`,
`--dagger-*`, `--latency`, ...; PPO alone: `--n-steps`, `--gamma`, ...). The shared ones
(`--epochs`, `--batch-size`, `--lr`, `--seed`, `--device`, `--threads`, `--out`,
`--checkpoint`) mean the same for every target. The checkpoint records the full command
line, every option explicit.

Policies: `--method bc|dagger` runs `reflexdrive.train.imitation.train_imitation` (behaviour
cloning of the staged stack, then DAgger rounds); `--method ppo` runs
`reflexdrive.train.ppo.train_ppo` (stable-baselines3, from `--init` weights, the clock in the
loop).
"""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any, Callable

from reflexdrive.common.validation import ConfigError, check_choice, field_default

TARGETS = ("detector", "policy")
"""What `reflexdrive train` can train."""

POLICY_NAMES = ("cnn", "gru", "lstm", "transformer")
"""`--policy` choices (`policies.registry.POLICIES`; a test pins them equal)."""

METHODS = ("bc", "dagger", "ppo")
"""`--method` choices: behaviour cloning, DAgger, PPO."""

DETECTOR_DEFAULTS = ("samples", "epochs", "batch_size", "lr", "eval_episodes", "channels",
                     "blocks", "seed", "device", "threads")
"""Options of the detector target whose defaults --help shows (None on the parser = "the
target's default", read from `DetectorTrainingConfig`)."""

IMITATION_DEFAULTS = ("method", "episodes", "epochs", "batch_size", "lr", "envs",
                      "dagger_rounds", "dagger_episodes", "dagger_epochs", "dagger_beta",
                      "sequence_length", "checkpoint_every", "command_inputs", "latency",
                      "label_shift", "mode", "seed", "device", "threads", "action_weights",
                      "scenario_weights")
"""Options of the imitation methods whose defaults come from `ImitationConfig`."""


def detector_defaults() -> dict[str, Any]:
    """The detector target's defaults: those of `DetectorTrainingConfig`'s fields."""
    from reflexdrive.train.detector import DetectorTrainingConfig

    return {name: field_default(DetectorTrainingConfig, name) for name in DETECTOR_DEFAULTS}


def imitation_defaults() -> dict[str, Any]:
    """The imitation methods' defaults: those of `ImitationConfig`'s fields."""
    from reflexdrive.train.imitation_config import ImitationConfig

    return {name: field_default(ImitationConfig, name) for name in IMITATION_DEFAULTS}


DETECTOR_OUT = "runs/train-detector"
"""`--out` of the detector target when not given."""


def policy_out(policy: str, method: str) -> str:
    """`--out` of a policy target when not given: `runs/train-POLICY-METHOD`."""
    return f"runs/train-{policy}-{method}"


def _listed(value: Any) -> str:
    """A default as the command line spells it: pairs as NAME=W, tuples comma-separated."""
    if isinstance(value, dict):
        return ",".join(f"{name}={_listed(weight)}" for name, weight in value.items())
    if isinstance(value, (tuple, list)):
        return ",".join(_listed(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_DETECTOR_OPTIONS = ("samples", "eval_episodes", "channels", "blocks")
_IMITATION_ONLY = ("episodes", "scenario_weights", "action_weights", "command_inputs",
                   "label_shift", "sequence_length", "dagger_rounds", "dagger_episodes",
                   "dagger_epochs", "dagger_beta", "epochs")
_POLICY_OPTIONS = ("policy", "method", "frames", "envs", "latency", "mode", "init", "resume",
                   "checkpoint_every", "policy_config", *_IMITATION_ONLY)
_PPO_OPTIONS = ("scenarios", "n_steps", "n_epochs", "gamma", "gae_lambda", "clip_range",
                "ent_coef", "vf_coef", "max_grad_norm", "initial_std", "value_hidden",
                "lr_schedule", "target_kl", "value_warmup_updates", "freeze_encoder",
                "snapshot_every", "reward")
_PPO_FIELDS = {"frames": "total_timesteps", "envs": "num_envs", "lr": "learning_rate",
               "checkpoint": "export_path", "out": "out_dir",
               "lr_schedule": "learning_rate_schedule"}
"""CLI option -> `PPOConfig` field, where the names differ."""


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `train` command to the CLI's subparsers; returns its parser."""
    train = subparsers.add_parser(
        "train", help="train a learned component (the bev detector, an end-to-end policy) "
                      "and save a checkpoint",
        description="Train a learned component and save it as a safe checkpoint (plain "
                    "tensors and JSON metadata, read back with torch.load(weights_only="
                    "True)) that records this command line. "
                    "--target detector: generate labelled bev frames from the "
                    "straight-road scenarios on the batched backend (cached under "
                    "OUT/data, reused and resumed by reruns), train the CenterNet-style "
                    "detector of the 'learned' perception with Adam, report precision and "
                    "recall on held-out seeds for vehicles within 40 m. "
                    "--policy cnn|gru|lstm|transformer (--target policy): train an "
                    "end-to-end policy. --method bc: the staged stack (oracle perception) "
                    "drives a seeded mix of highway, lead-brake, cut-in and stopped-vehicle "
                    "episodes on the batched backend (scenario seeds from 2,000,000 up, "
                    "disjoint from the evaluation seeds; shards under OUT/data, resumed by "
                    "reruns), and the policy clones its actions (MSE on actions scaled to "
                    "[-1, 1]; recurrent policies on windows of consecutive ticks). "
                    "--method dagger: then rounds in which the policy drives, the staged "
                    "stack labels every state it visits and the policy is fine-tuned on all "
                    "the data. Logs go to OUT/tensorboard; the training state is saved "
                    "every --checkpoint-every updates and --resume continues a killed run. "
                    "--method ppo: reinforcement learning with stable-baselines3 "
                    "(reflexdrive.train.ppo) from --init weights, with the clock in the loop "
                    "(--latency profile:PATH), resumed from OUT's checkpoints.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--target", default=None,
                       help="what to train: detector (the learned perception's CNN on bev; "
                            "the default) or policy (an end-to-end policy; implied by "
                            "--policy)")
    shared = train.add_argument_group("shared options")
    detector = detector_defaults()
    imitation = imitation_defaults()
    shared.add_argument("--epochs", type=_number(int), default=None,
                        help=f"passes over the training data (detector default "
                             f"{detector['epochs']}; policies: over the expert data, default "
                             f"{imitation['epochs']})")
    shared.add_argument("--batch-size", type=_number(int), default=None,
                        help=f"samples per optimiser step (detector default "
                             f"{detector['batch_size']}; policies: frames, default "
                             f"{imitation['batch_size']}; PPO: its minibatch)")
    shared.add_argument("--lr", type=_number(float), default=None,
                        help=f"Adam learning rate (detector default {detector['lr']}; "
                             f"policies {imitation['lr']}, cosine-annealed per phase; PPO: "
                             "its learning_rate)")
    shared.add_argument("--seed", type=_number(int), default=imitation["seed"],
                        help=f"seeds the data, the weights and the batch order (default "
                             f"{imitation['seed']})")
    shared.add_argument("--device", default=None,
                        help=f"torch device for training: cpu, cuda, auto (cuda if "
                             f"available) (detector default {detector['device']}; policies "
                             f"{imitation['device']}; PPO: PPOConfig's)")
    shared.add_argument("--threads", type=_number(int), default=None,
                        help=f"torch CPU threads (detector default {detector['threads']}; "
                             f"policies {imitation['threads']})")
    shared.add_argument("--out", default=None,
                        help=f"working folder: data cache, logs, resumable state, default "
                             f"checkpoint location (default {DETECTOR_OUT}, "
                             f"{policy_out('POLICY', 'METHOD')})")
    shared.add_argument("--checkpoint", default=None, metavar="PATH",
                        help="where to write the checkpoint (default OUT/detector.pt, "
                             "OUT/POLICY.pt)")
    shared.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    group = train.add_argument_group("detector options (--target detector)")
    group.add_argument("--samples", type=_number(int), default=None,
                       help=f"training frames (default {detector['samples']})")
    group.add_argument("--eval-episodes", type=_number(int), default=None,
                       help=f"held-out episodes per scenario, seeds 0..N-1 (default "
                            f"{detector['eval_episodes']})")
    group.add_argument("--channels", type=_number(int), default=None,
                       help=f"detector trunk width (default {detector['channels']})")
    group.add_argument("--blocks", type=_number(int), default=None,
                       help=f"detector residual blocks (default {detector['blocks']})")

    group = train.add_argument_group("policy options (--policy, --target policy)")
    group.add_argument("--policy", default=None,
                       help="the network: " + ", ".join(POLICY_NAMES))
    group.add_argument("--method", default=None,
                       help=f"bc: behaviour cloning of the staged stack; dagger: bc, then "
                            f"DAgger rounds; ppo: reinforcement learning (PPO) from --init "
                            f"(default {imitation['method']})")
    group.add_argument("--episodes", type=_number(int), default=None,
                       help=f"expert episodes of the dataset (default {imitation['episodes']})")
    group.add_argument("--frames", type=_number(int), default=None,
                       help="bc/dagger: about this many expert frames instead of "
                            "--episodes (whole episodes of the mix); ppo: env steps to train "
                            "for in all (total_timesteps)")
    group.add_argument("--envs", type=_number(int), default=None,
                       help=f"worlds simulated side by side (bc/dagger: while collecting, "
                            f"default {imitation['envs']}; ppo: num_envs)")
    from reflexdrive.train.expert_data import MIX_ENTRIES

    group.add_argument("--scenario-weights", default=None, metavar="NAME=W,...",
                       help=f"bc/dagger: the scenario mix over {', '.join(MIX_ENTRIES)} "
                            f"(NAME-protocol: the hazard at the protocol grids' ranges; "
                            f"default {_listed(imitation['scenario_weights'])})")
    group.add_argument("--dagger-rounds", type=_number(int), default=None,
                       help=f"DAgger rounds (default {imitation['dagger_rounds']})")
    group.add_argument("--dagger-episodes", type=_number(int), default=None,
                       help=f"episodes the policy drives per DAgger round (default "
                            f"{imitation['dagger_episodes']})")
    group.add_argument("--dagger-epochs", type=_number(int), default=None,
                       help=f"passes over all the data after each round (default "
                            f"{imitation['dagger_epochs']})")
    group.add_argument("--dagger-beta", type=_number(float), default=None,
                       help=f"probability that the expert's action is executed in round 1, "
                            f"halved each further round (default {imitation['dagger_beta']})")
    group.add_argument("--sequence-length", type=_number(int), default=None,
                       help=f"gru/lstm: ticks per truncated-BPTT window (default "
                            f"{imitation['sequence_length']})")
    group.add_argument("--action-weights", default=None, metavar="ACCEL,STEER",
                       help=f"bc/dagger: weights of the acceleration and steering terms of "
                            f"the loss on actions scaled to [-1, 1] (default "
                            f"{_listed(imitation['action_weights'])}: the expert's steering "
                            f"is tiny but must be exact)")
    group.add_argument("--command-inputs", default=None,
                       help=f"bc/dagger: shuffle: while learning, the ego's last command "
                            f"(acceleration, steering) inputs are shuffled across the "
                            f"minibatch, so the policy reads the road instead of copying its "
                            f"last command; keep: the recorded values (default "
                            f"{imitation['command_inputs']})")
    group.add_argument("--latency", default=None,
                       help=f"the clock's latency model while driving: fixed:SECONDS, "
                            f"fixed:STAGE=SECONDS,..., profile:PATH, optionally +SECONDS "
                            f"(an extra delay) or +LOW..HIGH (an extra delay drawn per "
                            f"episode, e.g. profile:PATH+0..0.3) (default "
                            f"{imitation['latency']})")
    group.add_argument("--label-shift", default=None,
                       help=f"bc/dagger: landing: a frame's label is the expert's command at "
                            f"the tick nearest the moment the frame's command lands (t + its "
                            f"latency; realtime); none: at the frame's own tick (default "
                            f"{imitation['label_shift']}; the same in lockstep)")
    group.add_argument("--mode", default=None,
                       help=f"the clock's mode while driving: lockstep or realtime "
                            f"(bc/dagger default {imitation['mode']}; ppo: PPOConfig's)")
    group.add_argument("--init", default=None, metavar="CKPT",
                       help="policy checkpoint to start from (fine-tuning; PPO from BC)")
    group.add_argument("--checkpoint-every", type=_number(int), default=None,
                       help=f"updates between resumable checkpoints (bc/dagger default "
                            f"{imitation['checkpoint_every']})")
    group.add_argument("--policy-config", default=None, metavar="JSON",
                       help='the network\'s config fields, e.g. \'{"hidden_size": 64}\'')
    group.add_argument("--resume", action="store_true",
                       help="bc/dagger: continue the training saved in OUT/state (same "
                            "settings); ppo resumes from OUT's checkpoints by itself")

    group = train.add_argument_group("PPO options (--method ppo; defaults: "
                                     "reflexdrive.train.ppo.PPOConfig's)")
    group.add_argument("--scenarios", default=None, metavar="NAME,...",
                       help="scenarios the envs run (envs split evenly), e.g. "
                            "highway,lead-brake")
    for name, kind, text in (
            ("n-steps", int, "ticks per env per update (rollout length)"),
            ("n-epochs", int, "passes over each rollout"),
            ("gamma", float, "discount per tick"),
            ("gae-lambda", float, "GAE lambda"),
            ("clip-range", float, "PPO ratio clip"),
            ("ent-coef", float, "entropy bonus"),
            ("vf-coef", float, "value-loss weight"),
            ("max-grad-norm", float, "gradient-norm clip"),
            ("value-hidden", int, "critic hidden width"),
            ("value-warmup-updates", int, "first updates that train only the critic (the "
                                          "policy frozen)"),
            ("snapshot-every", int, "export the policy to OUT/snapshots/ at step 0, after "
                                    "every this many updates and at the end, for "
                                    "scripts/ppo_learning_curve.py (0: none)")):
        group.add_argument(f"--{name}", type=_number(kind), default=None, help=text)
    group.add_argument("--lr-schedule", default=None, metavar="linear|constant",
                       help="learning-rate schedule: linear decay to 0 at --frames, or "
                            "constant")
    group.add_argument("--target-kl", default=None, metavar="KL|none",
                       help="stop an update's epochs once the approximate KL passes 1.5x "
                            "this (none: never)")
    group.add_argument("--reward", default=None, metavar="JSON",
                       help="overrides of the envs' reward (speed_target_mps, "
                            "collision_penalty, offroad_penalty), e.g. "
                            "'{\"collision_penalty\": 100}' (default: progress up to 1 per "
                            "tick at 30 m/s, 10 per collision or off-road)")
    group.add_argument("--initial-std", default=None, metavar="ACCEL,STEER",
                       help="std of the exploration Gaussian on the head's pre-squash output")
    group.add_argument("--freeze-encoder", action=argparse.BooleanOptionalAction, default=None,
                       help="keep the perception encoder at the --init weights and train the "
                            "head, core and critic on its features, computed once per step "
                            "(--no-freeze-encoder: train the whole network; default: "
                            "PPOConfig's)")
    return train


def _number(kind: type) -> Callable[[str], Any]:
    """argparse type that keeps a malformed number as text, so `cmd_train` can report it
    as a ConfigError naming the field (argparse would print its usage instead)."""
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            return text
    parse.__name__ = kind.__name__
    return parse


def _value(args: argparse.Namespace, name: str, defaults: dict[str, Any]) -> Any:
    value = getattr(args, name)
    return defaults[name] if value is None else value


def _numbers(values: dict[str, Any], texts: tuple[str, ...] = ()) -> None:
    """ConfigError for an option given as malformed number text."""
    for name, value in values.items():
        if isinstance(value, str) and name not in texts:
            raise ConfigError(name, value, "must be a number")


def _refuse(args: argparse.Namespace, names: tuple[str, ...], why: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value is not False:
            raise ConfigError(f"--{name.replace('_', '-')}", value, why)


def _target(args: argparse.Namespace) -> str:
    target = args.target
    if target is None:
        target = "policy" if args.policy is not None else "detector"
    check_choice("target", target, TARGETS)
    return target


def _command(target: str, args: argparse.Namespace, values: dict[str, Any],
             out: str) -> str:
    """The full command line that reproduces this run (every option explicit)."""
    words = ["reflexdrive", "train", "--target", target]
    for name, value in values.items():
        if value is None:
            continue
        flag = name.replace('_', '-')
        if isinstance(value, bool):                     # argparse.BooleanOptionalAction
            words.append(f"--{flag}" if value else f"--no-{flag}")
            continue
        words += [f"--{flag}", str(value)]
    words += ["--out", str(out)]
    if args.checkpoint is not None:
        words += ["--checkpoint", str(args.checkpoint)]
    return shlex.join(words)


def cmd_train(args: argparse.Namespace) -> int:
    """Run `reflexdrive train`. Bad values raise ConfigError (the CLI prints one line, exit 2)."""
    target = _target(args)
    if target == "detector":
        return _train_detector(args)
    return _train_policy(args)


def _train_detector(args: argparse.Namespace) -> int:
    _refuse(args, _POLICY_OPTIONS + _PPO_OPTIONS, "is a policy option (--target policy)")
    from reflexdrive.policies.checkpoint import CheckpointError
    from reflexdrive.train.detector import DetectorTrainingConfig, train_detector

    defaults = detector_defaults()
    values = {name: _value(args, name, defaults)
              for name in ("samples", "epochs", "batch_size", "lr", "eval_episodes",
                           "channels", "blocks")}
    values.update(seed=args.seed, device=_value(args, "device", defaults),
                  threads=_value(args, "threads", defaults))
    _numbers(values, ("device",))
    out = args.out if args.out is not None else DETECTOR_OUT
    config = DetectorTrainingConfig(
        samples=values["samples"], epochs=values["epochs"], batch_size=values["batch_size"],
        lr=values["lr"], seed=values["seed"], device=values["device"],
        eval_episodes=values["eval_episodes"], threads=values["threads"],
        channels=values["channels"], blocks=values["blocks"])
    try:
        result = train_detector(config, out, args.checkpoint,
                                command=_command("detector", args, values, out),
                                progress=not args.no_progress)
    except CheckpointError as error:
        raise ConfigError("--checkpoint", args.checkpoint, error.problem) from None
    metrics = result["metrics"]
    print(f"precision {metrics['precision']:.4f}, recall {metrics['recall']:.4f} "
          f"(held-out, within 40 m); checkpoint {result['checkpoint']}")
    return 0


def _train_policy(args: argparse.Namespace) -> int:
    _refuse(args, _DETECTOR_OPTIONS, "is a detector option (--target detector)")
    if args.policy is None:
        raise ConfigError("policy", None, "is required with --target policy; allowed values "
                          "are " + ", ".join(POLICY_NAMES))
    check_choice("policy", args.policy, POLICY_NAMES)
    defaults = imitation_defaults()
    method = args.method if args.method is not None else defaults["method"]
    check_choice("method", method, METHODS)
    policy_config = _json_dict("--policy-config", args.policy_config)
    if method == "ppo":
        return _train_ppo(args, policy_config)
    _refuse(args, _PPO_OPTIONS, "is a PPO option (--method ppo)")
    from reflexdrive.train.imitation import train_imitation
    from reflexdrive.train.imitation_config import ImitationConfig

    names = ("episodes", "frames", "epochs", "batch_size", "lr", "envs", "sequence_length",
             "dagger_rounds", "dagger_episodes", "dagger_epochs", "dagger_beta",
             "checkpoint_every", "command_inputs", "latency", "label_shift", "mode", "device",
             "threads")
    values: dict[str, Any] = {"policy": args.policy, "method": method}
    for name in names:
        values[name] = (getattr(args, name) if name == "frames"
                        else _value(args, name, defaults))
    values["seed"] = args.seed
    _numbers(values, ("policy", "method", "command_inputs", "latency", "label_shift", "mode",
                      "device"))
    weights = _weights(args.scenario_weights)
    if method == "bc":
        for name in ("dagger_rounds", "dagger_episodes", "dagger_epochs", "dagger_beta"):
            if getattr(args, name) is not None:
                raise ConfigError(f"--{name.replace('_', '-')}", getattr(args, name),
                                  "is a DAgger option (--method dagger)")
            values.pop(name)
    recorded = dict(values)
    if values["frames"] is not None:
        recorded.pop("episodes")                 # --frames decides the dataset size
    if weights is not None:
        recorded["scenario_weights"] = args.scenario_weights
    extra: dict[str, Any] = {"scenario_weights": weights} if weights else {}
    if args.action_weights is not None:
        extra["action_weights"] = tuple(_floats("--action-weights", args.action_weights))
        recorded["action_weights"] = args.action_weights
    if policy_config:
        recorded["policy_config"] = json.dumps(policy_config, sort_keys=True)
    if args.init is not None:
        recorded["init"] = args.init
    out = args.out if args.out is not None else policy_out(args.policy, method)
    fields = {key: value for key, value in values.items()
              if key != "frames" or value is not None}
    config = ImitationConfig(**fields, **extra, policy_config=policy_config, init=args.init)
    result = train_imitation(config, out, args.checkpoint,
                             command=_command("policy", args, recorded, out),
                             resume=args.resume, progress=not args.no_progress)
    if result["stopped"]:
        print(f"stopped before the end; run the same command with --resume to continue "
              f"({out})")
        return 1
    history = result["history"]
    if history:
        last = history[-1]
        print(f"{args.policy} {method}: {result['global_step']} updates; last epoch "
              f"({last['phase']}): train loss {last.get('train_loss', float('nan')):.5f}, "
              f"validation loss {last.get('val_expert_loss', float('nan')):.5f}; "
              f"checkpoint {result['checkpoint']}")
    else:
        print(f"checkpoint {result['checkpoint']}")
    return 0


def _train_ppo(args: argparse.Namespace, policy_config: dict[str, Any]) -> int:
    _refuse(args, _IMITATION_ONLY, "is a bc/dagger option (not --method ppo)")
    try:
        from reflexdrive.train.ppo import PPOConfig, train_ppo
    except ImportError as error:
        raise ConfigError("--method", "ppo", f"needs reflexdrive.train.ppo and stable-baselines3 "
                                             f"({error})") from None
    given: dict[str, Any] = {}
    for name in ("policy", "frames", "envs", "batch_size", "lr", "seed", "latency", "mode",
                 "init", "checkpoint_every", "device", "threads", "checkpoint", "out",
                 *_PPO_OPTIONS):
        value = getattr(args, name)
        if value is not None:
            given[name] = value
    if isinstance(given.get("target_kl"), str):
        text = given["target_kl"].strip().lower()
        given["target_kl"] = "none" if text == "none" else _number(float)(text)
    _numbers({k: v for k, v in given.items() if not (k == "target_kl" and v == "none")},
             ("policy", "latency", "mode", "init", "device", "checkpoint", "out", "scenarios",
              "initial_std", "lr_schedule", "reward"))
    if "reward" in given:
        given["reward"] = _json_dict("--reward", given["reward"])
    out = given.setdefault("out", policy_out(args.policy, "ppo"))
    recorded = {key: value for key, value in given.items() if key not in ("out", "checkpoint")}
    recorded = {"policy": args.policy, "method": "ppo",
                **{k: v for k, v in recorded.items() if k != "policy"}}
    if policy_config:
        recorded["policy_config"] = json.dumps(policy_config, sort_keys=True)
    if "reward" in recorded:
        recorded["reward"] = json.dumps(recorded["reward"], sort_keys=True)
    fields: dict[str, Any] = {}
    for name, value in given.items():
        if name == "scenarios":
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        elif name == "initial_std":
            value = tuple(_floats("--initial-std", value))
        elif name == "target_kl" and value == "none":
            value = None
        fields[_PPO_FIELDS.get(name, name)] = value
    config = PPOConfig(**fields, policy_config=policy_config,
                       command=_command("policy", args, recorded, out))
    path = train_ppo(config, progress=not args.no_progress)
    print(f"{args.policy} ppo: checkpoint {path}")
    return 0


def _json_dict(option: str, text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError(option, text, "must be a JSON object, e.g. "
                                        '\'{"hidden_size": 64}\'') from None
    if not isinstance(value, dict):
        raise ConfigError(option, text, "must be a JSON object")
    return value


def _weights(text: str | None) -> dict[str, float] | None:
    """`highway=0.5,cut-in=0.5` -> {"highway": 0.5, "cut-in": 0.5}."""
    if text is None:
        return None
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, equals, value = part.partition("=")
        try:
            if not equals:
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError:
            raise ConfigError("--scenario-weights", text, "expected NAME=WEIGHT[,NAME=WEIGHT"
                              "...], e.g. highway=0.7,cut-in=0.3") from None
    if not weights:
        raise ConfigError("--scenario-weights", text, "names no scenario")
    return weights


def _floats(option: str, text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(option, text, "expected numbers separated by commas") from None
