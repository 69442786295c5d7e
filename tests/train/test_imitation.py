"""Imitation of the staged stack: expert data (shards, flags, resume), windows, behaviour
cloning, resumable training, DAgger, config errors and the `train --policy` CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from reflexdrive.agents.end_to_end import EndToEndAgent, policy_spec
from reflexdrive.policies.checkpoint import checksum
from reflexdrive.policies.registry import POLICIES, build, load_policy

from reflexdrive.cli import main
from reflexdrive.common.seed_ranges import TRAINING
from reflexdrive.common.validation import ConfigError
from reflexdrive.train.behaviour_cloning import (
    BehaviourCloning,
    frame_samples,
    split_episodes,
    window_samples,
)
from reflexdrive.train.cli import POLICY_NAMES, imitation_defaults
from reflexdrive.train.expert_data import (
    IMITATION_SEED_BASE,
    ROUND_STRIDE,
    SCENARIOS,
    CollectionConfig,
    ExpertDataset,
    ShardSpec,
    apportion,
    collect_round,
    collect_shard,
    empty_dataset,
    load_shard,
    make_expert,
    plan_round,
    round_folder,
)
from reflexdrive.train.imitation import train_imitation
from reflexdrive.train.imitation_config import ImitationConfig

TINY = {"encoder": {"channels": [8, 8], "bev_features": 32, "ego_hidden": 16, "features": 32,
                    "lidar_hidden": 16},
        "head": {"hidden": 32}}
"""A small network: the tests train in a second or two."""

MIX = {"highway": 1.0, "cut-in": 1.0}
COLLECTION = CollectionConfig(envs=2, shard_episodes=2, weights=tuple(MIX.items()))
"""Three episodes: highway (200 ticks) twice in a shard of two worlds, cut-in (120) in a
shard of one world."""


@pytest.fixture(scope="module")
def expert_data(tmp_path_factory):
    """Round 0 of `COLLECTION`: 3 episodes, collected once, under `root`."""
    root = tmp_path_factory.mktemp("shared") / "data"
    data, description = collect_round(0, 3, COLLECTION, root, progress=False)  # 1 thread
    return root, data, description


def tiny_config(**changes) -> ImitationConfig:
    fields = dict(policy="cnn", episodes=3, envs=2, shard_episodes=2, scenario_weights=MIX,
                  epochs=2, batch_size=64, sequence_length=16, burn_in=4, sequence_batch=4,
                  val_fraction=0.3, eval_every=4, checkpoint_every=4, lr=3e-3,
                  policy_config=TINY)
    fields.update(changes)
    return ImitationConfig(**fields)


def with_data(out: Path, root: Path) -> Path:
    """A training folder that already holds the shared expert shards (no re-collection)."""
    shutil.copytree(root, out / "data")
    return out


# ----------------------------------------------------------------------------- data


def test_mixture_plan_and_seeds():
    assert apportion(10, (("highway", 0.55), ("lead-brake", 0.15), ("cut-in", 0.15),
                          ("stopped-vehicle", 0.15))) == {
        "highway": 6, "lead-brake": 2, "cut-in": 1, "stopped-vehicle": 1}
    config = CollectionConfig(shard_episodes=3, weights=(("highway", 2.0), ("cut-in", 1.0)))
    shards = plan_round(0, 9, config)
    assert [(s.scenario, s.first, s.episodes) for s in shards] == [
        ("highway", 0, 3), ("cut-in", 3, 3), ("highway", 6, 3)]     # interleaved
    seeds = [seed for s in shards for seed in s.seeds(0)]
    assert seeds == list(range(IMITATION_SEED_BASE, IMITATION_SEED_BASE + 9))
    dagger = plan_round(2, 9, config)
    assert dagger[0].seeds(0)[0] == IMITATION_SEED_BASE + 2 * ROUND_STRIDE
    assert min(dagger[0].seeds(1)) > max(s for s in dagger[-1].seeds(0))
    assert all(TRAINING.holds(s.seeds(199)[0], s.seeds(199)[-1]) for s in plan_round(9, 9, config))


def test_expert_data_shapes_and_flags(expert_data):
    root, data, description = expert_data
    assert description["complete"] and description["shards"] == 2
    assert len(data) == 200 + 200 + 120 == description["frames"]
    assert data.bev.shape == (520, 4, 64, 8) and data.bev.dtype == np.uint8
    bev = data.frames_bev(np.arange(3))
    assert bev.shape == (3, 4, 64, 64) and set(np.unique(bev)) <= {0, 255} and bev.any()
    assert data.ego.shape == (520, 8) and data.action.shape == (520, 2)
    assert data.route.shape == (520, 5, 2) and np.isfinite(data.route).all()
    assert np.allclose(data.route[:, :, 0], [4, 10, 20, 30, 40], atol=0.5)  # straight ahead
    assert data.action.dtype == np.float32
    assert (data.action[:, 0] >= -8).all() and (data.action[:, 0] <= 4).all()
    assert np.array_equal(data.executed, data.action) and not data.learner.any()
    episodes = data.episodes
    assert list(episodes) == [IMITATION_SEED_BASE, IMITATION_SEED_BASE + 1, IMITATION_SEED_BASE + 2]
    for episode in episodes:                     # contiguous, ticks 0..T-1, one start flag
        rows = np.flatnonzero(data.episode == episode)
        assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))
        assert np.array_equal(data.tick[rows], np.arange(len(rows)))
        assert data.episode_start[rows[0]] and data.episode_start[rows].sum() == 1
    assert set(data.env) <= {0, 1} and (data.round == 0).all()
    assert [SCENARIOS[c] for c in np.unique(data.scenario)] == ["highway", "cut-in"]
    # the ego vector is the observation the bev goes with: speeds of a highway
    assert 15 < data.ego[:, 0].mean() < 35


def test_generation_resumes_after_a_kill(expert_data, tmp_path):
    shared, full, _ = expert_data
    root = shutil.copytree(shared, tmp_path / "data")
    folder = round_folder(root, 0, 3, COLLECTION)
    first, last = sorted(folder.glob("shard-*.npz"))
    last.unlink()                                # killed while writing the last shard:
    (folder / f".{last.name}.x1y2.tmp").write_bytes(b"PK half a zip")   # its temp file
    part, description = collect_round(0, 3, COLLECTION, root, progress=False, max_shards=0)
    assert not description["complete"] and description["shards_on_disk"] == 1
    assert len(part) == 400
    data, description = collect_round(0, 3, COLLECTION, root, progress=False)
    assert description["complete"] and description["collect_seconds"] > 0
    for name in ("bev", "ego", "action", "episode", "tick", "episode_start", "env"):
        assert np.array_equal(getattr(data, name), getattr(full, name)), name
    assert not list(folder.glob(".*.tmp"))       # the stale temp file is gone
    last.write_bytes(last.read_bytes()[:100])    # a damaged shard is made again
    again, _ = collect_round(0, 3, COLLECTION, root, progress=False)
    assert np.array_equal(again.action, full.action)


def test_the_expert_labels_every_state_the_learner_visits():
    """The learner here is a second, identical staged stack: when it drives (beta 0) the
    labelling expert, stepped on every tick, must agree with it exactly; a learner that
    misses ticks or observations would drift apart."""
    spec = ShardSpec(round=1, index=0, scenario="cut-in", first=0, episodes=1)
    data = collect_shard(spec, COLLECTION, learner=make_expert(), beta=0.0)
    assert data.learner.all() and len(data) == 120
    assert np.array_equal(data.executed, data.action)
    assert data.episode[0] == IMITATION_SEED_BASE + ROUND_STRIDE and (data.round == 1).all()


# ----------------------------------------------------------------------------- samples


def hand_dataset(lengths: list[int]) -> ExpertDataset:
    n = sum(lengths)
    data = empty_dataset()
    episode = np.repeat(np.arange(len(lengths)), lengths)
    tick = np.concatenate([np.arange(k) for k in lengths])
    return ExpertDataset(
        bev=np.zeros((n, *data.bev.shape[1:]), np.uint8), bev_width=64,
        ego=np.zeros((n, 8), np.float32), lidar=np.zeros((n, 64, 2), np.float32),
        route=np.zeros((n, 5, 2), np.float32), timing=np.zeros((n, 4), np.float32),
        action=np.zeros((n, 2), np.float32),
        executed=np.zeros((n, 2), np.float32), episode_start=tick == 0,
        episode=episode.astype(np.int64), tick=tick.astype(np.int32),
        env=np.zeros(n, np.int32), scenario=np.zeros(n, np.int8), round=np.zeros(n, np.int8),
        learner=np.zeros(n, bool))


def test_windows_by_hand():
    """The rows are one stream of episodes cut into chunks of `length`; a chunk may span an
    episode's end (the state is reset at the next episode's start), and its burn-in never
    reaches back into another episode."""
    data = hand_dataset([5, 3])                  # rows 0-4: episode 0, rows 5-7: episode 1
    samples = window_samples(data, np.arange(8), length=2, burn_in=1)
    assert samples.rows.tolist() == [[-1, 0, 1], [1, 2, 3], [3, 4, 5], [5, 6, 7]]
    assert samples.counts.tolist() == [[False, True, True]] * 4
    assert sorted(samples.rows[samples.counts].tolist()) == list(range(8))   # each row once
    samples = window_samples(data, np.arange(8), length=5, burn_in=2)
    assert samples.rows.tolist() == [[-1, -1, 0, 1, 2, 3, 4], [-1, -1, 5, 6, 7, -1, -1]]
    assert samples.counts.tolist() == [[False, False, True, True, True, True, True],
                                       [False, False, True, True, True, False, False]]
    subset = window_samples(data, np.arange(5, 8), length=1, burn_in=2)
    assert subset.rows.tolist() == [[-1, -1, 5], [-1, 5, 6], [5, 6, 7]]


def test_windows_match_step_by_step_inference(expert_data):
    """A window's actions (reset at episode starts, zero state at its first row) are those
    of the policy stepped tick by tick from the episode's start."""
    _, data, _ = expert_data
    torch.manual_seed(0)
    policy = build("gru", policy_spec()["observation"], **TINY, hidden_size=8).eval()
    trainer = BehaviourCloning(policy, tiny_config(policy="gru"))
    rows = np.arange(195, 205)                   # the last 5 ticks of episode 0, 5 of episode 1
    samples = window_samples(data, rows, length=10, burn_in=0)
    with torch.no_grad():
        windowed, _, counts = trainer.predict(data, samples, np.array([0]))
        assert counts.all()
        stepped, state = [], None
        for row in rows:                         # from a zero state at the window's start
            obs = trainer.observations(data, np.array([row]))
            start = torch.tensor([bool(data.episode_start[row])])
            action, state = policy(obs, state, start)
            stepped.append(action)
        assert data.episode_start[200] and not data.episode_start[199]
        without_reset, state = [], None
        for row in rows:
            action, state = policy(trainer.observations(data, np.array([row])), state)
            without_reset.append(action)
    assert torch.allclose(windowed[:, 0], torch.cat(stepped), atol=1e-6)
    assert not torch.allclose(windowed[5:, 0], torch.cat(without_reset[5:]), atol=1e-6)


