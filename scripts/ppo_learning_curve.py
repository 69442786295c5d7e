#!/usr/bin/env python
"""Learning curve of a PPO run (issue 18 item 4): the collision rate of its policy snapshots
against env steps, with the clock (and its latency) in the loop.

Every snapshot the run wrote (`reflexdrive train --method ppo --snapshot-every N`:
`RUN/snapshots/<policy>-<timesteps>.pt`, the first at step 0) drives `--episodes` episodes
of each of `--scenarios` as `EndToEndAgent` drives a checkpoint (the deterministic
policy), on development seeds from `--seed` (never held-out or training seeds), in
`--mode` at `--latency` (default: the run's own training latency), all `--envs` worlds side
by side on the batched backend (`reflexdrive.train.learning_curve`).

Writes `OUT/learning_curve.json` (per snapshot: timesteps, per scenario collisions /
episodes / rate / Wilson 95 % interval, off-road and failure rates, mean progress and
speed, and pooled), `OUT/learning_curve.csv` (one row per snapshot and scenario, `pooled`
included; `pandas.read_csv` loads it) and the figure at `--figure` (collision rate against
env steps with interval bands; below it the pooled failure and off-road rates). Resumable: each
snapshot's counts are cached in `OUT/snapshots/`, so rerunning the same command while the
run trains evaluates only the new snapshots. The JSON document also goes to stdout;
progress to stderr.

    python scripts/ppo_learning_curve.py /work/runs/ppo-cnn-aware \
        --latency "profile:policies/profiles/cnn-cpu.json+0.1" \
        --figure docs/ppo_learning_curve_cnn.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from reflexdrive.common.validation import ConfigError  # noqa: E402
from reflexdrive.train.learning_curve import (  # noqa: E402
    CURVE_SCENARIOS,
    FIRST_SEED,
    CurveConfig,
    learning_curve,
    write_outputs,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", help="the PPO run folder (its --out)")
    parser.add_argument("--out", default=None,
                        help="output folder (default RUN_DIR/learning_curve)")
    parser.add_argument("--figure", default=None,
                        help="PNG of the curve (default OUT/learning_curve.png)")
    parser.add_argument("--title", default=None,
                        help="the figure's title (default: policy, mode, latency, seeds)")
    parser.add_argument("--scenarios", default=",".join(CURVE_SCENARIOS),
                        help="scenarios, comma-separated (straight-road ones)")
    parser.add_argument("--episodes", type=int, default=100,
                        help="episodes per snapshot and scenario")
    parser.add_argument("--seed", type=int, default=FIRST_SEED,
                        help="first development seed (episode i uses seed + i)")
    parser.add_argument("--latency", default=None,
                        help="latency spec, e.g. profile:policies/profiles/cnn-cpu.json+0.1 "
                             "(default: the run's own, from its ppo_run.json)")
    parser.add_argument("--mode", default="realtime", help="realtime or lockstep")
    parser.add_argument("--envs", type=int, default=100, help="worlds side by side")
    parser.add_argument("--stride", type=int, default=1,
                        help="evaluate every stride-th snapshot (and the last)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out) if args.out is not None else Path(args.run_dir) / "learning_curve"
    figure = Path(args.figure) if args.figure is not None else out / "learning_curve.png"
    try:
        config = CurveConfig(run_dir=args.run_dir, out_dir=str(out),
                             scenarios=tuple(s.strip() for s in args.scenarios.split(",")
                                             if s.strip()),
                             episodes=args.episodes, seed=args.seed, latency=args.latency,
                             mode=args.mode, envs=args.envs, device=args.device,
                             stride=args.stride)
        if args.threads < 1:
            raise ConfigError("--threads", args.threads, "must be an integer >= 1")
        torch.set_num_threads(args.threads)
        document, frame = learning_curve(config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_outputs(document, frame, out / "learning_curve.json", out / "learning_curve.csv",
                  figure, args.title)
    print(f"wrote {out / 'learning_curve.json'}, {out / 'learning_curve.csv'}, {figure}",
          file=sys.stderr)
    print(json.dumps(document, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
