#!/usr/bin/env python
"""Where a tick of the batched env goes on a road network, as one JSON object.

Runs `BatchedDrivingEnv` (bev + lidar observations, constant action, fixed 30 ms latency)
for `--ticks` ticks under cProfile after two untimed ones, and prints the wall ms per tick
and each component's cumulative ms per tick: the network kernel's substeps
(`network_worlds`), the bev's generic road raster (`generic_roads_kernel`) and its boxes
and straight roads (`render_bev_kernel`), the lidar, the map (`NetworkBackend.road_map`),
the ground-truth list, the snapshot, the env's per-substep bookkeeping (`hazards.update`,
`ego_on_road`), and the totals of `_run_tick` and `_observe_and_info`. cProfile adds a
little per Python call (a few hundred calls per tick); compare runs of this script, not
its tick time with `bench_backends.py`'s.

Usage:
    NUMBA_NUM_THREADS=1 python scripts/profile_network_tick.py --scenario roundabout --envs 4096
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from reflexdrive.envs.gym.vector import BatchedDrivingEnv  # noqa: E402

COMPONENTS = {
    # (function name, a fragment of its file's path): the key in the output
    ("network_worlds", "network_traffic"): "kernel_substeps",
    ("generic_roads_kernel", "bev_generic"): "bev_generic_roads",
    ("render_bev_kernel", "kernels/bev"): "bev_boxes_straight",
    ("cast_lidar_kernel", "lidar"): "lidar",
    ("road_map", "network_backend"): "map",
    ("ground_truth_objects", "ground_truth"): "ground_truth",
    ("snapshot", "network_backend"): "snapshot",
    ("update", "hazards"): "hazards_update",
    ("ego_on_road", "network_backend"): "ego_on_road",
    ("_run_tick", "vector"): "run_tick_total",
    ("_observe_and_info", "vector"): "observe_and_info_total",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scenario", default="roundabout",
                        help="merge, roundabout or intersection")
    parser.add_argument("--envs", type=int, default=4096, help="worlds B")
    parser.add_argument("--ticks", type=int, default=4, help="profiled ticks")
    parser.add_argument("--seed", type=int, default=0, help="first scenario seed")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    env = BatchedDrivingEnv(args.envs, args.scenario, latency="fixed:0.03",
                            observations=True, copy=False)
    env.reset(seed=args.seed)
    action = np.zeros((args.envs, 2), np.float32)
    for _ in range(2):
        env.step(action)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    for _ in range(args.ticks):
        env.step(action)
    profile.disable()
    tick_s = (time.perf_counter() - start) / args.ticks
    result = {"scenario": args.scenario, "envs": args.envs, "ticks": args.ticks,
              "tick_ms": round(tick_s * 1e3, 2)}
    for (path, _, name), row in pstats.Stats(profile).stats.items():
        for (function, fragment), key in COMPONENTS.items():
            if name == function and fragment in path:
                result[key] = round(row[3] / args.ticks * 1e3, 2)
    result["env_ticks_per_s"] = round(args.envs / tick_s, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
