"""`envs.road_map`: the batched straight-road map against the highway backend's, the route
targets, and both envs' `info["map"]` / `obs["route"]`."""

import functools

import gymnasium as gym
import numpy as np
import pytest
from highway_env.road.road import RoadNetwork
from reflexdrive.envs.backends.highway_map import HighwayRoadMap
from reflexdrive.envs.gym.single import DrivingEnv
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.envs.registration import make_env
from reflexdrive.envs.road_map import (
    MAP_FIELDS,
    ROUTE_POINTS,
    ROUTE_TARGETS_M,
    empty_map,
    route_targets,
    straight_road_map,
)

from reflexdrive.run.rollout import merge_info

# (lane, along, lateral offset, heading error) on a 3-lane, 300 m road
STATES = [(1, 100.3, 0.7, 0.1), (0, 10.0, -1.2, -0.3), (2, 270.9, 0.0, 0.02), (1, 0.4, 1.9, 0.0),
          (2, 150.0, 2.1, -1.0)]


def test_straight_road_map_equals_the_highway_backend_map():
    network = RoadNetwork.straight_road_network(lanes=3, length=300.0, speed_limit=30.0)
    highway = HighwayRoadMap(network)
    position = np.array([[along, 4.0 * lane + offset] for lane, along, offset, _ in STATES])
    heading = np.array([psi for *_, psi in STATES])
    lane = np.array([lane for lane, *_ in STATES])
    batched = straight_road_map(position, heading, lane, np.full(5, 3), np.full(5, 300.0), 4.0,
                                np.full(5, 30.0))
    for b in range(len(STATES)):
        single = highway.observe(position[b], heading[b], ("0", "1", int(lane[b])))
        for key in MAP_FIELDS:
            np.testing.assert_allclose(batched[key][b], single[key][0], atol=1e-4, err_msg=key)
    assert np.isposinf(batched["route"][2, 15:]).all()
    assert np.isfinite(batched["route"][2, :15]).all()
    # the lanes' speed limit along the route and per lane; +inf past the road's end
    np.testing.assert_array_equal(batched["route_speed_limit"][2, :15], 30.0)
    assert np.isposinf(batched["route_speed_limit"][2, 15:]).all()
    np.testing.assert_array_equal(batched["lane_speed_limit"][batched["lane_valid"]], 30.0)
    assert np.isposinf(batched["lane_speed_limit"][~batched["lane_valid"]]).all()
    # none given: none (+inf)
    free = straight_road_map(position, heading, lane, np.full(5, 3), np.full(5, 300.0), 4.0)
    assert np.isposinf(free["route_speed_limit"]).all()


def test_route_targets_pick_the_target_rows_and_hold_the_last_point():
    route = np.full((2, ROUTE_POINTS, 2), np.nan, np.float32)
    route[0, :, 0] = 2.0 * np.arange(ROUTE_POINTS)
    route[1, :8, 0] = 2.0 * np.arange(8)                 # ends 14 m ahead
    targets = route_targets(route)
    assert targets.shape == (2, len(ROUTE_TARGETS_M), 2) and targets.dtype == np.float32
    assert targets[0, :, 0].tolist() == list(ROUTE_TARGETS_M)
    assert targets[1, :, 0].tolist() == [4.0, 10.0, 14.0, 14.0, 14.0]
    np.testing.assert_array_equal(route_targets(empty_map()["route"]), 0.0)


def test_both_envs_observe_the_same_map_and_route():
    single = DrivingEnv("lead-brake", observations=False)
    batched = BatchedDrivingEnv(1, "lead-brake", observations=False, mode="lockstep",
                                autoreset_mode="disabled")
    obs_s, info_s = single.reset(seed=4)
    obs_b, info_b = batched.reset(seed=[4])
    for _ in range(3):
        action = np.array([0.5, 0.02], np.float32)
        obs_s, *_, info_s = single.step(action)
        obs_b, *_, info_b = batched.step(action[None])
    assert single.observation_space.contains(obs_s)
    assert batched.observation_space.contains(obs_b)
    np.testing.assert_allclose(obs_b["route"][0], obs_s["route"], atol=1e-4)
    np.testing.assert_allclose(obs_s["route"], route_targets(info_s["map"]["route"]))
    for key in MAP_FIELDS:
        np.testing.assert_allclose(info_b["map"][key][0], info_s["map"][key], atol=1e-4,
                                   err_msg=key)
    assert obs_s["route"][0, 1] == pytest.approx(info_s["map"]["route"][2, 1])


def test_worker_envs_stack_the_map_and_a_twin_sees_its_episode_map_before_the_onset():
    """`AsyncVectorEnv` of the single env (as the runner builds it): `info["map"]` stacked
    per key with a leading `B`; the hazard-removed twin (env 1) of episode 0 drives the same
    road from the same state, so until the onset its map is the episode's."""
    config = {"duration_s": 3.0, "onset_s": (2.0, 2.5)}
    factories = [functools.partial(make_env, "lead-brake", mode="lockstep", observations=False,
                                   scenario_config=config, counterfactual=twin)
                 for twin in (False, True)]
    env = gym.vector.AsyncVectorEnv(factories, context="forkserver",
                                    autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    try:
        obs, info = env.reset(seed=[7, 7])
        for _ in range(5):                                   # 0.5 s, before the 2 s onset
            obs, *_, info = env.step(np.tile([[0.8, 0.01]], (2, 1)).astype(np.float32))
    finally:
        env.close()
    assert info["_map"].all() and obs["route"].shape == (2, len(ROUTE_TARGETS_M), 2)
    assert info["map"]["route"].shape == (2, ROUTE_POINTS, 2)
    for key in MAP_FIELDS:
        np.testing.assert_array_equal(info["map"][key][0], info["map"][key][1], err_msg=key)
    np.testing.assert_array_equal(obs["route"][0], obs["route"][1])
    merged = merge_info({}, info, np.array([True, True]))
    np.testing.assert_array_equal(merged["map"]["route"], info["map"]["route"])
