"""The `route` input of the encoders (`encoder.route_hidden`): off by default, read when on,
recorded in checkpoints, refused by a checkpoint that reads it where the env has none."""

from __future__ import annotations

import pytest
import torch
from reflexdrive.agents.end_to_end import EndToEndAgent, policy_spec
from reflexdrive.envs.road_map import ROUTE_TARGETS_M
from reflexdrive.policies.checkpoint import CheckpointError
from reflexdrive.policies.encoders import ROUTE_SCALE_M, RouteEncoder
from reflexdrive.policies.registry import (
    POLICIES,
    build,
    load_policy,
    save_policy,
    shipped_checkpoint,
)

K = len(ROUTE_TARGETS_M)
SPEC = policy_spec()["observation"]
SMALL = {"cnn": {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32}},
         "gru": {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32},
                 "hidden_size": 16},
         "transformer": {"encoder": {"d_model": 16, "heads": 2, "layers": 1,
                                     "feedforward": 32, "patch_size": 16}}}


def small(name: str, route_hidden: int, seed: int = 0):
    torch.manual_seed(seed)
    config = SMALL[name]
    return build(name, SPEC, **{**config, "encoder": {**config["encoder"],
                                                      "route_hidden": route_hidden}}).eval()


def observations(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    bev = (torch.rand(batch, 4, 64, 64, generator=generator) > 0.8).to(torch.uint8) * 255
    ego = torch.tensor([[22.0, 0, 0, 0, 0, 1, 4, 1]]).repeat(batch, 1)
    lidar = torch.stack([2 + 46 * torch.rand(batch, 64, generator=generator),
                         torch.randn(batch, 64, generator=generator)], -1)
    ahead = torch.tensor(ROUTE_TARGETS_M)
    route = torch.stack([ahead.expand(batch, K), torch.zeros(batch, K)], -1)
    return {"bev": bev, "ego": ego, "lidar": lidar, "route": route}


def test_the_env_spec_has_the_route_the_envs_observe():
    assert SPEC["route"] == {"shape": [K, 2], "dtype": "float32"}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_route_changes_the_action_only_when_read(name):
    obs = observations(3)
    turned = {**obs, "route": obs["route"] + torch.tensor([0.0, 8.0])}   # a bend to +y
    unread, read = small(name, 0), small(name, 16)
    assert "route" not in unread.obs_keys and read.obs_keys[-1] == "route"
    with torch.inference_mode():
        assert torch.equal(unread(obs)[0], unread(turned)[0])
        assert unread(obs)[0].shape == read(obs)[0].shape == (3, 2)
        assert not torch.allclose(read(obs)[0], read(turned)[0])
        without = {key: value for key, value in obs.items() if key != "route"}
        unread(without)                                   # not required when unread
        with pytest.raises(ValueError, match="observation 'route' is missing"):
            read(without)
        with pytest.raises(ValueError, match=r"route must be \(3, 5, 2\), got \(3, 4, 2\)"):
            read({**obs, "route": obs["route"][:, :4]})


def test_the_transformer_adds_one_route_token():
    unread, read = small("transformer", 0), small("transformer", 16)
    assert read.encoder.first_patch == unread.encoder.first_patch + 1
    assert read.encoder.tokens(observations(2)).shape[1] == unread.encoder.tokens(
        observations(2)).shape[1] + 1
    assert read.attention_map(observations(2)).shape == unread.attention_map(
        observations(2)).shape


def test_route_encoder_scales_and_clamps_its_input():
    encoder = RouteEncoder(K, 4)
    with torch.no_grad():
        for layer in (encoder.mlp[0], encoder.mlp[2]):
            layer.weight.zero_()
            layer.weight[0, 0] = 1.0           # unit 0 passes x of the first target through
            layer.bias.zero_()
    route = torch.zeros(3, K, 2)
    route[:, 0, 0] = torch.tensor([20.0, 1e6, -8.0])
    # 20 m / 40 m = 0.5; 1e6 m clamps to EGO_CLAMP = 10; negative x is cut by the ReLU
    assert encoder(route)[:, 0].tolist() == [0.5, 10.0, 0.0]
    assert ROUTE_SCALE_M == ROUTE_TARGETS_M[-1]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_route_checkpoints_round_trip_and_refuse_an_env_without_route(tmp_path, name):
    policy = small(name, 16)
    path = save_policy(tmp_path / f"{name}.pt", policy, policy_spec())
    loaded, checkpoint = load_policy(path, spec=policy_spec())
    assert loaded.config.encoder.route_hidden == 16 and "route" in checkpoint.spec["observation"]
    obs = observations(2, seed=3)
    with torch.inference_mode():
        assert torch.equal(loaded(obs)[0], policy(obs)[0])
    old_env = {**policy_spec(), "observation": {k: v for k, v in SPEC.items() if k != "route"}}
    with pytest.raises(CheckpointError, match=r"observation.route: checkpoint .*env has none"):
        load_policy(path, spec=old_env)
    # an agent on observations without the route says so in one line
    agent = EndToEndAgent(loaded, device="cpu", checkpoint=checkpoint)
    arrays = {key: value.numpy() for key, value in obs.items() if key != "route"}
    with pytest.raises(CheckpointError, match=r"trained on other observations: .* no route"):
        agent.act(arrays, {})


@pytest.mark.parametrize("name", [n for n in POLICIES if shipped_checkpoint(n).exists()])
def test_shipped_checkpoints_load_without_reading_the_route(name):
    policy, _ = load_policy(shipped_checkpoint(name), spec=policy_spec())
    assert "route" not in policy.obs_keys and policy.config.encoder.route_hidden == 0
