"""Stacks by name, as the CLI's `--stack` chooses them, and the staged stack's options.

`staged` is the modular stack; `reference-driver` and `r157-regulation` the UN R157
reference models (`agents.reference`); `cnn`, `gru`, `lstm` and `transformer` are the end-to-end
policies (`agents.end_to_end.build_end_to_end`), each loading its shipped checkpoint
unless `checkpoint=PATH` is given.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from reflexdrive.agents.base import Agent
from reflexdrive.agents.end_to_end import POLICY_STACKS, build_end_to_end
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


def build_staged(perception: str = "oracle", controller: str = "pure-pursuit",
                 tracker: str = "kalman", seed: int = 0, device: str = "cpu",
                 detector_checkpoint: str | None = None, **_: Any) -> StagedAgent:
    """The staged stack: `perception` -> Kalman tracking -> IDM/MOBIL/Frenet planning ->
    PID + `controller` steering."""
    check_choice("controller", controller, CONTROLLERS)
    check_choice("tracker", tracker, TRACKERS)
    if tracker == "identity" and perception != "oracle":
        raise ConfigError("tracker", tracker,
                          "identity tracking needs oracle perception (ids, velocities); "
                          "use kalman")
    stage = make_perception(perception, seed=seed, device=device,
                            checkpoint=detector_checkpoint)
    if tracker == "identity":
        tracking = IdentityTracker()
    else:
        tracking = KalmanTracker(ORACLE_TRACKER if perception == "oracle" else None)
    return StagedAgent(stage, tracking, MobilFrenetPlanner(), make_controller(controller),
                       name="staged")


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


def make_agent(stack: str, **options: Any) -> Agent:
    """Build the stack named `stack`; ConfigError listing the stacks otherwise, or for a
    `checkpoint` given to a stack that loads none."""
    check_choice("stack", stack, tuple(STACKS))
    if options.get("checkpoint") is not None and stack not in END_TO_END_STACKS:
        raise ConfigError("checkpoint", str(options["checkpoint"]),
                          f"the {stack} stack loads no policy checkpoint; only the end-to-end "
                          "stacks do: " + ", ".join(END_TO_END_STACKS))
    return STACKS[stack](**options)