def test_steering_counts_only_above_the_speed_threshold():
    data = hand_dataset([6])
    data.ego[:, 0] = [0.0, 3.0, 5.9, 6.0, 12.0, 25.0]       # ego speed [m/s]
    data.action[:, 1] = [0.5, -0.5, 0.5, 0.01, 0.0, -0.01]   # the expert's chatter when slow
    torch.manual_seed(0)
    trainer = BehaviourCloning(build("cnn", policy_spec()["observation"], **TINY),
                               tiny_config(steer_min_speed_mps=6.0))
    samples = frame_samples(np.arange(6))
    with torch.no_grad():
        predicted, expert, counts = trainer.predict(data, samples, np.arange(6))
        assert counts[:, 0].all()
        assert counts[:, 1].tolist() == [False, False, False, True, True, True]
        _, terms = trainer.loss(predicted, expert, counts)
        data.action[:3, 1] = -data.action[:3, 1]              # slow labels do not matter
        _, again = trainer.loss(*trainer.predict(data, samples, np.arange(6)))
    assert float(again["steer"]) == float(terms["steer"]) > 0
    by_hand = ((predicted[3:, 1] - expert[3:, 1]) / 0.5).square().mean()
    assert float(terms["steer"]) == pytest.approx(float(by_hand), rel=1e-6)


