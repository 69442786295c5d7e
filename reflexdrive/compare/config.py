"""Settings of `reflexdrive compare`: one frozen, validated dataclass, from flags or TOML.

`CompareConfig` describes a grid of runs: every stack on every scenario, in every mode, at
every latency scale and extra latency, on the same seeds. Each grid point is a `Cell`, one
`reflexdrive.run.runner.RunConfig` run into its own folder. `CompareConfig.from_toml(path)`
reads the same fields from a TOML file (unknown keys and wrong types are errors naming the
key and what is allowed); the CLI's flags override the file.

Paths (`checkpoints`, a `profile:PATH` latency, `out`) are made absolute on construction:
a relative path in a TOML file is relative to the file's folder, one given on the
command line or in Python to the current directory.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from reflexdrive.common.validation import (
    HELP,
    ConfigError,
    boolean,
    choice,
    count,
    field_default,
    override,
    real,
    validate_fields,
)
from reflexdrive.compare.latency import PROFILED, absolute_latencies, stack_latencies
from reflexdrive.envs.config import EXECUTIONS
from reflexdrive.envs.latency import MAX_LATENCY_SCALE, with_extra, with_scale
from reflexdrive.run.runner import RunConfig

MODES = ("lockstep", "realtime")
"""The clock modes: the world waits (lockstep, the zero-latency baseline) or not."""

EXECUTORS = ("local", "ray")
"""Where episodes run: this process (`local`) or Ray tasks (`ray`)."""

DEFAULT_STACKS = ("staged", "cnn", "gru", "transformer", "reference-driver", "r157-regulation")
"""The stacks compared by default: the staged stack, the end-to-end policies and the UN R157
reference drivers (human and regulation: the bar the systems are judged against)."""
DEFAULT_SCENARIOS = ("lead-brake", "cut-in", "stopped-vehicle")
DEFAULT_EXTRA_LATENCY_S = (0.0, 0.05, 0.1, 0.2, 0.4)

DEMO_EPISODES = 125
"""Episodes per cell of `reflexdrive demo`: cut-in and stopped-vehicle episodes are all
critical, lead-brake ones 90-94 % at the stacks' own latency and fewer behind a late stack
(~83 % for the staged stack at +300 ms, which follows closer before the onset), so each
cell rates >= `DEMO_MIN_CRITICAL` of them (the demo says where one does not). All of a
cell's episodes run as one batch (`envs` = episodes)."""
DEMO_MIN_CRITICAL = 100
"""Critical episodes a demo cell should rate; fewer is reported."""
DEMO_MODES = ("realtime",)
"""Clock modes of the demo: realtime only (lockstep is the zero-latency baseline that
`reflexdrive compare` adds; the demo spends its time on the stacks instead)."""
DEMO_EXECUTION = ("sequential", "pipelined")
"""Executions of the demo (pipelined only for the staged stack: the others have one stage)."""
DEMO_EXTRA_LATENCY_S = (0.0, 0.1, 0.2, 0.3)
"""Extra latencies [s] of `reflexdrive demo`, swept for `DEMO_SWEEP_STACKS` only."""
DEMO_SWEEP_STACKS = ("staged",)
"""Stacks whose latency cost curve the demo draws (the others run at their own latency)."""
DEMO_SCENARIO_CONFIG = {"duration_s": 9.0}
"""Scenario overrides of the demo: 9 s episodes instead of 12-14 s (onsets are at most ~4 s
in, criticality looks 4 s past the onset, and a stack braking at 6 m/s^2 stops from 24 m/s
within 4 s), ~30 % less simulation."""
DEMO_OUT = "runs/demo"
"""Output folder of `reflexdrive demo`."""

BATCHED_ENVS = 8
"""Envs per run when `envs` is not given, latency fixed or `profile:PATH` and the backend
batched."""
PROFILED_ENVS = 64
"""Envs per run when `envs` is not given, latency `profiled` and the backend batched: one
forward pass for all of them (the profile, not the batch, sets the latency)."""
PROFILES_DIR = "profiles"
"""Folder of a compare's `profiled` latency profiles, `OUT/profiles/STACK.json`."""
HIGHWAY_ENVS = 2
"""Envs (worker processes) per run when `envs` is not given on the highway backend."""


