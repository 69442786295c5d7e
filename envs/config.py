"""Frozen, validated configs for the sensors and the clock, and the action bounds.

Scenario configs live beside their generators in `envs.scenarios`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from reflexdrive.common.validation import (
    ConfigError,
    boolean,
    check_real,
    choice,
    integer,
    real,
    validate_fields,
)

ACCELERATION_BOUNDS = (-8.0, 4.0)
"""Ego longitudinal acceleration command bounds [m/s^2] (hard braking to brisk acceleration)."""

STEERING_BOUNDS = (-0.5, 0.5)
"""Ego front-wheel steering command bounds [rad]."""

EGO_FEATURES = (
    "speed_mps",
    "acceleration_mps2",
    "steering_rad",
    "lane_offset_m",
    "heading_error_rad",
    "lane_index",
    "lane_count",
    "on_road",
)
"""Names of the entries of the `ego` observation vector, in order."""

MODES = ("realtime", "lockstep")
ON_OVERRUN = ("record", "terminate", "raise")
EXECUTIONS = ("sequential", "pipelined")


@dataclass(frozen=True)
class SensorConfig:
    """What the ego's sensors see.

    The bird's-eye view (`bev`) is an ego-centred raster, ego heading pointing up (row 0
    is the far front). It spans `range_m` ahead, `bev_behind_m` behind and
    `bev_half_width_m` to each side, at `bev_m_per_px` metres per pixel; the spans must
    be whole numbers of pixels. Channels: 0 drivable road, 1 lane markings, 2 other
    vehicles, 3 ego; values 0 or 255.

    The lidar casts `lidar_beams` rays evenly over 360 degrees starting straight ahead
    and turning towards +y; each returns the range to the first vehicle hit [m]
    (`range_m` when nothing is hit or the return dropped out) and that vehicle's range
    rate [m/s] (0 for no return).

    Each field's bounds and units are in its metadata (`field_help(SensorConfig, name)`);
    errors name the field as `sensors.<name>`. A stopped vehicle "comes into sensor range"
    when its centre is `range_m` from the ego's.
    """

    range_m: float = real(48.0, low=0.0, high=500.0, low_inclusive=False,
                          help="sensing range of lidar and the forward extent of the bev [m]")
    bev_behind_m: float = real(16.0, low=0.0, high=500.0, help="bev extent behind the ego [m]")
    bev_half_width_m: float = real(32.0, low=0.0, high=500.0, low_inclusive=False,
                                   help="bev extent to each side of the ego [m]")
    bev_m_per_px: float = real(1.0, low=0.0, high=10.0, low_inclusive=False,
                               help="bev resolution [m/px]")
    bev_occlusion: bool = boolean(
        True, help="hide vehicles fully shadowed by others from the ego's viewpoint")
    bev_position_noise_m: float = real(
        0.0, low=0.0, high=10.0, help="std of Gaussian noise on each drawn vehicle's position [m]")
    bev_dropout_prob: float = real(0.0, low=0.0, high=1.0,
                                   help="probability that a vehicle is missing from a frame")
    lidar_beams: int = integer(64, low=1, high=4096, help="number of lidar rays")
    lidar_range_noise_m: float = real(0.05, low=0.0, high=10.0,
                                      help="std of Gaussian range noise on each return [m]")
    lidar_range_rate_noise_mps: float = real(
        0.1, low=0.0, high=10.0, help="std of Gaussian noise on each range rate [m/s]")
    lidar_dropout_prob: float = real(
        0.0, low=0.0, high=1.0, help="probability that a return is lost (reads as no return)")
    max_objects: int = integer(
        16, low=1, high=256, help="ground-truth objects reported in `info` (nearest first)")

    def __post_init__(self) -> None:
        validate_fields(self, "sensors.")
        for name in ("range_m", "bev_behind_m", "bev_half_width_m"):
            pixels = getattr(self, name) / self.bev_m_per_px
            if abs(pixels - round(pixels)) > 1e-9:
                raise ConfigError(f"sensors.{name}", getattr(self, name),
                                  f"must be a whole number of pixels of {self.bev_m_per_px} m")

    @property
    def bev_shape(self) -> tuple[int, int, int]:
        """`(C, H, W)` of the bev raster."""
        height = round((self.range_m + self.bev_behind_m) / self.bev_m_per_px)
        width = round(2 * self.bev_half_width_m / self.bev_m_per_px)
        return (4, height, width)


@dataclass(frozen=True)
class ClockConfig:
    """The tick contract's settings (see docs/ARCHITECTURE.md, "One tick, precisely").

    Fields (bounds and units in their metadata, `field_help(ClockConfig, name)`):
    `simulation_frequency` sets the substep `dt = 1/f`; `policy_frequency` the tick
    `T = 1/f` and must divide the simulation rate; `stage_budgets_s` are optional per-stage
    budgets [s], e.g. {"perception": 0.02}; `latency` is a latency model spec:
    "fixed:SECONDS", "fixed:stage=SECONDS,...", "profile:PATH" or "measured" (see
    envs.latency).
    """

    simulation_frequency: int = integer(
        50, low=1, high=10_000, help="world integration rate [Hz]; substep dt = 1/f")
    policy_frequency: int = integer(
        10, low=1, high=10_000,
        help="decision rate [Hz]; tick T = 1/f; must divide the simulation rate")
    mode: str = choice("realtime", choices=MODES,
                       help="realtime (the world keeps moving while the agent computes) or "
                            "lockstep (the world waits; latency is measured but does not "
                            "affect driving)")
    budget_s: float | None = real(None, low=0.0, high=3600.0, low_inclusive=False,
                                  optional=True,
                                  help="compute time allowed per tick [s]; None: one tick, T")
    stage_budgets_s: Mapping[str, float] = field(default_factory=dict)
    on_overrun: str = choice("record", choices=ON_OVERRUN,
                             help="record, terminate (end the episode as a deadline miss) or "
                                  "raise (raise DeadlineMiss)")
    latency: str = "fixed:0"
    execution: str = choice("sequential", choices=EXECUTIONS,
                            help="sequential (a decision's stages run one after another on one "
                                 "processor) or pipelined (each stage on its own processor, "
                                 "as ROS nodes: a new frame enters while later stages work)")

    def __post_init__(self) -> None:
        # errors name budget_s as the envs' keyword, "budget"
        validate_fields(self, labels={"budget_s": "budget"})
        if self.simulation_frequency % self.policy_frequency:
            raise ConfigError(
                "policy_frequency", self.policy_frequency,
                f"must divide simulation_frequency={self.simulation_frequency} "
                "(ticks are whole numbers of substeps)")
        for stage, budget in dict(self.stage_budgets_s).items():
            check_real(f"stage_budgets_s[{stage}]", budget, 0.0, 3600.0, low_inclusive=False)
        object.__setattr__(self, "stage_budgets_s", MappingProxyType(dict(self.stage_budgets_s)))
        if not isinstance(self.latency, str):
            raise ConfigError("latency", self.latency,
                              "must be a spec string: fixed:SECONDS, profile:PATH or measured")

    @property
    def substeps_per_tick(self) -> int:
        return self.simulation_frequency // self.policy_frequency

    @property
    def tick_s(self) -> float:
        """Tick period `T` [s]."""
        return 1.0 / self.policy_frequency

    @property
    def substep_s(self) -> float:
        """Substep `dt` [s]."""
        return 1.0 / self.simulation_frequency

    @property
    def budget(self) -> float:
        """Effective total budget `B` [s]."""
        return self.tick_s if self.budget_s is None else float(self.budget_s)
