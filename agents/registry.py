"""Stacks by name, as the CLI's `--stack` chooses them, and the staged stack's options.

`staged` is the modular stack; `reference-driver` and `r157-regulation` the UN R157
reference models (`agents.reference`); `cnn`, `gru`, `lstm`, `transformer` and `cnn-blind`
(the cnn trained without latency inputs; `policies.registry.POLICY_STACKS`) are the
end-to-end policies (`agents.end_to_end.build_end_to_end`), each loading its shipped
checkpoint `policies/checkpoints/<stack>.pt` unless `checkpoint=PATH` is given. Beside
these names, a stack may be a user's factory, `package.module:factory`, or a name
registered in the `reflexdrive.stacks` entry-point group (`agents.factories`); each stage
of the staged stack may be a factory too
(`--perception/--tracker/--planner/--controller package.module:factory`). `check_stack`
and `check_staged_options` validate these forms for every config; `make_agent` builds.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from reflexdrive.agents.base import Agent
from reflexdrive.agents.end_to_end import POLICY_STACKS, build_end_to_end
from reflexdrive.agents.factories import (
    call_factory,
    check_agent,
    check_stage,
    entry_point_specs,
    is_spec,
    load_factory,
)
from reflexdrive.agents.reference import (
    ReferenceDriver,
    ReferenceDriverConfig,
    RegulationConfig,
    RegulationDriver,
)
from reflexdrive.agents.staged import (
    CONTROLLERS,
    IdentityTracker,
    KalmanTracker,
    KalmanTrackerConfig,
    MobilFrenetPlanner,
    OraclePerception,
    StagedAgent,
    make_controller,
)
from reflexdrive.agents.staged.lidar_perception import LidarPerception

from reflexdrive.common.validation import ConfigError, check_choice

PERCEPTIONS = ("oracle", "lidar", "learned")
"""`--perception` choices: ground truth, classical lidar clustering, the learned bev detector."""
TRACKERS = ("kalman", "identity")
"""Trackers: Kalman + Hungarian (default), or ground-truth pass-through (oracle only)."""
PLANNERS = ("mobil-frenet",)
"""Planners: IDM car following, MOBIL lane changes, a Frenet lattice (`MobilFrenetPlanner`)."""
STAGE_CHOICES = {"perception": PERCEPTIONS, "tracker": TRACKERS, "planner": PLANNERS,
                 "controller": CONTROLLERS}
"""The built-in names of each swappable stage of the staged stack; each stage also takes
`package.module:factory`."""
SPEC_FORM = "package.module:factory"


ORACLE_TRACKER = KalmanTrackerConfig(min_hits=1, velocity_noise_mps=0.1, accel_noise_mps2=0.5,
                                     jerk_noise_mps3=10.0)
"""The Kalman tracker behind oracle perception: ground truth has no false detections
(tracks confirmed on their first frame) and exact velocities (trusted, so a lead's braking
shows in its acceleration estimate within a frame or two)."""


def make_perception(name: str, seed: int = 0, device: str = "cpu",
                    checkpoint: str | None = None):
    """The perception stage `name` (ConfigError listing `PERCEPTIONS` otherwise)."""
    check_choice("perception", name, PERCEPTIONS)
    if name == "oracle":
        return OraclePerception(seed=seed)
    if name == "lidar":
        return LidarPerception()
    from reflexdrive.agents.staged.learned_perception import LearnedPerception

    return LearnedPerception(checkpoint=checkpoint, device=device)


def check_stage_choice(stage: str, value: object) -> None:
    """ConfigError unless `value` is a built-in `stage` (`STAGE_CHOICES`) or the spec of a
    factory that imports (it is called when the stack is built)."""
    if is_spec(value):
        load_factory(stage, value)
        return
    choices = STAGE_CHOICES[stage]
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(stage, value, "allowed values are " + ", ".join(choices)
                          + f", or {SPEC_FORM}")


def check_staged_options(perception: str = "oracle", tracker: str = "kalman",
                         planner: str = "mobil-frenet", controller: str = "pure-pursuit"
                         ) -> None:
    """ConfigError unless the staged stack can be built from these stages: each a built-in
    name or a factory spec, and identity tracking only behind a perception with ids."""
    for stage, value in (("perception", perception), ("tracker", tracker),
                         ("planner", planner), ("controller", controller)):
        check_stage_choice(stage, value)
    if tracker == "identity" and perception in ("lidar", "learned"):
        raise ConfigError("tracker", tracker,
                          "identity tracking needs oracle perception (ids, velocities); "
                          "use kalman")


def _stage(stage: str, value: str, built_in: Callable[[], Any], options: dict[str, Any]):
    """Stage `stage` of the staged stack: `built_in()` for a built-in name, else the
    product of the factory `value` names, called with `options` and checked."""
    if not is_spec(value):
        return built_in()
    product = call_factory(load_factory(stage, value), options, stage, value)
    check_stage(stage, value, product)
    return product


def build_staged(perception: str = "oracle", controller: str = "pure-pursuit",
                 tracker: str = "kalman", planner: str = "mobil-frenet", seed: int = 0,
                 device: str = "cpu", detector_checkpoint: str | None = None,
                 **options: Any) -> StagedAgent:
    """The staged stack: `perception` -> Kalman tracking -> IDM/MOBIL/Frenet planning ->
    PID + `controller` steering. Any stage may be `package.module:factory`: the factory
    gets the keyword options it accepts of `seed`, `device` and the rest of `options`
    (e.g. `tick_s`), and its product replaces that stage."""
    check_staged_options(perception, tracker, planner, controller)
    factory_options = {"seed": seed, "device": device, **options}
    stage = _stage("perception", perception, lambda: make_perception(
        perception, seed=seed, device=device, checkpoint=detector_checkpoint),
        factory_options)
    if tracker == "identity":
        tracking = IdentityTracker()
    else:
        tracking = _stage("tracker", tracker, lambda: KalmanTracker(
            ORACLE_TRACKER if perception == "oracle" else None), factory_options)
    planning = _stage("planner", planner, MobilFrenetPlanner, factory_options)
    control = _stage("controller", controller, lambda: make_controller(controller),
                     factory_options)
    return StagedAgent(stage, tracking, planning, control, name="staged")


def build_reference_driver(tick_s: float = 0.1, **_: Any) -> ReferenceDriver:
    """UN R157's careful and competent driver on ground truth; `tick_s` = 1 / policy
    frequency [s] (its perception and reaction times are counted in ticks)."""
    return ReferenceDriver(ReferenceDriverConfig(tick_s=tick_s))


def build_regulation(tick_s: float = 0.1, **_: Any) -> RegulationDriver:
    """UN R157's bound on the system (esmini's `Regulation` model) on ground truth."""
    return RegulationDriver(RegulationConfig(tick_s=tick_s))


REFERENCE_STACKS = ("reference-driver", "r157-regulation")
"""Stacks that model a driver or the regulation on ground truth: their delays are
behaviour, so runs should charge them zero compute (`fixed:0` latency) and pass
`tick_s = 1 / policy_frequency`."""

STACKS: dict[str, Callable[..., Agent]] = {
    "staged": build_staged,
    "reference-driver": build_reference_driver,
    "r157-regulation": build_regulation,
    **{name: functools.partial(build_end_to_end, name) for name in POLICY_STACKS}}
"""Stack builders by name; each takes the keyword options `make_agent` passes (seed,
device, the staged stack's perception and controller, an end-to-end checkpoint) and
ignores those that are not its own."""

END_TO_END_STACKS = POLICY_STACKS
"""The stacks that load a policy checkpoint (`--checkpoint`)."""


def stack_names() -> tuple[str, ...]:
    """The stack names `--stack` takes: the built-in `STACKS`, then the names installed
    packages register in the `reflexdrive.stacks` entry-point group (a built-in name
    wins over a registered one)."""
    return (*STACKS, *(name for name in entry_point_specs() if name not in STACKS))


def check_stack(field: str, stack: object) -> None:
    """ConfigError unless `stack` is a stack name (`stack_names`) or the spec of a factory
    that imports: `package.module:factory` (called when the stack is built)."""
    if isinstance(stack, str) and stack in STACKS:
        return
    registered = entry_point_specs()
    if isinstance(stack, str) and stack in registered:
        load_factory(field, registered[stack], name=stack)
        return
    if is_spec(stack):
        load_factory(field, stack)
        return
    raise ConfigError(field, stack, "allowed values are " + ", ".join(stack_names())
                      + f", or {SPEC_FORM} (a function returning an Agent)")


def make_agent(stack: str, **options: Any) -> Agent:
    """Build the stack `stack` (a name or `package.module:factory`); ConfigError listing
    the stacks otherwise, for a `checkpoint` given to a stack that loads none, or for a
    factory whose product is not an `Agent`. A user's factory gets the options its
    signature accepts (`agents.factories.call_factory`)."""
    check_stack("stack", stack)
    if options.get("checkpoint") is not None and stack not in END_TO_END_STACKS:
        raise ConfigError("checkpoint", str(options["checkpoint"]),
                          f"the {stack} stack loads no policy checkpoint; only the end-to-end "
                          "stacks do: " + ", ".join(END_TO_END_STACKS))
    if stack in STACKS:
        return STACKS[stack](**options)
    registered = entry_point_specs()
    factory = (load_factory("stack", registered[stack], name=stack) if stack in registered
               else load_factory("stack", stack))
    agent = call_factory(factory, options, "stack", stack)
    check_agent("stack", stack, agent)
    return agent
