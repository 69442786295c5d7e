"""End-to-end policy networks: shapes and bounds, recurrent state, registry, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import PicklePayload
from reflexdrive.envs.config import ACCELERATION_BOUNDS, EGO_FEATURES, STEERING_BOUNDS
from reflexdrive.policies.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from reflexdrive.policies.encoders import (
    EGO_NORMALISATION,
    bev_to_float,
    encoder_layer,
    lidar_inputs,
)
from reflexdrive.policies.networks import (
    ActionHead,
    CnnConfig,
    HeadConfig,
    RecurrentConfig,
    TransformerConfig,
)
from reflexdrive.policies.registry import (
    POLICIES,
    build,
    load_policy,
    policy_checkpoint,
    recurrent_from_cnn,
    save_policy,
)
from torch import nn

from reflexdrive.common.threads import cpu_threads
from reflexdrive.common.validation import ConfigError

SPEC = {"bev": {"shape": [4, 64, 64], "dtype": "uint8"},
        "ego": {"shape": [8], "dtype": "float32"},
        "lidar": {"shape": [64, 2], "dtype": "float32"}}
NAMES = ("cnn", "gru", "lstm", "transformer")
RECURRENT = ("gru", "lstm")
SMALL = {"cnn": {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32},
                 "head": {"hidden": 16}},
         "gru": {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32},
                 "hidden_size": 16, "head": {"hidden": 16}},
         "lstm": {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32},
                  "hidden_size": 16, "layers": 2, "head": {"hidden": 16}},
         "transformer": {"encoder": {"d_model": 16, "heads": 2, "layers": 2,
                                     "feedforward": 32, "patch_size": 16},
                         "head": {"hidden": 16}}}
"""Small configs: the tests are about behaviour, not capacity."""


def small(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build(name, SPEC, **SMALL[name]).eval()


def observations(batch: int, seed: int = 0, steps: int | None = None) -> dict[str, torch.Tensor]:
    """Random rasters (0/255), plausible ego vectors and lidar returns; `(T, B, ...)` when
    `steps`."""
    generator = torch.Generator().manual_seed(seed)
    lead = (batch,) if steps is None else (steps, batch)
    bev = (torch.rand(*lead, 4, 64, 64, generator=generator) > 0.8).to(torch.uint8) * 255
    ego = torch.randn(*lead, 8, generator=generator) * torch.tensor(
        [5.0, 1.0, 0.05, 0.5, 0.05, 1.0, 0.0, 0.0]) + torch.tensor(
        [22.0, 0.0, 0.0, 0.0, 0.0, 1.0, 4.0, 1.0])
    distance = 2.0 + 46.0 * torch.rand(*lead, 64, generator=generator)
    rate = 8.0 * torch.randn(*lead, 64, generator=generator)
    return {"bev": bev, "ego": ego, "lidar": torch.stack([distance, rate], dim=-1)}


def row(obs: dict[str, torch.Tensor], index) -> dict[str, torch.Tensor]:
    return {key: value[index] for key, value in obs.items()}


def inside_bounds(action: torch.Tensor, head: HeadConfig = HeadConfig()) -> bool:
    (a_lo, a_hi), (s_lo, s_hi) = head.acceleration_bounds, head.steering_bounds
    return bool(((action[..., 0] >= a_lo) & (action[..., 0] <= a_hi)
                 & (action[..., 1] >= s_lo) & (action[..., 1] <= s_hi)).all())


# ----------------------------------------------------------------------------- shapes, bounds


def test_policy_constants_match_the_envs():
    """`policies` does not import `envs`: its copies of the env's conventions are pinned."""
    assert tuple(EGO_NORMALISATION) == EGO_FEATURES
    assert HeadConfig().acceleration_bounds == ACCELERATION_BOUNDS
    assert HeadConfig().steering_bounds == STEERING_BOUNDS
    assert tuple(POLICIES) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_bounds(name):
    policy = small(name)
    obs = observations(3)
    with torch.inference_mode():
        action, state = policy(obs)
    assert action.shape == (3, 2) and action.dtype == torch.float32
    assert inside_bounds(action)
    assert policy.is_recurrent == (name in RECURRENT)
    assert len(state) == {"cnn": 0, "gru": 1, "lstm": 2, "transformer": 0}[name]
    for tensor in state:
        assert tensor.shape == (policy.config.layers, 3, policy.config.hidden_size)
    assert policy.features(obs).shape == (3, policy.encoder.features_dim)
    # float rasters in [0, 1] (what stable-baselines3 hands a features extractor) agree
    scaled = {**obs, "bev": obs["bev"].float() / 255.0}
    with torch.inference_mode():
        assert torch.allclose(policy(scaled)[0], action, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_large_batches_run_in_row_chunks_with_the_rows_of_a_whole_batch(name, monkeypatch):
    """`in_row_chunks`: 2.5 chunks of rows give each row what the batch in one call gives
    (a row's features depend on that row only)."""
    from reflexdrive.policies import encoders

    policy = small(name)
    obs = observations(10, seed=3)
    with torch.inference_mode():
        whole = policy.features(obs)
        monkeypatch.setattr(encoders, "ROW_CHUNK", 4)
        chunked = policy.features(obs)
        single = torch.cat([policy.features(row(obs, slice(i, i + 1))) for i in range(10)])
    assert chunked.shape == whole.shape == (10, policy.encoder.features_dim)
    assert torch.allclose(chunked, whole, atol=1e-5)
    assert torch.allclose(single, whole, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_extreme_inputs_and_saturated_heads_stay_inside_the_bounds(name):
    policy = small(name)
    with torch.no_grad():
        policy.head.mlp[-1].weight.mul_(1e4)                 # drive tanh into saturation
    obs = {"bev": torch.full((4, 4, 64, 64), 255, dtype=torch.uint8),
           "ego": torch.tensor([[1e9] * 8, [-1e9] * 8, [0.0] * 8, [1e30] * 8]),
           "lidar": torch.tensor([[[1e9, 1e9]] * 64, [[-1e9, -1e9]] * 64, [[0.0, 0.0]] * 64,
                                  [[0.0, -1e30]] * 64])}
    obs["bev"][2:] = 0
    with torch.inference_mode():
        action, _ = policy(obs)
    assert torch.isfinite(action).all() and inside_bounds(action)
    assert (action.abs() > 0.4).any()                        # saturated: at a bound, not zero


def test_head_squash_by_hand():
    """`centre + half_range * tanh(raw)`; an untrained head commands exactly zero."""
    head = ActionHead(5, HeadConfig(hidden=4))
    zero = torch.zeros(1, 5)
    with torch.no_grad():
        bias = head.mlp[-1].bias.unsqueeze(0)                # the raw output at zero weights
        assert torch.allclose(head.squash(bias), torch.zeros(1, 2), atol=1e-6)   # coast
        assert head(zero).abs().max() < 0.05                 # last layer's weights start small
        raw = torch.tensor([[0.5, -1.0], [50.0, -50.0]])
        expected = torch.tensor([[-2.0 + 6.0 * math.tanh(0.5), 0.5 * math.tanh(-1.0)],
                                 [4.0, -0.5]])
        assert torch.allclose(head.squash(raw), expected, atol=1e-6)
        unit = head.to_unit(torch.tensor([[-8.0, -0.5], [4.0, 0.5], [-2.0, 0.0]]))
        assert torch.equal(unit, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))
    custom = ActionHead(5, HeadConfig(acceleration_bounds=(1.0, 3.0), steering_bounds=(-0.1, 0.2)))
    with torch.no_grad():
        action = custom.squash(torch.tensor([[-100.0, 100.0], [0.0, 0.0]]))
    assert torch.allclose(action, torch.tensor([[1.0, 0.2], [2.0, 0.05]]))


# ----------------------------------------------------------------------------- registry, configs


def test_build_rejects_unknown_names_and_bad_specs():
    with pytest.raises(ValueError, match="policy='resnet' is invalid: allowed values are "
                                         "cnn, gru, lstm, transformer"):
        build("resnet", SPEC)
    with pytest.raises(ValueError, match=r"obs_spec.ego=None is invalid: .*have bev"):
        build("cnn", {"bev": SPEC["bev"]})
    with pytest.raises(ValueError, match=r"obs_spec.bev=None is invalid"):
        build("gru", {"ego": SPEC["ego"]})
    with pytest.raises(ValueError, match=r"obs_spec=\[\] is invalid"):
        build("cnn", [])
    with pytest.raises(ValueError, match=r"obs_spec.ego.shape=\[6\] is invalid: must be \[8\]"):
        build("cnn", {**SPEC, "ego": {"shape": [6], "dtype": "float32"}})
    with pytest.raises(ValueError, match=r"obs_spec.bev.dtype='float32' is invalid: allowed "
                                         "values are uint8"):
        build("cnn", {**SPEC, "bev": {"shape": [4, 64, 64], "dtype": "float32"}})
    with pytest.raises(ValueError, match=r"obs_spec.bev.shape=\[64, 64\] is invalid"):
        build("cnn", {**SPEC, "bev": {"shape": [64, 64], "dtype": "uint8"}})


def test_lidar_entry_is_required_by_policies_that_read_it():
    without = {"bev": SPEC["bev"], "ego": SPEC["ego"]}
    for name in NAMES:
        with pytest.raises(ValueError, match=r"obs_spec.lidar=None is invalid: this policy "
                                             r"reads 'bev', 'ego', 'lidar'"):
            build(name, without)
    with pytest.raises(ValueError, match=r"obs_spec.lidar.shape=\[64, 3\] is invalid: must "
                                         r"be \[beams, 2\]"):
        build("cnn", {**SPEC, "lidar": {"shape": [64, 3], "dtype": "float32"}})
    # switched off, the lidar is neither required nor read
    cnn = build("cnn", without, encoder={"lidar_hidden": 0})
    vit = build("transformer", without, encoder={"lidar": False})
    assert cnn.obs_keys == vit.obs_keys == ("bev", "ego")
    assert build("gru", SPEC).obs_keys == ("bev", "ego", "lidar")
    obs = observations(2)
    with pytest.raises(ValueError, match="observation 'lidar' is missing"):
        small("cnn")({"bev": obs["bev"], "ego": obs["ego"]})
    with pytest.raises(ValueError, match=r"lidar must be \(2, 64, 2\), got \(2, 32, 2\)"):
        small("transformer")({**obs, "lidar": obs["lidar"][:, :32]})


@pytest.mark.parametrize("name", RECURRENT)
def test_the_recurrent_head_reads_the_features_beside_the_state(name):
    """`skip`: the head's input is `[features, output]`; without it the output alone."""
    with_skip, without = (build(name, SPEC, **{**SMALL[name], "skip": flag})
                          for flag in (True, False))
    assert with_skip.head.mlp[0].in_features == 32 + 16
    assert without.head.mlp[0].in_features == 16
    obs = observations(2, seed=10)
    features = with_skip.features(obs)
    out, _ = with_skip.core(features.unsqueeze(0), with_skip.initial_state(2), None)
    assert torch.equal(out[0, :, :32], features)


def test_lidar_inputs_by_hand():
    """closeness 1 - r / 50, rate / 10, closing rate max(-rate, 0) / max(r, 1), clamped."""
    lidar = torch.tensor([[[10.0, -20.0], [48.0, 0.0], [0.5, -30.0], [60.0, 5.0]]])
    inputs = lidar_inputs(lidar).reshape(4, 3)
    expected = torch.tensor([[0.8, -2.0, 2.0], [0.04, 0.0, 0.0], [0.99, -3.0, 5.0],
                             [0.0, 0.5, 0.0]])
    assert torch.allclose(inputs, expected, atol=1e-6)


def test_the_closing_rate_reaches_the_action():
    """Two scenes alike but for how fast the gap ahead closes give different actions."""
    policy = small("cnn")
    obs = observations(1, seed=9)
    fast = {**obs, "lidar": obs["lidar"].clone()}
    fast["lidar"][0, 0] = torch.tensor([20.0, -25.0])       # beam 0: straight ahead
    obs["lidar"][0, 0] = torch.tensor([20.0, 0.0])
    with torch.inference_mode():
        assert not torch.equal(policy(obs)[0], policy(fast)[0])


@pytest.mark.parametrize("name, config, needle", [
    ("cnn", {"width": 3}, "width is not a field of CnnConfig: allowed fields are encoder, head"),
    ("cnn", {"encoder": {"depth": 2}}, "encoder.depth is not a field of ConvEncoderConfig"),
    ("cnn", {"encoder": {"channels": []}}, r"encoder.channels=\(\) is invalid"),
    ("cnn", {"head": {"hidden": 0}}, "head.hidden=0 is invalid: must be an integer >= 1"),
    ("gru", {"hidden_size": 0}, "hidden_size=0 is invalid"),
    ("lstm", {"layers": 1.5}, "layers=1.5 is invalid"),
    ("cnn", {"head": {"acceleration_bounds": [4, -8]}},
     r"head.acceleration_bounds=\(4, -8\) is invalid: must be a finite \(low, high\) pair"),
    ("gru", {"head": {"steering_bounds": [0, math.inf]}}, "head.steering_bounds"),
    ("transformer", {"encoder": {"patch_size": 7}},
     "encoder.patch_size=7 is invalid: must divide the bev's 64 x 64 px; allowed values are "
     "1, 2, 4, 8, 16, 32, 64"),
    ("transformer", {"encoder": {"heads": 3}}, "encoder.heads=3 is invalid: must divide"),
    ("transformer", {"encoder": "big"}, "encoder='big' is invalid: must be a dict"),
])
def test_invalid_configs_name_the_field(name, config, needle):
    with pytest.raises(ValueError, match=needle):
        build(name, SPEC, **config)


@pytest.mark.parametrize("name, config, message", [
    ("cnn", {"head": {"hidden": True}}, "head.hidden=True is invalid: must be an integer >= 1"),
    ("cnn", {"encoder": {"features": "3"}},
     "encoder.features='3' is invalid: must be an integer >= 1"),
    ("gru", {"hidden_size": 128.0}, "hidden_size=128.0 is invalid: must be an integer >= 1"),
    ("cnn", {"encoder": {"channels": [32, 64.0]}},
     "encoder.channels[1]=64.0 is invalid: must be an integer"),
    ("transformer", {"encoder": {"lidar": 1}}, "encoder.lidar=1 is invalid: must be true or "
                                               "false"),
    ("lstm", {"skip": "yes"}, "skip='yes' is invalid: must be true or false"),
])
def test_configs_reject_bools_strings_and_float_widths(name, config, message):
    with pytest.raises(ConfigError) as error:
        build(name, SPEC, **config)
    assert str(error.value) == message


@pytest.mark.parametrize("cls, name", [(CnnConfig, "cnn"), (RecurrentConfig, "gru"),
                                       (RecurrentConfig, "lstm"),
                                       (TransformerConfig, "transformer")])
def test_configs_round_trip_through_dicts(cls, name):
    config = cls.from_dict(SMALL[name])
    assert cls.from_dict(config.to_dict()) == config
    assert build(name, SPEC, **SMALL[name]).config == config
    assert cls() == cls.from_dict({})


# ----------------------------------------------------------------------------- recurrent state


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_state_is_per_env(name):
    policy = small(name)
    a, b = observations(2, seed=1, steps=4), observations(2, seed=2, steps=4)
    for key in a:                                       # same env 0, other env 1
        b[key][:, 0] = a[key][:, 0]
    with torch.inference_mode():
        state_a = state_b = None
        for t in range(4):
            action_a, state_a = policy(row(a, t), state_a)
            action_b, state_b = policy(row(b, t), state_b)
            assert torch.equal(action_a[0], action_b[0])        # env 1 never reaches env 0
            assert not torch.equal(action_a[1], action_b[1])
            for sa, sb in zip(state_a, state_b):
                assert torch.equal(sa[:, 0], sb[:, 0])
        # resetting env 0 zeroes its state and leaves env 1's
        start = torch.tensor([True, False])
        reset = policy.reset_state(state_a, start)
        for before, after in zip(state_a, reset):
            assert torch.equal(after[:, 0], torch.zeros_like(after[:, 0]))
            assert torch.equal(after[:, 1], before[:, 1])
        # a step with episode_start equals a step from zeros for env 0, from its state for 1
        action, _ = policy(row(a, 0), state_a, start)
        fresh, _ = policy(row(row(a, 0), slice(0, 1)))
        carried, _ = policy(row(row(a, 0), slice(1, 2)), tuple(s[:, 1:2] for s in state_a))
        assert torch.allclose(action[0], fresh[0], atol=1e-6)
        assert torch.allclose(action[1], carried[0], atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("with_resets", [False, True])
def test_sequence_forward_equals_steps(name, with_resets):
    policy = small(name)
    steps, batch = 6, 3
    obs = observations(batch, seed=3, steps=steps)
    start = torch.zeros(steps, batch, dtype=torch.bool)
    if with_resets:
        start[0, :] = True
        start[2, 0] = start[4, 1] = start[4, 2] = True
    state0 = None
    with torch.inference_mode():
        if policy.is_recurrent:      # begin from a non-zero state
            _, state0 = policy(observations(batch, seed=4))
        actions, final = policy.forward_sequence(obs, state0, start)
        state = state0
        for t in range(steps):
            action, state = policy(row(obs, t), state, start[t])
            assert torch.allclose(actions[t], action, atol=1e-5), t
    assert actions.shape == (steps, batch, 2)
    for a, b in zip(final, state):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    """Behaviour cloning on a sequence: one loss, gradients on all weights."""
    policy = small(name).train()
    obs = observations(2, seed=5, steps=3)
    start = torch.tensor([[True, True], [False, True], [False, False]])
    actions, _ = policy.forward_sequence(obs, None, start.float())       # sb3 passes floats
    expert = torch.tensor([1.0, 0.1]).expand(3, 2, 2)
    loss = ((policy.head.to_unit(actions) - policy.head.to_unit(expert)) ** 2).mean()
    loss.backward()
    missing = [n for n, p in policy.named_parameters() if p.grad is None]
    assert not missing


# ----------------------------------------------------------------------------- transformer


def test_attention_map():
    policy = small("transformer")
    obs = observations(2, seed=6)
    with torch.inference_mode():
        attention = policy.attention_map(obs)
        action, _ = policy(obs)
        explained, state, products = policy.explain(obs)
    grid = (64 // 16, 64 // 16)
    assert attention.shape == (2, *grid) and policy.patch_grid == grid
    assert (attention >= 0).all() and (attention.sum(dim=(1, 2)) <= 1 + 1e-5).all()
    assert torch.equal(explained, action) and state == ()          # the same features
    assert torch.allclose(products["attention"], attention)
    default = build("transformer", SPEC).eval()
    with torch.inference_mode():
        assert default.attention_map(obs).shape == (2, 8, 8)         # 8 x 8 px patches


def test_encoder_layer_is_the_torch_layer():
    """`encoder_layer` is `nn.TransformerEncoderLayer` (pre-norm, GELU, no dropout): all
    tokens, or the first ones only, in training (torch's reference path, gradients too)
    and at inference (torch's fast path)."""
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    x = torch.randn(5, 7, 16)
    expected = layer(x)
    assert torch.allclose(encoder_layer(layer, x), expected, atol=1e-5)
    first = encoder_layer(layer, x, queries=2)
    assert first.shape == (5, 2, 16) and torch.allclose(first, expected[:, :2], atol=1e-5)
    first.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
    layer.eval()
    with torch.inference_mode():
        fast = layer(x)
        assert torch.allclose(encoder_layer(layer, x, queries=1), fast[:, :1], atol=1e-5)
    assert not torch.allclose(expected[:, :1], x[:, :1], atol=1e-2)     # the layer did work


def test_encoder_layer_rows_do_not_depend_on_their_place_in_the_batch():
    """A row's output is the same bits wherever it sits in the batch, on two threads (a
    compare cell's rows move between the local and the Ray executors): the shipped
    transformer's sizes, all tokens and the cls token alone."""
    torch.manual_seed(4)
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True).eval()
    x = torch.randn(64, 67, 16 * 4)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(5))
    with cpu_threads(2), torch.inference_mode():
        for queries in (None, 1):
            placed = encoder_layer(layer, x, queries=queries)[order]
            assert torch.equal(encoder_layer(layer, x[order], queries=queries), placed)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_bev_to_float_channels_last_has_the_same_values(dtype):
    """The channels-last conversion gives the plain one's values, bit for bit, in NHWC
    memory; a uint8 raster is scaled to [0, 1], a float one taken as is."""
    bev = observations(3, seed=8)["bev"]
    bev = bev if dtype == torch.uint8 else bev.float() / 255.0
    plain, last = bev_to_float(bev), bev_to_float(bev, channels_last=True)
    assert last.shape == plain.shape == (3, 4, 64, 64) and last.dtype == torch.float32
    assert last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(last, plain) and plain.max() == 1.0 and plain.min() == 0.0


# ----------------------------------------------------------------------------- checkpoints


ENV_SPEC = {"observation": dict(SPEC),
            "sensors": {"range_m": 48.0, "bev_m_per_px": 1.0}}


@pytest.mark.parametrize("name", NAMES)
def test_default_policies_round_trip_and_are_small(tmp_path, name):
    torch.manual_seed(0)
    policy = build(name, SPEC).eval()
    path = save_policy(tmp_path / f"{name}.pt", policy, ENV_SPEC,
                       meta={"command": "reflexdrive train --policy x", "metrics": {"l": 1.0}})
    size = path.stat().st_size
    params = sum(p.numel() for p in policy.parameters())
    print(f"{name}: {params} parameters, {size / 1e6:.2f} MB")
    assert size < 5e6, f"{name}: {size / 1e6:.2f} MB"
    loaded, checkpoint = load_policy(path, spec={**ENV_SPEC, "extra": 1})
    assert type(loaded) is type(policy) and not loaded.training
    assert loaded.config == policy.config and loaded.obs_spec == policy.obs_spec
    assert checkpoint.kind == "policy" and checkpoint.name == name
    assert checkpoint.meta["command"] == "reflexdrive train --policy x"
    assert checkpoint.spec == ENV_SPEC
    obs = observations(3, seed=7)
    with torch.inference_mode():
        a, sa = policy(obs)
        b, sb = loaded(obs)
    assert torch.equal(a, b) and all(torch.equal(x, y) for x, y in zip(sa, sb))


@pytest.mark.parametrize("name, switch", [("cnn", ("lidar_hidden", 0)),
                                          ("gru", ("lidar_hidden", 0)),
                                          ("transformer", ("lidar", False))])
def test_checkpoints_from_before_the_lidar_load_without_it(tmp_path, name, switch):
    """A config written before the lidar field existed reads as lidar off."""
    field, off = switch
    torch.manual_seed(0)
    skip = {"skip": False} if name in RECURRENT else {}     # the recurrent layout then
    old = build(name, SPEC, **{**SMALL[name], **skip,
                               "encoder": {**SMALL[name]["encoder"], field: off}}).eval()
    checkpoint = policy_checkpoint(old)
    config = checkpoint.config
    del config["encoder"][field]
    config.pop("skip", None)
    path = _saved(tmp_path / "old.pt", old, config=config,
                  spec={"observation": {"bev": SPEC["bev"], "ego": SPEC["ego"]}})
    loaded, _ = load_policy(path, spec={"observation": SPEC})
    assert loaded.obs_keys == ("bev", "ego")
    obs = observations(2, seed=8)
    with torch.inference_mode():
        assert torch.equal(loaded(obs)[0], old(obs)[0])


def test_spec_mismatch_is_rejected(tmp_path):
    path = save_policy(tmp_path / "cnn.pt", small("cnn"), ENV_SPEC)
    with pytest.raises(CheckpointError, match=r"sensors.range_m: checkpoint 48.0, env 32.0"):
        load_policy(path, spec={**ENV_SPEC, "sensors": {"range_m": 32.0, "bev_m_per_px": 1.0}})
    other = {"bev": {"shape": [4, 32, 64], "dtype": "uint8"}, "ego": SPEC["ego"]}
    with pytest.raises(CheckpointError, match=r"observation.bev.shape\[1\]: checkpoint 64, "
                                              "env 32"):
        load_policy(path, spec={"observation": other})
    # saving with a spec that does not describe the network's inputs is refused
    with pytest.raises(ValueError, match="needs an 'observation' entry"):
        save_policy(tmp_path / "x.pt", small("cnn"), {"bev": SPEC["bev"]})
    with pytest.raises(ValueError, match="does not describe the policy's inputs"):
        save_policy(tmp_path / "x.pt", small("cnn"), {"observation": other})
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("keep", [0, 10, 0.5, -20])
def test_truncated_file(tmp_path, keep):
    path = save_policy(tmp_path / "gru.pt", small("gru"))
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as error:
        load_policy(path)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_policy(tmp_path / "nope.pt")


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pt"
    torch.save({"format": "reflexdrive-checkpoint", "kind": "policy", "name": "cnn",
                "state_dict": {}, "config": PicklePayload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="weights_only") as error:
        load_policy(path)
    assert str(path) in str(error.value) and "nothing was run" in str(error.value)
    assert not marker.exists()


def _saved(path: Path, policy, **changes) -> Path:
    checkpoint = policy_checkpoint(policy)
    fields = {"kind": checkpoint.kind, "name": checkpoint.name, "config": checkpoint.config,
              "state_dict": checkpoint.state_dict, "spec": checkpoint.spec, "meta": {}}
    return save_checkpoint(path, Checkpoint(**{**fields, **changes}))


def test_wrong_kind_name_config_and_weights_are_rejected(tmp_path):
    policy = small("cnn")
    with pytest.raises(CheckpointError, match="holds a 'detector' model .* expected a 'policy'"):
        load_policy(_saved(tmp_path / "d.pt", policy, kind="detector", name="centernet"))
    with pytest.raises(CheckpointError, match="model 'resnet' is unknown; known policy models: "
                                              "cnn, gru, lstm, transformer"):
        load_policy(_saved(tmp_path / "r.pt", policy, name="resnet"))
    with pytest.raises(CheckpointError, match="invalid cnn config: head.hidden=0"):
        load_policy(_saved(tmp_path / "c.pt", policy,
                           config={**policy.config.to_dict(), "head": {"hidden": 0}}))
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_policy(_saved(tmp_path / "w.pt", policy, name="gru"))
    with pytest.raises(CheckpointError, match="no usable observation entry"):
        load_policy(_saved(tmp_path / "s.pt", policy, spec={"sensors": {}}))
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a reflexdrive checkpoint"):
        load_policy(plain)
    # the file is generic: it loads as a checkpoint whatever model it holds
    assert load_checkpoint(tmp_path / "r.pt").name == "resnet"


@pytest.mark.parametrize("name", RECURRENT)
def test_a_recurrent_policy_warm_started_from_a_cnn_drives_as_the_cnn(name):
    cnn = small("cnn")
    with torch.no_grad():                       # a head that is not near zero everywhere
        for parameter in cnn.head.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    policy = recurrent_from_cnn(name, cnn, hidden_size=8).eval()
    assert policy.name == name and policy.config.skip and policy.config.hidden_size == 8
    assert policy.config.encoder == cnn.config.encoder
    obs = observations(3, seed=11)
    state = tuple(torch.randn_like(s) for s in policy.initial_state(3))
    with torch.inference_mode():
        expected, _ = cnn(obs)
        action, new_state = policy(obs, state)
    assert torch.allclose(action, expected, atol=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(state, new_state))   # the state runs
    loss = policy.head.to_unit(policy.train()(obs, state)[0]).sum()
    loss.backward()
    # and can learn: the head's weights on the recurrent output get gradients (the
    # recurrent weights do from the next update on, once those are non-zero)
    assert policy.head.mlp[0].weight.grad[:, 32:].abs().sum() > 0
    with pytest.raises(ValueError, match="needs skip=True"):
        recurrent_from_cnn(name, cnn, skip=False)
    with pytest.raises(ValueError, match="makes a recurrent policy"):
        recurrent_from_cnn("transformer", cnn)
    with pytest.raises(ValueError, match="must be a cnn policy"):
        recurrent_from_cnn(name, small("transformer"))
