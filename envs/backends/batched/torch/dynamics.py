"""One substep of `B` worlds as a pure function: `step(params, state, commands) -> state`.

The order is `HighwayBackend.substep`'s:

1. `trigger_hazards`: a lead-brake or cut-in hazard starts when the substep index equals its
   onset substep;
2. `traffic_act`: every vehicle acts in `road.vehicles` order (the ego's act is a no-op;
   traffic runs IDM + MOBIL, see `envs.backends.batched.torch.traffic`);
3. `traffic_step`: every vehicle but the ego steps `dt` (IDM vehicles advance their MOBIL
   timer first);
4. `ego_piece` twice: the ego applies `commands.first` for `first_s`, then
   `commands.second` for `dt - first_s` (a zero-length piece does nothing);
5. `ego_collisions`: the ego against every other vehicle (`envs.backends.batched.torch.collision`).

Everything is vectorised over worlds and vehicle slots and runs on any torch device.
`BatchedBackend` runs this function on CUDA (and for float32 states); for float64 states on
CPU it runs `envs.backends.batched.numba.step_cpu`, a numba kernel with the same signature
and semantics (per world, per vehicle scalar code; equal to this function to ~1e-13 and
exactly on every discrete field, `tests/envs/backends/test_batched_kernel.py`), unless
built with `kernel="torch"`. The building blocks are re-exported here: `vehicle_step`,
`clip_actions`, `steering_control`, `idm_acceleration`, `desired_gap`, `neighbour_vehicles`,
`mobil`, `change_lane_policy`, `closest_lane`, `polygons_intersecting`.

Cost model (CPU, float64; what the implementation is shaped by). At large `B` every
elementwise op over `(B, N)` streams megabytes, so the code keeps the number of such ops low:
per-vehicle terms are computed once per substep, fresh intermediates are updated in place,
`torch.where` on floats is replaced by exact `blend`s (`torch.where`'s CPU kernel is not
vectorised), ops never broadcast over the size-2 coordinate dim, and work that concerns few
vehicles (MOBIL decisions, the lane-change abort rule, the target-lane IDM of vehicles
changing lanes, clipped actions, collision candidates) runs on the rows `(world, slot)`
selected with `torch.nonzero`. Those selections (and a few `.any()` checks that skip no-op
work) synchronise with the host: cheap on CPU, a round trip per check on a GPU. Results are
the same as evaluating every formula densely, bit for bit, up to the last-ulp differences
between torch's vectorised kernels and their scalar tails (e.g. `pow` on the last
`numel % 8` elements), which make any torch code depend on tensor sizes at that level.
"""

from __future__ import annotations

import torch
from reflexdrive.envs.backends.batched.state import (
    BRAKING_LEAD_KIND,
    CUT_IN,
    EGO_KIND,
    IDM_KIND,
    LEAD_BRAKE,
    BatchedState,
    EgoCommands,
    Params,
    where_env,
)
from reflexdrive.envs.backends.batched.torch.collision import (
    ego_collisions,
    polygons_intersecting,
    rectangle_corners,
)
from reflexdrive.envs.backends.batched.torch.lane_change import profiled_cut_ins
from reflexdrive.envs.backends.batched.torch.road import (
    as_weight,
    blend,
    closest_lane,
    lane_coordinates,
    not_zero,
    on_lane,
    wrap_to_pi,
)
from reflexdrive.envs.backends.batched.torch.traffic import (
    change_lane_policy,
    desired_gap,
    idm_acceleration,
    mobil,
    neighbour_vehicles,
    traffic_act,
)
from reflexdrive.envs.backends.batched.torch.vehicle import (
    bicycle_step,
    clip_actions,
    steering_control,
    vehicle_step,
)

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

    A substep at which no world's hazard starts returns `state` itself.
    """
    hazard = state.hazard
    fires = (hazard.onset_substep >= 0) & (state.substep == hazard.onset_substep)
    if not bool(fires.any()):
        return state
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


def traffic_step(params: Params, state: BatchedState) -> BatchedState:
    """Every valid vehicle but the ego steps `dt` (`IDMVehicle.step` / `Vehicle.step`).

    IDM vehicles first advance their MOBIL timer, `timer += dt` [s]; then the bicycle model
    (`vehicle_step`) with the action chosen by `traffic_act` (static vehicles keep their
    zero action). Slots `(B, N)` that are the ego or padding are left as they are. A
    cut-in vehicle with a lateral speed moves along its profile instead while it runs
    (`envs.backends.batched.torch.lane_change.profiled_cut_ins`).

    The bicycle model runs on all `(B, N)` slots and the results are kept with exact
    float blends (`envs.backends.batched.torch.road.blend`); a padding slot's zero length
    gives a NaN heading rate there, which is zeroed before the blend drops it.

    Returns:
        the state with the traffic's pose `(B, N, 2)` [m] / `(B, N)` [rad], speed [m/s],
        lane, applied action, timer, `crashed` and `impact_pending` updated (all of them
        new tensors).
    """
    moves = state.valid & (state.kind != EGO_KIND)
    idm = moves & ((state.kind == IDM_KIND) | (state.kind == BRAKING_LEAD_KIND))
    result = vehicle_step(params, state.road, state.position, state.heading, state.speed,
                          state.length, state.steering, state.acceleration, state.crashed,
                          state.impact, state.impact_pending, params.dt)
    w = as_weight(moves, state.speed)
    position = torch.empty_like(state.position)
    for i in range(2):       # per coordinate: a size-2 last dim would defeat vectorisation
        torch.lerp(state.position[..., i], result.position[..., i], w, out=position[..., i])
    heading = blend(w, torch.nan_to_num(result.heading), state.heading)
    speed = blend(w, result.speed, state.speed)
    lane = torch.where(moves, result.lane, state.lane)
    profiled_cut_ins(params, state, position, heading, speed, lane, result.acceleration)
    return state.replace(
        timer=torch.add(state.timer, as_weight(idm, state.timer), alpha=params.dt),
        position=position,
        heading=heading,
        speed=speed,
        lane=lane,
        steering=blend(w, result.steering, state.steering),
        acceleration=blend(w, result.acceleration, state.acceleration),
        crashed=state.crashed | (state.impact_pending & moves),
        impact_pending=state.impact_pending & ~moves)


_EGO_FIELDS = ("position", "heading", "speed", "steering", "acceleration", "crashed",
               "impact_pending")
"""The ego's fields that a piece changes (besides its lane)."""


