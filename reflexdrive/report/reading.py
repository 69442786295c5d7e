"""Reading a compare folder for its report: file and column names, the tables as DataFrames,
which episodes are rated, and the text formatting of numbers.

The column names of the input tables live in one place, the constants below
(`SUMMARY_COLUMNS`, `EPISODE_COLUMNS`, `DECISION_COLUMNS`), so a renamed column is a
one-line change. They follow `reflexdrive.compare.summary` and `reflexdrive.compare.experiment`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from reflexdrive.compare.summary import has_hazard, rated

EPISODES_FILE = "episodes.csv"
SUMMARY_FILE = "summary.csv"
DECISIONS_FILE = "decisions.csv"
COMPARE_FILE = "compare.json"
HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"
VIDEO_DIR = "videos"
"""Where the videos are (`reflexdrive.report.video.VIDEO_DIR`, not imported: no pygame here)."""

SUMMARY_COLUMNS: dict[str, str] = {
    "episodes": "episodes",
    "rates_over": "rates_over",
    "critical": "critical_episodes",
    "noncritical": "noncritical_episodes",
    "rated": "rated_episodes",
    "reacted": "reacted",
    "reaction_rate": "reaction_rate",
    "reaction_mean": "reaction_time_mean_s",
    "reaction_mean_lo": "reaction_time_mean_lo_s",
    "reaction_mean_hi": "reaction_time_mean_hi_s",
    "reaction_p50": "reaction_time_p50_s",
    "reaction_p95": "reaction_time_p95_s",
    "wait": "reaction_wait_mean_s",
    "notice": "reaction_notice_mean_s",
    "compute": "reaction_compute_mean_s",
    "braked": "braked",
    "brake_onset_p50": "brake_onset_p50_s",
    "brake_onset_p50_lo": "brake_onset_p50_lo_s",
    "brake_onset_p50_hi": "brake_onset_p50_hi_s",
    "collision_rate": "collision_rate",
    "collision_rate_lo": "collision_rate_lo",
    "collision_rate_hi": "collision_rate_hi",
    "min_ttc": "min_ttc_p50_s",
    "min_ttc_lo": "min_ttc_p50_lo_s",
    "min_ttc_hi": "min_ttc_p50_hi_s",
    "progress": "progress_mean_m",
    "progress_lo": "progress_mean_lo_m",
    "progress_hi": "progress_mean_hi_m",
    "jerk": "jerk_mean_mps3",
    "latency_p50": "stack_latency_p50_s",
    "latency_p99": "stack_latency_p99_s",
    "overrun_rate": "overrun_rate",
    "decisions": "decisions",
    "budget": "budget_s",
    "decision_age": "decision_age_mean_ms",
    "decision_rate": "decisions_per_s",
}
"""Logical name -> `summary.csv` column (`reflexdrive.compare.summary`). The group columns are
`reflexdrive.compare.summary.GROUP`: stack, scenario, mode, execution, extra_latency_s,
latency_scale."""

EPISODE_COLUMNS: dict[str, str] = {"reaction": "reaction_time_s",
                                   "brake_onset": "brake_onset_s", "critical": "critical"}
"""Logical name -> `episodes.csv` column (besides the group columns)."""

DECISION_COLUMNS: dict[str, str] = {"latency": "latency_s", "stage_prefix": "latency_",
                                    "stage_suffix": "_s", "extra_stage": "extra"}
"""`decisions.csv`: the total latency column, and per-stage columns
`latency_<stage>_s` (the stage "extra" is the compare's added delay, not the stack's)."""

REALTIME, LOCKSTEP = "realtime", "lockstep"
EXECUTION = "execution"
"""The group column of a compare's execution (sequential, pipelined)."""

RATED = "rated"
"""Column `read_tables` adds to the episodes: True where the episode counts in the rates
(`reflexdrive.compare.summary.rated`)."""


# ----------------------------------------------------------------------------- formatting


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _ms(seconds: float) -> str:
    return f"{float(seconds) * 1e3:.0f}" if _finite(seconds) else "-"


def _ms_interval(estimate: float, low: float, high: float) -> str:
    if not _finite(estimate):
        return "-"
    if not (_finite(low) and _finite(high)):
        return f"{_ms(estimate)} ms"
    return f"{_ms(estimate)} ms [{_ms(low)}, {_ms(high)}]"


def _ms_cell(estimate: float, low: float, high: float) -> str:
    """`_ms_interval` without the unit (a table cell whose header says ms)."""
    return _ms_interval(estimate, low, high).replace(" ms", "")


def _pct(value: float, digits: int = 0) -> str:
    return f"{float(value) * 100:.{digits}f}%" if _finite(value) else "-"


def _pct_interval(estimate: float, low: float, high: float, digits: int = 0) -> str:
    if not _finite(estimate):
        return "-"
    return f"{_pct(estimate, digits)} [{_pct(low, digits)}, {_pct(high, digits)}]"


def _number(value: float, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float, np.floating)) and math.isinf(value):
        return "inf"
    return f"{float(value):.{digits}f}{unit}"


def _extra_ms(extra_s: float) -> str:
    return f"+{float(extra_s) * 1e3:g} ms"


# ----------------------------------------------------------------------------- reading


