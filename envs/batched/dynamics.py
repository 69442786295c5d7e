"""One substep of `B` worlds as a pure function: `step(params, state, commands) -> state`.

The order is `HighwayBackend.substep`'s:

1. `trigger_hazards`: a lead-brake or cut-in hazard starts when the substep index equals its
   onset substep;
2. `traffic_act`: every vehicle acts in `road.vehicles` order (the ego's act is a no-op;
   traffic runs IDM + MOBIL, see `envs.batched.traffic`);
3. `traffic_step`: every vehicle but the ego steps `dt` (IDM vehicles advance their MOBIL
   timer first);
4. `ego_piece` twice: the ego applies `commands.first` for `first_s`, then
   `commands.second` for `dt - first_s` (a zero-length piece does nothing);
5. `ego_collisions`: the ego against every other vehicle (`envs.batched.collision`).

Everything is vectorised over worlds and vehicle slots and runs on any torch device. The
building blocks are re-exported here: `vehicle_step`, `clip_actions`, `steering_control`,
`idm_acceleration`, `desired_gap`, `neighbour_vehicles`, `mobil`, `change_lane_policy`,
`closest_lane`, `polygons_intersecting`.
"""

from __future__ import annotations

import torch

from envs.batched.collision import ego_collisions, polygons_intersecting, rectangle_corners
from envs.batched.road import closest_lane, lane_coordinates, not_zero, on_lane, wrap_to_pi
from envs.batched.state import (BRAKING_LEAD_KIND, CUT_IN, EGO_KIND, IDM_KIND, LEAD_BRAKE,
                                BatchedState, EgoCommands, Params)
from envs.batched.traffic import (change_lane_policy, desired_gap, idm_acceleration, mobil,
                                  neighbour_vehicles, traffic_act)
from envs.batched.vehicle import clip_actions, steering_control, vehicle_step

__all__ = [
    "step", "trigger_hazards", "traffic_act", "traffic_step", "ego_piece", "ego_collisions",
    "vehicle_step", "clip_actions", "steering_control", "idm_acceleration", "desired_gap",
    "neighbour_vehicles", "mobil", "change_lane_policy", "closest_lane", "lane_coordinates",
    "on_lane", "not_zero", "wrap_to_pi", "polygons_intersecting", "rectangle_corners",
]


def trigger_hazards(state: BatchedState) -> BatchedState:
    """`HighwayBackend._trigger_hazard`: start planned hazards at the start of their substep.

    Where `substep == hazard.onset_substep`:

    - lead brake: the braking lead (slot `hazard.vehicle`) starts braking at `hazard.decel`;
    - cut in: the vehicle's target lane becomes `hazard.target_lane` (IDM vehicles steer to
      it) and its target speed `hazard.target_speed` [m/s].
    """
    hazard = state.hazard
    fires = (hazard.onset_substep >= 0) & (state.substep == hazard.onset_substep)
    ids = torch.arange(state.num_slots, device=state.device)
    is_vehicle = ids[None, :] == hazard.vehicle[:, None]                     # (B, N)
    brake = (fires & (hazard.kind == LEAD_BRAKE))[:, None] & is_vehicle
    cut = (fires & (hazard.kind == CUT_IN))[:, None] & is_vehicle
    steers = cut & ((state.kind == IDM_KIND) | (state.kind == BRAKING_LEAD_KIND))
    return state.replace(
        braking=state.braking | (brake & (state.kind == BRAKING_LEAD_KIND)),
        braking_decel=torch.where(brake, hazard.decel[:, None], state.braking_decel),
        target_lane=torch.where(steers, hazard.target_lane[:, None], state.target_lane),
        target_speed=torch.where(cut, hazard.target_speed[:, None], state.target_speed),
    )


def _select(mask: torch.Tensor, new: tuple, old: tuple) -> list:
    """Elementwise `where(mask, new_i, old_i)`; `mask` broadcasts over trailing vector dims."""
    out = []
    for a, b in zip(new, old):
        m = mask.reshape(mask.shape + (1,) * (b.dim() - mask.dim()))
        out.append(torch.where(m, a, b))
    return out


