"""The report's figures, from a compare's tables (matplotlib, Agg backend: no display).

Each function takes DataFrames with the columns of `episodes.csv`, `decisions.csv` or
`summary.csv` (`reflexdrive.compare.experiment`, `reflexdrive.compare.summary`; the names
used here are the constants of `reflexdrive.report.document`) and returns a
`matplotlib.figure.Figure`, or None when the tables hold nothing to draw.
`png_bytes(figure)` renders one to PNG (and closes it). Stacks keep one colour in every
figure (`stack_colors`).

Sizes are chosen for the page that shows them: the report's HTML column is about 1170 px
wide, so a figure is at most `PAGE_WIDTH_IN` inches wide at `PNG_DPI` and is shown 1:1,
with `STYLE`'s font sizes (10 pt text is about 15 px there). Several scenarios are small
multiples, `PANEL_COLUMNS` to a row, rather than one long strip.
"""

from __future__ import annotations

import functools
import io
import math
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")                   # before pyplot: never open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from reflexdrive.report.reading import own_latency  # noqa: E402

PNG_DPI = 110
"""Pixels per inch of the report's PNGs."""

PAGE_WIDTH_IN = 10.5
"""Widest figure [in]: at `PNG_DPI` about the report's column width, so shown 1:1."""

PANEL_WIDTH_IN = 3.2
"""Width of one small-multiple panel [in] (three fill `PAGE_WIDTH_IN` with their labels)."""

PANEL_COLUMNS = 3
"""Small multiples per row."""

STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
         "xtick.labelsize": 9, "ytick.labelsize": 9.5, "legend.fontsize": 9.5,
         "figure.titlesize": 11, "axes.spines.top": False, "axes.spines.right": False}
"""matplotlib rc settings of every figure (applied per figure, never globally) [pt]."""

HUMAN_BAND_S = (0.7, 1.5)
"""Human drivers' brake reaction time to an expected-ish hazard, about 0.7-1.5 s
(Green, "How long does it take to stop?", Transportation Human Factors 2(3), 2000)."""

STAGE_ORDER = ("perception", "tracking", "planning", "control", "policy", "total")
"""Stages stacked bottom-up in the latency breakdown (others follow, alphabetically)."""

PART_COLORS = {"wait": "#9e9e9e", "notice": "#f2a541", "compute": "#d1495b"}
"""Colours of the reaction-time parts."""

PART_LABELS = {"wait": "wait for the first tick", "notice": "ticks to notice",
               "compute": "compute of the response"}
"""Legend text of the reaction-time parts."""

HUMAN_BAND_COLOR = "#2ca02c"

STAGE_COLORS = {"perception": "#4c72b0", "tracking": "#55a868", "planning": "#c44e52",
                "control": "#8172b2", "policy": "#dd8452", "total": "#937860"}

TTC_CAP_S = 10.0
"""Median min TTC is drawn capped at this [s] (inf: the ego never closed in)."""

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


def stack_colors(stacks: Sequence[str]) -> dict[str, str]:
    """One colour per stack, in the order given (the same order gives the same colours)."""
    return {stack: _PALETTE[i % len(_PALETTE)] for i, stack in enumerate(stacks)}


