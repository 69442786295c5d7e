"""Control stages: a `Plan` and the ego state to `[acceleration, steering]` actions.

- `LaneKeepingController`: planned acceleration plus a cascaded lateral-offset / heading
  loop on the ego's lane offset (ignores the planned path).
- `Controller`: a `PIDSpeedController` (feed-forward plus PID on the planned speed) and a
  path follower, `PurePursuitController` or `StanleyController`, that steers along
  `plan.path`. `make_controller("pure-pursuit" | "stanley")` builds one.

The ego is highway-env's kinematic bicycle (`highway_env.vehicle.kinematics.Vehicle.step`),
referenced at its centre with the axles `L/2` ahead and behind (`L` = `vehicle_length_m`):
for a steering angle `delta` the slip angle is `beta = arctan(tan(delta) / 2)` and the yaw
rate `v sin(beta) / (L/2)`, so the centre runs on a circle of curvature
`kappa = 2 sin(beta) / L` and the front axle moves in the direction `heading + delta`.
`steering_for_curvature` inverts this. Positive steering turns towards the ego's +y.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from reflexdrive.agents.staged.route_planning import slip_angle
from reflexdrive.agents.staged.types import Plan
from reflexdrive.envs.config import ACCELERATION_BOUNDS, EGO_FEATURES, STEERING_BOUNDS

from reflexdrive.common.validation import ConfigError, check_real, real, validate_fields

SPEED = EGO_FEATURES.index("speed_mps")
LANE_OFFSET = EGO_FEATURES.index("lane_offset_m")
HEADING_ERROR = EGO_FEATURES.index("heading_error_rad")

CONTROLLERS = ("pure-pursuit", "stanley")
"""Names `make_controller` accepts."""

_MIN_LENGTH_M = 1e-6
"""Path segments and lookahead chords shorter than this count as degenerate [m]."""


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


# ----------------------------------------------------------------------------- batched math


def steering_for_curvature(curvature: np.ndarray, vehicle_length_m: float) -> np.ndarray:
    """Steering angle [rad] that puts highway-env's centre-referenced kinematic bicycle on a
    circle of `curvature` `(N,)` [1/m], clipped to `STEERING_BOUNDS`.

    `sin(beta) = kappa L / 2` (clipped to [-1, 1]), `delta = arctan(2 tan(beta))`.
    """
    slip = np.arcsin(np.clip(0.5 * vehicle_length_m * curvature, -1.0, 1.0))
    return np.clip(np.arctan(2.0 * np.tan(slip)), *STEERING_BOUNDS)


def velocity_frame(path: np.ndarray, curvature: np.ndarray, vehicle_length_m: float
                   ) -> np.ndarray:
    """`path` `(N, P, 2)` [m] turned from the ego frame into the frame of the ego centre's
    velocity on a circle of `curvature` `(N,)` [1/m]: by `-beta`, `sin(beta) = kappa L / 2`
    (0 where the curvature is 0: the path comes back unchanged)."""
    slip = slip_angle(curvature, vehicle_length_m)[:, None]
    c, s = np.cos(slip), np.sin(slip)
    x, y = path[..., 0], path[..., 1]
    return np.stack([c * x + s * y, -s * x + c * y], axis=-1)


def lookahead_point(path: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """The point at arc length `distance` `(N,)` [m] along `path` `(N, P, 2)`, linearly
    interpolated between path points; the path's last point when it is shorter."""
    steps = np.linalg.norm(np.diff(path, axis=1), axis=-1)                  # (N, P-1)
    arc = np.concatenate([np.zeros((path.shape[0], 1)), np.cumsum(steps, axis=1)], axis=1)
    rows = np.arange(path.shape[0])
    end = np.clip(np.sum(arc < distance[:, None], axis=1), 1, path.shape[1] - 1)
    start = end - 1
    length = steps[rows, start]
    fraction = np.clip(np.divide(distance - arc[rows, start], length,
                                 out=np.zeros_like(length), where=length > _MIN_LENGTH_M),
                       0.0, 1.0)
    return path[rows, start] + fraction[:, None] * (path[rows, end] - path[rows, start])


