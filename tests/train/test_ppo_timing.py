"""A timing input added to an imitation checkpoint for a latency-in-the-loop fine-tune
(`policies.registry.with_timing`, `PPOConfig.policy_config` with `init`) and the frozen
encoder that keeps that pathway training (`policies.encoders.FreezableEncoder`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ppo_helpers import (
    TINY,
    first_minibatch_log_probs,
    imitation_checkpoint,
    tiny_config,
    weights_of,
)
from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.policies.registry import build, load_policy, save_policy, with_timing

from reflexdrive.common.validation import ConfigError
from reflexdrive.train.ppo import (
    build_model,
    load_init,
    make_env,
    resolved_policy_config,
    train_ppo,
)
from reflexdrive.train.sb3_adapters import EncodedObservations

torch.set_num_threads(1)

TIMING = {"encoder": {"timing_hidden": 4}}
PERCEPTION = 16 + 8 + 64        # TINY's bev_features + ego_hidden + the default lidar_hidden


def observations(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    spec = policy_spec()["observation"]
    generator = torch.Generator().manual_seed(seed)
    return {"bev": (torch.rand(batch, *spec["bev"]["shape"], generator=generator) > 0.9
                    ).to(torch.uint8) * 255,
            "ego": torch.randn(batch, *spec["ego"]["shape"], generator=generator) * 5,
            "lidar": torch.rand(batch, *spec["lidar"]["shape"], generator=generator) * 40,
            "timing": torch.rand(batch, *spec["timing"]["shape"], generator=generator) * 0.3}


@pytest.mark.parametrize("name", ["cnn", "gru"])
def test_a_policy_with_an_added_timing_input_drives_exactly_as_before(name):
    torch.manual_seed(1)
    policy = build(name, policy_spec()["observation"], **TINY[name]).eval()
    widened = with_timing(policy, 4).eval()
    assert widened.config.encoder.timing_hidden == 4 and "timing" in widened.obs_keys
    assert policy.config.encoder.timing_hidden == 0             # the source is left alone
    obs = observations(6)
    changed = {**obs, "timing": obs["timing"] + 0.5}
    with torch.no_grad():
        expected, _ = policy(obs)
        actual, _ = widened(obs)
        other_timing, _ = widened(changed)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    torch.testing.assert_close(other_timing, expected, rtol=0, atol=0)   # zero weight
    # the new fusion columns are the only zeros added; the timing MLP itself is live
    fuse = widened.encoder.fuse[0].weight
    assert torch.equal(fuse[:, -4:], torch.zeros_like(fuse[:, -4:]))
    assert torch.equal(fuse[:, :-4], policy.encoder.fuse[0].weight)
    assert widened.encoder.timing(obs["timing"]).abs().sum() > 0


def test_only_a_conv_encoder_without_timing_gains_one():
    spec = policy_spec()["observation"]
    with pytest.raises(ValueError, match="policy='transformer' is invalid: a timing input can "
                                         "be added to a cnn, gru or lstm"):
        with_timing(build("transformer", spec, **TINY["transformer"]), 4)
    cnn = build("cnn", spec, **TINY["cnn"])
    with pytest.raises(ValueError, match="already reads obs\\['timing'\\]"):
        with_timing(with_timing(cnn, 4), 4)
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="timing_hidden=.* must be an integer >= 1"):
            with_timing(cnn, bad)


def test_the_frozen_features_finish_to_the_encoders_own():
    torch.manual_seed(2)
    encoder = with_timing(build("cnn", policy_spec()["observation"], **TINY["cnn"]), 4).encoder
    obs = observations(5)
    with torch.no_grad():
        frozen = encoder.frozen_features(obs)
        assert frozen.shape == (5, PERCEPTION + 4) == (5, encoder.frozen_width)
        torch.testing.assert_close(frozen[:, PERCEPTION:], obs["timing"], rtol=0, atol=0)
        torch.testing.assert_close(encoder.finish_features(frozen), encoder(obs), rtol=0, atol=0)
    assert {id(p) for p in encoder.unfrozen_parameters()} == {
        *(id(p) for p in encoder.timing.parameters()), id(encoder.fuse[0].weight)}
    plain = build("cnn", policy_spec()["observation"], **TINY["cnn"]).encoder
    assert plain.frozen_width == plain.features_dim and plain.unfrozen_parameters() == []


def test_a_frozen_encoder_trains_only_the_fusion_columns_of_the_timing():
    torch.manual_seed(3)
    encoder = with_timing(build("cnn", policy_spec()["observation"], **TINY["cnn"]), 4).encoder
    encoder.freeze()
    encoder.freeze()                                     # idempotent: one hook
    assert not any(p.requires_grad for p in encoder.conv.parameters())
    assert not encoder.fuse[0].bias.requires_grad and not encoder.fuse[1].weight.requires_grad
    frozen = encoder.frozen_features(observations(8)).detach()
    encoder.finish_features(frozen).square().sum().backward()
    grad = encoder.fuse[0].weight.grad
    assert torch.equal(grad[:, :PERCEPTION], torch.zeros_like(grad[:, :PERCEPTION]))
    assert grad[:, PERCEPTION:].abs().sum() > 0
    assert all(p.grad is not None for p in encoder.timing.parameters())


def test_ppo_adds_the_timing_input_and_starts_from_the_imitation_policy(tmp_path):
    config = tiny_config(tmp_path, "cnn", policy_config=TIMING,
                         init=imitation_checkpoint(tmp_path, "cnn"), num_envs=16, n_steps=16,
                         batch_size=32, mode="realtime",
                         latency="fixed:0.02+0..0.2")
    assert config.freeze_encoder
    init = load_init(config)
    policy_config = resolved_policy_config(config, init)
    assert policy_config["encoder"]["timing_hidden"] == 4
    env = make_env(config, policy_config)
    assert isinstance(env, EncodedObservations)
    assert env.observation_space.shape == (PERCEPTION + 4,)
    model = build_model(config, env, policy_config, init)
    encoder = model.policy.driving.encoder
    trained = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    unfrozen = {*(id(p) for p in encoder.timing.parameters()), id(encoder.fuse[0].weight)}
    frozen = {id(p) for p in encoder.parameters()} - unfrozen
    assert unfrozen <= trained and not frozen & trained
    assert model.policy.mlp_extractor.detach_critic        # the value loss stays out
    imitation, _ = load_policy(imitation_checkpoint(tmp_path, "cnn"))
    obs = env.reset()
    for _ in range(3):
        raw, _ = model.predict(obs, deterministic=True)
        raw_obs = {key: torch.from_numpy(np.asarray(value))
                   for key, value in env.raw_observations.items()}
        with torch.no_grad():
            expected, _ = imitation(raw_obs)
        np.testing.assert_allclose(env.squash(raw), expected.numpy(), atol=1e-6)
        obs, *_ = env.step(raw)
    env.close()
    recomputed, stored = first_minibatch_log_probs(config)
    assert torch.equal(torch.exp(recomputed - stored), torch.ones(32))     # ratio exactly 1


def test_a_fine_tune_trains_the_timing_pathway_and_keeps_the_perception(tmp_path):
    init = imitation_checkpoint(tmp_path, "cnn")
    config = tiny_config(tmp_path, "cnn", policy_config=TIMING, init=init,
                         value_warmup_updates=0, learning_rate=1e-3, target_kl=None,
                         mode="realtime", latency="fixed:0.02+0..0.2")
    exported, checkpoint = load_policy(train_ppo(config, progress=False))
    start, _ = load_policy(init)
    assert exported.config.encoder.timing_hidden == 4
    assert checkpoint.meta["ppo"]["policy_config"] == TIMING
    before, after = weights_of(start), weights_of(exported)
    for key in before:
        if key.startswith("encoder.") and key != "encoder.fuse.0.weight":
            assert torch.equal(before[key], after[key]), key
    fuse = after["encoder.fuse.0.weight"]
    assert torch.equal(fuse[:, :-4], before["encoder.fuse.0.weight"])    # perception's
    assert fuse[:, -4:].abs().sum() > 0                                  # timing has a say
    assert not torch.equal(before["head.mlp.2.weight"], after["head.mlp.2.weight"])


@pytest.mark.parametrize("policy_config, message", [
    ({"encoder": {"timing_hidden": 0}}, "must be empty with init"),
    ({"encoder": {"timing_hidden": 4, "features": 8}}, "must be empty with init"),
    ({"head": {"hidden": 8}}, "or \\{\"encoder\": \\{\"timing_hidden\": N\\}\\} with N >= 1"),
])
def test_with_init_only_a_timing_input_can_be_configured(tmp_path, policy_config, message):
    with pytest.raises(ConfigError, match=f"^policy_config=.*{message}"):
        tiny_config(tmp_path, policy_config=policy_config, init="bc.pt")


def test_a_transformer_init_refuses_an_added_timing_input(tmp_path):
    config = tiny_config(tmp_path, "transformer", policy_config=TIMING,
                         init=imitation_checkpoint(tmp_path, "transformer"))
    with pytest.raises(ConfigError, match="^init=.*cannot take policy_config .* not to a "
                                          "PatchEncoder"):
        load_init(config)


def test_a_timing_policy_saved_and_loaded_still_reads_timing(tmp_path):
    widened = with_timing(build("cnn", policy_spec()["observation"], **TINY["cnn"]), 4)
    path = tmp_path / "aware.pt"
    save_policy(path, widened, policy_spec(), {"command": "test"})
    loaded, _ = load_policy(path, spec=policy_spec())
    assert loaded.config.encoder.timing_hidden == 4
    obs = observations(3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(obs)[0], widened.eval()(obs)[0], rtol=0, atol=0)


def test_an_age_only_timing_input_ignores_the_command_in_flight():
    torch.manual_seed(4)
    encoder = with_timing(build("cnn", policy_spec()["observation"], **TINY["cnn"]), 4,
                          timing_command=False).encoder
    assert encoder.config.timing_command is False
    timing = torch.tensor([[0.12, 2.5, 0.05, 0.0], [0.12, -6.0, -0.1, 0.0],
                           [0.30, 2.5, 0.05, 0.0]])
    features = encoder.timing(timing)
    torch.testing.assert_close(features[0], features[1], rtol=0, atol=0)   # command unread
    assert not torch.equal(features[0], features[2])                      # age read
    reading = with_timing(build("cnn", policy_spec()["observation"], **TINY["cnn"]), 4).encoder
    assert not torch.equal(reading.timing(timing)[0], reading.timing(timing)[1])
    with pytest.raises(ValueError, match="timing_command='no' is invalid"):
        with_timing(build("cnn", policy_spec()["observation"], **TINY["cnn"]), 4,
                    timing_command="no")


def test_ppo_takes_an_age_only_timing_input(tmp_path):
    config = tiny_config(tmp_path, "cnn", policy_config={
        "encoder": {"timing_hidden": 4, "timing_command": False}},
        init=imitation_checkpoint(tmp_path, "cnn"))
    policy, _ = load_init(config)
    assert (policy.config.encoder.timing_hidden, policy.config.encoder.timing_command) == (4, False)
    with pytest.raises(ConfigError, match="optionally \"timing_command\": false"):
        tiny_config(tmp_path, policy_config={"encoder": {"timing_hidden": 4,
                                                         "timing_command": "no"}}, init="bc.pt")