def test_previous_command_inputs_are_shuffled_while_learning():
    data = hand_dataset([16])
    data.ego[:, 0] = np.arange(16) + 10.0                     # speed: stays in place
    data.ego[:, 1] = np.arange(16) - 8.0                      # last acceleration command
    data.ego[:, 2] = (np.arange(16) - 8.0) / 100              # last steering command
    torch.manual_seed(0)
    trainer = BehaviourCloning(build("cnn", policy_spec()["observation"], **TINY),
                               tiny_config())
    seen = []
    trainer.policy.register_forward_pre_hook(lambda module, args: seen.append(
        args[0]["ego"].clone()))
    samples = frame_samples(np.arange(16))
    trainer.update(data, samples, np.arange(16), lr=1e-3)     # learning: shuffled
    trainer.evaluate(data, samples, 16)                       # validating: as recorded
    learning, validating = seen[0].numpy(), seen[1].numpy()
    assert np.array_equal(validating, data.ego)
    assert np.array_equal(learning[:, [0, 3, 4, 5, 6, 7]], data.ego[:, [0, 3, 4, 5, 6, 7]])
    assert not np.array_equal(learning[:, 1], data.ego[:, 1])
    assert sorted(learning[:, 1]) == sorted(data.ego[:, 1])   # the same values, elsewhere
    assert np.allclose(learning[:, 2], learning[:, 1] / 100)  # a command moves as a whole
    kept = BehaviourCloning(trainer.policy, tiny_config(command_inputs="keep"))
    seen.clear()
    kept.update(data, samples, np.arange(16), lr=1e-3)
    assert np.array_equal(seen[0].numpy(), data.ego)


