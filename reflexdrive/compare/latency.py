"""Each stack's own latency in a compare: one spec for all stacks, or one per stack.

`CompareConfig.latency` takes:

- one spec string for every stack: `profiled` (the default), `measured`, `fixed:...` or
  `profile:PATH` (`envs.latency`), without the `*K` / `+SECONDS` suffixes (those are the
  compare's sweeps, `latency_scale` and `extra_latency_s`);
- one spec per stack, as a mapping (Python, or a TOML `[latency]` table) or as the string
  `STACK=SPEC,STACK=SPEC,...` (`--latency staged=profile:a.json,cnn=fixed:0.005`). The
  entry `default=SPEC` covers the stacks not named; without it every compared stack
  (the reference drivers aside) must be named, and the error lists those missing. A
  `fixed:STAGE=SECONDS,...` spec keeps its commas: an item starts a new stack only when
  its value starts with a latency scheme (`staged=fixed:perception=0.01,planning=0.02`).

The reference drivers (`agents.registry.REFERENCE_STACKS`) always run at `fixed:0`: they
model their delays as behaviour, so naming one in a per-stack spec is an error.

`profiled` is a compare-only spec: before the cells run, each such stack is timed at batch
size 1 on this machine (`compare.profiles`), its profile saved in `OUT/profiles/STACK.json`
and replayed by every cell of that stack (`profile:OUT/profiles/STACK.json`), so the envs
run batched and the latency is still that of one car's computer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from reflexdrive.common.validation import ConfigError
from reflexdrive.envs.latency import has_extra_range, parse_latency, split_extra, split_scale

PROFILED = "profiled"
"""The spec that profiles a stack at batch size 1 first, then replays the profile."""

DEFAULT_ENTRY = "default"
"""The per-stack entry that covers the stacks not named."""

SCHEMES = ("fixed", "profile", "measured", PROFILED)
"""The latency schemes a per-stack value starts with."""

_ENTRY_RE = re.compile(r"\s*(?P<name>[A-Za-z0-9_.-]+)\s*=\s*(?P<spec>.*)\Z", re.DOTALL)


def _starts_with_scheme(text: str) -> bool:
    head = re.split(r"[:*+\s]", text.strip(), maxsplit=1)[0]
    return head in SCHEMES


def split_per_stack(text: str) -> str | dict[str, str]:
    """`STACK=SPEC,...` -> {stack: spec} (names not checked here); any other string is
    one spec for every stack and comes back unchanged.

    Raises:
        ConfigError: a per-stack string with an empty spec or a name given twice.
    """
    first = _ENTRY_RE.match(text.split(",", 1)[0])
    if first is None or not _starts_with_scheme(first.group("spec")):
        return text                                   # one spec (fixed:a=1,b=2 included)
    entries: dict[str, str] = {}
    name = None
    for item in text.split(","):
        match = _ENTRY_RE.match(item)
        if match is not None and _starts_with_scheme(match.group("spec")):
            name = match.group("name")
            if name in entries:
                raise ConfigError("latency", text, f"stack {name!r} is given twice")
            entries[name] = match.group("spec").strip()
        else:                                         # a fixed spec's next STAGE=SECONDS
            entries[name] += "," + item
    for name, spec in entries.items():
        if not spec.strip():
            raise ConfigError(f"latency.{name}", spec, "empty spec")
    return entries


def absolute_latency(spec: str, base_dir: str | os.PathLike | None) -> str:
    """`spec` with a `profile:PATH`'s PATH made absolute against `base_dir` (else the
    current directory), its `*K` and `+SECONDS` suffixes kept; other specs unchanged."""
    base, extra = split_extra(spec)
    base, scale = split_scale(base)
    scheme, colon, body = base.strip().partition(":")
    if scheme.strip() != "profile" or not colon or not body.strip():
        return spec
    path = Path(body.strip()).expanduser()
    if not path.is_absolute():
        path = Path(base_dir if base_dir is not None else os.getcwd()) / path
    absolute = f"profile:{path.resolve()}"
    if scale is not None:
        absolute += f"*{scale!r}"
    return absolute if extra is None else f"{absolute}+{extra!r}"


def absolute_latencies(value: object, base_dir: str | os.PathLike | None) -> object:
    """`absolute_latency` of a spec, of each value of a mapping, or of each spec of a
    `STACK=SPEC,...` string (anything else is returned as it is, for validation)."""
    if isinstance(value, str):
        value = split_per_stack(value)
        if isinstance(value, str):
            return absolute_latency(value, base_dir)
    if isinstance(value, Mapping):
        return {name: absolute_latency(spec, base_dir) if isinstance(spec, str) else spec
                for name, spec in value.items()}
    return value


def check_own_spec(field: str, spec: object) -> str:
    """A stack's own latency spec, checked: a string, no `*K` / `+SECONDS` / `+LOW..HIGH`
    suffix (the last is a training distribution), a known model (`profiled`, or one
    `envs.latency.parse_latency` reads: a profile file must exist), a `profile:PATH` made
    absolute. Returns the spec, stripped."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(field, spec, "must be a latency spec string: profiled, measured, "
                          "fixed:SECONDS, fixed:STAGE=SECONDS,..., profile:PATH")
    spec = spec.strip()
    if has_extra_range(spec):
        raise ConfigError(field, spec, "a +LOW..HIGH extra delay is drawn per episode, for "
                          "training over a latency distribution; a compare measures each "
                          "stack at constant extra delays: give its own latency and sweep "
                          "extra_latency_s (--extra-latency)")
    if split_extra(spec)[1] is not None:
        raise ConfigError(field, spec, "give the stack's own latency without a +SECONDS "
                          "suffix; extra delays go in extra_latency_s (--extra-latency)")
    if split_scale(spec)[1] is not None:
        raise ConfigError(field, spec, "give the stack's own latency without a *K scale; "
                          "scales go in latency_scale (--latency-scale)")
    if spec == PROFILED:
        return spec
    spec = absolute_latency(spec, None)
    try:
        parse_latency(spec)                          # malformed spec or bad profile file
    except ConfigError as error:
        if error.field != "latency":                 # a profile file's field: keep it
            raise
        raise ConfigError(field, spec, error.allowed) from None
    return spec


