"""`reflexdrive compare`: every stack on the same seeds, scenarios, modes and latencies.

    reflexdrive compare --stacks staged,cnn --scenarios lead-brake,cut-in --episodes 20 \\
        --latency measured --extra-latency 0,0.05,0.1,0.2,0.4 --out runs/compare

The grid is stacks x scenarios x modes x executions x latency scales x extra latencies
(`CompareConfig.cells`; lockstep runs once, at scale 1 and extra 0, unless
`sweep_lockstep`; pipelined only in realtime and for stacks with several stages). Stacks
with `profiled` latency are first timed at batch size 1 into `OUT/profiles/STACK.json`
(`compare.profiles`; reused on resume). Each cell is a `reflexdrive run` into
`OUT/cells/STACK/SCENARIO/MODE+EXTRAs/` (`MODE-pipelined-xK+EXTRAs` when pipelined and
scaled), so the runner's resume keeps finished episodes:
a killed compare loses only the episodes in flight, and the same command again runs only
the rest. The first call records its settings in `OUT/compare.json`; a later call with
other settings (`CompareConfig.identity`) in the same `OUT` is refused before anything is
written, except `--episodes`: more episodes extend every cell, fewer summarise the first.

Outputs, written atomically (temp file + `os.replace`) once every cell is done:

- `episodes.csv`: one row per episode of every cell, the run schema
  (`reflexdrive.run.runner`, `reflexdrive.run.metrics.EpisodeMetrics`) plus `execution`,
  `extra_latency_s` [s], `latency_scale`, `envs` (envs run side by side in the cell: the
  batch of the stack's `act` call, at most) and `cell` (its folder under `cells/`).
- `decisions.csv`: one row per decision (observed tick) of every cell: `stack, scenario,
  mode, execution, extra_latency_s, latency_scale, seed, tick, t_s, latency_s, overrun,
  dropped_after` and `latency_<stage>_s` per stage (the extra delay is the stage `extra`).
- `summary.csv`: one row per stack x scenario x mode x execution x extra latency x
  latency scale, columns in `reflexdrive.compare.summary`.
- `compare.json`: the settings (`config`, with `video` for the report), `identity`,
  `status` ("running" / "complete"), the cells and the wall time.
All load with `pandas.read_csv`. Columns are documented in docs/compare.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from reflexdrive.common.validation import ConfigError
from reflexdrive.compare.config import Cell, CompareConfig
from reflexdrive.compare.executors import cell_agent, finished_seeds, run_local, run_ray
from reflexdrive.compare.profiles import missing_profiles, record_profiles
from reflexdrive.compare.summary import GROUP as GROUP_COLUMNS
from reflexdrive.compare.summary import summarize
from reflexdrive.run.results import prepare_out_dir, write_csv, write_json

COMPARE_FILE = "compare.json"
CELLS_DIR = "cells"
DECISION_COLUMNS = ["seed", "tick", "t_s", "latency_s", "overrun", "dropped_after"]


@dataclass(frozen=True)
class CompareResult:
    """What `compare` wrote.

    Attributes:
        out: the output folder (None from `reflexdrive.compare_stacks` without `out`: the
            compare ran in a temporary folder, since deleted).
        episodes: `episodes.csv` as a DataFrame.
        summary: `summary.csv` as a DataFrame.
        ran: episodes run by this call (0 when everything was already there).
        wall_s: wall time of this call [s].
    """

    out: Path | None
    episodes: pd.DataFrame
    summary: pd.DataFrame
    ran: int
    wall_s: float


def check_out(config: CompareConfig) -> Path:
    """The output folder, checked without writing: not a file, and not holding a compare
    with other settings (ConfigError naming the settings that differ)."""
    if config.out is None:
        raise ConfigError("--out", None, "give an output directory (--out DIR or out = "
                          "\"DIR\" in the config file)")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", str(out), "must be a directory (a file is in the way)")
    record = out / COMPARE_FILE
    if record.exists():
        try:
            previous = json.loads(record.read_text())["identity"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError("--out", str(out), f"holds an unreadable {COMPARE_FILE}; use a "
                              "new directory") from None
        current = config.identity()
        if previous != current:
            keys = sorted(k for k in set(previous) | set(current)
                          if previous.get(k) != current.get(k))
            shown = "; ".join(f"{k}: {previous.get(k)!r} there, {current.get(k)!r} here"
                              for k in keys)
            raise ConfigError("--out", str(out), f"holds a compare with other settings "
                              f"({shown}); use a new directory, or the same settings to "
                              "resume")
    elif out.is_dir() and any(out.iterdir()):
        raise ConfigError("--out", str(out), f"is a non-empty directory without "
                          f"{COMPARE_FILE}; use a new or empty directory")
    return out


def compare(config: CompareConfig, progress: bool = True) -> CompareResult:
    """Run (or resume) the compare `config` describes and write its outputs to `config.out`.

    Everything is checked before anything is written: the output folder, each cell
    folder's settings, and every stack (built once, so a bad checkpoint fails here). Then
    the `profiled` stacks without a profile in `OUT/profiles/` are profiled
    (`compare.profiles`), and the cells run.

    Raises:
        ConfigError, CheckpointError: bad settings, files or folders (nothing written).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    out = check_out(config)
    unprofiled = missing_profiles(config, out / CELLS_DIR)
    cells = config.cells(replay_profiles=not unprofiled)     # no cell has run without them
    folders = [(cell, out / CELLS_DIR / cell.name) for cell in cells]
    done = {cell.name: len(finished_seeds(folder, cell.run)) for cell, folder in folders}
    todo = sum(config.episodes - n for n in done.values())
    if todo:
        for stack in config.stacks:             # fail on a bad stack before writing
            first = next(cell for cell in cells if cell.stack == stack)
            cell_agent(replace(first.run, envs=1))

    prepare_out_dir(out)
    record = {"config": config.as_dict(), "identity": config.identity(),
              "cells": [cell.name for cell in cells], "episodes": config.episodes}
    write_json(out / COMPARE_FILE, {**record, "status": "running"})
    if unprofiled:
        record_profiles(config, unprofiled, progress=progress)
        folders = [(cell, out / CELLS_DIR / cell.name) for cell in config.cells()]
    for _, folder in folders:
        folder.mkdir(parents=True, exist_ok=True)

    bar = tqdm(total=config.total_episodes, initial=config.total_episodes - todo,
               disable=not progress, desc="compare", unit="episode", smoothing=0.1)
    try:
        if config.executor == "ray" and todo:
            run_ray(folders, bar.update, address=config.address, num_cpus=config.ray_cpus,
                    chunk_episodes=config.chunk_episodes, threads=config.threads or 1)
        else:
            run_local(folders, bar.update, threads=config.threads)
    finally:
        bar.close()

    episodes = collect_episodes(folders)
    decisions = collect_decisions(folders)
    summary = summarize(episodes, decisions, seed=config.seed,
                        resamples=config.bootstrap_resamples)
    write_csv(out / "episodes.csv", episodes)
    write_csv(out / "decisions.csv", decisions)
    write_csv(out / "summary.csv", summary)
    wall_s = time.perf_counter() - start
    write_json(out / COMPARE_FILE, {**record, "status": "complete", "wall_s": wall_s,
                                    "ran_episodes": todo})
    return CompareResult(out=out, episodes=episodes, summary=summary, ran=todo, wall_s=wall_s)


