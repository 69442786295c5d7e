"""The latency profile file: per-stage latencies recorded tick by tick on real hardware.

`LatencyProfile` is the validated in-memory profile, `load_profile` / `save_profile` read
and write its JSON file (format: docs/latency-profile.md). `ProfileLatency` (`models`)
replays one.
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
from reflexdrive.envs.latency.errors import (
    MAX_LATENCY_S,
    MISSING,
    SECONDS_ALLOWED,
    ProfileError,
    check_seconds,
    check_total_alone,
    stage_field,
)

from reflexdrive.common.files import atomic_write_text
from reflexdrive.common.validation import ConfigError

PROFILE_FORMAT = "reflexdrive.latency-profile"
"""Value of the `format` field of a profile file."""

PROFILE_VERSION = 1
"""The profile file version this module reads and writes."""

_PROFILE_FIELDS = ("format", "version", "stack", "device", "batch_size", "created", "meta",
                   "stages")
_REQUIRED_FIELDS = tuple(name for name in _PROFILE_FIELDS if name != "meta")


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
            where = stage_field(name)
            if isinstance(samples, (str, bytes)) or not isinstance(samples, (Sequence, np.ndarray)):
                raise fail(where, samples, "must be a list of seconds")
            if len(samples) == 0:
                raise fail(where, list(samples), "must be a non-empty list of seconds")
            clean = []
            for index, value in enumerate(samples):
                if type(value) is float or type(value) is int:  # fast path (JSON numbers)
                    ok = 0.0 <= value < MAX_LATENCY_S  # False for NaN
                else:
                    ok = check_seconds(value) is None
                if not ok:
                    raise fail(f"{where}[{index}]", value, SECONDS_ALLOWED)
                clean.append(float(value))
            if rows is None:
                rows, first = len(clean), name
            elif len(clean) != rows:
                raise fail(where, list(samples),
                           f"must have as many samples as {stage_field(first)} ({rows}): "
                           "rows are ticks, recorded for all stages together")
            stages[name] = tuple(clean)
        check_total_alone(list(stages), lambda why: fail("stages", list(stages), why))
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

    fmt = document.get("format", MISSING)
    if fmt != PROFILE_FORMAT:
        raise ProfileError(path, "format", fmt, f"must be {PROFILE_FORMAT!r}")
    version = document.get("version", MISSING)
    if type(version) is not int or version != PROFILE_VERSION:
        raise ProfileError(path, "version", version, f"must be {PROFILE_VERSION}")
    for name in document:
        if name not in _PROFILE_FIELDS:
            raise ProfileError(path, name, document[name],
                               "unknown field; allowed fields are " + ", ".join(_PROFILE_FIELDS)
                               + " (put extras in 'meta')")
    for name in _REQUIRED_FIELDS:
        if name not in document:
            raise ProfileError(path, name, MISSING, "required field of a latency profile")
    stages = document["stages"]
    if not isinstance(stages, dict):
        raise ProfileError(path, "stages", stages,
                           "must be a non-empty object mapping stage names to lists of seconds")
    for name, samples in stages.items():
        if not isinstance(samples, list):
            raise ProfileError(path, stage_field(name), samples, "must be a list of seconds")
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
