"""`BatchedDrivingEnv` on road networks (`NetworkBackend`) against the highway backend.

Backend level: the same worlds stepped with the same commands give, through the same
sensors on each backend's road geometry, the same bev and lidar. Env level:
`BatchedDrivingEnv` and the single env give the same observations, ground truth, rewards and
episode ends tick by tick. Merge, roundabout and intersection, with their own MOBIL traffic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from network_backend_pairs import network_backend_pair
from reflexdrive.envs import sensors
from reflexdrive.envs.backends.batched.lanes import NETWORK_KINDS
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.gym.vector import BatchedDrivingEnv, batched_scenarios
from reflexdrive.envs.registration import make_env
from reflexdrive.envs.scenarios import generate, make_config
from reflexdrive.envs.types import Command, Piece

F = 50
SEEDS = (0, 1, 2)
LIDAR_TOL_M = 1e-4


def bev_mismatch(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of bev pixels that differ."""
    return float(np.mean(a != b))


@pytest.mark.parametrize("name", NETWORK_KINDS)
def test_network_backend_observations_match_highway_backend(name):
    inits = [generate(name, make_config(name), s, F) for s in SEEDS]
    assert {init.road.kind for init in inits} == {name}
    batched, singles = network_backend_pair(inits, F)
    config = SensorConfig()
    steering = np.array([-0.01, 0.0, 0.01])
    worst_bev, worst_lidar = 0.0, 0.0
    for k in range(60):
        noise = sensors.episode_noise_keys(np.array(SEEDS), np.full(len(SEEDS), k))
        bev, lidar = sensors.observe(batched.snapshot(), batched.road_geometry(), config,
                                     noise)
        for b, single in enumerate(singles):
            bev_s, lidar_s = sensors.observe(
                single.snapshot(), single.road_geometry(), config,
                sensors.episode_noise_keys(np.array([SEEDS[b]]), np.array([k])))
            worst_bev = max(worst_bev, bev_mismatch(bev[b], bev_s[0]))
            worst_lidar = max(worst_lidar, float(np.abs(lidar[b] - lidar_s[0]).max()))
        for _ in range(5):
            first = torch.as_tensor(np.stack([np.full(len(SEEDS), 0.3), steering], axis=-1))
            batched.substep(torch.full((len(SEEDS),), 1.0 / F, dtype=torch.float64), first,
                            first)
            for b, single in enumerate(singles):
                single.substep([Piece(1.0 / F, Command(0.3, float(steering[b])))])
    assert worst_lidar < LIDAR_TOL_M
    assert worst_bev <= 1e-3          # observed: 0 (identical rasters)


@pytest.mark.parametrize("name", NETWORK_KINDS)
def test_batched_network_env_matches_the_single_env(name):
    assert name in batched_scenarios()
    seeds = [3, 4, 5]
    batched = BatchedDrivingEnv(len(seeds), name)         # ended envs: not compared
    singles = [make_env(name) for _ in seeds]
    obs_b, info_b = batched.reset(seed=seeds)
    results = [single.reset(seed=seed) for single, seed in zip(singles, seeds)]
    rng = np.random.default_rng(0)
    done = np.zeros(len(seeds), dtype=bool)
    ticks = 0
    while not done.all() and ticks < 40:
        for b, (obs_s, info_s) in enumerate(results):
            if done[b]:
                continue
            assert bev_mismatch(obs_b["bev"][b], obs_s["bev"]) <= 1e-3
            np.testing.assert_allclose(obs_b["lidar"][b], obs_s["lidar"], atol=LIDAR_TOL_M)
            np.testing.assert_allclose(obs_b["ego"][b], obs_s["ego"], atol=1e-5)
            np.testing.assert_allclose(info_b["gt_objects"][b], info_s["gt_objects"],
                                       atol=1e-5)
            np.testing.assert_array_equal(info_b["gt_valid"][b], info_s["gt_valid"])
            np.testing.assert_allclose(obs_b["route"][b], obs_s["route"], atol=1e-4)
            for key, value in info_s["map"].items():       # the same map, curved lanes too
                np.testing.assert_allclose(info_b["map"][key][b], value, atol=1e-4,
                                           err_msg=key)
        actions = np.stack([rng.uniform(-1.0, 2.0, len(seeds)),
                            rng.uniform(-0.05, 0.05, len(seeds))], axis=-1)
        obs_b, reward_b, term_b, trunc_b, info_b = batched.step(actions)
        for b, single in enumerate(singles):
            if done[b]:
                continue
            obs_s, reward_s, term_s, trunc_s, info_s = single.step(actions[b])
            results[b] = (obs_s, info_s)
            assert (term_b[b], trunc_b[b]) == (term_s, trunc_s)
            assert reward_b[b] == pytest.approx(reward_s, abs=1e-6)
            done[b] = term_s or trunc_s
        ticks += 1
    assert ticks >= 10
