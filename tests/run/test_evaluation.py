"""The curved scenarios' summary: the exit distance along highway-env's network and the
goals' rates on hand-made episode rows."""

import numpy as np
import pandas as pd
import pytest

from reflexdrive.run.evaluation import exit_distance_m, route_summary


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
