"""`summary.csv` of a compare: one row per stack x scenario x mode x execution x extra
latency x scale.

Intervals are 95% by default:

- **Bootstrap percentile intervals** for the reaction-time mean, p50 and p95, the median
  min TTC and min gap, and the mean progress, jerk and peak deceleration: `resamples`
  resamples of the group's episodes (drawn with replacement, all statistics of a sample
  from the same resample indices, vectorised in numpy), the interval being the 2.5th and
  97.5th percentiles of the resampled statistic. The generator of a group is
  `np.random.default_rng([seed, crc32(group key)])`: the same seed gives the same
  intervals, and a group's interval does not depend on which other groups exist. Reaction
  statistics use only the episodes in which the stack reacted. A constant column gives a
  zero-width interval; no value gives NaN.
- **Wilson score interval** for the collision rate (a proportion): exact formula, no
  resampling, and unlike a bootstrap it is not `[0, 0]` when no episode collided.

**Which episodes count** (`rated_episodes`): on a scenario with a hazard, only the
*critical* episodes (`episodes.csv` column `critical`: the hazard, as it stood at onset,
needed a response within the episode; docs/ARCHITECTURE.md, "Criticality"); the others are
counted in `noncritical_episodes`, not hidden, and left out of every rate and episode
statistic (reaction, brake onset, collisions, min TTC and gap, progress, jerk, peak
deceleration). A hazard-free scenario (highway, merge, ...) rates all its episodes. An
`episodes.csv` without a `critical` column (written before criticality was recorded)
rates all episodes too, and says so in `rates_over`. The latency columns describe the
stack's compute and pool every episode.

Columns (units in the names: `_s` seconds, `_m` metres, `_mps2` m/s^2, `_mps3` m/s^3;
`_lo`/`_hi` the interval's bounds of the column before them):

- `stack`, `scenario`, `mode`, `execution`, `extra_latency_s`, `latency_scale`: the group
  (`execution`: sequential or pipelined; the scale `K` multiplies the stack's own latency,
  the extra is added after: `own x K + extra`).
- `latency`: latency spec the cells ran with (`OWN*K+EXTRA`).
- `envs`: envs run side by side in each cell: at most that many decide in one `act` call
  (end-to-end stacks are padded to exactly that many).
- `budget_s`: compute budget per tick.
- `episodes`: episodes in the group, all of them.
- `rates_over`: which episodes the rates are over (`RATES_OVER`): "critical" (a hazard
  scenario), "all" (a scenario without a hazard) or "unrecorded" (a hazard scenario whose
  `episodes.csv` has no `critical` column: all episodes).
- `critical_episodes`, `noncritical_episodes`: hazard episodes that were critical and that
  were not (both 0 without a hazard; NaN when unrecorded).
- `rated_episodes`: the episodes every rate and episode statistic below is over; 0 when
  no episode of a hazard scenario was critical (the rates are then NaN).
- `reacted`, `reaction_rate`: rated episodes with a (counterfactual) reaction to the
  hazard, and their share.
- `reaction_time_{mean,p50,p95}_s` (+ `_lo_s`, `_hi_s`): reaction time over reacting
  episodes.
- `reaction_{wait,notice,compute}_mean_s`: its decomposition (means; they add up to the
  mean).
- `braked`, `brake_onset_p50_s` (+ `_lo_s`, `_hi_s`): rated episodes with a brake onset
  (the threshold measure, `brake_onset_s`), and its median over them.
- `collisions`, `collision_rate` (+ `_lo`, `_hi`): ego collisions; Wilson interval.
- `min_ttc_p50_s` (+ `_lo_s`, `_hi_s`): median over episodes of the minimum TTC after onset
  (inf: never closing).
- `min_gap_p50_m` (+ `_lo_m`, `_hi_m`): median of the minimum gap after onset.
- `progress_mean_m` (+ `_lo_m`, `_hi_m`): distance driven per episode.
- `jerk_mean_mps3` (+ `_lo_mps3`, `_hi_mps3`): mean absolute jerk per episode, averaged.
- `peak_decel_mean_mps2`: peak deceleration per episode, averaged.
- `decisions`: decisions (observed ticks) pooled for the latency columns.
- `latency_p50_s`, `latency_p99_s`: percentiles of the latency `L_k` the clock charged each
  decision, pooled over the group's decisions: the stack's own latency plus
  `extra_latency_s`. With `measured` latency it is the wall time of the stack's batched
  `act` call (for up to `envs` envs; 1 by default with measured latency), charged in full to
  every env of the batch.
- `stack_latency_p50_s`, `stack_latency_p99_s`: the same without the extra delay: the
  stack's own latency (times `latency_scale`).
- `overrun_rate`: share of decisions whose `L_k` exceeded the budget (or a stage budget).
- `dropped_frames_mean`: frames dropped per episode (ticks skipped while busy).
- `decision_age_mean_ms`: mean age of the commands that took effect, from the tick the
  decision observed to its command landing [ms] (sequential: its latency; pipelined: its
  stages plus waits), averaged over episodes (all, as the latency columns).
- `decisions_per_s`: commands that took effect per second, averaged over episodes (the
  decision rate: the slowest stage sets it when pipelined).

Without per-decision rows (`decisions=None`), the latency columns fall back to the median
of the episodes' own p50 / p99 and the mean of their overrun rates, and `decisions` is NaN.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from reflexdrive.envs.scenarios import SCENARIOS

GROUP = ["stack", "scenario", "mode", "execution", "extra_latency_s", "latency_scale"]
"""The columns a summary row stands for."""

SEQUENTIAL = "sequential"
"""The execution of tables written before the execution axis (no `execution` column)."""

RATES_OVER = ("critical", "all", "unrecorded")
"""What a group's rates are over: its critical episodes (a hazard scenario), all episodes (a
scenario without a hazard), or all episodes because criticality was not recorded."""

Statistic = Callable[[np.ndarray], np.ndarray]
"""`(R, n)` resampled values -> `(R,)` statistic (axis 1), or `(n,)` -> scalar."""


def _mean(values: np.ndarray) -> np.ndarray:
    return values.mean(axis=-1)


def _median(values: np.ndarray) -> np.ndarray:
    return np.median(values, axis=-1)            # inf-safe (percentile's lerp is not)


def _p95(values: np.ndarray) -> np.ndarray:
    return np.percentile(values, 95, axis=-1)


def bootstrap(values: np.ndarray, statistics: Mapping[str, Statistic],
              rng: np.random.Generator, resamples: int = 2000, confidence: float = 0.95
              ) -> dict[str, tuple[float, float, float]]:
    """Point estimates and bootstrap percentile intervals of `statistics` of `values`.

    Args:
        values: `(n,)` one value per episode.
        statistics: name -> function over the last axis.
        rng: the generator the resample indices come from (one draw of `(resamples, n)`
            indices shared by all statistics).
        resamples: number of bootstrap resamples `R`.
        confidence: the interval's coverage, e.g. 0.95 (percentiles 2.5 and 97.5).

    Returns:
        name -> `(estimate, low, high)`; NaNs when `values` is empty.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {name: (math.nan, math.nan, math.nan) for name in statistics}
    index = rng.integers(0, values.size, size=(resamples, values.size))
    samples = values[index]                                       # (R, n)
    tail = 50.0 * (1.0 - confidence)
    result = {}
    for name, statistic in statistics.items():
        estimate = float(statistic(values))
        resampled = statistic(samples)                            # (R,)
        if np.isnan(resampled).any():
            low = high = math.nan
        else:
            low, high = np.percentile(resampled, [tail, 100.0 - tail], method="inverted_cdf")
        result[name] = (estimate, float(low), float(high))
    return result


