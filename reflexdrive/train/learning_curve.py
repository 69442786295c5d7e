"""Learning curve of a PPO run: the collision rate of its policy snapshots against env steps.

    from reflexdrive.train.learning_curve import CurveConfig, learning_curve
    document, frame = learning_curve(CurveConfig(run_dir="runs/ppo-cnn", out_dir="runs/curve",
                                                 latency="profile:p.json+0.1"))

Each snapshot of the run (`OUT/snapshots/<policy>-<timesteps>.pt`, `train.ppo_snapshots`)
drives `episodes` seeded episodes of each scenario the way `agents.end_to_end.EndToEndAgent`
drives a checkpoint, i.e. the PPO policy's deterministic action, through
`run.evaluation.episodes` (the runner; straight-road scenarios on the batched backend,
`envs` worlds side by side), in `mode` (realtime: the world moves on while the policy
computes) at `latency` (default: the run's own training latency from its `ppo_run.json`).
Episode `i` uses development seed `seed + i` (default 300,000 up: inside
`common.seed_ranges.DEVELOPMENT`, away from the seeds tests and tuning use; held-out and
training seeds are refused), the same seeds for every snapshot, so the snapshots compare
episode by episode. Hazard-removed twins are not run (only collisions are counted).

Per snapshot and scenario: the collision rate with its Wilson 95 % interval, and beside it
what a policy could trade collisions for: off-road episodes, failures (collision or
off-road, with their interval), mean progress [m] and mean speed [m/s]; `pooled` sums the
scenarios. Results are cached per snapshot in
`out_dir/snapshots/<snapshot>.json` after each scenario, keyed by the snapshot's weight
checksum and the evaluation settings: a rerun evaluates only what is new (a snapshot
rewritten by a resumed run is evaluated again; snapshots with the same weights, e.g.
during the critic-only warm-up, are evaluated once).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from reflexdrive.common.files import atomic_write
from reflexdrive.common.seed_ranges import require_evaluation_seeds
from reflexdrive.common.validation import (
    ConfigError,
    check_choice,
    choice,
    count,
    validate_fields,
)
from reflexdrive.envs.gym.vector import batched_scenarios
from reflexdrive.envs.latency import parse_latency
from reflexdrive.policies.checkpoint import CheckpointError, checksum, load_checkpoint
from reflexdrive.run import evaluation
from reflexdrive.run.results import prepare_out_dir, write_csv, write_json
from reflexdrive.train.ppo_snapshots import snapshots

CURVE_SCENARIOS = ("lead-brake", "cut-in", "stopped-vehicle")
"""Default scenarios: the three straight-road hazards."""

FIRST_SEED = 300_000
"""Default first development seed of the curve's episodes."""

POOLED = "pooled"
"""The `scenario` of the rows that sum all scenarios."""

CACHE_DIR = "snapshots"
RUN_FILE = "ppo_run.json"

COUNTS = ("collisions", "offroad", "failures", "episodes", "progress_m_sum", "speed_mps_sum")
"""What an evaluation counts per snapshot and scenario (`counts`): collisions, off-road
episodes, failures (collision or off-road), episodes, and the sums of the episodes'
progress along the road [m] and mean speed [m/s] (a policy that avoids collisions by
crawling or by leaving the road shows there)."""

COLUMNS = ("timesteps", "snapshot", "scenario", "episodes", "collisions", "collision_rate",
           "collision_ci95_low", "collision_ci95_high", "offroad", "offroad_rate",
           "failures", "failure_rate", "failure_ci95_low", "failure_ci95_high",
           "mean_progress_m", "mean_speed_mps")
"""Columns of the curve's table (`curve_table`, the CSV)."""

CACHE_VERSION = 2
"""Part of the cache key: bump when `COUNTS` changes."""


