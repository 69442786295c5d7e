"""`compare.summary` over critical episodes: hand-made episodes with known rates and medians.

Each frame is built so that the answer is countable by eye: which episodes are critical,
which reacted or braked, which collided.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from reflexdrive.compare.summary import (
    RATES_OVER,
    flags,
    has_hazard,
    headline,
    rated,
    summarize,
    wilson_interval,
)

NAN = math.nan


def episodes(scenario: str, critical, reaction, brake_onset, collided, *, stack="staged",
             overrun=None, onset=2.0) -> pd.DataFrame:
    """One group's episodes (`critical=None` leaves the column out, as an older CSV)."""
    n = len(reaction)
    frame = pd.DataFrame({
        "stack": stack, "scenario": scenario, "mode": "realtime", "extra_latency_s": 0.0,
        "latency": "fixed:0.03", "envs": 1, "budget_s": 0.1, "seed": range(n),
        "hazard_onset_s": onset, "reaction_time_s": reaction,
        "reaction_wait_s": [0.05 if np.isfinite(r) else NAN for r in reaction],
        "reaction_notice_s": [r - 0.08 if np.isfinite(r) else NAN for r in reaction],
        "reaction_compute_s": [0.03 if np.isfinite(r) else NAN for r in reaction],
        "brake_onset_s": brake_onset, "collided": collided, "min_ttc_s": 3.0,
        "min_gap_m": np.arange(n, dtype=float), "progress_m": 100.0, "peak_decel_mps2": 4.0,
        "mean_abs_jerk_mps3": 1.0, "latency_p50_s": 0.03, "latency_p99_s": 0.03,
        "overrun_rate": overrun if overrun is not None else 0.0, "dropped_frames": 0})
    if critical is not None:
        frame.insert(9, "critical", critical)
    return frame


LEAD_BRAKE = episodes(
    "lead-brake",
    critical=[True, True, True, True, False, False],
    reaction=[0.2, 0.4, 0.6, NAN, 0.1, 5.0],
    brake_onset=[1.0, 1.2, NAN, 1.4, 0.3, 0.3],
    collided=[True, False, False, False, True, True],
    overrun=[0.0, 0.0, 0.0, 0.0, 0.3, 0.3])
"""4 critical episodes: 3 reacted (0.2, 0.4, 0.6 s), 3 braked (1.0, 1.2, 1.4 s), 1 collided;
the 2 non-critical ones collided, reacted fast and braked early: they must not count."""


def test_rates_and_reaction_statistics_are_over_critical_episodes_only():
    row = summarize(LEAD_BRAKE, seed=1).iloc[0]
    assert row["rates_over"] == "critical"
    assert (row["episodes"], row["critical_episodes"], row["noncritical_episodes"],
            row["rated_episodes"]) == (6, 4, 2, 4)
    assert row["reacted"] == 3 and row["reaction_rate"] == 0.75
    assert row["reaction_time_mean_s"] == pytest.approx(0.4)
    assert row["reaction_time_p50_s"] == pytest.approx(0.4)
    assert row["reaction_wait_mean_s"] == pytest.approx(0.05)
    assert row["reaction_compute_mean_s"] == pytest.approx(0.03)
    assert row["braked"] == 3 and row["brake_onset_p50_s"] == pytest.approx(1.2)
    assert 1.0 <= row["brake_onset_p50_lo_s"] <= 1.2 <= row["brake_onset_p50_hi_s"] <= 1.4
    assert row["collisions"] == 1 and row["collision_rate"] == 0.25
    assert (row["collision_rate_lo"], row["collision_rate_hi"]) == wilson_interval(1, 4)
    assert row["min_gap_p50_m"] == pytest.approx(1.5)            # gaps 0, 1, 2, 3
    # the stack's compute is about every episode: overrun mean over all 6 = 0.6 / 6
    assert row["overrun_rate"] == pytest.approx(0.1)


def test_brake_onset_interval_is_a_bootstrap_of_the_median_and_zero_wide_when_constant():
    constant = episodes("lead-brake", [True] * 4, [0.3] * 4, [0.9, 0.9, 0.9, NAN],
                        [False] * 4)
    row = summarize(constant, seed=0).iloc[0]
    assert row["braked"] == 3
    assert (row["brake_onset_p50_s"], row["brake_onset_p50_lo_s"],
            row["brake_onset_p50_hi_s"]) == (0.9, 0.9, 0.9)
    never = episodes("lead-brake", [True] * 2, [0.3] * 2, [NAN, NAN], [False] * 2)
    row = summarize(never, seed=0).iloc[0]
    assert row["braked"] == 0 and math.isnan(row["brake_onset_p50_s"])