def wilson_interval(successes: int, trials: int, confidence: float = 0.95
                    ) -> tuple[float, float]:
    """Wilson score interval of a proportion `successes / trials` (NaNs for 0 trials)."""
    if trials == 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = successes / trials
    z2n = z * z / trials
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / trials + z2n / (4.0 * trials)) / (1.0 + z2n)
    return max(0.0, centre - half), min(1.0, centre + half)


def group_rng(seed: int, key: tuple) -> np.random.Generator:
    """The bootstrap generator of one group: seeded by `seed` and the group's key."""
    return np.random.default_rng([int(seed), zlib.crc32("|".join(map(str, key)).encode())])


def has_hazard(scenario: str, hazard_onset_s: np.ndarray | pd.Series) -> bool:
    """Whether `scenario` has a hazard: its registered spec says so
    (`envs.scenarios.SCENARIOS`); a scenario not registered has one when any of its
    episodes had a hazard onset (`hazard_onset_s`, NaN without one)."""
    spec = SCENARIOS.get(str(scenario))
    if spec is not None:
        return spec.hazard != "none"
    return bool(np.isfinite(np.asarray(hazard_onset_s, dtype=np.float64)).any())


def flags(values: pd.Series) -> np.ndarray:
    """A boolean column as `(n,)` bools, whether it holds bools, 0/1 or the strings
    "True"/"False" (as a CSV reads back); missing values are False."""
    if values.dtype == bool:
        return values.to_numpy()
    return values.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).to_numpy(bool)


