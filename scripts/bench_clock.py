#!/usr/bin/env python
"""Benchmark the tick clock against the world it drives, on the public API.

Prints ONE JSON object to stdout (progress goes to stderr). Three measurements, each
repeated `--repeats` times from the same seeds; the median is reported:

- `highway_substeps_per_s`: `HighwayBackend.substep` with one full-substep `Piece` per call
  (what the clock emits for every substep that no command lands in), with and without the
  `snapshot()` the env takes after every substep.
- `env_ticks_per_s`: ticks per wall second of `make_env(scenario, mode=..., latency=...)`
  stepped with a constant action, observations (bev + lidar + ego) included. Only the
  `env.step` calls are timed; resets between episodes are not.
- `clock_overhead_per_tick_s`: the clock's own cost per tick, timed in a tight loop that
  does what `ClockWrapper.step` does besides `run_window`: `action_to_command`, the latency
  model's `sample`, `TickClock.decide`, the overrun check and `mark_observation_returned`.
  `clock_overhead_fraction` divides it by the wall time of one env tick (1 / env_ticks_per_s).

Usage:
    python scripts/bench_clock.py                     # highway, realtime, fixed:0.03
    python scripts/bench_clock.py --latency measured --mode lockstep
    python scripts/bench_clock.py --profile           # also cProfile the env steps

The goal is `clock_overhead_fraction < 0.02`: the tick contract must cost under 2 % of a tick.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.metadata
import io
import json
import os
import platform
import pstats
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from reflexdrive.envs.backends.highway import HighwayBackend  # noqa: E402
from reflexdrive.envs.clock import TickClock  # noqa: E402
from reflexdrive.envs.gym.single import action_to_command  # noqa: E402
from reflexdrive.envs.latency import parse_latency  # noqa: E402
from reflexdrive.envs.registration import make_env  # noqa: E402
from reflexdrive.envs.scenarios import generate, make_config  # noqa: E402
from reflexdrive.envs.types import Command, Piece  # noqa: E402

GOAL_CLOCK_OVERHEAD_FRACTION = 0.02


def log(message: str) -> None:
    print(f"[bench_clock] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the tick clock's overhead against the highway-env world it "
                    "drives. Prints one JSON object to stdout; progress goes to stderr.")
    parser.add_argument("--scenario", default="highway", help="scenario name (default: highway)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="simulated seconds per run of the backend and of the env "
                             "(episodes are chained with seeds seed, seed+1, ... if the "
                             "scenario ends sooner; default: 20)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="repeats of every measurement; the median is reported (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    parser.add_argument("--latency", default="fixed:0.03",
                        help="latency model spec: fixed:SECONDS, fixed:STAGE=SECONDS,..., "
                             "profile:PATH or measured (default: fixed:0.03)")
    parser.add_argument("--mode", default="realtime", choices=("realtime", "lockstep"),
                        help="clock mode (default: realtime)")
    parser.add_argument("--simulation-frequency", type=int, default=50,
                        help="substep rate [Hz] (default: 50)")
    parser.add_argument("--policy-frequency", type=int, default=10,
                        help="tick rate [Hz] (default: 10)")
    parser.add_argument("--action", default="0.0,0.0",
                        help="constant env action 'ACCELERATION,STEERING' (default: 0.0,0.0)")
    parser.add_argument("--clock-iterations", type=int, default=20000,
                        help="decisions per repeat of the clock tight loop (default: 20000)")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one env run: top functions go to stderr, the "
                             "clock's in-situ share goes into the JSON under 'profile'")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be > 0")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.clock_iterations < 1:
        parser.error("--clock-iterations must be >= 1")
    try:
        args.action_array = np.array([float(x) for x in args.action.split(",")], dtype=np.float32)
    except ValueError:
        parser.error(f"--action {args.action!r}: expected 'ACCELERATION,STEERING'")
    if args.action_array.shape != (2,):
        parser.error(f"--action {args.action!r}: expected 'ACCELERATION,STEERING'")
    return args


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # torch is a dependency, but the benchmark does not need it
        pass


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# ----------------------------------------------------------------------------- backend


def bench_backend(args: argparse.Namespace, with_snapshot: bool) -> tuple[float, dict]:
    """Substeps per wall second of one `HighwayBackend` over `--seconds` simulated seconds."""
    f = args.simulation_frequency
    config = make_config(args.scenario)
    init = generate(args.scenario, config, args.seed, f)
    backend = HighwayBackend(f)
    backend.reset(init)
    first = backend.snapshot()
    dt = 1.0 / f
    command = Command(float(args.action_array[0]), float(args.action_array[1]))
    pieces = (Piece(dt, command),)
    n = max(1, round(args.seconds * f))
    substep = backend.substep
    snapshot = backend.snapshot
    start = time.perf_counter()
    if with_snapshot:
        for _ in range(n):
            substep(pieces)
            snapshot()
    else:
        for _ in range(n):
            substep(pieces)
    elapsed = time.perf_counter() - start
    last = backend.snapshot()
    world = {
        "vehicles": int(first.valid.sum()),
        "crashed_at_end": bool(last.crashed[0]),
        "ego_on_road_at_end": bool(last.ego_on_road[0]),
    }
    return n / elapsed, world


# ----------------------------------------------------------------------------- env


def run_env(env, args: argparse.Namespace) -> dict:
    """Step `env` with a constant action until `--seconds` simulated seconds have passed."""
    action = args.action_array
    target_s = args.seconds
    simulated_s = 0.0
    ticks = steps = episodes = 0
    step_wall_s = 0.0
    seed = args.seed
    step = env.step
    while simulated_s < target_s - 1e-9:
        _, info = env.reset(seed=seed + episodes)
        episodes += 1
        episode_start_s = info["time_s"]
        done = False
        while not done and simulated_s + (info["time_s"] - episode_start_s) < target_s - 1e-9:
            t0 = time.perf_counter()
            _, _, terminated, truncated, info = step(action)
            step_wall_s += time.perf_counter() - t0
            steps += 1
            ticks += len(info["ticks"])
            done = terminated or truncated
        simulated_s += info["time_s"] - episode_start_s
    return {"ticks": ticks, "steps": steps, "episodes": episodes, "simulated_s": simulated_s,
            "wall_s": step_wall_s}


def make_bench_env(args: argparse.Namespace):
    return make_env(args.scenario, mode=args.mode, latency=args.latency,
                    simulation_frequency=args.simulation_frequency,
                    policy_frequency=args.policy_frequency)


# ----------------------------------------------------------------------------- clock


def time_loop(body: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    count = body()
    return time.perf_counter() - start, count


def bench_clock(env, args: argparse.Namespace) -> dict:
    """The wrapper's clock path (everything in `ClockWrapper.step` but `run_window`), timed
    in a tight loop with seeded random actions, plus its parts on their own."""
    config = env.clock_config
    n = args.clock_iterations
    rng = np.random.default_rng([args.seed, 7])
    space = env.action_space
    actions = rng.uniform(space.low, space.high, size=(n, 2)).astype(np.float32)
    actions = list(actions)  # one (2,) float32 array per decision, as an agent returns them
    raise_on_overrun = config.on_overrun == "raise"

    model = parse_latency(config.latency)
    model.reset(args.seed)
    clock = TickClock(config)
    clock.reset()
    model.mark_observation_returned()

    def full() -> int:
        for action in actions:
            command = action_to_command(action)
            stage_latency_s = model.sample(None)
            window = clock.decide(command, stage_latency_s)
            if window.overrun and raise_on_overrun:
                pass  # the wrapper would raise DeadlineMiss here; the benchmark keeps going
            model.mark_observation_returned()
        return clock.tick

    full_s, ticks = time_loop(full)

    # The parts, each on its own with prepared inputs.
    commands = [action_to_command(a) for a in actions]
    model.reset(args.seed)
    model.mark_observation_returned()
    stage_samples = [model.sample(None) for _ in range(n)]

    def convert() -> int:
        for action in actions:
            action_to_command(action)
        return n

    def sample() -> int:
        for _ in range(n):
            model.sample(None)
            model.mark_observation_returned()
        return n

    decide_clock = TickClock(config)

    def decide() -> int:
        decide_clock.reset()
        for command, stage_latency_s in zip(commands, stage_samples):
            decide_clock.decide(command, stage_latency_s)
        return decide_clock.tick

    convert_s, _ = time_loop(convert)
    model.reset(args.seed)
    model.mark_observation_returned()
    sample_s, _ = time_loop(sample)
    decide_s, decide_ticks = time_loop(decide)
    return {
        "decisions": n,
        "ticks": ticks,
        "per_tick_s": full_s / ticks,
        "per_decision_s": full_s / n,
        "decide_per_decision_s": decide_s / n,
        "decide_per_tick_s": decide_s / decide_ticks,
        "latency_sample_per_decision_s": sample_s / n,
        "action_to_command_per_decision_s": convert_s / n,
    }


# ----------------------------------------------------------------------------- profile


def profile_env(args: argparse.Namespace) -> dict:
    """cProfile one env run; the in-situ cumulative time of the clock's functions vs env.step."""
    env = make_bench_env(args)
    profiler = cProfile.Profile()
    profiler.enable()
    run_env(env, args)
    profiler.disable()
    env.close()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("cumulative").print_stats(30)
    log("cProfile of the env run (top 30 by cumulative time):\n" + stream.getvalue())

    def cumulative(filename_suffix: str, function: str) -> float:
        total = 0.0
        for (filename, _, name), (_, _, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
            if name == function and filename.endswith(filename_suffix):
                total += ct
        return total

    step_s = cumulative("envs/clock/wrapper.py", "step")
    parts = {
        "decide": cumulative("envs/clock/single.py", "decide"),
        "latency_sample": cumulative("envs/latency/models.py", "sample"),
        "action_to_command": cumulative("envs/gym/single.py", "action_to_command"),
        "run_window": cumulative("envs/gym/single.py", "run_window"),
        "observe": cumulative("envs/gym/single.py", "_observe"),
        "backend_substep": cumulative("envs/backends/highway.py", "substep"),
        "backend_snapshot": cumulative("envs/backends/highway.py", "snapshot"),
    }
    clock_s = parts["decide"] + parts["latency_sample"] + parts["action_to_command"]
    return {
        "note": "cProfile inflates small Python calls; use as a breakdown, not as timings",
        "env_step_cumulative_s": step_s,
        "fraction_of_env_step": {k: (v / step_s if step_s else None) for k, v in parts.items()},
        "clock_fraction_in_situ": clock_s / step_s if step_s else None,
    }


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed_everything(args.seed)
    wall_start = time.perf_counter()

    # Warm up imports, caches and lazy paths once (untimed).
    log(f"warming up ({args.scenario}, {args.mode}, latency {args.latency})")
    env = make_bench_env(args)
    env.reset(seed=args.seed)
    for _ in range(5):
        env.step(args.action_array)
    warm_args = argparse.Namespace(**{**vars(args), "seconds": min(args.seconds, 1.0)})
    bench_backend(warm_args, with_snapshot=True)

    substep_only, substep_snapshot, env_runs, clock_runs = [], [], [], []
    world: dict[str, Any] = {}
    for repeat in range(args.repeats):
        log(f"repeat {repeat + 1}/{args.repeats}: backend")
        gc.collect()
        rate, world = bench_backend(args, with_snapshot=False)
        substep_only.append(rate)
        gc.collect()
        rate, _ = bench_backend(args, with_snapshot=True)
        substep_snapshot.append(rate)

        log(f"repeat {repeat + 1}/{args.repeats}: env ({args.seconds:g} simulated s)")
        gc.collect()
        env_runs.append(run_env(env, args))

        log(f"repeat {repeat + 1}/{args.repeats}: clock tight loop "
            f"({args.clock_iterations} decisions)")
        gc.collect()
        clock_runs.append(bench_clock(env, args))

    env_ticks_per_s = [r["ticks"] / r["wall_s"] for r in env_runs]
    env_steps_per_s = [r["steps"] / r["wall_s"] for r in env_runs]
    tick_wall_s = median([r["wall_s"] / r["ticks"] for r in env_runs])
    overhead_s = median([c["per_tick_s"] for c in clock_runs])
    fraction = overhead_s / tick_wall_s

    clock_config = env.clock_config
    world_env = env.unwrapped
    result: dict[str, Any] = {
        "benchmark": "reflexdrive.bench_clock",
        "highway_substeps_per_s": median(substep_snapshot),
        "highway_substeps_per_s_substep_only": median(substep_only),
        "highway_substeps_per_s_substep_and_snapshot": median(substep_snapshot),
        "env_ticks_per_s": median(env_ticks_per_s),
        "env_steps_per_s": median(env_steps_per_s),
        "env_wall_per_tick_s": tick_wall_s,
        "clock_overhead_per_tick_s": overhead_s,
        "clock_overhead_fraction": fraction,
        "goal_clock_overhead_fraction": GOAL_CLOCK_OVERHEAD_FRACTION,
        "meets_goal": bool(fraction < GOAL_CLOCK_OVERHEAD_FRACTION),
        "clock_breakdown_per_decision_s": {
            "wrapper_clock_path": median([c["per_decision_s"] for c in clock_runs]),
            "tick_clock_decide": median([c["decide_per_decision_s"] for c in clock_runs]),
            "latency_model_sample": median([c["latency_sample_per_decision_s"]
                                            for c in clock_runs]),
            "action_to_command": median([c["action_to_command_per_decision_s"]
                                         for c in clock_runs]),
        },
        "runs": {
            "highway_substeps_per_s_substep_only": substep_only,
            "highway_substeps_per_s_substep_and_snapshot": substep_snapshot,
            "env_ticks_per_s": env_ticks_per_s,
            "clock_overhead_per_tick_s": [c["per_tick_s"] for c in clock_runs],
            "env": env_runs,
        },
        "config": {
            "scenario": args.scenario,
            "vehicles": world.get("vehicles"),
            "traffic_vehicles": (world["vehicles"] - 1) if world.get("vehicles") else None,
            "backend_crashed_at_end": world.get("crashed_at_end"),
            "simulation_frequency": clock_config.simulation_frequency,
            "policy_frequency": clock_config.policy_frequency,
            "substeps_per_tick": clock_config.substeps_per_tick,
            "mode": clock_config.mode,
            "latency": clock_config.latency,
            "budget_s": clock_config.budget,
            "on_overrun": clock_config.on_overrun,
            "action": [float(x) for x in args.action_array],
            "seconds": args.seconds,
            "repeats": args.repeats,
            "seed": args.seed,
            "clock_iterations": args.clock_iterations,
            "bev_shape": list(world_env.sensor_config.bev_shape),
            "lidar_beams": world_env.sensor_config.lidar_beams,
        },
        "platform": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "numpy": np.__version__,
            "torch": package_version("torch"),
            "highway_env": package_version("highway-env"),
            "gymnasium": package_version("gymnasium"),
            "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None,
            "cpu_model": cpu_model(),
            "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        },
    }
    env.close()
    if args.profile:
        log("profiling one env run with cProfile")
        result["profile"] = profile_env(args)
    result["bench_wall_s"] = time.perf_counter() - wall_start
    log(f"done in {result['bench_wall_s']:.1f} s: clock overhead "
        f"{fraction * 100:.3f} % of a tick (goal < {GOAL_CLOCK_OVERHEAD_FRACTION * 100:g} %)")
    json.dump(result, sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
