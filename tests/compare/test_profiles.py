"""Tests for `profiled` latency in a compare (`compare.profiles`): profiled at batch size 1
into `OUT/profiles/STACK.json`, reused on resume, replayed deterministically."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from reflexdrive.envs.latency import load_profile

from reflexdrive.common.validation import ConfigError
from reflexdrive.compare import profiles
from reflexdrive.compare.config import PROFILED_ENVS, CompareConfig
from reflexdrive.compare.experiment import compare

SHORT = {"duration_s": 1.5, "onset_s": (0.5, 1.0)}


def tiny(out, **changes) -> CompareConfig:
    settings = dict(stacks=("staged", "reference-driver"), scenarios=("lead-brake",),
                    episodes=2, latency="profiled", extra_latency_s=(0.0,),
                    latency_scale=(1.0, 2.0), modes=("realtime",), scenario_config=SHORT,
                    out=None if out is None else str(out))
    return CompareConfig(**{**settings, **changes})


@pytest.fixture
def profiling_spy(monkeypatch):
    """Counts the stacks profiled (the real `profile_stack` still runs)."""
    calls: list[str] = []
    real = profiles.profile_stack

    def spy(config, progress=True):
        calls.append(config.stack)
        return real(config, progress)

    monkeypatch.setattr(profiles, "profile_stack", spy)
    return calls


def test_profiled_compare_profiles_once_reuses_and_replays(tmp_path, profiling_spy):
    out = tmp_path / "o"
    config = tiny(out)
    first = compare(config, progress=False)
    path = out / "profiles" / "staged.json"
    assert profiling_spy == ["staged"]                       # not the reference driver
    profile = load_profile(path)
    assert profile.stack == "staged" and profile.batch_size == 1
    assert profile.meta["torch_threads"] == 1 and profile.meta["scenario"] == "lead-brake"
    assert profile.rows >= profiles.PROFILE_DECISIONS               # warm-up dropped
    assert list(profile.stages) == ["perception", "tracking", "planning", "control"]

    # every decision of a staged cell is one recorded row, times the cell's scale
    runs = {cell.latency_scale: cell.run for cell in config.cells() if cell.stack == "staged"}
    assert runs[1.0].latency == f"profile:{path}" and runs[2.0].latency == f"profile:{path}*2.0"
    totals = profile.as_array().sum(axis=1)
    decisions = pd.read_csv(out / "decisions.csv")
    staged = decisions[decisions["stack"] == "staged"]
    for scale, rows in staged.groupby("latency_scale"):
        charged = rows["latency_s"].to_numpy(float)
        assert np.isin(np.round(charged / scale, 12), np.round(totals, 12)).all()
    reference = decisions[decisions["stack"] == "reference-driver"]
    assert (reference["latency_s"] == 0).all() and (reference["latency_scale"] == 1).all()
    identity = json.loads((out / "compare.json").read_text())["identity"]
    assert identity["latency"] == "profiled"                 # the file is not the identity
    envs = first.episodes.groupby("stack")["envs"].unique()
    assert list(envs["staged"]) == [PROFILED_ENVS] and list(envs["reference-driver"]) == [8]

    # resume with one more episode: the profile is reused, not taken again
    mtime = path.stat().st_mtime_ns
    more = compare(tiny(out, episodes=3), progress=False)
    assert profiling_spy == ["staged"] and path.stat().st_mtime_ns == mtime
    assert more.ran == 3                                     # one new episode per cell

    # replayed deterministically: the same cells run again from the saved profile
    before = pd.read_csv(out / "episodes.csv")
    shutil.rmtree(out / "cells")
    again = compare(tiny(out, episodes=3), progress=False)
    assert profiling_spy == ["staged"] and again.ran == 9
    pd.testing.assert_frame_equal(pd.read_csv(out / "episodes.csv"), before)

    # a profile gone while its cells hold runs: refused before anything runs
    path.unlink()
    with pytest.raises(ConfigError, match="holds runs of staged but not the profile"):
        compare(tiny(out, episodes=3), progress=False)
    assert profiling_spy == ["staged"]


def test_profiled_needs_an_output_folder():
    config = tiny(None)                                      # valid without out
    with pytest.raises(ConfigError, match="profiled latency saves its profiles"):
        config.cells()
