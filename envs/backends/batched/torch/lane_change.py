"""The scripted lane change of a cut-in with a lateral speed (`HazardPlan.lateral_speed_mps`).

`envs.backends.highway.ProfiledCutInVehicle`'s `step` for `B` worlds: while the profile
runs, the cutter's lateral position follows `envs.scenarios.sinusoidal_lane_change` from
the centre of the lane next to its target lane to the target lane's centre, its
longitudinal speed integrates IDM's acceleration, and its heading points along its
velocity. It concerns one vehicle per world, so it runs on the rows `(world, slot)` of
the cutters that move this way in this substep.
"""

from __future__ import annotations

import math

import torch
from reflexdrive.envs.backends.batched.state import (
    CUT_IN,
    IDM_KIND,
    BatchedRoad,
    BatchedState,
    Params,
    take,
)
from reflexdrive.envs.backends.batched.torch.road import closest_lane

__all__ = ["profiled_cut_ins"]


def profiled_cut_ins(params: Params, state: BatchedState, position: torch.Tensor,
                     heading: torch.Tensor, speed: torch.Tensor, lane: torch.Tensor,
                     acceleration: torch.Tensor) -> None:
    """Overwrite, in place, the bicycle-model step of the cutters on their profile.

    A world's cutter (slot `hazard.vehicle`, an IDM vehicle) follows the profile in the
    substep from `k` to `k + 1` when its hazard is a cut-in with `lateral_speed > 0`,
    `k >= onset_substep`, it is valid and not crashed at `k`, and the profile has not
    ended: `phase_k = 2 v / w * ((k - onset) dt) < pi`. Then, with `t = (k + 1 - onset) dt`,
    `phase = min(2 v / w * t, pi)`, `side = sign(y_target - y)`:

        u = v_k cos(psi_k);  x += u dt;  y = y_target - side * w (1 + cos phase) / 2
        (+ a pending impact);  u += a dt;  v_lat = side * v sin phase (0 at phase = pi)
        psi = atan2(v_lat, u);  v = hypot(u, v_lat);  lane = closest lane

    Args:
        params: model constants; state: the worlds at substep `k` (before the step).
        position `(B, N, 2)` [m], heading [rad], speed [m/s], lane (int64): `(B, N)`, the
            fresh results of `traffic_step`'s bicycle step, overwritten at the cutters' rows.
        acceleration: `(B, N)` the applied (clipped) acceleration of that step [m/s^2].
    """
    hazard, slots = state.hazard, state.num_slots
    on = ((hazard.kind == CUT_IN) & (hazard.lateral_speed > 0) & (hazard.onset_substep >= 0)
          & (state.substep >= hazard.onset_substep) & (hazard.vehicle >= 0)
          & (hazard.vehicle < slots))
    if not bool(on.any()):
        return
    world = torch.nonzero(on).flatten()
    flat = world * slots + hazard.vehicle[world]
    lateral_speed = hazard.lateral_speed[world]
    rate = 2.0 * lateral_speed / params.lane_width
    steps = (state.substep - hazard.onset_substep)[world].to(position.dtype)
    moves = (take(state.valid, flat) & ~take(state.crashed, flat)
             & (take(state.kind, flat) == IDM_KIND) & (rate * (steps * params.dt) < math.pi))
    if not bool(moves.any()):
        return
    world, flat, lateral_speed = world[moves], flat[moves], lateral_speed[moves]
    rate, steps = rate[moves], steps[moves]
    x, y = take(state.position[..., 0], flat), take(state.position[..., 1], flat)
    u = take(state.speed, flat) * torch.cos(take(state.heading, flat))
    x = u * params.dt + x
    phase = torch.clamp(rate * ((steps + 1.0) * params.dt), max=math.pi)
    to_go = params.lane_width * ((1.0 + torch.cos(phase)) * 0.5)
    target_y = hazard.target_lane[world].to(position.dtype) * params.lane_width
    side = torch.sign(target_y - y)
    y = target_y - side * to_go
    pending = take(state.impact_pending, flat)
    if bool(pending.any()):
        x = torch.where(pending, x + take(state.impact[..., 0], flat), x)
        y = torch.where(pending, y + take(state.impact[..., 1], flat), y)
    u = take(acceleration, flat) * params.dt + u
    lateral = side * torch.where(phase < math.pi, lateral_speed * torch.sin(phase),
                                 torch.zeros_like(phase))
    new_heading = torch.atan2(lateral, u)
    road = state.road
    rows_road = BatchedRoad(road.lane_count[world], road.length[world],
                            road.speed_limit[world], road.lane_valid[world])
    new_position = torch.stack([x, y], dim=-1)
    position.reshape(-1, 2).index_copy_(0, flat, new_position)
    heading.reshape(-1).index_copy_(0, flat, new_heading)
    speed.reshape(-1).index_copy_(0, flat, torch.hypot(u, lateral))
    lane.reshape(-1).index_copy_(0, flat, closest_lane(new_position, new_heading, rows_road,
                                                       params))
