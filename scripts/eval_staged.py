#!/usr/bin/env python
"""What the staged stack must show (issue 5), measured, as one JSON object on stdout.

- `highway`: per perception (oracle, lidar, learned), `--episodes` seeded Highway episodes
  in lockstep at zero latency: collision rate, off-road rate, the ego's mean speed against
  the traffic's (`speed_ratio`), lane changes are part of the stack;
- `hazards`: per perception, lead-brake, cut-in and stopped-vehicle at zero latency,
  `--hazard-episodes` seeds each from `--hazard-seed` (a range no tuning touched):
  collisions, the counterfactual reaction time and the brake onset (medians with bootstrap
  95 % intervals over the critical episodes), critical episode counts, min TTC;
- `protocols`: per suite (ncap-ccr, r157) the grid for the staged stack (oracle, zero
  latency) and the UN R157 reference driver (`run.evaluation.protocol_summary`; R157's
  points on curves only with `--protocol-curves`): collisions of each, and the grid points
  where the staged stack collides but the reference driver does not;
- `detector`: the learned detector's precision / recall for vehicles within 40 m at
  default sensor noise on held-out seeds (not used in training);
- `latency_p50_ms`: per-stage p50 latency at batch size 1 on this machine, per perception
  (`reflexdrive profile`'s measurement);
- `goals`: each goal of the issue with its measured value and whether it is met;
- with `--scenarios merge,roundabout,intersection` (issue 17) only those, per scenario
  (`run.evaluation.route_summary`, each share with its Wilson 95 % interval): collisions %,
  off-road %, and of the clean episodes the route's exit reached % (`exit_reached_pct`:
  the ego entered its route's exit road, from its lane on the env), progress >= 90 % of
  the time limit's reach % (`progress_reach_pct`) and either (`through_pct`), `n` and the
  seed range, `--episodes` seeds from `--seed`, oracle perception, and the goals
  (collisions <= 2 %, off-road 0 %, through >= 95 %); `--envs` episodes run side by side
  on the batched backend (the scenarios' default: one process, so a larger batch is
  faster).
- the hazards on curves and at crossings (`stopped-vehicle-curve`,
  `intersection-cross-traffic`) in `--scenarios`: the staged stack (oracle) and the
  reference driver on the same `--episodes` seeds, each with the hazard summary of the
  straight hazards (`run.evaluation.hazard_summary`: collisions, critical episodes,
  counterfactual reaction p50 with its interval) and off-road %, the seeds where the
  staged stack collides and the reference driver does not, and the goals that apply:
  the straight hazards' (no collision), issue 17's (no off-road), and R157's rule (no
  collision where the reference driver avoids one). The route's exit does not apply: a
  hazard episode is shorter than the route. Like every scenario here they run on
  `backend="auto"`: the batched backend (`NetworkBackend`), which gives the same episodes
  as the highway backend (docs/backends.md).

Progress goes to stderr. Usage:

    python scripts/eval_staged.py                      # the full evaluation (~10 min, 2 cores)
    python scripts/eval_staged.py --episodes 10 --hazard-episodes 5 --skip-detector
    python scripts/eval_staged.py --scenarios merge,roundabout,intersection --episodes 100 \
        --seed 95000 --envs 100                         # issue 17, held-out seeds
    python scripts/eval_staged.py --scenarios stopped-vehicle-curve,intersection-cross-traffic \
        --episodes 100 --seed 95000 --envs 2            # issue 17's hazards, held-out seeds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from reflexdrive.agents.registry import PERCEPTIONS  # noqa: E402

from reflexdrive.run import evaluation  # noqa: E402
from reflexdrive.run.evaluation import timed  # noqa: E402
from reflexdrive.run.profile import ProfileConfig, profile_stack  # noqa: E402

HAZARDS = ("lead-brake", "cut-in", "stopped-vehicle")
HELD_OUT_SEED = 100_000
"""First seed of the detector's held-out evaluation (training uses seeds >= 1,000,000)."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def highway(perception: str, episodes: int, seed: int, envs: int) -> dict:
    frame, seconds = timed(evaluation.episodes, "highway", "staged", episodes, seed, envs,
                           perception=perception)
    return {**evaluation.highway_summary(frame), "seconds": round(seconds, 1)}


