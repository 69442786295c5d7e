"""Rollouts of an agent over N envs on the clock: `reflexdrive run`.

The envs run in worker processes (a Gymnasium `AsyncVectorEnv`; in-process for one env),
each one a scenario on the clock (`envs.registration.make_env`). The agent decides for
all of them in one batched call per tick. Episode `i` of a run always uses scenario seed
`seed + i`, whichever worker runs it, so results do not depend on `--envs` (with `fixed`
or `profile` latency).

Autoreset is off: when an env's episode ends, the runner records it and resets just that
env (`reset_mask`) with the next episode's seed, so no step is wasted or mixed up. Each
finished episode is written immediately (atomically): a killed run loses only the
episodes in flight, and running again with the same `--out` resumes where it stopped.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
import pandas as pd

from reflexdrive.agents.base import Agent
from reflexdrive.agents.registry import (
    END_TO_END_STACKS,
    REFERENCE_STACKS,
    check_stack,
    check_staged_options,
    make_agent,
)
from reflexdrive.common.devices import resolve_device
from reflexdrive.common.memory import collector_paused
from reflexdrive.common.validation import (
    ConfigError,
    boolean,
    choice,
    count,
    field_default,
    override,
    string,
    validate_fields,
)
from reflexdrive.envs.clock.contract import command_landings
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.gym.vector import BatchedDrivingEnv, batched_scenarios
from reflexdrive.envs.latency import base_spec, parse_latency
from reflexdrive.envs.registration import make_env
from reflexdrive.envs.scenarios import SCENARIOS, make_config
from reflexdrive.envs.types import CRITICALITY_KEYS
from reflexdrive.run.metrics import ReactionConfig
from reflexdrive.run.results import prepare_out_dir, write_csv, write_json
from reflexdrive.run.rollout import Episode, Rollout, info_at

BACKENDS = ("auto", "highway", "batched")


@dataclass(frozen=True)
class RunConfig:
    """One `reflexdrive run`: a stack on a scenario for a number of seeded episodes.

    Attributes:
        scenario: scenario name (`reflexdrive scenarios` lists them).
        stack: driving stack: a name (`agents.registry.stack_names`: the built-in ones
            and those registered as `reflexdrive.stacks` entry points) or a user's factory
            `package.module:factory` returning an `Agent` (docs/your-stack.md).
        episodes: number of episodes; episode `i` uses scenario seed `seed + i`.
        seed: first scenario seed.
        mode: "realtime" (the world keeps moving while the agent computes) or "lockstep".
        latency: latency model spec: fixed:SECONDS, fixed:STAGE=SECONDS,..., profile:PATH,
            measured.
        budget_s: compute budget per tick [s]; None means one tick.
        stage_budgets_s: optional per-stage budgets [s].
        on_overrun: "record", "terminate" or "raise".
        execution: "sequential" (a decision's stages one after another) or "pipelined"
            (each stage on its own processor; frames overlap).
        envs: number of envs run side by side (worker processes when > 1).
        simulation_frequency: substep rate [Hz].
        policy_frequency: tick rate [Hz]; must divide `simulation_frequency`.
        perception: perception of the staged stack (`agents.registry.PERCEPTIONS`).
        tracker: tracker of the staged stack (`agents.registry.TRACKERS`).
        planner: planner of the staged stack (`agents.registry.PLANNERS`).
        controller: steering controller of the staged stack (`agents.staged.CONTROLLERS`).
            Each of the four stages may also be `package.module:factory`, whose product
            replaces that stage (`agents.registry.build_staged`).
        backend: "highway" (highway-env, worker processes), "batched" (all envs in one
            torch batch: `envs.gym.vector.batched_scenarios()`, every scenario) or "auto"
            (batched where the scenario has it).
        device: torch device of the batched backend and of the stack's networks ("cpu",
            "cuda", "auto").
        checkpoint: policy checkpoint of an end-to-end stack (None: the shipped one);
            only the end-to-end stacks (`agents.registry.END_TO_END_STACKS`) take one.
        scenario_config: overrides of the scenario's config fields.
        reaction: what counts as a response to a hazard.
        twins: run each hazard episode's hazard-removed twin beside it, for the
            counterfactual reaction time (`reaction_time_s`; without twins only
            `brake_onset_s` is measured). Doubles the simulated worlds of hazard scenarios;
            scenarios without a hazard never run twins.

    The clock's fields (`mode`, `latency`, `budget_s`, `stage_budgets_s`, `on_overrun`,
    `execution`, the frequencies) are `ClockConfig`'s: its defaults and rules, stated there once.
    """

    scenario: str = choice("lead-brake", choices=tuple(SCENARIOS), help="scenario")
    stack: str = string("staged", help="driving stack: a name or package.module:factory")
    episodes: int = count(20, help="number of episodes")
    seed: int = count(0, low=0, help="first scenario seed; episode i uses seed+i")
    mode: str = override(ClockConfig, "mode")
    latency: str = override(ClockConfig, "latency")
    budget_s: float | None = override(ClockConfig, "budget_s")
    stage_budgets_s: Mapping[str, float] = override(ClockConfig, "stage_budgets_s")
    on_overrun: str = override(ClockConfig, "on_overrun")
    execution: str = override(ClockConfig, "execution")
    envs: int = count(1, help="envs run side by side")
    simulation_frequency: int = override(ClockConfig, "simulation_frequency")
    policy_frequency: int = override(ClockConfig, "policy_frequency")
    perception: str = string("oracle", help="perception of the staged stack")
    tracker: str = string("kalman", help="tracker of the staged stack")
    planner: str = string("mobil-frenet", help="planner of the staged stack")
    controller: str = string("pure-pursuit", help="steering controller of the staged stack")
    backend: str = choice("auto", choices=BACKENDS, help="world backend")
    device: str = choice("cpu", choices=("cpu", "cuda", "auto"),
                         help="torch device of the batched backend and of the networks")
    checkpoint: str | None = None
    scenario_config: Mapping[str, Any] = field(default_factory=dict)
    reaction: ReactionConfig = field(default_factory=ReactionConfig)
    twins: bool = boolean(True, help="run hazard-removed twins for the counterfactual "
                                     "reaction time")

    def __post_init__(self) -> None:
        # the clock's fields carry ClockConfig's rules; errors name budget_s "budget" as it
        validate_fields(self, labels={"budget_s": "budget"})
        check_stack("stack", self.stack)
        check_staged_options(self.perception, self.tracker, self.planner, self.controller)
        if self.stack in REFERENCE_STACKS and self.latency.replace(" ", "") not in (
                "fixed:0", "fixed:0.0"):
            raise ConfigError("latency", self.latency,
                              f"the {self.stack} stack models its delays as driving behaviour "
                              "and is charged no compute: run it with fixed:0")
        if self.checkpoint is not None and self.stack not in END_TO_END_STACKS:
            raise ConfigError("checkpoint", self.checkpoint,
                              f"the {self.stack} stack loads no policy checkpoint; only the "
                              "end-to-end stacks do: " + ", ".join(END_TO_END_STACKS))
        resolve_device(self.device)               # "cuda" on a machine without CUDA
        if self.backend == "batched" and self.scenario not in batched_scenarios():
            raise ConfigError("backend", self.backend,
                              f"scenario {self.scenario!r} runs on the highway backend only; "
                              "the batched backend runs " + ", ".join(batched_scenarios()))
        self.clock_config()                      # frequencies divide, stage budgets
        parse_latency(self.latency, base_dir=os.getcwd())   # malformed spec or bad profile file
        make_config(self.scenario, dict(self.scenario_config))

    def clock_config(self) -> ClockConfig:
        return ClockConfig(simulation_frequency=self.simulation_frequency,
                           policy_frequency=self.policy_frequency, mode=self.mode,
                           budget_s=self.budget_s, stage_budgets_s=dict(self.stage_budgets_s),
                           on_overrun=self.on_overrun, latency=self.latency,
                           execution=self.execution)

    @property
    def resolved_backend(self) -> str:
        """"highway" or "batched": what `backend="auto"` means for this scenario."""
        if self.backend != "auto":
            return self.backend
        return "batched" if self.scenario in batched_scenarios() else "highway"

    @property
    def runs_twins(self) -> bool:
        """Whether episodes run with twins: `twins` and the scenario has a hazard."""
        return self.twins and SCENARIOS[self.scenario].hazard != "none"

    def agent_options(self) -> dict[str, Any]:
        """Keyword options of `agents.registry.make_agent` for this run's stack (each builder
        takes its own and ignores the rest; the reference drivers count ticks of `tick_s`)."""
        options: dict[str, Any] = dict(
            perception=self.perception, tracker=self.tracker, planner=self.planner,
            controller=self.controller, seed=self.seed,
            device=self.resolved_device, tick_s=1.0 / self.policy_frequency)
        if self.checkpoint is not None:
            options["checkpoint"] = self.checkpoint
        return options

    @property
    def worlds(self) -> int:
        """Envs the stack drives per call: `envs`, doubled by the twins."""
        return self.envs * (2 if self.runs_twins else 1)

    @property
    def resolved_device(self) -> str:
        """The torch device the run uses ("auto": CUDA when there is a GPU)."""
        return str(resolve_device(self.device))

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `envs.registration.make_env` for this run."""
        return dict(scenario=self.scenario, mode=self.mode, latency=self.latency,
                    budget=self.budget_s, stage_budgets=dict(self.stage_budgets_s),
                    on_overrun=self.on_overrun, simulation_frequency=self.simulation_frequency,
                    policy_frequency=self.policy_frequency,
                    scenario_config=dict(self.scenario_config) or None,
                    latency_base_dir=os.getcwd(), execution=self.execution)

    def identity(self) -> dict[str, Any]:
        """The settings that determine episode results (resuming requires them equal)."""
        identity = asdict(self)
        for name in ("episodes", "envs", "device"):
            identity.pop(name)
        if identity["checkpoint"] is None:       # so runs from before the field still resume
            identity.pop("checkpoint")
        for name in ("tracker", "planner"):      # likewise, at their defaults
            if identity[name] == field_default(RunConfig, name):
                identity.pop(name)
        if identity["execution"] == "sequential":   # as checkpoint: older runs resume
            identity.pop("execution")
        identity["backend"] = self.resolved_backend
        identity["stage_budgets_s"] = dict(sorted(identity["stage_budgets_s"].items()))
        identity["scenario_config"] = dict(sorted(identity["scenario_config"].items()))
        return identity


