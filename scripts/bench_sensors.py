#!/usr/bin/env python
"""Benchmark the sensors (bev raster, lidar, ground truth) at batch sizes up to 8192 worlds.

Prints ONE JSON object to stdout (progress goes to stderr). For every device (the CPU,
and CUDA when available) and every batch size `B`, it reports the median wall time of one
call [ms] and the observations it makes per second (`B / seconds per call`) of:

- `render_bev`, `cast_lidar`, `ground_truth_objects`: the public entry points as the
  envs call them (snapshot in, numpy out). On the CPU they run the numba kernels of
  `envs.sensors.kernels`; on CUDA the torch cores;
- `render_bev_out`: `render_bev` into a reused output buffer (`out=`; CPU): a fresh
  `(B, 4, 64, 64)` raster is 64 MB at `B = 4096`, tens of ms of page faults on some hosts;
- `observe_out`: `observe` (bev and lidar in one call, the lidar's noise drawn while the
  bev kernel runs) into a reused buffer, as `BatchedDrivingEnv` calls it (CPU);
- `ground_truth_objects_numpy`: the object list by the numpy implementation (CPU);
- `render_bev_torch`, `cast_lidar_torch` (and `render_bev_torch_out`): the torch cores on
  tensors already on the device (under `torch.inference_mode()`), as a batched backend on
  a GPU calls them; on the CPU, the path the numba kernels replaced;
- `bev_plus_lidar`, `bev_out_plus_lidar`: sums of the torch cores;
- `prepare_road_ms`: building the road plan once (the sensors cache it per road).

`goal` compares the CPU's `observe_out + ground_truth_objects` at `B = 4096` with
`--goal-ms` (issue 4: the observation side of a tick within 25 ms on the 2-core box).

Inputs are realistic and synthetic: `--scenes` highway scenes (`envs.scenarios.generate`
with 3 or 4 lanes, 15 to 19 vehicles, stepped a random 0 to 4 s on `HighwayBackend`) are
replicated over the batch, each copy moved a random distance along the 2 km road, its
vehicles jittered sideways and its ego turned a little (as in a lane change). Each world
has its own `RoadGeometry` row (lanes and markings padded to the largest road), or with
`--road shared` one 4-lane road for all worlds. With `--noise`, sensor noise and dropout
are drawn from a seeded rng (the default `SensorConfig` has lidar noise).

Usage:
    python scripts/bench_sensors.py                       # B = 1, 64, 1024, 4096
    python scripts/bench_sensors.py --with-8192 --noise   # add B = 8192; noisy sensors
    python scripts/bench_sensors.py --batches 1,4096 --devices cpu --threads 2
    python scripts/bench_sensors.py --sensors-module /tmp/old_sensors.py   # A/B a copy

Timings on a shared host are noisy: each figure is the median of `--repeats` calls (and
`--min-seconds`); `--threads N` sets both torch's intra-op threads and numba's threads.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numba
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from reflexdrive.envs import sensors as default_sensors  # noqa: E402
from reflexdrive.envs.backends.highway import HighwayBackend  # noqa: E402
from reflexdrive.envs.config import SensorConfig  # noqa: E402
from reflexdrive.envs.scenarios import generate, make_config  # noqa: E402
from reflexdrive.envs.types import Command, Piece, RoadGeometry, WorldSnapshot  # noqa: E402

GOAL_BATCH = 4096
GOAL_MS = 25.0
"""Issue 4: the observation side of a tick (bev, lidar, ground truth) of 4096 worlds within
this many ms on 2 CPU cores."""

ROAD_LENGTH_M = 2000.0
"""Length of the straight road of the highway scenarios [m]."""


def log(message: str) -> None:
    print(f"[bench_sensors] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark envs.sensors (bev raster and lidar) at large batch sizes. "
                    "Prints one JSON object to stdout; progress goes to stderr.")
    parser.add_argument("--batches", default="1,64,1024,4096",
                        help="comma-separated batch sizes (default: 1,64,1024,4096)")
    parser.add_argument("--with-8192", action="store_true", help="also benchmark B = 8192")
    parser.add_argument("--devices", default="auto",
                        help="comma-separated devices, or 'auto' for cpu plus cuda when "
                             "available (default: auto)")
    parser.add_argument("--road", default="per-env", choices=("per-env", "shared"),
                        help="one RoadGeometry row per world (3 or 4 lanes, padded), or one "
                             "4-lane road shared by all worlds (default: per-env)")
    parser.add_argument("--scenes", type=int, default=16,
                        help="distinct highway scenes replicated over the batch (default: 16)")
    parser.add_argument("--noise", action="store_true",
                        help="draw sensor noise and dropout from a seeded rng (default: truth)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed calls per measurement; the median is reported (default: 5)")
    parser.add_argument("--min-seconds", type=float, default=0.5,
                        help="keep calling until this much time is spent, at most 200 calls "
                             "(default: 0.5)")
    parser.add_argument("--numpy-max-batch", type=int, default=8192,
                        help="skip the numpy entry points above this batch (default: 8192)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch and numba CPU threads (default: 0, their choice)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    parser.add_argument("--sensors-module", default=None, metavar="PATH",
                        help="benchmark the sensors implementation in this file instead of "
                             "reflexdrive.envs.sensors (e.g. a saved copy of an older version)")
    parser.add_argument("--goal-ms", type=float, default=GOAL_MS,
                        help=f"goal for observe + ground truth at B = {GOAL_BATCH} on the CPU "
                             f"[ms] (default: {GOAL_MS})")
    args = parser.parse_args(argv)
    try:
        args.batch_list = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batches {args.batches!r}: expected comma-separated integers")
    if args.with_8192 and 8192 not in args.batch_list:
        args.batch_list.append(8192)
    if not args.batch_list or min(args.batch_list) < 1:
        parser.error("--batches must list positive integers")
    if args.scenes < 1 or args.repeats < 1:
        parser.error("--scenes and --repeats must be >= 1")
    if args.devices == "auto":
        args.device_list = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        args.device_list = [d.strip() for d in args.devices.split(",") if d.strip()]
    return args


# ----------------------------------------------------------------------------- inputs


def base_scenes(count: int, seed: int, frequency: int = 50) -> list[tuple[WorldSnapshot,
                                                                          RoadGeometry]]:
    """`count` highway scenes (3 or 4 lanes, 15 to 19 vehicles), each stepped 0 to 4 s."""
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(count):
        lanes, vehicles = 3 + i % 2, 15 + i % 5
        init = generate("highway", make_config("highway", {"lanes": lanes,
                                                           "vehicles": vehicles}),
                        seed + i, frequency)
        backend = HighwayBackend(frequency)
        backend.reset(init)
        piece = (Piece(1.0 / frequency, Command(0.0, 0.0)),)
        for _ in range(int(rng.integers(0, 4 * frequency + 1))):
            backend.substep(piece)
        scenes.append((backend.snapshot(), backend.road_geometry()))
    return scenes


def _pad(array: np.ndarray, size: int, axis: int, fill) -> np.ndarray:
    extra = size - array.shape[axis]
    if extra <= 0:
        return array
    shape = list(array.shape)
    shape[axis] = extra
    return np.concatenate([array, np.full(shape, fill, dtype=array.dtype)], axis)


def make_batch(scenes, batch: int, seed: int,
               shared_road: bool) -> tuple[WorldSnapshot, RoadGeometry]:
    """Replicate `scenes` over `batch` worlds, each moved, jittered and padded.

    World `i` is scene `i % len(scenes)` moved along the road so that its ego lies between
    100 m and 1900 m, with its vehicles moved up to 0.3 m sideways and its ego turned up
    to 0.05 rad. Vehicle slots are padded to the largest scene (invalid slots), road rows
    to the largest road (invalid segments); `shared_road` uses one 4-lane road instead.
    """
    rng = np.random.default_rng(seed + 1)
    slots = max(s.shape[1] for s, _ in scenes)
    picks = [scenes[i % len(scenes)] for i in range(batch)]
    fields = {}
    for name in WorldSnapshot.__dataclass_fields__:
        columns = [getattr(s, name) for s, _ in picks]
        if columns[0].ndim >= 2:
            fill = {"valid": False, "vehicle_id": -1}.get(name, 0)
            columns = [_pad(c, slots, 1, fill) for c in columns]
        fields[name] = np.concatenate(columns, 0)
    position = fields["position"].copy()
    shift = rng.uniform(100.0, ROAD_LENGTH_M - 100.0, batch) - position[:, 0, 0]
    position[..., 0] += shift[:, None]
    position[..., 1] += rng.uniform(-0.3, 0.3, position.shape[:2])
    heading = fields["heading"].copy()
    heading[:, 0] += rng.uniform(-0.05, 0.05, batch)
    fields["position"], fields["heading"] = position, heading
    snapshot = WorldSnapshot(**fields)
    snapshot.validate()

    roads = [r for _, r in picks]
    if shared_road:
        road = next(r for _, r in scenes if r.lane_segments.shape[1] == 4) if any(
            r.lane_segments.shape[1] == 4 for _, r in scenes) else scenes[0][1]
        return snapshot, road
    lanes = max(r.lane_segments.shape[1] for r in roads)
    marks = max(r.marking_segments.shape[1] for r in roads)
    road = RoadGeometry(
        lane_segments=np.concatenate([_pad(r.lane_segments, lanes, 1, 0.0) for r in roads]),
        lane_half_width=np.concatenate([_pad(r.lane_half_width, lanes, 1, 0.0) for r in roads]),
        lane_valid=np.concatenate([_pad(r.lane_valid, lanes, 1, False) for r in roads]),
        marking_segments=np.concatenate([_pad(r.marking_segments, marks, 1, 0.0)
                                         for r in roads]),
        marking_valid=np.concatenate([_pad(r.marking_valid, marks, 1, False) for r in roads]))
    return snapshot, road


# ----------------------------------------------------------------------------- timing


def time_call(call: Callable[[], object], sync: Callable[[], None], repeats: int,
              min_seconds: float) -> float:
    """Median seconds per call over at least `repeats` calls (after one warm-up call)."""
    call()
    sync()
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats or (spent < min_seconds and len(times) < 200):
        start = time.perf_counter()
        call()
        sync()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    return float(statistics.median(times))


def entry(seconds: float, batch: int) -> dict:
    return {"ms_per_call": round(seconds * 1e3, 4),
            "env_obs_per_s": round(batch / seconds, 1)}


def load_sensors(path: str | None):
    """`envs.sensors`, or the module in the file `path`."""
    if path is None:
        return default_sensors
    spec = importlib.util.spec_from_file_location("bench_sensors_module", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def bench_device(sensors, device: str, snapshot: WorldSnapshot, road: RoadGeometry,
                 batch: int, config: SensorConfig, args: argparse.Namespace) -> dict:
    """Times of the numpy entry points and the torch cores for one device and batch."""
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def rng():
        return np.random.default_rng(args.seed) if args.noise else None

    def timed(call):
        return entry(time_call(call, sync, args.repeats, args.min_seconds), batch)

    out: dict = {}
    if batch <= args.numpy_max_batch:
        out["render_bev"] = timed(lambda: sensors.render_bev(snapshot, road, config, rng(),
                                                             device))
        out["cast_lidar"] = timed(lambda: sensors.cast_lidar(snapshot, config, rng(), device))
        if dev.type == "cpu":
            raster = np.zeros((batch,) + tuple(config.bev_shape), dtype=np.uint8)
            out["render_bev_out"] = timed(lambda: sensors.render_bev(
                snapshot, road, config, rng(), device, out=raster))
            if hasattr(sensors, "observe"):
                out["observe_out"] = timed(lambda: sensors.observe(
                    snapshot, road, config, rng(), device, out=raster))
            out["ground_truth_objects"] = timed(
                lambda: sensors.ground_truth_objects(snapshot, config))
            if "kernel" in inspect.signature(sensors.ground_truth_objects).parameters:
                out["ground_truth_objects_numpy"] = timed(
                    lambda: sensors.ground_truth_objects(snapshot, config, kernel="numpy"))

    def t(array, dtype=None):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)).to(dev)

    bev_args = (t(snapshot.position), t(snapshot.heading), t(snapshot.length),
                t(snapshot.width), t(snapshot.valid, bool), t(road.lane_segments),
                t(road.lane_half_width), t(road.lane_valid, bool), t(road.marking_segments),
                t(road.marking_valid, bool))
    lidar_args = (t(snapshot.position), t(snapshot.heading), t(snapshot.speed),
                  t(snapshot.length), t(snapshot.width), t(snapshot.valid, bool))
    bev_extra: dict = {}
    lidar_extra: dict = {}
    if args.noise:
        noise, keep = sensors.draw_bev_noise(np.random.default_rng(args.seed), config,
                                             *snapshot.shape)
        bev_extra = dict(position_noise=t(noise), keep=t(keep))
        range_noise, rate_noise, keep = sensors.draw_lidar_noise(
            np.random.default_rng(args.seed), config, batch)
        lidar_extra = dict(range_noise=t(range_noise), rate_noise=t(rate_noise), keep=t(keep))

    def bev_core():
        with torch.inference_mode():
            return sensors.render_bev_torch(*bev_args, config, **bev_extra)

    def lidar_core():
        with torch.inference_mode():
            return sensors.cast_lidar_torch(*lidar_args, config, **lidar_extra)

    bev_s = time_call(bev_core, sync, args.repeats, args.min_seconds)
    lidar_s = time_call(lidar_core, sync, args.repeats, args.min_seconds)
    out["render_bev_torch"] = entry(bev_s, batch)
    out["cast_lidar_torch"] = entry(lidar_s, batch)
    out["bev_plus_lidar"] = entry(bev_s + lidar_s, batch)
    if "out" in inspect.signature(sensors.render_bev_torch).parameters:
        buffer = torch.empty((batch,) + tuple(config.bev_shape), dtype=torch.uint8,
                             device=dev)

        def bev_core_out():
            with torch.inference_mode():
                return sensors.render_bev_torch(*bev_args, config, out=buffer, **bev_extra)

        out_s = time_call(bev_core_out, sync, args.repeats, args.min_seconds)
        out["render_bev_torch_out"] = entry(out_s, batch)
        out["bev_out_plus_lidar"] = entry(out_s + lidar_s, batch)
    if hasattr(sensors, "prepare_road"):
        start = time.perf_counter()
        sensors.prepare_road(road.lane_segments, road.lane_half_width, road.lane_valid,
                             road.marking_segments, road.marking_valid, device=dev)
        sync()
        out["prepare_road_ms"] = round((time.perf_counter() - start) * 1e3, 3)
    return out


def _threading_layer() -> str | None:
    """Numba's threading layer (known once a parallel kernel has run)."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    config = SensorConfig()
    sensors = load_sensors(args.sensors_module)
    log(f"building {args.scenes} highway scenes")
    scenes = base_scenes(args.scenes, args.seed)
    results: dict = {}
    for device in args.device_list:
        results[device] = {}
        for batch in sorted(args.batch_list):
            snapshot, road = make_batch(scenes, batch, args.seed, args.road == "shared")
            log(f"{device} B={batch}")
            results[device][str(batch)] = bench_device(sensors, device, snapshot, road, batch,
                                                       config, args)
            log(json.dumps(results[device][str(batch)]))
    goal = {"batch": GOAL_BATCH, "goal_ms": args.goal_ms}
    cpu_goal = results.get("cpu", {}).get(str(GOAL_BATCH))
    if cpu_goal and "observe_out" in cpu_goal:
        goal["cpu_observe_out_plus_truth_ms"] = round(
            cpu_goal["observe_out"]["ms_per_call"]
            + cpu_goal["ground_truth_objects"]["ms_per_call"], 4)
        goal["met_on_cpu"] = goal["cpu_observe_out_plus_truth_ms"] < args.goal_ms
    if cpu_goal:
        goal["cpu_torch_bev_plus_lidar_ms"] = cpu_goal["bev_plus_lidar"]["ms_per_call"]
    report = {
        "benchmark": "sensors",
        "config": {
            "batches": sorted(args.batch_list), "road": args.road, "scenes": args.scenes,
            "noise": args.noise, "repeats": args.repeats, "seed": args.seed,
            "sensors_module": args.sensors_module or "reflexdrive.envs.sensors",
            "slots": int(max(s.shape[1] for s, _ in scenes)),
            "bev_shape": list(config.bev_shape), "lidar_beams": config.lidar_beams,
            "range_m": config.range_m,
        },
        "machine": {
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads(),
            "numba_threading_layer": _threading_layer(), "cpu_count": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "results": results,
        "goal": goal,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