def pure_pursuit_curvature(path: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Pure-pursuit curvature [1/m] `(N,)`: the circle through the ego (the origin, tangent
    to its heading) and the lookahead point `(x_L, y_L)` at arc length `distance` along
    `path`: `kappa = 2 y_L / d^2`, `d^2 = x_L^2 + y_L^2`.

    With `d` the straight distance to the lookahead point (not the arc length), the
    curvature is exact for any point of a circular path through the ego; 0 when the
    lookahead point is at the ego (a degenerate path).
    """
    point = lookahead_point(path, distance)
    chord2 = np.sum(point * point, axis=-1)
    return np.divide(2.0 * point[:, 1], chord2, out=np.zeros_like(chord2),
                     where=chord2 > _MIN_LENGTH_M ** 2)


def nearest_on_path(path: np.ndarray, point: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Heading [rad] of the nearest path segment to `point` `(N, 2)` and the signed
    cross-track error [m]: the lateral offset of the path from `point`, positive when the
    path lies to the +y side of the segment direction from the point (steer positive).

    Args:
        path: `(N, P, 2)` in the ego frame [m]. Degenerate segments (repeated points) are
            skipped; a path with no segment gives heading 0 and error 0.
    """
    start, step = path[:, :-1], np.diff(path, axis=1)                       # (N, P-1, 2)
    length2 = np.sum(step * step, axis=-1)
    usable = length2 > _MIN_LENGTH_M ** 2
    t = np.clip(np.divide(np.sum((point[:, None] - start) * step, axis=-1), length2,
                          out=np.zeros_like(length2), where=usable), 0.0, 1.0)
    offset = start + t[..., None] * step - point[:, None]                   # point -> path
    distance2 = np.where(usable, np.sum(offset * offset, axis=-1), np.inf)
    nearest = np.argmin(distance2, axis=1)
    rows = np.arange(path.shape[0])
    any_segment = usable.any(axis=1)
    direction = step[rows, nearest]
    heading = np.where(any_segment, np.arctan2(direction[:, 1], direction[:, 0]), 0.0)
    length = np.sqrt(np.where(any_segment, length2[rows, nearest], 1.0))
    # left normal of the segment (rotate the direction by +90 deg: x -> y)
    error = (offset[rows, nearest, 1] * direction[:, 0]
             - offset[rows, nearest, 0] * direction[:, 1]) / length
    return heading, np.where(any_segment, error, 0.0)


# ----------------------------------------------------------------------------- speed


@dataclass
class PIDSpeedController:
    """Longitudinal control: `a = plan.acceleration + kp e + ki I + kd de/dt`, clipped to
    `ACCELERATION_BOUNDS`, with `e = plan.target_speed - speed` [m/s].

    The controller is called once per decision without a clock, so it integrates over
    `tick_s`, the nominal time between calls. The derivative acts on the measured speed
    (`de/dt = -dv/dt`, no kick when the target steps) and is 0 on an env's first call.
    Anti-windup: the integral stops growing while the output is saturated in the error's
    direction (conditional integration), and `|ki I|` never exceeds `max_integral_mps2`.
    Where `plan.emergency`, the planned braking passes straight through (clipped) and the
    integral is cleared, so no stale windup follows the emergency. `reset(done)` clears the
    integral and derivative memory of those envs.

    Gains and bounds are checked on construction (errors name them `pid.<field>`).
    """

    kp: float = real(1.0, low=0.0, high=100.0, help="proportional gain [1/s]")
    ki: float = real(0.05, low=0.0, high=100.0, help="integral gain [1/s^2]")
    kd: float = real(0.0, low=0.0, high=100.0, help="derivative gain [-]")
    tick_s: float = real(0.1, low=0.0, high=10.0, low_inclusive=False,
                         help="nominal time between calls [s]")
    max_integral_mps2: float = real(1.0, low=0.0, high=100.0,
                                    help="bound on the integral term's contribution [m/s^2]")
    name: str = "pid"

    def __post_init__(self) -> None:
        validate_fields(self, "pid.")
        self._integral: np.ndarray | None = None       # (N,) [m]
        self._previous_speed: np.ndarray | None = None  # (N,) [m/s], NaN: none yet

    def reset(self, done) -> None:
        """Clear the integral and the previous speed of the envs where `done` `(N,)`."""
        if self._integral is None:
            return
        done = np.asarray(done, bool)
        self._integral[done] = 0.0
        self._previous_speed[done] = np.nan

    @property
    def integral(self) -> np.ndarray | None:
        """`(N,)` integral of the speed error [m] (None before the first call)."""
        return None if self._integral is None else self._integral.copy()

    def __call__(self, plan: Plan, ego: np.ndarray) -> np.ndarray:
        """Acceleration commands `(N,)` [m/s^2] (float64)."""
        speed = np.asarray(ego, np.float64)[:, SPEED]
        n = speed.shape[0]
        if self._integral is None or self._integral.shape[0] != n:
            self._integral = np.zeros(n)
            self._previous_speed = np.full(n, np.nan)
        feedforward = np.asarray(plan.acceleration, np.float64)
        error = np.asarray(plan.target_speed, np.float64) - speed
        rate = np.where(np.isnan(self._previous_speed), 0.0,
                        (speed - self._previous_speed) / self.tick_s)
        low, high = ACCELERATION_BOUNDS
        limit = self.max_integral_mps2 / self.ki if self.ki > 0 else 0.0
        integral = np.clip(self._integral + error * self.tick_s, -limit, limit)
        command = feedforward + self.kp * error + self.ki * integral - self.kd * rate
        winding = ((command > high) & (error > 0)) | ((command < low) & (error < 0))
        integral = np.where(winding, self._integral, integral)
        command = feedforward + self.kp * error + self.ki * integral - self.kd * rate
        emergency = np.asarray(plan.emergency, bool)
        self._integral = np.where(emergency, 0.0, integral)
        self._previous_speed = speed.copy()
        return np.clip(np.where(emergency, feedforward, command), low, high)


# ----------------------------------------------------------------------------- steering


def vehicle_length_field(default: float = 5.0) -> float:
    """The ego length field of the steering controllers: `L` [m] in (0, 50]."""
    return real(default, low=0.0, high=50.0, low_inclusive=False,
                help="ego length L [m] (highway-env's Vehicle.LENGTH)")


@dataclass
class PurePursuitController:
    """Pure-pursuit steering along `plan.path`.

    The lookahead point lies at arc length `Ld = clip(lookahead_gain_s * v +
    lookahead_base_m, lookahead_min_m, lookahead_max_m)` along the path (interpolated;
    the path's end when it is shorter); the commanded curvature is that of the circle
    through the ego tangent to its heading and through the point (`pure_pursuit_curvature`),
    turned into a steering angle for the centre-referenced bicycle
    (`steering_for_curvature`). The circle is tangent to the heading rather than to the
    centre's velocity (which is `beta` off it): a small-slip approximation. Where the plan
    reports a path curvature `kappa` at the ego (`Plan.path_curvature`: a curved route),
    the circle is made tangent to the velocity instead: the path is turned by the slip
    angle `-beta = -arcsin(kappa L / 2)` that the bicycle holds on a curve of that
    curvature, so on a circle the ego runs on the path instead of cutting inside it.

    Fields are checked on construction (errors name them `pure_pursuit.<field>`);
    `lookahead_max_m` must also be at least `lookahead_min_m`.
    """

    lookahead_gain_s: float = real(0.6, low=0.0, high=10.0,
                                   help="lookahead distance per unit speed [s]")
    lookahead_base_m: float = real(3.0, low=0.0, high=200.0,
                                   help="lookahead distance at standstill [m]")
    lookahead_min_m: float = real(5.0, low=0.0, high=200.0, low_inclusive=False,
                                  help="lower bound on the lookahead distance [m]")
    lookahead_max_m: float = real(
        40.0, help="upper bound on the lookahead distance [m], in [lookahead_min_m, 500]")
    vehicle_length_m: float = vehicle_length_field()
    name: str = "pure-pursuit"

    def __post_init__(self) -> None:
        validate_fields(self, "pure_pursuit.")
        check_real("pure_pursuit.lookahead_max_m", self.lookahead_max_m,
                   self.lookahead_min_m, 500.0)

    def reset(self, done) -> None:
        """Stateless."""

    def lookahead_m(self, speed: np.ndarray) -> np.ndarray:
        """Lookahead arc length `(N,)` [m] for the ego speed `(N,)` [m/s]."""
        return np.clip(self.lookahead_gain_s * np.maximum(speed, 0.0) + self.lookahead_base_m,
                       self.lookahead_min_m, self.lookahead_max_m)

    def __call__(self, plan: Plan, ego: np.ndarray) -> np.ndarray:
        """Steering commands `(N,)` [rad] (float64)."""
        speed = np.asarray(ego, np.float64)[:, SPEED]
        path = np.asarray(plan.path, np.float64)
        if plan.path_curvature is not None:
            path = velocity_frame(path, np.asarray(plan.path_curvature, np.float64),
                                  self.vehicle_length_m)
        curvature = pure_pursuit_curvature(path, self.lookahead_m(speed))
        return steering_for_curvature(curvature, self.vehicle_length_m)


@dataclass
class StanleyController:
    """Stanley steering along `plan.path` (Thrun et al. 2006):
    `delta = psi + arctan(gain * e / (v + softening_speed_mps))`.

    `psi` is the heading of the path segment nearest to the reference point (in the ego
    frame, i.e. relative to the ego's heading) and `e` the reference point's cross-track
    error (`nearest_on_path`, positive when the path lies to the ego's +y side). The
    reference point is the front axle, `vehicle_length_m / 2` ahead of the centre (on
    highway-env's bicycle it moves in the direction `heading + delta`, the geometry
    Stanley's law assumes), moved a further `preview_s * v` ahead along the ego's heading.
    Clipped to `STEERING_BOUNDS`.

    `preview_s = 0` is the original law. The default preview is for planners that replan
    every tick from the measured state (the Frenet lattice starts each path tangent to the
    ego's heading with zero lateral acceleration): at the front axle such a path has barely
    turned yet, so the original law would hardly steer, and the ego would never get onto
    the path it is replanned from.

    Fields are checked on construction (errors name them `stanley.<field>`).
    """

    gain: float = real(1.0, low=0.0, high=100.0, help="cross-track gain k [1/s]")
    softening_speed_mps: float = real(
        1.0, low=0.0, high=100.0, low_inclusive=False,
        help="added to the speed so the law stays gentle at low speed [m/s]")
    vehicle_length_m: float = vehicle_length_field()
    preview_s: float = real(
        0.4, low=0.0, high=5.0,
        help="how far ahead of the front axle the path is measured, per unit speed [s]")
    name: str = "stanley"

    def __post_init__(self) -> None:
        validate_fields(self, "stanley.")

    def reset(self, done) -> None:
        """Stateless."""

    def __call__(self, plan: Plan, ego: np.ndarray) -> np.ndarray:
        """Steering commands `(N,)` [rad] (float64)."""
        speed = np.maximum(np.asarray(ego, np.float64)[:, SPEED], 0.0)
        path = np.asarray(plan.path, np.float64)
        reference = np.zeros((path.shape[0], 2))
        reference[:, 0] = 0.5 * self.vehicle_length_m + self.preview_s * speed
        heading, error = nearest_on_path(path, reference)
        steering = heading + np.arctan(self.gain * error / (speed + self.softening_speed_mps))
        return np.clip(steering, *STEERING_BOUNDS)


# ----------------------------------------------------------------------------- combined


@dataclass
class Controller:
    """Speed and steering control together: `controller(plan, ego) -> (N, 2)` float32
    `[acceleration m/s^2, steering rad]`.

    Attributes:
        speed: longitudinal controller, `speed(plan, ego) -> (N,)` with `reset(done)`.
        steering: path follower, `steering(plan, ego) -> (N,)` with `reset(done)`.
        name: the controller's name in results.
    """

    speed: PIDSpeedController = field(default_factory=PIDSpeedController)
    steering: PurePursuitController | StanleyController = field(
        default_factory=PurePursuitController)
    name: str = "pure-pursuit"

    def reset(self, done) -> None:
        """Forget the per-env state of both controllers where `done` `(N,)` is True."""
        self.speed.reset(done)
        self.steering.reset(done)

    def __call__(self, plan: Plan, ego: np.ndarray) -> np.ndarray:
        return np.stack([self.speed(plan, ego), self.steering(plan, ego)],
                        axis=1).astype(np.float32)


def make_controller(name: str) -> Controller:
    """PID speed control with `name`'s steering: "pure-pursuit" or "stanley"."""
    if name == "pure-pursuit":
        return Controller(PIDSpeedController(), PurePursuitController(), name=name)
    if name == "stanley":
        return Controller(PIDSpeedController(), StanleyController(), name=name)
    raise ConfigError("controller", name, "allowed values are " + ", ".join(CONTROLLERS))
