"""The batched draw of every latency model (`sample_batch`) against its single `sample()`.

Row `i` of a batch must draw exactly what one env's model draws for the same episode: the
vector env calls `reset_batch` / `sample_batch` whatever the model, and its records must
equal the single env's bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from reflexdrive.envs.latency import (
    EXTRA_STAGE,
    LatencyProfile,
    MeasuredLatency,
    ShiftedLatency,
    parse_latency,
    save_profile,
)

from reflexdrive.common.validation import ConfigError

SEEDS = [11, 3, 11, 40, 7]


@pytest.fixture
def profile_path(tmp_path):
    """A 9-row profile whose rows are all different, stages in a non-sorted order."""
    stages = {name: [(i + 1) * 10.0 ** -(j + 2) + 1e-7 * i * i for i in range(9)]
              for j, name in enumerate(("tracking", "perception", "control"))}
    path = tmp_path / "p.json"
    save_profile(LatencyProfile(stack="staged", device="cpu", batch_size=1, stages=stages,
                                created="2026-11-23T12:00:00Z"), path)
    return path


def _assert_rows_equal(batch: dict[str, np.ndarray], row: int, single: dict[str, float]):
    assert list(batch) == list(single)
    for name, values in batch.items():
        assert values.dtype == np.float64 and values.shape == (len(SEEDS),)
        assert values[row] == single[name]          # bit for bit, not approx


def test_fixed_batch_is_the_constant_sample_in_every_row():
    model = parse_latency("fixed:perception=0.012,planning=0.0301")
    model.reset_batch(np.ones(len(SEEDS), dtype=bool), SEEDS)
    observing = np.array([True, False, True, True, False])
    for _ in range(3):
        batch = model.sample_batch(observing)
        for row in range(len(SEEDS)):
            _assert_rows_equal(batch, row, model.sample())


def test_profile_batch_rows_replay_the_single_draws_of_their_seed(profile_path):
    spec = f"profile:{profile_path}"
    batched = parse_latency(spec)
    singles = [parse_latency(spec) for _ in SEEDS]
    for single, seed in zip(singles, SEEDS):
        single.reset(seed)
    batched.reset_batch(np.ones(len(SEEDS), dtype=bool), SEEDS)
    rng = np.random.default_rng(0)
    for _ in range(30):
        observing = rng.random(len(SEEDS)) < 0.6      # busy rows draw nothing
        batch = batched.sample_batch(observing)
        for row in np.flatnonzero(observing):
            _assert_rows_equal(batch, row, singles[row].sample())


def test_profile_batch_reset_reseeds_only_the_masked_rows(profile_path):
    spec = f"profile:{profile_path}"
    batched = parse_latency(spec)
    batched.reset_batch(np.ones(len(SEEDS), dtype=bool), SEEDS)
    every = np.ones(len(SEEDS), dtype=bool)
    batched.sample_batch(every)
    mask = np.array([False, True, False, False, True])
    batched.reset_batch(mask, [0, 99, 0, 0, 5])
    follow = parse_latency(spec)
    follow.reset(SEEDS[0])
    follow.sample()
    fresh = parse_latency(spec)
    fresh.reset(99)
    batch = batched.sample_batch(every)
    _assert_rows_equal(batch, 0, follow.sample())      # row 0 continues its stream
    _assert_rows_equal(batch, 1, fresh.sample())       # row 1 starts over with seed 99


def test_measured_batch_is_the_reported_sample_or_zero():
    model = MeasuredLatency()
    model.reset_batch(np.ones(len(SEEDS), dtype=bool), SEEDS)
    observing = np.ones(len(SEEDS), dtype=bool)
    reported = {"perception": 0.01, "planning": np.float32(0.5)}
    batch = model.sample_batch(observing, reported)
    for row in range(len(SEEDS)):
        _assert_rows_equal(batch, row, model.sample(reported))
    zero = model.sample_batch(observing)          # a batch has no per-row wall clock
    for row in range(len(SEEDS)):
        _assert_rows_equal(zero, row, {"total": 0.0})
    with pytest.raises(ConfigError):
        model.sample_batch(observing, {"perception": -1.0})


def test_shifted_batch_appends_extra_after_the_base_rows(profile_path):
    spec = f"profile:{profile_path}+0.2"
    batched, single = parse_latency(spec), parse_latency(spec)
    assert isinstance(batched, ShiftedLatency)
    batched.reset_batch(np.ones(len(SEEDS), dtype=bool), SEEDS)
    single.reset(SEEDS[2])
    observing = np.array([False, False, True, False, False])
    for _ in range(10):
        batch = batched.sample_batch(observing)
        assert list(batch)[-1] == EXTRA_STAGE
        assert np.all(batch[EXTRA_STAGE] == 0.2)
        _assert_rows_equal(batch, 2, single.sample())


@pytest.mark.parametrize("spec", ["fixed:0.03+0.1", "measured+0.05"])
def test_shifted_batch_of_fixed_and_measured_matches_sample(spec):
    model = parse_latency(spec)
    model.reset_batch(np.ones(len(SEEDS), dtype=bool), SEEDS)
    model.reset(0)
    batch = model.sample_batch(np.ones(len(SEEDS), dtype=bool))
    for row in range(len(SEEDS)):
        _assert_rows_equal(batch, row, model.sample())


def test_shifted_batch_rejects_a_reported_extra_stage():
    model = parse_latency("measured+0.1")
    with pytest.raises(ConfigError, match="reserved"):
        model.sample_batch(np.ones(2, dtype=bool), {EXTRA_STAGE: 0.01})