def png_bytes(figure, dpi: int = PNG_DPI) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def _styled(function):
    """Run a figure function under `STYLE` (matplotlib's rc context; nothing global)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return function(*args, **kwargs)
    return wrapper


def _grid(count: int, width: float = 4.2, height: float = 3.4, rows: int = 1,
          sharey: bool = True):
    figure, axes = plt.subplots(rows, count, figsize=(width * count, height * rows),
                                squeeze=False, sharey=sharey)
    return figure, axes


def panel_grid(count: int, panel_height_in: float, columns: int = PANEL_COLUMNS,
               sharex: bool = True, sharey: bool = True):
    """Small multiples: `count` panels in rows of at most `columns`, the figure at most
    `PAGE_WIDTH_IN` wide (a panel `PANEL_WIDTH_IN` wide when fewer fill a row).

    Returns:
        `(figure, axes)`, `axes` the `count` panels in reading order (the grid's spare
        cells are hidden).
    """
    columns = max(1, min(columns, count))
    if count == 4 and columns == 3:
        columns = 2                              # 2 x 2 rather than 3 + 1
    rows = math.ceil(count / columns)
    width = min(PAGE_WIDTH_IN, PANEL_WIDTH_IN * columns + 1.2)
    figure, grid = plt.subplots(rows, columns, figsize=(width, panel_height_in * rows + 0.9),
                                squeeze=False, sharex=sharex, sharey=sharey)
    axes = list(grid.flat)
    for axis in axes[count:]:
        axis.set_visible(False)
    if sharex:                                   # the bottom panel of each column: x ticks
        for index in range(count, len(axes)):
            above = axes[index - columns]
            above.xaxis.set_tick_params(labelbottom=True)
    return figure, axes[:count]


def _label_edges(axes: Sequence, xlabel: str, ylabel: str | None = None) -> None:
    """`xlabel` under the lowest panel of each column, `ylabel` left of the first column
    (`axes` as `panel_grid` returns them)."""
    count = len(axes)
    for index, axis in enumerate(axes):
        spec = axis.get_subplotspec()
        columns = spec.get_gridspec().ncols
        if index + columns >= count:
            axis.set_xlabel(xlabel)
        if ylabel is not None and spec.is_first_col():
            axis.set_ylabel(ylabel)


def _human_band(axis, horizontal: bool = True) -> None:
    low, high = HUMAN_BAND_S
    span = axis.axhspan if horizontal else axis.axvspan
    span(low, high, color=HUMAN_BAND_COLOR, alpha=0.15, lw=0)


def _human_band_handle():
    low, high = HUMAN_BAND_S
    return Patch(color=HUMAN_BAND_COLOR, alpha=0.3,
                 label=f"human drivers {low:g}-{high:g} s (Green 2000)")


def _legend_on_top(figure, handles: Sequence, columns: int | None = None) -> None:
    """One legend for all panels, in a row above them."""
    figure.legend(handles=list(handles), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  ncol=columns or min(len(handles), 4), frameon=False)


def _empty_panel(axis, text: str, hide_values: bool = False) -> None:
    """Say why a panel is empty; `hide_values` drops its y ticks (no values to read)."""
    if hide_values:
        axis.tick_params(axis="y", left=False, labelleft=False)
    axis.text(0.5, 0.5, text, transform=axis.transAxes, ha="center", va="center",
              color="#777777", fontsize=STYLE["font.size"])


def _rows(stacks: Sequence[str], modes: Sequence[str]) -> list[tuple[str, str]]:
    """The `(stack, mode)` rows of a panel, top to bottom."""
    return [(stack, mode) for stack in stacks for mode in modes]


def _row_labels(axis, rows: Sequence[tuple[str, str]], modes: Sequence[str]) -> None:
    labels = [stack if len(modes) == 1 else f"{stack} {mode}" for stack, mode in rows]
    axis.set_yticks(range(len(rows)), labels)
    axis.set_ylim(len(rows) - 0.5, -0.5)                            # first row on top


# ----------------------------------------------------------------------------- reaction


@_styled
def episode_distribution(episodes: pd.DataFrame, stacks: Sequence[str],
                         scenarios: Sequence[str], colors: Mapping[str, str], column: str,
                         label: str, *, rated: str | None = None,
                         titles: Mapping[str, str] | None = None,
                         rated_name: str = "critical", seed: int = 0):
    """One time per episode after the hazard onset (reaction time, brake onset): a panel
    per scenario, a row per stack and mode (at extra 0) with a box over the rated
    episodes and every one of them as a point (filled: realtime, hollow: lockstep), the
    others (not rated: not critical) as grey crosses, the human band shaded, and at the
    right of each row how many rated episodes have a value.

    Args:
        episodes: `episodes.csv` rows (group columns, `column`, and `rated` if given).
        column: the time to draw [s]; NaN where the episode has none.
        label: the x axis label, with its unit.
        rated: a boolean column: True for the episodes the statistics are over (None:
            all episodes).
        titles: scenario -> panel title (default: the scenario).
        rated_name: what a rated episode is, for the legend ("critical").

    Returns:
        The figure, or None when no episode has a finite `column` at extra 0.
    """
    frame = own_latency(episodes)
    if frame.empty or column not in frame or not np.isfinite(
            frame[column].to_numpy(float)).any():
        return None
    modes = [m for m in ("lockstep", "realtime") if (frame["mode"] == m).any()]
    rows = _rows(stacks, modes)
    rng = np.random.default_rng(seed)
    figure, axes = panel_grid(len(scenarios), 0.42 * len(rows) + 1.0, sharey=True)
    for axis, scenario in zip(axes, scenarios):
        _human_band(axis, horizontal=False)
        rated_any = False
        for y, (stack, mode) in enumerate(rows):
            cell = frame[(frame["stack"] == stack) & (frame["scenario"] == scenario)
                         & (frame["mode"] == mode)]
            mask = (cell[rated].astype(bool).to_numpy() if rated is not None
                    else np.ones(len(cell), bool))
            values = cell[column].to_numpy(dtype=float)
            inside = values[mask & np.isfinite(values)]
            outside = values[~mask & np.isfinite(values)]
            rated_any |= bool(mask.any())
            if inside.size:
                axis.boxplot([inside], positions=[y], widths=0.5, orientation="horizontal",
                             showfliers=False, medianprops={"color": colors[stack], "lw": 2},
                             boxprops={"color": "#555555"}, whiskerprops={"color": "#555555"},
                             capprops={"color": "#555555"})
                filled = mode == "realtime"
                axis.scatter(inside, y + rng.uniform(-0.14, 0.14, inside.size), s=22,
                             zorder=3, facecolors=colors[stack] if filled else "none",
                             edgecolors=colors[stack], linewidths=1.2)
            if outside.size:
                axis.scatter(outside, y + 0.3 + rng.uniform(-0.05, 0.05, outside.size),
                             s=20, marker="x", color="#999999", linewidths=1.0, zorder=2)
            if len(cell):
                axis.annotate(f"{inside.size}/{int(mask.sum())}", (1.0, y),
                              xycoords=("axes fraction", "data"), xytext=(-4, 0),
                              textcoords="offset points", ha="right", va="center",
                              fontsize=STYLE["xtick.labelsize"], color="#444444",
                              bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8,
                                    "pad": 1})
        if not rated_any:
            _empty_panel(axis, f"no {rated_name} episode")
        _row_labels(axis, rows, modes)
        axis.set_title((titles or {}).get(scenario, scenario))
        axis.grid(axis="x", alpha=0.3)
    shown = frame[column].to_numpy(dtype=float)
    top = max(HUMAN_BAND_S[1] * 1.2, float(np.nanmax(shown[np.isfinite(shown)])) * 1.2)
    axes[0].set_xlim(0, top)
    _label_edges(axes, label)
    handles = [_human_band_handle()]
    if "realtime" in modes:
        handles.append(Line2D([], [], ls="", marker="o", color="#555555", label="realtime"))
    if "lockstep" in modes:
        handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="none",
                              color="#555555", label="lockstep"))
    if rated is not None and not frame[rated].astype(bool).all():
        handles.append(Line2D([], [], ls="", marker="x", color="#999999",
                              label=f"not {rated_name} (left out)"))
    _legend_on_top(figure, handles)
    figure.tight_layout()
    return figure


@_styled
def reaction_decomposition(summary: pd.DataFrame, stacks: Sequence[str],
                           scenarios: Sequence[str], columns: Mapping[str, str],
                           titles: Mapping[str, str] | None = None):
    """Mean reaction time split into wait / notice / compute: a stacked horizontal bar per
    stack and mode (extra 0; lockstep hatched, it has no compute part), a panel per
    scenario, the human band shaded, the total written at the bar's end.

    Returns:
        The figure, or None when no row has a finite part.
    """
    frame = own_latency(summary)
    parts = ("wait", "notice", "compute")
    if frame.empty or not all(columns[p] in frame for p in parts) or not np.isfinite(
            frame[[columns[p] for p in parts]].to_numpy(float)).any():
        return None
    modes = [m for m in ("lockstep", "realtime") if (frame["mode"] == m).any()]
    rows = _rows(stacks, modes)
    figure, axes = panel_grid(len(scenarios), 0.42 * len(rows) + 1.0, sharey=True)
    longest = HUMAN_BAND_S[1] * 1.2
    for axis, scenario in zip(axes, scenarios):
        _human_band(axis, horizontal=False)
        drawn = False
        for y, (stack, mode) in enumerate(rows):
            row = frame[(frame["stack"] == stack) & (frame["scenario"] == scenario)
                        & (frame["mode"] == mode)]
            if row.empty:
                continue
            left = 0.0
            for part in parts:
                value = float(row[columns[part]].iloc[0])
                if not math.isfinite(value):
                    continue
                axis.barh(y, value, 0.6, left=left, color=PART_COLORS[part],
                          hatch="//" if mode == "lockstep" else None, edgecolor="white")
                left += value
                drawn = True
            if left > 0:
                axis.annotate(f"{left * 1e3:.0f} ms", (left, y), xytext=(3, 0),
                              textcoords="offset points", va="center",
                              fontsize=STYLE["xtick.labelsize"])
                longest = max(longest, left * 1.35)
        if not drawn:
            _empty_panel(axis, "no reaction")
        _row_labels(axis, rows, modes)
        axis.set_title((titles or {}).get(scenario, scenario))
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_xlim(0, longest)
    _label_edges(axes, "mean reaction time [s]")
    handles = [Patch(color=PART_COLORS[p], label=PART_LABELS[p]) for p in parts]
    handles.append(_human_band_handle())
    if "lockstep" in modes:
        handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="//",
                             label="lockstep"))
    _legend_on_top(figure, handles, columns=3)
    figure.tight_layout()
    return figure


# ----------------------------------------------------------------------------- latency


BUDGET_OFF_SCALE = 5.0
"""`stage_breakdown` draws the budget line only within this factor of its tallest bar."""


@_styled
def stage_breakdown(stage_p50: pd.DataFrame, stacks: Sequence[str], budget_s: float | None,
                    totals: pd.DataFrame | None = None):
    """Per-stage latency medians stacked per stack (the staged stack's perception,
    tracking, planning, control beside an end-to-end policy's single forward pass), in
    ms, with the budget; `totals` (columns stack, p50, p99) adds the total's p50-p99 as
    a whisker. A budget more than `BUDGET_OFF_SCALE` times the tallest bar or whisker is
    named in the title instead of drawn (it would flatten the bars to nothing).

    Args:
        stage_p50: index stacks, columns stages, values seconds (NaN: stage absent).
    """
    if stage_p50.empty:
        return None
    stages = [s for s in STAGE_ORDER if s in stage_p50.columns] + sorted(
        s for s in stage_p50.columns if s not in STAGE_ORDER)
    present = [s for s in stacks if s in stage_p50.index]
    figure, axes = _grid(1, width=max(5.0, 1.1 * len(present) + 3.5), height=3.8)
    axis = axes[0, 0]
    top = 0.0
    for i, stack in enumerate(present):
        bottom = 0.0
        for stage in stages:
            value = stage_p50.loc[stack, stage]
            if not (isinstance(value, float) or np.isscalar(value)) or not np.isfinite(value):
                continue
            axis.bar(i, value * 1e3, 0.6, bottom=bottom, color=STAGE_COLORS.get(stage, "#cccccc"),
                     edgecolor="white", label=stage)
            bottom += value * 1e3
        top = max(top, bottom)
        if totals is not None and stack in set(totals["stack"]):
            row = totals[totals["stack"] == stack].iloc[0]
            top = max(top, float(row["p99"]) * 1e3)
            axis.errorbar(i + 0.36, row["p50"] * 1e3,
                          yerr=[[0.0], [max(0.0, (row["p99"] - row["p50"]) * 1e3)]],
                          fmt="o", color="black", ms=3, capsize=3,
                          label="total p50 to p99")
    title = "Per-stage latency of a decision"
    if budget_s is not None and math.isfinite(budget_s):
        if top > 0 and budget_s * 1e3 > BUDGET_OFF_SCALE * top:
            title += f" (budget {budget_s * 1e3:g} ms, off the scale)"
        else:
            axis.axhline(budget_s * 1e3, color="#d62728", ls="--", lw=1, label="budget")
    axis.set_xticks(range(len(present)), present)
    axis.set_ylabel("latency [ms] (stage medians, stacked)")
    axis.grid(axis="y", alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axis.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axis.set_title(title)
    figure.tight_layout()
    return figure


@_styled
def latency_cdf(latencies: Mapping[str, np.ndarray], colors: Mapping[str, str],
                budget_s: float | None):
    """Empirical CDF of each stack's own decision latency (ms, log scale), with the budget."""
    series = {stack: np.sort(np.asarray(v, dtype=float)[np.isfinite(v)])
              for stack, v in latencies.items()}
    series = {k: v for k, v in series.items() if v.size}
    if not series:
        return None
    figure, axes = _grid(1, width=6.5, height=3.8)
    axis = axes[0, 0]
    for stack, values in series.items():
        shown = np.maximum(values * 1e3, 1e-3)
        axis.step(shown, np.arange(1, values.size + 1) / values.size, where="post",
                  color=colors[stack], label=f"{stack} (n={values.size})")
    if budget_s is not None and math.isfinite(budget_s):
        axis.axvline(budget_s * 1e3, color="#d62728", ls="--", lw=1, label="budget")
    axis.set_xscale("log")
    shown = np.concatenate([np.maximum(v * 1e3, 1e-3) for v in series.values()])
    ends = [shown.min(), shown.max()] + ([budget_s * 1e3] if budget_s is not None
                                        and math.isfinite(budget_s) else [])
    axis.set_xlim(min(ends) / 1.6, max(ends) * 1.6)
    axis.set_xlabel("decision latency [ms] (the stack's own, without extra delay)")
    axis.set_ylabel("share of decisions")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3, which="both")
    axis.legend(loc="lower right")
    axis.set_title("Latency CDF")
    figure.tight_layout()
    return figure


