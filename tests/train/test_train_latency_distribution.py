"""`reflexdrive train --method dagger --mode realtime --latency 'fixed:0.03+0..0.3'`: DAgger
over a latency distribution, end to end on a tiny config; the data shows each episode's
drawn latency and the checkpoint records the spec and the label option."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.envs.latency import draw_episode_extra
from reflexdrive.policies.registry import load_policy

from reflexdrive.cli import main
from reflexdrive.train.expert_data import load_shard

TINY = {"encoder": {"channels": [8, 8], "bev_features": 32, "ego_hidden": 16, "features": 32,
                    "lidar_hidden": 16, "route_hidden": 0, "timing_hidden": 8},
        "head": {"hidden": 32}}
"""A small cnn that reads `obs["timing"]`."""

SPEC = "fixed:0.03+0..0.3"


def test_dagger_in_realtime_over_a_latency_distribution(capsys, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--policy", "cnn", "--method", "dagger", "--mode", "realtime",
            "--latency", SPEC, "--episodes", "2", "--envs", "2", "--dagger-rounds", "1",
            "--dagger-episodes", "2", "--dagger-epochs", "1", "--epochs", "1",
            "--batch-size", "64", "--scenario-weights", "lead-brake=1",
            "--policy-config", json.dumps(TINY), "--out", str(out), "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    policy, checkpoint = load_policy(out / "cnn.pt", spec=policy_spec())
    assert "timing" in policy.obs_keys
    training = checkpoint.meta["training"]
    assert (training["latency"], training["mode"], training["label_shift"]) == (
        SPEC, "realtime", "landing")
    assert f"--latency {SPEC}" in checkpoint.meta["command"]
    rounds = checkpoint.meta["data"]
    assert [r["round"] for r in rounds] == [0, 1] and all(r["frames"] > 0 for r in rounds)
    for description in rounds:                   # each episode is charged its own draw
        for shard in sorted(Path(description["folder"]).glob("shard-*.npz")):
            data, _ = load_shard(shard)
            for episode in np.unique(data.episode):
                shown = data.timing[data.episode == episode, 0]
                expected = np.float32(0.03 + draw_episode_extra(int(episode), 0.0, 0.3))
                assert (shown == expected).all()
    assert rounds[1]["learner_frames"] > 0


def test_the_label_option_on_the_command_line(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--label-shift" in capsys.readouterr().out
    code = main(["train", "--policy", "cnn", "--label-shift", "later", "--out",
                 str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "label_shift='later' is invalid: allowed values are landing, none" in err
    code = main(["train", "--policy", "cnn", "--method", "ppo", "--label-shift", "none",
                 "--out", str(tmp_path / "y"), "--no-progress"])
    assert code == 2 and "is a bc/dagger option" in capsys.readouterr().err