def hazard(scenario: str, perception: str, episodes: int, seed: int, envs: int) -> dict:
    frame = evaluation.episodes(scenario, "staged", episodes, seed, envs,
                                perception=perception)
    return evaluation.hazard_summary(frame, seed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--episodes", type=int, default=50, help="Highway episodes")
    parser.add_argument("--hazard-episodes", type=int, default=40, help="seeds per hazard")
    parser.add_argument("--hazard-seed", type=int, default=90_000,
                        help="first hazard scenario seed (tuning used seeds 1000-1999)")
    parser.add_argument("--seed", type=int, default=0, help="first scenario seed")
    parser.add_argument("--envs", type=int, default=25, help="envs side by side")
    parser.add_argument("--detector-seeds", type=int, default=20,
                        help="held-out episodes for the detector's precision / recall")
    parser.add_argument("--perceptions", default=",".join(PERCEPTIONS),
                        help="perceptions to evaluate on Highway and profile")
    parser.add_argument("--skip-detector", action="store_true",
                        help="skip the detector's precision / recall")
    parser.add_argument("--skip-protocols", action="store_true",
                        help="skip the ncap-ccr and r157 protocol grids")
    parser.add_argument("--protocol-curves", action="store_true",
                        help="also R157's 48 stationary-obstacle points on curves (highway-env "
                             "worlds, about 40 s per point and stack)")
    parser.add_argument("--scenarios", default="",
                        help="comma-separated curved scenarios (merge, roundabout, "
                             "intersection, stopped-vehicle-curve, "
                             "intersection-cross-traffic): evaluate only these, oracle "
                             "perception")
    args = parser.parse_args()
    if args.scenarios:
        from reflexdrive.common.validation import ConfigError

        try:
            result = curved_scenarios(args)
        except ConfigError as error:
            log(f"error: {error}")
            return 2
        print(json.dumps(result, indent=2, default=float))
        return 0
    perceptions = [p for p in args.perceptions.split(",") if p]

    result: dict = {"highway": {}, "hazards": {}, "latency_p50_ms": {}}
    for perception in perceptions:
        log(f"highway, {perception} perception, {args.episodes} episodes ...")
        result["highway"][perception] = highway(perception, args.episodes, args.seed,
                                                args.envs)
    for perception in perceptions:
        result["hazards"][perception] = {}
        for scenario in HAZARDS:
            log(f"{scenario}, {perception} perception, {args.hazard_episodes} episodes ...")
            result["hazards"][perception][scenario] = hazard(
                scenario, perception, args.hazard_episodes, args.hazard_seed, args.envs)
    if not args.skip_protocols:
        result["protocols"] = {}
        for suite in ("ncap-ccr", "r157"):
            log(f"protocol {suite}: staged and reference-driver ...")
            result["protocols"][suite] = evaluation.protocol_summary(
                suite, "staged", curves=args.protocol_curves)
    if not args.skip_detector and "learned" in PERCEPTIONS:
        from reflexdrive.train.detector import evaluate_detector

        log(f"detector precision / recall on {args.detector_seeds} held-out seeds ...")
        seeds = list(range(HELD_OUT_SEED, HELD_OUT_SEED + args.detector_seeds))
        result["detector"] = evaluate_detector(None, seeds)
    import torch

    torch.set_num_threads(1)           # as `reflexdrive profile` (its --threads default)
    for perception in perceptions:
        log(f"profile at batch size 1, {perception} perception ...")
        profile = profile_stack(ProfileConfig(agent_options=(("perception", perception),),
                                              episodes=1), progress=False)
        result["latency_p50_ms"][perception] = {
            stage: round(value * 1e3, 4) for stage, value in profile.percentiles(50).items()}
    result["goals"] = goals(result)
    print(json.dumps(result, indent=2, default=float))
    return 0


CURVED_SCENARIOS = ("merge", "roundabout", "intersection")
CURVED_HAZARDS = ("stopped-vehicle-curve", "intersection-cross-traffic")
REFERENCE = "reference-driver"


def curved_scenarios(args: argparse.Namespace) -> dict:
    """Issue 17's goals per curved scenario (lockstep, zero latency, oracle perception)."""
    from reflexdrive.common.validation import ConfigError

    names = [name for name in args.scenarios.split(",") if name]
    for name in names:
        if name not in CURVED_SCENARIOS + CURVED_HAZARDS:
            raise ConfigError("scenarios", name, "allowed values are "
                              + ", ".join(CURVED_SCENARIOS + CURVED_HAZARDS))
    result: dict = {}
    for name in names:
        if name in CURVED_HAZARDS:
            result[name] = hazard_on_curve(name, args)
            continue
        log(f"{name}: staged, oracle perception, {args.episodes} episodes from {args.seed} ...")
        frame, seconds = timed(evaluation.episodes, name, "staged", args.episodes, args.seed,
                               args.envs, perception="oracle")
        summary = evaluation.route_summary(frame)
        summary["seconds"] = round(seconds, 1)
        summary["goals"] = {
            "collisions_pct<=2": summary["collisions_pct"] <= 2.0,
            "offroad_pct==0": summary["offroad_pct"] == 0.0,
            "through_pct>=95": summary["through_pct"] >= 95.0}
        result[name] = summary
    return result


def hazard_on_curve(name: str, args: argparse.Namespace) -> dict:
    """A hazard on a curve or at a crossing (lockstep, zero latency): the staged stack
    (oracle perception) and the reference driver on the same seeds, and the goals."""
    frames, result = {}, {}
    for stack in ("staged", REFERENCE):
        log(f"{name}: {stack}, {args.episodes} episodes from {args.seed} ...")
        options = {"perception": "oracle"} if stack == "staged" else {}
        frame, seconds = timed(evaluation.episodes, name, stack, args.episodes, args.seed,
                               args.envs, **options)
        frames[stack] = frame
        result[stack] = {**hazard_stack_summary(frame, args.seed),
                         "seconds": round(seconds, 1)}
    result.update(hazard_goals(frames["staged"], frames[REFERENCE]))
    return result


def hazard_stack_summary(frame, seed: int) -> dict:
    """`run.evaluation.hazard_summary` with the off-road share [%] and the seed range."""
    seeds = frame["seed"].astype(int)
    return {**evaluation.hazard_summary(frame, seed),
            "offroad_pct": 100.0 * evaluation.rate(frame["offroad"]),
            "seeds": [int(seeds.min()), int(seeds.max())]}


def hazard_goals(staged, reference) -> dict:
    """The seeds where the staged stack collides and the reference driver does not, and
    the goals: no collision, no off-road, none where the reference avoids one."""
    collided = staged.set_index("seed")["collided"].astype(bool)
    avoided = ~reference.set_index("seed")["collided"].astype(bool)
    worse = sorted(int(s) for s in collided.index[collided & avoided.reindex(
        collided.index, fill_value=False)])
    return {"staged_collides_where_reference_avoids": worse,
            "goals": {"collisions==0": int(collided.sum()) == 0,
                      "offroad_pct==0": not staged["offroad"].astype(bool).any(),
                      "no_collision_where_reference_avoids": not worse}}


def goals(result: dict) -> dict:
    """Each goal of the issue: measured value, threshold and whether it is met."""
    out = {}
    oracle = result["highway"].get("oracle")
    if oracle:
        out["oracle_highway_collision_rate<=0.02"] = [oracle["collision_rate"],
                                                      oracle["collision_rate"] <= 0.02]
        out["oracle_highway_speed_ratio>=0.9"] = [oracle["speed_ratio"],
                                                  oracle["speed_ratio"] >= 0.9]
        out["oracle_highway_offroad_rate==0"] = [oracle["offroad_rate"],
                                                 oracle["offroad_rate"] == 0]
    for perception, scenarios in result["hazards"].items():
        # the goals bind oracle perception; lidar and learned are reported the same way
        for scenario, values in scenarios.items():
            out[f"{perception}_{scenario}_collisions==0"] = [values["collisions"],
                                                             values["collisions"] == 0]
        lead = scenarios.get("lead-brake")
        if lead:
            p50 = lead["reaction_time_p50_s"]
            out[f"{perception}_lead-brake_reaction_p50<=0.2s"] = [
                p50, p50 is not None and p50 <= 0.2 + 1e-9]
    for suite, values in result.get("protocols", {}).items():
        worse = values["collides_where_reference_avoids"]
        out[f"{suite}_no_collision_where_reference_avoids"] = [len(worse), not worse]
    detector = result.get("detector")
    if detector:
        for key in ("precision", "recall"):
            out[f"detector_{key}>=0.95"] = [detector[key], detector[key] >= 0.95]
    learned = result["highway"].get("learned")
    if learned:
        out["learned_highway_collision_rate<=0.05"] = [learned["collision_rate"],
                                                       learned["collision_rate"] <= 0.05]
    return out


if __name__ == "__main__":
    sys.exit(main())
