"""`reflexdrive compare --executor ray` on a local Ray instance of 2 workers: the same files
as the local executor for the same seeds (fixed latency), one episode per task.

Slow (Ray starts in ~10 s and each worker imports torch and the envs): marked `slow`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.policies.registry import build, save_policy

from reflexdrive.compare.config import CompareConfig
from reflexdrive.compare.experiment import compare

ray = pytest.importorskip("ray")

SHORT = {"duration_s": 1.5, "onset_s": (0.5, 1.0)}


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_ray_executor_writes_what_the_local_one_writes(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = policy_spec()
    small = {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32}}
    checkpoint = save_policy(tmp_path / "cnn.pt", build("cnn", spec["observation"], **small),
                             spec, meta={"command": "test"})

    def config(out: str, **changes) -> CompareConfig:
        return CompareConfig(stacks=("staged", "cnn"), scenarios=("lead-brake",), episodes=3,
                             latency="fixed:0.02", extra_latency_s=(0.1,),
                             modes=("realtime",), envs=2,
                             checkpoints={"cnn": str(checkpoint)}, scenario_config=SHORT,
                             out=str(tmp_path / out), **changes)

    local = compare(config("local"), progress=False)
    assert not ray.is_initialized()
    # chunks of one episode: the end-to-end stack still decides for envs=2 rows (padded)
    remote = compare(config("ray", executor="ray", ray_cpus=2, chunk_episodes=1),
                     progress=False)
    assert not ray.is_initialized()                      # the instance it started is gone
    assert remote.ran == local.ran == 6
    for name in ("episodes.csv", "decisions.csv", "summary.csv"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    assert digests(tmp_path / "ray" / "cells") == digests(tmp_path / "local" / "cells")
    # resuming a ray compare with the local executor has nothing left to run
    assert compare(config("ray"), progress=False).ran == 0
