"""The report of a compare: `report.html` (self-contained) and `report.md` (PNGs beside it).

`write_report(out_dir)` reads what `reflexdrive compare` wrote into `out_dir`
(`episodes.csv`, `summary.csv`, optionally `decisions.csv`, `compare.json` and the videos
under `videos/`) and writes:

- `report.html`: every figure embedded as a base64 PNG data URI and the tables inline, so
  the page reads on its own, without the CSVs (videos are linked, not embedded);
- `report.md`: the same text and tables, the figures written beside it as
  `report_<name>.png` and linked.

Contents:

1. a summary in words (`summary_sentences`): how many hazard episodes were critical
   (`criticality_sentences`; rates are over critical episodes, and a scenario with none
   says so instead of showing empty rates), which stack reacted fastest in each scenario,
   by how much, with the 95% intervals; and, per stack, the smallest extra latency at
   which its collision rate rose above the upper end of its zero-extra 95% interval
   (`latency_cost`);
2. what the numbers mean (`DEFINITIONS`): the counterfactual reaction time, brake onset,
   and critical episodes, in a sentence or two each;
3. the headline table, one row per stack x scenario x mode at the stacks' own latency;
4. figures (`reflexdrive.report.plots`), small multiples one panel per scenario: the
   counterfactual reaction time and, separately, the brake onset per episode, with the
   human band (0.7-1.5 s, Green 2000); the reaction's wait / notice / compute
   decomposition; the per-stage latency breakdown (staged stages beside each end-to-end
   forward pass), latency CDFs, overrun rates against the budget; and collision rate,
   min TTC and progress against the extra latency with their intervals;
5. the videos, if any.

Reading the folder and the column names live in `reflexdrive.report.reading`, the
sentences in `reflexdrive.report.sentences`; both are re-exported here.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from reflexdrive.common.files import atomic_write
from reflexdrive.compare.summary import GROUP
from reflexdrive.report import plots
from reflexdrive.report.reading import (
    COMPARE_FILE,
    DECISION_COLUMNS,
    DECISIONS_FILE,
    EPISODE_COLUMNS,
    HTML_FILE,
    LOCKSTEP,
    MARKDOWN_FILE,
    RATED,
    REALTIME,
    SUMMARY_COLUMNS,
    CompareTables,
    _count,
    _finite,
    _ms,
    _ms_cell,
    _number,
    _ordered,
    _pct,
    _pct_interval,
    _rated_count,
    _reference,
    own_latency,
    rates_over,
    read_tables,
    with_rated,
)
from reflexdrive.report.sentences import (
    DEFINITIONS,
    LatencyCost,
    criticality_sentences,
    fastest,
    latency_cost,
    latency_cost_sentences,
    summary_sentences,
)
from reflexdrive.run.metrics import ReactionConfig

# ----------------------------------------------------------------------------- tables


HEADLINE_HEADER = ("stack", "scenario", "mode", "critical", "reacted",
                   "reaction mean [ms] (95% CI)", "reaction p50 [ms]",
                   "wait / notice / compute [ms]", "brake onset p50 [ms] (95% CI)",
                   "collisions (95% CI)", "min TTC p50 [s]", "progress [m]",
                   "latency p50 / p99 [ms]", "overruns")

NO_CRITICAL = "no critical episode"
"""What the rate cells of a row without a critical episode say."""

OVER_TITLES = {"critical": "critical episodes", "all": "all episodes",
               "unrecorded": "all episodes, criticality not recorded"}
"""Panel titles' note of what a scenario's rates are over."""


def _critical_cell(row: pd.Series, scope: str) -> str:
    episodes = int(row[SUMMARY_COLUMNS["episodes"]])
    if scope == "all":
        return "no hazard"
    if scope == "unrecorded":
        return "not recorded"
    return f"{int(_count(row, 'critical'))} of {episodes}"


def headline_rows(summary: pd.DataFrame, stacks: Sequence[str] | None = None,
                  columns: Mapping[str, str] = SUMMARY_COLUMNS) -> list[tuple[str, ...]]:
    """The headline table: per stack x scenario x mode at extra 0 (cells as text, in
    `HEADLINE_HEADER` order). `critical` is "k of n" on a hazard scenario ("no hazard (n)"
    or "not recorded (n)" where every episode is rated); a row without a critical episode
    says `NO_CRITICAL` instead of empty rates."""
    c = columns
    frame = own_latency(summary)
    scopes = rates_over(summary)
    stacks = list(stacks) if stacks is not None else _ordered(frame["stack"])
    rows = []
    for stack in stacks:
        for scenario in _ordered(frame["scenario"]):
            for mode in (LOCKSTEP, REALTIME):
                hit = frame[(frame["stack"] == stack) & (frame["scenario"] == scenario)
                            & (frame["mode"] == mode)]
                if hit.empty:
                    continue
                r = hit.iloc[0]
                latency = (f"{_number(r[c['latency_p50']] * 1e3, 1)} / "
                           f"{_number(r[c['latency_p99']] * 1e3, 1)}")
                head = (stack, scenario, mode, _critical_cell(r, scopes[scenario]))
                count = _rated_count(r)
                if count == 0:
                    rows.append(head + (NO_CRITICAL, "-", "-", "-", "-", NO_CRITICAL, "-",
                                        "-", latency, _pct(r[c["overrun_rate"]])))
                    continue
                onset = (_ms_cell(r[c["brake_onset_p50"]], r[c["brake_onset_p50_lo"]],
                                  r[c["brake_onset_p50_hi"]])
                         if c["brake_onset_p50"] in r else "-")
                rows.append(head + (
                    f"{int(r[c['reacted']])}/{count}",
                    _ms_cell(r[c["reaction_mean"]], r[c["reaction_mean_lo"]],
                             r[c["reaction_mean_hi"]]),
                    _ms(r[c["reaction_p50"]]),
                    f"{_ms(r[c['wait']])} / {_ms(r[c['notice']])} / {_ms(r[c['compute']])}",
                    onset,
                    _pct_interval(r[c["collision_rate"]], r[c["collision_rate_lo"]],
                                  r[c["collision_rate_hi"]]),
                    _number(r[c["min_ttc"]], 2),
                    _number(r[c["progress"]], 1),
                    latency,
                    _pct(r[c["overrun_rate"]]),
                ))
    return rows


DECISION_HEADER = ("stack", "mode", "command age [ms]", "decisions/s")


def decision_rows(summary: pd.DataFrame, stacks: Sequence[str],
                  columns: Mapping[str, str] = SUMMARY_COLUMNS) -> list[tuple[str, ...]]:
    """Per stack and mode at extra 0, over its scenarios: the mean age of the commands that
    took effect [ms] and how many took effect per second (empty without the columns)."""
    age, rate = columns["decision_age"], columns["decision_rate"]
    if age not in summary or rate not in summary:
        return []
    frame = summary[summary["extra_latency_s"] == 0]
    rows = []
    for stack in stacks:
        for mode in (LOCKSTEP, REALTIME):
            hit = frame[(frame["stack"] == stack) & (frame["mode"] == mode)]
            if not hit.empty:
                rows.append((stack, mode, _number(hit[age].mean(), 1),
                             _number(hit[rate].mean(), 2)))
    return rows


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header))] + [line(r) for r in rows])


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row)
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------- figures


def _budget(summary: pd.DataFrame) -> float | None:
    column = SUMMARY_COLUMNS["budget"]
    if column not in summary:
        return None
    values = summary[column].dropna()
    return float(values.iloc[0]) if len(values) else None


def stage_table(decisions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per stack, at extra 0 (both modes): the median of each stage's latency
    (`(stacks, stages)` seconds, NaN where a stack has no such stage) and the total's p50
    and p99 (columns stack, p50, p99). The compare's "extra" stage is left out."""
    d = DECISION_COLUMNS
    frame = own_latency(decisions)
    stages = [col for col in frame.columns
              if col.startswith(d["stage_prefix"]) and col.endswith(d["stage_suffix"])
              and col != d["latency"]
              and col != f"{d['stage_prefix']}{d['extra_stage']}{d['stage_suffix']}"]
    names = {col: col[len(d["stage_prefix"]):-len(d["stage_suffix"])] for col in stages}
    medians = frame.groupby("stack", sort=False)[stages].median().rename(columns=names)
    medians = medians.dropna(axis=1, how="all")
    totals = frame.groupby("stack", sort=False)[d["latency"]].quantile([0.5, 0.99]).unstack()
    totals.columns = ["p50", "p99"]
    return medians, totals.reset_index()