@dataclass(frozen=True)
class Rated:
    """Which episodes of a group the rates and episode statistics are over.

    Attributes:
        mask: `(n,)` True for a rated episode, in the group's row order.
        rates_over: one of `RATES_OVER`.
        critical: critical episodes (0 without a hazard, NaN when unrecorded).
        noncritical: hazard episodes that were not critical (likewise).
    """

    mask: np.ndarray
    rates_over: str
    critical: float
    noncritical: float


def rated(group: pd.DataFrame, scenario: str) -> Rated:
    """The rated episodes of `group` (rows of one scenario's `episodes.csv`): the critical
    ones on a hazard scenario, all of them on a hazard-free one or when `group` has no
    `critical` column."""
    n = len(group)
    onsets = group["hazard_onset_s"] if "hazard_onset_s" in group else np.full(n, np.nan)
    if not has_hazard(scenario, onsets):
        return Rated(np.ones(n, bool), "all", 0, 0)
    if "critical" not in group:
        return Rated(np.ones(n, bool), "unrecorded", math.nan, math.nan)
    critical = flags(group["critical"])
    return Rated(critical, "critical", int(critical.sum()), int(n - critical.sum()))


def _with_interval(row: dict, name: str, unit: str, estimate: tuple[float, float, float]
                   ) -> None:
    suffix = f"_{unit}" if unit else ""
    row[f"{name}{suffix}"], row[f"{name}_lo{suffix}"], row[f"{name}_hi{suffix}"] = estimate


def _finite_mean(frame: pd.DataFrame, name: str) -> float:
    """Mean of the finite values of column `name` (NaN without any, or without the column:
    episodes from before it)."""
    if name not in frame:
        return math.nan
    values = frame[name].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """`frame[name]` as floats; all NaN when the column is absent (an older episodes.csv)."""
    if name not in frame:
        return np.full(len(frame), math.nan)
    return frame[name].to_numpy(dtype=np.float64)


