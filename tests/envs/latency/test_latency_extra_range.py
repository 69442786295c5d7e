"""`SPEC+LOW..HIGH`: an extra delay drawn once per episode from the episode seed
(`envs.latency.EpisodeExtraLatency`), pinned against numpy's documented draw and the tick
contract (10 Hz ticks), on both backends."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.envs.latency import (
    EXTRA_STAGE,
    EpisodeExtraLatency,
    FixedLatency,
    LatencyProfile,
    LatencySpecError,
    ProfileLatency,
    ScaledLatency,
    base_spec,
    draw_episode_extra,
    has_extra_range,
    parse_latency,
    save_profile,
    split_extra,
    split_extra_range,
)
from reflexdrive.envs.latency.models import EXTRA_DRAW_STREAM
from reflexdrive.envs.registration import make_env

SHORT = {"duration_s": 2.0, "onset_s": (1.0, 1.5)}
SEEDS = (0, 1, 7, 4100, 2_000_123)
EPS = 1e-6   # float32 rounding of obs["timing"]


def numpy_draw(seed: int, low: float, high: float) -> float:
    """numpy's documented draw: `Generator.uniform(low, high)` of the seeded stream."""
    return float(np.random.default_rng([seed, EXTRA_DRAW_STREAM]).uniform(low, high))


def _profile(tmp_path) -> str:
    rng = np.random.default_rng(1)
    stages = {"perception": list(rng.uniform(0.01, 0.05, 20)),
              "planning": list(rng.uniform(0.0, 0.03, 20))}
    path = tmp_path / "p.json"
    save_profile(LatencyProfile(stack="s", device="d", batch_size=1, stages=stages,
                                created=""), path)
    return f"profile:{path}"


# ----------------------------------------------------------------------------- parsing


def test_forms_parse_to_a_per_episode_extra(tmp_path):
    model = parse_latency("fixed:0.03+0..0.3")
    assert isinstance(model, EpisodeExtraLatency) and isinstance(model.base, FixedLatency)
    assert (model.low_s, model.high_s, model.spec) == (0.0, 0.3, "fixed:0.03+0..0.3")
    scaled = parse_latency(_profile(tmp_path) + "*2 + 0.05 .. 0.3")
    assert isinstance(scaled.base, ScaledLatency) and scaled.base.scale == 2.0
    assert isinstance(scaled.base.base, ProfileLatency)
    assert (scaled.low_s, scaled.high_s) == (0.05, 0.3)
    assert split_extra_range("fixed:0.03+0..0.3") == ("fixed:0.03", (0.0, 0.3))
    assert split_extra_range("fixed:0.03+.1..2e-1") == ("fixed:0.03", (0.1, 0.2))
    assert split_extra("fixed:0.03+0..0.3") == ("fixed:0.03+0..0.3", None)   # not a +SECONDS
    assert base_spec("measured*2+0..0.3") == "measured"
    assert has_extra_range("fixed:0+0..") and not has_extra_range("profile:../a+b/p.json")
    assert not has_extra_range("fixed:0.03+0.1")


@pytest.mark.parametrize("spec, needle", [
    ("fixed:0.03+0..", "malformed extra delay range: an extra delay range is +LOW..HIGH"),
    ("fixed:0.03+..0.3", "malformed extra delay range"),
    ("fixed:0.03+-0.1..0.3", "malformed extra delay range"),
    ("fixed:0.03+0..0.3..0.5", "malformed extra delay range"),
    ("fixed:0.03+0..0.3*2", "malformed extra delay range"),
    ("fixed:0.03+0.3..0.1", "extra delay range 0.3..0.1: LOW must not exceed HIGH"),
    ("fixed:0.03+0..60", "extra delay range: high 60.0 is not below 60 s"),
    ("fixed:0.03+0.1+0..0.3", "only one +SECONDS or +LOW..HIGH suffix is allowed"),
    ("+0..0.3", "+LOW..HIGH needs a latency model before it"),
    ("fixed:extra=0.01+0..0.3", "stage name 'extra' is reserved for the +LOW..HIGH"),
])
def test_bad_ranges_are_one_line_naming_the_field_and_the_syntax(spec, needle):
    with pytest.raises(LatencySpecError, match=re.escape(needle)) as caught:
        parse_latency(spec)
    message = str(caught.value)
    assert message.startswith(f"latency={spec!r} is invalid") and "\n" not in message
    assert "+LOW..HIGH" in message


def test_a_profile_path_with_dots_is_not_a_range(tmp_path):
    folder = tmp_path / "a..b"
    folder.mkdir()
    spec = _profile(folder)
    assert not has_extra_range(spec)
    assert isinstance(parse_latency(spec), ProfileLatency)


# ----------------------------------------------------------------------------- the draw