@dataclass
class Figure:
    """One figure of the report: a file stem, a title, a caption and the PNG."""

    name: str
    title: str
    caption: str
    png: bytes


def build_figures(tables: CompareTables) -> tuple[list[Figure], list[str]]:
    """The report's figures and notes on what could not be drawn."""
    summary, episodes, decisions = tables.summary, tables.episodes, tables.decisions
    stacks = _ordered(summary["stack"], ("staged",))
    scenarios = _ordered(summary["scenario"])
    colors = plots.stack_colors(stacks)
    budget = _budget(summary)
    c = SUMMARY_COLUMNS
    figures: list[Figure] = []
    notes: list[str] = []

    def add(name: str, title: str, caption: str, figure, why: str = "nothing to draw") -> None:
        if figure is None:
            notes.append(f"{title}: {why}.")
        else:
            figures.append(Figure(name, title, caption, plots.png_bytes(figure)))

    scopes = rates_over(summary, episodes)
    hazards = [s for s in scenarios if scopes.get(s) != "all"]
    rated_name = "critical" if any(scopes.get(s) == "critical" for s in hazards) else "rated"
    if RATED not in episodes:
        episodes = with_rated(episodes)
    e = EPISODE_COLUMNS
    band = "The green band is the human range of 0.7-1.5 s (Green 2000)."
    which = ("Boxes and coloured points: critical episodes (filled: realtime, hollow: "
             "lockstep); grey crosses: non-critical episodes, left out of the statistics. "
             "At the right of each row: episodes with a value / critical episodes. ")
    if hazards:
        add("reaction_time", "Reaction time (counterfactual)",
            "When the stack first departed from its hazard-free twin, per episode, at its own "
            "latency. " + which + band,
            plots.episode_distribution(episodes, stacks, hazards, colors, e["reaction"],
                                       "reaction time after the onset [s]", rated=RATED,
                                       rated_name=rated_name),
            "no episode has a counterfactual reaction time (the episodes ran without their "
            "hazard-free twins, or no stack departed from its twin)")
        add("brake_onset", "Brake onset (threshold, not the reaction time)",
            "When the applied command first braked harder than "
            f"{ReactionConfig().decel_threshold_mps2:g} m/s\u00b2 (or swerved), per episode: "
            "braking style as much as reaction. " + which + band,
            plots.episode_distribution(episodes, stacks, hazards, colors, e["brake_onset"],
                                       "brake onset after the onset [s]", rated=RATED,
                                       rated_name=rated_name),
            "no episode braked past the threshold")
        add("reaction_parts", "Reaction time decomposed",
            "Mean counterfactual reaction time over the reacting critical episodes, split "
            "into the wait for the first tick after the onset, the ticks the stack needed to "
            "notice, and the compute latency of the responding decision (0 in lockstep, "
            "where the world waits). " + band,
            plots.reaction_decomposition(summary, stacks, hazards, c),
            "no critical episode has a counterfactual reaction time")
    else:
        notes.append("Reaction time, brake onset: no scenario of this compare has a hazard.")
    if decisions is not None and not decisions.empty:
        medians, totals = stage_table(decisions)
        add("stage_latency", "Latency per stage",
            "Median latency of each stage of every decision (the staged stack's perception, "
            "tracking, planning and control; an end-to-end policy's single forward pass), "
            "stacked; the whisker runs from the total's p50 to its p99.",
            plots.stage_breakdown(medians, stacks, budget, totals))
        own = own_latency(decisions)
        add("latency_cdf", "Latency CDF",
            "Share of decisions at or below each latency (the stacks' own, at extra 0).",
            plots.latency_cdf({s: own.loc[own["stack"] == s, DECISION_COLUMNS["latency"]]
                               .to_numpy(float) for s in stacks}, colors, budget))
    else:
        base, _ = _reference(summary)
        medians = (base.groupby("stack", sort=False)[c["latency_p50"]].median()
                   .to_frame("total"))
        add("stage_latency", "Latency per stack",
            f"Median decision latency per stack. Per-stage latencies need {DECISIONS_FILE} "
            "(not in this folder).", plots.stage_breakdown(medians, stacks, budget))
        notes.append(f"Latency CDF: needs {DECISIONS_FILE} (per-decision latencies).")
    add("overruns", "Overruns",
        "Share of decisions whose latency exceeded the budget, against the extra latency.",
        plots.overrun_rates(summary, stacks, colors, c, budget))
    titles = {s: f"{s} ({OVER_TITLES[scopes.get(s, 'all')]})" for s in scenarios}
    empty = {s: NO_CRITICAL if scopes.get(s) == "critical" else "no value" for s in scenarios}
    outcomes = (
        ("collisions", "Collision rate against extra latency",
         "Share of episodes that collided, with its Wilson 95% interval",
         (c["collision_rate"], c["collision_rate_lo"], c["collision_rate_hi"],
          "collision rate [%]", 100.0)),
        ("min_ttc", "Minimum time-to-collision against extra latency",
         "Median over episodes of the minimum time-to-collision after the onset (whole "
         f"episode without a hazard; drawn capped at {plots.TTC_CAP_S:g} s, inf: never "
         "closing in), with its bootstrap 95% interval",
         (c["min_ttc"], c["min_ttc_lo"], c["min_ttc_hi"], "median min TTC [s]", 1.0)),
        ("progress", "Progress against extra latency",
         "Mean distance driven per episode, with its bootstrap 95% interval",
         (c["progress"], c["progress_lo"], c["progress_hi"], "mean progress [m]", 1.0)))
    for name, title, what, metric in outcomes:
        add(name, title,
            f"{what}, in realtime runs with a constant delay added to every decision; dotted: "
            "lockstep, where the world waits. Hazard scenarios count critical episodes only.",
            plots.outcome_vs_extra(summary, stacks, scenarios, colors, metric, titles=titles,
                                   empty=empty))
    return figures, notes


