"""The sealed seed ranges: disjoint, and training refuses every seed outside its own."""

import pytest

from reflexdrive.common.seed_ranges import (
    DEVELOPMENT,
    HELD_OUT,
    RANGES,
    SEED_LIMIT,
    TRAINING,
    require_evaluation_seeds,
    require_training_seeds,
    training_meta,
)
from reflexdrive.common.validation import ConfigError
from reflexdrive.train.detector_data import SEED_STRIDE as DETECTOR_STRIDE
from reflexdrive.train.detector_data import TRAIN_SEED_BASE as DETECTOR_BASE
from reflexdrive.train.expert_data import (
    IMITATION_SEED_BASE,
    MAX_ROUND,
    MAX_SEED,
    ROUND_STRIDE,
    SEED_STRIDE,
)


def test_ranges_tile_the_seeds_without_overlap():
    assert [r.name for r in RANGES] == ["development", "held_out", "training"]
    assert DEVELOPMENT.start == 0 and DEVELOPMENT.stop == HELD_OUT.start
    assert HELD_OUT.stop == TRAINING.start and TRAINING.stop == SEED_LIMIT == 2**31 - 1
    for seed in (0, 499_999, 500_000, 999_999, 1_000_000, 2**31 - 2):
        assert sum(seed in r for r in RANGES) == 1
    assert 2**31 - 1 not in TRAINING and -1 not in DEVELOPMENT


def test_training_refuses_development_and_held_out_seeds():
    require_training_seeds(1_000_000, 1_000_099, "seed")
    for first, last in ((0, 10), (999_990, 1_000_010), (600_000, 600_000), (2**31 - 2, 2**31)):
        with pytest.raises(ConfigError) as error:
            require_training_seeds(first, last, "seed")
        assert error.value.field == "seed" and "1,000,000" in str(error.value)


def test_evaluations_stay_in_their_range():
    require_evaluation_seeds(500_000, 500_199, "seed", held_out=True)
    require_evaluation_seeds(0, 199, "seed", held_out=False)
    with pytest.raises(ConfigError, match="held_out seeds lie in"):
        require_evaluation_seeds(499_900, 500_099, "seed", held_out=True)
    with pytest.raises(ConfigError, match="development seeds lie in"):
        require_evaluation_seeds(500_000, 500_001, "seed", held_out=False)


def test_every_training_seed_the_generators_can_draw_is_a_training_seed():
    # imitation: the largest data seed, round and episode index the configs allow
    assert IMITATION_SEED_BASE >= TRAINING.start
    last = IMITATION_SEED_BASE + MAX_SEED * SEED_STRIDE + MAX_ROUND * ROUND_STRIDE + (
        ROUND_STRIDE - 1)
    assert TRAINING.holds(IMITATION_SEED_BASE, last)
    # detector frames: 10,000 seeds per shard of a training seed's block
    assert DETECTOR_BASE == TRAINING.start
    assert TRAINING.holds(DETECTOR_BASE, DETECTOR_BASE + 214 * DETECTOR_STRIDE - 1)
    with pytest.raises(ConfigError):
        require_training_seeds(DETECTOR_BASE + 215 * DETECTOR_STRIDE,
                               DETECTOR_BASE + 215 * DETECTOR_STRIDE + 9_999, "seed")


def test_training_meta_records_read_and_sealed_ranges():
    meta = training_meta([[2_000_000, 2_000_099]])
    assert meta == {"read": [[2_000_000, 2_000_099]],
                    "sealed": {"development": [0, 500_000], "held_out": [500_000, 1_000_000]}}
