#!/usr/bin/env python
"""The latency-aware cnn against cnn-blind under extra latency (issue 18, item 3), as one
JSON object on stdout and a figure.

Runs one `reflexdrive compare` (the Python API, `reflexdrive.compare.experiment.compare`)
of the stacks `cnn` (the latency-aware policy: it reads `obs["timing"]`) and `cnn-blind`
(the same network and data without latency inputs or latency during training) on
lead-brake, cut-in and stopped-vehicle, realtime mode, each stack at its own latency
profiled on this machine at batch size 1 (`latency = "profiled"`, `compare.profiles`)
plus each extra latency (default 0, 100 and 200 ms), `--episodes` episodes per cell on the
same seeds for both stacks (default 200 from 500000: the held-out range,
`reflexdrive/common/seed_ranges.py`). The compare lives in `--out` and resumes: the same
command again runs only the episodes not yet finished, more `--episodes` extend it. The
compare's HTML report (`OUT/report.html`, with its latency cost curve of both stacks) is
written too unless `--no-report`.

The JSON (`latency_aware_result`):

- `cells[hazard][extra_ms][stack]`: `collisions`, `episodes`, `rate` and `ci95` (Wilson
  95 % interval) over every episode of the cell, and the same over its critical episodes
  (`critical`: what the compare report's curves rate);
- `goals[hazard][extra_ms]` for +100 and +200 ms (`GOAL_EXTRAS_S`): the issue's goal
  `aware_rate <= 0.5 * blind_rate` (`half`) and intervals apart (`apart`: the aware upper
  bound below the blind lower bound), both over every episode (`hazard_goal`);
- `met`: every hazard's goal at every goal extra; `issue_conditions` whether the run is
  the one the issue asks for (held-out seeds, profiled latency, >= 200 episodes per cell);
- `own_latency_p50_ms` per stack (its profile), `config`, `figure`, `report`, `wall_s`.

The figure (`--figure`, default docs/latency_aware_cnn.png): one panel per hazard,
collision rate [%] against the extra latency [ms] for both stacks with their Wilson
intervals as bars.

    python scripts/eval_latency_aware.py --out runs/latency-aware      # the issue's run
    python scripts/eval_latency_aware.py --aware runs/imit/cnn-aware/cnn.pt \
        --blind runs/imit/cnn-blind/cnn.pt --seed 4100 --episodes 20 --out runs/la-dev
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pandas as pd  # noqa: E402
from reflexdrive.policies.checkpoint import CheckpointError  # noqa: E402
from reflexdrive.policies.registry import shipped_checkpoint  # noqa: E402

from reflexdrive.cli import _names_list, _scenario_overrides, _seconds_list  # noqa: E402
from reflexdrive.common.files import atomic_write  # noqa: E402
from reflexdrive.common.seed_ranges import DEVELOPMENT, HELD_OUT  # noqa: E402
from reflexdrive.common.validation import ConfigError  # noqa: E402
from reflexdrive.compare.summary import wilson_interval  # noqa: E402

AWARE, BLIND = "cnn", "cnn-blind"
"""The two stacks: the latency-aware cnn and the same network trained blind."""
STACKS = (AWARE, BLIND)
HAZARDS = ("lead-brake", "cut-in", "stopped-vehicle")
EXTRAS_S = (0.0, 0.1, 0.2)
"""Extra latencies [s] run by default."""
GOAL_EXTRAS_S = (0.1, 0.2)
"""Extra latencies [s] at which the goal is judged (issue 18: +100 and +200 ms)."""
GOAL_RATIO = 0.5
"""The aware cnn's collision rate must be at most this share of cnn-blind's."""
ISSUE_EPISODES = 200
"""Episodes per cell the issue asks for."""
FIGURE = "docs/latency_aware_cnn.png"
FIGURE_STYLE = {"font.size": 16, "axes.titlesize": 18, "axes.labelsize": 16,
                "xtick.labelsize": 14, "ytick.labelsize": 14, "legend.fontsize": 15,
                "figure.titlesize": 15, "axes.spines.top": False,
                "axes.spines.right": False}
"""Fonts of the figure [pt]: readable at the PNG's 1:1 size without zooming."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- arithmetic