def _read(path: Path, **options: Any) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **options)


def _cell_columns(cell: Cell) -> dict[str, Any]:
    """The group columns of a cell's rows (`compare.summary.GROUP`, in its order)."""
    return dict(zip(GROUP_COLUMNS, cell.key))


def collect_episodes(folders: list[tuple[Cell, Path]]) -> pd.DataFrame:
    """Every cell's episodes (its seeds only), with the cell columns, in grid order."""
    frames = []
    for cell, folder in folders:
        frame = _read(folder / "episodes.csv")
        seeds = range(cell.run.seed, cell.run.seed + cell.run.episodes)
        frame = frame[frame["seed"].isin(seeds)].sort_values("seed", kind="stable")
        for name, value in _cell_columns(cell).items():
            frame[name] = value
        frame["envs"] = cell.run.envs
        frame["cell"] = cell.name
        frames.append(frame)
    episodes = pd.concat(frames, ignore_index=True)
    first = [c for c in GROUP_COLUMNS if c in episodes.columns]
    return episodes[first + [c for c in episodes.columns if c not in first]]


def collect_decisions(folders: list[tuple[Cell, Path]]) -> pd.DataFrame:
    """Every cell's decisions (observed ticks) with their latencies, in grid order."""
    frames = []
    for cell, folder in folders:
        ticks = _read(folder / "ticks.csv")
        seeds = range(cell.run.seed, cell.run.seed + cell.run.episodes)
        ticks = ticks[ticks["observed"].astype(bool) & ticks["seed"].isin(seeds)]
        frame = ticks[DECISION_COLUMNS + _stage_columns(ticks)].copy()
        for name, value in reversed(list(_cell_columns(cell).items())):
            frame.insert(0, name, value)
        frames.append(frame)
    decisions = pd.concat(frames, ignore_index=True)
    return decisions[GROUP_COLUMNS + DECISION_COLUMNS + _stage_columns(decisions)]


def _stage_columns(frame: pd.DataFrame) -> list[str]:
    """The per-stage latency columns `latency_<stage>_s` of a ticks frame."""
    return [c for c in frame.columns
            if c.startswith("latency_") and c.endswith("_s") and c != "latency_s"]
