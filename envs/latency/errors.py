"""Latency stage names, limits, and the errors of latency specs and profile files.

Errors: a bad spec raises `LatencySpecError` (field "latency"), a bad profile file raises
`ProfileError` naming the file, the JSON field and what is allowed. Both subclass
`reflexdrive.common.validation.ConfigError` and have one-line messages, so the CLI can print
them as is. The checks here (`check_seconds`, `check_total_alone`) are shared by the spec
parser, the models and the profile file format.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from typing import Callable, Sequence

from reflexdrive.common.validation import ConfigError

MAX_LATENCY_S = 60.0
"""Exclusive upper bound on one stage's latency in a fixed spec or a profile [s].

Catches unit mistakes (milliseconds written as seconds); no real tick takes a minute.
"""

TOTAL_STAGE = "total"
"""Stage name used when a latency is not split into stages."""

EXTRA_STAGE = "extra"
"""Stage name of the delay a `+SECONDS` spec suffix adds (`ShiftedLatency`), or a
`+LOW..HIGH` suffix draws per episode (`EpisodeExtraLatency`)."""

ALLOWED_FORMS = ("fixed:SECONDS, fixed:STAGE=SECONDS,..., profile:PATH, measured, "
                 "each optionally *K (latency x K) then +SECONDS (an extra delay) or "
                 "+LOW..HIGH (an extra delay drawn per episode, uniform in [LOW, HIGH])")
"""The latency spec forms, as named in error messages."""

MAX_LATENCY_SCALE = 100.0
"""Inclusive upper bound on the `*K` scale of a latency spec (a computer K times slower)."""

SECONDS_ALLOWED = f"must be a finite number of seconds in [0, {MAX_LATENCY_S:g})"
"""The allowed range of one latency, as error messages state it."""

STAGE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
"""A stage name in a fixed spec: an identifier (letters, digits, underscores)."""


# --------------------------------------------------------------------------- errors


class LatencySpecError(ConfigError):
    """A latency spec string is malformed or out of range (field "latency").

    Attributes (besides ConfigError's `field`, `value`, `allowed`):
        problem: what is wrong, without the list of allowed forms.
    """

    def __init__(self, spec: object, problem: str):
        self.problem = problem
        super().__init__("latency", spec, f"{problem}; allowed forms: {ALLOWED_FORMS}")


MISSING = object()
"""Marks a field absent from a profile file (`ProfileError`'s value)."""


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
        elif value is MISSING:
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


# --------------------------------------------------------------------------- helpers


def check_seconds(value: object) -> str | None:
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


def stage_field(name: str) -> str:
    """The JSON field of stage `name` as error messages name it: `stages.NAME` or
    `stages['odd name']`."""
    return f"stages.{name}" if STAGE_NAME_RE.match(name) else f"stages[{name!r}]"


def check_total_alone(names: Sequence[str], fail: Callable[[str], Exception]) -> None:
    """Raise `fail(why)` when the reserved stage "total" is combined with other stages."""
    if TOTAL_STAGE in names and len(names) > 1:
        raise fail(f"stage name {TOTAL_STAGE!r} is reserved for an undivided latency and "
                   "cannot be combined with other stages")