@dataclass(frozen=True)
class CurveConfig:
    """One learning-curve evaluation (validated on construction: a `ConfigError` names the
    field and the allowed values).

    Attributes:
        run_dir: the PPO run folder (`ppo_run.json`, `snapshots/`).
        out_dir: where the per-snapshot cache goes (`out_dir/snapshots/`).
        scenarios: straight-road scenarios (`batched_scenarios()`).
        episodes: episodes per snapshot and scenario.
        seed: first scenario seed; `[seed, seed + episodes)` must lie in DEVELOPMENT.
        latency: the clock's latency spec (`fixed:S`, `profile:PATH`, each optionally
            `+S` or `+LOW..HIGH`); None: the run's own (`ppo_run.json`). Must be
            reproducible (not `measured`).
        mode: "realtime" or "lockstep".
        envs: worlds simulated side by side.
        device: torch device of the batched backend and the policy.
        stride: evaluate every `stride`-th snapshot (the first, ..., and always the last).
        scenario_config: overrides of the scenarios' config fields (tests: short episodes).
    """

    run_dir: str
    out_dir: str
    scenarios: tuple[str, ...] = CURVE_SCENARIOS
    episodes: int = count(100, help="episodes per snapshot and scenario")
    seed: int = count(FIRST_SEED, low=0, help="first development seed")
    latency: str | None = None
    mode: str = choice("realtime", choices=("realtime", "lockstep"), help="the clock's mode")
    envs: int = count(100, help="worlds side by side")
    device: str = choice("cpu", choices=("cpu", "cuda", "auto"), help="torch device")
    stride: int = count(1, help="evaluate every stride-th snapshot and the last")
    scenario_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_fields(self)
        scenarios = (self.scenarios,) if isinstance(self.scenarios, str) else self.scenarios
        if not isinstance(scenarios, (tuple, list)) or not scenarios:
            raise ConfigError("scenarios", self.scenarios, "must be one or more of "
                              + ", ".join(batched_scenarios()))
        for name in scenarios:
            check_choice("scenarios", name, batched_scenarios())
        if len(set(scenarios)) != len(scenarios) or POOLED in scenarios:
            raise ConfigError("scenarios", self.scenarios, "must not repeat a scenario")
        object.__setattr__(self, "scenarios", tuple(scenarios))
        require_evaluation_seeds(self.seed, self.seed + self.episodes - 1, "seed",
                                 held_out=False)
        if self.latency is not None:
            check_latency(self.latency, "latency")
        for name in ("run_dir", "out_dir"):
            value = getattr(self, name)
            if not isinstance(value, (str, Path)) or not str(value):
                raise ConfigError(name, value, "must be a folder path")
            object.__setattr__(self, name, str(value))

    def settings(self, latency: str) -> dict[str, Any]:
        """What decides an evaluation's outcome (the cache key besides the weights)."""
        return {"version": CACHE_VERSION, "latency": latency, "mode": self.mode,
                "seed": self.seed,
                "episodes": self.episodes,
                "scenario_config": json.loads(json.dumps(dict(self.scenario_config)))}


def check_latency(spec: Any, name: str) -> None:
    """Refuse a latency spec that is malformed or not reproducible (`measured`)."""
    if not isinstance(spec, str):
        raise ConfigError(name, spec, "must be a spec string: fixed:SECONDS or profile:PATH, "
                                      "optionally +SECONDS or +LOW..HIGH")
    try:
        model = parse_latency(spec)
    except (ValueError, OSError) as error:
        raise ConfigError(name, spec, str(error)) from None
    if not model.deterministic:
        raise ConfigError(name, spec, "a learning curve needs a reproducible latency: use "
                                      "fixed:SECONDS or profile:PATH")


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The run's `ppo_run.json` config (policy, latency, ...).

    Raises:
        ConfigError (field "run_dir"): no readable `ppo_run.json`.
    """
    path = Path(run_dir) / RUN_FILE
    try:
        return dict(json.loads(path.read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError("run_dir", str(run_dir), f"must be a PPO run folder with a readable "
                                                   f"{RUN_FILE}") from None


# ----------------------------------------------------------------------------- counting


def wilson(events: int, episodes: int) -> tuple[float, float]:
    """Wilson 95 % interval of `events / episodes` (NaNs for no episodes)."""
    from reflexdrive.compare.summary import wilson_interval

    return wilson_interval(int(events), int(episodes))


def counts(frame: pd.DataFrame) -> dict[str, Any]:
    """`COUNTS` of an `episodes.csv` frame."""
    collided = frame["collided"].astype(bool)
    offroad = frame["offroad"].astype(bool)
    return {"collisions": int(collided.sum()), "offroad": int(offroad.sum()),
            "failures": int((collided | offroad).sum()), "episodes": len(frame),
            "progress_m_sum": float(frame["progress_m"].sum()),
            "speed_mps_sum": float(frame["mean_speed_mps"].sum())}


def cell(counted: Mapping[str, Any]) -> dict[str, Any]:
    """Counts with their rates: collision and failure rates with Wilson 95 % intervals,
    the off-road rate, the mean progress [m] and mean speed [m/s] per episode."""
    n = int(counted["episodes"])

    def share(events: Any) -> float:
        return int(events) / n if n else math.nan

    return {"episodes": n, "collisions": int(counted["collisions"]),
            "collision_rate": share(counted["collisions"]),
            "collision_ci95": list(wilson(counted["collisions"], n)),
            "offroad": int(counted["offroad"]), "offroad_rate": share(counted["offroad"]),
            "failures": int(counted["failures"]), "failure_rate": share(counted["failures"]),
            "failure_ci95": list(wilson(counted["failures"], n)),
            "progress_m_sum": float(counted["progress_m_sum"]),
            "speed_mps_sum": float(counted["speed_mps_sum"]),
            "mean_progress_m": float(counted["progress_m_sum"]) / n if n else math.nan,
            "mean_speed_mps": float(counted["speed_mps_sum"]) / n if n else math.nan}


def pooled(cells: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The scenarios' counts summed, as a `cell`."""
    return cell({key: sum(c[key] for c in cells.values()) for key in COUNTS})


