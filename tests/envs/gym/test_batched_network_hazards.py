"""`BatchedDrivingEnv` against the single env on the hazards on road networks: cross traffic
at the intersection and a stopped vehicle on a curve (each world its own curve), episodes
and their hazard-removed twins side by side. Tick by tick the same observations (bev,
lidar, ego vector, route), ground truth, rewards, episode ends and `info["hazard"]` (onset,
activity, criticality)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import pure_pursuit
from reflexdrive.envs.gym.vector import BatchedDrivingEnv, batched_scenarios
from reflexdrive.envs.registration import make_env
from reflexdrive.envs.types import CRITICALITY_KEYS

LIDAR_TOL_M = 1e-4


@pytest.mark.parametrize("name", ["intersection-cross-traffic", "stopped-vehicle-curve"])
def test_batched_hazard_env_matches_the_single_env(name):
    assert name in batched_scenarios()
    seeds = [11, 12]
    twins = [False, False, True, True]
    batched = BatchedDrivingEnv(len(twins), name, counterfactual=twins)
    singles = [make_env(name, counterfactual=twin) for twin in twins]
    obs_b, info_b = batched.reset(seed=seeds + seeds)
    results = [single.reset(seed=seed) for single, seed in zip(singles, seeds + seeds)]
    done = np.zeros(len(twins), dtype=bool)
    onsets = 0
    ticks = 0
    while not done.all():
        for b, (obs_s, info_s) in enumerate(results):
            if done[b]:
                continue
            assert float(np.mean(obs_b["bev"][b] != obs_s["bev"])) <= 1e-3
            np.testing.assert_allclose(obs_b["lidar"][b], obs_s["lidar"], atol=LIDAR_TOL_M)
            np.testing.assert_allclose(obs_b["ego"][b], obs_s["ego"], atol=1e-5)
            np.testing.assert_allclose(obs_b["route"][b], obs_s["route"], atol=1e-4)
            np.testing.assert_allclose(info_b["gt_objects"][b], info_s["gt_objects"],
                                       atol=1e-5)
            hazard_s, hazard_b = info_s["hazard"], info_b["hazard"]
            assert hazard_b["kind"][b] == hazard_s["kind"]
            onset_s = hazard_s.get("onset_s")
            assert hazard_b["onset_s"][b] == (np.inf if onset_s is None else onset_s)
            assert bool(hazard_b["active"][b]) == bool(hazard_s["active"])
            if "critical" in hazard_s:
                onsets += 1
                for key in CRITICALITY_KEYS:
                    np.testing.assert_allclose(hazard_b[key][b], hazard_s[key], rtol=1e-6,
                                               atol=1e-6, err_msg=key)
        # follow the route at the ego's speed, never braking for the hazard
        route = np.asarray(info_b["map"]["route"])
        actions = np.array([pure_pursuit(route[b], obs_b["ego"][b, 0], obs_b["ego"][b, 0])
                            .as_array() for b in range(len(twins))])
        obs_b, reward_b, term_b, trunc_b, info_b = batched.step(actions)
        for b, single in enumerate(singles):
            if done[b]:
                continue
            obs_s, reward_s, term_s, trunc_s, info_s = single.step(actions[b])
            results[b] = (obs_s, info_s)
            assert (term_b[b], trunc_b[b]) == (term_s, trunc_s)
            assert bool(info_b["crashed"][b]) == bool(info_s["crashed"])
            assert reward_b[b] == pytest.approx(reward_s, abs=1e-6)
            done[b] = term_s or trunc_s
        ticks += 1
    assert onsets >= 2 and ticks >= 10
