"""Latency models: how long the agent's compute took at each tick, per stage [s].

The clock (see docs/ARCHITECTURE.md, "One tick, precisely") charges every decision its
compute time `L_k`: in realtime mode the world keeps moving for `L_k` seconds before the
new command lands. This module says where `L_k` comes from. A model is built from the
`ClockConfig.latency` spec string by `parse_latency`:

- `fixed:SECONDS` or `fixed:STAGE=SECONDS,...` -> `FixedLatency`: constants. Deterministic;
  for tests and what-if studies ("what if planning took 40 ms?").
- `profile:PATH` -> `ProfileLatency`: per-stage latencies replayed from a profile file
  recorded on real hardware at batch size 1 (format: docs/latency-profile.md). Each
  decision draws one recorded tick (row) uniformly with a generator seeded at every env
  reset, and returns all stages of that row together, so the correlation between stages
  is kept. Large batched simulations thus replay a car computer's latency
  deterministically.
- `measured` -> `MeasuredLatency`: the wall clock. Either the runner times the agent's
  stages itself and passes them to `sample(reported)`, or the model measures the time
  from handing out the observation to the decision (CUDA-synchronised when torch has
  initialised CUDA). Right for batch size 1 on the target machine; noisy.
- any of them `+SECONDS` (`measured+0.1`, `fixed:0.03+0.05`, `profile:p.json+0.2`) ->
  `ShiftedLatency`: the base model's stages plus one more, "extra", a constant delay of
  SECONDS added once to every decision (the latency cost curve of `reflexdrive compare
  --extra-latency`: a slower computer, a network hop, an actuator delay). It is part of
  `L_k` like any stage: it delays the command's landing, counts against the budget and
  can drop frames. Only one suffix, in [0, 60) s; the last `+NUMBER` of the spec is the
  suffix (an exponent's `e+1` is not), so a profile path may contain `+` elsewhere.

Every model returns a fresh `dict` stage -> seconds from `sample()`; the decision's total
latency is the sum of the values. A model without stages uses the single stage "total";
"total" is therefore reserved and cannot be combined with other stage names in a spec, a
profile or reported timings ("extra" is appended after them, beside "total" too, and is
reserved in the same places when a suffix is given).

Errors: a bad spec raises `LatencySpecError` (field "latency"), a bad profile file raises
`ProfileError` naming the file, the JSON field and what is allowed. Both subclass
`envs.errors.ConfigError` and have one-line messages, so the CLI can print them as is.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from reflexdrive.common.files import atomic_write_text
from reflexdrive.common.validation import ConfigError

__all__ = [
    "ALLOWED_FORMS",
    "EXTRA_STAGE",
    "MAX_LATENCY_S",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "TOTAL_STAGE",
    "FixedLatency",
    "LatencyModel",
    "LatencyProfile",
    "LatencySpecError",
    "MeasuredLatency",
    "ProfileError",
    "ProfileLatency",
    "ShiftedLatency",
    "load_profile",
    "parse_latency",
    "save_profile",
    "split_extra",
    "unshifted",
    "with_extra",
]

MAX_LATENCY_S = 60.0
"""Exclusive upper bound on one stage's latency in a fixed spec or a profile [s].