def test_split_keeps_whole_episodes_and_is_stable():
    data = hand_dataset([4] * 40)
    train, val = split_episodes(data, 0.2, seed=0)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(data)
    assert not set(data.episode[train]) & set(data.episode[val])
    assert 2 <= len(set(data.episode[val])) <= 16
    again, _ = split_episodes(data.select(np.arange(80)), 0.2, seed=0)   # a subset: same
    assert set(data.episode[again]) == set(data.episode[train]) & set(range(20))
    assert split_episodes(hand_dataset([3, 3]), 0.01, seed=0)[1].size == 3   # one held out


# ----------------------------------------------------------------------------- training


def test_behaviour_cloning_reduces_the_loss(expert_data, tmp_path):
    root, data, _ = expert_data
    config = tiny_config(epochs=8, batch_size=32, val_fraction=0.0)
    out = with_data(tmp_path / "bc", root)
    result = train_imitation(config, out, progress=False, log=lambda _: None)
    assert not result["stopped"] and result["global_step"] == 8 * 17  # 520 frames / 32
    samples = frame_samples(np.arange(len(data)))
    torch.manual_seed(config.seed)
    before = BehaviourCloning(build("cnn", policy_spec()["observation"], **TINY), config)
    trained, checkpoint = load_policy(result["checkpoint"], spec=policy_spec())
    after = BehaviourCloning(trained, config)
    loss_before = before.evaluate(data, samples, 256)["loss"]
    loss_after = after.evaluate(data, samples, 256)["loss"]
    assert loss_after < 0.5 * loss_before, (loss_before, loss_after)
    assert [h["epoch"] for h in result["history"]] == list(range(1, 9))
    assert checkpoint.meta["training"]["policy"] == "cnn"
    assert checkpoint.meta["data"][0]["frames"] == 520
    assert (out / "tensorboard").is_dir() and list((out / "tensorboard").iterdir())


