"""Latency spec strings: `ClockConfig.latency` -> a latency model (`parse_latency`).

Forms, each naming one model of `models`:

- `fixed:SECONDS` or `fixed:STAGE=SECONDS,...` -> `FixedLatency`;
- `profile:PATH` -> `ProfileLatency` (the file format: docs/latency-profile.md);
- `measured` -> `MeasuredLatency`;
- any of them `*K` (`profile:p.json*2`, `measured*0.5`) -> `ScaledLatency`: every stage
  of the base model times K, 0 < K <= 100 (the same stack on a computer K times slower;
  `reflexdrive compare --latency-scale`);
- any of them `+SECONDS` (`measured+0.1`, `fixed:0.03+0.05`, `profile:p.json+0.2`) ->
  `ShiftedLatency`: the base model plus a constant extra delay of SECONDS, the stage
  "extra" (the latency cost curve of `reflexdrive compare --extra-latency`: a network
  hop, an actuator delay). Only one suffix, in [0, 60) s; the last `+NUMBER` of the spec
  is the suffix (an exponent's `e+1` is not), so a profile path may contain `+`
  elsewhere.
- both, in that order: `SPEC*K+SECONDS` charges `(SPEC's latency x K) + SECONDS` (the
  scale never multiplies the extra delay); `SPEC+SECONDS*K` is an error.
- any of them `+LOW..HIGH` instead of `+SECONDS` (`fixed:0.03+0..0.3`,
  `profile:p.json*2+0.05..0.3`) -> `EpisodeExtraLatency`: an extra delay drawn once per
  episode, uniformly in [LOW, HIGH] seconds, from the episode seed (training over a
  latency distribution; 0 <= LOW <= HIGH < 60).

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
    EpisodeExtraLatency,
    FixedLatency,
    LatencyModel,
    MeasuredLatency,
    ProfileLatency,
    ScaledLatency,
    ShiftedLatency,
)

# --------------------------------------------------------------------------- +SECONDS

# the last `+NUMBER` of a spec, unless the `+` is an exponent's sign (`1e+1`)
_EXTRA_RE = re.compile(r"(?P<base>.*?)(?<![0-9.][eE])\+\s*"
                       r"(?P<extra>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*\Z",
                       re.DOTALL)
_NUMBER = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
# a `+LOW..HIGH` suffix (`..` binds before a number's own dot: `0..0.3` is 0 to 0.3)
_RANGE_RE = re.compile(r"(?P<base>.*?)(?<![0-9.][eE])\+\s*(?P<low>[0-9]+(?:\.[0-9]+)?"
                       r"(?:[eE][-+]?[0-9]+)?|\.[0-9]+)\s*\.\.\s*(?P<high>" + _NUMBER
                       + r")\s*\Z", re.DOTALL)
# what was meant as a range suffix: the last `+` followed by `..` (no path separator)
_RANGE_TAIL_RE = re.compile(r"\+[^+/\\]*\.\.[^+/\\]*\Z")
RANGE_SYNTAX = ("an extra delay range is +LOW..HIGH seconds after the latency model, "
                "0 <= LOW <= HIGH < 60, e.g. fixed:0.03+0..0.3 or profile:PATH+0..0.3")
"""How a `+LOW..HIGH` suffix is written, as error messages state it."""
# the last `*NUMBER` of a spec (signed, so `*-1` reaches the range check)
_SCALE_RE = re.compile(r"(?P<base>.*)\*\s*(?P<scale>[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
                       r"(?:[eE][-+]?[0-9]+)?)\s*\Z", re.DOTALL)


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


def split_extra_range(spec: str) -> tuple[str, tuple[float, float] | None]:
    """`(base spec, (low, high))` of a spec with a `+LOW..HIGH` suffix, else `(spec, None)`.

    Syntax only (no range check): `"fixed:0.03+0..0.3"` -> `("fixed:0.03", (0.0, 0.3))`.
    """
    match = _RANGE_RE.match(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        return spec, None
    return match.group("base").strip(), (float(match.group("low")), float(match.group("high")))


def has_extra_range(spec: object) -> bool:
    """Whether a spec string ends in a `+LOW..HIGH` suffix, well formed or not (an extra
    delay drawn per episode: a training distribution, not one latency to measure)."""
    return isinstance(spec, str) and (split_extra_range(spec)[1] is not None
                                      or _RANGE_TAIL_RE.search(spec.strip()) is not None)


def with_extra(spec: str, extra_s: float) -> str:
    """`spec` with the extra delay `extra_s` [s] appended (`spec` itself for 0):
    `with_extra("measured", 0.05) == "measured+0.05"`."""
    extra_s = float(extra_s)
    return spec if extra_s == 0.0 else f"{spec.strip()}+{extra_s!r}"


def split_scale(spec: str) -> tuple[str, float | None]:
    """`(base spec, K)` of a spec ending in a `*K` scale, else `(spec, None)`; syntax only
    (`"profile:a.json*2"` -> `("profile:a.json", 2.0)`). A `+SECONDS` suffix must be split
    off first (`split_extra`)."""
    match = _SCALE_RE.match(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        return spec, None
    return match.group("base").strip(), float(match.group("scale"))


def with_scale(spec: str, scale: float) -> str:
    """`spec` with its latency times `scale` (`spec` itself for 1): the `*K` goes before any
    `+SECONDS` suffix and multiplies an existing one: `with_scale("measured+0.1", 2) ==
    "measured*2.0+0.1"`, `with_scale("fixed:0.01*2", 3) == "fixed:0.01*6.0"`."""
    scale = float(scale)
    if scale == 1.0:
        return spec
    base, extra = split_extra(spec.strip())
    base, previous = split_scale(base)
    return with_extra(f"{base}*{scale * (previous or 1.0)!r}", extra or 0.0)


def base_spec(spec: str) -> str:
    """The latency model of a spec without its `*K` and `+SECONDS` / `+LOW..HIGH` suffixes
    (syntax only): `base_spec("measured*2+0.1") == base_spec("measured+0..0.3") ==
    "measured"`."""
    return split_scale(split_extra(split_extra_range(spec)[0])[0])[0].strip()


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
    current directory; `~` is expanded) and `measured`; each may end in `*K`, a scale
    (`ScaledLatency`), then `+SECONDS`, an extra delay (`ShiftedLatency`), or
    `+LOW..HIGH`, an extra delay drawn per episode (`EpisodeExtraLatency`). Whitespace
    around the spec and its parts is ignored.

    Raises:
        LatencySpecError: malformed spec, unknown scheme, or a value out of range.
        ProfileError: `profile:PATH` names a missing or invalid profile file.
    """
    if not isinstance(spec, str):
        raise LatencySpecError(spec, "must be a spec string")
    text = spec.strip()
    if not text:
        raise LatencySpecError(spec, "empty spec")
    base, extra_range = split_extra_range(text)
    if extra_range is not None:
        if not base:
            raise LatencySpecError(spec, f"+LOW..HIGH needs a latency model before it: "
                                   f"{RANGE_SYNTAX}")
        if split_extra(base)[1] is not None or split_extra_range(base)[1] is not None:
            raise LatencySpecError(spec, "only one +SECONDS or +LOW..HIGH suffix is allowed")
        return EpisodeExtraLatency(_parse_scaled(spec, base, base_dir), *extra_range, spec)
    if _RANGE_TAIL_RE.search(text):
        raise LatencySpecError(spec, f"malformed extra delay range: {RANGE_SYNTAX}")
    base, extra = split_extra(text)
    if extra is None:
        return _parse_scaled(spec, text, base_dir)
    if not base:
        raise LatencySpecError(spec, "+SECONDS needs a latency model before it, "
                               "e.g. measured+0.1")
    if split_extra(base)[1] is not None:
        raise LatencySpecError(spec, "only one +SECONDS suffix is allowed")
    return ShiftedLatency(_parse_scaled(spec, base, base_dir), extra, spec)


