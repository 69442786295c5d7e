"""Expert data on every road: the route in the shards (equal to the env's `obs["route"]`),
a road-network shard, a route-reading policy that learns from it and drives, the mixture's
names, and the hazards at the protocol grids' parameter ranges."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from reflexdrive.agents.end_to_end import EndToEndAgent, policy_spec
from reflexdrive.envs.gym.vector import BatchedDrivingEnv, batched_scenarios
from reflexdrive.envs.road_map import ROUTE_TARGETS_M
from reflexdrive.envs.scenarios import make_config
from reflexdrive.policies.registry import build, load_policy

from reflexdrive.common.validation import ConfigError
from reflexdrive.protocol.grid import KPH
from reflexdrive.protocol.ncap import ncap_grid
from reflexdrive.protocol.r157 import r157_grid
from reflexdrive.train.behaviour_cloning import BehaviourCloning, frame_samples
from reflexdrive.train.expert_data import (
    IMITATION_SEED_BASE,
    MIX_ENTRIES,
    PROTOCOL_RANGES,
    SCENARIOS,
    CollectionConfig,
    ShardSpec,
    collect_round,
    collect_shard,
    mix_entry,
    round_folder,
)
from reflexdrive.train.imitation import train_imitation
from reflexdrive.train.imitation_config import ImitationConfig

TINY = {"encoder": {"channels": [8, 8], "bev_features": 32, "ego_hidden": 16, "features": 32,
                    "lidar_hidden": 16, "route_hidden": 16},
        "head": {"hidden": 32}}
"""A small cnn that reads the route."""

MIX = {"roundabout": 1.0}
COLLECTION = CollectionConfig(envs=2, shard_episodes=2, weights=tuple(MIX.items()))
"""Two roundabout episodes (at most 150 ticks each) in one shard of two worlds."""


@pytest.fixture(scope="module")
def roundabout_data(tmp_path_factory):
    """Round 0 of `COLLECTION`, collected once, under `root`."""
    root = tmp_path_factory.mktemp("roundabout") / "data"
    data, description = collect_round(0, 2, COLLECTION, root, progress=False)
    return root, data, description


def tiny_config(**changes) -> ImitationConfig:
    fields = dict(policy="cnn", episodes=2, envs=2, shard_episodes=2, scenario_weights=MIX,
                  epochs=3, batch_size=32, val_fraction=0.0, lr=3e-3, policy_config=TINY)
    fields.update(changes)
    return ImitationConfig(**fields)


def test_a_road_network_shard_holds_the_route(roundabout_data):
    _, data, description = roundabout_data
    assert description["complete"] and description["frames"] == len(data) > 100
    assert description["frames_per_scenario"] == {"roundabout": len(data)}
    assert [MIX_ENTRIES[c] for c in np.unique(data.scenario)] == ["roundabout"]
    assert list(data.episodes) == [IMITATION_SEED_BASE, IMITATION_SEED_BASE + 1]
    assert data.route.shape == (len(data), len(ROUTE_TARGETS_M), 2)
    assert data.route.dtype == np.float32 and np.isfinite(data.route).all()
    # the route bends: on a roundabout its points leave the ego's axis by metres
    assert np.abs(data.route[:, -1, 1]).max() > 10.0


def test_shard_route_rows_equal_the_env_route_for_the_same_seed_and_tick(roundabout_data):
    """Replaying an episode's executed commands in a fresh one-world env gives, tick by
    tick, the `obs["route"]` (and `ego`) the shard recorded."""
    _, data, _ = roundabout_data
    episode = int(data.episodes[1])
    rows = np.flatnonzero(data.episode == episode)
    env = BatchedDrivingEnv(num_envs=1, scenario="roundabout", autoreset_mode="disabled")
    try:
        obs, _ = env.reset(seed=[episode])
        for row in rows:
            assert data.tick[row] == row - rows[0]
            assert np.array_equal(obs["route"][0], data.route[row]), int(data.tick[row])
            assert np.array_equal(obs["ego"][0].astype(np.float32), data.ego[row])
            obs, _, terminated, truncated, _ = env.step(data.executed[row][None])
        assert terminated[0] or truncated[0]     # the recorded episode ended there too
    finally:
        env.close()


def test_a_route_reading_policy_learns_from_the_route(roundabout_data):
    """The trainer feeds `route` to a policy that reads it: the loss falls over a few
    updates and the route encoder's weights move."""
    _, data, _ = roundabout_data
    torch.manual_seed(0)
    policy = build("cnn", policy_spec()["observation"], **TINY)
    assert "route" in policy.obs_keys
    trainer = BehaviourCloning(policy, tiny_config())
    seen = []
    trainer.policy.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    samples = frame_samples(np.arange(len(data)))
    before = trainer.evaluate(data, samples, 512)["loss"]
    assert torch.equal(seen[0]["route"], torch.from_numpy(data.route))
    route_weights = [p.detach().clone() for p in trainer.policy.encoder.route.parameters()]
    order = np.random.default_rng(0).permutation(len(data))
    for step in range(30):
        trainer.update(data, samples, order[(step * 32) % len(data):][:32], lr=3e-3)
    after = trainer.evaluate(data, samples, 512)["loss"]
    assert after < 0.5 * before, (before, after)
    moved = [not torch.equal(a, b) for a, b in
             zip(route_weights, trainer.policy.encoder.route.parameters())]
    assert all(moved)


