"""`reflexdrive.compare_stacks`: a compare from Python, as DataFrames, with or without a
folder left behind."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest

import reflexdrive
from reflexdrive.common.validation import ConfigError

SETTINGS = dict(scenarios=["lead-brake"], episodes=2, modes=["lockstep"], latency="fixed:0",
                extra_latency_s=[0], scenario_config={"duration_s": 3, "onset_s": [1, 1]},
                progress=False)
STACKS = ["staged", "examples.headway_agent:make"]


def _temporary_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("reflexdrive-compare-*"))


def test_without_out_it_returns_frames_and_leaves_nothing_on_disk():
    before = _temporary_folders()
    result = reflexdrive.compare_stacks(stacks=STACKS, **SETTINGS)
    assert result.out is None and _temporary_folders() == before
    assert isinstance(result.episodes, pd.DataFrame) and isinstance(result.summary,
                                                                    pd.DataFrame)
    assert list(result.episodes["stack"]) == [STACKS[0]] * 2 + [STACKS[1]] * 2
    assert list(result.episodes["seed"]) == [0, 1, 0, 1]
    assert list(result.summary["stack"]) == STACKS and result.ran == 4


def test_with_out_it_keeps_the_compare_and_resumes_it(tmp_path):
    first = reflexdrive.compare_stacks(stacks=STACKS, out=tmp_path / "c", **SETTINGS)
    assert first.out == tmp_path / "c" and (first.out / "summary.csv").is_file()
    again = reflexdrive.compare_stacks(stacks=STACKS, out=tmp_path / "c", **SETTINGS)
    assert again.ran == 0
    pd.testing.assert_frame_equal(again.episodes, first.episodes)


def test_bad_settings_fail_before_anything_runs():
    before = _temporary_folders()
    with pytest.raises(ConfigError, match="^modes='sometimes' is invalid"):
        reflexdrive.compare_stacks(stacks=STACKS, **{**SETTINGS, "modes": ["sometimes"]})
    with pytest.raises(ConfigError, match="^stacks='no_module_of_that_name:make' is invalid"):
        reflexdrive.compare_stacks(stacks=["no_module_of_that_name:make"], **SETTINGS)
    assert _temporary_folders() == before
