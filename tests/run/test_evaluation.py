"""The curved scenarios' summary: the exit distance along highway-env's network and the
goals' rates on hand-made episode rows."""

import numpy as np
import pandas as pd
import pytest

from reflexdrive.run.evaluation import exit_distance_m, route_summary, time_limit_reach_m


def test_roundabout_exit_distance_is_the_inner_ring_route():
    """From 125 m along the 127.5 m access road: 2.5 m, the 17 m entry, 132 deg of the
    20 m inner ring (se -> ex -> ee -> nx) and the 17 m exit lane to `nxs`."""
    expected = 2.5 + 17.0 + 20.0 * np.deg2rad(132.0) + 17.0
    assert exit_distance_m("roundabout") == pytest.approx(expected, abs=1e-6)


def test_route_summary_counts_clean_episodes_past_the_exit():
    distance = exit_distance_m("roundabout")
    frame = pd.DataFrame({
        "seed": [10, 11, 12, 13],
        "collided": [False, True, False, False],
        "offroad": [False, False, True, False],
        "progress_m": [distance + 1.0, distance + 5.0, distance + 5.0, distance - 1.0]})
    summary = route_summary(frame, "roundabout")
    assert summary["n"] == 4 and summary["seeds"] == [10, 13]
    assert summary["collisions_pct"] == 25.0 and summary["offroad_pct"] == 25.0
    assert summary["exit_reached_pct"] == 25.0


def test_progress_near_the_time_limits_reach_counts_where_the_exit_is_beyond_it():
    """Traffic at 4 m/s for a 15 s limit reaches 60 m: 54 m (90 %) of progress counts as
    through though the exit is farther; 53 m does not; a run without traffic speed (NaN)
    counts only past the exit; a collided run never counts."""
    distance = exit_distance_m("roundabout")
    frame = pd.DataFrame({
        "seed": [1, 2, 3, 4],
        "collided": [False, False, False, True],
        "offroad": [False, False, False, False],
        "progress_m": [54.0, 53.0, 54.0, 54.0],
        "traffic_mean_speed_mps": [4.0, 4.0, np.nan, 4.0],
        "duration_s": [15.0, 15.0, 15.0, 15.0]})
    np.testing.assert_allclose(time_limit_reach_m(frame), [60.0, 60.0, np.inf, 60.0])
    assert distance > 60.0
    summary = route_summary(frame, "roundabout")
    assert summary["exit_reached_pct"] == 25.0
    assert summary["exit_node_reached_pct"] == 0.0
