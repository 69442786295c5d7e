"""The reaction-time table printed after a run: one line per scenario x stack x mode x latency.

Rates and episode statistics are over the rated episodes of each group
(`reflexdrive.compare.summary.rated`: the critical ones on a hazard scenario, all on a
hazard-free one); the latency columns pool every episode.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reflexdrive.compare.summary import flags, rated

GROUP = ["scenario", "stack", "mode", "latency"]


def _mean(frame: pd.DataFrame, column: str, scale: float = 1.0) -> float:
    if column not in frame:
        return math.nan
    values = frame[column].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) * scale if values.size else math.nan


def _median(frame: pd.DataFrame, column: str, scale: float = 1.0) -> float:
    if column not in frame:
        return math.nan
    values = frame[column].to_numpy(dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(np.median(values)) * scale if values.size else math.nan


def summarize(episodes: pd.DataFrame) -> pd.DataFrame:
    """Per group: episodes, critical ones (NaN without a hazard or without recorded
    criticality), rated ones, share of rated that reacted, mean reaction time and its
    decomposition [ms], median brake onset [ms], collision rate, median min TTC [s], mean
    progress [m] (all over rated episodes), latency p50 [ms] and overrun rate (all)."""
    if episodes.empty:
        return pd.DataFrame()
    rows = []
    for key, group in episodes.groupby(GROUP, sort=False):
        scope = rated(group, key[0])
        frame = group[scope.mask]
        count = len(frame)
        reacted = np.isfinite(frame["reaction_time_s"].to_numpy(dtype=np.float64))
        rows.append({
            **dict(zip(GROUP, key)),
            "episodes": len(group),
            "critical": scope.critical if scope.rates_over == "critical" else math.nan,
            "rated": count,
            "reacted": reacted.mean() if count else math.nan,
            "reaction_ms": _mean(frame, "reaction_time_s", 1e3),
            "wait_ms": _mean(frame, "reaction_wait_s", 1e3),
            "notice_ms": _mean(frame, "reaction_notice_s", 1e3),
            "compute_ms": _mean(frame, "reaction_compute_s", 1e3),
            "brake_onset_p50_ms": _median(frame, "brake_onset_s", 1e3),
            "collision_rate": flags(frame["collided"]).mean() if count else math.nan,
            "min_ttc_s": _median(frame, "min_ttc_s"),
            "progress_m": _mean(frame, "progress_m"),
            "latency_p50_ms": _median(group, "latency_p50_s", 1e3),
            "overrun_rate": _mean(group, "overrun_rate"),
        })
    return pd.DataFrame(rows)


def reaction_table(episodes: pd.DataFrame) -> str:
    """`summarize(episodes)` as fixed-width text."""
    table = summarize(episodes)
    if table.empty:
        return "(no episodes)"
    return table.to_string(index=False, na_rep="-",
                           float_format=lambda x: f"{x:.3g}" if abs(x) < 1 else f"{x:.1f}")