def _parse_scaled(spec: str, text: str, base_dir: str | os.PathLike | None) -> LatencyModel:
    """The model of `text`, a spec without a `+SECONDS` suffix that may end in `*K`
    (`spec` is the whole spec, for messages)."""
    base, scale = split_scale(text)
    if scale is None:
        return _parse_model(spec, text, base_dir)
    if not base:
        raise LatencySpecError(spec, "*K needs a latency model before it, e.g. measured*2")
    if split_scale(base)[1] is not None:
        raise LatencySpecError(spec, "only one *K scale is allowed")
    if split_extra(base)[1] is not None:
        raise LatencySpecError(spec, "write the scale before the extra delay: SPEC*K+SECONDS "
                               "charges (latency x K) + SECONDS")
    return ScaledLatency(_parse_model(spec, base, base_dir), scale, spec)


def _parse_model(spec: str, text: str, base_dir: str | os.PathLike | None) -> LatencyModel:
    """The model of `text`, a spec without suffixes (`spec`: the whole one, for messages)."""
    scheme, colon, body = text.partition(":")
    scheme = scheme.strip()
    if "*" in text and scheme != "profile":           # a path may hold a `*`
        raise LatencySpecError(spec, "'*' must be followed by a number K > 0 "
                               "(SPEC*K: the latency times K)")
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