@_styled
def overrun_rates(summary: pd.DataFrame, stacks: Sequence[str], colors: Mapping[str, str],
                  columns: Mapping[str, str], budget_s: float | None):
    """Share of decisions over budget against the extra latency (or, with a latency-scale
    sweep, the median decision latency: `latency_axis`), per stack (realtime, pooled over
    scenarios weighted by decisions, or by episodes without decision counts)."""
    frame = summary[summary["mode"] == "realtime"]
    if frame.empty or columns["overrun_rate"] not in frame:
        return None
    x_column, x_label = latency_axis(frame)
    figure, axes = _grid(1, width=6.5, height=3.8)
    axis = axes[0, 0]
    for stack in stacks:
        rows = frame[frame["stack"] == stack]
        if rows.empty:
            continue
        weight_column = columns["decisions"] if (columns["decisions"] in rows and
                                                 rows[columns["decisions"]].notna().all()) \
            else columns["episodes"]
        extras, pooled = [], []
        cells = [c for c in ("latency_scale", "extra_latency_s") if c in rows]
        for _, group in rows.groupby(cells, sort=True):
            weights = group[weight_column].to_numpy(float)
            rates = group[columns["overrun_rate"]].to_numpy(float)
            mean = (lambda v: np.average(v, weights=weights)) if weights.sum() > 0 else np.mean
            extras.append(float(mean(group[x_column].to_numpy(float))))
            pooled.append(mean(rates) if weights.sum() > 0 else np.nan)
        order = np.argsort(extras, kind="stable")
        axis.plot(np.array(extras)[order] * 1e3, np.array(pooled)[order] * 100, "o-",
                  color=colors[stack], label=stack)
    axis.set_xlabel(x_label)
    axis.set_ylabel("decisions over budget [%]")
    axis.set_ylim(-3, 103)
    axis.grid(alpha=0.3)
    axis.legend()
    budget = f" {budget_s * 1e3:g} ms" if budget_s is not None and math.isfinite(budget_s) else ""
    axis.set_title(f"Overrun rate against the budget{budget}")
    figure.tight_layout()
    return figure