def test_the_extra_is_numpys_draw_from_the_episode_seed():
    assert EXTRA_DRAW_STREAM == 1_800
    model = parse_latency("fixed:0.03+0..0.3")
    for seed in SEEDS:
        model.reset(seed)
        extra = numpy_draw(seed, 0.0, 0.3)
        assert draw_episode_extra(seed, 0.0, 0.3) == extra
        for _ in range(3):                                   # once per episode, not per decision
            assert model.sample() == {"total": 0.03, EXTRA_STAGE: extra}
    draws = [draw_episode_extra(seed, 0.0, 0.3) for seed in range(200)]
    assert 0.0 <= min(draws) < 0.03 and 0.27 < max(draws) < 0.3     # spans the range
    assert parse_latency("fixed:0+0.1..0.1").sample()[EXTRA_STAGE] == 0.1


def test_the_extra_stream_leaves_the_profile_rows_alone(tmp_path):
    spec = _profile(tmp_path)
    plain, ranged = parse_latency(spec), parse_latency(spec + "+0..0.3")
    for seed in SEEDS:
        plain.reset(seed)
        ranged.reset(seed)
        for _ in range(5):
            row = plain.sample()
            assert ranged.sample() == {**row, EXTRA_STAGE: numpy_draw(seed, 0.0, 0.3)}


def test_batch_rows_draw_what_one_env_draws():
    model = parse_latency("fixed:0.02*2+0.05..0.3")
    seeds = list(SEEDS)
    everyone = np.ones(len(seeds), dtype=bool)
    model.reset_batch(everyone, seeds)
    expected = [numpy_draw(seed, 0.05, 0.3) for seed in seeds]
    got = model.sample_batch(everyone)
    np.testing.assert_array_equal(got[EXTRA_STAGE], expected)
    np.testing.assert_array_equal(got["total"], np.full(len(seeds), 0.04))
    model.reset_batch(np.array([False, True, False, False, False]), [0, 99, 0, 0, 0])
    expected[1] = numpy_draw(99, 0.05, 0.3)                  # only the reset row redraws
    np.testing.assert_array_equal(model.sample_batch(everyone)[EXTRA_STAGE], expected)


# ----------------------------------------------------------------------------- the clock


def test_the_single_env_shows_and_charges_the_drawn_extra():
    for seed in SEEDS[:3]:
        env = make_env("lead-brake", latency="fixed:0.03+0..0.3", mode="realtime",
                       observations=False, scenario_config=SHORT)
        obs, _ = env.reset(seed=seed)
        latency = 0.03 + numpy_draw(seed, 0.0, 0.3)
        for _ in range(3):
            assert obs["timing"][0] == pytest.approx(latency, abs=EPS)
            obs, _, _, _, info = env.step(np.array([0.5, 0.0]))
            record = info["ticks"][0]
            assert record.latency_s == pytest.approx(latency, abs=1e-12)
            assert record.stage_latency_s[EXTRA_STAGE] == numpy_draw(seed, 0.0, 0.3)
            # sequential: the decision spans ceil(L / T) ticks of 0.1 s
            assert len(info["ticks"]) == max(1, math.ceil(latency / 0.1 - 1e-9))


def test_each_world_of_the_batched_env_draws_its_own_episode_extra():
    """Per world: `obs["timing"][0]` is its seed's `0.03 + draw`, and it observes at ticks
    0, m, 2m, ... with m = ceil(L / 0.1 s) (sequential: busy until its command lands)."""
    seeds = [0, 1, 7]
    env = BatchedDrivingEnv(3, "lead-brake", latency="fixed:0.03+0..0.3", mode="realtime",
                            observations=False, scenario_config=SHORT,
                            autoreset_mode="disabled")
    obs, _ = env.reset(seed=seeds)
    latency = np.array([0.03 + numpy_draw(seed, 0.0, 0.3) for seed in seeds])
    spans = [max(1, math.ceil(value / 0.1 - 1e-9)) for value in latency]
    assert len(set(spans)) > 1                               # the worlds differ
    observed = []
    for _ in range(9):
        observing = env.clock.observing().cpu().numpy().copy()
        observed.append(observing)
        np.testing.assert_allclose(obs["timing"][observing, 0], latency[observing], atol=EPS)
        obs, *_ = env.step(np.tile([0.5, 0.0], (3, 1)))
    observed = np.array(observed)
    for row, span in enumerate(spans):
        assert list(np.flatnonzero(observed[:, row])) == list(range(0, 9, span))
    obs, _ = env.reset(seed=[4100, 1, 7])                    # a new episode redraws
    assert obs["timing"][0, 0] == pytest.approx(0.03 + numpy_draw(4100, 0.0, 0.3), abs=EPS)


def test_a_hazard_removed_twin_is_charged_its_episodes_extra():
    """The twin (same seed, hazard removed) draws the same extra: the counterfactual
    reaction time compares the two at the same latency."""
    env = BatchedDrivingEnv(4, "lead-brake", latency="fixed:0.03+0..0.3", mode="realtime",
                            observations=False, scenario_config=SHORT,
                            counterfactual=[False, False, True, True],
                            autoreset_mode="disabled")
    obs, _ = env.reset(seed=[1, 7, 1, 7])
    expected = [0.03 + numpy_draw(seed, 0.0, 0.3) for seed in (1, 7, 1, 7)]
    np.testing.assert_allclose(obs["timing"][:, 0], expected, atol=EPS)
    assert obs["timing"][0, 0] != obs["timing"][1, 0]
