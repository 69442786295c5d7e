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

The column names of the input tables live in one place, the constants below
(`SUMMARY_COLUMNS`, `EPISODE_COLUMNS`, `DECISION_COLUMNS`), so a renamed column is a
one-line change. They follow `reflexdrive.compare.summary` and `reflexdrive.compare.experiment`.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from reflexdrive.common.files import atomic_write
from reflexdrive.compare.summary import GROUP, has_hazard, rated
from reflexdrive.report import plots
from reflexdrive.run.metrics import ReactionConfig

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
}
"""Logical name -> `summary.csv` column (`reflexdrive.compare.summary`). The group columns are
`reflexdrive.compare.summary.GROUP`: stack, scenario, mode, extra_latency_s."""

EPISODE_COLUMNS: dict[str, str] = {"reaction": "reaction_time_s",
                                   "brake_onset": "brake_onset_s", "critical": "critical"}
"""Logical name -> `episodes.csv` column (besides the group columns)."""

DECISION_COLUMNS: dict[str, str] = {"latency": "latency_s", "stage_prefix": "latency_",
                                    "stage_suffix": "_s", "extra_stage": "extra"}
"""`decisions.csv`: the total latency column, and per-stage columns
`latency_<stage>_s` (the stage "extra" is the compare's added delay, not the stack's)."""

REALTIME, LOCKSTEP = "realtime", "lockstep"

RATED = "rated"
"""Column `read_tables` adds to the episodes: True where the episode counts in the rates
(`reflexdrive.compare.summary.rated`)."""


def _definitions(config: ReactionConfig = ReactionConfig()) -> tuple[tuple[str, str], ...]:
    return (
        ("Reaction time (counterfactual, the primary measure)",
         "every hazard episode also runs as its twin: the same seed, stack, sensor noise and "
         "latency draws, with the hazard removed. The reaction time is the first moment at "
         "or after the hazard onset at which the command the stack applies departs from its "
         f"twin's by at least {config.accel_departure_mps2:g} m/s\u00b2 or "
         f"{config.steer_departure_rad:g} rad, minus the onset. It measures when the stack "
         "responded, however gently; it splits into the wait for the first tick, the ticks "
         "needed to notice, and the compute of the responding decision."),
        ("Brake onset",
         "the first moment after the onset at which the applied command brakes harder than "
         f"{config.decel_threshold_mps2:g} m/s\u00b2 (or steers away by "
         f"{config.steer_threshold_rad:g} rad), minus the onset: the older threshold "
         "measure, shown beside the reaction time. It measures braking style as much as "
         "reaction: a stack that eases off early brakes hard late, or never."),
        ("Critical episode",
         "a hazard episode whose hazard, as it stood at the onset (gap, time-to-collision, "
         "headway and the deceleration needed to avoid contact, recorded per episode), "
         "needed a response within the episode. Collision rates, reaction and brake-onset "
         "statistics of a hazard scenario are over its critical episodes; the others are "
         "counted in the table, not in the rates. Scenarios without a hazard (highway, "
         "merge, ...) count every episode."),
    )


DEFINITIONS = _definitions()
"""`(term, meaning)` pairs of the report's "What the numbers mean" (the default thresholds
of `reflexdrive.run.metrics.ReactionConfig`)."""


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


def _pct(value: float) -> str:
    return f"{float(value) * 100:.0f}%" if _finite(value) else "-"


def _pct_interval(estimate: float, low: float, high: float) -> str:
    if not _finite(estimate):
        return "-"
    return f"{_pct(estimate)} [{_pct(low)}, {_pct(high)}]"


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
    return CompareTables(with_rated(_read_csv(out / EPISODES_FILE)),
                         _read_csv(out / SUMMARY_FILE), decisions, meta, videos)


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