def stack_latencies(value: object, stacks: tuple[str, ...], known: tuple[str, ...],
                    references: tuple[str, ...]) -> str | dict[str, str]:
    """The `latency` field, checked and normalised: one spec (a string) for every stack,
    or {stack: spec} for every compared stack but the reference drivers, in `stacks`
    order (`default` expanded, entries of stacks not compared dropped).

    Args:
        value: a spec string, a `STACK=SPEC,...` string or a mapping stack -> spec.
        stacks: the compared stacks.
        known: every stack name (`agents.registry.STACKS`).
        references: the reference drivers (always `fixed:0`; not to be named).

    Raises:
        ConfigError: one line naming the field (`latency` or `latency.STACK`): an unknown
            or reference stack, missing stacks without `default`, or a bad spec.
    """
    if isinstance(value, str):
        value = split_per_stack(value)
    if isinstance(value, str):
        return check_own_spec("latency", value)
    if not isinstance(value, Mapping) or not value:
        raise ConfigError("latency", value, "must be a latency spec string or a table of "
                          "STACK = SPEC (default = SPEC for the others)")
    allowed = (*known, DEFAULT_ENTRY)
    for name in value:
        if name not in allowed:
            raise ConfigError("latency", name, "unknown stack; per-stack latencies name "
                              "stacks from: " + ", ".join(allowed))
        if name in references:
            raise ConfigError("latency", name, "the reference drivers always run at fixed:0 "
                              "(their delays are driving behaviour); leave them out")
    specs = {name: check_own_spec(f"latency.{name}", spec) for name, spec in value.items()
             if name == DEFAULT_ENTRY or name in stacks}
    default = specs.pop(DEFAULT_ENTRY, None)
    timed = [stack for stack in stacks if stack not in references]
    missing = [stack for stack in timed if stack not in specs]
    if missing and default is None:
        raise ConfigError("latency", dict(value), "no latency for " + ", ".join(missing)
                          + "; name them or add default=SPEC")
    return {stack: specs.get(stack, default) for stack in timed}