def test_a_route_reading_checkpoint_drives_a_roundabout(roundabout_data, tmp_path):
    root, _, _ = roundabout_data
    out = tmp_path / "cnn"
    shutil.copytree(root, out / "data")
    result = train_imitation(tiny_config(epochs=1), out, command="route test", progress=False,
                             log=lambda _: None)
    policy, checkpoint = load_policy(result["checkpoint"], spec=policy_spec())
    assert policy.config.encoder.route_hidden == 16 and "route" in policy.obs_keys
    assert checkpoint.meta["command"] == "route test"
    agent = EndToEndAgent(policy, device="cpu")
    env = BatchedDrivingEnv(num_envs=2, scenario="roundabout", autoreset_mode="disabled")
    try:
        obs, info = env.reset(seed=[3, 4])
        agent.reset(np.ones(2, bool))
        for _ in range(10):
            actions = agent.act(obs, info).actions
            assert actions.shape == (2, 2) and np.isfinite(actions).all()
            obs, _, _, _, info = env.step(actions)
    finally:
        env.close()


def test_a_route_reading_learner_drives_a_dagger_shard_of_a_protocol_range_entry():
    """DAgger rounds record the route too, with a learner that reads it at the wheel, on a
    hazard at the protocol ranges (a profiled cut-in on the batched backend)."""
    torch.manual_seed(0)
    learner = EndToEndAgent(build("cnn", policy_spec()["observation"], **TINY).eval(),
                            device="cpu")
    config = CollectionConfig(envs=2, weights=(("cut-in-protocol", 1.0),))
    spec = ShardSpec(round=1, index=0, scenario="cut-in-protocol", first=0, episodes=2)
    data = collect_shard(spec, config, learner=learner, beta=0.0)
    assert data.learner.all() and (data.round == 1).all() and len(data) > 20
    assert [MIX_ENTRIES[c] for c in np.unique(data.scenario)] == ["cut-in-protocol"]
    assert data.route.shape == (len(data), 5, 2) and np.isfinite(data.route).all()
    start = data.episode_start
    assert np.allclose(data.route[start, :, 0], ROUTE_TARGETS_M)   # straight ahead at t = 0
    assert not np.array_equal(data.executed, data.action)          # the learner's commands


# ----------------------------------------------------------------------------- the mix


def test_the_mix_is_every_batched_scenario_and_the_protocol_ranges():
    # every batched scenario but the hazards on road networks (not in the expert's mix)
    assert set(SCENARIOS) == set(batched_scenarios()) - {"intersection-cross-traffic",
                                                         "stopped-vehicle-curve"}
    assert MIX_ENTRIES[:4] == ("highway", "lead-brake", "cut-in", "stopped-vehicle")
    assert MIX_ENTRIES == SCENARIOS + tuple(PROTOCOL_RANGES)
    for name in SCENARIOS:
        assert mix_entry(name) == (name, {})
    scenario, overrides = mix_entry("cut-in-protocol")
    assert scenario == "cut-in" and overrides["lateral_speed_mps"] == (0.5, 3.0)
    # the entries' overrides key the data folder: other ranges, other shards
    a = round_folder("data", 0, 4, CollectionConfig(weights=(("lead-brake", 1.0),)))
    b = round_folder("data", 0, 4, CollectionConfig(weights=(("lead-brake-protocol", 1.0),)))
    assert a != b


@pytest.mark.parametrize("make", [
    lambda: ImitationConfig(scenario_weights={"roundabouts": 1.0}),
    lambda: CollectionConfig(weights=(("roundabouts", 1.0),)),
])
def test_a_bad_mix_name_is_one_clear_error(make):
    with pytest.raises(ConfigError) as error:
        make()
    message = str(error.value)
    assert "'roundabouts' is invalid: allowed values are highway, lead-brake, cut-in" in message
    assert "roundabout, intersection, lead-brake-protocol" in message and "\n" not in message


@pytest.mark.parametrize("weights, needle", [
    ({}, "scenario_weights={} is invalid: must be a non-empty"),
    ({"merge": -1.0}, "scenario_weights.merge=-1.0 is invalid: must be a finite number >= 0"),
    ({"merge": float("nan")}, "scenario_weights.merge=nan is invalid"),
    ({"merge": 0.0}, "at least one weight must be > 0"),
])
def test_bad_mix_weights(weights, needle):
    with pytest.raises(ConfigError, match=None) as error:
        ImitationConfig(scenario_weights=weights)
    assert needle in str(error.value)


# ----------------------------------------------------------------------------- protocol


