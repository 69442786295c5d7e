#!/usr/bin/env python
"""Episodes per second of one compare cell per stack, measured at batch 1 and profiled at
batch B, as one JSON object (issue 16: profiled >= 20x measured for every stack).

The cell is the one `reflexdrive compare` runs for a stack on lead-brake in realtime at
extra latency 0 (`CompareConfig.cells()`, twins included), run by the runner as the
local executor runs it (`executors.cell_agent`, `runner.run`, in memory):

- `measured`: `--latency measured`, 1 env (a car's computer drives one car: the wall
  clock of every batch-1 decision is its latency), backend `--backend` (auto: batched).
- `profiled`: the stack is profiled at batch 1 first (`run.profile.profile_stack`, the
  first `--warmup` decisions dropped, saved with `save_profile`), then the cell replays
  that profile (`--latency profile:PATH`) with `--envs` envs on the batched backend:
  one `act` call for all of them per tick, on all of this machine's cores as `compare`
  runs such a cell (`--threads` to change; the measured cell always has one core: its
  wall clock is its latency). `profile_s` is the profiling's own wall time,
  paid once per stack (not in `episodes_per_s`).

The reference drivers are charged no compute (always `fixed:0`): for them both cells run
`fixed:0`, at 1 and at `--envs` envs, with no profile.

`--device cuda`: the networks run on the GPU, in the profile and in both cells; the
profiled cell runs twice, the batched env on the CPU (`profiled`) and on the GPU
(`profiled_env_cuda`). Without CUDA it exits with a message, nothing measured.

Output: `{"stacks": {stack: {"measured": {...}, "profile": {...}, "profiled": {...},
"speedup": profiled / measured episodes/s, "meets_goal": bool}}, "goal_speedup": 20,
"meets_goal": every stack, "config": {...}, "platform": {...}}`; progress on stderr.

Usage:
    python scripts/bench_compare.py                           # 4 stacks, CPU
    python scripts/bench_compare.py --stacks staged,cnn --episodes 64 --envs 64 \
        --measured-episodes 4
    python scripts/bench_compare.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from reflexdrive.agents.registry import REFERENCE_STACKS  # noqa: E402
from reflexdrive.envs.latency import save_profile  # noqa: E402

from reflexdrive.common.threads import cpu_threads  # noqa: E402
from reflexdrive.compare.config import CompareConfig  # noqa: E402
from reflexdrive.compare.executors import cell_agent, cell_threads  # noqa: E402
from reflexdrive.run.profile import ProfileConfig, profile_stack  # noqa: E402
from reflexdrive.run.runner import RunConfig, run  # noqa: E402

GOAL_SPEEDUP = 20.0
"""Issue 16: a profiled cell at B = 256 runs >= 20x the episodes/s of a measured one."""

SCENARIO, MODE = "lead-brake", "realtime"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cell_config(stack: str, latency: str, episodes: int, envs: int, backend: str,
                seed: int) -> RunConfig:
    """The RunConfig of the compare cell (stack, lead-brake, realtime, extra 0)."""
    compare = CompareConfig(stacks=(stack,), scenarios=(SCENARIO,), modes=(MODE,),
                            extra_latency_s=(0.0,), latency=latency, episodes=episodes,
                            seed=seed, envs=envs, backend=backend)
    (cell,) = compare.cells()
    return cell.run


def time_cell(config: RunConfig, net_device: str, threads: int) -> dict:
    """Run the cell in memory; its wall time and episodes per second.

    The env runs on `config.device`, the stack's networks on `net_device`. One untimed
    episode first (a stack of its own) compiles the env's kernels (numba) and warms
    torch's allocator."""
    warmup = replace(config, episodes=1, envs=1, device=config.device)
    agent = cell_agent(replace(config, device=net_device))
    with cpu_threads(threads):
        run(warmup, out=None, agent=cell_agent(replace(warmup, device=net_device)),
            progress=False)
        start = time.perf_counter()
        episodes, _ = run(config, out=None, agent=agent, progress=False)
        wall_s = time.perf_counter() - start
    return {"episodes": len(episodes), "envs": config.envs, "worlds": config.worlds,
            "threads": threads,
            "latency": config.latency, "backend": config.resolved_backend,
            "env_device": config.resolved_device, "net_device": net_device,
            "wall_s": wall_s, "episodes_per_s": len(episodes) / wall_s}


