#!/usr/bin/env python
"""What the end-to-end policies must show (issue 6), measured, as one JSON object on stdout.

- `highway`: per policy (and the staged stack, oracle perception, as the reference),
  `--episodes` seeded Highway episodes in lockstep at zero latency: collision and off-road
  rates, speeds, mean progress [m]; `progress_ratio` = the policy's mean progress over the
  staged stack's on the same seeds;
- `hazards`: lead-brake, cut-in and stopped-vehicle at zero latency, `--hazard-episodes`
  seeds each, per policy and for the staged stack: collision rate, reaction time, min TTC;
- `latency_p50_ms`: batch-1 latency p50 of each policy on this machine (`reflexdrive
  profile`'s measurement: the policy driving Highway, warm-up dropped, 1 torch thread);
- `throughput_obs_per_s`: forward passes of `EndToEndAgent.act` (host arrays in, actions
  out) at batch 1, 64 and 1024 on the CPU (`--threads` torch threads), and on CUDA with
  and without CUDA graphs when a GPU is there;
- `goals`: each goal of the issue with its measured value and whether it is met.

The policies are the shipped checkpoints (`policies/checkpoints/<name>.pt`) unless
`--checkpoint-dir DIR` names a directory of `<name>.pt` files. Progress goes to stderr.

    python scripts/eval_policies.py                              # the full evaluation
    python scripts/eval_policies.py --policies cnn --episodes 10 --hazard-episodes 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from reflexdrive.agents.end_to_end import EndToEndAgent  # noqa: E402
from reflexdrive.envs.config import EGO_FEATURES, SensorConfig  # noqa: E402
from reflexdrive.policies.registry import shipped_checkpoint  # noqa: E402

from reflexdrive.run import evaluation  # noqa: E402
from reflexdrive.run.profile import ProfileConfig, profile_stack  # noqa: E402

HAZARDS = ("lead-brake", "cut-in", "stopped-vehicle")
THROUGHPUT_BATCHES = (1, 64, 1024)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def checkpoint_path(name: str, directory: str | None) -> str:
    return str(Path(directory) / f"{name}.pt") if directory else str(shipped_checkpoint(name))


def throughput(path: str, batch: int, device: str, cuda_graph: bool = False,
               seconds: float = 2.0) -> float:
    """Observations per second through `EndToEndAgent.act` at batch size `batch`."""
    agent = EndToEndAgent.from_checkpoint(path, device=device, cuda_graph=cuda_graph)
    rng = np.random.default_rng(0)
    sensors = SensorConfig()
    shape = sensors.bev_shape
    obs = {"bev": (rng.random((batch, *shape)) < 0.2).astype(np.uint8) * 255,
           "ego": rng.normal(size=(batch, len(EGO_FEATURES))).astype(np.float32),
           "lidar": np.stack([rng.uniform(2.0, sensors.range_m, (batch, sensors.lidar_beams)),
                              rng.normal(0.0, 5.0, (batch, sensors.lidar_beams))],
                             axis=-1).astype(np.float32)}
    for _ in range(3):                                 # warm-up (and graph capture)
        agent.act(obs, {})
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        agent.act(obs, {})
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--policies", default="cnn,gru,transformer",
                        help="policies to evaluate, comma-separated")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="directory of <policy>.pt files (default: the shipped ones)")
    parser.add_argument("--episodes", type=int, default=50, help="Highway episodes")
    parser.add_argument("--hazard-episodes", type=int, default=30, help="seeds per hazard")
    parser.add_argument("--seed", type=int, default=0, help="first scenario seed")
    parser.add_argument("--envs", type=int, default=25, help="envs side by side")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for the latency and throughput measurements")
    parser.add_argument("--skip-closed-loop", action="store_true",
                        help="only latency and throughput")
    args = parser.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    paths = {name: checkpoint_path(name, args.checkpoint_dir) for name in policies}
    for name, path in paths.items():
        if not Path(path).exists():
            parser.error(f"no checkpoint for {name}: {path} does not exist")

    result: dict = {"checkpoints": paths, "highway": {}, "hazards": {},
                    "latency_p50_ms": {}, "throughput_obs_per_s": {}}
    if not args.skip_closed_loop:
        stacks = [("staged", {"perception": "oracle"})] + [
            (name, {"checkpoint": paths[name]}) for name in policies]
        for stack, options in stacks:
            log(f"highway, {stack}, {args.episodes} episodes ...")
            frame, seconds = evaluation.timed(evaluation.episodes, "highway", stack,
                                              args.episodes, args.seed, args.envs, **options)
            result["highway"][stack] = {**evaluation.highway_summary(frame),
                                        "seconds": round(seconds, 1)}
            for scenario in HAZARDS:
                log(f"{scenario}, {stack}, {args.hazard_episodes} episodes ...")
                frame = evaluation.episodes(scenario, stack, args.hazard_episodes, args.seed,
                                            args.envs, **options)
                result["hazards"].setdefault(scenario, {})[stack] = (
                    evaluation.hazard_summary(frame))
        staged = result["highway"]["staged"]["mean_progress_m"]
        for name in policies:
            highway = result["highway"][name]
            highway["progress_ratio"] = highway["mean_progress_m"] / staged

    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name in policies:
        log(f"profile at batch size 1, {name} ...")
        profile = profile_stack(ProfileConfig(stack=name, episodes=1,
                                              agent_options=(("checkpoint", paths[name]),)),
                                progress=False)
        result["latency_p50_ms"][name] = {
            stage: round(value * 1e3, 4) for stage, value in profile.percentiles(50).items()}
        rates = result["throughput_obs_per_s"].setdefault(name, {})
        for device in devices:
            for graph in ((False, True) if device == "cuda" else (False,)):
                key = device + ("+graph" if graph else "")
                for batch in THROUGHPUT_BATCHES:
                    log(f"throughput {name} {key} batch {batch} ...")
                    rates[f"{key}/{batch}"] = round(
                        throughput(paths[name], batch, device, cuda_graph=graph), 1)
    result["config"] = {"episodes": args.episodes, "hazard_episodes": args.hazard_episodes,
                        "seed": args.seed, "threads": args.threads, "mode": "lockstep",
                        "latency": "fixed:0"}
    result["goals"] = goals(result, policies)
    print(json.dumps(result, indent=2, default=float))
    return 0


def goals(result: dict, policies: list[str]) -> dict:
    """Each goal of the issue: measured value and whether it is met."""
    out = {}
    for name in policies:
        highway = result["highway"].get(name)
        if highway:
            out[f"{name}_highway_collision_rate<=0.05"] = [
                highway["collision_rate"], highway["collision_rate"] <= 0.05]
            out[f"{name}_highway_progress_ratio>=0.9"] = [
                highway["progress_ratio"], highway["progress_ratio"] >= 0.9]
        for scenario, stacks in result["hazards"].items():
            if name in stacks:
                value = stacks[name]["collision_rate"]
                out[f"{name}_{scenario}_collision_rate<=0.1"] = [value, value <= 0.1]
    return out


if __name__ == "__main__":
    sys.exit(main())