@pytest.mark.parametrize("policy", ["gru"])
def test_a_killed_training_resumes_to_the_same_result(expert_data, tmp_path, policy):
    root, _, _ = expert_data
    config = tiny_config(policy=policy, policy_config={**TINY, "hidden_size": 16})
    whole = train_imitation(config, with_data(tmp_path / "whole", root), progress=False,
                            log=lambda _: None)
    out = with_data(tmp_path / "killed", root)
    killed = train_imitation(config, out, progress=False, log=lambda _: None,
                             kill_after_updates=7)          # last checkpoint at update 4
    assert killed["stopped"] and killed["checkpoint"] is None
    with pytest.raises(ConfigError, match="pass --resume"):
        train_imitation(config, out, progress=False, log=lambda _: None)
    other = tiny_config(policy=policy, lr=1e-2, policy_config={**TINY, "hidden_size": 16})
    with pytest.raises(ConfigError, match="different settings"):
        train_imitation(other, out, progress=False, resume=True, log=lambda _: None)
    messages: list[str] = []
    resumed = train_imitation(config, out, progress=False, resume=True, log=messages.append)
    assert "resuming at phase 0, update 4" in messages
    assert resumed["global_step"] == whole["global_step"]
    assert resumed["history"] == whole["history"]
    a, _ = load_policy(whole["checkpoint"])
    b, _ = load_policy(resumed["checkpoint"])
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values()))
    state = torch.load(out / "state" / "train_state.pt", weights_only=True)
    assert state["global_step"] == whole["global_step"] and state["optimizer"]["state"]


def test_a_dagger_round_grows_the_data_with_expert_labels(expert_data, tmp_path):
    root, _, _ = expert_data
    config = tiny_config(method="dagger", epochs=1, dagger_rounds=1, dagger_episodes=2,
                         dagger_epochs=1, dagger_beta=0.5)
    messages: list[str] = []
    result = train_imitation(config, with_data(tmp_path / "dagger", root), progress=False,
                             log=messages.append)
    expert_round, dagger_round = result["data"]
    assert dagger_round["round"] == 1 and dagger_round["complete"]
    assert dagger_round["frames"] == 200 + 120 and dagger_round["beta"] == 0.5
    assert 0 < dagger_round["learner_frames"] < dagger_round["frames"]
    assert dagger_round["seed_range"][0] == IMITATION_SEED_BASE + ROUND_STRIDE
    assert [h["phase"] for h in result["history"]] == ["bc", "dagger-1"]
    assert "val_dagger_loss" in result["history"][-1]
    phase = next(m for m in messages if m.startswith("phase dagger-1: "))
    words = phase.split()                        # "... N training frames (...), M validation"
    assert int(words[2]) + int(words[words.index("validation") - 1]) == 520 + 320
    shards = sorted(Path(dagger_round["folder"]).glob("shard-*.npz"))
    labels = ExpertDataset.concat([load_shard(s)[0] for s in shards])
    assert labels.learner.any() and (~labels.learner).any()
    expert_rows = ~labels.learner                # where the expert drove, it executed its label
    assert np.array_equal(labels.executed[expert_rows], labels.action[expert_rows])
    assert not np.array_equal(labels.executed[labels.learner], labels.action[labels.learner])