def extra_key(extra_s: float) -> str:
    """The JSON key of an extra latency: whole milliseconds, "0", "100", "200"."""
    return f"{round(extra_s * 1e3):d}"


def rate_cell(collisions: int, episodes: int) -> dict[str, Any]:
    """`{"collisions", "episodes", "rate", "ci95": [low, high]}` (Wilson 95 %; the rate
    and interval are None for 0 episodes)."""
    collisions, episodes = int(collisions), int(episodes)
    if episodes == 0:
        return {"collisions": collisions, "episodes": 0, "rate": None, "ci95": None}
    low, high = wilson_interval(collisions, episodes)
    return {"collisions": collisions, "episodes": episodes, "rate": collisions / episodes,
            "ci95": [low, high]}


def hazard_goal(aware: Mapping[str, Any], blind: Mapping[str, Any],
                ratio: float = GOAL_RATIO) -> dict[str, Any]:
    """The goal at one hazard and extra latency from two `rate_cell`s: `half`: the aware
    rate is at most `ratio` x the blind rate; `apart`: the aware interval's upper bound
    lies below the blind interval's lower bound; `met`: both. A cell without episodes
    meets nothing."""
    if aware.get("rate") is None or blind.get("rate") is None:
        return {"aware_rate": aware.get("rate"), "blind_rate": blind.get("rate"),
                "half": False, "apart": False, "met": False}
    half = aware["rate"] <= ratio * blind["rate"]
    apart = aware["ci95"][1] < blind["ci95"][0]
    return {"aware_rate": aware["rate"], "blind_rate": blind["rate"],
            "aware_ci95": aware["ci95"], "blind_ci95": blind["ci95"],
            "half": bool(half), "apart": bool(apart), "met": bool(half and apart)}


def cells_from_episodes(episodes: pd.DataFrame, scenarios: Sequence[str],
                        extras_s: Sequence[float], stacks: Sequence[str] = STACKS
                        ) -> dict[str, dict[str, dict[str, Any]]]:
    """`cells[hazard][extra_ms][stack]`: `rate_cell` over every episode of the cell, with
    `critical`: the same over its critical episodes (`episodes.csv` columns `stack`,
    `scenario`, `extra_latency_s`, `collided`, `critical`; realtime rows only)."""
    frame = episodes[episodes["mode"] == "realtime"] if "mode" in episodes else episodes
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario in scenarios:
        for extra in extras_s:
            for stack in stacks:
                rows = frame[(frame["scenario"] == scenario) & (frame["stack"] == stack)
                             & ((frame["extra_latency_s"] - extra).abs() < 1e-9)]
                collided = rows["collided"].astype(bool)
                critical = rows["critical"].astype(bool)
                cell = rate_cell(collided.sum(), len(rows))
                cell["critical"] = rate_cell((collided & critical).sum(), critical.sum())
                cells.setdefault(scenario, {}).setdefault(extra_key(extra), {})[stack] = cell
    return cells


def goals_from_cells(cells: Mapping[str, Mapping[str, Mapping[str, Any]]],
                     goal_extras_s: Sequence[float] = GOAL_EXTRAS_S
                     ) -> tuple[dict[str, dict[str, Any]], bool]:
    """`(goals[hazard][extra_ms], met)`: `hazard_goal` of the aware and blind cells at each
    goal extra; an extra the run lacks is `{"missing": True, "met": False}`. `met`: every
    goal of every hazard met (False without hazards)."""
    goals: dict[str, dict[str, Any]] = {}
    for hazard, by_extra in cells.items():
        for extra in goal_extras_s:
            key = extra_key(extra)
            if key in by_extra and AWARE in by_extra[key] and BLIND in by_extra[key]:
                goal = hazard_goal(by_extra[key][AWARE], by_extra[key][BLIND])
            else:
                goal = {"missing": True, "met": False}
            goals.setdefault(hazard, {})[key] = goal
    met = bool(goals) and all(goal["met"] for by_extra in goals.values()
                              for goal in by_extra.values())
    return goals, met


# ----------------------------------------------------------------------------- figure


