"""`reflexdrive compare --executor ray` on a local Ray instance of 2 workers: the same files
as the local executor for the same seeds (fixed latency), also when a worker process dies
in the middle of a task (Ray runs the task again, `executors.MAX_RETRIES`).

Slow (Ray starts in ~10 s and each worker imports torch and the envs): marked `slow`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from reflexdrive.agents.end_to_end import policy_spec
from reflexdrive.policies.registry import build, save_policy

from reflexdrive.compare import executors
from reflexdrive.compare.config import CompareConfig
from reflexdrive.compare.experiment import compare

ray = pytest.importorskip("ray")

SHORT = {"duration_s": 1.5, "onset_s": (0.5, 1.0)}
KILL_AT_DECISION = 3
"""The first attempt of one task kills its own worker process before this decision."""


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small cnn checkpoint, a config builder (2 cells: staged and cnn, 3 episodes
    each, 64 envs: the cnn decides for 128 rows, padded, whose repeats run once, see
    `EndToEndAgent.act`) and the local executor's output folder to compare against."""
    root = tmp_path_factory.mktemp("ray")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = policy_spec()
    small = {"encoder": {"channels": [8, 8, 8], "bev_features": 32, "features": 32}}
    checkpoint = save_policy(root / "cnn.pt", build("cnn", spec["observation"], **small),
                             spec, meta={"command": "test"})

    def config(out: Path, **changes) -> CompareConfig:
        return CompareConfig(stacks=("staged", "cnn"), scenarios=("lead-brake",), episodes=3,
                             latency="fixed:0.02", extra_latency_s=(0.1,),
                             modes=("realtime",), envs=64,
                             checkpoints={"cnn": str(checkpoint)}, scenario_config=SHORT,
                             out=str(out), **changes)

    local = compare(config(root / "local"), progress=False)
    assert not ray.is_initialized()
    assert local.ran == 6
    return config, root / "local"


def assert_same_outputs(folder: Path, local: Path) -> None:
    for name in ("episodes.csv", "decisions.csv", "summary.csv"):
        assert (folder / name).read_bytes() == (local / name).read_bytes(), name
    assert digests(folder / "cells") == digests(local / "cells")


@pytest.mark.slow
def test_ray_executor_writes_what_the_local_one_writes(setup, tmp_path):
    config, local = setup
    # chunks of one episode: the end-to-end stack still decides for 128 rows (padded; the
    # distinct rows differ from the local run's, their bits do not)
    remote = compare(config(tmp_path / "ray", executor="ray", ray_cpus=2, chunk_episodes=1),
                     progress=False)
    assert not ray.is_initialized()                      # the instance it started is gone
    assert remote.ran == 6
    assert_same_outputs(tmp_path / "ray", local)
    # resuming a ray compare with the local executor has nothing left to run
    assert compare(config(tmp_path / "ray"), progress=False).ran == 0


def first_attempt_kills_its_worker(marker: Path, attempts: Path):
    """A stand-in for `executors.run_chunk` (a closure: Ray pickles it by value). Every
    attempt appends `stack first_seed pid` to `attempts`; the one attempt that creates
    `marker` (atomically, so exactly one of the concurrent tasks) SIGKILLs its own worker
    process in the middle of its episodes, before decision `KILL_AT_DECISION`. Every other
    attempt runs the real `run_chunk` of the worker's own import."""

    def run_chunk(config, first_seed, count, threads=1):
        import signal

        from reflexdrive.compare import executors as worker_executors

        with open(attempts, "a") as log:
            log.write(f"{config.stack} {first_seed} {os.getpid()}\n")
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return worker_executors.run_chunk(config, first_seed, count, threads)
        agent = worker_executors.cell_agent(config)
        act, decisions = agent.act, [0]

        def act_then_die(obs, info):
            decisions[0] += 1
            if decisions[0] == KILL_AT_DECISION:
                os.kill(os.getpid(), signal.SIGKILL)
            return act(obs, info)

        agent.act = act_then_die
        build_agent = worker_executors.cell_agent
        worker_executors.cell_agent = lambda config: agent
        try:
            return worker_executors.run_chunk(config, first_seed, count, threads)
        finally:                                         # reached only if the kill missed
            worker_executors.cell_agent = build_agent

    return run_chunk


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_retried_and_the_results_match_local(
        setup, tmp_path, monkeypatch):
    config, local = setup
    marker, attempts = tmp_path / "killed", tmp_path / "attempts.txt"
    # read by `run_ray` when it builds the Ray task, so the workers get the stand-in
    monkeypatch.setattr(executors, "run_chunk", first_attempt_kills_its_worker(marker,
                                                                               attempts))
    remote = compare(config(tmp_path / "ray", executor="ray", ray_cpus=2, chunk_episodes=2),
                     progress=False)
    assert not ray.is_initialized()
    assert remote.ran == 6
    assert_same_outputs(tmp_path / "ray", local)

    # 2 cells x chunks [0, 1] and [2] = 4 tasks, one of them run twice, by another worker
    lines = [line.split() for line in attempts.read_text().splitlines()]
    tasks = [(stack, int(seed)) for stack, seed, _ in lines]
    assert sorted(set(tasks)) == [("cnn", 0), ("cnn", 2), ("staged", 0), ("staged", 2)]
    assert len(lines) == 5
    repeated = [task for task in set(tasks) if tasks.count(task) == 2]
    assert len(repeated) == 1
    killed_pid, retry_pid = (pid for stack, seed, pid in lines
                             if (stack, int(seed)) == repeated[0])
    assert killed_pid != retry_pid
    with pytest.raises(ProcessLookupError):              # the killed worker is gone
        os.kill(int(killed_pid), 0)


def always_kills_its_worker(stack: str, first_seed: int):
    """A stand-in for `executors.run_chunk` whose task `(stack, first_seed)` SIGKILLs its
    worker on every attempt; the other tasks run the real `run_chunk`."""

    def run_chunk(config, seed, count, threads=1):
        import signal

        from reflexdrive.compare import executors as worker_executors

        if (config.stack, seed) == (stack, first_seed):
            os.kill(os.getpid(), signal.SIGKILL)
        return worker_executors.run_chunk(config, seed, count, threads)

    return run_chunk


@pytest.mark.slow
def test_a_task_lost_for_good_keeps_the_other_episodes_and_the_compare_resumes(
        setup, tmp_path, monkeypatch):
    config, local = setup
    monkeypatch.setattr(executors, "run_chunk", always_kills_its_worker("staged", 2))
    monkeypatch.setattr(executors, "MAX_RETRIES", 1)
    lost = (r"1 Ray task\(s\) lost their worker 2 times: cell staged/lead-brake/realtime"
            r"\+0\.1s seeds 2\.\.2; the other episodes are saved")
    with pytest.raises(executors.TaskLostError, match=lost):
        compare(config(tmp_path / "ray", executor="ray", ray_cpus=2, chunk_episodes=2),
                progress=False)
    assert not ray.is_initialized()
    cells = {cell.stack: cell for cell in config(tmp_path / "ray").cells()}
    folder = tmp_path / "ray" / "cells"
    assert executors.finished_seeds(folder / cells["staged"].name, cells["staged"].run) == {0, 1}
    assert executors.cell_complete(folder / cells["cnn"].name, cells["cnn"].run)
    # the local executor runs only the lost episode, and the files are the local run's
    monkeypatch.undo()
    assert compare(config(tmp_path / "ray"), progress=False).ran == 1
    assert_same_outputs(tmp_path / "ray", local)
