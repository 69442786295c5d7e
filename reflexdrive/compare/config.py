"""Settings of `reflexdrive compare`: one frozen, validated dataclass, from flags or TOML.

`CompareConfig` describes a grid of runs: every stack on every scenario, in every mode, at
every extra latency, on the same seeds. Each grid point is a `Cell`, one
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
    ConfigError,
    boolean,
    choice,
    count,
    override,
    real,
    string,
    validate_fields,
)
from reflexdrive.envs.latency import parse_latency, split_extra, with_extra
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

DEMO_EPISODES = 4
"""Episodes per cell of `reflexdrive demo` (a small compare)."""
DEMO_EXTRA_LATENCY_S = (0.0, 0.1, 0.3)
"""Extra latencies [s] of `reflexdrive demo`."""
DEMO_OUT = "runs/demo"
"""Output folder of `reflexdrive demo`."""

BATCHED_ENVS = 8
"""Envs per run when `envs` is not given, latency not measured and the backend batched."""
HIGHWAY_ENVS = 2
"""Envs (worker processes) per run when `envs` is not given on the highway backend."""


def _names(field_name: str, value: object, choices: tuple[str, ...]) -> tuple[str, ...]:
    """`value` as a non-empty tuple of distinct names from `choices` (ConfigError otherwise)."""
    allowed = "allowed values are " + ", ".join(choices)
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(field_name, value, "must be a non-empty list of names; " + allowed)
    for item in value:
        if not isinstance(item, str) or item not in choices:
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


def _absolute(path: str, base_dir: str | os.PathLike | None) -> str:
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = Path(base_dir if base_dir is not None else os.getcwd()) / resolved
    return str(resolved.resolve())


def _absolute_latency(spec: str, base_dir: str | os.PathLike | None) -> str:
    """`spec` with a `profile:PATH`'s PATH made absolute (other specs unchanged)."""
    base, extra = split_extra(spec)
    scheme, colon, body = base.strip().partition(":")
    if scheme.strip() != "profile" or not colon or not body.strip():
        return spec
    absolute = "profile:" + _absolute(body.strip(), base_dir)
    return absolute if extra is None else f"{absolute}+{extra!r}"


