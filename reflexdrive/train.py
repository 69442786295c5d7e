"""`reflexdrive train`: train a learned component and save it as a safe checkpoint.

    reflexdrive train --target detector --seed 0 --out runs/train-detector \\
        --checkpoint policies/checkpoints/detector.pt      # the shipped detector

`--target` picks what to train; each target owns the options that only it reads (the
detector: `--samples`, `--channels`, `--blocks`, `--eval-episodes`), and the shared ones
(`--epochs`, `--batch-size`, `--lr`, `--seed`, `--device`, `--threads`, `--out`,
`--checkpoint`) mean the same for every target. The end-to-end policies (issue 6) add
`--target policy` with their own options (`--policy`, `--method`, ...) beside these.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, Callable

from envs.errors import ConfigError, check_choice

TARGETS = ("detector",)
"""What `reflexdrive train` can train."""

_DETECTOR_DEFAULTS = {"samples": 4000, "epochs": 8, "batch_size": 64, "lr": 3e-3,
                      "eval_episodes": 24, "channels": 24, "blocks": 3}
"""Defaults of the detector target (shown by --help; None on the parser = "target default")."""


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `train` command to the CLI's subparsers; returns its parser."""
    train = subparsers.add_parser(
        "train", help="train a learned component (the bev detector) and save a checkpoint",
        description="Train a learned component and save it as a safe checkpoint (plain "
                    "tensors and JSON metadata, read back with torch.load(weights_only="
                    "True)). --target detector: generate labelled bev frames from the "
                    "straight-road scenarios on the batched backend (cached under "
                    "OUT/data, reused and resumed by reruns), train the CenterNet-style "
                    "detector of the 'learned' perception with Adam, report precision and "
                    "recall on held-out seeds for vehicles within 40 m, and write the "
                    "checkpoint with this command line in it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--target", default="detector",
                       help="what to train: " + ", ".join(TARGETS)
                            + " (the learned perception's CNN on bev)")
    detector = _DETECTOR_DEFAULTS
    train.add_argument("--samples", type=_number(int), default=None,
                       help=f"training frames (detector; default {detector['samples']})")
    train.add_argument("--epochs", type=_number(int), default=None,
                       help=f"passes over the training data (detector default "
                            f"{detector['epochs']})")
    train.add_argument("--batch-size", type=_number(int), default=None,
                       help=f"samples per optimiser step (detector default "
                            f"{detector['batch_size']})")
    train.add_argument("--lr", type=_number(float), default=None,
                       help=f"Adam learning rate (detector default {detector['lr']})")
    train.add_argument("--seed", type=_number(int), default=0,
                       help="seeds the data, the weights and the batch order")
    train.add_argument("--device", default="cpu",
                       help="torch device for training: cpu, cuda, auto (cuda if available)")
    train.add_argument("--threads", type=_number(int), default=1,
                       help="torch CPU threads")
    train.add_argument("--eval-episodes", type=_number(int), default=None,
                       help=f"held-out episodes per scenario, seeds 0..N-1 (detector default "
                            f"{detector['eval_episodes']})")
    train.add_argument("--channels", type=_number(int), default=None,
                       help=f"detector trunk width (default {detector['channels']})")
    train.add_argument("--blocks", type=_number(int), default=None,
                       help=f"detector residual blocks (default {detector['blocks']})")
    train.add_argument("--out", default="runs/train-detector",
                       help="working folder: data cache, default checkpoint location")
    train.add_argument("--checkpoint", default=None, metavar="PATH",
                       help="where to write the checkpoint (default OUT/<target>.pt)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bars")
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


def _command(args: argparse.Namespace, values: dict[str, Any]) -> str:
    """The full command line that reproduces this run (every option explicit)."""
    words = ["reflexdrive", "train", "--target", args.target]
    for name, value in values.items():
        words += [f"--{name.replace('_', '-')}", str(value)]
    words += ["--out", str(args.out)]
    if args.checkpoint is not None:
        words += ["--checkpoint", str(args.checkpoint)]
    return shlex.join(words)


def cmd_train(args: argparse.Namespace) -> int:
    """Run `reflexdrive train`. Bad values raise ConfigError (the CLI prints one line, exit 2)."""
    check_choice("target", args.target, TARGETS)
    from policies.checkpoint import CheckpointError
    from reflexdrive.detector_training import DetectorTrainingConfig, train_detector

    values = {name: _value(args, name, _DETECTOR_DEFAULTS)
              for name in ("samples", "epochs", "batch_size", "lr", "eval_episodes",
                           "channels", "blocks")}
    values.update(seed=args.seed, device=args.device, threads=args.threads)
    for name, value in values.items():
        if isinstance(value, str) and name != "device":
            raise ConfigError(name, value, "must be a number")
    config = DetectorTrainingConfig(
        samples=values["samples"], epochs=values["epochs"], batch_size=values["batch_size"],
        lr=values["lr"], seed=values["seed"], device=values["device"],
        eval_episodes=values["eval_episodes"], threads=values["threads"],
        channels=values["channels"], blocks=values["blocks"])
    try:
        result = train_detector(config, args.out, args.checkpoint,
                                command=_command(args, values),
                                progress=not args.no_progress)
    except CheckpointError as error:
        raise ConfigError("--checkpoint", args.checkpoint, error.problem) from None
    metrics = result["metrics"]
    print(f"precision {metrics['precision']:.4f}, recall {metrics['recall']:.4f} "
          f"(held-out, within 40 m); checkpoint {result['checkpoint']}")
    return 0
