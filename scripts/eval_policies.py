#!/usr/bin/env python
"""What the end-to-end policies must show (issues 6 and 18), measured, as one JSON object on
stdout.

Closed-loop figures come in two sections with disjoint seeds (`common.seed_ranges`):
`development` (seeds from `--dev-seed`, inside `DEVELOPMENT`: what tuning and checkpoint
selection may look at) and `held_out` (seeds from `--held-out-seed`, inside `HELD_OUT`:
read by no training, tuning or checkpoint selection; the README quotes only these). Each
section has, per policy and for the staged stack (oracle perception) as the reference:

- `highway`: `--episodes` seeded Highway episodes in lockstep at zero latency: collision
  and off-road rates with Wilson 95 % intervals, speeds, mean progress [m];
  `progress_ratio` = the policy's mean progress over the staged stack's on the same seeds;
- `hazards`: lead-brake, cut-in and stopped-vehicle, `--hazard-episodes` seeds each:
  collision rate with its Wilson interval, reaction time, min TTC, critical episodes;
- `routes`: merge, roundabout and intersection, `--route-episodes` seeds each (0 skips
  them): collision and off-road rates, and the route's exit reached, progress >= 90 % of
  the time limit's reach and either ("through"), each with its Wilson 95 % interval
  (`run.evaluation.route_summary`).

Besides: `latency_p50_ms`, the batch-1 latency p50 of each policy on this machine
(`reflexdrive profile`'s measurement: Highway, warm-up dropped, 1 torch thread);
`throughput_obs_per_s`, forward passes of `EndToEndAgent.act` at batch 1, 64 and 1024 on
the CPU (`--threads`), and on CUDA with and without CUDA graphs when a GPU is there; and
`goals`: each of issue 18's goals on the held-out section with its value and whether it
is met.

`--policies` takes the end-to-end stacks (`policies.registry.POLICY_STACKS`: cnn, gru,
lstm, transformer, cnn-blind). They load the shipped checkpoints
(`policies/checkpoints/<stack>.pt`) unless `--checkpoint-dir DIR` names a directory of
`<stack>.pt` files. Progress goes to stderr.

    python scripts/eval_policies.py                              # the full evaluation
    python scripts/eval_policies.py --policies cnn --sections held_out --episodes 10 \
        --hazard-episodes 5 --route-episodes 0
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
from reflexdrive.policies.registry import POLICY_STACKS, shipped_checkpoint  # noqa: E402

from reflexdrive.common.seed_ranges import (  # noqa: E402
    DEVELOPMENT,
    HELD_OUT,
    require_evaluation_seeds,
)
from reflexdrive.common.validation import ConfigError  # noqa: E402
from reflexdrive.run import evaluation  # noqa: E402
from reflexdrive.run.profile import ProfileConfig, profile_stack  # noqa: E402

HAZARDS = ("lead-brake", "cut-in", "stopped-vehicle")
ROUTES = ("merge", "roundabout", "intersection")
SECTIONS = ("development", "held_out")
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
    for key, entry in agent.policy.obs_spec.items():   # route, timing: where the policy reads
        if key not in obs:
            obs[key] = rng.normal(size=(batch, *entry["shape"])).astype(np.float32)
    for _ in range(3):                                 # warm-up (and graph capture)
        agent.act(obs, {})
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        agent.act(obs, {})
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def closed_loop(section: str, first: int, policies: list[str], paths: dict[str, str],
                args: argparse.Namespace) -> dict:
    """One section's Highway, hazard and route figures, seeds from `first`."""
    out: dict = {"first_seed": first, "highway": {}, "hazards": {}, "routes": {}}
    stacks = [("staged", {"perception": "oracle"})] + [
        (name, {"checkpoint": paths[name]}) for name in policies]
    for stack, options in stacks:
        log(f"{section}: highway, {stack}, {args.episodes} episodes ...")
        frame, seconds = evaluation.timed(evaluation.episodes, "highway", stack,
                                          args.episodes, first, args.envs, **options)
        out["highway"][stack] = {**evaluation.highway_summary(frame),
                                 "seconds": round(seconds, 1)}
        for scenario in HAZARDS:
            log(f"{section}: {scenario}, {stack}, {args.hazard_episodes} episodes ...")
            frame = evaluation.episodes(scenario, stack, args.hazard_episodes, first,
                                        args.envs, **options)
            out["hazards"].setdefault(scenario, {})[stack] = evaluation.hazard_summary(frame)
        for scenario in ROUTES if args.route_episodes else ():
            log(f"{section}: {scenario}, {stack}, {args.route_episodes} episodes ...")
            frame = evaluation.episodes(scenario, stack, args.route_episodes, first,
                                        args.envs, **options)
            out["routes"].setdefault(scenario, {})[stack] = evaluation.route_summary(frame)
    staged = out["highway"]["staged"]["mean_progress_m"]
    for name in policies:
        highway = out["highway"][name]
        highway["progress_ratio"] = highway["mean_progress_m"] / staged
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--policies", default="cnn,gru,transformer",
                        help="end-to-end stacks to evaluate, comma-separated: "
                             + ", ".join(POLICY_STACKS))
    parser.add_argument("--checkpoint-dir", default=None,
                        help="directory of <policy>.pt files (default: the shipped ones)")
    parser.add_argument("--sections", default="development,held_out",
                        help="closed-loop sections, comma-separated: development, held_out")
    parser.add_argument("--episodes", type=int, default=200, help="Highway episodes")
    parser.add_argument("--hazard-episodes", type=int, default=200, help="seeds per hazard")
    parser.add_argument("--route-episodes", type=int, default=100,
                        help="seeds per route scenario (merge, roundabout, intersection; 0: "
                             "skip them)")
    parser.add_argument("--dev-seed", type=int, default=DEVELOPMENT.start,
                        help=f"first development seed (in [{DEVELOPMENT.start}, "
                             f"{DEVELOPMENT.stop}))")
    parser.add_argument("--held-out-seed", type=int, default=HELD_OUT.start,
                        help=f"first held-out seed (in [{HELD_OUT.start}, {HELD_OUT.stop}))")
    parser.add_argument("--envs", type=int, default=25, help="envs side by side")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for the latency and throughput measurements")
    parser.add_argument("--skip-closed-loop", action="store_true",
                        help="only latency and throughput")
    parser.add_argument("--skip-protocols", action="store_true",
                        help="skip the ncap-ccr and r157 grids (shipped policies only)")
    args = parser.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    for name in policies:
        if name not in POLICY_STACKS:
            parser.error(f"--policies: {name!r} is not one of {', '.join(POLICY_STACKS)}")
    sections = [s for s in args.sections.split(",") if s]
    for section in sections:
        if section not in SECTIONS:
            parser.error(f"--sections: {section!r} is not one of {', '.join(SECTIONS)}")
    paths = {name: checkpoint_path(name, args.checkpoint_dir) for name in policies}
    for name, path in paths.items():
        if not Path(path).exists():
            parser.error(f"no checkpoint for {name}: {path} does not exist")

    result: dict = {"checkpoints": paths, "seed_ranges": {
        r.name: r.as_list() for r in (DEVELOPMENT, HELD_OUT)},
        "latency_p50_ms": {}, "throughput_obs_per_s": {}}
    if not args.skip_closed_loop:
        firsts = {"development": args.dev_seed, "held_out": args.held_out_seed}
        count = max(args.episodes, args.hazard_episodes, args.route_episodes)
        for section in sections:                       # every range checked before any run
            try:
                require_evaluation_seeds(firsts[section], firsts[section] + count - 1,
                                         "--dev-seed" if section == "development"
                                         else "--held-out-seed", held_out=section == "held_out")
            except ConfigError as error:
                parser.error(str(error))
        for section in sections:
            result[section] = closed_loop(section, firsts[section], policies, paths, args)
    if not args.skip_protocols and args.checkpoint_dir is None:
        result["protocols"] = {}
        for suite in ("ncap-ccr", "r157"):
            for name in policies:
                log(f"protocol {suite}: {name} and the reference driver, whole grid ...")
                result["protocols"].setdefault(suite, {})[name] = (
                    evaluation.protocol_summary(suite, name))

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
                        "route_episodes": args.route_episodes, "sections": sections,
                        "dev_seed": args.dev_seed, "held_out_seed": args.held_out_seed,
                        "threads": args.threads, "mode": "lockstep", "latency": "fixed:0"}
    result["goals"] = goals(result, policies)
    print(json.dumps(result, indent=2, default=float))
    return 0


