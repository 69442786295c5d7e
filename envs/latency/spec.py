"""Latency spec strings: `ClockConfig.latency` -> a latency model (`parse_latency`).

Forms, each naming one model of `models`:

- `fixed:SECONDS` or `fixed:STAGE=SECONDS,...` -> `FixedLatency`;
- `profile:PATH` -> `ProfileLatency` (the file format: docs/latency-profile.md);
- `measured` -> `MeasuredLatency`;
- any of them `+SECONDS` (`measured+0.1`, `fixed:0.03+0.05`, `profile:p.json+0.2`) ->
  `ShiftedLatency`: the base model plus a constant extra delay of SECONDS, the stage
  "extra" (the latency cost curve of `reflexdrive compare --extra-latency`: a slower
  computer, a network hop, an actuator delay). Only one suffix, in [0, 60) s; the last
  `+NUMBER` of the spec is the suffix (an exponent's `e+1` is not), so a profile path may
  contain `+` elsewhere.

A bad spec raises `LatencySpecError` (field "latency"), a bad profile file `ProfileError`;
both are one-line `ConfigError`s (`errors`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from reflexdrive.envs.latency.errors import (
    SECONDS_ALLOWED,
    STAGE_NAME_RE,
    TOTAL_STAGE,
    LatencySpecError,
    check_seconds,
)
from reflexdrive.envs.latency.models import (
    FixedLatency,
    LatencyModel,
    MeasuredLatency,
    ProfileLatency,
    ShiftedLatency,
)

# --------------------------------------------------------------------------- +SECONDS

# the last `+NUMBER` of a spec, unless the `+` is an exponent's sign (`1e+1`)
_EXTRA_RE = re.compile(r"(?P<base>.*?)(?<![0-9.][eE])\+\s*"
                       r"(?P<extra>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*\Z",
                       re.DOTALL)


def _parse_fixed(spec: str, body: str) -> FixedLatency:
    """The `FixedLatency` of `fixed:BODY` (`spec` is the whole spec, for messages)."""
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
        problem = check_seconds(value)
        if problem:
            raise LatencySpecError(spec, f"{what} {text!r} {problem} ({SECONDS_ALLOWED})")
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
        if not STAGE_NAME_RE.match(name):
            raise LatencySpecError(spec, f"stage name {name!r} must be an identifier "
                                   "(letters, digits, underscores)")
        if name in latencies:
            raise LatencySpecError(spec, f"stage {name!r} is given twice")
        latencies[name] = seconds(value, f"latency of stage {name!r}")
    return FixedLatency(latencies, spec)


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