# ----------------------------------------------------------------------------- config, CLI


@pytest.mark.parametrize("changes, needle", [
    ({"policy": "mlp"}, "policy='mlp' is invalid: allowed values are cnn, gru, lstm, "
                        "transformer"),
    ({"method": "ppo"}, "method='ppo' is invalid: allowed values are bc, dagger"),
    ({"scenario_weights": {"mars": 1.0}}, "scenario_weights='mars' is invalid: allowed values "
                                          "are highway, lead-brake, cut-in, stopped-vehicle, "
                                          "merge, roundabout, intersection, "
                                          "lead-brake-protocol, cut-in-protocol, "
                                          "stopped-vehicle-protocol"),
    ({"scenario_weights": {"highway": 0.0}}, "at least one weight must be > 0"),
    ({"epochs": -1}, "epochs=-1 is invalid: must be an integer in [0, 10000]"),
    ({"episodes": 2.5}, "episodes=2.5 is invalid: must be an integer"),
    ({"lr": 0.0}, "lr=0.0 is invalid: must lie in (0, 1]"),
    ({"loss": "l1"}, "loss='l1' is invalid: allowed values are mse, huber"),
    ({"command_inputs": "drop"}, "command_inputs='drop' is invalid: allowed values are "
                                 "shuffle, keep"),
    ({"action_weights": (0, 0)}, "action_weights=(0, 0) is invalid"),
    ({"latency": "soon"}, "latency='soon' is invalid"),
    ({"device": "tpu"}, "device='tpu' is invalid: allowed values are auto, cpu, cuda"),
    ({"seed": 500}, "seed=500 is invalid: must be an integer in [0, 199]"),
    ({"init": "/nonexistent.pt"}, "init='/nonexistent.pt' is invalid"),
    ({"policy_config": {"depth": 3}}, "policy_config={'depth': 3} is invalid: depth is not a "
                                      "field of CnnConfig"),
])
def test_bad_config_is_a_clear_error(changes, needle):
    fields = {"policy_config": {}} if "policy_config" not in changes else {}
    with pytest.raises(ConfigError) as error:
        ImitationConfig(**{**fields, **changes})
    assert needle in str(error.value)


def test_config_defaults_and_frames():
    config = ImitationConfig()
    assert config.rounds == 0 and ImitationConfig(method="dagger").rounds == 2
    assert ImitationConfig(method="dagger").beta(2) == 0.25
    assert sum(config.scenario_weights.values()) == pytest.approx(1.0)
    frames = ImitationConfig(frames=16_000)
    assert 90 <= frames.expert_episodes <= 110      # ~160 ticks per episode of the mix
    assert [name for name, _ in ImitationConfig(method="dagger").phases()] == [
        "bc", "dagger-1", "dagger-2"]
    for name, value in imitation_defaults().items():  # the CLI shows the config's defaults
        assert getattr(config, name) == value, name
    assert POLICY_NAMES == tuple(POLICIES)


def test_train_policy_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for needle in ("--policy", "cnn, gru, lstm, transformer", "--method", "dagger", "ppo",
                   "--episodes", "--frames", "--dagger-rounds", "--init", "--resume",
                   "--latency", "--seed", "--checkpoint", "--target", "detector",
                   "2,000,000", "tensorboard"):
        assert needle in out, needle


