"""Hazard onsets: the stopped vehicle's trigger (`sensor_reach`) and the twin contract: an
episode and its hazard-removed twin observe bit-identical worlds at every tick before t_h."""

import math

import numpy as np
import pytest
import torch
from reflexdrive.envs.gym.single import DrivingEnv
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.envs.hazards import sensor_reach

HAZARDS = ("lead-brake", "cut-in", "stopped-vehicle")


def test_sensor_reach_of_a_vehicle_straight_ahead_is_its_rear_distance():
    # centre 50.5 m ahead, 5 m long: its rear is 48 m from the ego's centre
    assert sensor_reach(50.5, 0.3, 0.0, 0.0, 5.0, 2.0) == pytest.approx(48.0)
    # two lanes over (8 m): the nearer axis distance is still the longitudinal one
    assert sensor_reach(50.5, 8.0, 0.0, 0.0, 5.0, 2.0) == pytest.approx(48.0)
    # beside the ego: the lateral distance counts
    assert sensor_reach(10.0, 60.0, 0.0, 0.0, 5.0, 2.0) == pytest.approx(59.0)
    # overlapping the ego's centre: 0
    assert sensor_reach(1.0, 0.0, 0.0, 0.0, 5.0, 2.0) == 0.0


def test_sensor_reach_in_the_ego_frame_and_across_array_kinds():
    # ego heading +90 degrees, the vehicle 50.5 m along +y, turned the same way
    half_pi = math.pi / 2
    assert sensor_reach(0.0, 50.5, half_pi, half_pi, 5.0, 2.0) == pytest.approx(48.0)
    # crosswise (its length across the ego's axis): its half width counts ahead
    assert sensor_reach(50.5, 0.0, 0.0, half_pi, 5.0, 2.0) == pytest.approx(49.5)
    args = [np.array([50.5, 3.0]), np.array([0.2, 70.0]), np.array([0.01, -0.02]),
            np.array([0.0, 0.3]), np.array([5.0, 4.0]), np.array([2.0, 2.0])]
    np.testing.assert_allclose(
        sensor_reach(*(torch.from_numpy(a) for a in args)).numpy(), sensor_reach(*args),
        rtol=0, atol=1e-12)


def _first_difference_before_onset(seeds, observe_pairs):
    """Over the steps of paired episodes `(episode, twin)`, the first tick time [s] at which
    their observations differ while t < t_h, per pair (None when they never do)."""
    found = {}
    for index, time_s, onset_s, obs, twin_obs in observe_pairs:
        if index in found or time_s >= onset_s - 1e-9:
            continue
        if any(not np.array_equal(obs[key], twin_obs[key]) for key in obs):
            found[index] = time_s
    return [found.get(i) for i in range(len(seeds))]


def _batched_pairs(scenario, seeds, record):
    """Each of `seeds` and its twin as rows `i` and `K + i` of one batched env, driven with
    the same scripted commands (a gentle brake from the second second on) until each
    pair's first episode ends; yields `(i, t, t_h, obs_i, obs_twin)` per live pair."""
    k = len(seeds)
    env = BatchedDrivingEnv(2 * k, scenario, counterfactual=[False] * k + [True] * k,
                            record=record)
    obs, info = env.reset(seed=list(seeds) * 2)
    alive = np.ones(k, dtype=bool)
    for tick in range(60):
        actions = np.zeros((2 * k, 2))
        actions[:, 0] = -0.5 if tick >= 20 else 0.3
        obs, _, terminated, truncated, info = env.step(actions)
        for i in np.flatnonzero(alive):
            yield (i, float(info["time_s"][i]), float(info["hazard"]["onset_s"][i]),
                   {key: value[i] for key, value in obs.items()},
                   {key: value[k + i] for key, value in obs.items()})
        done = terminated | truncated
        alive &= ~(done[:k] | done[k:])
        if not alive.any():
            return


@pytest.mark.parametrize("record", [True, False], ids=["per-substep", "numba-tick"])
@pytest.mark.parametrize("scenario", HAZARDS)
def test_batched_twins_observe_the_same_world_before_onset(scenario, record):
    seeds = (5, 6, 7, 8, 9)
    pairs = list(_batched_pairs(scenario, seeds, record))
    assert _first_difference_before_onset(seeds, pairs) == [None] * len(seeds)
    # and they do differ soon after the onset (the test can see a difference)
    after = {i for i, t, onset, obs, twin in pairs if t >= onset and t < onset + 1.0
             and any(not np.array_equal(obs[key], twin[key]) for key in obs)}
    assert after == set(range(len(seeds)))


@pytest.mark.parametrize("scenario", HAZARDS)
def test_highway_twins_observe_the_same_world_before_onset(scenario):
    seeds = (5, 6)

    def pairs():
        for i, seed in enumerate(seeds):
            env, twin = DrivingEnv(scenario), DrivingEnv(scenario, counterfactual=True)
            env.reset(seed=seed)
            twin.reset(seed=seed)
            for _ in range(50):
                obs, _, terminated, truncated, info = env.step(np.array([0.3, 0.0]))
                twin_obs, *_ = twin.step(np.array([0.3, 0.0]))
                yield i, info["time_s"], info["hazard"]["onset_s"], obs, twin_obs
                if terminated or truncated or info["time_s"] > info["hazard"]["onset_s"]:
                    break

    assert _first_difference_before_onset(seeds, list(pairs())) == [None] * len(seeds)