def protocol_parameters():
    """`(point, entry, {scenario-config field: value})` of every grid point of both suites
    that a straight hazard's generator can pose: its test speed, gaps, decelerations,
    slowdown and lateral speed in the generator's terms (NCAP CCRm, a target slower from
    the start, has no generator, and R157's stationary obstacle on curves is not a straight
    hazard: both are left out)."""
    for point in ncap_grid() + r157_grid():
        p, speed = point.parameters, point.test_speed_mps
        if point.test in ("CCRs", "stationary"):
            yield point.point, "stopped-vehicle", {"ego_speed_mps": speed}
        elif point.test in ("CCRb", "lead-brake"):
            yield point.point, "lead-brake", {"ego_speed_mps": speed, "gap_m": p["gap_m"],
                                              "decel_mps2": p["target_decel_mps2"]}
        elif point.test == "cut-in":
            yield point.point, "cut-in", {
                "ego_speed_mps": speed, "gap_m": p["gap_m"],
                "slowdown_mps": -p["relative_speed_kph"] * KPH,
                "lateral_speed_mps": p["lateral_speed_mps"]}
        else:
            assert point.test in ("CCRm", "stationary-curve")


def inside(config, values) -> bool:
    return all(getattr(config, name) is not None
               and getattr(config, name)[0] - 1e-9 <= value <= getattr(config, name)[1] + 1e-9
               for name, value in values.items())


def test_the_protocol_ranges_hold_every_protocol_grid_point_the_defaults_miss():
    """The evaluation scenarios' default ranges hold none of the protocol grids' points
    (they are highway speeds); the `-protocol` entries hold all of them."""
    cases = list(protocol_parameters())
    assert len(cases) == 9 + 4 + 7 + 12 + sum(1 for p in r157_grid() if p.test == "cut-in")
    for point, scenario, values in cases:
        assert not inside(make_config(scenario), values), point
        wide_scenario, overrides = mix_entry(f"{scenario}-protocol")
        assert wide_scenario == scenario
        assert inside(make_config(scenario, overrides), values), (point, values)
    for name, (scenario, _) in PROTOCOL_RANGES.items():   # the defaults stay inside too
        default, wide = make_config(scenario), make_config(*mix_entry(name))
        for field in ("ego_speed_mps", "gap_m", "decel_mps2", "slowdown_mps", "onset_s"):
            if hasattr(default, field):
                assert inside(wide, {field: getattr(default, field)[0]})
                assert inside(wide, {field: getattr(default, field)[1]})


# ----------------------------------------------------------------------------- timing


def test_realtime_shards_hold_the_timing_and_a_timing_reading_cnn_learns_from_it():
    """Collected in realtime at fixed:0.15 (10 Hz ticks, m = 2: a decision every other
    tick), every frame's `timing` is `[0.15, the previous decision's command, 0]` (its
    command landed before the next observation), zeros at an episode's start; the
    trainer feeds it to a cnn that reads it, whose timing encoder then learns."""
    config = CollectionConfig(envs=2, shard_episodes=2, weights=(("lead-brake", 1.0),),
                              mode="realtime", latency="fixed:0.15")
    spec = ShardSpec(round=0, index=0, scenario="lead-brake", first=0, episodes=2)
    data = collect_shard(spec, config)
    assert data.timing.shape == (len(data), 4) and data.timing.dtype == np.float32
    assert np.array_equal(data.tick[~data.episode_start] % 2, np.zeros((~data.episode_start)
                                                                       .sum()))
    np.testing.assert_allclose(data.timing[:, 0], 0.15, atol=1e-7)
    assert (data.timing[:, 3] == 0).all()
    start = data.episode_start
    assert (data.timing[start, 1:3] == 0).all()
    follows = np.flatnonzero(~start)
    assert np.array_equal(data.timing[follows, 1:3], data.executed[follows - 1])
    assert np.abs(data.timing[:, 1]).max() > 0.1                 # the expert's commands vary

    torch.manual_seed(0)
    tiny = {**TINY, "encoder": {**TINY["encoder"], "route_hidden": 0, "timing_hidden": 8}}
    policy = build("cnn", policy_spec()["observation"], **tiny)
    assert "timing" in policy.obs_keys
    trainer = BehaviourCloning(policy, tiny_config(policy_config=tiny))
    seen = []
    trainer.policy.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    samples = frame_samples(np.arange(len(data)))
    before = trainer.evaluate(data, samples, 512)["loss"]
    assert torch.equal(seen[0]["timing"], torch.from_numpy(data.timing))
    weights = [p.detach().clone() for p in trainer.policy.encoder.timing.parameters()]
    order = np.random.default_rng(0).permutation(len(data))
    for step in range(20):
        trainer.update(data, samples, order[(step * 32) % len(data):][:32], lr=3e-3)
    assert trainer.evaluate(data, samples, 512)["loss"] < before
    assert all(not torch.equal(a, b) for a, b in
               zip(weights, trainer.policy.encoder.timing.parameters()))