@pytest.mark.parametrize("extra, needle", [
    (["--policy", "mlp"], "policy='mlp' is invalid: allowed values are cnn, gru, lstm, "
                          "transformer"),
    (["--target", "policy"], "policy=None is invalid: is required with --target policy"),
    (["--policy", "cnn", "--method", "rl"], "method='rl' is invalid: allowed values are bc, "
                                            "dagger, ppo"),
    (["--policy", "cnn", "--samples", "5"], "--samples=5 is invalid: is a detector option"),
    (["--dagger-rounds", "2"], "--dagger-rounds=2 is invalid: is a policy option"),
    (["--policy", "cnn", "--dagger-rounds", "2"], "is a DAgger option (--method dagger)"),
    (["--policy", "cnn", "--episodes", "many"], "episodes='many' is invalid: must be a "
                                                "number"),
    (["--policy", "cnn", "--scenario-weights", "highway"], "expected NAME=WEIGHT"),
    (["--policy", "gru", "--policy-config", "{"], "must be a JSON object"),
])
def test_train_policy_cli_bad_values(capsys, tmp_path, extra, needle):
    code = main(["train", "--out", str(tmp_path / "x"), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("reflexdrive: error: ") and err.count("\n") == 1, err
    assert needle in err and "Traceback" not in err


def test_train_policy_cli_writes_a_checkpoint_that_drives(capsys, tmp_path):
    out = tmp_path / "cli"
    args = ["train", "--policy", "cnn", "--method", "bc", "--episodes", "2", "--envs", "2",
            "--scenario-weights", "cut-in=1", "--epochs", "1", "--batch-size", "64",
            "--policy-config", json.dumps(TINY), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert "cnn bc: 2 updates" in capsys.readouterr().out   # 1 episode trains, 1 validates
    policy, checkpoint = load_policy(out / "cnn.pt", spec=policy_spec())
    command = checkpoint.meta["command"]
    assert command.startswith("reflexdrive train --target policy --policy cnn --method bc "
                              "--episodes 2 --epochs 1 --batch-size 64")
    assert "--scenario-weights cut-in=1" in command and f"--out {out}" in command
    assert checkpoint.meta["seconds"]["total"] > 0 and checkpoint.meta["history"]
    agent = EndToEndAgent(policy, device="cpu")
    obs = {"bev": np.zeros((2, 4, 64, 64), np.uint8),
           "ego": np.tile(np.array([25, 0, 0, 0, 0, 1, 4, 1], np.float32), (2, 1)),
           "lidar": np.tile(np.array([48.0, 0.0], np.float32), (2, 64, 1))}
    assert agent.act(obs, {}).actions.shape == (2, 2)
    assert main(args) == 2                       # the folder holds a training state
    assert "pass --resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0        # done already: writes the checkpoint again


def test_train_ppo_cli_maps_options_onto_ppo_config(monkeypatch, tmp_path, capsys):
    ppo = pytest.importorskip("reflexdrive.train.ppo")
    seen = {}

    def fake_train_ppo(config, progress=True):
        seen["config"] = config
        return Path(config.export_file)

    monkeypatch.setattr(ppo, "train_ppo", fake_train_ppo)
    out = tmp_path / "ppo"
    code = main(["train", "--policy", "gru", "--method", "ppo", "--frames", "4096",
                 "--envs", "8", "--n-steps", "64", "--batch-size", "128", "--lr", "1e-4",
                 "--latency", "fixed:0.02", "--scenarios", "highway,cut-in",
                 "--initial-std", "0.2,0.05", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    config = seen["config"]
    assert (config.policy, config.total_timesteps, config.num_envs, config.n_steps) == (
        "gru", 4096, 8, 64)
    assert config.learning_rate == 1e-4 and config.scenarios == ("highway", "cut-in")
    assert config.initial_std == (0.2, 0.05) and config.out_dir == str(out)
    assert config.command.startswith("reflexdrive train --target policy --policy gru "
                                     "--method ppo --frames 4096")
    assert config.freeze_encoder is ppo.PPOConfig().freeze_encoder   # not given: the default
    assert "freeze-encoder" not in config.command
    for flag, frozen in (("--no-freeze-encoder", False), ("--freeze-encoder", True)):
        assert main(["train", "--policy", "cnn", "--method", "ppo", flag, "--out", str(out),
                     "--no-progress"]) == 0
        assert seen["config"].freeze_encoder is frozen
        assert f" {flag} " in seen["config"].command
    code = main(["train", "--policy", "cnn", "--method", "ppo", "--gamma", "2",
                 "--out", str(out)])
    assert code == 2 and "gamma=2.0 is invalid" in capsys.readouterr().err


def test_a_fine_tuned_checkpoint_records_the_commands_that_led_to_it(expert_data, tmp_path):
    root, _, _ = expert_data
    first = train_imitation(tiny_config(epochs=1), with_data(tmp_path / "a", root),
                            command="reflexdrive train --out a", progress=False,
                            log=lambda _: None)["checkpoint"]
    config = tiny_config(epochs=1, init=first, policy_config={})
    second = train_imitation(config, with_data(tmp_path / "b", root),
                             command="reflexdrive train --init a/cnn.pt --out b",
                             progress=False, log=lambda _: None)["checkpoint"]
    parent, parent_checkpoint = load_policy(first)
    _, checkpoint = load_policy(second)
    lineage = checkpoint.meta["init"]
    assert lineage == {"path": first, "weights": checksum(parent_checkpoint.state_dict),
                       "command": "reflexdrive train --out a", "init": None,
                       "seed_ranges": parent_checkpoint.meta["seed_ranges"]}
    read = parent_checkpoint.meta["seed_ranges"]["read"]
    assert read and all(TRAINING.holds(first_seed, last) for first_seed, last in read)
    assert parent_checkpoint.meta["init"] is None


def test_a_gru_warm_started_from_a_cnn_checkpoint_trains(expert_data, tmp_path):
    root, _, _ = expert_data
    cnn_path = train_imitation(tiny_config(epochs=1), with_data(tmp_path / "cnn", root),
                               command="cnn", progress=False, log=lambda _: None)["checkpoint"]
    config = tiny_config(policy="gru", epochs=1, init=cnn_path, policy_config={})
    result = train_imitation(config, with_data(tmp_path / "gru", root), command="gru",
                             progress=False, log=lambda _: None)
    cnn, _ = load_policy(cnn_path)
    gru, checkpoint = load_policy(result["checkpoint"], spec=policy_spec())
    assert gru.name == "gru" and gru.config.skip and gru.config.encoder == cnn.config.encoder
    assert checkpoint.meta["init"]["command"] == "cnn"
    assert result["global_step"] > 0


@pytest.mark.parametrize("value", [True, "3", 3.0])
@pytest.mark.parametrize("name", ["episodes", "frames", "envs", "shard_episodes", "epochs",
                                  "batch_size", "sequence_length", "burn_in", "sequence_batch",
                                  "val_samples", "dagger_rounds", "dagger_episodes",
                                  "dagger_epochs", "eval_every", "checkpoint_every", "seed",
                                  "threads"])
def test_imitation_config_integers_reject_bools_strings_and_floats(name, value):
    with pytest.raises(ConfigError, match=rf"^{name}=.* is invalid: must be an integer$"):
        ImitationConfig(**{name: value})


@pytest.mark.parametrize("value", [True, "3", 3.0])
@pytest.mark.parametrize("name", ["envs", "shard_episodes", "seed"])
def test_collection_config_integers_reject_bools_strings_and_floats(name, value):
    with pytest.raises(ConfigError, match=rf"^{name}=.* is invalid: must be an integer$"):
        CollectionConfig(**{name: value})


def test_collection_config_bounds_are_the_imitation_config_bounds():
    for name, bad in (("envs", 0), ("shard_episodes", ROUND_STRIDE), ("seed", 200)):
        with pytest.raises(ConfigError) as collection:
            CollectionConfig(**{name: bad})
        with pytest.raises(ConfigError) as imitation:
            ImitationConfig(**{name: bad})
        assert str(collection.value) == str(imitation.value)
    with pytest.raises(ConfigError, match=r"^mode='fast' is invalid"):
        CollectionConfig(mode="fast")
    assert ImitationConfig(envs=3, seed=7).collection().envs == 3
