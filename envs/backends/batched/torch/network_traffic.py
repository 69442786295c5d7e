"""One substep of `B` worlds on a road network: `network_step(params, tables, state, command)`.

The order is `HighwayBackend.substep`'s without hazards, and without collision detection
unless asked (`collisions`: phase 3, every pair, as the numba kernel; otherwise impacts and
crashes set elsewhere are applied and honoured):

1. `network_act`: every IDM vehicle (valid, not crashed) follows its road
   (`ControlledVehicle.follow_road`: past `length - l_v / 2` of its target lane it takes
   `next_lane`, see `torch.network.next_lane`), steers to its target lane
   (`steering_control`) and takes the IDM acceleration behind its front vehicle on its
   current lane, and the smaller of that and the one behind the front vehicle on its
   target lane where the two differ (`IDMVehicle.act` with MOBIL disabled);
2. every vehicle but the ego and the obstacles steps `dt` (`Vehicle.step`), then the ego
   applies its command for `dt` (brakes stop it, they do not reverse it); every mover's
   lane is then its closest lane.

Everything is vectorised over worlds and slots (dense `(B, N, N)` neighbour search) and
runs on any torch device.
"""

from __future__ import annotations

import math

import torch
from highway_env.vehicle.controller import ControlledVehicle
from reflexdrive.envs.backends.batched.lanes import LaneTables
from reflexdrive.envs.backends.batched.network_state import (
    OBSTACLE_KIND,
    NetworkState,
    mobil_free,
)
from reflexdrive.envs.backends.batched.state import IDM_KIND, Params
from reflexdrive.envs.backends.batched.torch.collision import pair_collisions
from reflexdrive.envs.backends.batched.torch.network import (
    closest_lane,
    heading_at,
    local_coordinates,
    next_lane,
    on_lane,
    wrap_to_pi,
)
from reflexdrive.envs.backends.batched.torch.road import not_zero
from reflexdrive.envs.backends.batched.torch.traffic import idm_acceleration
from reflexdrive.envs.backends.batched.torch.vehicle import bicycle_step

from reflexdrive.common.validation import ConfigError

TAU_PURSUIT_S = float(ControlledVehicle.TAU_PURSUIT)
"""`ControlledVehicle.TAU_PURSUIT`: the steering looks `v * tau` ahead for the lane heading [s]."""


def network_steering(params: Params, tables: LaneTables, position: torch.Tensor,
                     heading: torch.Tensor, speed: torch.Tensor, length: torch.Tensor,
                     target_lane: torch.Tensor) -> torch.Tensor:
    """`ControlledVehicle.steering_control` to a lane of the network [rad].

    With `(s, r)` the lane coordinates on `target_lane` and `v = not_zero(speed)`:

        psi_ref = heading_at(s + v tau) + clip(asin(clip(-K_lat r / v, -1, 1)), -pi/4, pi/4)
        delta   = clip(atan(2 tan(asin(clip(l / 2 / v K_psi wrap(psi_ref - psi), -1, 1)))),
                       -delta_max, delta_max)

    (`speed` itself, not `not_zero(speed)`, in the look-ahead, as highway-env).

    Args:
        position `(..., 2)` [m]; heading [rad], speed [m/s], length [m], target_lane (int64
        lane rows): `(...)`.
    """
    s, r = local_coordinates(tables, target_lane, position)
    future_heading = heading_at(tables, target_lane, s + speed * TAU_PURSUIT_S)
    v = not_zero(speed, params.not_zero_eps)
    command = torch.asin(torch.clamp(-params.kp_lateral * r / v, -1.0, 1.0))
    heading_ref = future_heading + torch.clamp(command, -params.heading_command_limit,
                                               params.heading_command_limit)
    rate = params.kp_heading * wrap_to_pi(heading_ref - heading)
    slip = torch.asin(torch.clamp(length / 2 / v * rate, -1.0, 1.0))
    steering = torch.atan(2 * torch.tan(slip))
    return torch.clamp(steering, -params.max_steering_angle, params.max_steering_angle)


def front_vehicles(params: Params, tables: LaneTables, state: NetworkState,
                   search_lane: torch.Tensor) -> torch.Tensor:
    """`Road.neighbour_vehicles(v, search_lane)[0]`: each vehicle's front vehicle, `(B, N)`
    int64 slot or -1.

    On `search_lane` (row per vehicle `(B, N)`), with `s` the vehicle's own longitudinal
    coordinate, every other valid slot `j` on that lane (`on_lane` with a 1 m margin) and
    `s_j >= s` is a candidate; the smallest `s_j` wins, the last slot on a tie (highway-env
    updates on `s_j <= s_front`, scanning vehicles then objects in slot order).
    """
    batch, slots = state.valid.shape
    lanes = search_lane[:, :, None].expand(batch, slots, slots)
    s_all, r_all = local_coordinates(tables, lanes, state.position[:, None, :, :])
    own = torch.diagonal(s_all, dim1=1, dim2=2)[:, :, None]
    candidate = (on_lane(tables, lanes, s_all, r_all, params.neighbour_margin,
                         params.lane_vehicle_length)
                 & state.valid[:, None, :] & (s_all >= own)
                 & ~torch.eye(slots, dtype=torch.bool, device=own.device))
    key = torch.where(candidate, s_all, math.inf)
    nearest = key.min(dim=-1, keepdim=True).values
    ties = candidate & (key == nearest)
    index = torch.arange(slots, device=own.device)
    last = torch.where(ties, index, -1).max(dim=-1).values
    return last