Catches unit mistakes (milliseconds written as seconds); no real tick takes a minute.
"""

TOTAL_STAGE = "total"
"""Stage name used when a latency is not split into stages."""

EXTRA_STAGE = "extra"
"""Stage name of the constant delay a `+SECONDS` spec suffix adds (`ShiftedLatency`)."""

PROFILE_FORMAT = "reflexdrive.latency-profile"
"""Value of the `format` field of a profile file."""

PROFILE_VERSION = 1
"""The profile file version this module reads and writes."""

ALLOWED_FORMS = ("fixed:SECONDS, fixed:STAGE=SECONDS,..., profile:PATH, measured, "
                 "each optionally +SECONDS (an extra delay)")
"""The latency spec forms, as named in error messages."""

_SECONDS_ALLOWED = f"must be a finite number of seconds in [0, {MAX_LATENCY_S:g})"
_STAGE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# the last `+NUMBER` of a spec, unless the `+` is an exponent's sign (`1e+1`)
_EXTRA_RE = re.compile(r"(?P<base>.*?)(?<![0-9.][eE])\+\s*"
                       r"(?P<extra>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*\Z",
                       re.DOTALL)
_PROFILE_FIELDS = ("format", "version", "stack", "device", "batch_size", "created", "meta",
                   "stages")
_REQUIRED_FIELDS = tuple(name for name in _PROFILE_FIELDS if name != "meta")


# --------------------------------------------------------------------------- errors


class LatencySpecError(ConfigError):
    """A latency spec string is malformed or out of range (field "latency").

    Attributes (besides ConfigError's `field`, `value`, `allowed`):
        problem: what is wrong, without the list of allowed forms.
    """

    def __init__(self, spec: object, problem: str):
        self.problem = problem
        super().__init__("latency", spec, f"{problem}; allowed forms: {ALLOWED_FORMS}")


_MISSING = object()


class ProfileError(ConfigError):
    """A latency profile (file or `LatencyProfile`) is unreadable or invalid.

    The message reads `profile PATH: field 'stages.perception[3]' is -0.1: must be ...`:
    one line naming the file, the JSON field, the offending value and what is allowed.

    Attributes (besides ConfigError's `field`, `value`, `allowed`):
        path: the profile file, or None for an in-memory `LatencyProfile`.
    """

    def __init__(self, path: str | os.PathLike | None, field: str, value: object,
                 allowed: str):
        self.path = None if path is None else str(path)
        self.field = field
        self.value = value
        self.allowed = allowed
        where = "latency profile" if path is None else f"profile {_one_line(str(path))}"
        if field.startswith("<"):  # file-level problem: "<file>" or "<json>"
            message = f"{where}: {_one_line(str(value))}: {allowed}"
        elif value is _MISSING:
            message = f"{where}: field {field!r} is missing: {allowed}"
        else:
            message = f"{where}: field {field!r} is {_brief(value)}: {allowed}"
        ValueError.__init__(self, message)

    def _at(self, path: str | os.PathLike) -> ProfileError:
        """The same error, naming `path` as the file."""
        return ProfileError(path, self.field, self.value, self.allowed)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _brief(value: object, limit: int = 60) -> str:
    """A short one-line repr of `value` for error messages."""
    if isinstance(value, (list, tuple)) and len(value) > 4:
        text = f"a list of {len(value)} items"
    elif isinstance(value, dict) and len(value) > 4:
        text = f"an object with {len(value)} fields"
    else:
        text = repr(value)
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class LatencyModel(Protocol):
    """Says how long the agent's compute took for each decision, per stage [s].

    Attributes:
        spec: the spec string the model was built from, e.g. "fixed:0.03".
        deterministic: True when the latencies do not depend on the machine (fixed,
            profile); a seeded `reset` then gives the same sequence every run.
    """

    spec: str
    deterministic: bool

    def reset(self, seed: int | None) -> None:
        """Start an episode; called at every env reset. Profile sampling is reseeded here."""
        ...

    def sample(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """Per-stage latencies [s] of the decision being made now; total = sum of values.

        Args:
            reported: per-stage latencies [s] the runner measured itself; used by
                `measured`, ignored by the other models.
        """
        ...

    def mark_observation_returned(self) -> None:
        """Note that the env has just handed an observation to the agent."""
        ...


# --------------------------------------------------------------------------- helpers


def _check_seconds(value: object) -> str | None:
    """Why `value` is not a latency in [0, MAX_LATENCY_S) seconds, or None if it is."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return "is not a number"
    number = float(value)
    if not math.isfinite(number):
        return "is not finite"
    if number < 0.0:
        return "is negative"
    if number >= MAX_LATENCY_S:
        return f"is not below {MAX_LATENCY_S:g} s"
    return None


def _stage_field(name: str) -> str:
    return f"stages.{name}" if _STAGE_NAME_RE.match(name) else f"stages[{name!r}]"


def _check_total_alone(names: Sequence[str], fail: Callable[[str], Exception]) -> None:
    if TOTAL_STAGE in names and len(names) > 1:
        raise fail(f"stage name {TOTAL_STAGE!r} is reserved for an undivided latency and "
                   "cannot be combined with other stages")


# --------------------------------------------------------------------------- fixed


class FixedLatency:
    """Constant per-stage latencies [s]; `fixed:SECONDS` uses the single stage "total".

    Attributes:
        spec: the spec string it was built from.
        deterministic: True.
        latencies: read-only stage -> seconds.
    """

    deterministic = True

    def __init__(self, latencies: Mapping[str, float], spec: str | None = None):
        """Args:
            latencies: stage -> seconds, each finite and in [0, 60).
            spec: the spec string; built from `latencies` when None.
        """
        shown = spec if spec is not None else dict(latencies)
        if not latencies:
            raise LatencySpecError(shown, "no stages given")
        clean: dict[str, float] = {}
        for name, value in latencies.items():
            if not isinstance(name, str) or not _STAGE_NAME_RE.match(name):
                raise LatencySpecError(shown, f"stage name {name!r} must be an identifier "
                                       "(letters, digits, underscores)")
            problem = _check_seconds(value)
            if problem:
                raise LatencySpecError(shown, f"latency of stage {name!r} = {value!r} {problem} "
                                       f"({_SECONDS_ALLOWED})")
            clean[name] = float(value)
        _check_total_alone(list(clean), lambda why: LatencySpecError(shown, why))
        if spec is None:
            spec = "fixed:" + ",".join(f"{k}={v!r}" for k, v in clean.items())
        self.spec = spec
        self.latencies: Mapping[str, float] = MappingProxyType(clean)

    def reset(self, seed: int | None) -> None:
        """Nothing to reset: the latencies are constants."""

    def sample(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """The constant per-stage latencies [s] (`reported` is ignored)."""
        return dict(self.latencies)

    def mark_observation_returned(self) -> None:
        """Nothing to note: the latencies are constants."""

    def __repr__(self) -> str:
        return f"FixedLatency({dict(self.latencies)!r})"


def _parse_fixed(spec: str, body: str) -> FixedLatency:
    body = body.strip()
    if not body:
        raise LatencySpecError(spec, "'fixed:' needs a number of seconds or STAGE=SECONDS pairs")

    def seconds(text: str, what: str) -> float:
        text = text.strip()
        if not text:
            raise LatencySpecError(spec, f"{what} is empty: give a number of seconds")
        try:
            if "_" in text:
                raise ValueError(text)
            value = float(text)
        except ValueError:
            raise LatencySpecError(spec, f"{what} {text!r} is not a number of seconds") from None
        problem = _check_seconds(value)
        if problem:
            raise LatencySpecError(spec, f"{what} {text!r} {problem} ({_SECONDS_ALLOWED})")
        return value

    if "=" not in body:
        if "," in body:
            raise LatencySpecError(spec, "several values need stage names: "
                                   "fixed:STAGE=SECONDS,...")
        return FixedLatency({TOTAL_STAGE: seconds(body, "latency")}, spec)
    latencies: dict[str, float] = {}
    for item in body.split(","):
        if not item.strip():
            raise LatencySpecError(spec, "empty STAGE=SECONDS item (stray comma?)")
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq:
            raise LatencySpecError(spec, f"item {item.strip()!r} is not STAGE=SECONDS")
        if not _STAGE_NAME_RE.match(name):
            raise LatencySpecError(spec, f"stage name {name!r} must be an identifier "
                                   "(letters, digits, underscores)")
        if name in latencies:
            raise LatencySpecError(spec, f"stage {name!r} is given twice")
        latencies[name] = seconds(value, f"latency of stage {name!r}")
    return FixedLatency(latencies, spec)


# --------------------------------------------------------------------------- profile


@dataclass(frozen=True)
class LatencyProfile:
    """Per-stage latencies recorded tick by tick on real hardware [s].

    Row `i` of every stage is the same recorded tick, so stages are sampled jointly.
    Validated on construction (raises `ProfileError`); the mappings are made read-only
    and the samples tuples of floats.

    Attributes:
        stack: the stack that was profiled, e.g. "staged".
        device: the machine, e.g. "cpu: AMD EPYC 7B13" or "cuda: NVIDIA H100".
        batch_size: batch size the stack ran at (1 for a car's computer).
        stages: stage -> samples [s], one per recorded tick, all the same length.
        created: when the profile was recorded, ISO 8601 UTC, e.g. "2026-11-23T12:00:00Z".
        meta: free-form JSON-serialisable extras (versions, settings, ...).
    """

    stack: str
    device: str
    batch_size: int
    stages: Mapping[str, tuple[float, ...]]
    created: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def fail(name: str, value: object, allowed: str) -> ProfileError:
            return ProfileError(None, name, value, allowed)

        for name in ("stack", "device"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise fail(name, value, "must be a non-empty string")
        if not isinstance(self.created, str):
            raise fail("created", self.created,
                       "must be a string, an ISO 8601 UTC time like '2026-11-23T12:00:00Z'")
        if (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, numbers.Integral)
                or self.batch_size < 1):
            raise fail("batch_size", self.batch_size, "must be an integer >= 1")
        object.__setattr__(self, "batch_size", int(self.batch_size))
        if not isinstance(self.meta, Mapping):
            raise fail("meta", self.meta, "must be an object (a mapping)")
        meta = dict(self.meta)
        try:
            json.dumps(meta, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise fail("meta", meta, f"must be JSON-serialisable ({error})") from None
        object.__setattr__(self, "meta", MappingProxyType(meta))

        if not isinstance(self.stages, Mapping) or not self.stages:
            raise fail("stages", self.stages,
                       "must be a non-empty object mapping stage names to lists of seconds")
        stages: dict[str, tuple[float, ...]] = {}
        rows: int | None = None
        first = ""
        for name, samples in self.stages.items():
            if not isinstance(name, str) or not name:
                raise fail("stages", name, "stage names must be non-empty strings")
            where = _stage_field(name)
            if isinstance(samples, (str, bytes)) or not isinstance(samples, (Sequence, np.ndarray)):
                raise fail(where, samples, "must be a list of seconds")
            if len(samples) == 0:
                raise fail(where, list(samples), "must be a non-empty list of seconds")
            clean = []
            for index, value in enumerate(samples):
                if type(value) is float or type(value) is int:  # fast path (JSON numbers)
                    ok = 0.0 <= value < MAX_LATENCY_S  # False for NaN
                else:
                    ok = _check_seconds(value) is None
                if not ok:
                    raise fail(f"{where}[{index}]", value, _SECONDS_ALLOWED)
                clean.append(float(value))
            if rows is None:
                rows, first = len(clean), name
            elif len(clean) != rows:
                raise fail(where, list(samples),
                           f"must have as many samples as {_stage_field(first)} ({rows}): "
                           "rows are ticks, recorded for all stages together")
            stages[name] = tuple(clean)
        _check_total_alone(list(stages), lambda why: fail("stages", list(stages), why))
        object.__setattr__(self, "stages", MappingProxyType(stages))

    @property
    def rows(self) -> int:
        """Number of recorded ticks."""
        return len(next(iter(self.stages.values())))

    def as_array(self) -> np.ndarray:
        """`(rows, stages)` float64 array of the samples [s], columns in `stages` order."""
        return np.array(list(self.stages.values()), dtype=np.float64).T.copy()

    def percentiles(self, q: float) -> dict[str, float]:
        """The `q`-th percentile (0..100, linear interpolation) of each stage [s]."""
        if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0 <= q <= 100:
            raise ConfigError("q", q, "must be a percentile in [0, 100]")
        values = np.percentile(self.as_array(), float(q), axis=0)
        return {name: float(v) for name, v in zip(self.stages, values)}

    def summary(self) -> dict[str, Any]:
        """p50, p99, mean and max per stage and of the per-tick total [s].

        Returns:
            `{"rows": n, "stages": {stage: {"p50", "p99", "mean", "max"}}, "total": {...}}`;
            "total" is computed from each recorded tick's sum over stages.
        """
        array = self.as_array()

        def stats(column: np.ndarray) -> dict[str, float]:
            return {"p50": float(np.percentile(column, 50)),
                    "p99": float(np.percentile(column, 99)),
                    "mean": float(column.mean()), "max": float(column.max())}

        return {"rows": int(array.shape[0]),
                "stages": {name: stats(array[:, j]) for j, name in enumerate(self.stages)},
                "total": stats(array.sum(axis=1))}


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def load_profile(path: str | os.PathLike) -> LatencyProfile:
    """Read and validate a latency profile file (format: docs/latency-profile.md).

    Raises:
        ProfileError: the file is missing or unreadable, not JSON (or truncated), or a
            field is missing or invalid; the message names the file and the field.
    """
    path = Path(path)
    readable = f"must be a readable {PROFILE_FORMAT} JSON file"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ProfileError(path, "<file>", "file not found", readable) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ProfileError(path, "<file>", f"cannot read file ({reason})", readable) from None
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicate_keys)
    except UnicodeDecodeError:
        raise ProfileError(path, "<json>", "not UTF-8 text", readable) from None
    except ValueError as error:  # json.JSONDecodeError, duplicate keys
        detail = str(error) if raw.strip() else "empty file"
        raise ProfileError(path, "<json>", f"not valid JSON ({detail})", readable) from None
    if not isinstance(document, dict):
        raise ProfileError(path, "<json>", f"top level is {type(document).__name__}",
                           f"must be a JSON object with \"format\": {PROFILE_FORMAT!r}")

    fmt = document.get("format", _MISSING)
    if fmt != PROFILE_FORMAT:
        raise ProfileError(path, "format", fmt, f"must be {PROFILE_FORMAT!r}")
    version = document.get("version", _MISSING)
    if type(version) is not int or version != PROFILE_VERSION:
        raise ProfileError(path, "version", version, f"must be {PROFILE_VERSION}")
    for name in document:
        if name not in _PROFILE_FIELDS:
            raise ProfileError(path, name, document[name],
                               "unknown field; allowed fields are " + ", ".join(_PROFILE_FIELDS)
                               + " (put extras in 'meta')")
    for name in _REQUIRED_FIELDS:
        if name not in document:
            raise ProfileError(path, name, _MISSING, "required field of a latency profile")
    stages = document["stages"]
    if not isinstance(stages, dict):
        raise ProfileError(path, "stages", stages,
                           "must be a non-empty object mapping stage names to lists of seconds")
    for name, samples in stages.items():
        if not isinstance(samples, list):
            raise ProfileError(path, _stage_field(name), samples, "must be a list of seconds")
    meta = document.get("meta", {})
    if not isinstance(meta, dict):
        raise ProfileError(path, "meta", meta, "must be a JSON object")
    try:
        return LatencyProfile(stack=document["stack"], device=document["device"],
                              batch_size=document["batch_size"], stages=stages,
                              created=document["created"], meta=meta)
    except ProfileError as error:
        raise error._at(path) from None


def _profile_document(profile: LatencyProfile) -> str:
    """JSON text of `profile`: header fields first, then one line per stage."""
    header = {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, "stack": profile.stack,
              "device": profile.device, "batch_size": profile.batch_size,
              "created": profile.created, "meta": dict(profile.meta)}
    lines = [f"  {json.dumps(key)}: {json.dumps(value, allow_nan=False)}"
             for key, value in header.items()]
    stage_lines = [f"    {json.dumps(name)}: {json.dumps(list(samples), allow_nan=False)}"
                   for name, samples in profile.stages.items()]
    lines.append('  "stages": {\n' + ",\n".join(stage_lines) + "\n  }")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def save_profile(profile: LatencyProfile, path: str | os.PathLike) -> None:
    """Write `profile` to `path` as JSON, atomically.

    Readers see either the old file or the whole new one, never a truncated file
    (`reflexdrive.common.files.atomic_write`). The folder must exist.
    """
    if not isinstance(profile, LatencyProfile):
        raise TypeError(f"save_profile needs a LatencyProfile, got {type(profile).__name__}")
    atomic_write_text(path, _profile_document(profile))


class ProfileLatency:
    """Per-stage latencies [s] replayed from a recorded profile, seeded.

    Each `sample()` draws one recorded tick (row) uniformly at random and returns every
    stage's latency at that row, keeping the correlation between stages. `reset(seed)`
    reseeds the generator with `np.random.default_rng(seed)`: the same seed gives the same
    sequence. Before the first reset the generator is seeded with 0.

    Attributes:
        spec: the spec string it was built from.
        deterministic: True.
        path: the resolved profile file.
        profile: the validated `LatencyProfile`.
    """

    deterministic = True

    def __init__(self, path: str | os.PathLike, spec: str | None = None):
        """Load and validate the profile at `path` (raises `ProfileError`)."""
        self.path = Path(path)
        self.spec = f"profile:{path}" if spec is None else spec
        self.profile = load_profile(self.path)
        self._names = tuple(self.profile.stages)
        self._table = self.profile.as_array()
        self._rng = np.random.default_rng(0)

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The profile's stages, in the column order of `table`."""
        return self._names

    @property
    def table(self) -> np.ndarray:
        """`(rows, stages)` recorded latencies [s]; one row per recorded tick (read only)."""
        return self._table

    def reset(self, seed: int | None) -> None:
        """Reseed the row sampler with `np.random.default_rng(seed)`."""
        self._rng = np.random.default_rng(seed)

    def sample(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """One recorded tick's per-stage latencies [s] (`reported` is ignored)."""
        row = self._table[int(self._rng.integers(self._table.shape[0]))]
        return {name: float(value) for name, value in zip(self._names, row)}

    def mark_observation_returned(self) -> None:
        """Nothing to note: latencies come from the profile."""

    def __repr__(self) -> str:
        return f"ProfileLatency({str(self.path)!r}, rows={self._table.shape[0]})"


# --------------------------------------------------------------------------- measured


class MeasuredLatency:
    """Wall-clock latencies [s] of the agent actually computing.

    `sample(reported)` returns the runner's own per-stage timings when it passes them
    (validated: finite, >= 0). Otherwise it returns {"total": seconds since the last
    `mark_observation_returned()`}, read with `time.perf_counter_ns` after a
    `torch.cuda.synchronize()` when torch is imported and has initialised CUDA (so GPU
    work the agent launched is counted). Without a mark since the last reset it returns
    {"total": 0.0}. Torch is never imported by this class.

    Attributes:
        spec: "measured".
        deterministic: False.
    """

    deterministic = False

    def __init__(self, spec: str = "measured"):
        self.spec = spec
        self._mark_ns: int | None = None

    def reset(self, seed: int | None) -> None:
        """Forget the last mark (a new episode starts)."""
        self._mark_ns = None

    def mark_observation_returned(self) -> None:
        """Start timing: the agent has just been given an observation."""
        self._mark_ns = time.perf_counter_ns()

    def sample(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """The decision's per-stage latencies [s]: `reported` if non-empty, else the time
        since the last mark.

        Raises:
            ConfigError: a reported stage name is not a non-empty string or its value is
                not a finite number >= 0, or "total" is mixed with other stages.
        """
        if reported:
            return _validate_reported(reported)
        if self._mark_ns is None:
            return {TOTAL_STAGE: 0.0}
        synchronize_cuda()
        elapsed_ns = time.perf_counter_ns() - self._mark_ns
        return {TOTAL_STAGE: max(0, elapsed_ns) / 1e9}

    def __repr__(self) -> str:
        return "MeasuredLatency()"


def _validate_reported(reported: Mapping[str, float]) -> dict[str, float]:
    result: dict[str, float] = {}
    for name, value in reported.items():
        if not isinstance(name, str) or not name:
            raise ConfigError("reported latency stage", name, "must be a non-empty string")
        if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                or not math.isfinite(float(value)) or float(value) < 0.0):
            raise ConfigError(f"reported latency[{name}]", value,
                              "must be a finite number of seconds >= 0")
        result[name] = float(value)
    _check_total_alone(list(result), lambda why: ConfigError(
        "reported latency", dict(reported), why))
    return result


def synchronize_cuda() -> None:
    """Wait for queued CUDA work if torch is already imported and CUDA is initialised."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_available() and cuda.is_initialized():
        cuda.synchronize()


# --------------------------------------------------------------------------- shifted


class ShiftedLatency:
    """A base model's latencies plus a constant extra delay, the stage "extra" [s].

    Built from a spec with a `+SECONDS` suffix (`measured+0.1`, `fixed:0.03+0.05`,
    `profile:p.json+0.2`). `sample()` returns the base model's stages, then
    `{"extra": extra_s}`: the decision's total `L_k` grows by exactly `extra_s`, once per
    decision. Resets, marks and `reported` timings go to the base model.

    Attributes:
        spec: the whole spec string, suffix included.
        deterministic: the base model's.
        base: the base latency model.
        extra_s: the extra delay [s], in [0, 60).
    """

    def __init__(self, base: LatencyModel, extra_s: float, spec: str | None = None):
        shown = spec if spec is not None else f"{base.spec}+{extra_s!r}"
        if isinstance(base, ShiftedLatency):
            raise LatencySpecError(shown, "only one +SECONDS suffix is allowed")
        problem = _check_seconds(extra_s)
        if problem:
            raise LatencySpecError(shown, f"extra delay {extra_s!r} {problem} "
                                   f"({_SECONDS_ALLOWED})")
        names = (list(base.latencies) if isinstance(base, FixedLatency)
                 else list(base.stage_names) if isinstance(base, ProfileLatency) else [])
        if EXTRA_STAGE in names:
            raise LatencySpecError(shown, f"stage name {EXTRA_STAGE!r} is reserved for the "
                                   "+SECONDS extra delay")
        self.base = base
        self.extra_s = float(extra_s)
        self.spec = shown
        self.deterministic = base.deterministic

    def reset(self, seed: int | None) -> None:
        """Reset the base model."""
        self.base.reset(seed)

    def sample(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """The base model's per-stage latencies [s], then "extra".

        Raises:
            ConfigError: the base model's stages (e.g. `reported` ones) include "extra".
        """
        stages = self.base.sample(reported)
        if EXTRA_STAGE in stages:
            raise ConfigError("reported latency", dict(stages),
                              f"stage name {EXTRA_STAGE!r} is reserved for the +SECONDS "
                              "extra delay")
        stages[EXTRA_STAGE] = self.extra_s
        return stages

    def mark_observation_returned(self) -> None:
        """Pass the mark to the base model."""
        self.base.mark_observation_returned()

    def __repr__(self) -> str:
        return f"ShiftedLatency({self.base!r}, extra_s={self.extra_s!r})"


def split_extra(spec: str) -> tuple[str, float | None]:
    """`(base spec, extra seconds)` of a spec with a `+SECONDS` suffix, else `(spec, None)`.

    Only the syntax is read (the number is not range-checked): `"fixed:0.03+0.1"` ->
    `("fixed:0.03", 0.1)`, `"fixed:1e+1"` -> `("fixed:1e+1", None)`.
    """
    match = _EXTRA_RE.match(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        return spec, None
    return match.group("base").strip(), float(match.group("extra"))


def with_extra(spec: str, extra_s: float) -> str:
    """`spec` with the extra delay `extra_s` [s] appended (`spec` itself for 0):
    `with_extra("measured", 0.05) == "measured+0.05"`."""
    extra_s = float(extra_s)
    return spec if extra_s == 0.0 else f"{spec.strip()}+{extra_s!r}"


def unshifted(model: LatencyModel) -> tuple[LatencyModel, float | None]:
    """`(base model, extra seconds)` of a `ShiftedLatency`, else `(model, None)`."""
    if isinstance(model, ShiftedLatency):
        return model.base, model.extra_s
    return model, None


# --------------------------------------------------------------------------- parsing


def parse_latency(spec: str, *, base_dir: str | os.PathLike | None = None) -> LatencyModel:
    """Build the latency model a `ClockConfig.latency` spec string names.

    Forms: `fixed:SECONDS`, `fixed:STAGE=SECONDS,...` (each in [0, 60) s, stage names are
    identifiers), `profile:PATH` (relative PATH resolved against `base_dir`, else the
    current directory; `~` is expanded) and `measured`; each may end in `+SECONDS`, an
    extra delay (`ShiftedLatency`). Whitespace around the spec and its parts is ignored.

    Raises:
        LatencySpecError: malformed spec, unknown scheme, or a value out of range.
        ProfileError: `profile:PATH` names a missing or invalid profile file.
    """
    if not isinstance(spec, str):
        raise LatencySpecError(spec, "must be a spec string")
    text = spec.strip()
    if not text:
        raise LatencySpecError(spec, "empty spec")
    base, extra = split_extra(text)
    if extra is not None:
        if not base:
            raise LatencySpecError(spec, "+SECONDS needs a latency model before it, "
                                   "e.g. measured+0.1")
        if split_extra(base)[1] is not None:
            raise LatencySpecError(spec, "only one +SECONDS suffix is allowed")
        try:
            model = parse_latency(base, base_dir=base_dir)
        except LatencySpecError as error:
            raise LatencySpecError(spec, error.problem) from None
        return ShiftedLatency(model, extra, spec)
    scheme, colon, body = text.partition(":")
    scheme = scheme.strip()
    if scheme == "fixed":
        if not colon:
            raise LatencySpecError(spec, "'fixed' needs ':SECONDS' or ':STAGE=SECONDS,...'")
        return _parse_fixed(spec, body)
    if scheme == "profile":
        body = body.strip()
        if not colon or not body:
            raise LatencySpecError(spec, "'profile' needs ':PATH' to a profile file")
        path = Path(body).expanduser()
        if not path.is_absolute():
            path = Path(base_dir if base_dir is not None else Path.cwd()) / path
        return ProfileLatency(path, spec)
    if scheme == "measured":
        if colon:
            raise LatencySpecError(spec, "'measured' takes no argument")
        return MeasuredLatency(spec)
    raise LatencySpecError(spec, f"unknown latency scheme {scheme!r}")
