"""The curved scenarios' summary: the goals' rates and their Wilson intervals on hand-made
episode rows."""

import numpy as np
import pandas as pd
import pytest

from reflexdrive.common.validation import ConfigError
from reflexdrive.compare.summary import wilson_interval
from reflexdrive.run.evaluation import route_summary, time_limit_reach_m


def test_route_summary_counts_the_exit_flag_of_clean_episodes_only():
    """Four episodes that all entered the exit road: one collided, one left the road, one
    clean, and one clean with the flag read back from a CSV ("True"). A clean episode far
    along without the flag (a circling ego drives far) does not count as exit reached."""
    frame = pd.DataFrame({
        "seed": [10, 11, 12, 13, 14],
        "collided": [False, True, False, False, False],
        "offroad": [False, False, True, False, False],
        "route_exit_reached": [True, True, True, "True", False],
        "progress_m": [80.0, 80.0, 80.0, 80.0, 500.0]})
    summary = route_summary(frame)
    assert summary["n"] == 5 and summary["seeds"] == [10, 14]
    assert summary["collisions_pct"] == 20.0 and summary["offroad_pct"] == 20.0
    assert summary["exit_reached_pct"] == 40.0
    assert summary["progress_reach_pct"] == 0.0          # no traffic speed: no reach
    assert summary["through_pct"] == 40.0
    low, high = wilson_interval(2, 5)
    assert summary["exit_reached_pct_ci95"] == pytest.approx([100 * low, 100 * high])
    assert summary["collisions_pct_ci95"] == pytest.approx(
        [100 * b for b in wilson_interval(1, 5)])
    assert summary["mean_progress_m"] == pytest.approx(164.0)


def test_progress_near_the_time_limits_reach_is_its_own_share_and_joins_the_union():
    """Traffic at 4 m/s for a 15 s limit reaches 60 m: 54 m (90 %) of progress meets the
    alternative, 53 m does not; a run without traffic speed (NaN) meets it never; a
    collided run counts nowhere. Through is the union: episodes 1 (progress) and 3
    (exit) of 5."""
    frame = pd.DataFrame({
        "seed": [1, 2, 3, 4, 5],
        "collided": [False, False, False, True, False],
        "offroad": [False, False, False, False, False],
        "route_exit_reached": [False, False, True, True, False],
        "progress_m": [54.0, 53.0, 54.0, 54.0, 53.9],
        "traffic_mean_speed_mps": [4.0, 4.0, np.nan, 4.0, 4.0],
        "duration_s": [15.0, 15.0, 15.0, 15.0, 15.0]})
    np.testing.assert_allclose(time_limit_reach_m(frame), [60.0, 60.0, np.inf, 60.0, 60.0])
    summary = route_summary(frame)
    assert summary["exit_reached_pct"] == 20.0
    assert summary["progress_reach_pct"] == 20.0
    assert summary["through_pct"] == 40.0
    assert summary["through_pct_ci95"] == pytest.approx(
        [100 * b for b in wilson_interval(2, 5)])


def test_route_summary_refuses_rows_without_the_flag():
    frame = pd.DataFrame({"seed": [1], "collided": [False], "offroad": [False],
                          "progress_m": [10.0]})
    with pytest.raises(ConfigError, match="route_exit_reached"):
        route_summary(frame)
