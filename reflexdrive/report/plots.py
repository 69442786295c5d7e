"""The report's figures, from a compare's tables (matplotlib, Agg backend: no display).

Each function takes DataFrames with the columns of `episodes.csv`, `decisions.csv` or
`summary.csv` (`reflexdrive.compare.experiment`, `reflexdrive.compare.summary`; the names
used here are the constants of `reflexdrive.report.document`) and returns a
`matplotlib.figure.Figure`, or None when the tables hold nothing to draw.
`png_bytes(figure)` renders one to PNG (and closes it). Stacks keep one colour in every
figure (`stack_colors`).
"""

from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")                   # before pyplot: never open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HUMAN_BAND_S = (0.7, 1.5)
"""Human drivers' brake reaction time to an expected-ish hazard, about 0.7-1.5 s
(Green, "How long does it take to stop?", Transportation Human Factors 2(3), 2000)."""

STAGE_ORDER = ("perception", "tracking", "planning", "control", "policy", "total")
"""Stages stacked bottom-up in the latency breakdown (others follow, alphabetically)."""

PART_COLORS = {"wait": "#9e9e9e", "notice": "#f2a541", "compute": "#d1495b"}
"""Colours of the reaction-time parts."""

STAGE_COLORS = {"perception": "#4c72b0", "tracking": "#55a868", "planning": "#c44e52",
                "control": "#8172b2", "policy": "#dd8452", "total": "#937860"}

TTC_CAP_S = 10.0
"""Median min TTC is drawn capped at this [s] (inf: the ego never closed in)."""

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


def stack_colors(stacks: Sequence[str]) -> dict[str, str]:
    """One colour per stack, in the order given (the same order gives the same colours)."""
    return {stack: _PALETTE[i % len(_PALETTE)] for i, stack in enumerate(stacks)}


