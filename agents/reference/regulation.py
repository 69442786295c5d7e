"""`r157-regulation`: UN R157's bound on the system, as esmini's `Regulation` model.

esmini's `ControllerALKS_R157SM::Regulation` (after JRC-FSM's `Reg157`, R157 paragraph
5.2.5.2) brakes at the last moment the regulation allows. It watches the nearest object
ahead within `range_m` (46 m) that is in the ego lane or cutting into it (an adjacent
vehicle whose front wheel on the ego's side is `cut_in_intrusion_m` inside the ego lane)
and brakes at `max_decel_mps2` (a step, no ramp) on every tick where the gap closes and

    TTC < v_rel / (2 max_decel) + reaction_s + margin_s

(the 0.35 s is inside this threshold: esmini keeps no separate delay, its reaction-time
wait is compiled out). Elsewhere it keeps its speed and lane (esmini's `cruise=false`).
Stateless: each tick decides from that tick's ground truth alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from reflexdrive.agents.base import Decision, Info, Observation, StageTimer
from reflexdrive.agents.reference.lane_keeping import keep_lane
from reflexdrive.agents.reference.scene import (
    closing_speed,
    in_ego_lane,
    lane_scene,
    nearest,
    pick,
    time_to_collision,
)
from reflexdrive.agents.staged.control import LaneKeepingController
from reflexdrive.envs.config import ACCELERATION_BOUNDS

from reflexdrive.common.validation import real, validate_fields


@dataclass(frozen=True)
class RegulationConfig:
    """The regulation model's parameters (defaults: esmini's `Regulation`). Validated on
    construction (`ConfigError` naming `regulation.<field>`)."""

    tick_s: float = real(0.1, low=0.0, high=10.0, low_inclusive=False,
                         help="time between calls, 1 / policy_frequency [s] (the model is "
                              "stateless; both reference stacks are built alike)")
    reaction_s: float = real(0.35, low=0.0, high=10.0,
                             help="system reaction time in the TTC threshold [s]")
    margin_s: float = real(0.1, low=0.0, high=10.0,
                           help="extra margin in the TTC threshold (esmini, JRC-FSM) [s]")
    max_decel_mps2: float = real(6.0, low=0.0, high=-ACCELERATION_BOUNDS[0],
                                 low_inclusive=False, help="braking when critical [m/s^2]")
    range_m: float = real(46.0, low=0.0, high=1000.0, low_inclusive=False,
                          help="detection range (centre to centre) [m]")
    cut_in_intrusion_m: float = real(
        0.3, low=0.0, high=5.0,
        help="how far inside the ego lane an adjacent vehicle's front wheel must be for a "
             "cut-in [m]")
    lane_width_m: float = real(4.0, low=0.0, high=20.0, low_inclusive=False,
                               help="lane width (highway-env's straight lanes) [m]")
    ego_length_m: float = real(5.0, low=0.0, high=50.0, low_inclusive=False,
                               help="ego length, for bumper gaps [m]")

    def __post_init__(self) -> None:
        validate_fields(self, "regulation.")


def regulation_critical(ttc_s: np.ndarray, closing_mps: np.ndarray, gap_m: np.ndarray,
                        config: RegulationConfig) -> np.ndarray:
    """Bool, any shape: the gap closes and `TTC < v_rel / (2 a) + reaction + margin`."""
    threshold = closing_mps / (2.0 * config.max_decel_mps2) + config.reaction_s + config.margin_s
    return (closing_mps > 0) & (gap_m > 0) & (ttc_s < threshold)


class RegulationDriver:
    """The R157 system bound over `N` envs (module docstring).

    `products`: "plan" (the lane-keeping `Plan`), "critical" `(N,)` bool, "focus_id" `(N,)`.
    """

    stage_names = ("reference",)

    def __init__(self, config: RegulationConfig | None = None, name: str = "r157-regulation"):
        self.config = config if config is not None else RegulationConfig()
        self.name = name
        self.steering = LaneKeepingController(vehicle_length_m=self.config.ego_length_m)

    def reset(self, done: np.ndarray) -> None:
        """Stateless: nothing to forget."""

    def act(self, obs: Observation, info: Info) -> Decision:
        timer = StageTimer()
        with timer("reference"):
            cfg = self.config
            ego = np.asarray(obs["ego"], np.float64)
            scene = lane_scene(ego, info, cfg.ego_length_m)
            half = 0.5 * cfg.lane_width_m
            side = np.sign(scene.d)
            # the front wheel on the ego's side: (length / 2, -side * width / 2) rotated
            wheel_d = (scene.d + 0.5 * scene.length * np.sin(scene.heading)
                       - side * 0.5 * scene.width * np.cos(scene.heading))
            cutting_in = (scene.valid & (scene.s > 0) & (scene.s <= cfg.range_m)
                          & (np.abs(scene.d) >= half) & (np.abs(scene.d) < 3 * half)
                          & (side * wheel_d < half - cfg.cut_in_intrusion_m))
            focus = nearest(in_ego_lane(scene, cfg.lane_width_m, cfg.range_m) | cutting_in,
                            scene.gap)
            gap = pick(scene.gap, focus, np.inf)
            closing = pick(closing_speed(scene), focus, 0.0)
            critical = regulation_critical(time_to_collision(gap, closing), closing, gap, cfg)
            command = np.where(critical, -cfg.max_decel_mps2, 0.0)
            actions, plan = keep_lane(self.steering, command, ego, gap)
        return Decision(actions=actions, stage_latency_s=timer.latencies,
                        products={"plan": plan, "critical": critical,
                                  "focus_id": pick(scene.vehicle_id, focus, -1).astype(np.int64)})
