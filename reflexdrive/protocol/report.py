"""`protocol.csv` and `protocol_report.html`: score tables and impact-speed heat maps.

The HTML is one self-contained file: per stack a score table (per test: points, contacts,
score, median counterfactual reaction) and a heat map of the relative impact speed over
each test's grid (a matplotlib PNG embedded as base64), cells annotated in km/h; a test
with more than two axes gets one map per facet (`GridPoint.heat_facet`), two per row.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from reflexdrive.common.files import atomic_write, atomic_write_text
from reflexdrive.protocol.grid import GridPoint

SUITE_TITLES = {"ncap-ccr": "Euro NCAP AEB Car-to-Car rear (CCRs, CCRm, CCRb)",
                "r157": "UN R157 ALKS (OSC-ALKS scenarios)"}
SCORE_RULES = {
    "ncap-ccr": "Score per test: Euro NCAP's relative impact-speed bands for its test speed "
                "(1 = avoided or below 5 km/h, 0.75 / 0.5 / 0.25 for faster impacts, 0 past "
                "the last band; CCRs up to 20 km/h and CCRb score only when avoided). "
                "Score % = sum of test scores / tests.",
    "r157": "Score per test: 1 (pass) without a collision, or where the reference driver "
            "collides too; 0 (fail) where the stack collides and the reference driver does "
            "not; blank where no reference driver ran. Score % = passes / scored tests.",
}


def score_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per stack and test: points, contacts, scored points, score %, median reaction [s]."""
    rows = []
    for (stack, test), group in frame.groupby(["stack", "test"], sort=False):
        scored = group["score"].dropna()
        reactions = group["reaction_time_s"].dropna()
        rows.append({
            "stack": stack, "test": test, "points": len(group),
            "contacts": int(group["collided"].sum()),
            "scored": len(scored),
            "score_%": round(100.0 * scored.sum() / len(scored), 1) if len(scored) else math.nan,
            "median_reaction_s": round(float(reactions.median()), 3) if len(reactions)
            else math.nan,
            "reacted": len(reactions)})
    return pd.DataFrame(rows)


def heat_map_png(frame: pd.DataFrame, points: Sequence[GridPoint], stack: str) -> bytes:
    """A PNG of the relative impact speed [km/h] over each test's grid for one stack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impact = frame[frame["stack"] == stack].set_index("point")["impact_speed_kph"]
    panels: dict[tuple[str, str], list[GridPoint]] = {}
    for point in points:
        panels.setdefault((point.test, point.heat_facet), []).append(point)
    grids = []
    for (test, facet), members in panels.items():
        rows = list(dict.fromkeys(p.heat_row for p in members))
        cols = list(dict.fromkeys(p.heat_col for p in members))
        values = np.full((len(rows), len(cols)), np.nan)
        for p in members:
            if p.point in impact.index:
                values[rows.index(p.heat_row), cols.index(p.heat_col)] = impact[p.point]
        title = f"{test}, {facet}" if facet else test
        grids.append((title, test, rows, cols, values))
    vmax = max(20.0, float(np.nanmax([np.nanmax(g[4]) if np.isfinite(g[4]).any() else 0.0
                                      for g in grids])))
    # a test with one map spans the figure's width; a facetted test's maps go two per row
    layout: list[list] = []
    for (test, facet), grid in zip(panels, grids):
        if facet and layout and len(layout[-1]) == 1 and layout[-1][0][1] == test \
                and panels_per_test(panels, test) > 1:
            layout[-1].append(grid)
        else:
            layout.append([grid])
    columns = 2 if any(len(row) == 2 for row in layout) else 1
    heights = [max(len(g[2]) for g in row) + 1.6 for row in layout]
    figure_height = 0.42 * sum(heights) + 1.0
    figure = plt.figure(figsize=(10 * columns, figure_height))
    spec = figure.add_gridspec(len(layout), columns, height_ratios=heights)
    cmap = matplotlib.colormaps["YlOrRd"].with_extremes(bad="#dddddd")
    for r, row in enumerate(layout):
        cells = [spec[r, :]] if len(row) == 1 else [spec[r, 0], spec[r, 1]]
        for cell, (title, test, rows, cols, values) in zip(cells, row):
            axis = figure.add_subplot(cell)
            image = axis.imshow(values, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto")
            axis.set_xticks(range(len(cols)), cols, fontsize=11)
            axis.set_yticks(range(len(rows)), rows, fontsize=11)
            axis.set_title(f"{title}: relative impact speed [km/h]", fontsize=13, loc="left")
            axis.set_xlabel(_axis_name(test), fontsize=11)
            for i in range(len(rows)):
                for j in range(len(cols)):
                    value = values[i, j]
                    if np.isfinite(value):
                        axis.text(j, i, f"{value:.0f}", ha="center", va="center",
                                  fontsize=11, color="white" if value > 0.6 * vmax else "black")
            figure.colorbar(image, ax=axis, fraction=0.025, pad=0.01)
    figure.suptitle(f"{stack}: impact speed per grid point (0 = no contact, grey = not run)",
                    fontsize=14, x=0.01, ha="left")
    figure.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.5 / figure_height))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def panels_per_test(panels, test: str) -> int:
    """How many heat maps (facets) test `test` has among `panels` ((test, facet) keys)."""
    return sum(1 for key in panels if key[0] == test)


def _axis_name(test: str) -> str:
    return {"CCRs": "VUT speed [km/h]", "CCRm": "VUT speed [km/h]",
            "CCRb": "rows: gap, columns: target deceleration",
            "lead-brake": "ego speed [km/h]",
            "stationary": "ego speed [km/h]",
            "cut-in": "rows: ego, relative speed [km/h]; columns: gap dx0 [m]"
            }.get(test, "")


def write_protocol(frame: pd.DataFrame, points: Sequence[GridPoint], suite: str,
                   out: str | os.PathLike, settings: str = "") -> tuple[Path, Path]:
    """Write `protocol.csv` and `protocol_report.html` into `out` (created), atomically.

    Returns:
        the two paths.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out / "protocol.csv", out / "protocol_report.html"
    atomic_write(csv_path, lambda stream: frame.to_csv(stream, index=False))
    table = score_table(frame)
    parts = [f"<h1>{html.escape(SUITE_TITLES.get(suite, suite))}</h1>",
             f"<p>{html.escape(SCORE_RULES.get(suite, ''))}</p>",
             f"<p>{html.escape(settings)}</p>" if settings else "",
             "<p>The rig holds the vehicle under test at the test speed until the planned "
             "hazard onset, then applies min(stack, holder) acceleration and the stack's "
             "steering (docs/protocol.md). Reaction = first departure from the hazard-removed "
             "twin.</p>"]
    for stack in frame["stack"].unique():
        png = base64.b64encode(heat_map_png(frame, points, stack)).decode("ascii")
        parts += [f"<h2>{html.escape(str(stack))}</h2>",
                  table[table["stack"] == stack].drop(columns="stack").to_html(
                      index=False, na_rep="", classes="scores"),
                  f'<img alt="impact-speed heat map of {html.escape(str(stack))}" '
                  f'src="data:image/png;base64,{png}" style="max-width:100%">']
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>protocol report</title>"
            "<style>body{font-family:sans-serif;margin:24px;max-width:1200px}"
            "table.scores{border-collapse:collapse;font-size:15px}"
            "table.scores td,table.scores th{border:1px solid #999;padding:4px 10px;"
            "text-align:right}</style></head><body>" + "\n".join(parts) + "</body></html>")
    atomic_write_text(html_path, page)
    return csv_path, html_path