@dataclass(frozen=True)
class CompareConfig:
    """One `reflexdrive compare`: which stacks, scenarios, modes and latencies, how run.

    Attributes:
        stacks: driving stacks compared (`agents.registry.STACKS`), on the same seeds.
        scenarios: scenarios (`reflexdrive scenarios`), usually the hazard ones.
        episodes: episodes per stack x scenario x mode x extra latency; episode `i` uses
            scenario seed `seed + i` in every cell, so results pair up across stacks.
        seed: first scenario seed.
        modes: "lockstep" (the world waits: the zero-latency baseline) and/or "realtime".
        latency: each stack's own latency model: "measured" (the wall clock around its
            batched `act` call, see `envs`), "fixed:..." or "profile:PATH"
            (`envs.latency`); without a `+SECONDS` suffix.
        extra_latency_s: extra delays [s] added on top of the stack's own latency, one
            cell each (the latency cost curve; `envs.latency.ShiftedLatency`). Sorted.
        budget_s: compute budget per tick [s]; None means one tick.
        execution: "sequential" or "pipelined" (each stage on its own processor), for
            every stack (`RunConfig.execution`).
        envs: envs run side by side in one cell, i.e. the batch size of the stack's
            `act` call. None: 1 with measured latency (so "measured" is the latency of
            one car's computer, batch size 1), else 8 on the batched backend and 2 on the
            highway one. The end-to-end stacks always decide for exactly `envs` rows
            (padded), so their results do not depend on how episodes are chunked.
        backend: world backend of every cell: "auto", "highway" or "batched".
        device: torch device of the batched backend and the networks: cpu, cuda, auto.
        perception: perception of the staged stack (`agents.registry.PERCEPTIONS`).
        controller: steering controller of the staged stack.
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
        threads: torch and numba CPU threads, here and in each Ray task (a car's
            computer gives the stack a core; extra intra-op threads on a shared machine
            only contend, and inflate measured latency many times). Raise it for batches
            of 256+ envs, whose env kernels run on numba's threads.
        video: MP4s of the first `video` episodes per stack (written by the report).
        bootstrap_resamples: bootstrap resamples of the summary's intervals.
        out: output folder (required to run; the CLI's `--out`).
    """

    stacks: tuple[str, ...] = DEFAULT_STACKS
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    episodes: int = count(20, help="episodes per cell; episode i uses seed+i")
    seed: int = override(RunConfig, "seed")
    modes: tuple[str, ...] = MODES
    latency: str = string("measured", help="each stack's own latency: measured (wall clock "
                                           "of the batched act call), fixed:SECONDS, "
                                           "fixed:STAGE=SECONDS,..., profile:PATH")
    extra_latency_s: tuple[float, ...] = DEFAULT_EXTRA_LATENCY_S
    execution: str = override(RunConfig, "execution")
    budget_s: float | None = real(0.1, low=0.0, high=60.0, low_inclusive=False,
                                  high_inclusive=False, optional=True,
                                  message="must be a finite number of seconds in (0, 60)",
                                  help="compute budget per tick [s]")
    envs: int | None = count(None, optional=True,
                             help="envs per cell = batch size of the stack's act call")
    backend: str = override(RunConfig, "backend")
    device: str = override(RunConfig, "device")
    perception: str = override(RunConfig, "perception")
    controller: str = override(RunConfig, "controller")
    checkpoints: Mapping[str, str] = field(default_factory=dict)
    scenario_config: Mapping[str, Any] = field(default_factory=dict)
    sweep_lockstep: bool = boolean(False, help="run lockstep at every extra latency too")
    executor: str = choice("local", choices=EXECUTORS,
                           help="local (this process) or ray (Ray tasks)")
    address: str | None = None
    ray_cpus: int | None = count(None, optional=True, help="CPUs of the local Ray instance")
    chunk_episodes: int | None = count(None, optional=True, help="episodes per Ray task")
    threads: int = count(1, help="torch CPU threads of the stacks (a car's computer gives "
                                 "the stack a core; more only contend on a shared machine)")
    video: int = count(0, low=0, help="MP4s of the first K episodes per stack (for the "
                                      "report)")
    bootstrap_resamples: int = count(2000, low=100,
                                     help="bootstrap resamples of the summary's intervals")
    out: str | None = None

    def __post_init__(self) -> None:
        from reflexdrive.agents.registry import END_TO_END_STACKS, STACKS
        from reflexdrive.envs.scenarios import SCENARIOS

        validate_fields(self)
        set_ = _setter(self)
        set_("stacks", _names("stacks", self.stacks, tuple(STACKS)))
        set_("scenarios", _names("scenarios", self.scenarios, tuple(SCENARIOS)))
        set_("modes", _names("modes", self.modes, MODES))
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

        if split_extra(self.latency)[1] is not None:
            raise ConfigError("latency", self.latency, "give the stack's own latency without "
                              "a +SECONDS suffix; extra delays go in extra_latency_s "
                              "(--extra-latency)")
        set_("latency", _absolute_latency(self.latency.strip(), None))
        parse_latency(self.latency)                  # malformed spec or bad profile file

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
        self.cells()                                 # every cell's RunConfig validates itself

    def _check_shipped(self, end_to_end: tuple[str, ...]) -> None:
        from reflexdrive.policies.registry import shipped_checkpoint

        for stack in self.stacks:
            if stack in end_to_end and stack not in self.checkpoints:
                path = shipped_checkpoint(stack)
                if not path.is_file():
                    raise ConfigError(
                        "checkpoints", stack,
                        f"the shipped {stack} checkpoint {path} is missing: train it "
                        f"(reflexdrive train --policy {stack}) or pass --checkpoint "
                        f"{stack}=PATH")

    # -- the grid ----------------------------------------------------------------------

    def envs_for(self, scenario: str) -> int:
        """Envs (batch size) of the cells of `scenario` (see `envs`)."""
        if self.envs is not None:
            return self.envs
        if self.latency.strip() == "measured":
            return 1
        from reflexdrive.envs.gym.vector import batched_scenarios

        batched = self.backend == "batched" or (self.backend == "auto"
                                                 and scenario in batched_scenarios())
        return BATCHED_ENVS if batched else HIGHWAY_ENVS

    def cells(self) -> list[Cell]:
        """The grid, stacks x scenarios x modes x extra latencies, in that order (lockstep
        only at extra 0 unless `sweep_lockstep`)."""
        from reflexdrive.agents.registry import REFERENCE_STACKS

        cells = []
        for stack in self.stacks:
            for scenario in self.scenarios:
                for mode in self.modes:
                    extras = (self.extra_latency_s if mode == "realtime" or self.sweep_lockstep
                              else (0.0,))
                    if stack in REFERENCE_STACKS:      # behaviour, not compute: no latency
                        extras = (0.0,)
                    cells.extend(Cell(stack, scenario, mode, extra,
                                      self._run_config(stack, scenario, mode, extra))
                                 for extra in extras)
        return cells

    def _run_config(self, stack: str, scenario: str, mode: str, extra_s: float) -> RunConfig:
        from reflexdrive.agents.registry import END_TO_END_STACKS, REFERENCE_STACKS

        checkpoint = self.checkpoints.get(stack) if stack in END_TO_END_STACKS else None
        latency = "fixed:0" if stack in REFERENCE_STACKS else with_extra(self.latency, extra_s)
        return RunConfig(
            scenario=scenario, stack=stack, episodes=self.episodes, seed=self.seed, mode=mode,
            latency=latency, budget_s=self.budget_s, execution=self.execution,
            envs=self.envs_for(scenario), perception=self.perception,
            controller=self.controller, backend=self.backend, device=self.device,
            checkpoint=checkpoint, scenario_config=dict(self.scenario_config))

    @property
    def total_episodes(self) -> int:
        return self.episodes * len(self.cells())

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
        if identity["execution"] == "sequential":   # compares from before the field resume
            identity.pop("execution")
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
        if isinstance(values.get("latency"), str):
            values["latency"] = _absolute_latency(values["latency"], base)
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
    "latency": ((str,), "a latency spec string"),
    "extra_latency_s": ((list,), "a list of seconds"),
    "budget_s": ((int, float), "a number of seconds"),
    "envs": ((int,), "an integer"),
    "backend": ((str,), "a string"),
    "device": ((str,), "a string"),
    "perception": ((str,), "a string"),
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
    """One grid point: a stack on a scenario in a mode at an extra latency.

    Attributes:
        stack, scenario, mode: as in `RunConfig`.
        extra_latency_s: the extra delay on top of the stack's own latency [s].
        run: the cell's run: the compare's settings, this cell's stack, scenario and mode,
            and the latency spec with the extra delay appended (`envs.latency.with_extra`).
    """

    stack: str
    scenario: str
    mode: str
    extra_latency_s: float
    run: RunConfig

    @property
    def name(self) -> str:
        """The cell's folder under `OUT/cells/`: `STACK/SCENARIO/MODE+EXTRAs`."""
        return f"{self.stack}/{self.scenario}/{self.mode}+{self.extra_latency_s!r}s"

    @property
    def key(self) -> tuple[str, str, str, float]:
        """`(stack, scenario, mode, extra_latency_s)`: the summary's group."""
        return (self.stack, self.scenario, self.mode, self.extra_latency_s)
