"""PPO with stable-baselines3 on the batched envs: the VecEnv adapter, the policy adapter,
training, resume, export (`reflexdrive.train.ppo`, `reflexdrive.train.sb3_adapters`)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from ppo_helpers import (
    SHORT,
    TINY,
    first_minibatch_log_probs,
    imitation_checkpoint,
    model_ready_to_collect,
    tiny_config,
    weights_of,
)
from reflexdrive.agents.end_to_end import EndToEndAgent, policy_spec
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.envs.latency import LatencyProfile, ProfileLatency, save_profile
from reflexdrive.policies.networks import ActionHead, HeadConfig
from reflexdrive.policies.registry import build, load_policy

from reflexdrive.common.seed_ranges import TRAINING
from reflexdrive.common.validation import ConfigError
from reflexdrive.train.ppo import (
    LinearDecay,
    attach_encoder,
    build_model,
    checkpoints,
    load_init,
    make_env,
    resolved_policy_config,
    train_ppo,
)
from reflexdrive.train.sb3_adapters import (
    RAW_ACTION_LIMIT,
    EncodedObservations,
    TanhActions,
    make_batched_vec_env,
)

torch.set_num_threads(1)

def as_tensors(obs):
    return {key: torch.from_numpy(np.asarray(obs[key])) for key in ("bev", "ego", "lidar")}


# ----------------------------------------------------------------------------- the VecEnv


def test_the_adapter_steps_like_the_batched_env_and_resets_with_terminal_observations():
    venv = make_batched_vec_env(("highway",), 3, seed=5, scenario_config=SHORT)
    space = venv.observation_space
    assert set(space.spaces) == {"bev", "ego", "lidar", "route", "timing"}
    obs = venv.reset()
    assert obs["bev"].shape == (3, *space["bev"].shape) and obs["bev"].dtype == np.uint8
    assert obs["ego"].shape == (3, *space["ego"].shape) and obs["ego"].dtype == np.float32
    assert all(space.contains({k: v[i] for k, v in obs.items()}) for i in range(3))
    first_seeds = venv.scenario_seeds.copy()
    assert (first_seeds >= TRAINING.start).all() and len(set(first_seeds)) == 3

    reference = BatchedDrivingEnv(3, "highway", autoreset_mode="disabled", scenario_config=SHORT)
    ref_obs, _ = reference.reset(seed=[int(s) for s in first_seeds])
    np.testing.assert_array_equal(obs["bev"], ref_obs["bev"])
    actions = np.array([[0.5, 0.0], [-1.0, 0.01], [0.0, -0.01]])
    for tick in range(5):
        obs, rewards, dones, infos = venv.step(actions)
        ref_obs, ref_rewards, terminated, truncated, _ = reference.step(actions)
        assert rewards.dtype == np.float32 and rewards.shape == (3,)
        assert dones.dtype == np.bool_ and len(infos) == 3
        np.testing.assert_allclose(rewards, ref_rewards, rtol=1e-6)
        np.testing.assert_array_equal(dones, terminated | truncated)
        if tick < 4:
            assert not dones.any() and infos == [{}, {}, {}]
    assert dones.all() and truncated.all()                  # the 0.5 s time limit
    for i, info in enumerate(infos):
        final = info["terminal_observation"]
        np.testing.assert_array_equal(final["bev"], ref_obs["bev"][i])
        np.testing.assert_array_equal(final["ego"], ref_obs["ego"][i])
        assert info["TimeLimit.truncated"] is True and info["is_success"] is True
        assert info["episode"]["l"] == 5
        assert info["scenario_seed"] == first_seeds[i]
    # the returned rows are already the next episodes' first observations
    new_seeds = venv.scenario_seeds.copy()
    assert not set(new_seeds) & set(first_seeds)
    fresh, _ = BatchedDrivingEnv(3, "highway", scenario_config=SHORT).reset(
        seed=[int(s) for s in new_seeds])
    np.testing.assert_array_equal(obs["bev"], fresh["bev"])
    np.testing.assert_array_equal(obs["ego"], fresh["ego"])


def test_leaving_the_road_terminates_without_bootstrapping():
    venv = make_batched_vec_env(("highway",), 2, seed=1)
    venv.reset()
    returns = np.zeros(2)
    for _ in range(100):
        obs, rewards, dones, infos = venv.step(np.tile([0.0, 0.5], (2, 1)))
        returns += rewards
        if dones.any():
            break
    i = int(np.flatnonzero(dones)[0])
    info = infos[i]
    assert info["offroad"] or info["crashed"]
    assert info["TimeLimit.truncated"] is False and info["is_success"] is False
    assert rewards[i] < -9.0                                 # the 10-point penalty
    assert info["episode"]["r"] == pytest.approx(returns[i], rel=1e-5)


def test_scenarios_split_the_envs_and_the_clock_settings_pass_through(tmp_path):
    profile = tmp_path / "cnn-profile.json"
    save_profile(LatencyProfile(stack="cnn", device="cpu: test", batch_size=1,
                                stages={"policy": [0.02, 0.15]}, created="2026-01-01T00:00:00Z"),
                 profile)
    spec = f"profile:{profile}"
    config = tiny_config(tmp_path, scenarios=("highway", "cut-in"), num_envs=3, n_steps=32,
                         batch_size=32, latency=spec, mode="realtime")
    env = make_env(config, resolved_policy_config(config), encode=False)
    venv = env.venv
    assert [e.num_envs for e in venv.envs] == [2, 1]
    assert [e.scenario.name for e in venv.envs] == ["highway", "cut-in"]
    assert all(e.clock_config.latency == spec and e.clock_config.mode == "realtime"
               and isinstance(e.latency_model, ProfileLatency) for e in venv.envs)
    assert venv.get_attr("clock_config", [2])[0].latency == spec
    obs = env.reset()
    assert obs["bev"].shape[0] == 3
    for _ in range(3):
        obs, rewards, dones, infos = env.step(np.zeros((3, 2), dtype=np.float32))
    assert rewards.shape == (3,) and len(infos) == 3
    env.close()


def test_encoded_observations_are_the_encoders_features_terminal_ones_included():
    encoder = build("cnn", policy_spec()["observation"], **TINY["cnn"]).encoder.eval()
    wrapped = EncodedObservations(make_batched_vec_env(("highway",), 3, seed=5,
                                                       scenario_config=SHORT), 16)
    reference = make_batched_vec_env(("highway",), 3, seed=5, scenario_config=SHORT)
    with pytest.raises(RuntimeError, match="needs attach"):
        wrapped.reset()
    with pytest.raises(ValueError, match="frozen_width=256 is invalid"):
        wrapped.attach(build("cnn", policy_spec()["observation"]).encoder)
    wrapped.attach(encoder)
    assert wrapped.observation_space.shape == (16,)

    def features(obs):
        with torch.no_grad():
            return encoder(as_tensors(obs)).numpy()

    obs, ref_obs = wrapped.reset(), reference.reset()
    np.testing.assert_array_equal(obs, features(ref_obs))
    actions = np.array([[0.5, 0.0], [-1.0, 0.01], [0.0, -0.01]])
    for _ in range(5):
        obs, rewards, dones, infos = wrapped.step(actions)
        ref_obs, ref_rewards, ref_dones, ref_infos = reference.step(actions)
        assert obs.dtype == np.float32 and obs.shape == (3, 16)
        np.testing.assert_array_equal(obs, features(ref_obs))
        np.testing.assert_array_equal(wrapped.raw_observations["bev"], ref_obs["bev"])
        np.testing.assert_array_equal(rewards, ref_rewards)
    assert dones.all() and ref_dones.all()                  # the 0.5 s time limit
    final = features({key: np.stack([info["terminal_observation"][key] for info in ref_infos])
                      for key in ("bev", "ego", "lidar")})
    for i, info in enumerate(infos):
        np.testing.assert_array_equal(info["terminal_observation"], final[i])
        assert info["TimeLimit.truncated"] is True


def test_the_update_of_a_frozen_encoder_never_runs_it(tmp_path):
    config = tiny_config(tmp_path, "cnn", policy_config={}, num_envs=4, n_steps=16,
                         batch_size=32, n_epochs=2, init=imitation_checkpoint(tmp_path, "cnn"),
                         learning_rate=1e-3)
    assert config.freeze_encoder                         # the default
    env, model, callback = model_ready_to_collect(config)
    calls = []
    model.policy.driving.encoder.register_forward_hook(lambda *_: calls.append(1))
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    assert len(calls) >= 16                                # once per step (+ terminal rows)
    before = weights_of(model.policy)
    calls.clear()
    model.train()
    after = weights_of(model.policy)
    assert calls == []                                     # 2 epochs, no encoder pass
    moved = {key for key in before if not torch.equal(before[key], after[key])}
    assert moved and not any("encoder" in key for key in moved)
    assert any(key.startswith("action_net") for key in moved)
    env.close()


def test_tanh_actions_squash_like_the_policy_head():
    config = HeadConfig(hidden=4)
    head = ActionHead(3, config)
    venv = make_batched_vec_env(("highway",), 2, seed=0)
    wrapped = TanhActions(venv, config.acceleration_bounds, config.steering_bounds)
    raw = np.random.default_rng(0).normal(scale=3.0, size=(64, 2)).astype(np.float32)
    np.testing.assert_array_equal(wrapped.squash(raw), head.squash(torch.from_numpy(raw)).numpy())
    limit = np.array([[RAW_ACTION_LIMIT, -RAW_ACTION_LIMIT]], dtype=np.float32)
    np.testing.assert_array_equal(wrapped.squash(limit), [[4.0, -0.5]])   # saturated
    assert wrapped.action_space.shape == (2,)


# ----------------------------------------------------------------------------- the policy


def raw_observations(env, obs):
    """The env's dict observations behind `obs` (the frozen encoder's features, or `obs`
    itself when the encoder trains)."""
    return env.raw_observations if isinstance(env, EncodedObservations) else obs


@pytest.mark.parametrize("name, freeze", [("cnn", False), ("cnn", True), ("transformer", False),
                                          ("transformer", True), ("lstm", False),
                                          ("gru", False), ("gru", True)])
def test_ppo_starts_from_the_imitation_policy(tmp_path, name, freeze):
    config = tiny_config(tmp_path, name, policy_config={}, freeze_encoder=freeze,
                         init=imitation_checkpoint(tmp_path, name))
    init = load_init(config)
    policy_config = resolved_policy_config(config, init)
    env = make_env(config, policy_config)
    assert isinstance(env, EncodedObservations) is freeze
    model = build_model(config, env, policy_config, init)
    imitation = init[0]
    # PPO trains exactly the imitation network's parameters (plus the critic and log-std),
    # the encoder's only when it is not frozen
    trained = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    encoder = {id(p) for p in model.policy.driving.encoder.parameters()}
    rest = {id(p) for p in model.policy.driving.parameters()} - encoder
    assert rest <= trained and id(model.policy.log_std) in trained
    assert (encoder <= trained) is not freeze and (encoder & trained == set()) is freeze
    assert all(p.requires_grad is not freeze for p in model.policy.driving.encoder.parameters())
    np.testing.assert_allclose(model.policy.log_std.detach().exp().numpy(), config.initial_std,
                               rtol=1e-6)
    obs = env.reset()
    state, start = None, np.ones(2, dtype=bool)
    ref_state = None
    for _ in range(3):
        raw, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
        with torch.no_grad():
            expected, ref_state = imitation(as_tensors(raw_observations(env, obs)), ref_state)
        actions = env.squash(raw)
        np.testing.assert_allclose(actions, expected.numpy(), atol=1e-6)
        assert np.abs(actions).max() > 0.05                 # not the untrained coasting
        obs, _, dones, _ = env.step(raw)
        start = dones
    env.close()


def test_init_must_hold_the_configured_policy(tmp_path):
    path = imitation_checkpoint(tmp_path, "cnn")
    with pytest.raises(ConfigError, match="init=.*holds a 'cnn' policy"):
        load_init(tiny_config(tmp_path, "lstm", policy_config={}, init=path))


# ----------------------------------------------------------------------------- training


def agent_matches_model(model, env, path, steps=3):
    """The exported checkpoint driven by EndToEndAgent gives the model's deterministic
    (squashed) actions, step by step, recurrent state included."""
    agent = EndToEndAgent.from_checkpoint(path, device="cpu")
    obs = env.reset()
    state, start = None, np.ones(env.num_envs, dtype=bool)
    for _ in range(steps):
        raw, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
        decision = agent.act(raw_observations(env, obs), {})
        np.testing.assert_allclose(decision.actions, env.squash(raw), atol=1e-6)
        obs, _, dones, _ = env.step(raw)
        agent.reset(dones)
        start = dones


def test_a_tiny_run_trains_checkpoints_logs_exports_and_resumes(tmp_path):
    from stable_baselines3 import PPO

    config = tiny_config(tmp_path)
    path = train_ppo(config, progress=False)
    run = tmp_path / "run"
    assert path == run / "cnn.pt"
    assert [n for n, _ in checkpoints(run)] == [128, 256]
    events = list((run / "tensorboard").glob("ppo_1/events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    policy, checkpoint = load_policy(path, spec=policy_spec())
    assert checkpoint.meta["method"] == "ppo"
    assert checkpoint.meta["metrics"]["timesteps"] == 256
    assert checkpoint.meta["resumed_from_timesteps"] is None
    assert checkpoint.meta["ppo"]["n_steps"] == 64

    env = make_env(config, resolved_policy_config(config))
    model = PPO.load(checkpoints(run)[-1][1], device="cpu")
    attach_encoder(model, env)
    agent_matches_model(model, env, path)

    # killed after the first update's checkpoint: a rerun continues from 128 timesteps
    checkpoints(run)[-1][1].unlink()
    path.unlink()
    path = train_ppo(config, progress=False)
    meta = load_policy(path)[1].meta
    assert meta["resumed_from_timesteps"] == 128 and meta["metrics"]["timesteps"] == 256
    # a larger total trains on from where the run is, into the same TensorBoard run
    longer = dataclasses.replace(config, total_timesteps=384)
    meta = load_policy(train_ppo(longer, progress=False))[1].meta
    assert meta["resumed_from_timesteps"] == 256 and meta["metrics"]["timesteps"] == 384
    assert [p.name for p in (run / "tensorboard").iterdir()] == ["ppo_1"]
    assert [n for n, _ in checkpoints(run)] == [256, 384]
    # other settings in the same folder are refused, naming what differs
    with pytest.raises(ConfigError, match="learning_rate"):
        train_ppo(dataclasses.replace(config, learning_rate=1e-3), progress=False)
    env.close()


def test_a_run_stored_before_freeze_encoder_existed_resumes_as_a_full_fine_tune(tmp_path):
    import json

    config = tiny_config(tmp_path, total_timesteps=128, freeze_encoder=False)
    train_ppo(config, progress=False)
    run_file = tmp_path / "run" / "ppo_run.json"
    stored = json.loads(run_file.read_text())
    del stored["config"]["freeze_encoder"]
    run_file.write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match="freeze_encoder: False there, True now"):
        train_ppo(dataclasses.replace(config, total_timesteps=256, freeze_encoder=True),
                  progress=False)
    meta = load_policy(train_ppo(dataclasses.replace(config, total_timesteps=256),
                                 progress=False))[1].meta
    assert meta["resumed_from_timesteps"] == 128 and meta["ppo"]["freeze_encoder"] is False


def test_the_same_seed_trains_the_same_weights(tmp_path):
    weights = []
    for folder in ("a", "b"):
        config = tiny_config(tmp_path / folder, total_timesteps=128)
        weights.append(load_policy(train_ppo(config, progress=False))[1].state_dict)
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_recurrent_ppo_trains_and_exports_the_recurrent_policy(tmp_path, name):
    from sb3_contrib import RecurrentPPO

    config = tiny_config(tmp_path, name, n_steps=32, batch_size=32, total_timesteps=128)
    path = train_ppo(config, progress=False)
    policy, checkpoint = load_policy(path, spec=policy_spec())
    assert policy.name == name and checkpoint.meta["metrics"]["timesteps"] == 128
    env = make_env(config, resolved_policy_config(config))
    model = RecurrentPPO.load(checkpoints(tmp_path / "run")[-1][1], device="cpu")
    attach_encoder(model, env)
    agent_matches_model(model, env, path, steps=4)
    env.close()


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("field, value, message", [
    ("policy", "mlp", "policy='mlp' is invalid: allowed values are cnn, gru, lstm, transformer"),
    ("scenarios", ("moon",), "scenarios='moon' is invalid: allowed values are highway"),
    ("num_envs", 0, "num_envs=0 is invalid: must be an integer >= 1"),
    ("batch_size", 100, "batch_size=100 is invalid: must divide n_steps \\* num_envs = 128"),
    ("gamma", 1.5, "gamma=1.5 is invalid"),
    ("latency", "measured", "latency='measured' is invalid: training needs a reproducible"),
    ("latency", "measured+0.01", "latency='measured\\+0.01' is invalid: training needs"),
    ("latency", "fixed:-1", "latency"),
    ("mode", "fast", "mode='fast' is invalid: allowed values are realtime, lockstep"),
    ("initial_std", (0.3, 0.0), "initial_std=.* must be two positive numbers"),
    ("device", "tpu", "device='tpu' is invalid: allowed values are auto, cpu, cuda"),
    ("policy_config", {"width": 3}, "policy_config=.* width is not a field of CnnConfig"),
])
def test_bad_settings_name_the_field(tmp_path, field, value, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(tmp_path, **{field: value})


def test_init_and_policy_config_exclude_each_other(tmp_path):
    with pytest.raises(ConfigError, match="policy_config=.*must be empty with init"):
        tiny_config(tmp_path, init="bc.pt")


@pytest.mark.parametrize("value", [True, "3", 3.0])
@pytest.mark.parametrize("name", ["num_envs", "total_timesteps", "n_steps", "batch_size",
                                  "n_epochs", "value_hidden", "seed", "checkpoint_every",
                                  "threads"])
def test_integers_reject_bools_strings_and_floats(tmp_path, name, value):
    with pytest.raises(ConfigError, match=rf"^{name}=.* is invalid: must be an integer >= "):
        tiny_config(tmp_path, **{name: value})


def test_numbers_must_be_finite(tmp_path):
    with pytest.raises(ConfigError, match=r"^ent_coef=inf is invalid: must be a finite number$"):
        tiny_config(tmp_path, ent_coef=math.inf)
    with pytest.raises(ConfigError, match=r"^initial_std=\(0.3, inf\) is invalid: must be two "
                                          r"positive numbers \(acceleration, steering\)$"):
        tiny_config(tmp_path, initial_std=(0.3, math.inf))
    config = tiny_config(tmp_path, gamma=1, initial_std=(1, 2), num_envs=np.int64(2))
    assert (config.gamma, config.initial_std) == (1.0, (1.0, 2.0))
    assert type(config.gamma) is float and type(config.num_envs) is int


# ----------------------------------------------------------------------------- the update


@pytest.mark.parametrize("freeze", [False, True])
def test_the_first_minibatch_recomputes_the_rollouts_log_probs_exactly(tmp_path, freeze):
    # 16 envs (PPOConfig's default): the rollout's forward passes run 16 rows at a time.
    # On fewer rows MKL's sgemm takes another kernel whose sums round differently (on the
    # AVX-512 machine here a Linear's outputs move by ~1e-6 below 16 rows, and a log-density
    # of the 0.05 steering std by ~2e-6), so "exact" holds for batches of 16 and up.
    config = tiny_config(tmp_path, "cnn", policy_config={}, num_envs=16, n_steps=16,
                         batch_size=32, init=imitation_checkpoint(tmp_path, "cnn"),
                         freeze_encoder=freeze)
    recomputed, stored = first_minibatch_log_probs(config)
    assert recomputed.shape == stored.shape == (32,)
    torch.testing.assert_close(recomputed, stored, rtol=0, atol=0)
    assert torch.equal(torch.exp(recomputed - stored), torch.ones(32))     # ratio exactly 1


@pytest.mark.parametrize("name", ["transformer", "gru"])
def test_attention_and_recurrent_policies_recompute_them_to_float_rounding(tmp_path, name):
    # the update runs other batch shapes (minibatch rows; whole sequences for the recurrent
    # core, step by step in the rollout), so the matmuls may round differently: equal to a
    # few float32 ulps of the log-density, nowhere near a policy change (1e-3 and up)
    config = tiny_config(tmp_path, name, policy_config={}, num_envs=4, n_steps=16,
                         batch_size=32, init=imitation_checkpoint(tmp_path, name))
    recomputed, stored = first_minibatch_log_probs(config)
    assert len(stored) >= 16
    torch.testing.assert_close(recomputed, stored, rtol=0, atol=1e-5)


@pytest.mark.parametrize("warmup, policy_moves, freeze", [(2, False, False), (0, True, False),
                                                         (2, False, True), (0, True, True)])
def test_value_warmup_updates_train_the_critic_and_leave_the_policy_as_it_was(
        tmp_path, warmup, policy_moves, freeze):
    init = imitation_checkpoint(tmp_path, "cnn")
    config = tiny_config(tmp_path, "cnn", policy_config={}, init=init, total_timesteps=256,
                         value_warmup_updates=warmup, learning_rate=1e-3, target_kl=None,
                         freeze_encoder=freeze)
    exported, _ = load_policy(train_ppo(config, progress=False))
    start, _ = load_policy(init)
    before, after = weights_of(start), weights_of(exported)
    same = all(torch.equal(before[key], after[key]) for key in before)
    assert same is not policy_moves
    if freeze:                                      # the encoder bit for bit, whatever moved
        assert all(torch.equal(before[key], after[key]) for key in before
                   if key.startswith("encoder."))
    from stable_baselines3 import PPO
    model = PPO.load(checkpoints(tmp_path / "run")[-1][1], device="cpu")
    fresh = build_model(config, make_env(config, resolved_policy_config(config, load_init(
        config))), resolved_policy_config(config, load_init(config)), load_init(config))
    critic = [key for key in weights_of(model.policy) if key.startswith("value_net")]
    assert critic and not all(torch.equal(weights_of(model.policy)[key],
                                          weights_of(fresh.policy)[key]) for key in critic)
    encoder = {id(p) for p in model.policy.driving.encoder.parameters()}
    for p in model.policy.parameters():                         # unfrozen after, but the
        assert p.requires_grad is not (freeze and id(p) in encoder)        # frozen encoder


def test_the_learning_rate_decays_linearly_to_zero_over_the_run(tmp_path):
    assert LinearDecay(1e-3)(1.0) == 1e-3 and LinearDecay(1e-3)(0.25) == 2.5e-4
    assert LinearDecay(1e-3)(-0.01) == 0.0
    config = tiny_config(tmp_path, total_timesteps=256, learning_rate=1e-3, target_kl=0.05)
    train_ppo(config, progress=False)
    from stable_baselines3 import PPO
    (first, after_first), (_, after_last) = checkpoints(tmp_path / "run")
    # sb3 sets the rate from the progress after each rollout: the first update (after
    # 128 of 256 steps) ran at half the rate, the last one at 0
    lrs = [PPO.load(path, device="cpu").policy.optimizer.param_groups[0]["lr"]
           for path in (after_first, after_last)]
    assert first == 128 and lrs == [pytest.approx(5e-4, rel=1e-12), 0.0]
    assert PPO.load(after_last, device="cpu").target_kl == 0.05
    constant = tiny_config(tmp_path / "c", total_timesteps=256, learning_rate=1e-3,
                           learning_rate_schedule="constant")
    train_ppo(constant, progress=False)
    model = PPO.load(checkpoints(tmp_path / "c" / "run")[-1][1], device="cpu")
    assert model.policy.optimizer.param_groups[0]["lr"] == 1e-3