def _names(field_name: str, value: object, choices: tuple[str, ...] | None = None
           ) -> tuple[str, ...]:
    """`value` as a non-empty tuple of distinct names from `choices` (ConfigError otherwise);
    without `choices`, each name is a stack (`agents.registry.check_stack`)."""
    from reflexdrive.agents.registry import check_stack, stack_names

    allowed = "allowed values are " + ", ".join(choices if choices is not None
                                                else stack_names())
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(field_name, value, "must be a non-empty list of names; " + allowed)
    for item in value:
        if choices is None:
            check_stack(field_name, item)
        elif not isinstance(item, str) or item not in choices:
            raise ConfigError(field_name, item, allowed)
    if len(set(value)) != len(value):
        raise ConfigError(field_name, list(value), "names must not repeat")
    return tuple(value)


def _seconds(field_name: str, value: object) -> float:
    """`value` as a float of seconds in [0, 60) (an extra latency; ConfigError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(field_name, value, "must be a number of seconds")
    number = float(value)
    if not math.isfinite(number) or number < 0 or number >= 60:
        raise ConfigError(field_name, value, "must be a finite number of seconds in [0, 60)")
    return number


def _scale(value: object) -> float:
    """`value` as a latency scale factor in (0, MAX_LATENCY_SCALE] (ConfigError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(float(value)) and 0 < float(value) <= MAX_LATENCY_SCALE):
        raise ConfigError("latency_scale", value, f"must be a factor K with 0 < K <= "
                          f"{MAX_LATENCY_SCALE:g} (a computer K times slower)")
    return float(value)


def _absolute(path: str, base_dir: str | os.PathLike | None) -> str:
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = Path(base_dir if base_dir is not None else os.getcwd()) / resolved
    return str(resolved.resolve())