# ----------------------------------------------------------------------------- outcomes


@_styled
def outcome_vs_extra(summary: pd.DataFrame, stacks: Sequence[str], scenarios: Sequence[str],
                     colors: Mapping[str, str], metric: tuple[str, str, str, str, float], *,
                     titles: Mapping[str, str] | None = None,
                     empty: Mapping[str, str] | None = None):
    """One outcome against the extra latency (realtime): a panel per scenario, a line per
    stack with its interval as a band, the lockstep value (the world waits) dotted.

    Args:
        metric: `(estimate column, low column, high column, y label with unit, scale)`.
        titles: scenario -> panel title (default: the scenario).
        empty: scenario -> what a panel says when it has no finite value (default
            "no value").

    Returns:
        The figure, or None without realtime rows.
    """
    column, low, high, label, scale = metric
    frame = summary[summary["mode"] == "realtime"]
    if frame.empty or column not in frame:
        return None
    lockstep = own_latency(summary[summary["mode"] == "lockstep"])
    x_column, x_label = latency_axis(frame)
    figure, axes = panel_grid(len(scenarios), 2.7, sharey=False)
    for axis, scenario in zip(axes, scenarios):
        drawn = False
        for stack in stacks:
            rows = frame[(frame["stack"] == stack) & (frame["scenario"] == scenario)]
            rows = rows.sort_values(x_column)
            if rows.empty:
                continue
            x = rows[x_column].to_numpy(float) * 1e3
            y = _capped(rows[column].to_numpy(float), column) * scale
            if not np.isfinite(y).any():
                continue
            drawn = True
            axis.plot(x, y, "o-", color=colors[stack], ms=4)
            if low in rows and high in rows:
                lo = _capped(rows[low].to_numpy(float), column) * scale
                hi = _capped(rows[high].to_numpy(float), column) * scale
                axis.fill_between(x, lo, hi, color=colors[stack], alpha=0.12, lw=0)
            base = lockstep[(lockstep["stack"] == stack) & (lockstep["scenario"] == scenario)]
            if not base.empty:
                value = _capped(base[column].to_numpy(float), column)[0] * scale
                if math.isfinite(value):
                    axis.axhline(value, color=colors[stack], ls=":", lw=1.2)
        if not drawn:
            _empty_panel(axis, (empty or {}).get(scenario, "no value"), hide_values=True)
        axis.set_title((titles or {}).get(scenario, scenario))
        axis.grid(alpha=0.3)
    _label_edges(axes, x_label, label)
    handles = [Line2D([], [], color=colors[stack], marker="o", ms=4, label=stack)
               for stack in stacks]
    handles.append(Line2D([], [], color="#555555", ls=":", label="lockstep"))
    handles.append(Patch(color="#555555", alpha=0.15, label="95% interval"))
    _legend_on_top(figure, handles, columns=min(len(handles), 7))
    figure.tight_layout()
    return figure


def latency_axis(summary: pd.DataFrame) -> tuple[str, str]:
    """The x axis of an outcome-against-latency figure: `(column [s], label)`. The extra
    latency when the compare swept no latency scale; else the median latency the clock
    charged each decision (own x scale + extra), which orders the cells of both sweeps
    on one axis."""
    if "latency_scale" in summary and summary["latency_scale"].nunique() > 1:
        return "latency_p50_s", "median decision latency [ms] (own x scale + extra)"
    return "extra_latency_s", "extra latency [ms]"


def _capped(values: np.ndarray, column: str) -> np.ndarray:
    if "ttc" in column:
        return np.minimum(values, TTC_CAP_S)
    return values
