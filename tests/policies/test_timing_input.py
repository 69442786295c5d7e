"""The `timing` input of the encoders (`encoder.timing_hidden`): off by default (the shipped
checkpoints neither read it nor change), read when on (cnn / gru features, a transformer
token), recorded in checkpoints, refused where the env has none."""

from __future__ import annotations

import pytest
import torch
from reflexdrive.agents.end_to_end import EndToEndAgent, policy_spec
from reflexdrive.envs.clock.timing import TIMING_FEATURES
from reflexdrive.policies.checkpoint import CheckpointError
from reflexdrive.policies.encoders import TIMING_NORMALISATION, TimingEncoder, check_obs_spec
from reflexdrive.policies.registry import (
    POLICIES,
    build,
    load_policy,
    save_policy,
    shipped_checkpoint,
)

SPEC = policy_spec()["observation"]
SMALL = {"cnn": {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32}},
         "gru": {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32},
                 "hidden_size": 16},
         "transformer": {"encoder": {"d_model": 16, "heads": 2, "layers": 1,
                                     "feedforward": 32, "patch_size": 16}}}


def small(name: str, timing_hidden: int, seed: int = 0):
    torch.manual_seed(seed)
    config = SMALL[name]
    return build(name, SPEC, **{**config, "encoder": {**config["encoder"],
                                                      "timing_hidden": timing_hidden}}).eval()


def observations(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    bev = (torch.rand(batch, 4, 64, 64, generator=generator) > 0.8).to(torch.uint8) * 255
    ego = torch.tensor([[22.0, 0, 0, 0, 0, 1, 4, 1]]).repeat(batch, 1)
    lidar = torch.stack([2 + 46 * torch.rand(batch, 64, generator=generator),
                         torch.randn(batch, 64, generator=generator)], -1)
    route = torch.zeros(batch, 5, 2)
    timing = torch.tensor([[0.03, 0.5, 0.0, 0.0]]).repeat(batch, 1)
    return {"bev": bev, "ego": ego, "lidar": lidar, "route": route, "timing": timing}


def test_the_spec_and_the_normalisation_follow_the_env():
    assert SPEC["timing"] == {"shape": [4], "dtype": "float32"}
    assert tuple(TIMING_NORMALISATION) == TIMING_FEATURES
    with pytest.raises(ValueError, match=r"obs_spec.timing.shape=\[3\] is invalid: must be"):
        check_obs_spec({**SPEC, "timing": {"shape": [3], "dtype": "float32"}}, timing=True)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_timing_changes_the_action_only_when_read(name):
    obs = observations(3)
    late = {**obs, "timing": torch.tensor([[0.3, -6.0, 0.05, 0.25]]).repeat(3, 1)}
    unread, read = small(name, 0), small(name, 8)
    assert "timing" not in unread.obs_keys and read.obs_keys[-1] == "timing"
    with torch.inference_mode():
        assert torch.equal(unread(obs)[0], unread(late)[0])
        assert unread(obs)[0].shape == read(obs)[0].shape == (3, 2)
        assert not torch.allclose(read(obs)[0], read(late)[0])
        without = {key: value for key, value in obs.items() if key != "timing"}
        unread(without)                                   # not required when unread
        with pytest.raises(ValueError, match="observation 'timing' is missing"):
            read(without)
        with pytest.raises(ValueError, match=r"timing must be \(3, 4\), got \(3, 3\)"):
            read({**obs, "timing": obs["timing"][:, :3]})


def test_the_transformer_adds_one_timing_token():
    unread, read = small("transformer", 0), small("transformer", 8)
    assert read.encoder.first_patch == unread.encoder.first_patch + 1
    assert read.encoder.tokens(observations(2)).shape[1] == unread.encoder.tokens(
        observations(2)).shape[1] + 1
    assert read.attention_map(observations(2)).shape == unread.attention_map(
        observations(2)).shape


def test_timing_encoder_normalises_and_clamps():
    encoder = TimingEncoder(4)
    with torch.no_grad():
        for layer in (encoder.mlp[0], encoder.mlp[2]):
            layer.weight.zero_()
            layer.bias.zero_()
        for unit in range(4):                             # unit i passes input i through
            encoder.mlp[0].weight[unit, unit] = 1.0
            encoder.mlp[2].weight[unit, unit] = 1.0
    timing = torch.tensor([[0.25, 2.0, 0.05, 0.15], [60.0, -8.0, -0.1, 0.0]])
    # 0.25 s / 0.1 s, 2 / 4 m/s^2, 0.05 / 0.1 rad, 0.15 s / 0.1 s; 600 clamps to 10;
    # negative inputs are cut by the ReLU
    torch.testing.assert_close(encoder(timing), torch.tensor([[2.5, 0.5, 0.5, 1.5],
                                                              [10.0, 0.0, 0.0, 0.0]]))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_timing_checkpoints_round_trip_and_refuse_an_env_without_timing(tmp_path, name):
    policy = small(name, 8)
    path = save_policy(tmp_path / f"{name}.pt", policy, policy_spec())
    loaded, checkpoint = load_policy(path, spec=policy_spec())
    assert loaded.config.encoder.timing_hidden == 8
    assert "timing" in checkpoint.spec["observation"]
    obs = observations(2, seed=3)
    with torch.inference_mode():
        assert torch.equal(loaded(obs)[0], policy(obs)[0])
    old_env = {**policy_spec(), "observation": {k: v for k, v in SPEC.items() if k != "timing"}}
    with pytest.raises(CheckpointError, match=r"observation.timing: checkpoint .*env has none"):
        load_policy(path, spec=old_env)
    agent = EndToEndAgent(loaded, device="cpu", checkpoint=checkpoint)
    arrays = {key: value.numpy() for key, value in obs.items() if key != "timing"}
    with pytest.raises(CheckpointError, match=r"trained on other observations: .* no timing"):
        agent.act(arrays, {})


@pytest.mark.parametrize("name", [n for n in POLICIES if shipped_checkpoint(n).exists()])
def test_shipped_checkpoints_load_without_reading_the_timing(name):
    policy, _ = load_policy(shipped_checkpoint(name), spec=policy_spec())
    assert "timing" not in policy.obs_keys and policy.config.encoder.timing_hidden == 0