# ----------------------------------------------------------------------------- evaluation


def evaluate_snapshot(path: str | Path, policy: str, scenario: str, latency: str,
                      config: CurveConfig) -> dict[str, Any]:
    """Counts of `policy`'s checkpoint `path` on `config.episodes` episodes of `scenario`
    (seeds from `config.seed`, `config.mode` at `latency`, no twins)."""
    frame = evaluation.episodes(scenario, policy, config.episodes, config.seed, config.envs,
                                checkpoint=str(path), mode=config.mode, latency=latency,
                                device=config.device, twins=False,
                                scenario_config=dict(config.scenario_config))
    return counts(frame)


def every(items: list, stride: int) -> list:
    """Items `0, stride, 2 stride, ...` and the last one."""
    picked = items[::stride]
    return picked + items[-1:] if items and (len(items) - 1) % stride else picked


def _cache_path(config: CurveConfig, snapshot: Path) -> Path:
    return Path(config.out_dir) / CACHE_DIR / f"{snapshot.stem}.json"


def _cached(folder: Path, settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Weight checksum -> the scenario counts cached for it under `settings`, from every
    cache file of `folder` (snapshots with the same weights share their counts: those of
    the critic-only warm-up updates, the last update that runs at a zero learning rate)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(stored, dict) and stored.get("settings") == settings:
            found.setdefault(str(stored.get("checksum")), {}).update(
                stored.get("scenarios", {}))
    return found


def _store(cache: Path, path: Path, timesteps: int, weights: str,
           settings: Mapping[str, Any], done: Mapping[str, Any]) -> None:
    write_json(cache, {"snapshot": path.name, "timesteps": timesteps, "checksum": weights,
                       "settings": settings, "scenarios": dict(done)})


def learning_curve(config: CurveConfig, progress: bool = True,
                   evaluate: Callable[..., dict[str, int]] = evaluate_snapshot
                   ) -> tuple[dict[str, Any], pd.DataFrame]:
    """Evaluate every snapshot of `config.run_dir` not yet in the cache; returns the JSON
    document and the table (`curve_table`).

    The document: `run_dir`, `policy`, `settings` (latency, mode, seeds, episodes),
    `scenarios`, `snapshots`: per snapshot `timesteps`, `path`, `checksum`, `scenarios`
    (name -> `cell`) and `pooled`.

    Raises:
        ConfigError: no PPO run or no snapshot in `run_dir`, an unreadable snapshot, a
            latency that cannot be used.
    """
    run = read_run(config.run_dir)
    policy = str(run.get("policy"))
    latency = config.latency if config.latency is not None else run.get("latency")
    check_latency(latency, "latency")
    found = every(snapshots(config.run_dir), config.stride)
    if not found:
        raise ConfigError("run_dir", config.run_dir, "holds no policy snapshots (train with "
                                                     "--snapshot-every N)")
    out = prepare_out_dir(config.out_dir)
    (out / CACHE_DIR).mkdir(exist_ok=True)
    settings = config.settings(latency)
    known = _cached(out / CACHE_DIR, settings)
    entries = []
    for timesteps, path in found:
        try:
            weights = checksum(load_checkpoint(path, kind="policy").state_dict)
        except CheckpointError as error:
            raise ConfigError("run_dir", config.run_dir, f"snapshot {path.name}: "
                                                         f"{error.problem}") from None
        cache = _cache_path(config, path)
        done = known.setdefault(weights, {})
        for scenario in config.scenarios:
            if scenario in done:
                continue
            if progress:
                print(f"learning curve: {path.name} ({timesteps} steps), {scenario}, "
                      f"{config.episodes} episodes ...", file=sys.stderr, flush=True)
            done[scenario] = evaluate(path, policy, scenario, latency, config)
            _store(cache, path, timesteps, weights, settings, done)
        _store(cache, path, timesteps, weights, settings, done)       # shared or stale
        cells = {name: cell(done[name]) for name in config.scenarios}
        entries.append({"timesteps": timesteps, "path": str(path), "checksum": weights,
                        "scenarios": cells, "pooled": pooled(cells)})
    document = {"run_dir": config.run_dir, "policy": policy, "settings": settings,
                "scenarios": list(config.scenarios), "envs": config.envs,
                "device": config.device, "snapshots": entries,
                "config": json.loads(json.dumps(asdict(config)))}
    return document, curve_table(document)


def curve_table(document: Mapping[str, Any]) -> pd.DataFrame:
    """One row per snapshot and scenario (and `pooled`), columns `COLUMNS`."""
    rows = []
    for entry in document["snapshots"]:
        for scenario, value in [*entry["scenarios"].items(), (POOLED, entry["pooled"])]:
            row = {"timesteps": entry["timesteps"], "snapshot": Path(entry["path"]).name,
                   "scenario": scenario, **value}
            for name in ("collision", "failure"):
                row[f"{name}_ci95_low"], row[f"{name}_ci95_high"] = row.pop(f"{name}_ci95")
            rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


# ----------------------------------------------------------------------------- figure


FIGURE_STYLE = {"font.size": 16, "axes.titlesize": 17, "axes.labelsize": 17,
                "xtick.labelsize": 15, "ytick.labelsize": 15, "legend.fontsize": 14,
                "axes.spines.top": False, "axes.spines.right": False}
"""matplotlib rc settings of the learning-curve figure [pt]: large enough to read when the
README scales the PNG down to its column."""


def curve_figure(frame: pd.DataFrame, title: str | None = None):
    """Rates [%] against env steps, each with its Wilson 95 % band: above, the collision
    rate of each scenario and the pooled one (thick, black); below, the pooled failure rate
    (collision or off-road) and off-road rate. Returns a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from reflexdrive.report.plots import stack_colors

    scenarios = [s for s in dict.fromkeys(frame["scenario"]) if s != POOLED]
    colors = {**stack_colors(scenarios), POOLED: "black"}
    with plt.rc_context(FIGURE_STYLE):
        figure, (axis, lower) = plt.subplots(2, 1, figsize=(10, 9.0), sharex=True,
                                             gridspec_kw={"height_ratios": [2.2, 1]})
        for scenario in [*scenarios, POOLED]:
            rows = frame[frame["scenario"] == scenario].sort_values("timesteps")
            if rows.empty:
                continue
            x = rows["timesteps"].to_numpy(dtype=float)
            pooled_line = scenario == POOLED
            axis.fill_between(x, 100 * rows["collision_ci95_low"],
                              100 * rows["collision_ci95_high"], color=colors[scenario],
                              alpha=0.12 if pooled_line else 0.1, linewidth=0)
            episodes = int(rows["episodes"].iloc[0])
            axis.plot(x, 100 * rows["collision_rate"], marker="o",
                      markersize=7 if pooled_line else 5, color=colors[scenario],
                      linewidth=3.2 if pooled_line else 1.8,
                      label=f"{scenario} ({episodes} episodes each)")
        axis.set_ylabel("collision rate [%]")
        rows = frame[frame["scenario"] == POOLED].sort_values("timesteps")
        x = rows["timesteps"].to_numpy(dtype=float)
        lower.fill_between(x, 100 * rows["failure_ci95_low"], 100 * rows["failure_ci95_high"],
                           color="black", alpha=0.12, linewidth=0)
        lower.plot(x, 100 * rows["failure_rate"], marker="o", color="black", linewidth=2.4,
                   label="pooled: collision or off-road")
        lower.plot(x, 100 * rows["offroad_rate"], marker="s", color="#d62728", linewidth=1.8,
                   linestyle="--", label="pooled: off-road")
        lower.set_ylabel("rate [%]")
        lower.set_xlabel("PPO env steps")
        lower.xaxis.set_major_formatter(FuncFormatter(_steps_label))
        for each in (axis, lower):
            each.set_ylim(bottom=0)
            each.grid(alpha=0.3)
            each.legend(loc="best", frameon=False)
        if title:
            axis.set_title(title)
        figure.tight_layout()
    return figure


def _steps_label(value: float, _position: Any) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def default_title(document: Mapping[str, Any]) -> str:
    """`<policy> PPO: <mode>, latency <spec>, seeds <first>+` (a profile by its file name)."""
    settings = document["settings"]
    latency = re.sub(r"profile:[^+]*/", "profile:", str(settings["latency"]))
    return (f"{document['policy']} PPO: {settings['mode']}, latency {latency}, "
            f"seeds {settings['seed']}+")


def write_outputs(document: Mapping[str, Any], frame: pd.DataFrame, json_path: str | Path,
                  csv_path: str | Path, figure_path: str | Path | None,
                  title: str | None = None) -> None:
    """Write the document (JSON), the table (CSV) and the figure (PNG, titled `title` or
    `default_title`), each atomically."""
    from reflexdrive.report.plots import png_bytes

    write_json(json_path, document)
    write_csv(csv_path, frame)
    if figure_path is not None:
        Path(figure_path).parent.mkdir(parents=True, exist_ok=True)
        data = png_bytes(curve_figure(frame, title if title is not None
                                      else default_title(document)))
        atomic_write(figure_path, lambda stream: stream.write(data), mode="wb")