def png_bytes(figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def _grid(count: int, width: float = 4.2, height: float = 3.4, rows: int = 1,
          sharey: bool = True):
    figure, axes = plt.subplots(rows, count, figsize=(width * count, height * rows),
                                squeeze=False, sharey=sharey)
    return figure, axes


def _human_band(axis, horizontal: bool = True) -> None:
    low, high = HUMAN_BAND_S
    span = axis.axhspan if horizontal else axis.axvspan
    span(low, high, color="#2ca02c", alpha=0.12, lw=0,
         label=f"human drivers {low:g}-{high:g} s (Green 2000)")


# ----------------------------------------------------------------------------- reaction


def reaction_distribution(episodes: pd.DataFrame, stacks: Sequence[str],
                          scenarios: Sequence[str], colors: Mapping[str, str],
                          column: str = "reaction_time_s", seed: int = 0):
    """Reaction time of every reacting episode: a box and the points (jittered) per stack,
    one panel per scenario; lockstep (hollow) beside realtime (filled), both at extra 0;
    the human band shaded; under each stack, how many episodes reacted."""
    frame = episodes[episodes["extra_latency_s"] == 0]
    if frame.empty or not np.isfinite(frame[column].to_numpy(float)).any():
        return None
    modes = [m for m in ("lockstep", "realtime") if (frame["mode"] == m).any()]
    rng = np.random.default_rng(seed)
    figure, axes = _grid(len(scenarios), width=max(3.6, 1.3 * len(stacks) * len(modes)))
    for axis, scenario in zip(axes[0], scenarios):
        _human_band(axis)
        labels = []
        for i, stack in enumerate(stacks):
            for j, mode in enumerate(modes):
                rows = frame[(frame["stack"] == stack) & (frame["scenario"] == scenario)
                             & (frame["mode"] == mode)]
                values = rows[column].to_numpy(dtype=float)
                values = values[np.isfinite(values)]
                x = i + (j - (len(modes) - 1) / 2) * 0.36
                if values.size:
                    axis.boxplot([values], positions=[x], widths=0.3, showfliers=False,
                                 medianprops={"color": colors[stack]},
                                 boxprops={"color": "#555555"}, whiskerprops={"color": "#555555"},
                                 capprops={"color": "#555555"})
                    jitter = rng.uniform(-0.08, 0.08, values.size)
                    filled = mode == "realtime"
                    axis.scatter(x + jitter, values, s=14, zorder=3,
                                 facecolors=colors[stack] if filled else "none",
                                 edgecolors=colors[stack], linewidths=1.0)
                axis.annotate(f"{values.size}/{len(rows)}", (x, 0),
                              xycoords=("data", "axes fraction"),
                              xytext=(0, 2), textcoords="offset points", ha="center",
                              fontsize=7, color="#555555")
            labels.append(stack)
        axis.set_xticks(range(len(stacks)), labels)
        axis.set_xlim(-0.6, len(stacks) - 0.4)
        axis.set_title(scenario)
        axis.grid(axis="y", alpha=0.3)
    shown = frame[column].to_numpy(dtype=float)
    top = max(HUMAN_BAND_S[1] * 1.25, float(np.nanmax(shown)) * 1.1)
    axes[0, 0].set_ylabel("reaction time [s]")
    axes[0, 0].set_ylim(0, top)
    axes[0, 0].legend(loc="upper right", fontsize=7)
    mode_note = " (hollow: lockstep, filled: realtime)" if len(modes) > 1 else f" ({modes[0]})"
    figure.suptitle("Reaction time per episode, at the stacks' own latency" + mode_note
                    + "; n reacted / episodes under each", fontsize=9)
    figure.tight_layout()
    return figure


def reaction_decomposition(summary: pd.DataFrame, stacks: Sequence[str],
                           scenarios: Sequence[str], columns: Mapping[str, str]):
    """Mean reaction time split into wait / notice / compute, stacked bars per stack,
    one panel per scenario, each mode at extra 0 (lockstep has no compute part)."""
    frame = summary[summary["extra_latency_s"] == 0]
    parts = ("wait", "notice", "compute")
    if frame.empty or not all(columns[p] in frame for p in parts):
        return None
    modes = [m for m in ("lockstep", "realtime") if (frame["mode"] == m).any()]
    figure, axes = _grid(len(scenarios), width=max(3.6, 0.9 * len(stacks) * len(modes)))
    width = 0.8 / len(modes)
    for axis, scenario in zip(axes[0], scenarios):
        _human_band(axis)
        for j, mode in enumerate(modes):
            for i, stack in enumerate(stacks):
                row = frame[(frame["stack"] == stack) & (frame["scenario"] == scenario)
                            & (frame["mode"] == mode)]
                if row.empty:
                    continue
                x = i + (j - (len(modes) - 1) / 2) * width
                bottom = 0.0
                for part in parts:
                    value = float(row[columns[part]].iloc[0])
                    if not math.isfinite(value):
                        continue
                    axis.bar(x, value, width * 0.9, bottom=bottom, color=PART_COLORS[part],
                             hatch="//" if mode == "lockstep" else None, edgecolor="white",
                             label=part if (i, j) == (0, len(modes) - 1) else None)
                    bottom += value
        axis.set_xticks(range(len(stacks)), stacks)
        axis.set_title(scenario)
        axis.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("mean reaction time [s]")
    axes[0, 0].set_ylim(0, max(HUMAN_BAND_S[1] * 1.25, axes[0, 0].get_ylim()[1]))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    axes[0, 0].legend(handles, labels, loc="upper right", fontsize=7)
    note = " (hatched: lockstep, plain: realtime)" if len(modes) > 1 else f" ({modes[0]})"
    figure.suptitle("Where the reaction time goes: wait for the tick, ticks to notice, "
                    "compute" + note, fontsize=9)
    figure.tight_layout()
    return figure


# ----------------------------------------------------------------------------- latency


def stage_breakdown(stage_p50: pd.DataFrame, stacks: Sequence[str], budget_s: float | None,
                    totals: pd.DataFrame | None = None):
    """Per-stage latency medians stacked per stack (the staged stack's perception,
    tracking, planning, control beside an end-to-end policy's single forward pass), in
    ms, with the budget; `totals` (columns stack, p50, p99) adds the total's p50-p99 as
    a whisker.

    Args:
        stage_p50: index stacks, columns stages, values seconds (NaN: stage absent).
    """
    if stage_p50.empty:
        return None
    stages = [s for s in STAGE_ORDER if s in stage_p50.columns] + sorted(
        s for s in stage_p50.columns if s not in STAGE_ORDER)
    present = [s for s in stacks if s in stage_p50.index]
    figure, axes = _grid(1, width=max(4.0, 1.1 * len(present) + 2.5), height=3.6)
    axis = axes[0, 0]
    for i, stack in enumerate(present):
        bottom = 0.0
        for stage in stages:
            value = stage_p50.loc[stack, stage]
            if not (isinstance(value, float) or np.isscalar(value)) or not np.isfinite(value):
                continue
            axis.bar(i, value * 1e3, 0.6, bottom=bottom, color=STAGE_COLORS.get(stage, "#cccccc"),
                     edgecolor="white", label=stage)
            bottom += value * 1e3
        if totals is not None and stack in set(totals["stack"]):
            row = totals[totals["stack"] == stack].iloc[0]
            axis.errorbar(i + 0.36, row["p50"] * 1e3,
                          yerr=[[0.0], [max(0.0, (row["p99"] - row["p50"]) * 1e3)]],
                          fmt="o", color="black", ms=3, capsize=3,
                          label="total p50 to p99")
    if budget_s is not None and math.isfinite(budget_s):
        axis.axhline(budget_s * 1e3, color="#d62728", ls="--", lw=1, label="budget")
    axis.set_xticks(range(len(present)), present)
    axis.set_ylabel("latency [ms] (stage medians, stacked)")
    axis.grid(axis="y", alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axis.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left",
                bbox_to_anchor=(1.01, 1.0))
    axis.set_title("Per-stage latency of a decision", fontsize=9)
    figure.tight_layout()
    return figure


def latency_cdf(latencies: Mapping[str, np.ndarray], colors: Mapping[str, str],
                budget_s: float | None):
    """Empirical CDF of each stack's own decision latency (ms, log scale), with the budget."""
    series = {stack: np.sort(np.asarray(v, dtype=float)[np.isfinite(v)])
              for stack, v in latencies.items()}
    series = {k: v for k, v in series.items() if v.size}
    if not series:
        return None
    figure, axes = _grid(1, width=5.5, height=3.4)
    axis = axes[0, 0]
    for stack, values in series.items():
        shown = np.maximum(values * 1e3, 1e-3)
        axis.step(shown, np.arange(1, values.size + 1) / values.size, where="post",
                  color=colors[stack], label=f"{stack} (n={values.size})")
    if budget_s is not None and math.isfinite(budget_s):
        axis.axvline(budget_s * 1e3, color="#d62728", ls="--", lw=1, label="budget")
    axis.set_xscale("log")
    axis.set_xlabel("decision latency [ms] (the stack's own, without extra delay)")
    axis.set_ylabel("share of decisions")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7)
    axis.set_title("Latency CDF", fontsize=9)
    figure.tight_layout()
    return figure


