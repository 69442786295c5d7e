"""Helpers shared by the PPO tests (tests/train/test_ppo*.py): tiny networks and configs,
a stand-in imitation checkpoint, and the first minibatch's log-probabilities."""

from __future__ import annotations

import torch
from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.policies.registry import build, save_policy

from reflexdrive.train.ppo import (
    PPOConfig,
    build_model,
    load_init,
    make_env,
    resolved_policy_config,
)

ENCODER = {"channels": [4], "bev_features": 16, "ego_hidden": 8, "features": 16}
TINY = {"cnn": {"encoder": ENCODER, "head": {"hidden": 16}},
        "lstm": {"encoder": ENCODER, "hidden_size": 8, "head": {"hidden": 16}},
        "gru": {"encoder": ENCODER, "hidden_size": 8, "head": {"hidden": 16}},
        "transformer": {"encoder": {"patch_size": 16, "d_model": 8, "heads": 2, "layers": 1,
                                    "feedforward": 16}, "head": {"hidden": 16}}}
SHORT = {"duration_s": 0.5}                   # 5 ticks at 10 Hz


def tiny_config(tmp_path, policy="cnn", **overrides) -> PPOConfig:
    values = dict(policy=policy, num_envs=2, n_steps=64, batch_size=64, n_epochs=1,
                  total_timesteps=256, policy_config=TINY.get(policy, {}),
                  out_dir=str(tmp_path / "run"), checkpoint_every=1, device="cpu", threads=1,
                  seed=3)
    values.update(overrides)
    return PPOConfig(**values)


def model_ready_to_collect(config):
    """`(env, model, callback)`: `config`'s sb3 model built from its init, set up as
    `learn` sets it up before its first rollout (no step taken yet)."""
    init = load_init(config)
    policy_config = resolved_policy_config(config, init)
    env = make_env(config, policy_config)
    model = build_model(config, env, policy_config, init)
    _, callback = model._setup_learn(config.steps_per_update, callback=None,
                                     reset_num_timesteps=True, tb_log_name="t",
                                     progress_bar=False)
    callback.on_training_start(locals(), globals())
    return env, model, callback


def imitation_checkpoint(tmp_path, name: str) -> str:
    """A 'behaviour-cloned' tiny policy: random weights, head scaled up so that its
    actions vary with the observation."""
    torch.manual_seed(7)
    policy = build(name, policy_spec()["observation"], **TINY[name])
    with torch.no_grad():
        policy.head.mlp[-1].weight.mul_(200.0)
    path = tmp_path / f"bc-{name}.pt"
    save_policy(path, policy, policy_spec(), {"command": "bc"})
    return str(path)


def first_minibatch_log_probs(config):
    """Collect one rollout with `config`'s model (from its init) and recompute the first
    minibatch's log-probabilities the way the update does, before any gradient step:
    `(recomputed, rollout's)` over the minibatch's real (unpadded) samples."""
    env, model, callback = model_ready_to_collect(config)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    model.policy.set_training_mode(True)
    data = next(iter(model.rollout_buffer.get(model.batch_size)))
    with torch.no_grad():
        if config.recurrent:
            _, log_prob, _ = model.policy.evaluate_actions(
                data.observations, data.actions, data.lstm_states, data.episode_starts)
            real = data.mask > 1e-8
            recomputed, stored = log_prob[real], data.old_log_prob[real]
        else:
            _, recomputed, _ = model.policy.evaluate_actions(data.observations, data.actions)
            stored = data.old_log_prob
    env.close()
    return recomputed, stored


def weights_of(module):
    return {key: value.detach().clone() for key, value in module.state_dict().items()}