def goals(result: dict, policies: list[str]) -> dict:
    """Issue 18's closed-loop goals on the held-out section (absent without it) and on the
    protocol grids, each as `[value, met]`: a rate's value is `[rate, ci95 low, ci95
    high]`, met on the point estimate (the interval says how sure)."""
    out: dict = {}
    section = result.get("held_out")
    for name in policies:
        if section:
            highway = section["highway"][name]
            out[f"{name}_highway_failure_rate<=0.01"] = [
                [highway["failure_rate"], *highway["failure_rate_ci95"]],
                highway["failure_rate"] <= 0.01]
            out[f"{name}_highway_progress_ratio>=0.95"] = [
                highway["progress_ratio"], highway["progress_ratio"] >= 0.95]
            for scenario, stacks in section["hazards"].items():
                value = stacks[name]
                out[f"{name}_{scenario}_failure_rate<=0.02"] = [
                    [value["failure_rate"], *value["failure_rate_ci95"]],
                    value["failure_rate"] <= 0.02]
            for scenario, stacks in section["routes"].items():
                value = stacks[name]
                failed = max(value["collisions_pct"], value["offroad_pct"])
                out[f"{name}_{scenario}_collisions_and_offroad_pct<=5"] = [
                    [value["collisions_pct"], value["offroad_pct"]], failed <= 5.0]
                out[f"{name}_{scenario}_through_pct>=90"] = [
                    [value["through_pct"], *value["through_pct_ci95"]],
                    value["through_pct"] >= 90.0]
        for suite, stacks in result.get("protocols", {}).items():
            worse = stacks[name]["collides_where_reference_avoids"]
            out[f"{name}_{suite}_no_collision_where_reference_avoids"] = [worse, not worse]
    return out


if __name__ == "__main__":
    sys.exit(main())
