"""The report's words: criticality, the fastest stack per scenario, where extra latency
started to cost collisions, and what the numbers mean.

Every sentence is computed from `summary.csv` rows (`reflexdrive.compare.summary`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd

from reflexdrive.report.reading import (
    REALTIME,
    SUMMARY_COLUMNS,
    _extra_ms,
    _finite,
    _ms,
    _ms_interval,
    _ordered,
    _pct_interval,
    _rated_count,
    _reference,
    base_stack,
    own_latency,
    rates_over,
    unscaled,
)
from reflexdrive.run.metrics import ReactionConfig


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
    runner-up among the other stacks (another execution of the same stack is not a
    rival: `execution_sentences` compares those), with both 95% intervals and whether
    they overlap; then one line on how often each stack won. Scenarios without a hazard,
    or without a critical episode (`criticality_sentences` says so), are left out."""
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
        rivals = ranked[[base_stack(r) != base_stack(best) for _, r in ranked.iterrows()]]
        if rivals.empty:
            sentences.append(f"{scenario}: {best_text}; the only stack that reacted.{tail}")
            continue
        second = rivals.iloc[0]
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


def execution_sentences(summary: pd.DataFrame,
                        columns: Mapping[str, str] = SUMMARY_COLUMNS) -> list[str]:
    """Per stack that ran both executions (rows `labelled` "STACK sequential" and "STACK
    pipelined"), realtime at scale 1: at which extra latencies and scenarios one execution
    reacted faster with separated 95% intervals, by how much; and where they did not."""
    c = columns
    if "execution" not in summary:
        return []
    frame = unscaled(summary[summary["mode"] == REALTIME])
    frame = frame[frame[c["reaction_mean"]].map(_finite)]
    bases = [base_stack(row) for _, row in frame.iterrows()]
    frame = frame.assign(_base=bases)
    sentences = []
    for stack in _ordered(bases):
        mine = frame[frame["_base"] == stack]
        if mine["execution"].nunique() < 2:
            continue
        separated, overlapping = [], []
        for (scenario, extra), pair in mine.groupby(["scenario", "extra_latency_s"],
                                                    sort=False):
            if pair["execution"].nunique() < 2:
                continue
            ranked = pair.sort_values(c["reaction_mean"], kind="stable")
            fast, slow = ranked.iloc[0], ranked.iloc[-1]
            where = f"{scenario} {_extra_ms(extra)}"
            if float(fast[c["reaction_mean_hi"]]) < float(slow[c["reaction_mean_lo"]]):
                gap = float(slow[c["reaction_mean"]]) - float(fast[c["reaction_mean"]])
                separated.append(f"{fast['execution']} on {where} by {_ms(gap)} ms "
                                 f"({_ms(fast[c['reaction_mean']])} against "
                                 f"{_ms(slow[c['reaction_mean']])} ms)")
            else:
                overlapping.append(where)
        if not separated and not overlapping:
            continue
        pairs = len(separated) + len(overlapping)
        text = f"{stack}, pipelined against sequential: "
        if separated:
            text += "reacted faster " + "; ".join(separated)
            if overlapping:
                text += (f"; the reaction-time intervals overlap in the other "
                         f"{len(overlapping)} of {pairs} scenario x extra latency cells")
        else:
            text += (f"the reaction-time intervals overlap in all {pairs} scenario x extra "
                     "latency cells")
        sentences.append(text + ".")
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
    frame = unscaled(summary[summary["mode"] == REALTIME])     # the extra-latency curve
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
            if not _rated_count(base) or not _finite(base[c["collision_rate"]]):
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


def _digits(cost: LatencyCost) -> int:
    """Decimals of a cost's percentages: 1 where whole percent would print the rate equal
    to the bound it rose above (6% against [0%, 6%])."""
    return 1 if f"{cost.rate * 100:.0f}" == f"{cost.base_high * 100:.0f}" else 0


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
                 f"({_pct_interval(cost.rate, cost.low, cost.high, _digits(cost))} against "
                 f"{_pct_interval(cost.base_rate, cost.base_low, cost.base_high, _digits(cost))}"
                 " at +0 ms)" for cost in rose]
        if held:
            parts.append("not " + held_text)
        sentences.append(f"{stack}: the collision rate rose above its zero-extra 95% "
                         "interval " + "; ".join(parts) + ".")
    return sentences


def summary_sentences(summary: pd.DataFrame) -> list[str]:
    """The report's summary in words: `criticality_sentences`, `fastest`,
    `execution_sentences`, then `latency_cost_sentences`."""
    sentences = criticality_sentences(summary) + fastest(summary) + \
        execution_sentences(summary)
    costs = latency_cost(summary)
    if costs:
        sentences += latency_cost_sentences(costs)
    elif (summary["extra_latency_s"] > 0).any():
        if not (own_latency(summary)["mode"] == REALTIME).any():
            sentences.append("No realtime run at extra 0 to compare the extra latencies "
                             "with.")
    else:
        sentences.append("This compare swept no extra latency (--extra-latency 0 only).")
    return sentences
