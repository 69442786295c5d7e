"""The table `reflexdrive run` prints: rates over critical episodes, counts beside them."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from reflexdrive.report.tables import reaction_table, summarize

NAN = math.nan


def run_episodes(scenario: str, critical, reaction, brake_onset, collided) -> pd.DataFrame:
    n = len(reaction)
    return pd.DataFrame({
        "scenario": scenario, "stack": "staged", "mode": "realtime", "latency": "fixed:0.03",
        "hazard_onset_s": 2.0, "critical": critical, "reaction_time_s": reaction,
        "reaction_wait_s": 0.05, "reaction_notice_s": 0.1, "reaction_compute_s": 0.03,
        "brake_onset_s": brake_onset, "collided": collided, "min_ttc_s": [1.0, 2.0, 3.0, 9.0][:n],
        "progress_m": 100.0, "latency_p50_s": [0.03, 0.03, 0.05, 0.05][:n],
        "overrun_rate": [0.0, 0.0, 0.0, 0.4][:n]})


def test_run_table_rates_critical_episodes_and_pools_latency_over_all():
    frame = run_episodes("lead-brake", [True, True, True, False], [0.2, 0.6, NAN, 0.1],
                         [1.0, NAN, 1.4, 0.2], [True, False, False, True])
    row = summarize(frame).iloc[0]
    assert (row["episodes"], row["critical"], row["rated"]) == (4, 3, 3)
    assert row["reacted"] == pytest.approx(2 / 3)
    assert row["reaction_ms"] == pytest.approx(400.0)
    assert row["brake_onset_p50_ms"] == pytest.approx(1200.0)
    assert row["collision_rate"] == pytest.approx(1 / 3)
    assert row["min_ttc_s"] == 2.0                      # over 1, 2, 3 (not the 9 s one)
    assert row["latency_p50_ms"] == pytest.approx(40.0) and row["overrun_rate"] == 0.1


def test_run_table_without_critical_episodes_prints_dashes_not_zeros():
    frame = run_episodes("cut-in", [False] * 2, [0.3, NAN], [NAN, NAN], [True, False])
    row = summarize(frame).iloc[0]
    assert row["rated"] == 0 and math.isnan(row["collision_rate"])
    assert math.isnan(row["reacted"])
    highway = run_episodes("highway", [False] * 2, [NAN, NAN], [NAN, NAN], [True, False])
    row = summarize(highway).iloc[0]
    assert math.isnan(row["critical"]) and row["rated"] == 2 and row["collision_rate"] == 0.5
    text = reaction_table(frame)
    assert "NaN" not in text and " - " in text.splitlines()[1]