def _reference(summary: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows at the stacks' own latency: realtime at extra 0 (lockstep if no realtime)."""
    base = summary[summary["extra_latency_s"] == 0]
    if (base["mode"] == REALTIME).any():
        return base[base["mode"] == REALTIME], REALTIME
    return base[base["mode"] == LOCKSTEP], LOCKSTEP


# ----------------------------------------------------------------------------- words


def _reaction_interval(row: pd.Series, c: Mapping[str, str]) -> str:
    return _ms_interval(row[c["reaction_mean"]], row[c["reaction_mean_lo"]],
                        row[c["reaction_mean_hi"]])


def _join(names: Sequence[str], word: str = "and") -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" {word} " + names[-1]


def criticality_sentences(summary: pd.DataFrame) -> list[str]:
    """How many episodes of each hazard scenario were critical (over every stack, mode and
    latency), said once: the scenarios with none (their rates are empty), those with some
    left out, and those whose criticality was not recorded (rated over all episodes)."""
    c = SUMMARY_COLUMNS
    scopes = rates_over(summary)
    sentences, none, unrecorded, counts = [], [], [], []
    for scenario, scope in scopes.items():
        rows = summary[summary["scenario"] == scenario]
        total = int(rows[c["episodes"]].sum())
        if scope == "unrecorded":
            unrecorded.append(scenario)
        elif scope == "critical":
            critical = int(rows[c["critical"]].sum())
            if critical == 0:
                none.append(f"{scenario} (0 of {total})")
            else:
                counts.append(f"{scenario} {critical} of {total}")
    if none:
        sentences.append(f"No episode of {_join(none, 'or')} was critical: no collision rate, "
                         "reaction or brake-onset statistic is given for "
                         f"{'it' if len(none) == 1 else 'them'}; the table counts the "
                         "episodes as non-critical.")
    if counts:
        sentences.append("Critical episodes (all stacks, modes and latencies): "
                         + "; ".join(counts) + ". Rates are over these; the others are "
                         "counted in the table, not in the rates.")
    if unrecorded:
        sentences.append(f"{_join(unrecorded)}: the episodes carry no criticality (a run "
                         "from before it was recorded), so rates are over all episodes.")
    return sentences


def fastest(summary: pd.DataFrame, columns: Mapping[str, str] = SUMMARY_COLUMNS
            ) -> list[str]:
    """One sentence per hazard scenario with rated episodes: the stack with the lowest mean
    reaction time at its own latency (realtime at extra 0, else lockstep), against the
    runner-up, with both 95% intervals and whether they overlap; then one line on how
    often each stack won. Scenarios without a hazard, or without a critical episode
    (`criticality_sentences` says so), are left out."""
    rows, mode = _reference(summary)
    c = columns
    scopes = rates_over(summary)
    sentences = []
    wins: dict[str, list[str]] = {}
    scenarios = [s for s in _ordered(rows["scenario"]) if scopes.get(s) != "all"
                 and sum(_rated_count(r) for _, r in rows[rows["scenario"] == s].iterrows())]
    for scenario in scenarios:
        group = rows[rows["scenario"] == scenario]
        reacting = group[group[c["reaction_mean"]].map(_finite)]
        silent = [s for s in group["stack"] if s not in set(reacting["stack"])]
        tail = (" " + ", ".join(silent) + " never reacted.") if silent else ""
        if reacting.empty:
            sentences.append(f"{scenario}: no stack reacted to the hazard ({mode}).")
            continue
        ranked = reacting.sort_values(c["reaction_mean"], kind="stable")
        best = ranked.iloc[0]
        wins.setdefault(best["stack"], []).append(scenario)
        kind = " critical" if scopes.get(scenario) == "critical" else ""
        best_text = (f"{best['stack']} reacted fastest ({mode}, its own latency): mean "
                     f"{_reaction_interval(best, c)} over {int(best[c['reacted']])} of "
                     f"{_rated_count(best)}{kind} episodes")
        if len(ranked) == 1:
            sentences.append(f"{scenario}: {best_text}; the only stack that reacted.{tail}")
            continue
        second = ranked.iloc[1]
        gap = float(second[c["reaction_mean"]]) - float(best[c["reaction_mean"]])
        separated = float(best[c["reaction_mean_hi"]]) < float(second[c["reaction_mean_lo"]])
        verdict = ("the intervals do not overlap" if separated else
                   "the intervals overlap: these episodes do not separate the two")
        sentences.append(
            f"{scenario}: {best_text}, {_ms(gap)} ms faster than {second['stack']} "
            f"({_reaction_interval(second, c)}); "
            f"{verdict}.{tail}")
    if len(wins) and len(sentences) > 1:
        parts = [f"{stack} in {len(s)} of {len(scenarios)} "
                 f"({', '.join(s)})" for stack, s in
                 sorted(wins.items(), key=lambda item: -len(item[1]))]
        sentences.append("Fastest: " + "; ".join(parts) + ".")
    return sentences


@dataclass(frozen=True)
class LatencyCost:
    """Where extra latency started to cost collisions, for one stack on one scenario.

    Attributes:
        stack, scenario: the pair.
        base_rate, base_low, base_high: collision rate at extra 0 and its 95% interval.
        extra_s: the smallest extra latency whose collision rate exceeds `base_high`
            [s]; None when none of the swept ones does.
        rate, low, high: the collision rate there and its interval (NaN when None).
        max_extra_s: the largest extra latency swept [s].
    """

    stack: str
    scenario: str
    base_rate: float
    base_low: float
    base_high: float
    extra_s: float | None
    rate: float
    low: float
    high: float
    max_extra_s: float


def latency_cost(summary: pd.DataFrame, columns: Mapping[str, str] = SUMMARY_COLUMNS
                 ) -> list[LatencyCost]:
    """Per stack and scenario (realtime), the smallest extra latency at which the collision
    rate rose above the upper end of the zero-extra 95% interval."""
    c = columns
    frame = summary[summary["mode"] == REALTIME]
    costs = []
    for stack in _ordered(frame["stack"]):
        for scenario in _ordered(frame["scenario"]):
            rows = frame[(frame["stack"] == stack) & (frame["scenario"] == scenario)]
            rows = rows.sort_values("extra_latency_s", kind="stable")
            base = rows[rows["extra_latency_s"] == 0]
            later = rows[rows["extra_latency_s"] > 0]
            if base.empty or later.empty:
                continue
            base = base.iloc[0]
            if not _finite(base[c["collision_rate"]]):
                continue                                     # no rated episode at +0
            high = float(base[c["collision_rate_hi"]])
            above = later[later[c["collision_rate"]].astype(float) > high]
            hit = above.iloc[0] if len(above) else None
            nan = math.nan
            costs.append(LatencyCost(
                stack=stack, scenario=scenario, base_rate=float(base[c["collision_rate"]]),
                base_low=float(base[c["collision_rate_lo"]]), base_high=high,
                extra_s=None if hit is None else float(hit["extra_latency_s"]),
                rate=nan if hit is None else float(hit[c["collision_rate"]]),
                low=nan if hit is None else float(hit[c["collision_rate_lo"]]),
                high=nan if hit is None else float(hit[c["collision_rate_hi"]]),
                max_extra_s=float(later["extra_latency_s"].max())))
    return costs


def latency_cost_sentences(costs: Sequence[LatencyCost]) -> list[str]:
    """One sentence per stack: from which extra latency its collision rate rose above the
    zero-extra 95% interval, scenario by scenario."""
    sentences = []
    for stack in _ordered([cost.stack for cost in costs]):
        mine = [cost for cost in costs if cost.stack == stack]
        rose = sorted((cost for cost in mine if cost.extra_s is not None),
                      key=lambda cost: cost.extra_s)
        held = [cost for cost in mine if cost.extra_s is None]
        reach = _extra_ms(max((cost.max_extra_s for cost in held), default=0.0))
        held_text = f"up to {reach} on " + ", ".join(cost.scenario for cost in held)
        if not rose:
            sentences.append(f"{stack}: the collision rate stayed within its zero-extra 95% "
                             f"interval {held_text}.")
            continue
        parts = [f"from {_extra_ms(cost.extra_s)} on {cost.scenario} "
                 f"({_pct_interval(cost.rate, cost.low, cost.high)} against "
                 f"{_pct_interval(cost.base_rate, cost.base_low, cost.base_high)} at +0 ms)"
                 for cost in rose]
        if held:
            parts.append("not " + held_text)
        sentences.append(f"{stack}: the collision rate rose above its zero-extra 95% "
                         "interval " + "; ".join(parts) + ".")
    return sentences


def summary_sentences(summary: pd.DataFrame) -> list[str]:
    """The report's summary in words: `criticality_sentences`, `fastest`, then
    `latency_cost_sentences`."""
    sentences = criticality_sentences(summary) + fastest(summary)
    costs = latency_cost(summary)
    if costs:
        sentences += latency_cost_sentences(costs)
    elif (summary["extra_latency_s"] > 0).any():
        if not ((summary["mode"] == REALTIME) & (summary["extra_latency_s"] == 0)).any():
            sentences.append("No realtime run at extra 0 to compare the extra latencies "
                             "with.")
    else:
        sentences.append("This compare swept no extra latency (--extra-latency 0 only).")
    return sentences


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
    frame = summary[summary["extra_latency_s"] == 0]
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
    frame = decisions[decisions["extra_latency_s"] == 0]
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
        own = decisions[decisions["extra_latency_s"] == 0]
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
                       ("latency", "latency"), ("extra_latency_s", "extra latency [s]"),
                       ("budget_s", "budget [s]"), ("backend", "backend")):
        if key in config:
            value = config[key]
            value = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            parts.append(f"{label}: {value}")
    if _finite(meta.get("wall_s")):
        parts.append(f"wall time: {float(meta['wall_s']):.0f} s")
    return "; ".join(parts)


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