def overrun_rates(summary: pd.DataFrame, stacks: Sequence[str], colors: Mapping[str, str],
                  columns: Mapping[str, str], budget_s: float | None):
    """Share of decisions over budget against the extra latency, per stack (realtime,
    pooled over scenarios weighted by decisions, or by episodes without decision counts)."""
    frame = summary[summary["mode"] == "realtime"]
    if frame.empty or columns["overrun_rate"] not in frame:
        return None
    figure, axes = _grid(1, width=5.5, height=3.4)
    axis = axes[0, 0]
    for stack in stacks:
        rows = frame[frame["stack"] == stack]
        if rows.empty:
            continue
        weight_column = columns["decisions"] if (columns["decisions"] in rows and
                                                 rows[columns["decisions"]].notna().all()) \
            else columns["episodes"]
        extras, pooled = [], []
        for extra, group in rows.groupby("extra_latency_s", sort=True):
            weights = group[weight_column].to_numpy(float)
            rates = group[columns["overrun_rate"]].to_numpy(float)
            extras.append(float(extra))
            pooled.append(np.average(rates, weights=weights) if weights.sum() > 0 else np.nan)
        axis.plot(np.array(extras) * 1e3, np.array(pooled) * 100, "o-", color=colors[stack],
                  label=stack)
    axis.set_xlabel("extra latency [ms]")
    axis.set_ylabel("decisions over budget [%]")
    axis.set_ylim(-3, 103)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    budget = f" {budget_s * 1e3:g} ms" if budget_s is not None and math.isfinite(budget_s) else ""
    axis.set_title(f"Overrun rate against the budget{budget}", fontsize=9)
    figure.tight_layout()
    return figure