def profile(stack: str, args, folder: Path) -> tuple[str, dict]:
    """Profile `stack` at batch 1 on lead-brake; the saved file's path and a summary."""
    config = ProfileConfig(stack=stack, scenario=SCENARIO, episodes=args.profile_episodes,
                           seed=args.seed, warmup=args.warmup, device=args.device)
    with cpu_threads(1):                      # a car's computer gives the stack a core
        start = time.perf_counter()
        latency = profile_stack(config, progress=False)
        wall_s = time.perf_counter() - start
    path = folder / f"{stack}.json"
    save_profile(latency, path)
    totals = latency.as_array().sum(axis=1) * 1e3
    return str(path), {"wall_s": wall_s, "decisions": int(totals.size),
                       "mean_ms": float(totals.mean()), "device": latency.device}


def bench_stack(stack: str, args, folder: Path) -> dict:
    reference = stack in REFERENCE_STACKS
    result: dict = {}
    log(f"{stack}: measured, 1 env, {args.measured_episodes} episodes ...")
    measured = cell_config(stack, "measured", args.measured_episodes, 1, args.backend,
                           args.seed)
    result["measured"] = time_cell(measured, args.device, 1)
    log(f"  {result['measured']['episodes_per_s']:.3f} episodes/s")
    if reference:
        latency = "measured"                   # the compare makes it fixed:0
        result["profile"] = None
    else:
        log(f"{stack}: profile at batch 1, {args.profile_episodes} episodes ...")
        path, result["profile"] = profile(stack, args, folder)
        latency = f"profile:{path}"
        log(f"  {result['profile']['mean_ms']:.2f} ms per decision, "
            f"{result['profile']['wall_s']:.1f} s")
    profiled = cell_config(stack, latency, args.episodes, args.envs, "batched", args.seed)
    env_devices = ["cpu"] + (["cuda"] if args.device == "cuda" else [])
    for env_device in env_devices:
        key = "profiled" if env_device == "cpu" else "profiled_env_cuda"
        log(f"{stack}: profiled, {args.envs} envs, {args.episodes} episodes, env on "
            f"{env_device} ...")
        result[key] = time_cell(replace(profiled, device=env_device), args.device,
                                cell_threads(profiled, args.threads))
        log(f"  {result[key]['episodes_per_s']:.3f} episodes/s")
    best = max(result[key]["episodes_per_s"] for key in ("profiled", "profiled_env_cuda")
               if key in result)
    result["speedup"] = best / result["measured"]["episodes_per_s"]
    result["meets_goal"] = result["speedup"] >= GOAL_SPEEDUP
    log(f"  speedup {result['speedup']:.1f}x (goal {GOAL_SPEEDUP:.0f}x)")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--stacks", default="staged,cnn,gru,transformer",
                        help="stacks, comma-separated (reference-driver too)")
    parser.add_argument("--episodes", type=int, default=256,
                        help="episodes of the profiled cell")
    parser.add_argument("--envs", type=int, default=256, help="envs of the profiled cell")
    parser.add_argument("--measured-episodes", type=int, default=8,
                        help="episodes of the measured cell (1 env)")
    parser.add_argument("--profile-episodes", type=int, default=2,
                        help="episodes driven to take the profile")
    parser.add_argument("--warmup", type=int, default=20,
                        help="decisions dropped from the profile")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="device of the stacks' networks (cuda: also the env, a 2nd run)")
    parser.add_argument("--backend", default="auto", choices=("auto", "batched", "highway"),
                        help="world backend of the measured cell")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and numba threads of the profiled cell (default: as "
                             "compare runs it, all of this machine's cores)")
    parser.add_argument("--seed", type=int, default=0, help="first scenario seed")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        log("bench_compare: --device cuda needs CUDA, and torch sees no GPU here; "
            "nothing measured (run with --device cpu)")
        return 2
    stacks = [name.strip() for name in args.stacks.split(",") if name.strip()]

    result: dict = {"stacks": {}}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as folder:
        for stack in stacks:
            result["stacks"][stack] = bench_stack(stack, args, Path(folder))
    result["goal_speedup"] = GOAL_SPEEDUP
    result["meets_goal"] = all(r["meets_goal"] for r in result["stacks"].values())
    result["config"] = {"scenario": SCENARIO, "mode": MODE, "extra_latency_s": 0.0,
                        "episodes": args.episodes, "envs": args.envs,
                        "measured_episodes": args.measured_episodes,
                        "profile_episodes": args.profile_episodes, "warmup": args.warmup,
                        "device": args.device, "backend_measured": args.backend,
                        "threads": args.threads, "seed": args.seed}
    result["platform"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "cpu_count": os.cpu_count(), "machine": platform.machine(),
                          "cuda": torch.cuda.get_device_name(0) if args.device == "cuda"
                          else None}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