def figure_png(cells: Mapping[str, Mapping[str, Mapping[str, Any]]],
               subtitle: str = "") -> bytes:
    """The figure as PNG bytes: a panel per hazard, collision rate [%] against the extra
    latency [ms], a line per stack with its Wilson 95 % interval as bars."""
    from reflexdrive.report.plots import plt, png_bytes, stack_colors  # Agg backend

    colors = stack_colors(STACKS)
    labels = {AWARE: "cnn (latency-aware)", BLIND: "cnn-blind"}
    hazards = list(cells)
    with plt.rc_context(FIGURE_STYLE):
        figure, axes = plt.subplots(1, len(hazards), figsize=(5.2 * len(hazards), 5.6),
                                    squeeze=False, sharey=True)
        for axis, hazard in zip(axes[0], hazards):
            extras = sorted(cells[hazard], key=int)
            span = max((int(e) for e in extras), default=0) or 100
            for offset, stack in zip((-0.025, 0.025), STACKS):   # side by side
                points = [(int(e), cells[hazard][e][stack]) for e in extras
                          if stack in cells[hazard][e] and
                          cells[hazard][e][stack]["rate"] is not None]
                if not points:
                    continue
                x = [e + offset * span for e, _ in points]
                y = [100 * c["rate"] for _, c in points]
                low = [100 * (c["rate"] - c["ci95"][0]) for _, c in points]
                high = [100 * (c["ci95"][1] - c["rate"]) for _, c in points]
                axis.errorbar(x, y, yerr=[low, high], color=colors[stack], marker="o",
                              ms=8, lw=2.5, capsize=6, elinewidth=2, label=labels[stack])
            axis.set_title(hazard)
            axis.set_xlabel("extra latency [ms]")
            axis.set_xticks([int(e) for e in extras])
            axis.grid(alpha=0.3)
        top = max(axes[0][0].get_ylim()[1], 1.0)      # shared: a 0 % point fully visible
        axes[0][0].set_ylim(-0.03 * top, top)
        axes[0][0].set_ylabel("collisions [% of episodes]")
        handles, names = axes[0][0].get_legend_handles_labels()
        figure.legend(handles, names, loc="upper center", ncol=2, frameon=False,
                      bbox_to_anchor=(0.5, 1.0))
        if subtitle:
            figure.text(0.5, -0.01, subtitle, ha="center", va="top")
        figure.tight_layout(rect=(0, 0, 1, 0.9))
        return png_bytes(figure, dpi=100)


# ----------------------------------------------------------------------------- run


