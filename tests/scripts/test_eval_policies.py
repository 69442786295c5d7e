"""scripts/eval_policies.py: policy stacks by name (cnn-blind too) and the throughput
measurement of policies that read more than bev, ego and lidar."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.policies.registry import CHECKPOINT_DIR, build, save_policy

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "eval_policies.py"


@pytest.fixture(scope="module")
def eval_policies():
    spec = importlib.util.spec_from_file_location("eval_policies_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_checkpoints_by_stack_name(eval_policies, tmp_path):
    assert eval_policies.checkpoint_path("cnn-blind", None) == str(CHECKPOINT_DIR /
                                                                   "cnn-blind.pt")
    assert eval_policies.checkpoint_path("cnn-blind", str(tmp_path)) == str(tmp_path /
                                                                           "cnn-blind.pt")


def test_throughput_feeds_the_timing_and_route_a_policy_reads(eval_policies, tmp_path):
    torch.manual_seed(0)
    encoder = {"channels": [8, 8, 8], "bev_features": 32, "features": 32,
               "timing_hidden": 8, "route_hidden": 8}
    spec = policy_spec()
    path = save_policy(tmp_path / "cnn.pt", build("cnn", spec["observation"],
                                                  encoder=encoder), spec)
    assert eval_policies.throughput(str(path), 2, "cpu", seconds=0.0) > 0
