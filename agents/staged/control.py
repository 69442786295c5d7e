"""Control stages: a `Plan` and the ego state to `[acceleration, steering]` actions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.staged.types import Plan
from envs.config import EGO_FEATURES, STEERING_BOUNDS

SPEED = EGO_FEATURES.index("speed_mps")
LANE_OFFSET = EGO_FEATURES.index("lane_offset_m")
HEADING_ERROR = EGO_FEATURES.index("heading_error_rad")


@dataclass
class LaneKeepingController:
    """Applies the planned acceleration; steers to the lateral target with a cascaded
    lateral-position / heading controller on the kinematic bicycle (as highway-env's
    `ControlledVehicle.steering_control`).

    Attributes:
        lateral_time_constant_s: time constant of the lateral position loop [s].
        heading_time_constant_s: time constant of the heading loop [s].
        vehicle_length_m: ego length `L` [m]; as in highway-env's bicycle model, the slip
            angle for a yaw rate is `beta = arcsin(L/2 / v * yaw_rate)`.
    """

    lateral_time_constant_s: float = 0.6
    heading_time_constant_s: float = 0.2
    vehicle_length_m: float = 5.0
    name: str = "lane-keeping"

    def reset(self, done) -> None:
        """Stateless."""

    def __call__(self, plan: Plan, ego: np.ndarray) -> np.ndarray:
        speed = np.maximum(ego[:, SPEED].astype(np.float64), 1.0)
        lateral_error = ego[:, LANE_OFFSET] - plan.lateral_target
        lateral_speed = -lateral_error / self.lateral_time_constant_s
        heading_reference = np.arcsin(np.clip(lateral_speed / speed, -1.0, 1.0))
        heading_error = heading_reference - ego[:, HEADING_ERROR]
        heading_error = (heading_error + np.pi) % (2 * np.pi) - np.pi
        yaw_rate = heading_error / self.heading_time_constant_s
        slip = np.arcsin(np.clip(0.5 * self.vehicle_length_m / speed * yaw_rate, -1.0, 1.0))
        steering = np.clip(np.arctan(2.0 * np.tan(slip)), *STEERING_BOUNDS)
        return np.stack([plan.acceleration, steering], axis=1).astype(np.float32)