def make_vector_env(config: RunConfig) -> gym.vector.VectorEnv:
    """The vector env of a run (autoreset disabled): `config.envs` envs of the resolved
    backend (one torch batch, in-process envs, or worker processes), followed by as many
    hazard-removed twins when the run has them (`RunConfig.runs_twins`; see
    `run.rollout.Rollout`)."""
    autoreset = gym.vector.AutoresetMode.DISABLED
    twins = [False] * config.envs + ([True] * config.envs if config.runs_twins else [])
    if config.resolved_backend == "batched":
        return BatchedDrivingEnv(num_envs=len(twins), device=config.resolved_device,
                                 record=True, autoreset_mode=autoreset, counterfactual=twins,
                                 **config.env_kwargs())
    factories = [functools.partial(make_env, counterfactual=twin, **config.env_kwargs())
                 for twin in twins]
    if config.envs == 1:
        return gym.vector.SyncVectorEnv(factories, autoreset_mode=autoreset)
    return gym.vector.AsyncVectorEnv(factories, context="forkserver", autoreset_mode=autoreset)


def tick_rows(config: RunConfig, episode: Episode, records: list, substeps: list
              ) -> list[dict]:
    """One row per tick for `ticks.csv`: timing, commands, and the ego's state at tick end."""
    tick_s = 1.0 / config.policy_frequency
    times = np.array([s.time_s for s in substeps])
    landings = command_landings(records)    # pipelined: known once the command landed
    rows = []
    for record in records:
        end = np.searchsorted(times, record.t_s + tick_s + 1e-9, side="right") - 1
        after = substeps[end] if end >= 0 else None
        command = record.command
        row = {
            "seed": episode.seed,
            "tick": record.tick,
            "t_s": record.t_s,
            "observed": record.observed,
            "latency_s": record.latency_s,
            "overrun": record.overrun,
            "stage_overruns": ";".join(record.stage_overruns),
            "dropped_after": record.dropped_after,
            "accel_cmd_mps2": command.acceleration if command else math.nan,
            "steer_cmd_rad": command.steering if command else math.nan,
            "lands_s": landings.get(record.tick, math.nan) if record.observed else math.nan,
            "accel_held_mps2": record.held.acceleration,
            "steer_held_rad": record.held.steering,
            "switch_s": record.switches[0][0] if record.switches else math.nan,
            "speed_mps": after.speed if after else math.nan,
            "gap_m": after.gap_m if after else math.nan,
            "ttc_s": after.ttc_s if after else math.nan,
        }
        for stage, seconds in record.stage_latency_s.items():
            row[f"latency_{stage}_s"] = seconds
        rows.append(row)
    return rows