def test_scenarios_without_a_hazard_rate_every_episode():
    highway = episodes("highway", critical=[False] * 5, reaction=[NAN] * 5,
                       brake_onset=[NAN] * 5, collided=[True, False, False, False, False],
                       onset=NAN)
    row = summarize(highway).iloc[0]
    assert row["rates_over"] == "all"
    assert (row["critical_episodes"], row["noncritical_episodes"], row["rated_episodes"]) == \
        (0, 0, 5)
    assert row["collision_rate"] == 0.2 and row["reaction_rate"] == 0.0


def test_no_critical_episode_leaves_the_rates_empty_and_counts_the_rest():
    silent = episodes("cut-in", [False] * 3, [0.5, NAN, NAN], [1.0, NAN, NAN],
                      [True, False, False])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # no mean of an empty slice
        row = summarize(silent).iloc[0]
    assert (row["critical_episodes"], row["noncritical_episodes"], row["rated_episodes"]) == \
        (0, 3, 0)
    for column in ("reaction_rate", "reaction_time_mean_s", "brake_onset_p50_s",
                   "collision_rate", "collision_rate_lo", "min_ttc_p50_s",
                   "peak_decel_mean_mps2"):
        assert math.isnan(row[column]), column
    assert row["reacted"] == 0 and row["collisions"] == 0
    assert "0/3 crit" in headline(summarize(silent))


def test_without_a_critical_column_every_episode_is_rated_and_said_unrecorded():
    old = episodes("lead-brake", None, [0.2, 0.4], [NAN, NAN], [True, False])
    row = summarize(old.drop(columns=["brake_onset_s"])).iloc[0]
    assert row["rates_over"] == "unrecorded" and row["rated_episodes"] == 2
    assert math.isnan(row["critical_episodes"]) and row["collision_rate"] == 0.5
    assert row["braked"] == 0 and math.isnan(row["brake_onset_p50_s"])
    assert set(summarize(old)["rates_over"]) <= set(RATES_OVER)


def test_critical_read_back_from_csv_as_text_counts_the_same(tmp_path):
    path = tmp_path / "episodes.csv"
    frame = LEAD_BRAKE.copy()
    frame["critical"] = frame["critical"].astype(object)
    frame.loc[5, "critical"] = None                       # a missing value: not critical
    frame.to_csv(path, index=False)
    back = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert back["critical"].dtype == object
    assert flags(back["critical"]).tolist() == [True, True, True, True, False, False]
    assert summarize(back).iloc[0]["rated_episodes"] == 4


def test_has_hazard_follows_the_registry_and_else_the_onsets():
    assert has_hazard("lead-brake", [NAN]) and has_hazard("stopped-vehicle", [])
    assert not has_hazard("highway", [1.0]) and not has_hazard("merge", [NAN])
    assert has_hazard("my-scenario", [NAN, 2.0]) and not has_hazard("my-scenario", [NAN])
    scope = rated(LEAD_BRAKE, "lead-brake")
    assert scope.mask.tolist() == [True] * 4 + [False] * 2


def test_headline_says_what_the_rates_are_over():
    highway = episodes("highway", [False] * 5, [NAN] * 5, [NAN] * 5, [False] * 5, onset=NAN)
    text = headline(summarize(pd.concat([LEAD_BRAKE, highway], ignore_index=True)))
    lines = text.splitlines()
    assert "4/6 crit" in lines[1] and "400 [" in lines[1] and "1200 [" in lines[1]
    assert "5 all" in lines[2]


def test_decision_age_and_rate_are_episode_means_and_nan_for_older_csvs():
    """Ages 100 and 120 ms -> 110 ms; rates 10 and 5 per second -> 7.5; a NaN age (no
    command landed) is left out."""
    frame = episodes("highway", None, [NAN] * 3, [NAN] * 3, [False] * 3)
    frame["decision_age_s"] = [0.1, 0.12, NAN]
    frame["decision_rate_hz"] = [10.0, 5.0, NAN]
    row = summarize(frame, seed=0, resamples=50).iloc[0]
    assert row["decision_age_mean_ms"] == pytest.approx(110.0)
    assert row["decisions_per_s"] == pytest.approx(7.5)
    older = summarize(frame.drop(columns=["decision_age_s", "decision_rate_hz"]), seed=0,
                      resamples=50).iloc[0]
    assert math.isnan(older["decision_age_mean_ms"]) and math.isnan(older["decisions_per_s"])
