"""`reflexdrive profile`: record a stack's per-stage latency at batch size 1 on this machine.

A car's computer runs one stack for one car, so the profile is taken at batch size 1:
the stack drives seeded episodes of a scenario (lockstep, zero latency, one env, no
hazard-removed twin beside it) and the wall-clock time of every stage of every decision
is recorded (CUDA-synchronised on a GPU; see `agents.base.StageTimer`). The first
`warmup` decisions are dropped (allocations, JIT compilation, caches). The result is a
`LatencyProfile` in the format the clock reads (`--latency profile:PATH`,
docs/latency-profile.md).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from reflexdrive.agents.base import Agent, Decision
from reflexdrive.common.validation import ConfigError, count, override, validate_fields
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.latency import LatencyProfile


class _RecordingAgent:
    """Wraps an agent and keeps the stage latencies of every decision."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.name = agent.name
        self.stage_names = agent.stage_names
        self.samples: list[dict[str, float]] = []

    def reset(self, done: np.ndarray) -> None:
        self.agent.reset(done)

    def act(self, obs, info) -> Decision:
        decision = self.agent.act(obs, info)
        self.samples.append(dict(decision.stage_latency_s))
        return decision


@dataclass(frozen=True)
class ProfileConfig:
    """What to profile.

    Attributes:
        stack: stack name (`agents.registry.stack_names`) or `package.module:factory`.
        agent_options: options of the stack (perception, tracker, planner, controller,
            checkpoint, ...).
        scenario: scenario the stack drives while it is timed.
        episodes: episodes to drive (seeds `seed .. seed + episodes - 1`).
        seed: first scenario seed.
        warmup: decisions dropped at the start [count].
        device: torch device of the stack's models ("cpu", "cuda", "auto").
        scenario_config: overrides of the scenario's config fields (as `RunConfig`'s).
        execution: how the stages will run on the car: "sequential" or "pipelined" (each
            stage its own processor). Timing is the same; it is recorded in the profile's
            meta and the table adds what it implies: the decision rate and age.
    """

    stack: str = "staged"
    agent_options: tuple[tuple[str, Any], ...] = ()
    scenario: str = "highway"
    episodes: int = count(2, help="episodes driven")
    seed: int = count(0, low=0, help="first scenario seed")
    warmup: int = count(20, low=0, help="decisions dropped at the start (JIT, caches)")
    device: str = "cpu"
    scenario_config: Mapping[str, Any] = field(default_factory=dict)
    execution: str = override(ClockConfig, "execution")

    def __post_init__(self) -> None:
        validate_fields(self)


def _device_name(device: str) -> str:
    """A readable name of the machine the profile was taken on."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return "cuda: " + torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {cpu} ({os.cpu_count()} cores)"


def profile_stack(config: ProfileConfig, progress: bool = True) -> LatencyProfile:
    """Drive `config.episodes` episodes at batch size 1 and return the latency profile."""
    import torch

    from reflexdrive.agents.registry import make_agent
    from reflexdrive.run.runner import RunConfig, run

    options = dict(config.agent_options)
    run_config = RunConfig(scenario=config.scenario, stack=config.stack,
                           episodes=config.episodes, seed=config.seed, mode="lockstep",
                           latency="fixed:0", envs=1, twins=False,   # batch size 1
                           scenario_config=dict(config.scenario_config),
                           **_run_fields(options))
    agent = _RecordingAgent(make_agent(config.stack, seed=config.seed, device=config.device,
                                       **options))
    run(run_config, out=None, agent=agent, progress=progress)
    samples = agent.samples[config.warmup:]
    if not samples:
        raise ConfigError("warmup", config.warmup,
                          f"leaves no samples of the {len(agent.samples)} decisions recorded; "
                          "lower it or drive more episodes")
    stages = {name: tuple(float(s[name]) for s in samples) for name in samples[0]}
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return LatencyProfile(
        stack=config.stack, device=_device_name(config.device), batch_size=1, stages=stages,
        created=created,
        meta={"scenario": config.scenario, "episodes": config.episodes, "seed": config.seed,
              "warmup": config.warmup, "execution": config.execution,
              "options": {k: str(v) for k, v in options.items()},
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "python": platform.python_version()})


def _run_fields(options: dict[str, Any]) -> dict[str, Any]:
    """The agent options that `RunConfig` also records (so the run validates them)."""
    return {k: options[k] for k in ("perception", "tracker", "planner", "controller",
                                    "checkpoint")
            if k in options}


def percentile_table(profile: LatencyProfile, execution: str = "sequential") -> str:
    """`stage  p50 ms  p99 ms` lines, plus the total per decision (the age of a command
    when the stages run one after another) and, pipelined, the slowest stage per decision
    (what sets the decision rate when each stage has its own processor)."""
    table = profile.as_array() * 1e3                                   # (rows, stages) ms
    names = list(profile.stages) + ["total"]
    columns = np.concatenate([table, table.sum(axis=1, keepdims=True)], axis=1)
    if execution == "pipelined":
        names.append("slowest stage")
        columns = np.concatenate([columns, table.max(axis=1, keepdims=True)], axis=1)
    width = max(len(n) for n in names)
    lines = [f"{'stage':<{width}}  {'p50 ms':>8}  {'p99 ms':>8}"]
    for i, name in enumerate(names):
        p50, p99 = np.percentile(columns[:, i], [50, 99])
        lines.append(f"{name:<{width}}  {p50:8.3f}  {p99:8.3f}")
    return "\n".join(lines)