def _finish(config: RunConfig, episode: Episode, info_row: Mapping[str, Any], end_reason: str
            ) -> tuple[dict, list[dict]]:
    """The `episodes.csv` row and the `ticks.csv` rows of a finished episode (`info_row`:
    its `info["hazard"]` entries at the end)."""
    records = episode.reached_records
    metrics = episode.metrics(info_row, 1.0 / config.simulation_frequency, config.reaction)
    row = {
        "scenario": config.scenario,
        "stack": config.stack,
        "seed": episode.seed,
        "mode": config.mode,
        "latency": config.latency,
        "backend": config.resolved_backend,
        "budget_s": config.clock_config().budget,
        "episode": episode.item[0],
        "end_reason": end_reason,
        **metrics.as_row(),
    }
    return row, tick_rows(config, episode, records, episode.substeps)


def _end_reason(info: Mapping[str, Any], index: int, truncated: bool) -> str:
    if info.get("deadline_miss") is not None and bool(info["deadline_miss"][index]):
        return "deadline_miss"
    if bool(info["crashed"][index]):
        return "collision"
    if bool(info["offroad"][index]):
        return "offroad"
    return "time_limit" if truncated else "terminated"


class RunWriter:
    """Keeps `episodes.csv`, the per-episode tick logs and `run.json` of one `--out` dir.

    Layout: `run.json` (settings and status), `episodes.csv` (one row per finished
    episode), `ticks/seed-NNNNNN.csv` (one per episode, written when it finishes) and, once
    the run completes, `ticks.csv` (all of them, with a `seed` column).
    """

    def __init__(self, out: str | os.PathLike, config: RunConfig):
        self.out = prepare_out_dir(out)
        (self.out / "ticks").mkdir(exist_ok=True)
        self.config = config
        self.rows: list[dict] = []
        run_file = self.out / "run.json"
        episodes_file = self.out / "episodes.csv"
        if run_file.exists() and episodes_file.exists():
            try:
                previous = json.loads(run_file.read_text())["identity"]
            except (ValueError, KeyError, TypeError):
                raise ConfigError("--out", str(out), "holds a run.json that cannot be read; "
                                  "use an empty directory") from None
            if previous != json.loads(json.dumps(config.identity(), default=str)):
                raise ConfigError("--out", str(out), "holds a run with different settings; "
                                  "use a new directory to start another run")
            try:
                self.rows = pd.read_csv(episodes_file, keep_default_na=False,
                                        na_values=[""]).to_dict("records")
            except (ValueError, pd.errors.ParserError):
                raise ConfigError("--out", str(out), "holds an unreadable episodes.csv; "
                                  "use a new directory") from None
        self._write_run("running")

    @property
    def done_seeds(self) -> set[int]:
        return {int(row["seed"]) for row in self.rows}

    def _write_run(self, status: str) -> None:
        write_json(self.out / "run.json", {"identity": self.config.identity(),
                                           "episodes": self.config.episodes,
                                           "envs": self.config.envs, "status": status})

    def add(self, row: dict, ticks: list[dict]) -> None:
        write_csv(self.out / "ticks" / f"seed-{row['seed']:06d}.csv", pd.DataFrame(ticks))
        self.rows.append(row)
        write_csv(self.out / "episodes.csv", self.frame())

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows)
        if not len(frame):
            return frame
        return frame.sort_values("seed", kind="stable").reset_index(drop=True)

    def close(self, seeds: list[int]) -> pd.DataFrame:
        """Write the combined `ticks.csv` of `seeds` and mark the run complete."""
        parts = [pd.read_csv(self.out / "ticks" / f"seed-{seed:06d}.csv") for seed in seeds]
        write_csv(self.out / "ticks.csv", pd.concat(parts, ignore_index=True) if parts
                  else pd.DataFrame())
        self._write_run("complete")
        return self.frame()