def _idm_behind(params: Params, tables: LaneTables, state: NetworkState,
                front: torch.Tensor) -> torch.Tensor:
    """`IDMVehicle.acceleration(v, front)` for every slot `(B, N)` [m/s^2]: the speed limit
    and the distance `s_front - s` are those of `v`'s current lane (`v.lane`, whatever lane
    the front was searched on, as highway-env's `lane_distance_to`)."""
    has_front = front >= 0
    at = front.clamp(min=0)
    front_position = state.position.gather(1, at[..., None].expand(*at.shape, 2))
    s_front, _ = local_coordinates(tables, state.lane, front_position)
    s_own, _ = local_coordinates(tables, state.lane, state.position)
    front_speed = state.speed.gather(1, at)
    front_heading = state.heading.gather(1, at)
    return idm_acceleration(params, state.speed, state.heading, state.target_speed,
                            tables.speed_limit[state.lane], s_front - s_own, front_speed,
                            front_heading, has_front)


def network_act(params: Params, tables: LaneTables, state: NetworkState) -> NetworkState:
    """Step 1 of the module docstring: new target lanes, route pointers, and the IDM
    vehicles' steering [rad] and acceleration [m/s^2].

    Raises ConfigError where a vehicle has MOBIL on a network where it could act, or yields
    (`NetworkState.yield_substep`), or the road searches connected lanes (`LaneTables.
    connected`, the curve): the numba kernel runs those."""
    acting = state.valid & (state.kind == IDM_KIND) & ~state.crashed
    if bool((acting & state.lane_changes).any()) and not mobil_free(tables):
        raise ConfigError("vehicles.lane_changes", True, "the torch network substep has no "
                          "MOBIL on multi-lane roads: use the numba kernel "
                          "(network_step_cpu) or False")
    if bool((tables.connected >= 0).any()):
        raise ConfigError("road.kind", "curve", "the torch network substep has no "
                          "connected-lane neighbours: use the numba kernel")
    if bool((state.yield_substep >= 0).any()):
        raise ConfigError("vehicles.yield_substep", "set", "the torch network substep has "
                          "no yielding vehicles: use the numba kernel (network_step_cpu)")
    target = state.target_lane
    route_next = state.route_next
    s_target, _ = local_coordinates(tables, target, state.position)
    ending = acting & (s_target > tables.length[target] - params.lane_vehicle_length / 2)
    if bool(ending.any()):
        rows = torch.nonzero(ending.reshape(-1)).flatten()
        new_lane, new_next = next_lane(
            tables, target.reshape(-1)[rows], state.position.reshape(-1, 2)[rows],
            state.route_road.reshape(-1, state.route_road.shape[-1])[rows],
            state.route_lane.reshape(-1, state.route_lane.shape[-1])[rows],
            route_next.reshape(-1)[rows])
        target = target.clone()
        target.reshape(-1)[rows] = new_lane
        route_next = route_next.clone()
        route_next.reshape(-1)[rows] = new_next
    steering = network_steering(params, tables, state.position, state.heading, state.speed,
                                state.length, target)
    acceleration = _idm_behind(params, tables, state, front_vehicles(params, tables, state,
                                                                     state.lane))
    changing = state.lane != target
    if bool((changing & acting).any()):
        on_target = _idm_behind(params, tables, state,
                                front_vehicles(params, tables, state, target))
        acceleration = torch.where(changing, torch.minimum(acceleration, on_target),
                                   acceleration)
    acceleration = torch.clamp(acceleration, -params.acc_max, params.acc_max)
    return state.replace(target_lane=target, route_next=route_next,
                         steering=torch.where(acting, steering, state.steering),
                         acceleration=torch.where(acting, acceleration, state.acceleration))


def network_step(params: Params, tables: LaneTables, state: NetworkState,
                 command: torch.Tensor, collisions: bool = False) -> NetworkState:
    """One substep of every world (see the module docstring).

    Args:
        command: `(B, 2)` the ego's `[acceleration m/s^2, steering rad]` for the substep.
        collisions: then run phase 3, every pair's collisions (`collision.pair_collisions`,
            the numba kernel's `network_collisions`).
    """
    state = network_act(params, tables, state)
    dt = params.dt
    ego_brake = -torch.clamp(state.speed[:, 0], min=0.0) / dt
    steering = state.steering.clone()
    acceleration = state.acceleration.clone()
    steering[:, 0] = command[:, 1]
    acceleration[:, 0] = torch.maximum(command[:, 0], ego_brake)
    moving = state.valid & (state.kind != OBSTACLE_KIND)
    moved = bicycle_step(params, state.position, state.heading, state.speed, state.length,
                         steering, acceleration, state.crashed, state.impact,
                         state.impact_pending & moving, dt)
    position = torch.where(moving[..., None], moved.position, state.position)
    heading = torch.where(moving, moved.heading, state.heading)
    lane = torch.where(moving, closest_lane(tables, position, heading), state.lane)
    state = state.replace(
        position=position, heading=heading,
        speed=torch.where(moving, moved.speed, state.speed), lane=lane,
        steering=torch.where(moving, moved.steering, steering),
        acceleration=torch.where(moving, moved.acceleration, acceleration),
        crashed=torch.where(moving, moved.crashed, state.crashed),
        timer=torch.where(state.valid & (state.kind == IDM_KIND), state.timer + dt, state.timer),
        impact_pending=state.impact_pending & ~moving, substep=state.substep + 1)
    if collisions:
        state = pair_collisions(params, state, state.valid & (state.kind == OBSTACLE_KIND))
    return state
