"""One vehicle's low-level model: highway-env's `Vehicle.step` and `ControlledVehicle`'s steering.

All functions are elementwise over any batch shape `(...)` (usually `(B,)` or `(B, N)`), and
use the same float operations, in the same order, as highway-env.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from envs.batched.road import LANE_HEADING, closest_lane, lane_coordinates, not_zero, wrap_to_pi
from envs.batched.state import BatchedRoad, Params


def clip_actions(params: Params, speed: torch.Tensor, crashed: torch.Tensor,
                 steering: torch.Tensor, acceleration: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """`Vehicle.clip_actions`: what the vehicle really applies.

    - crashed: `delta = 0`, `a = -v` (it skids to a stop);
    - `v > v_max`: `a = min(a, v_max - v)`; `v < v_min`: `a = max(a, v_min - v)`.

    Args:
        speed [m/s], crashed (bool), steering [rad], acceleration [m/s^2]: same shape.

    Returns:
        (steering [rad], acceleration [m/s^2]).
    """
    steering = torch.where(crashed, torch.zeros_like(steering), steering)
    acceleration = torch.where(crashed, -1.0 * speed, acceleration)
    acceleration = torch.where(
        speed > params.max_speed,
        torch.minimum(acceleration, 1.0 * (params.max_speed - speed)),
        torch.where(speed < params.min_speed,
                    torch.maximum(acceleration, 1.0 * (params.min_speed - speed)),
                    acceleration))
    return steering, acceleration


class VehicleStep(NamedTuple):
    """The result of `vehicle_step` (shapes as its inputs)."""

    position: torch.Tensor
    heading: torch.Tensor
    speed: torch.Tensor
    lane: torch.Tensor
    steering: torch.Tensor
    acceleration: torch.Tensor
    crashed: torch.Tensor
    impact_pending: torch.Tensor


def vehicle_step(params: Params, road: BatchedRoad, position: torch.Tensor,
                 heading: torch.Tensor, speed: torch.Tensor, length: torch.Tensor,
                 steering: torch.Tensor, acceleration: torch.Tensor, crashed: torch.Tensor,
                 impact: torch.Tensor, impact_pending: torch.Tensor,
                 dt: torch.Tensor | float) -> VehicleStep:
    """`Vehicle.step`: the kinematic bicycle, explicit Euler over `dt`.

    After `clip_actions` (see there), with slip angle `beta = atan(tan(delta) / 2)`:

        p   += v [cos(psi + beta), sin(psi + beta)] dt   (+ a pending impact push; crashed)
        psi += v sin(beta) / (l / 2) dt
        v   += a dt

    then the lane is re-assigned (`on_state_update`: closest lane).

    Args:
        position `(B, ..., 2)` [m]; heading [rad], speed [m/s], length [m], steering [rad],
        acceleration [m/s^2], crashed (bool), impact_pending (bool): `(B, ...)` (e.g.
        `(B, N)` for all vehicles, `(B,)` for the ego); impact `(B, ..., 2)` [m];
        dt: [s], a float or a tensor broadcastable to `(B, ...)`.

    Returns:
        the new state, the applied (clipped) action, `crashed` (set by an applied impact) and
        `impact_pending` (cleared once applied).
    """
    steering, acceleration = clip_actions(params, speed, crashed, steering, acceleration)
    beta = torch.atan(1 / 2 * torch.tan(steering))
    velocity = torch.stack([speed * torch.cos(heading + beta),
                            speed * torch.sin(heading + beta)], dim=-1)
    dt_ = dt if not isinstance(dt, torch.Tensor) else dt[..., None]
    position = position + velocity * dt_
    position = torch.where(impact_pending[..., None], position + impact, position)
    crashed = crashed | impact_pending
    heading = heading + speed * torch.sin(beta) / (length / 2) * dt
    speed = speed + acceleration * dt
    lane = closest_lane(position, heading, road, params)
    return VehicleStep(position, heading, speed, lane, steering, acceleration, crashed,
                       torch.zeros_like(impact_pending))


def steering_control(params: Params, position: torch.Tensor, heading: torch.Tensor,
                     speed: torch.Tensor, length: torch.Tensor,
                     target_lane: torch.Tensor) -> torch.Tensor:
    """`ControlledVehicle.steering_control`: steer to the centre line of `target_lane`.

    With lateral offset `r` from the target lane's centre (lane heading 0 on a straight road):

        v_lat   = -K_lat r
        psi_ref = clip(asin(clip(v_lat / v, -1, 1)), -pi/4, pi/4)
        dpsi    = K_psi wrap(psi_ref - psi)
        delta   = clip(atan(2 tan(asin(clip(l / 2 / v dpsi, -1, 1)))), -delta_max, delta_max)

    where every division by `v` uses `not_zero(v)`.

    Args:
        position `(..., 2)` [m]; heading [rad], speed [m/s], length [m], target_lane (int):
        `(...)`.

    Returns:
        `(...)` steering angle [rad].
    """
    _, r = lane_coordinates(position, target_lane, params)
    v = not_zero(speed, params.not_zero_eps)
    lateral_speed_command = -params.kp_lateral * r
    heading_command = torch.asin(torch.clamp(lateral_speed_command / v, -1.0, 1.0))
    heading_ref = LANE_HEADING + torch.clamp(
        heading_command, -params.heading_command_limit, params.heading_command_limit)
    heading_rate_command = params.kp_heading * wrap_to_pi(heading_ref - heading)
    slip_angle = torch.asin(torch.clamp(length / 2 / v * heading_rate_command, -1.0, 1.0))
    steering = torch.atan(2 * torch.tan(slip_angle))
    return torch.clamp(steering, -params.max_steering_angle, params.max_steering_angle)