def _ego_piece_values(params: Params, state: BatchedState, ego: tuple,
                      duration: torch.Tensor, command: torch.Tensor) -> tuple:
    """One ego piece on the ego's values `ego` (`_EGO_FIELDS`, each `(B, ...)`).

    Returns the new values (the old ones where `duration == 0`); the lane is left to the
    caller (`closest_lane` of the final pose).
    """
    active = duration > 0
    if not bool(active.any()):
        return ego
    position, heading, speed, _, _, crashed, impact_pending = ego
    safe_duration = torch.where(active, duration, torch.ones_like(duration))
    acceleration = torch.maximum(command[:, 0], -torch.clamp(speed, min=0.0) / safe_duration)
    result = bicycle_step(params, position, heading, speed, state.length[:, 0], command[:, 1],
                          acceleration, crashed, state.impact[:, 0], impact_pending, duration)
    new = (result.position, result.heading, result.speed, result.steering,
           result.acceleration, result.crashed, result.impact_pending)
    if bool(active.all()):
        return new
    return tuple(_select(active, new, ego))


def _select(mask: torch.Tensor, new: tuple, old: tuple) -> list:
    """Elementwise `where(mask, new_i, old_i)`; `mask` broadcasts over trailing vector dims."""
    out = []
    for a, b in zip(new, old):
        m = mask.reshape(mask.shape + (1,) * (b.dim() - mask.dim()))
        out.append(torch.where(m, a, b))
    return out


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
    ego = tuple(getattr(state, name)[:, 0] for name in _EGO_FIELDS)
    values = _ego_piece_values(params, state, ego, duration, command)
    if values is ego:
        return state
    lane = torch.where(duration > 0, closest_lane(values[0], values[1], state.road, params),
                       state.lane[:, 0])
    changes = {}
    for name, value in zip(_EGO_FIELDS + ("lane",), values + (lane,)):
        full = getattr(state, name).clone()
        full[:, 0] = value
        changes[name] = full
    return state.replace(**changes)


def step(params: Params, state: BatchedState, commands: EgoCommands,
         active: torch.Tensor | None = None) -> BatchedState:
    """Advance every world by one substep `dt` (see the module docstring for the order).

    Args:
        params: the model constants (`params.dt` is the substep [s]).
        state: the worlds at substep `k`.
        commands: the ego's pieces: `first_s (B,)` [s] in `[0, dt]`, `first`, `second`
            `(B, 2)` `[acceleration m/s^2, steering rad]`.
        active: optional `(B,)` bool; worlds where it is False are returned as they are,
            substep counter included (`BatchedBackend.substep(active=...)`).

    Returns:
        the worlds at substep `k + 1`.
    """
    new = _step_all(params, state, commands)
    return new if active is None else where_env(active, new, state)


def _step_all(params: Params, state: BatchedState, commands: EgoCommands) -> BatchedState:
    """`step` of every world."""
    state = trigger_hazards(state)
    state = traffic_act(params, state)
    state = traffic_step(params, state)
    # The ego's two pieces (it reads only its own slot, which `traffic_step` left as it
    # was), written into the fresh tensors `traffic_step` returned.
    # Each world has a piece of positive duration (first_s in [0, dt]), so the ego's lane
    # is the closest lane of its final pose.
    ego = tuple(getattr(state, name)[:, 0] for name in _EGO_FIELDS)
    values = _ego_piece_values(params, state, ego, commands.first_s, commands.first)
    values = _ego_piece_values(params, state, values, params.dt - commands.first_s,
                               commands.second)
    lane = closest_lane(values[0], values[1], state.road, params)
    for name, value in zip(_EGO_FIELDS + ("lane",), values + (lane,)):
        getattr(state, name)[:, 0] = value
    state = ego_collisions(params, state)
    return state.replace(substep=state.substep + 1)
