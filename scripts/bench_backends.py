#!/usr/bin/env python
"""Env ticks per second of the highway and batched backends, in one run, as one JSON object.

A tick is 0.1 s of world time (10 Hz policy, 50 Hz substeps), on the clock in realtime
with a fixed 30 ms latency, a constant action, in the Highway scenario (16 vehicles per
env at the defaults) or `--scenario NAME` (any of `envs.gym.vector.batched_scenarios()`;
a road network, e.g. intersection, runs on `NetworkBackend`, CPU only). Measured with
`bev` + `lidar` observations ("obs") and without ("no_obs"):

- `highway/1`: one highway-env env in this process (`envs.registration.make_env`);
- `highway/vec2`: two highway-env envs in worker processes (`AsyncVectorEnv`);
- `batched/B`: the batched backend, B envs in one torch batch (`BatchedDrivingEnv`,
  `copy=False` unless `--copy`: `bev` drawn into a reused buffer), on CPU;
  `batched-cuda/B` as well when CUDA is available.

Output: `{"obs": {key: ticks/s}, "no_obs": {...}, "bytes_per_env": ..., "speedup_4096_vs_
highway_1": ..., "goal_speedup": 1000, "config": {...}, "platform": {...}}`. Only the
`step` calls are timed; each measurement runs at least `--min-ticks` batched ticks and
`--seconds` of wall time after `--warmup` ticks.

Usage:
    python scripts/bench_backends.py                       # everything, CPU (+ CUDA if any)
    python scripts/bench_backends.py --sizes 1,64 --skip-highway
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402
from reflexdrive.envs.gym.vector import BatchedDrivingEnv, batched_scenarios  # noqa: E402
from reflexdrive.envs.registration import make_env  # noqa: E402
from reflexdrive.envs.scenarios import scenario_spec  # noqa: E402

GOAL_SPEEDUP = 1000.0
"""Issue 4: batched/4096 with observations vs highway/1 with observations."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _time_steps(step, batch: int, warmup: int, min_ticks: int, seconds: float) -> float:
    """Env ticks per wall second of `step()` (each call advances `batch` env ticks)."""
    for _ in range(warmup):
        step()
    calls, start = 0, time.perf_counter()
    while calls < min_ticks or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def bench_highway(args, observations: bool, workers: int) -> float:
    kwargs = dict(scenario=args.scenario, mode="realtime", latency=args.latency,
                  observations=observations)
    if workers == 1:
        env = make_env(**kwargs)
        env.reset(seed=args.seed)
        action = np.zeros(2, dtype=np.float32)
        state = {"env": env}

        def step():
            _, _, terminated, truncated, _ = state["env"].step(action)
            if terminated or truncated:
                state["env"].reset()
    else:
        env = gym.vector.AsyncVectorEnv([functools.partial(make_env, **kwargs)] * workers,
                                        context="forkserver")
        env.reset(seed=args.seed)
        action = np.zeros((workers, 2), dtype=np.float32)

        def step():
            env.step(action)                       # next-step autoreset
    try:
        return _time_steps(step, workers, args.warmup, args.min_ticks_highway, args.seconds)
    finally:
        env.close()


def bench_batched(args, observations: bool, batch: int, device: str) -> tuple[float, int]:
    env = BatchedDrivingEnv(batch, args.scenario, latency=args.latency,
                            observations=observations, device=device, copy=args.copy)
    env.reset(seed=args.seed)
    action = np.zeros((batch, 2), dtype=np.float32)
    rate = _time_steps(lambda: env.step(action), batch, args.warmup, args.min_ticks,
                       args.seconds)
    return rate, state_bytes(env) // batch


def state_bytes(env: BatchedDrivingEnv) -> int:
    """Bytes of all tensors of the world state and the clock state."""
    import dataclasses

    def size(obj) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.element_size() * obj.numel()
        if dataclasses.is_dataclass(obj):
            return sum(size(getattr(obj, f.name)) for f in dataclasses.fields(obj))
        return 0

    return size(env.backend.state) + size(env.clock.state)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scenario", default="highway",
                        help="one of " + ", ".join(batched_scenarios()))
    parser.add_argument("--sizes", default="1,64,1024,4096,8192",
                        help="batched env counts, comma-separated")
    parser.add_argument("--latency", default="fixed:0.03", help="latency model")
    parser.add_argument("--seed", type=int, default=0, help="first scenario seed")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="minimum wall time per measurement [s]")
    parser.add_argument("--min-ticks", type=int, default=3, help="minimum batched steps")
    parser.add_argument("--min-ticks-highway", type=int, default=30,
                        help="minimum highway steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 is fastest on a busy 2-core box)")
    parser.add_argument("--skip-highway", action="store_true", help="batched backend only")
    parser.add_argument("--copy", action="store_true",
                        help="batched env returns fresh observation arrays (copy=True) "
                             "instead of drawing into a reused buffer")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    result = {"obs": {}, "no_obs": {}}
    cuda = torch.cuda.is_available() and scenario_spec(args.scenario).straight
    devices = ["cpu"] + (["cuda"] if cuda else [])        # road networks: CPU kernel only
    bytes_per_env = None
    for observations, key in ((True, "obs"), (False, "no_obs")):
        if not args.skip_highway:
            for workers, name in ((1, "highway/1"), (2, "highway/vec2")):
                log(f"{key} {name} ...")
                result[key][name] = bench_highway(args, observations, workers)
                log(f"  {result[key][name]:.1f} env ticks/s")
        for device in devices:
            prefix = "batched" if device == "cpu" else "batched-cuda"
            for batch in sizes:
                log(f"{key} {prefix}/{batch} ...")
                rate, per_env = bench_batched(args, observations, batch, device)
                result[key][f"{prefix}/{batch}"] = rate
                bytes_per_env = bytes_per_env or per_env
                log(f"  {rate:.1f} env ticks/s")
    result["bytes_per_env"] = bytes_per_env
    base, big = result["obs"].get("highway/1"), result["obs"].get("batched/4096")
    result["speedup_4096_vs_highway_1"] = big / base if base and big else None
    result["goal_speedup"] = GOAL_SPEEDUP
    result["meets_goal"] = bool(result["speedup_4096_vs_highway_1"]
                                and result["speedup_4096_vs_highway_1"] >= GOAL_SPEEDUP)
    result["config"] = {"scenario": args.scenario, "latency": args.latency, "seed": args.seed,
                        "torch_threads": args.threads, "batched_copy": args.copy,
                        "simulation_frequency": 50,
                        "policy_frequency": 10, "seconds": args.seconds}
    result["platform"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "cpu_count": os.cpu_count(), "machine": platform.machine(),
                          "cuda": torch.cuda.get_device_name(0) if devices[-1] == "cuda"
                          else None}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