# ----------------------------------------------------------------------------- outcomes


def outcomes_vs_extra(summary: pd.DataFrame, stacks: Sequence[str], scenarios: Sequence[str],
                      colors: Mapping[str, str],
                      metrics: Sequence[tuple[str, str, str, str, float]]):
    """Outcome against extra latency (realtime): one row per metric, one column per
    scenario, a line per stack with its interval as a band; the lockstep value (the
    zero-latency baseline) as a dotted line.

    Args:
        metrics: `(estimate column, low column, high column, label, scale)` per row.
    """
    frame = summary[summary["mode"] == "realtime"]
    if frame.empty:
        return None
    lockstep = summary[(summary["mode"] == "lockstep") & (summary["extra_latency_s"] == 0)]
    figure, axes = plt.subplots(len(metrics), len(scenarios),
                                figsize=(4.2 * len(scenarios), 2.6 * len(metrics)),
                                squeeze=False, sharex=True)
    for c, scenario in enumerate(scenarios):
        for r, (column, low, high, label, scale) in enumerate(metrics):
            axis = axes[r, c]
            for stack in stacks:
                rows = frame[(frame["stack"] == stack) & (frame["scenario"] == scenario)]
                rows = rows.sort_values("extra_latency_s")
                if rows.empty or column not in rows:
                    continue
                x = rows["extra_latency_s"].to_numpy(float) * 1e3
                y = _capped(rows[column].to_numpy(float), column) * scale
                axis.plot(x, y, "o-", color=colors[stack], label=stack, ms=4)
                if low in rows and high in rows:
                    lo = _capped(rows[low].to_numpy(float), column) * scale
                    hi = _capped(rows[high].to_numpy(float), column) * scale
                    axis.fill_between(x, lo, hi, color=colors[stack], alpha=0.15, lw=0)
                base = lockstep[(lockstep["stack"] == stack) & (lockstep["scenario"] == scenario)]
                if not base.empty and column in base:
                    value = _capped(base[column].to_numpy(float), column)[0] * scale
                    if math.isfinite(value):
                        axis.axhline(value, color=colors[stack], ls=":", lw=1)
            if r == 0:
                axis.set_title(scenario)
            if c == 0:
                axis.set_ylabel(label)
            if r == len(metrics) - 1:
                axis.set_xlabel("extra latency [ms]")
            axis.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    figure.suptitle("What latency costs (realtime; bands: 95% intervals; dotted: lockstep)",
                    fontsize=9)
    figure.tight_layout()
    return figure


def _capped(values: np.ndarray, column: str) -> np.ndarray:
    if "ttc" in column:
        return np.minimum(values, TTC_CAP_S)
    return values