def run(config: RunConfig, out: str | os.PathLike | None = None, agent: Agent | None = None,
        progress: bool = True,
        on_episode: Callable[[dict, list[dict]], None] | None = None,
        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run `config.episodes` episodes and return `(episodes, ticks)` DataFrames.

    Args:
        config: the run's settings.
        out: directory to write results to (resumed if it holds this run); None keeps
            everything in memory.
        agent: the stack to drive (default: `make_agent(config.stack, ...)`).
        progress: show a progress bar (stderr).
        on_episode: called with `(episode row, tick rows)` as each episode finishes (after
            it is written to `out`); e.g. `reflexdrive compare`'s overall progress bar.
    """
    from tqdm.auto import tqdm

    writer = RunWriter(out, config) if out is not None else None
    seeds = [config.seed + i for i in range(config.episodes)]
    done = writer.done_seeds if writer else set()
    todo = [(i, s) for i, s in enumerate(seeds) if s not in done]
    rows: list[dict] = []
    ticks: list[dict] = []
    if todo:
        agent = agent or make_agent(config.stack, **config.agent_options())
        bar = tqdm(total=len(seeds), initial=len(seeds) - len(todo), disable=not progress,
                   desc=f"{config.stack} on {config.scenario} ({config.mode})", unit="episode")
        try:
            with collector_paused():     # the records: many small long-lived tuples
                for row, episode_ticks in _rollouts(config, agent, todo):
                    rows.append(row)
                    ticks.extend(episode_ticks)
                    if writer:
                        writer.add(row, episode_ticks)
                    if on_episode is not None:
                        on_episode(row, episode_ticks)
                    bar.update(1)
        finally:
            bar.close()
    if writer:
        episodes = writer.close(seeds)
        tick_frame = pd.read_csv(Path(writer.out) / "ticks.csv")
        return episodes, tick_frame
    episodes = pd.DataFrame(rows)
    if len(episodes):
        episodes = episodes.sort_values("seed", kind="stable").reset_index(drop=True)
    return episodes, pd.DataFrame(ticks)


def _rollouts(config: RunConfig, agent: Agent, todo: list[tuple[int, int]]):
    """Yield `(episode row, tick rows)` for each `(episode index, seed)` in `todo`, as the
    episodes finish (idle envs replay seed 0)."""
    n_envs = min(config.envs, len(todo))
    config_for_envs = config if n_envs == config.envs else replace(config, envs=n_envs)
    measured = base_spec(config.latency) == "measured"           # also measured*K+S
    with Rollout(make_vector_env(config_for_envs), todo, seed_of=lambda item: item[1],
                 idle_seed="zero", twins=config.runs_twins) as rollout:
        steps = rollout.steps(agent.act, on_reset=lambda obs, info, mask: agent.reset(mask),
                              measured=measured)
        for step in steps:
            for i, episode in step.finished:
                hazard = info_at(step.info["hazard"], i, ("onset_s", *CRITICALITY_KEYS))
                yield _finish(config, episode, hazard,
                              _end_reason(step.info, i, bool(step.truncated[i])))
