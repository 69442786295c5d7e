"""Policy snapshots of a PPO run (`reflexdrive.train.ppo_snapshots`): the grid, the step-0
snapshot that is the `--init` policy itself, resume without duplicates or gaps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch
from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.policies.registry import build, load_policy, save_policy

from reflexdrive.cli import main
from reflexdrive.run import evaluation
from reflexdrive.train import ppo
from reflexdrive.train.ppo import PPOConfig, checkpoints, train_ppo
from reflexdrive.train.ppo_snapshots import snapshot_path, snapshots

# a latency-aware tiny cnn: it reads obs["timing"] as the fine-tuned policy does
TINY_AWARE = {"encoder": {"channels": [4], "bev_features": 16, "ego_hidden": 8,
                          "features": 16, "timing_hidden": 4}, "head": {"hidden": 16}}


def init_checkpoint(folder: Path) -> str:
    """A 'behaviour-cloned' tiny cnn: random weights, the head scaled up so that its
    commands vary with the observation (a run that moves it shows in the commands)."""
    torch.manual_seed(11)
    policy = build("cnn", policy_spec()["observation"], **TINY_AWARE)
    with torch.no_grad():
        policy.head.mlp[-1].weight.mul_(200.0)
    path = folder / "init-cnn.pt"
    save_policy(path, policy, policy_spec(), {"command": "reflexdrive train --method bc"})
    return str(path)


def run_config(tmp_path: Path, **overrides) -> PPOConfig:
    """Updates of 2 envs x 64 ticks = 128 steps; the policy trains from the first update."""
    values = dict(policy="cnn", num_envs=2, n_steps=64, batch_size=64, n_epochs=1,
                  total_timesteps=384, init=init_checkpoint(tmp_path), out_dir=str(
                      tmp_path / "run"), checkpoint_every=1, snapshot_every=2, device="cpu",
                  threads=1, seed=5, value_warmup_updates=0, learning_rate=1e-3,
                  target_kl=None, mode="realtime", latency="fixed:0.05")
    values.update(overrides)
    return PPOConfig(**values)


def weights(path) -> dict[str, torch.Tensor]:
    return dict(load_policy(path)[1].state_dict)


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def drive(path: str) -> pd.DataFrame:
    """Two short lead-brake episodes (4 s, the hazard at 1-2 s) of `path` driven by
    EndToEndAgent, realtime at the run's latency (development seeds)."""
    return evaluation.episodes("lead-brake", "cnn", 2, 300_000, 2, checkpoint=path,
                               mode="realtime", latency="fixed:0.05", twins=False,
                               scenario_config={"duration_s": 4.0, "onset_s": (1.0, 2.0)})


def test_snapshots_at_step_0_every_n_updates_and_at_the_end(tmp_path):
    config = run_config(tmp_path)
    final = train_ppo(config, progress=False)
    run = tmp_path / "run"
    # 3 updates of 128 steps, a snapshot every 2nd: step 0, update 2, and the end
    assert [t for t, _ in snapshots(run)] == [0, 256, 384]
    assert snapshots(run)[0][1] == snapshot_path(run, "cnn", 0) == (
        run / "snapshots" / "cnn-000000000000.pt")
    _, checkpoint = load_policy(snapshot_path(run, "cnn", 256), spec=policy_spec())
    meta = checkpoint.meta
    assert meta["snapshot"] == {"timesteps": 256, "update": 2}
    assert meta["method"] == "ppo" and meta["ppo"]["snapshot_every"] == 2
    assert meta["init"]["path"] == config.init
    assert meta["init"]["command"] == "reflexdrive train --method bc"
    assert meta["seed_ranges"]["read"] == load_policy(final)[1].meta["seed_ranges"]["read"]
    # the last snapshot is the exported policy; the policy moved along the run
    assert same_weights(weights(snapshot_path(run, "cnn", 384)), weights(final))
    assert not same_weights(weights(snapshot_path(run, "cnn", 256)),
                            weights(snapshot_path(run, "cnn", 0)))