@dataclass
class CompareTables:
    """What a compare folder holds, as DataFrames.

    Attributes:
        episodes: `episodes.csv` (one row per episode).
        summary: `summary.csv` (one row per stack x scenario x mode x extra latency).
        decisions: `decisions.csv` (one row per decision), None when absent.
        meta: `compare.json` (settings, status, wall time), {} when absent.
        videos: MP4 files under `videos/`, relative to the folder.
    """

    episodes: pd.DataFrame
    summary: pd.DataFrame
    decisions: pd.DataFrame | None = None
    meta: dict = field(default_factory=dict)
    videos: list[str] = field(default_factory=list)


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def read_tables(out_dir: str | os.PathLike) -> CompareTables:
    """Read a compare folder (see `CompareTables`).

    Raises:
        FileNotFoundError: `episodes.csv` or `summary.csv` is missing.
    """
    out = Path(out_dir)
    for name in (EPISODES_FILE, SUMMARY_FILE):
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name}: not found (run `reflexdrive compare` "
                                    f"with --out {out} first)")
    decisions = _read_csv(out / DECISIONS_FILE) if (out / DECISIONS_FILE).is_file() else None
    meta: dict = {}
    if (out / COMPARE_FILE).is_file():
        try:
            meta = json.loads((out / COMPARE_FILE).read_text())
        except ValueError:
            meta = {}
    videos = sorted(str(p.relative_to(out)) for p in (out / VIDEO_DIR).glob("*.mp4")) \
        if (out / VIDEO_DIR).is_dir() else []
    summary = _read_csv(out / SUMMARY_FILE)
    labels = execution_labels(summary)
    episodes, summary, decisions = (labelled(frame, labels) for frame in (
        with_rated(_read_csv(out / EPISODES_FILE)), summary, decisions))
    return CompareTables(episodes, summary, decisions, meta, videos)


def execution_labels(summary: pd.DataFrame) -> dict[tuple[str, str], str]:
    """`(stack, execution)` -> the stack's name in the report, when the compare ran more
    than one execution: "staged sequential" and "staged pipelined" for a stack that ran
    both, the plain name for one that ran one (a one-stage stack runs only sequentially).
    Empty when the summary has one execution (or none recorded: before the axis)."""
    if EXECUTION not in summary or summary[EXECUTION].nunique() < 2:
        return {}
    labels = {}
    for stack, group in summary.groupby("stack", sort=False):
        executions = list(dict.fromkeys(group[EXECUTION]))
        for execution in executions:
            labels[(stack, execution)] = (f"{stack} {execution}" if len(executions) > 1
                                          else str(stack))
    return labels


def base_stack(row: pd.Series) -> str:
    """The stack a (possibly `labelled`) row ran: "staged" for "staged pipelined"."""
    stack, execution = str(row["stack"]), row.get(EXECUTION)
    suffix = f" {execution}"
    return stack[:-len(suffix)] if isinstance(execution, str) and stack.endswith(suffix) \
        else stack


def labelled(frame: pd.DataFrame | None, labels: dict[tuple[str, str], str]
             ) -> pd.DataFrame | None:
    """`frame` with its `stack` column renamed by `execution_labels` (so every table,
    figure and sentence of the report tells the executions apart, as separate stacks)."""
    if frame is None or not labels or EXECUTION not in frame:
        return frame
    frame = frame.copy()
    frame["stack"] = [labels.get((stack, execution), stack)
                      for stack, execution in zip(frame["stack"], frame[EXECUTION])]
    return frame


def with_rated(episodes: pd.DataFrame) -> pd.DataFrame:
    """`episodes` with the boolean column `RATED`: the episodes the rates are over (the
    critical ones of a hazard scenario, all of a hazard-free one)."""
    frame = episodes.copy()
    frame[RATED] = False
    for scenario, group in frame.groupby("scenario", sort=False):
        frame.loc[group.index, RATED] = rated(group, scenario).mask
    frame[RATED] = frame[RATED].astype(bool)
    return frame


def rates_over(summary: pd.DataFrame, episodes: pd.DataFrame | None = None
               ) -> dict[str, str]:
    """Scenario -> what its rates are over (`reflexdrive.compare.summary.RATES_OVER`), from
    the summary's `rates_over` column; a summary without it (written before criticality)
    gives "unrecorded" for hazard scenarios and "all" otherwise."""
    column = SUMMARY_COLUMNS["rates_over"]
    result = {}
    for scenario, group in summary.groupby("scenario", sort=False):
        if column in group:
            result[str(scenario)] = str(group[column].iloc[0])
            continue
        onsets = (episodes.loc[episodes["scenario"] == scenario, "hazard_onset_s"]
                  if episodes is not None and "hazard_onset_s" in episodes else [])
        result[str(scenario)] = "unrecorded" if has_hazard(scenario, onsets) else "all"
    return result


def _count(row: pd.Series, name: str) -> float:
    """A count column of a summary row, NaN where the summary has no such column."""
    column = SUMMARY_COLUMNS[name]
    return float(row[column]) if column in row and _finite(row[column]) else math.nan


def _rated_count(row: pd.Series) -> int:
    """The episodes a summary row's rates are over (all of them in an older summary)."""
    rated_count = _count(row, "rated")
    return int(rated_count) if math.isfinite(rated_count) else int(row[SUMMARY_COLUMNS["episodes"]])


def _ordered(values: Sequence[str], preferred: Sequence[str] = ()) -> list[str]:
    """Unique values, `preferred` ones first in their order, then in order of appearance."""
    seen = list(dict.fromkeys(str(v) for v in values))
    first = [v for v in preferred if v in seen]
    return first + [v for v in seen if v not in first]


def unscaled(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows at latency scale 1 (all of them in tables written before the scale)."""
    if "latency_scale" not in frame:
        return frame
    return frame[frame["latency_scale"] == 1]


def own_latency(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows at the stacks' own latency: extra 0 and scale 1."""
    frame = unscaled(frame)
    return frame[frame["extra_latency_s"] == 0]


def _reference(summary: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows at the stacks' own latency: realtime at extra 0 (lockstep if no realtime)."""
    base = own_latency(summary)
    if (base["mode"] == REALTIME).any():
        return base[base["mode"] == REALTIME], REALTIME
    return base[base["mode"] == LOCKSTEP], LOCKSTEP