# ----------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` wrote."""

    html: Path
    markdown: Path
    images: tuple[Path, ...]
    sentences: tuple[str, ...]


def _settings_line(meta: Mapping[str, Any]) -> str:
    config = meta.get("config") or {}
    if not config:
        return ""
    parts = []
    for key, label in (("stacks", "stacks"), ("scenarios", "scenarios"),
                       ("episodes", "episodes per cell"), ("seed", "first seed"),
                       ("latency", "latency"), ("latency_scale", "latency scale"),
                       ("extra_latency_s", "extra latency [s]"),
                       ("budget_s", "budget [s]"), ("execution", "execution"),
                       ("backend", "backend")):
        if key in config:
            value = config[key]
            if isinstance(value, Mapping):                   # per-stack latency
                value = [f"{name} {spec}" for name, spec in value.items()]
            value = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            parts.append(f"{label}: {value}")
    if _finite(meta.get("wall_s")):
        parts.append(f"wall time: {float(meta['wall_s']):.0f} s")
    return "; ".join(parts)


DECISION_TITLE = "Decision age and rate (no extra delay, mean over scenarios)"

_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid
#ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}td{white-space:nowrap}
img{max-width:100%}figure{margin:1.5em 0}figcaption{font-size:13px;color:#555}
.settings{color:#555;font-size:13px}video{max-width:100%}"""


def write_report(out_dir: str | os.PathLike, title: str = "reflexdrive compare") -> ReportFiles:
    """Write `report.html` and `report.md` (and its PNGs) into a compare folder.

    Args:
        out_dir: the folder `reflexdrive compare --out` wrote.
        title: the report's heading.

    Raises:
        FileNotFoundError: `episodes.csv` or `summary.csv` is missing.
    """
    out = Path(out_dir)
    tables = read_tables(out)
    summary = tables.summary
    sentences = summary_sentences(summary)
    stacks = _ordered(summary["stack"], ("staged",))
    rows = headline_rows(summary, stacks)
    figures, notes = build_figures(tables)
    settings = _settings_line(tables.meta)

    images = []
    for figure in figures:
        path = out / f"report_{figure.name}.png"
        atomic_write(path, lambda stream, data=figure.png: stream.write(data), mode="wb")
        images.append(path)

    md = [f"# {title}", ""]
    if settings:
        md += [settings, ""]
    md += ["## Summary", ""] + [f"- {s}" for s in sentences] + [""]
    md += ["## What the numbers mean", ""] + [f"- **{term}**: {text}"
                                              for term, text in DEFINITIONS] + [""]
    md += ["## Headline (each stack's own latency, no extra delay)", "",
           _markdown_table(HEADLINE_HEADER, rows), ""]
    decisions = decision_rows(summary, stacks)
    if decisions:
        md += [f"## {DECISION_TITLE}", "", _markdown_table(DECISION_HEADER, decisions), ""]
    for figure, path in zip(figures, images):
        md += [f"## {figure.title}", "", f"![{figure.title}]({path.name})", "",
               figure.caption, ""]
    if notes:
        md += ["## Not drawn", ""] + [f"- {n}" for n in notes] + [""]
    if tables.videos:
        md += ["## Videos", ""] + [f"- [{Path(v).name}]({v})" for v in tables.videos] + [""]
    atomic_write(out / MARKDOWN_FILE, lambda stream: stream.write("\n".join(md)))

    body = [f"<h1>{html.escape(title)}</h1>"]
    if settings:
        body.append(f"<p class='settings'>{html.escape(settings)}</p>")
    body.append("<h2>Summary</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>"
                                                 for s in sentences) + "</ul>")
    body.append("<h2>What the numbers mean</h2><ul class='definitions'>" + "".join(
        f"<li><b>{html.escape(term)}</b>: {html.escape(text)}</li>"
        for term, text in DEFINITIONS) + "</ul>")
    body.append("<h2>Headline (each stack's own latency, no extra delay)</h2>"
                + _html_table(HEADLINE_HEADER, rows))
    if decisions:
        body.append(f"<h2>{html.escape(DECISION_TITLE)}</h2>"
                    + _html_table(DECISION_HEADER, decisions))
    for figure in figures:
        data = base64.b64encode(figure.png).decode("ascii")
        body.append(f"<h2>{html.escape(figure.title)}</h2><figure><img alt='"
                    f"{html.escape(figure.title)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")
    if notes:
        body.append("<h2>Not drawn</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>"
                                                       for n in notes) + "</ul>")
    if tables.videos:
        body.append("<h2>Videos</h2>" + "".join(
            f"<figure><video controls preload='none' src='{html.escape(v)}'></video>"
            f"<figcaption><a href='{html.escape(v)}'>{html.escape(Path(v).name)}</a>"
            f"</figcaption></figure>" for v in tables.videos))
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    atomic_write(out / HTML_FILE, lambda stream: stream.write(page))
    return ReportFiles(out / HTML_FILE, out / MARKDOWN_FILE, tuple(images), tuple(sentences))


__all__ = ["COMPARE_FILE", "CompareTables", "DECISION_COLUMNS", "EPISODE_COLUMNS",
           "GROUP", "HEADLINE_HEADER", "LatencyCost", "ReportFiles", "SUMMARY_COLUMNS",
           "DEFINITIONS", "NO_CRITICAL", "RATED", "build_figures", "criticality_sentences",
           "fastest", "headline_rows", "latency_cost", "rates_over", "with_rated",
           "latency_cost_sentences", "read_tables", "stage_table", "summary_sentences",
           "write_report"]
