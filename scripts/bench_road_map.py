#!/usr/bin/env python
"""The cost of `info["map"]` / `obs["route"]` per observation, as one JSON object.

- `highway/<scenario>`: `HighwayBackend.road_map()` on highway-env's network of each
  scenario, after 5 ticks of a constant action (µs per call), beside the env's whole
  `step` without sensors (`observations=False`, µs per tick) for scale;
- `batched/B`: `envs.road_map.straight_road_map` for `B` egos on random 4-lane, 2 km
  straight roads (µs per call, all `B` worlds).

Usage:
    python scripts/bench_road_map.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from reflexdrive.envs.gym.single import DrivingEnv
from reflexdrive.envs.road_map import straight_road_map


def per_call_us(function, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return round((time.perf_counter() - start) / calls * 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    out: dict[str, dict] = {"highway": {}, "batched": {}}
    for name in ("highway", "merge", "roundabout", "intersection"):
        env = DrivingEnv(name, observations=False)
        env.reset(seed=1)
        step = per_call_us(lambda: env.step([0.0, 0.0]), 5)
        out["highway"][name] = {"map_us": per_call_us(env.backend.road_map, args.calls),
                                "env_step_us_no_sensors": step}
    rng = np.random.default_rng(0)
    for batch in (1, 64, 1024):
        position = np.stack([rng.uniform(0, 2000, batch), rng.uniform(0, 12, batch)], 1)
        inputs = (position, rng.normal(0, 0.1, batch), rng.integers(0, 4, batch),
                  np.full(batch, 4), np.full(batch, 2000.0), 4.0)
        calls = max(args.calls // batch, 10)
        out["batched"][str(batch)] = {
            "map_us": per_call_us(lambda: straight_road_map(*inputs), calls)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
