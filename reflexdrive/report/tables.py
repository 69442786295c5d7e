"""The reaction-time table printed after a run: one line per scenario x stack x mode x latency."""

from __future__ import annotations

import pandas as pd

GROUP = ["scenario", "stack", "mode", "latency"]


def summarize(episodes: pd.DataFrame) -> pd.DataFrame:
    """Per group: episodes, share that reacted, mean reaction time and its decomposition
    [ms], collision rate, median min TTC [s], mean progress [m], latency p50 [ms], overrun rate."""
    if episodes.empty:
        return pd.DataFrame()
    frame = episodes.copy()
    frame["reacted"] = frame["reaction_time_s"].notna()
    grouped = frame.groupby(GROUP, sort=False)
    table = pd.DataFrame({
        "episodes": grouped.size(),
        "reacted": grouped["reacted"].mean(),
        "reaction_ms": grouped["reaction_time_s"].mean() * 1e3,
        "wait_ms": grouped["reaction_wait_s"].mean() * 1e3,
        "notice_ms": grouped["reaction_notice_s"].mean() * 1e3,
        "compute_ms": grouped["reaction_compute_s"].mean() * 1e3,
        "collision_rate": grouped["collided"].mean(),
        "min_ttc_s": grouped["min_ttc_s"].median(),
        "progress_m": grouped["progress_m"].mean(),
        "latency_p50_ms": grouped["latency_p50_s"].median() * 1e3,
        "overrun_rate": grouped["overrun_rate"].mean(),
    })
    return table.reset_index()


def reaction_table(episodes: pd.DataFrame) -> str:
    """`summarize(episodes)` as fixed-width text."""
    table = summarize(episodes)
    if table.empty:
        return "(no episodes)"
    return table.to_string(index=False,
                           float_format=lambda x: f"{x:.3g}" if abs(x) < 1 else f"{x:.1f}")