def traffic_step(params: Params, state: BatchedState) -> BatchedState:
    """Every valid vehicle but the ego steps `dt` (`IDMVehicle.step` / `Vehicle.step`).

    IDM vehicles first advance their MOBIL timer, `timer += dt` [s]; then the bicycle model
    (`vehicle_step`) with the action chosen by `traffic_act` (static vehicles keep their
    zero action). Slots `(B, N)` that are the ego or padding are left as they are.

    Returns:
        the state with the traffic's pose `(B, N, 2)` [m] / `(B, N)` [rad], speed [m/s],
        lane, applied action, timer, `crashed` and `impact_pending` updated.
    """
    moves = state.valid & (state.kind != EGO_KIND)
    idm = moves & ((state.kind == IDM_KIND) | (state.kind == BRAKING_LEAD_KIND))
    result = vehicle_step(params, state.road, state.position, state.heading, state.speed,
                          state.length, state.steering, state.acceleration, state.crashed,
                          state.impact, state.impact_pending, params.dt)
    old = (state.position, state.heading, state.speed, state.lane, state.steering,
           state.acceleration, state.crashed, state.impact_pending)
    (position, heading, speed, lane, steering, acceleration, crashed,
     impact_pending) = _select(moves, tuple(result), old)
    return state.replace(
        timer=torch.where(idm, state.timer + params.dt, state.timer),
        position=position, heading=heading, speed=speed, lane=lane, steering=steering,
        acceleration=acceleration, crashed=crashed, impact_pending=impact_pending)


def ego_piece(params: Params, state: BatchedState, duration: torch.Tensor,
              command: torch.Tensor) -> BatchedState:
    """The ego applies `command` for `duration` (one piece of a substep).

    Brakes stop the car, they do not reverse it: `a = max(a_cmd, -max(v, 0) / duration)`,
    then `vehicle_step` (which applies `clip_actions` and a pending impact). Worlds with
    `duration == 0` are left untouched (no act, no step).

    Args:
        duration: `(B,)` [s], in `[0, dt]`; command: `(B, 2)` `[acceleration m/s^2,
        steering rad]`.
    """
    active = duration > 0
    if not bool(active.any()):
        return state
    speed = state.speed[:, 0]
    safe_duration = torch.where(active, duration, torch.ones_like(duration))
    acceleration = torch.maximum(command[:, 0], -torch.clamp(speed, min=0.0) / safe_duration)
    result = vehicle_step(params, state.road, state.position[:, 0], state.heading[:, 0], speed,
                          state.length[:, 0], command[:, 1], acceleration, state.crashed[:, 0],
                          state.impact[:, 0], state.impact_pending[:, 0], duration)
    names = ("position", "heading", "speed", "lane", "steering", "acceleration", "crashed",
             "impact_pending")
    old = tuple(getattr(state, name)[:, 0] for name in names)
    changes = {}
    for name, value in zip(names, _select(active, tuple(result), old)):
        full = getattr(state, name).clone()
        full[:, 0] = value
        changes[name] = full
    return state.replace(**changes)


def step(params: Params, state: BatchedState, commands: EgoCommands) -> BatchedState:
    """Advance every world by one substep `dt` (see the module docstring for the order).

    Args:
        params: the model constants (`params.dt` is the substep [s]).
        state: the worlds at substep `k`.
        commands: the ego's pieces: `first_s (B,)` [s] in `[0, dt]`, `first`, `second`
            `(B, 2)` `[acceleration m/s^2, steering rad]`.

    Returns:
        the worlds at substep `k + 1`.
    """
    state = trigger_hazards(state)
    state = traffic_act(params, state)
    state = traffic_step(params, state)
    state = ego_piece(params, state, commands.first_s, commands.first)
    state = ego_piece(params, state, params.dt - commands.first_s, commands.second)
    state = ego_collisions(params, state)
    return state.replace(substep=state.substep + 1)