@dataclass(frozen=True)
class CompareConfig:
    """One `reflexdrive compare`: which stacks, scenarios, modes and latencies, how run.

    Attributes:
        stacks: driving stacks compared, on the same seeds: names
            (`agents.registry.stack_names`) or `package.module:factory` (a user's stack).
        scenarios: scenarios (`reflexdrive scenarios`), usually the hazard ones.
        episodes: episodes per stack x scenario x mode x extra latency; episode `i` uses
            scenario seed `seed + i` in every cell, so results pair up across stacks.
        seed: first scenario seed.
        modes: "lockstep" (the world waits: the zero-latency baseline) and/or "realtime".
        latency: each stack's own latency model, one spec for all stacks or a mapping
            stack -> spec (`compare.latency`: the string `STACK=SPEC,...` and a
            `default` entry; normalised to one entry per compared stack): "profiled"
            (timed at batch size 1 on this machine before the cells run, saved in
            `OUT/profiles/STACK.json` and replayed: `compare.profiles`), "measured" (the
            wall clock around its batched `act` call, see `envs`), "fixed:..." or
            "profile:PATH" (`envs.latency`); without `*K` / `+SECONDS` suffixes. The
            reference drivers always run at fixed:0.
        latency_scale: factors `K` multiplying the stack's own latency (a computer K times
            slower), one cell each (`envs.latency.ScaledLatency`). Sorted. With
            `extra_latency_s` the realtime cells are the product of both sweeps, each
            charging `own latency x K + extra`; the defaults (1, and extra 0) add none.
        extra_latency_s: extra delays [s] added on top of the stack's own latency, one
            cell each (the latency cost curve; `envs.latency.ShiftedLatency`). Sorted.
        sweep_stacks: the stacks whose realtime cells sweep `latency_scale` and
            `extra_latency_s`; None: every stack. The others run at their own latency only
            (scale 1, extra 0): a latency cost curve on a few stacks without paying for it
            on all (the demo's).
        budget_s: compute budget per tick [s]; None means one tick.
        execution: "sequential" and/or "pipelined" (each stage on its own processor;
            `RunConfig.execution`), one cell each; a single name works too. Pipelined
            cells run only where they can differ from sequential ones (`pipelines`):
            realtime, and a stack with more than one stage.
        envs: envs run side by side in one cell, i.e. the batch size of the stack's
            `act` call. None: per stack, 1 with measured latency (so "measured" is the
            latency of one car's computer, batch size 1), else on the batched backend
            64 with profiled latency and 8 with fixed or profile:PATH, and 2 on the
            highway one. The end-to-end stacks always decide for exactly `envs` rows
            (padded), so their results do not depend on how episodes are chunked.
        backend: world backend of every cell: "auto", "highway" or "batched".
        device: torch device of the batched backend and the networks: cpu, cuda, auto.
        perception: perception of the staged stack (`agents.registry.PERCEPTIONS`).
        tracker: tracker of the staged stack.
        planner: planner of the staged stack.
        controller: steering controller of the staged stack (each stage also takes
            `package.module:factory`).
        checkpoints: end-to-end stack -> policy checkpoint; a stack left out loads its
            shipped `policies/checkpoints/<stack>.pt`. Entries for stacks not compared
            are dropped.
        scenario_config: scenario config overrides applied to every scenario (e.g.
            `{"duration_s": 8}`).
        sweep_lockstep: also run lockstep at every extra latency. Off by default:
            lockstep ignores latency when driving, so only the latency and overrun columns
            would change; lockstep then runs once per stack and scenario, at extra 0.
        executor: "local" (the runner in this process) or "ray" (Ray tasks).
        address: Ray cluster address HOST:PORT; None starts a local Ray instance.
        ray_cpus: CPUs of the local Ray instance (None: all of this machine's).
        chunk_episodes: episodes per Ray task (None: `envs` of the cell).
        threads: torch and numba CPU threads of a cell (and of each Ray task). None: per
            cell, 1 where the latency is `measured` (a car's computer gives the stack a
            core; extra intra-op threads on a shared machine only contend and inflate the
            measured latency), else all of this machine's cores on the local executor
            (the latency is replayed or fixed, so the threads change no result, only the
            wall time) and 1 per Ray task (Ray runs tasks side by side).
        video: MP4s of the first `video` episodes per stack (written by the report).
        bootstrap_resamples: bootstrap resamples of the summary's intervals.
        out: output folder (required to run; the CLI's `--out`).
    """

    stacks: tuple[str, ...] = DEFAULT_STACKS
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    episodes: int = count(20, help="episodes per cell; episode i uses seed+i")
    seed: int = override(RunConfig, "seed")
    modes: tuple[str, ...] = MODES
    latency: str | Mapping[str, str] = field(default=PROFILED, metadata={HELP: (
        "each stack's own latency, one spec for all or STACK=SPEC,... (default=SPEC for the "
        "rest): profiled (timed at batch 1 here, then replayed batched), measured (wall "
        "clock of the batched act call), fixed:SECONDS, fixed:STAGE=SECONDS,..., "
        "profile:PATH")})
    latency_scale: tuple[float, ...] = (1.0,)
    extra_latency_s: tuple[float, ...] = DEFAULT_EXTRA_LATENCY_S
    sweep_stacks: tuple[str, ...] | None = None
    execution: tuple[str, ...] = ("sequential",)
    budget_s: float | None = real(0.1, low=0.0, high=60.0, low_inclusive=False,
                                  high_inclusive=False, optional=True,
                                  message="must be a finite number of seconds in (0, 60)",
                                  help="compute budget per tick [s]")
    envs: int | None = count(None, optional=True,
                             help="envs per cell = batch size of the stack's act call")
    backend: str = override(RunConfig, "backend")
    device: str = override(RunConfig, "device")
    perception: str = override(RunConfig, "perception")
    tracker: str = override(RunConfig, "tracker")
    planner: str = override(RunConfig, "planner")
    controller: str = override(RunConfig, "controller")
    checkpoints: Mapping[str, str] = field(default_factory=dict)
    scenario_config: Mapping[str, Any] = field(default_factory=dict)
    sweep_lockstep: bool = boolean(False, help="run lockstep at every extra latency too")
    executor: str = choice("local", choices=EXECUTORS,
                           help="local (this process) or ray (Ray tasks)")
    address: str | None = None
    ray_cpus: int | None = count(None, optional=True, help="CPUs of the local Ray instance")
    chunk_episodes: int | None = count(None, optional=True, help="episodes per Ray task")
    threads: int | None = count(None, optional=True,
                                help="torch and numba CPU threads of a cell (default: 1 "
                                     "for measured latency, else all cores; 1 per Ray task)")
    video: int = count(0, low=0, help="MP4s of the first K episodes per stack (for the "
                                      "report)")
    bootstrap_resamples: int = count(2000, low=100,
                                     help="bootstrap resamples of the summary's intervals")
    out: str | None = None

    def __post_init__(self) -> None:
        from reflexdrive.agents.registry import END_TO_END_STACKS, REFERENCE_STACKS, STACKS
        from reflexdrive.envs.scenarios import SCENARIOS

        validate_fields(self)
        set_ = _setter(self)
        set_("stacks", _names("stacks", self.stacks))
        set_("scenarios", _names("scenarios", self.scenarios, tuple(SCENARIOS)))
        set_("modes", _names("modes", self.modes, MODES))
        executions = (self.execution,) if isinstance(self.execution, str) else self.execution
        set_("execution", _names("execution", executions, EXECUTIONS))
        if self.address is not None:
            if not isinstance(self.address, str) or not self.address.strip():
                raise ConfigError("address", self.address, "must be HOST:PORT of a Ray cluster")
            if self.executor != "ray":
                raise ConfigError("address", self.address, "only the ray executor takes an "
                                  "address (--executor ray)")
        if self.budget_s is not None:
            set_("budget_s", float(self.budget_s))

        extras = self.extra_latency_s
        if isinstance(extras, (str, bytes)) or not isinstance(extras, (list, tuple)) or not extras:
            raise ConfigError("extra_latency_s", extras,
                              "must be a non-empty list of seconds, e.g. [0, 0.05, 0.1]")
        extras = tuple(_seconds("extra_latency_s", value) for value in extras)
        if len(set(extras)) != len(extras):
            raise ConfigError("extra_latency_s", list(extras), "must not repeat a value")
        set_("extra_latency_s", tuple(sorted(extras)))

        scales = self.latency_scale
        if isinstance(scales, (str, bytes)) or not isinstance(scales, (list, tuple)) or not scales:
            raise ConfigError("latency_scale", scales,
                              "must be a non-empty list of factors, e.g. [1, 2, 4]")
        scales = tuple(_scale(value) for value in scales)
        if len(set(scales)) != len(scales):
            raise ConfigError("latency_scale", list(scales), "must not repeat a value")
        set_("latency_scale", tuple(sorted(scales)))
        if self.sweep_stacks is not None:
            set_("sweep_stacks", _names("sweep_stacks", self.sweep_stacks, self.stacks))
        set_("latency", stack_latencies(self.latency, self.stacks, tuple(STACKS),
                                        REFERENCE_STACKS))

        if not isinstance(self.checkpoints, Mapping):
            raise ConfigError("checkpoints", self.checkpoints,
                              "must map end-to-end stacks to checkpoint paths")
        checkpoints = {}
        for stack, path in self.checkpoints.items():
            if stack not in END_TO_END_STACKS:
                raise ConfigError("checkpoints", stack, "only the end-to-end stacks load a "
                                  "checkpoint: " + ", ".join(END_TO_END_STACKS))
            if stack not in self.stacks:
                continue                             # not compared: not used
            if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
                raise ConfigError(f"checkpoints.{stack}", path, "must be a file path")
            checkpoints[stack] = _absolute(str(path), None)
            if not Path(checkpoints[stack]).is_file():
                raise ConfigError(f"checkpoints.{stack}", str(path), "no such file")
        set_("checkpoints", dict(sorted(checkpoints.items())))
        self._check_shipped(END_TO_END_STACKS)

        if not isinstance(self.scenario_config, Mapping):
            raise ConfigError("scenario_config", self.scenario_config,
                              "must map scenario config fields to values")
        set_("scenario_config", {key: tuple(value) if isinstance(value, list) else value
                                 for key, value in sorted(self.scenario_config.items())})
        if self.out is not None:
            if not isinstance(self.out, (str, os.PathLike)) or not str(self.out).strip():
                raise ConfigError("out", self.out, "must be a folder path")
            set_("out", _absolute(str(self.out), None))
        self.cells(replay_profiles=False)            # every cell's RunConfig validates itself

    def _check_shipped(self, end_to_end: tuple[str, ...]) -> None:
        from reflexdrive.policies.registry import missing_checkpoint

        for stack in self.stacks:
            if stack in end_to_end and stack not in self.checkpoints:
                problem = missing_checkpoint(stack)
                if problem is not None:
                    raise ConfigError("checkpoints", stack, problem)

    # -- the grid ----------------------------------------------------------------------

    def latency_of(self, stack: str) -> str:
        """The stack's own latency spec: `fixed:0` for the reference drivers, else its entry
        of `latency` (or the one spec for all)."""
        from reflexdrive.agents.registry import REFERENCE_STACKS

        if stack in REFERENCE_STACKS:                # behaviour, not compute: no latency
            return "fixed:0"
        return self.latency if isinstance(self.latency, str) else self.latency[stack]

    def profiled_stacks(self) -> tuple[str, ...]:
        """The compared stacks whose latency is `profiled`, in `stacks` order."""
        return tuple(stack for stack in self.stacks if self.latency_of(stack) == PROFILED)

    def profile_path(self, stack: str) -> Path:
        """Where a `profiled` stack's profile is saved: `OUT/profiles/STACK.json`."""
        if self.out is None:
            raise ConfigError("--out", None, "profiled latency saves its profiles in the "
                              "output directory: give --out DIR")
        return Path(self.out) / PROFILES_DIR / f"{stack}.json"

    def envs_for(self, stack: str, scenario: str) -> int:
        """Envs (batch size) of the cells of `stack` on `scenario` (see `envs`)."""
        if self.envs is not None:
            return self.envs
        own = self.latency_of(stack)
        if own == "measured":
            return 1
        from reflexdrive.envs.gym.vector import batched_scenarios

        batched = self.backend == "batched" or (self.backend == "auto"
                                                 and scenario in batched_scenarios())
        if not batched:
            return HIGHWAY_ENVS
        return PROFILED_ENVS if own == PROFILED else BATCHED_ENVS

    def pipelines(self, stack: str, mode: str) -> bool:
        """Whether `stack` runs pipelined cells in `mode`: realtime (lockstep computes
        instantly: both executions agree) and more than one stage. Known one-stage stacks
        are the end-to-end policies and the reference drivers (`agents.registry`); every
        other stack (staged, a user's `package.module:factory`, a registered one) is taken
        to have several, without building it (a one-stage user stack just runs twice)."""
        from reflexdrive.agents.registry import END_TO_END_STACKS, REFERENCE_STACKS

        return mode == "realtime" and stack not in (*END_TO_END_STACKS, *REFERENCE_STACKS)

    def executions_of(self, stack: str, mode: str) -> tuple[str, ...]:
        """The executions of `stack`'s cells in `mode`: `execution`, without "pipelined"
        where it cannot differ (`pipelines`): there only "sequential"."""
        return self.execution if self.pipelines(stack, mode) else ("sequential",)

    def cells(self, replay_profiles: bool = True) -> list[Cell]:
        """The grid, stacks x scenarios x modes x executions x latency scales x extra
        latencies, in that order (lockstep only at scale 1 and extra 0 unless
        `sweep_lockstep`; the reference drivers and the stacks not in `sweep_stacks` only
        there too: they are charged no compute, or not swept; pipelined only where
        `pipelines`).

        Args:
            replay_profiles: True: a `profiled` stack's runs replay
                `profile:OUT/profiles/STACK.json` (`compare.profiles.record_profiles`
                writes it first). False: they hold `fixed:0` in its place, with the same
                suffixes, to validate, name and build the cells before the profiles exist.
        """
        from reflexdrive.agents.registry import REFERENCE_STACKS

        cells = []
        for stack in self.stacks:
            for scenario in self.scenarios:
                for mode in self.modes:
                    sweep = (mode == "realtime" or self.sweep_lockstep) and \
                        stack not in REFERENCE_STACKS and \
                        (self.sweep_stacks is None or stack in self.sweep_stacks)
                    scales = self.latency_scale if sweep else (1.0,)
                    extras = self.extra_latency_s if sweep else (0.0,)
                    cells.extend(
                        Cell(stack, scenario, mode, extra,
                             self._run_config(stack, scenario, mode, execution, scale, extra,
                                              replay_profiles), scale, execution)
                        for execution in self.executions_of(stack, mode)
                        for scale in scales for extra in extras)
        return cells

    def _run_config(self, stack: str, scenario: str, mode: str, execution: str, scale: float,
                    extra_s: float, replay_profiles: bool) -> RunConfig:
        from reflexdrive.agents.registry import END_TO_END_STACKS

        checkpoint = self.checkpoints.get(stack) if stack in END_TO_END_STACKS else None
        own = self.latency_of(stack)
        if own == PROFILED:
            own = f"profile:{self.profile_path(stack)}" if replay_profiles else "fixed:0"
        return RunConfig(
            scenario=scenario, stack=stack, episodes=self.episodes, seed=self.seed, mode=mode,
            latency=with_extra(with_scale(own, scale), extra_s), budget_s=self.budget_s,
            execution=execution, envs=self.envs_for(stack, scenario),
            perception=self.perception, tracker=self.tracker, planner=self.planner,
            controller=self.controller, backend=self.backend, device=self.device,
            checkpoint=checkpoint, scenario_config=dict(self.scenario_config))

    @property
    def total_episodes(self) -> int:
        return self.episodes * len(self.cells(replay_profiles=False))

    def identity(self) -> dict[str, Any]:
        """The settings that determine the results; resuming in an `out` requires them equal.

        Added: the sha256 of every end-to-end checkpoint. Left out: `episodes` (more
        episodes extend a compare, fewer summarise the first ones), how it runs
        (`executor`, `address`, `ray_cpus`, `chunk_episodes`, `threads`), `device` (as
        `RunConfig.identity`), `video`, `bootstrap_resamples` and `out`.
        """
        identity = self._fields()
        for name in ("episodes", "executor", "address", "ray_cpus", "chunk_episodes",
                     "threads", "device", "video", "bootstrap_resamples", "out"):
            identity.pop(name)
        for name in ("tracker", "planner"):          # compares from before these resume
            if identity[name] == field_default(CompareConfig, name):
                identity.pop(name)
        if self.latency_scale == (1.0,):             # compares from before the field resume
            identity.pop("latency_scale")
        if self.sweep_stacks is None:                # likewise
            identity.pop("sweep_stacks")
        if identity["execution"] == ("sequential",):   # compares from before the field resume
            identity.pop("execution")
        elif len(identity["execution"]) == 1:        # one value: as when it was a string
            identity["execution"] = identity["execution"][0]
        identity["checkpoint_sha256"] = self.checkpoint_digests()
        return _jsonable(identity)

    def checkpoint_digests(self) -> dict[str, str]:
        """End-to-end stack -> sha256 of the checkpoint file it loads (given or shipped), so
        a retrained checkpoint at the same path is not mixed into a resumed compare."""
        from reflexdrive.agents.registry import END_TO_END_STACKS
        from reflexdrive.policies.registry import shipped_checkpoint

        digests = {}
        for stack in self.stacks:
            if stack in END_TO_END_STACKS:
                path = Path(self.checkpoints.get(stack) or shipped_checkpoint(stack))
                digests[stack] = hashlib.sha256(path.read_bytes()).hexdigest()
        return digests

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (what `compare.json` records)."""
        return _jsonable(self._fields())

    def _fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # -- TOML --------------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def load_toml(cls, path: str | os.PathLike) -> dict[str, Any]:
        """The fields a TOML file sets, checked: only known keys, TOML types that fit,
        relative paths made absolute against the file's folder.

        Raises:
            ConfigError: missing or unreadable file, invalid TOML, an unknown key (naming
                the allowed keys) or a value of the wrong TOML type.
        """
        path = Path(path)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("--config", str(path), "no such file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError("--config", str(path), f"cannot be read ({error})") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError("--config", str(path), f"is not valid TOML ({error})") from None
        allowed = cls.field_names()
        values: dict[str, Any] = {}
        for key, value in document.items():
            if key not in allowed:
                raise ConfigError(f"{path}: key", key,
                                  "unknown key; allowed keys are " + ", ".join(allowed))
            _check_toml_type(path, key, value)
            values[key] = value
        base = path.resolve().parent
        if "latency" in values:
            values["latency"] = absolute_latencies(values["latency"], base)
        if isinstance(values.get("checkpoints"), dict):
            values["checkpoints"] = {stack: _absolute(p, base) if isinstance(p, str) else p
                                     for stack, p in values["checkpoints"].items()}
        if isinstance(values.get("out"), str):
            values["out"] = _absolute(values["out"], base)
        return values

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **overrides: Any) -> CompareConfig:
        """The config a TOML file describes (same keys as the fields), with `overrides`
        (e.g. the CLI's flags) taking precedence."""
        return cls(**{**cls.load_toml(path), **overrides})


_TOML_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "stacks": ((list,), "a list of stack names"),
    "scenarios": ((list,), "a list of scenario names"),
    "episodes": ((int,), "an integer"),
    "seed": ((int,), "an integer"),
    "modes": ((list,), "a list of modes (lockstep, realtime)"),
    "latency": ((str, dict), "a latency spec string or a [latency] table of STACK = SPEC"),
    "latency_scale": ((list,), "a list of factors"),
    "extra_latency_s": ((list,), "a list of seconds"),
    "execution": ((str, list), "an execution name or a list of them (sequential, "
                               "pipelined)"),
    "sweep_stacks": ((list,), "a list of the compared stacks"),
    "budget_s": ((int, float), "a number of seconds"),
    "envs": ((int,), "an integer"),
    "backend": ((str,), "a string"),
    "device": ((str,), "a string"),
    "perception": ((str,), "a string"),
    "tracker": ((str,), "a string"),
    "planner": ((str,), "a string"),
    "controller": ((str,), "a string"),
    "checkpoints": ((dict,), "a table of stack = \"PATH\""),
    "scenario_config": ((dict,), "a table of scenario config fields"),
    "sweep_lockstep": ((bool,), "true or false"),
    "executor": ((str,), "a string (local, ray)"),
    "address": ((str,), "a string HOST:PORT"),
    "ray_cpus": ((int,), "an integer"),
    "chunk_episodes": ((int,), "an integer"),
    "threads": ((int,), "an integer"),
    "video": ((int,), "an integer"),
    "bootstrap_resamples": ((int,), "an integer"),
    "out": ((str,), "a folder path"),
}


