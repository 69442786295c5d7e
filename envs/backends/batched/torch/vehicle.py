"""One vehicle's low-level model: highway-env's `Vehicle.step` and `ControlledVehicle`'s steering.

All functions are elementwise over any batch shape `(...)` (usually `(B,)` or `(B, N)`), and
use the same float operations, in the same order, as highway-env.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from reflexdrive.envs.backends.batched.state import BatchedRoad, Params, take
from reflexdrive.envs.backends.batched.torch.road import (
    as_weight,
    closest_lane,
    not_zero,
    wrap_to_pi_,
)


def clip_actions(params: Params, speed: torch.Tensor, crashed: torch.Tensor,
                 steering: torch.Tensor, acceleration: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """`Vehicle.clip_actions`: what the vehicle really applies.

    - crashed: `delta = 0`, `a = -v` (it skids to a stop);
    - `v > v_max`: `a = min(a, v_max - v)`; `v < v_min`: `a = max(a, v_min - v)`.

    Only the vehicles one of these rules applies to (usually few: the crashed ones) are
    computed, and the inputs are returned as they are if there is none.

    Args:
        speed [m/s], crashed (bool), steering [rad], acceleration [m/s^2]: same shape.

    Returns:
        (steering [rad], acceleration [m/s^2]).
    """
    clipped = crashed | (speed > params.max_speed) | (speed < params.min_speed)
    rows = torch.nonzero(clipped.reshape(-1)).flatten()
    if rows.numel() == 0:
        return steering, acceleration
    v = take(speed, rows)
    hit = take(crashed, rows)
    a = torch.where(hit, -1.0 * v, take(acceleration, rows))
    a = torch.where(v > params.max_speed, torch.minimum(a, 1.0 * (params.max_speed - v)),
                    torch.where(v < params.min_speed,
                                torch.maximum(a, 1.0 * (params.min_speed - v)), a))
    steering = steering.clone()
    acceleration = acceleration.clone()
    flat = steering.reshape(-1)
    flat.index_copy_(0, rows, torch.where(hit, torch.zeros_like(v), take(flat, rows)))
    acceleration.reshape(-1).index_copy_(0, rows, a)
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
    moved = bicycle_step(params, position, heading, speed, length, steering, acceleration,
                         crashed, impact, impact_pending, dt)
    lane = closest_lane(moved.position, moved.heading, road, params)
    return moved._replace(lane=lane)


def bicycle_step(params: Params, position: torch.Tensor, heading: torch.Tensor,
                 speed: torch.Tensor, length: torch.Tensor, steering: torch.Tensor,
                 acceleration: torch.Tensor, crashed: torch.Tensor, impact: torch.Tensor,
                 impact_pending: torch.Tensor, dt: torch.Tensor | float) -> VehicleStep:
    """`vehicle_step` without the lane re-assignment (`lane` is None in the result).

    Written with in-place operations on fresh intermediates (same values, fewer
    allocations: at large batches these dominate the cost of an elementwise op).
    """
    steering, acceleration = clip_actions(params, speed, crashed, steering, acceleration)
    beta = torch.tan(steering).mul_(1 / 2).atan_()              # atan(tan(delta) / 2)
    course = heading + beta
    dt_ = dt if not isinstance(dt, torch.Tensor) else dt[..., None]
    velocity = torch.empty_like(position)
    torch.mul(speed, torch.cos(course), out=velocity[..., 0])
    torch.mul(speed, course.sin_(), out=velocity[..., 1])
    position = velocity.mul_(dt_).add_(position)                # p + v dt
    if bool(impact_pending.any()):
        # + impact where pending (impact * 1.0 or * 0.0: exact for finite pushes)
        position = position + impact * as_weight(impact_pending, position)[..., None]
    crashed = crashed | impact_pending
    # psi + v sin(beta) / (l / 2) dt
    heading = beta.sin_().mul_(speed).div_(length / 2).mul_(dt).add_(heading)
    speed = torch.mul(acceleration, dt).add_(speed)             # v + a dt
    return VehicleStep(position, heading, speed, None, steering, acceleration, crashed,
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
    # in place on fresh intermediates, in highway-env's order of operations
    r = target_lane.to(position.dtype).mul_(params.lane_width)
    r = torch.sub(position[..., 1], r, out=r)                   # r = y - lane w
    v = not_zero(speed, params.not_zero_eps)
    # heading_ref = clip(asin(clip(-K_lat r / v, -1, 1)), -pi/4, pi/4); `LANE_HEADING + `
    # (0.0 +) is left out: it could only turn a -0.0 into +0.0, which the subtraction
    # below absorbs.
    heading_ref = r.mul_(-params.kp_lateral).div_(v).clamp_(-1.0, 1.0).asin_()
    heading_ref.clamp_(-params.heading_command_limit, params.heading_command_limit)
    heading_rate_command = wrap_to_pi_(heading_ref.sub_(heading)).mul_(params.kp_heading)
    slip_angle = (length / 2).div_(v).mul_(heading_rate_command).clamp_(-1.0, 1.0).asin_()
    steering = slip_angle.tan_().mul_(2).atan_()
    return steering.clamp_(-params.max_steering_angle, params.max_steering_angle)
