"""Tests for the report with a latency-scale sweep: the x axis of the outcome figures and
the rows at the stacks' own latency."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reflexdrive.report import plots
from reflexdrive.report.reading import own_latency, unscaled


def summary(scales=(1.0, 2.0), extras=(0.0, 0.1)) -> pd.DataFrame:
    """Realtime rows of staged on lead-brake: own latency 20 ms, charged 20 ms x K + extra;
    the collision rate is the charged latency in seconds (so it rises with both)."""
    rows = [{"stack": "staged", "scenario": "lead-brake", "mode": "realtime",
             "extra_latency_s": extra, "latency_scale": scale,
             "latency_p50_s": 0.02 * scale + extra, "collision_rate": 0.02 * scale + extra,
             "collision_rate_lo": 0.0, "collision_rate_hi": 1.0}
            for scale in scales for extra in extras]
    rows.append({**rows[0], "mode": "lockstep", "collision_rate": 0.0})
    return pd.DataFrame(rows)


def test_own_latency_rows_are_scale_one_extra_zero():
    frame = summary()
    own = own_latency(frame)
    assert list(zip(own["mode"], own["latency_scale"], own["extra_latency_s"])) == [
        ("realtime", 1.0, 0.0), ("lockstep", 1.0, 0.0)]
    assert len(unscaled(frame)) == 3
    old = frame[frame["latency_scale"] == 1].drop(columns="latency_scale")   # before scales
    assert len(own_latency(old)) == 2 and len(unscaled(old)) == 3


def test_outcome_axis_is_the_extra_without_scales_and_the_charged_latency_with_them():
    assert plots.latency_axis(summary(scales=(1.0,)))[0] == "extra_latency_s"
    assert plots.latency_axis(summary().drop(columns="latency_scale"))[0] == "extra_latency_s"
    column, label = plots.latency_axis(summary())
    assert column == "latency_p50_s" and "own x scale + extra" in label
    metric = ("collision_rate", "collision_rate_lo", "collision_rate_hi", "collisions [%]", 100)
    figure = plots.outcome_vs_extra(summary(), ["staged"], ["lead-brake"],
                                    {"staged": "#1f77b4"}, metric)
    line = figure.axes[0].get_lines()[0]
    # cells (1, 0), (2, 0), (1, 0.1), (2, 0.1): 20, 40, 120, 140 ms, in that order
    assert np.allclose(line.get_xdata(), [20, 40, 120, 140])
    assert np.allclose(line.get_ydata(), [2, 4, 12, 14])
    plt.close(figure)