def _check_toml_type(path: Path, key: str, value: object) -> None:
    types, what = _TOML_TYPES[key]
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        raise ConfigError(f"{path}: {key}", value, f"must be {what}")


def _setter(instance: object):
    """A setter for the fields of a frozen dataclass being validated."""
    def set_(name: str, value: Any) -> None:
        object.__setattr__(instance, name, value)
    return set_


def _jsonable(value: Any) -> Any:
    """Tuples as lists, mappings as dicts: the form a JSON round trip gives."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Cell:
    """One grid point: a stack on a scenario in a mode and execution at a latency scale and
    extra latency.

    Attributes:
        stack, scenario, mode, execution: as in `RunConfig`.
        extra_latency_s: the extra delay on top of the stack's own latency [s].
        run: the cell's run: the compare's settings, this cell's stack, scenario and mode,
            and the latency spec with the scale and extra delay appended
            (`envs.latency.with_scale`, `with_extra`): `own*K+EXTRA`.
        latency_scale: the factor `K` of the stack's own latency.
    """

    stack: str
    scenario: str
    mode: str
    extra_latency_s: float
    run: RunConfig
    latency_scale: float = 1.0
    execution: str = "sequential"

    @property
    def name(self) -> str:
        """The cell's folder under `OUT/cells/`: `STACK/SCENARIO/MODE+EXTRAs`, with
        `-pipelined` after the mode when pipelined and then `-xK` when the latency is
        scaled (`realtime-pipelined-x2.0+0.1s`); sequential cells keep the names they had
        before the execution axis."""
        execution = "" if self.execution == "sequential" else f"-{self.execution}"
        scale = "" if self.latency_scale == 1.0 else f"-x{self.latency_scale!r}"
        return (f"{self.stack}/{self.scenario}/{self.mode}{execution}{scale}"
                f"+{self.extra_latency_s!r}s")

    @property
    def key(self) -> tuple[str, str, str, str, float, float]:
        """`(stack, scenario, mode, execution, extra_latency_s, latency_scale)`: the
        summary's group (`compare.summary.GROUP`)."""
        return (self.stack, self.scenario, self.mode, self.execution, self.extra_latency_s,
                self.latency_scale)