def summarize(episodes: pd.DataFrame, decisions: pd.DataFrame | None = None, *,
              seed: int = 0, resamples: int = 2000, confidence: float = 0.95
              ) -> pd.DataFrame:
    """The summary table of a compare's `episodes` (see the module docstring's columns).

    Args:
        episodes: rows of a compare's `episodes.csv` (the run schema plus `GROUP`,
            `envs`).
        decisions: rows of `decisions.csv` (per observed tick: `GROUP` and `latency_s`,
            `overrun`); None falls back to per-episode latency columns.
        seed: seed of the bootstrap generators.
        resamples: bootstrap resamples per group.
        confidence: coverage of every interval.
    """
    if episodes.empty:
        return pd.DataFrame(columns=GROUP)
    episodes, decisions = (_with_defaults(frame) for frame in (episodes, decisions))
    decision_groups = ({key: frame for key, frame in decisions.groupby(GROUP, sort=False)}
                       if decisions is not None and not decisions.empty else {})
    rows = []
    for key, group in episodes.groupby(GROUP, sort=False):
        row: dict = dict(zip(GROUP, key))
        rng = group_rng(seed, _rng_key(row))
        first = group.iloc[0]
        row["latency"] = first.get("latency")
        row["envs"] = first.get("envs")
        row["budget_s"] = first.get("budget_s")
        row["episodes"] = len(group)
        scope = rated(group, row["scenario"])
        row["rates_over"] = scope.rates_over
        row["critical_episodes"] = scope.critical
        row["noncritical_episodes"] = scope.noncritical
        everything = group
        group = group[scope.mask]
        count = len(group)
        row["rated_episodes"] = count
        reaction = _column(group, "reaction_time_s")
        reacted = reaction[np.isfinite(reaction)]
        row["reacted"] = int(reacted.size)
        row["reaction_rate"] = reacted.size / count if count else math.nan
        stats = bootstrap(reacted, {"mean": _mean, "p50": _median, "p95": _p95}, rng,
                          resamples, confidence)
        for name in ("mean", "p50", "p95"):
            _with_interval(row, f"reaction_time_{name}", "s", stats[name])
        for part in ("wait", "notice", "compute"):
            values = _column(group, f"reaction_{part}_s")
            values = values[np.isfinite(values)]
            row[f"reaction_{part}_mean_s"] = float(values.mean()) if values.size else math.nan
        onset = _column(group, "brake_onset_s")
        braked = onset[np.isfinite(onset)]
        row["braked"] = int(braked.size)
        _with_interval(row, "brake_onset_p50", "s",
                       bootstrap(braked, {"p50": _median}, rng, resamples, confidence)["p50"])
        collided = flags(group["collided"])
        row["collisions"] = int(collided.sum())
        row["collision_rate"] = float(collided.mean()) if count else math.nan
        row["collision_rate_lo"], row["collision_rate_hi"] = wilson_interval(
            int(collided.sum()), count, confidence)
        for column, name, unit, statistic in (
                ("min_ttc_s", "min_ttc_p50", "s", _median),
                ("min_gap_m", "min_gap_p50", "m", _median),
                ("progress_m", "progress_mean", "m", _mean),
                ("mean_abs_jerk_mps3", "jerk_mean", "mps3", _mean)):
            values = group[column].to_numpy(dtype=np.float64)
            values = values[~np.isnan(values)]
            _with_interval(row, name, unit,
                           bootstrap(values, {name: statistic}, rng, resamples,
                                     confidence)[name])
        row["peak_decel_mean_mps2"] = float(group["peak_decel_mps2"].mean()) if count \
            else math.nan
        group = everything                              # latency: the stack's compute, all
        extra = float(row["extra_latency_s"])
        ticks = decision_groups.get(key)
        if ticks is not None and len(ticks):
            latency = ticks["latency_s"].to_numpy(dtype=np.float64)
            row["decisions"] = len(latency)
            row["latency_p50_s"], row["latency_p99_s"] = np.percentile(latency, [50, 99])
            own = latency - extra
            row["stack_latency_p50_s"], row["stack_latency_p99_s"] = np.percentile(own, [50, 99])
            row["overrun_rate"] = float(ticks["overrun"].astype(bool).mean())
        else:
            row["decisions"] = math.nan
            row["latency_p50_s"] = float(group["latency_p50_s"].median())
            row["latency_p99_s"] = float(group["latency_p99_s"].median())
            row["stack_latency_p50_s"] = row["latency_p50_s"] - extra
            row["stack_latency_p99_s"] = row["latency_p99_s"] - extra
            row["overrun_rate"] = float(group["overrun_rate"].mean())
        row["dropped_frames_mean"] = float(group["dropped_frames"].mean())
        row["decision_age_mean_ms"] = _finite_mean(group, "decision_age_s") * 1e3
        row["decisions_per_s"] = _finite_mean(group, "decision_rate_hz")
        rows.append(row)
    return pd.DataFrame(rows)


