"""Where a compare's episodes run: this process (`local`) or Ray tasks (`ray`).

Both write the same files: each cell's folder is a `reflexdrive run` output folder
(`run.json`, `episodes.csv`, `ticks/seed-N.csv`, `ticks.csv`), written atomically as each
episode (local) or each task (ray) finishes, so a killed compare loses only the episodes
in flight and the next call resumes.

- `local`: `reflexdrive.run.runner.run` per cell, into the cell's folder.
- `ray`: the unfinished episodes of every cell, cut into chunks of consecutive seeds, run
  as Ray tasks (`run_chunk`, `max_retries` so a task lost with its worker runs again); the
  driver writes each returned episode with the cell's `RunWriter`, so a killed attempt
  writes nothing. A task that fails for good (its worker died `MAX_RETRIES` + 1 times, or
  it raised) fails the compare only after every other task's episodes are written. With
  no address it starts a local Ray instance (`ray.init(num_cpus=...,
  include_dashboard=False)`) and shuts it down at the end; with `address` it joins that
  cluster, whose nodes need this project installed (same version) and the checkpoint and
  profile files at the same paths.

Same seeds, same results: episode `i` of a cell uses scenario seed `seed + i` wherever it
runs, the stack is built with the cell's seed, and an end-to-end stack always decides for
exactly the cell's `envs` rows (`FixedBatchAgent` pads smaller batches: a network's output
for one row changes in the last bits with the batch size, which closed-loop driving would
carry into every column). So with fixed or profile latency the ray executor writes the
same `episodes.csv` as the local one. Measured latency differs run to run anyway.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from reflexdrive.agents.base import Agent, Decision
from reflexdrive.agents.registry import END_TO_END_STACKS, make_agent
from reflexdrive.common.threads import available_cores, cpu_threads
from reflexdrive.common.validation import ConfigError
from reflexdrive.compare.config import Cell
from reflexdrive.envs.latency import base_spec
from reflexdrive.run.runner import RunConfig, RunWriter, run

Progress = Callable[[int], None]
"""Called with the number of episodes just finished."""

MAX_RETRIES = 3
"""Times Ray runs a task again when its worker dies."""


class TaskLostError(RuntimeError):
    """Ray tasks whose worker died on every attempt (`MAX_RETRIES` + 1 times); the episodes
    of every other task are saved, so running the compare again resumes with the lost ones."""


class FixedBatchAgent:
    """An agent that always decides for `batch` rows: smaller batches are padded (with
    copies of row 0) and the padding's actions dropped.

    A network's output for one row depends, in its last bits, on the batch size the kernels
    see (not on the other rows' values); padding makes an end-to-end stack's results
    independent of how many envs happen to share a call (the tail of a run, a resumed
    run, a Ray chunk). `info` is passed through unpadded: end-to-end stacks ignore it.
    """

    def __init__(self, agent: Agent, batch: int):
        self.agent = agent
        self.batch = int(batch)
        self.name = getattr(agent, "name", "agent")
        self.stage_names = getattr(agent, "stage_names", ())

    def _pad(self, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        rows = array.shape[0]
        if rows > self.batch:
            raise ValueError(f"{rows} envs for a batch of {self.batch}")
        if rows == self.batch:
            return array
        return np.concatenate([array, np.repeat(array[:1], self.batch - rows, axis=0)])

    def reset(self, done: np.ndarray) -> None:
        done = np.asarray(done, dtype=bool)
        self.agent.reset(np.concatenate([done, np.zeros(self.batch - done.size, bool)]))

    def act(self, obs: dict[str, np.ndarray], info: dict) -> Decision:
        rows = next(iter(obs.values())).shape[0]
        decision = self.agent.act({key: self._pad(value) for key, value in obs.items()}, info)
        products = {key: value[:rows] if isinstance(value, np.ndarray)
                    and value.shape[:1] == (self.batch,) else value
                    for key, value in decision.products.items()}
        return Decision(actions=decision.actions[:rows],
                        stage_latency_s=decision.stage_latency_s, products=products)




def cell_agent(config: RunConfig) -> Agent:
    """The stack a cell drives, built with the cell's seed (end-to-end: batch-padded)."""
    agent = make_agent(config.stack, **config.agent_options())
    if config.stack in END_TO_END_STACKS:
        return FixedBatchAgent(agent, config.worlds)
    return agent


def finished_seeds(folder: Path, config: RunConfig) -> set[int]:
    """Seeds of `config` already finished in a cell folder, read without writing anything.

    Raises:
        ConfigError: the folder holds a run with other settings, or unreadable files
            (as `RunWriter` would, but before anything is written).
    """
    run_file, episodes_file = folder / "run.json", folder / "episodes.csv"
    if not (run_file.exists() and episodes_file.exists()):
        return set()
    try:
        previous = json.loads(run_file.read_text())["identity"]
        seeds = pd.read_csv(episodes_file, usecols=["seed"])["seed"]
    except (ValueError, KeyError, TypeError, pd.errors.ParserError):
        raise ConfigError("--out", str(folder), "holds an unreadable run; use a new "
                          "directory") from None
    if previous != json.loads(json.dumps(config.identity(), default=str)):
        raise ConfigError("--out", str(folder), "holds a run with different settings; use a "
                          "new directory to start another compare")
    wanted = set(range(config.seed, config.seed + config.episodes))
    return {int(seed) for seed in seeds} & wanted


def cell_complete(folder: Path, config: RunConfig) -> bool:
    """Whether a cell folder holds every episode of `config` and its closing files."""
    if len(finished_seeds(folder, config)) < config.episodes:
        return False
    try:
        status = json.loads((folder / "run.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return False
    return status == "complete" and (folder / "ticks.csv").exists()


def cell_threads(config: RunConfig, threads: int | None = None) -> int:
    """CPU threads of a cell run locally: `threads` when given, else 1 where the latency is
    `measured` (the wall clock of the stack's own decisions: other threads would contend
    with it) and all of this machine's cores otherwise (a replayed or fixed latency does
    not depend on the wall clock)."""
    if threads is not None:
        return threads
    return 1 if base_spec(config.latency) == "measured" else available_cores()


def run_local(cells: Iterable[tuple[Cell, Path]], progress: Progress,
              threads: int | None = None) -> None:
    """Run every cell with the runner in this process, into its folder (complete cells
    are left as they are), each on `cell_threads(cell.run, threads)` CPU threads."""
    for cell, folder in cells:
        if cell_complete(folder, cell.run):
            continue
        with cpu_threads(cell_threads(cell.run, threads)):
            run(cell.run, out=folder, agent=cell_agent(cell.run), progress=False,
                on_episode=lambda row, ticks: progress(1))


def chunks(seeds: Iterable[int], size: int) -> list[list[int]]:
    """`seeds` cut into runs of consecutive seeds of at most `size` each."""
    result: list[list[int]] = []
    for seed in sorted(seeds):
        if result and seed == result[-1][-1] + 1 and len(result[-1]) < size:
            result[-1].append(seed)
        else:
            result.append([seed])
    return result


def run_chunk(config: RunConfig, first_seed: int, count: int, threads: int = 1
              ) -> list[tuple[dict, list[dict]]]:
    """Episodes `first_seed .. first_seed + count - 1` of a cell, in memory (a Ray task),
    on `threads` CPU threads (`cpu_threads`).

    Returns `(episode row, tick rows)` per episode, exactly as the runner writes them for
    the whole cell (the `episode` column is the index in the cell, `seed - config.seed`).
    """
    chunk = replace(config, seed=first_seed, episodes=count, envs=min(config.envs, count))
    results: list[tuple[dict, list[dict]]] = []
    with cpu_threads(threads):
        run(chunk, agent=cell_agent(config), progress=False,
            on_episode=lambda row, ticks: results.append((row, ticks)))
    for row, _ in results:
        row["episode"] = int(row["seed"]) - config.seed
    return results


def run_ray(cells: Iterable[tuple[Cell, Path]], progress: Progress, *,
            address: str | None = None, num_cpus: int | None = None,
            chunk_episodes: int | None = None, threads: int = 1) -> None:
    """Run the unfinished episodes of every cell as Ray tasks; the driver writes results.

    Args:
        cells: `(cell, folder)` pairs.
        progress: called with the number of episodes each returned task finished.
        address: Ray cluster to join; None starts (and at the end stops) a local instance.
        num_cpus: CPUs of the local instance (None: all); one task per CPU at a time.
        chunk_episodes: episodes per task (None: the cell's `envs`).
        threads: torch and numba threads of each task.

    Raises:
        TaskLostError: a task's worker died on every attempt; the other tasks finished and
            their episodes are written first.
        Exception: the first exception a task raised (as `ray.get` raises it), likewise
            after the other tasks finished.
    """
    import ray

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(run_chunk)
        writers: dict[int, RunWriter] = {}
        configs: dict[int, RunConfig] = {}
        remaining: dict[int, int] = {}
        pending: dict[Any, tuple[int, list[int]]] = {}   # task -> (cell index, seeds)
        cell_names: dict[int, str] = {}
        for index, (cell, folder) in enumerate(cells):
            config = cell.run
            if cell_complete(folder, config):
                continue
            done = finished_seeds(folder, config)
            todo = [s for s in range(config.seed, config.seed + config.episodes)
                    if s not in done]
            configs[index], remaining[index] = config, len(todo)
            cell_names[index] = cell.name
            writers[index] = RunWriter(folder, config)
            if not todo:                             # finished but not closed
                _close(writers[index], config)
            for seeds in chunks(todo, chunk_episodes or config.envs):
                pending[task.remote(config, seeds[0], len(seeds), threads)] = (index, seeds)
        lost: list[str] = []
        failure: BaseException | None = None
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index, seeds = pending.pop(ready[0])
            try:
                results = ray.get(ready[0])
            except ray.exceptions.RayError as error:  # first keep the other tasks' episodes
                failure = failure or error
                if not isinstance(error, ray.exceptions.RayTaskError):   # not raised in it
                    lost.append(f"cell {cell_names[index]} seeds {seeds[0]}..{seeds[-1]}")
                continue
            for row, ticks in results:
                writers[index].add(row, ticks)
            remaining[index] -= len(results)
            progress(len(results))
            if remaining[index] == 0:
                _close(writers[index], configs[index])
        if lost:
            raise TaskLostError(
                f"{len(lost)} Ray task(s) lost their worker {MAX_RETRIES + 1} times: "
                + ", ".join(lost) + "; the other episodes are saved: run the compare again "
                "to resume") from failure
        if failure is not None:
            raise failure
    finally:
        if started:
            ray.shutdown()


def _close(writer: RunWriter, config: RunConfig) -> None:
    writer.close([config.seed + i for i in range(config.episodes)])
