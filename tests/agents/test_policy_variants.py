"""Named end-to-end stacks (`policies.registry.POLICY_STACKS`): `cnn-blind` is the cnn
architecture with its own shipped checkpoint, accepted wherever a policy stack is.

Checkpoints here are small untrained networks written to tmp_path; the shipped folder is
pointed at tmp_path where a test needs one (never a file in policies/checkpoints)."""

from __future__ import annotations

import pandas as pd
import pytest
import reflexdrive.policies.registry as policy_registry
import torch
from reflexdrive.agents.end_to_end import EndToEndAgent, policy_spec
from reflexdrive.agents.registry import END_TO_END_STACKS, make_agent, stack_names
from reflexdrive.policies.checkpoint import CheckpointError
from reflexdrive.policies.registry import (
    CHECKPOINT_DIR,
    POLICY_STACKS,
    build,
    missing_checkpoint,
    save_policy,
    shipped_checkpoint,
)

from reflexdrive.cli import build_parser, main
from reflexdrive.common.validation import ConfigError
from reflexdrive.compare.config import CompareConfig

SPEC = policy_spec()
SMALL = {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32}}


def cnn(path, timing_hidden: int = 0, name: str = "cnn", seed: int = 0):
    """A small untrained `name` policy saved at `path` (reading obs['timing'] with
    `timing_hidden` > 0)."""
    torch.manual_seed(seed)
    config = {"encoder": {**SMALL["encoder"], "timing_hidden": timing_hidden}}
    if name == "gru":
        config["hidden_size"] = 16
    return save_policy(path, build(name, SPEC["observation"], **config), SPEC,
                       meta={"command": "test"})


def test_cnn_blind_is_a_cnn_with_its_own_shipped_file():
    blind = POLICY_STACKS["cnn-blind"]
    assert (blind.architecture, blind.reads_timing) == ("cnn", False)
    assert "cnn-blind" in END_TO_END_STACKS and "cnn-blind" in stack_names()
    assert shipped_checkpoint("cnn-blind") == CHECKPOINT_DIR / "cnn-blind.pt"
    assert shipped_checkpoint("cnn") == CHECKPOINT_DIR / "cnn.pt"
    assert all(POLICY_STACKS[name].reads_timing is None
               for name in ("cnn", "gru", "lstm", "transformer"))
    with pytest.raises(ValueError, match="stack='cnn-deaf' is invalid: allowed end-to-end "
                                         "stacks are cnn, gru, lstm, transformer, cnn-blind"):
        shipped_checkpoint("cnn-deaf")
    stack_help = next(a.help for a in build_parser()._subparsers._group_actions[0]
                      .choices["run"]._actions if "--stack" in a.option_strings)
    assert "cnn-blind" in stack_help


def test_cnn_blind_loads_a_blind_cnn_and_is_named_after_the_stack(tmp_path):
    path = cnn(tmp_path / "blind.pt")
    agent = make_agent("cnn-blind", checkpoint=str(path), device="cpu", seed=0,
                       perception="oracle")                       # what the runner passes
    assert isinstance(agent, EndToEndAgent)
    assert (agent.name, agent.policy.name) == ("cnn-blind", "cnn")
    assert make_agent("cnn", checkpoint=str(path), device="cpu").name == "cnn"


def test_cnn_blind_refuses_a_latency_aware_cnn_and_another_architecture(tmp_path):
    aware = cnn(tmp_path / "aware.pt", timing_hidden=8)
    with pytest.raises(CheckpointError, match=r"aware.pt: the cnn-blind stack must not read "
                                              r"obs\['timing'\] \(encoder.timing_hidden 0\); "
                                              r"this cnn has timing_hidden 8"):
        make_agent("cnn-blind", checkpoint=str(aware), device="cpu")
    assert make_agent("cnn", checkpoint=str(aware), device="cpu").policy.config.encoder \
        .timing_hidden == 8                                       # cnn takes either
    gru = cnn(tmp_path / "gru.pt", name="gru")
    with pytest.raises(CheckpointError, match="holds a 'gru' policy, not a 'cnn' one; use "
                                              "--stack gru"):
        make_agent("cnn-blind", checkpoint=str(gru), device="cpu")


def test_a_missing_shipped_cnn_blind_is_one_line_naming_the_file_and_the_command(
        tmp_path, monkeypatch):
    monkeypatch.setattr(policy_registry, "CHECKPOINT_DIR", tmp_path / "none")
    line = missing_checkpoint("cnn-blind")
    assert "\n" not in line
    assert line == ("the shipped cnn-blind checkpoint is missing: train it with `reflexdrive "
                    "train --policy cnn --method dagger --mode lockstep --latency fixed:0 --out "
                    "DIR` and copy DIR/cnn.pt to policies/checkpoints/cnn-blind.pt, or pass "
                    "--checkpoint cnn-blind=PATH")
    with pytest.raises(CheckpointError) as error:
        make_agent("cnn-blind", device="cpu")
    assert str(error.value) == f"checkpoint {tmp_path / 'none' / 'cnn-blind.pt'}: {line}"
    with pytest.raises(ConfigError, match="checkpoints='cnn-blind' is invalid: the shipped "
                                          "cnn-blind checkpoint is missing"):
        CompareConfig(stacks=("cnn", "cnn-blind"), out=str(tmp_path / "o"),
                      checkpoints={"cnn": str(cnn(tmp_path / "cnn.pt"))})


def test_a_shipped_cnn_blind_loads_without_a_checkpoint_option(tmp_path, monkeypatch):
    monkeypatch.setattr(policy_registry, "CHECKPOINT_DIR", tmp_path)
    cnn(tmp_path / "cnn-blind.pt", seed=3)
    assert missing_checkpoint("cnn-blind") is None
    agent = make_agent("cnn-blind", device="cpu")
    assert agent.checkpoint.path == str(tmp_path / "cnn-blind.pt")
    config = CompareConfig(stacks=("cnn-blind",), out=str(tmp_path / "o"))
    assert config.checkpoint_digests().keys() == {"cnn-blind"}


def test_run_and_profile_take_cnn_blind_on_the_command_line(tmp_path):
    path = cnn(tmp_path / "blind.pt")
    out = tmp_path / "run"
    assert main(["run", "--scenario", "lead-brake", "--stack", "cnn-blind", "--checkpoint",
                 str(path), "--episodes", "1", "--envs", "1", "--set", "duration_s=1.5",
                 "--set", "onset_s=[0.5,1.0]", "--device", "cpu", "--out", str(out),
                 "--no-progress"]) == 0
    episodes = pd.read_csv(out / "episodes.csv")
    assert episodes["stack"].tolist() == ["cnn-blind"]
    profile = tmp_path / "profile.json"
    assert main(["profile", "--stack", "cnn-blind", "--checkpoint", str(path), "--episodes",
                 "1", "--warmup", "2", "--device", "cpu", "--out", str(profile),
                 "--no-progress"]) == 0
    assert '"stack": "cnn-blind"' in profile.read_text()
