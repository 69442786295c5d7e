"""Factories named by the user: `package.module:factory` specs and `reflexdrive.stacks`
entry points, loaded, called and checked.

A spec names a module and a callable in it, `examples.headway_agent:make` (the callable
may be dotted, `pkg.mod:Class.create`). The module is imported as Python imports any
module, with the current directory searched last (appended to `sys.path` when absent, as
`python -m` would put it first), so a module beside the command works without installing
it. A factory is called with the keyword options the stack registry hands its builders
(`agents.registry.make_agent`), only those its signature accepts (all of them when it
takes `**kwargs`), and what it returns is checked for the interface it must have. Every
failure is one `ConfigError` line naming the field and the spec.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import sys
from typing import Any, Callable

from reflexdrive.common.validation import ConfigError

STACK_ENTRY_POINTS = "reflexdrive.stacks"
"""The entry-point group whose names work like built-in stack names; each entry point
refers to a factory as a spec does (`name = "package.module:factory"` in a project's
`[project.entry-points."reflexdrive.stacks"]`)."""

AGENT_INTERFACE = "name, stage_names, reset(done), act(obs, info)"
"""What a stack factory's product must have (`agents.base.Agent`)."""


def is_spec(value: object) -> bool:
    """Whether `value` has the form `module:attribute`, each a dotted Python name."""
    if not isinstance(value, str):
        return False
    module, colon, attribute = value.partition(":")
    return bool(colon) and _dotted(module) and _dotted(attribute)


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def load_factory(field: str, spec: str, name: str | None = None) -> Callable[..., Any]:
    """The callable `spec` (`module:attribute`) names; ConfigError when the module cannot
    be imported, has no such attribute, or the attribute is not callable. The error shows
    `name` as the value when given (a registered stack name), with the spec it refers to."""
    shown = spec if name is None else name
    where = "" if name is None else f"entry point {name} = {spec}: "
    if not is_spec(spec):
        raise ConfigError(field, shown, where + "must be package.module:factory")
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:           # noqa: BLE001 - any failure of user code: one line
        reason = str(error) if isinstance(error, ImportError) else (
            f"{type(error).__name__}: {error}")
        raise ConfigError(field, shown, f"{where}cannot import module {module_name!r}: "
                                        f"{reason}") from None
    walked = module_name
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(field, shown, f"{where}{_kind(target)} {walked!r} has no "
                                            f"attribute {part!r}")
        target = getattr(target, part)
        walked = f"{walked}.{part}"
    if not callable(target):
        raise ConfigError(field, shown, f"{where}{walked} is {_article(target)}, not a "
                                        "callable factory")
    return target


def _kind(target: object) -> str:
    return "module" if inspect.ismodule(target) else type(target).__name__


def entry_point_specs() -> dict[str, str]:
    """Name -> `module:attribute` of every installed `reflexdrive.stacks` entry point."""
    points = importlib.metadata.entry_points(group=STACK_ENTRY_POINTS)
    return {point.name: point.value for point in points}


def call_factory(factory: Callable[..., Any], options: dict[str, Any], field: str = "factory",
                 spec: str = "") -> Any:
    """`factory(**options)`, passing only the options its signature accepts (every one
    when it takes `**kwargs`), so a factory states just the options it uses. A factory
    that needs an argument reflexdrive does not pass is a ConfigError naming `field`."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):      # a builtin without a signature: pass nothing
        return factory()
    parameters = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        chosen = dict(options)
    else:
        accepted = {p.name for p in parameters
                    if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)}
        chosen = {name: value for name, value in options.items() if name in accepted}
    try:
        signature.bind(**chosen)
    except TypeError as error:
        raise ConfigError(field, spec or getattr(factory, "__name__", str(factory)),
                          f"its factory cannot be called with the options reflexdrive "
                          f"passes ({error}); it may take any of: "
                          + ", ".join(sorted(options))) from None
    return factory(**chosen)


def check_agent(field: str, spec: str, agent: object) -> None:
    """ConfigError unless `agent` implements `agents.base.Agent`: a string `name`, a tuple
    of strings `stage_names`, and callable `reset` and `act`."""
    name = getattr(agent, "name", None)
    stages = getattr(agent, "stage_names", None)
    if (not isinstance(name, str) or not isinstance(stages, (tuple, list))
            or not all(isinstance(stage, str) for stage in stages)
            or not callable(getattr(agent, "reset", None))
            or not callable(getattr(agent, "act", None))):
        raise ConfigError(field, spec, f"returned {_article(agent)}, not an Agent: needs "
                                       + AGENT_INTERFACE)


STAGE_INTERFACES = {
    "perception": "a callable perception(obs, info) -> Detections",
    "tracker": "a callable tracker(detections, ego, time_s) -> Tracks with reset(done)",
    "planner": "a callable planner(tracks, ego, time_s) -> Plan with reset(done)",
    "controller": "a callable controller(plan, ego) -> actions (N, 2) with reset(done)",
}
"""What each swappable stage of the staged stack must be (`agents.staged.StagedAgent`)."""


def check_stage(stage: str, spec: str, product: object) -> None:
    """ConfigError unless `product` can be the staged stack's `stage`: callable, and with
    a `reset(done)` for the stages the stack resets (all but perception)."""
    needs_reset = stage != "perception"
    if not callable(product) or (needs_reset and not callable(getattr(product, "reset", None))):
        raise ConfigError(stage, spec, f"returned {_article(product)}, not "
                                       + STAGE_INTERFACES[stage])


def _article(value: object) -> str:
    """`a list`, `an int`, `a StagedAgent`: what a factory returned, for an error."""
    if value is None:
        return "None"
    kind = type(value).__name__
    return ("an " if kind[:1].lower() in "aeiou" else "a ") + kind