def _with_defaults(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """`frame` with `latency_scale` 1 and `execution` sequential where it has no such
    column (written before it)."""
    if frame is None:
        return frame
    if "latency_scale" not in frame:
        frame = frame.assign(latency_scale=1.0)
    if "execution" not in frame:
        frame = frame.assign(execution=SEQUENTIAL)
    return frame


def _rng_key(row: Mapping[str, object]) -> tuple:
    """The key a group's bootstrap generator is seeded with: the group's values, without
    the execution when sequential and the scale when 1, so the groups of a compare from
    before those columns keep their intervals."""
    key = [row[name] for name in GROUP if name not in ("execution", "latency_scale")]
    if row["execution"] != SEQUENTIAL:
        key.insert(GROUP.index("execution"), row["execution"])
    if row["latency_scale"] != 1.0:
        key.append(row["latency_scale"])
    return tuple(key)


def headline(summary: pd.DataFrame) -> str:
    """The summary as a short fixed-width table (what `reflexdrive compare` prints).

    `rated` is the episodes the rates are over: "8/10 crit" on a hazard scenario (8 of 10
    critical), "10 all" without a hazard or without recorded criticality."""
    if summary.empty:
        return "(no episodes)"

    def interval(row, name: str) -> str:
        mean = row.get(f"{name}_s", math.nan)
        if not np.isfinite(mean):
            return "-"
        return (f"{mean * 1e3:.0f} [{row[f'{name}_lo_s'] * 1e3:.0f}, "
                f"{row[f'{name}_hi_s'] * 1e3:.0f}]")

    def share(value: float) -> str:
        return f"{value:.0%}" if np.isfinite(value) else "-"

    def collisions(row) -> str:
        if not np.isfinite(row.collision_rate):
            return "-"
        return (f"{row.collision_rate:.0%} [{row.collision_rate_lo:.0%}, "
                f"{row.collision_rate_hi:.0%}]")

    def scope(row) -> str:
        if row.get("rates_over", "all") == "critical":
            return f"{int(row['rated_episodes'])}/{int(row['episodes'])} crit"
        return f"{int(row['episodes'])} all"

    rows = [row for _, row in summary.iterrows()]
    table = pd.DataFrame({
        "stack": summary["stack"], "scenario": summary["scenario"], "mode": summary["mode"],
        "extra_ms": (summary["extra_latency_s"] * 1e3).round(1),
        "rated": [scope(row) for row in rows],
        "reacted": summary["reaction_rate"].map(share),
        "reaction_ms [95% CI]": [interval(row, "reaction_time_mean") for row in rows],
        "brake_onset_p50_ms": [interval(row, "brake_onset_p50") for row in rows],
        "collisions [95% CI]": [collisions(row) for row in summary.itertuples()],
        "min_ttc_s": summary["min_ttc_p50_s"].map(lambda x: f"{x:.2f}"),
        "own_latency_p50_ms": (summary["stack_latency_p50_s"] * 1e3).map(lambda x: f"{x:.1f}"),
        "overruns": summary["overrun_rate"].map(share),
    })
    if "latency_scale" in summary and summary["latency_scale"].nunique() > 1:
        table.insert(4, "scale", summary["latency_scale"].map(lambda k: f"x{k:g}"))
    if "execution" in summary and summary["execution"].nunique() > 1:
        table.insert(3, "execution", summary["execution"])
    return table.to_string(index=False)