def test_the_step_0_snapshot_is_the_init_policy_and_drives_exactly_as_it(tmp_path):
    # a fine-tune cannot make its deterministic policy worse at step 0: what PPO starts
    # from is, weight for weight, the --init checkpoint's policy
    config = run_config(tmp_path, total_timesteps=128, snapshot_every=1,
                        learning_rate_schedule="constant")
    train_ppo(config, progress=False)
    run = tmp_path / "run"
    start = snapshot_path(run, "cnn", 0)
    assert same_weights(weights(start), weights(config.init))
    assert load_policy(start)[0].config == load_policy(config.init)[0].config
    assert load_policy(start)[1].meta["snapshot"] == {"timesteps": 0, "update": 0}
    # ... and so it drives the same episodes, command for command, on the clock
    ours, theirs = drive(str(start)), drive(config.init)
    assert len(ours) == 2 and ours["duration_s"].gt(0).all()
    pd.testing.assert_frame_equal(ours, theirs)
    # the update that followed did change the policy (the snapshot came before it)
    assert not same_weights(weights(snapshot_path(run, "cnn", 128)), weights(start))


def test_a_resumed_run_keeps_its_snapshots_and_redoes_only_the_lost_ones(tmp_path):
    config = run_config(tmp_path, total_timesteps=256, snapshot_every=1)
    train_ppo(config, progress=False)
    run = tmp_path / "run"
    before = {t: (p.read_bytes(), p.stat().st_mtime_ns) for t, p in snapshots(run)}
    assert list(before) == [0, 128, 256]

    # killed after update 2's snapshot, before its checkpoint: the rerun resumes at 128;
    # the snapshot at 256 came from updates thrown away and is made again
    checkpoints(run)[-1][1].unlink()
    with pytest.warns(UserWarning, match="deleting 1 snapshot"):
        final = train_ppo(config, progress=False)
    after = {t: (p.read_bytes(), p.stat().st_mtime_ns) for t, p in snapshots(run)}
    assert list(after) == [0, 128, 256]
    assert after[0] == before[0] and after[128] == before[128]       # not written twice
    assert same_weights(weights(snapshot_path(run, "cnn", 256)), weights(final))

    # killed between the checkpoint at 256 and its snapshot: the rerun (to 384) writes it
    # from the checkpoint it resumes, then goes on
    snapshot_path(run, "cnn", 256).unlink()
    from stable_baselines3 import PPO
    resumed = PPO.load(checkpoints(run)[-1][1], device="cpu").policy.driving.state_dict()
    train_ppo(dataclasses.replace(config, total_timesteps=384), progress=False)
    assert [t for t, _ in snapshots(run)] == [0, 128, 256, 384]
    assert same_weights(weights(snapshot_path(run, "cnn", 256)), resumed)
    assert snapshots(run)[0][1].stat().st_mtime_ns == before[0][1]


def test_no_snapshots_unless_asked(tmp_path):
    train_ppo(run_config(tmp_path, total_timesteps=128, snapshot_every=0), progress=False)
    assert snapshots(tmp_path / "run") == [] and not (tmp_path / "run" / "snapshots").exists()


def test_snapshot_every_is_a_cli_flag_a_resume_may_change(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_train_ppo(config, progress=True):
        seen["config"] = config
        return Path(config.export_file)

    monkeypatch.setattr(ppo, "train_ppo", fake_train_ppo)
    assert main(["train", "--policy", "cnn", "--method", "ppo", "--snapshot-every", "5",
                 "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert seen["config"].snapshot_every == 5
    assert "--snapshot-every 5" in seen["config"].command
    assert main(["train", "--policy", "cnn", "--method", "ppo", "--snapshot-every", "-1",
                 "--out", str(tmp_path / "a")]) == 2
    assert "snapshot_every=-1 is invalid: must be an integer >= 0" in capsys.readouterr().err
    assert "snapshot_every" in ppo.RESUMABLE_FIELDS