def seed_range(first: int, episodes: int) -> str:
    """"held_out" or "development": the range holding seeds `[first, first + episodes)`
    (ConfigError naming `--seed` otherwise: training seeds are never evaluated on)."""
    last = first + episodes - 1
    for allowed in (HELD_OUT, DEVELOPMENT):
        if allowed.holds(first, last):
            return allowed.name
    raise ConfigError("--seed", [first, last],
                      f"evaluation seeds lie in held_out [{HELD_OUT.start:,}, "
                      f"{HELD_OUT.stop:,}) (the goal's figures) or development "
                      f"[{DEVELOPMENT.start:,}, {DEVELOPMENT.stop:,}) (trials)")


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--aware", default=str(shipped_checkpoint(AWARE)),
                        help="checkpoint of the latency-aware cnn (stack cnn)")
    parser.add_argument("--blind", default=str(shipped_checkpoint(BLIND)),
                        help="checkpoint of cnn-blind")
    parser.add_argument("--scenarios", default=",".join(HAZARDS),
                        help="hazard scenarios, comma-separated")
    parser.add_argument("--extra-latency", default=",".join(f"{e:g}" for e in EXTRAS_S),
                        help="extra latencies [s] on top of each stack's own, comma-separated")
    parser.add_argument("--episodes", type=int, default=ISSUE_EPISODES,
                        help="episodes per hazard x extra x stack")
    parser.add_argument("--seed", type=int, default=HELD_OUT.start,
                        help="first scenario seed (held-out range for the goal, development "
                             "for trials)")
    parser.add_argument("--latency", default="profiled",
                        help="each stack's own latency before the extra: profiled (the "
                             "issue's: timed here at batch size 1, then replayed), or a "
                             "fixed:SECONDS / profile:PATH spec (quick trials and tests)")
    parser.add_argument("--envs", type=int, default=None,
                        help="envs side by side per cell (default: the compare's, 64 with "
                             "profiled latency)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, auto")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="scenario config override in every scenario (tests: short "
                             "episodes)")
    parser.add_argument("--out", default="runs/latency-aware",
                        help="the compare's folder (resumable)")
    parser.add_argument("--figure", default=FIGURE, help="where the PNG figure goes")
    parser.add_argument("--no-report", action="store_true",
                        help="skip the compare's HTML report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def latency_aware_result(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) the compare and return the JSON object (see the module doc)."""
    from reflexdrive.compare.config import CompareConfig
    from reflexdrive.compare.experiment import compare

    start = time.perf_counter()
    if isinstance(args.episodes, bool) or args.episodes < 1:
        raise ConfigError("--episodes", args.episodes, "must be an integer >= 1")
    section = seed_range(args.seed, args.episodes)
    scenarios = tuple(_names_list("--scenarios", args.scenarios))
    extras = tuple(_seconds_list("--extra-latency", args.extra_latency))
    checkpoints = {AWARE: args.aware, BLIND: args.blind}
    for stack, path in checkpoints.items():
        if not Path(path).is_file():
            flag = "--aware" if stack == AWARE else "--blind"
            raise ConfigError(flag, str(path), f"no such file (the {stack} checkpoint)")
    config = CompareConfig(stacks=STACKS, scenarios=scenarios, episodes=args.episodes,
                           seed=args.seed, modes=("realtime",), latency=args.latency,
                           extra_latency_s=extras, checkpoints=checkpoints, envs=args.envs,
                           device=args.device, scenario_config=_scenario_overrides(args.set),
                           out=args.out)
    result = compare(config, progress=not args.no_progress)
    cells = cells_from_episodes(result.episodes, config.scenarios, config.extra_latency_s)
    goals, met = goals_from_cells(cells)
    summary = result.summary
    own = {stack: round(1e3 * float(summary.loc[summary["stack"] == stack,
                                                "stack_latency_p50_s"].median()), 3)
           for stack in STACKS}
    report = None
    if not args.no_report:
        from reflexdrive.report.document import write_report

        report = str(write_report(result.out, title="cnn (latency-aware) vs cnn-blind").html)
    first, last = args.seed, args.seed + args.episodes - 1
    own_latency = "own profiled latency" if args.latency == "profiled" else args.latency
    subtitle = (f"{args.episodes} {section.replace('_', '-')} episodes per point (seeds "
                f"{first}-{last}), realtime, {own_latency} + extra; "
                "bars: Wilson 95 % intervals")
    figure = Path(args.figure)
    figure.parent.mkdir(parents=True, exist_ok=True)
    png = figure_png(cells, subtitle)
    atomic_write(figure, lambda stream: stream.write(png), mode="wb")
    return {
        "cells": cells, "goals": goals, "met": met,
        "goal": f"at +{', +'.join(extra_key(e) for e in GOAL_EXTRAS_S)} ms on every hazard: "
                f"aware_rate <= {GOAL_RATIO:g} * blind_rate and aware ci95 high < blind "
                "ci95 low (rates over every episode)",
        "issue_conditions": {"held_out_seeds": section == HELD_OUT.name,
                             "profiled_latency": args.latency == "profiled",
                             f"episodes_per_cell>={ISSUE_EPISODES}":
                                 args.episodes >= ISSUE_EPISODES},
        "own_latency_p50_ms": own,
        "config": {"stacks": list(STACKS), "scenarios": list(config.scenarios),
                   "extra_latency_s": list(config.extra_latency_s),
                   "episodes": args.episodes, "seeds": [first, last],
                   "seed_range": section, "mode": "realtime", "latency": args.latency,
                   "device": args.device, "scenario_config": dict(config.scenario_config),
                   "checkpoints": {stack: {"path": str(Path(path).resolve()),
                                           "sha256": sha256(path)}
                                   for stack, path in checkpoints.items()}},
        "out": str(result.out), "figure": str(figure), "report": report,
        "ran_episodes": result.ran, "wall_s": round(time.perf_counter() - start, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = latency_aware_result(args)
    except (ConfigError, CheckpointError) as error:
        print(f"eval_latency_aware: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
