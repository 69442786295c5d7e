"""Real runs (`run.runner.run`, the counterfactual twins on) of the hazards on road
networks on both backends: the same `episodes.csv` rows, outcome, onset, criticality and
reaction columns, whichever backend ran them (`backend="auto"` picks the batched one)."""

from __future__ import annotations

import numpy as np
import pytest

from reflexdrive.run.runner import RunConfig, run

SAME = ("end_reason", "collided", "offroad", "critical", "reaction_kind")
"""Columns that must be equal."""
CLOSE = ("hazard_onset_s", "reaction_time_s", "brake_onset_s", "onset_gap_m", "onset_ttc_s",
         "required_decel_mps2", "min_ttc_s", "min_gap_m", "progress_m", "mean_speed_mps",
         "ticks", "duration_s")
"""Numeric columns that must agree to 1e-6 (NaN where the other is NaN)."""


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["intersection-cross-traffic", "stopped-vehicle-curve"])
@pytest.mark.parametrize("stack", ["reference-driver", "staged"])
def test_hazard_runs_agree_across_backends(scenario, stack):
    frames = {}
    for backend in ("auto", "highway"):
        config = RunConfig(scenario=scenario, stack=stack, episodes=2, seed=95000,
                           mode="lockstep", latency="fixed:0", envs=2, backend=backend)
        if backend == "auto":
            assert config.resolved_backend == "batched"
        frames[backend], _ = run(config, progress=False)
    batched, highway = frames["auto"], frames["highway"]
    assert (batched["backend"] == "batched").all()
    assert batched["critical"].all()                   # the hazards happened
    for column in SAME:
        assert list(batched[column]) == list(highway[column]), column
    for column in CLOSE:
        np.testing.assert_allclose(batched[column].to_numpy(float),
                                   highway[column].to_numpy(float), atol=1e-6, err_msg=column)
