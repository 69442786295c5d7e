"""One world and all worlds in the kernel: the hazard trigger, the episode-end and onset
checks, `substep_task` (the phases of a substep on a few worlds' workspaces) and the parallel
driver `substep_worlds`."""

from __future__ import annotations

import math

import numpy as np
from reflexdrive.envs.backends.batched.numba.collision import ego_collisions
from reflexdrive.envs.backends.batched.numba.jit import jit, prange
from reflexdrive.envs.backends.batched.numba.layout import (
    ACCELERATION,
    ACTIVE,
    BRAKING,
    BRAKING_DECEL,
    CRASHED,
    DIAGONAL,
    FIRST_A,
    FIRST_STEERING,
    HAZARD_DECEL,
    HAZARD_KIND,
    HAZARD_LANE,
    HAZARD_LATERAL_SPEED,
    HAZARD_ONSET,
    HAZARD_SPEED,
    HAZARD_VEHICLE,
    HEADING,
    IMPACT_PENDING,
    IMPACT_X,
    IMPACT_Y,
    KIND,
    LANE,
    LANE_CHANGES,
    LANE_COUNT,
    LENGTH,
    N_FLOAT,
    N_INT,
    ORDER,
    ROAD_LENGTH,
    SECOND_A,
    SECOND_STEERING,
    SPEED,
    SPEED_LIMIT,
    STEERING,
    TARGET_LANE,
    TARGET_SPEED,
    TIMER,
    VALID,
    WIDTH,
    X,
    Y,
)
from reflexdrive.envs.backends.batched.numba.neighbours import lane_members, sort_by_x
from reflexdrive.envs.backends.batched.numba.traffic import fleet_terms, traffic_act
from reflexdrive.envs.backends.batched.numba.vehicle import (
    ego_step,
    lane_change_slot,
    traffic_step,
)
from reflexdrive.envs.backends.batched.state import (
    BRAKING_LEAD_KIND,
    CUT_IN,
    IDM_KIND,
    LEAD_BRAKE,
    NO_HAZARD,
    STOPPED_VEHICLE,
)
from reflexdrive.envs.hazards import TRIGGER_SLACK_M


@jit()
def trigger_hazard(F, I, substep, hazard_kind, vehicle, onset, decel, target_lane,
                    target_speed):
    """`HighwayBackend._trigger_hazard`: start the scripted hazard at its onset substep.

    Lead brake: the braking lead (slot `vehicle`) starts braking at `decel` [m/s^2]. Cut
    in: the vehicle steers to `target_lane` (IDM vehicles) at `target_speed` [m/s].
    """
    if onset < 0 or substep != onset or vehicle < 0 or vehicle >= F.shape[1]:
        return
    kind = I[KIND, vehicle]
    if hazard_kind == LEAD_BRAKE:
        if kind == BRAKING_LEAD_KIND:
            I[BRAKING, vehicle] = True
        F[BRAKING_DECEL, vehicle] = decel
    elif hazard_kind == CUT_IN:
        if kind == IDM_KIND or kind == BRAKING_LEAD_KIND:
            I[TARGET_LANE, vehicle] = target_lane
        F[TARGET_SPEED, vehicle] = target_speed



@jit()
def ego_on_road(p, F, I, road_length):
    """`BatchedBackend.ego_on_road` of the world in the workspace: the ego's centre on its
    lane (`road.lane_coordinates` then `road.on_lane`, same float operations)."""
    along, offset = F[X, 0], F[Y, 0] - I[LANE, 0] * p.lane_width
    vl = p.lane_vehicle_length
    return abs(offset) <= p.lane_width / 2 + 0.0 and along >= -vl and along < road_length + vl


@jit()
def stopped_vehicle_onset(F, I, hazard_kind, vehicle, trigger_range, onset, substep):
    """`hazards.update_onsets` for the world in the workspace: the onset substep of a
    stopped-vehicle hazard (`substep` the first time its footprint reaches the sensors:
    `envs.hazards.sensor_reach`, same operations, within `trigger_range` [m] plus
    `TRIGGER_SLACK_M`), else `onset` unchanged (-1 while unknown)."""
    slots = F.shape[1]
    if hazard_kind != STOPPED_VEHICLE or onset >= 0 or vehicle < 0 or vehicle >= slots:
        return onset
    if not I[VALID, vehicle]:
        return onset
    dx, dy = F[X, vehicle] - F[X, 0], F[Y, vehicle] - F[Y, 0]
    c, s = math.cos(F[HEADING, 0]), math.sin(F[HEADING, 0])
    x = dx * c + dy * s
    y = dy * c - dx * s
    relative = F[HEADING, vehicle] - F[HEADING, 0]
    cr, sr = abs(math.cos(relative)), abs(math.sin(relative))
    half_x = 0.5 * F[LENGTH, vehicle] * cr + 0.5 * F[WIDTH, vehicle] * sr
    half_y = 0.5 * F[LENGTH, vehicle] * sr + 0.5 * F[WIDTH, vehicle] * cr
    reach = max(max(abs(x) - half_x, abs(y) - half_y), 0.0)
    return substep if reach <= trigger_range + TRIGGER_SLACK_M else onset


@jit()
def record_onset_poses(F, I, vehicle, poses, b):
    """Write the ego's and the hazard vehicle's (slot `vehicle`) pose (`x, y, heading,
    speed, length`) from the workspace into `poses[b]` (NaN for an empty slot)."""
    for column, j in ((0, 0), (5, vehicle)):
        present = 0 <= j < F.shape[1] and I[VALID, j] != 0
        for k, row in enumerate((X, Y, HEADING, SPEED, LENGTH)):
            poses[b, column + k] = F[row, j] if present else np.nan


@jit()
def substep_task(p, first_world, last_world, vehicles, out, worlds, tick, has_hint,
                 lane_slots, hazard_writable, track, F, I, corners):
    """`S = worlds.first_s.shape[0]` substeps of worlds `first_world .. last_world - 1` (one
    parallel work item).

    For each world `b`: load its input rows (`vehicles`, `VehicleArrays`) into the workspace
    `F (N_FLOAT, N)`, `I (N_INT, N)`; while `worlds.table[ACTIVE, b]`, run the phases of the
    package docstring on them `S` times, substep `k` with the ego's first piece lasting
    `worlds.first_s[k, b]` [s] (`corners`: `(2, 4, 2)` scratch); store its output rows once
    into `out` (`target_speed`, `braking`, `braking_decel` only if `hazard_writable`), its
    substep count into `worlds.substep_out` and its last key order into `worlds.order`.
    `worlds.hint` is the previous key order, read if `has_hint`; `lane_slots` is `L`.

    With `track` (a whole tick, `tick_cpu`), after each substep the world's episode
    bookkeeping of the vector env runs on `tick` (`TickArrays`): the stopped-vehicle onset
    (`tick.onset`, in place), the ego's speed (`tick.ego_speed[k, b]`, for the reward,
    and `tick.integrated[k, b]`), and the world stops (`tick.alive[b]` cleared) once its
    ego crashed, left the road or reached `tick.duration[b]` substeps.
    """
    slots = vehicles.valid.shape[1]
    v, W, FS = vehicles, worlds.table, worlds.first_s
    for b in range(first_world, last_world):
        for j in range(slots):
            F[X, j], F[Y, j] = v.position[b, j, 0], v.position[b, j, 1]
            F[HEADING, j], F[SPEED, j] = v.heading[b, j], v.speed[b, j]
            F[LENGTH, j], F[WIDTH, j] = v.length[b, j], v.width[b, j]
            F[DIAGONAL, j] = v.diagonal[b, j]
            F[TARGET_SPEED, j], F[TIMER, j] = v.target_speed[b, j], v.timer[b, j]
            F[BRAKING_DECEL, j] = v.braking_decel[b, j]
            F[STEERING, j], F[ACCELERATION, j] = v.steering[b, j], v.acceleration[b, j]
            F[IMPACT_X, j], F[IMPACT_Y, j] = v.impact[b, j, 0], v.impact[b, j, 1]
            I[VALID, j], I[KIND, j] = v.valid[b, j], v.kind[b, j]
            I[LANE_CHANGES, j] = v.lane_changes[b, j]
            I[LANE, j], I[TARGET_LANE, j] = v.lane[b, j], v.target_lane[b, j]
            I[BRAKING, j], I[CRASHED, j] = v.braking[b, j], v.crashed[b, j]
            I[IMPACT_PENDING, j] = v.impact_pending[b, j]
            I[ORDER, j] = worlds.hint[b, j] if has_hint else j
        step = worlds.substep[b]
        active = W[ACTIVE, b] != 0
        lane_count, road_length = int(W[LANE_COUNT, b]), W[ROAD_LENGTH, b]
        for k in range(FS.shape[0]):
            if not active:
                break
            trigger_hazard(F, I, step, int(W[HAZARD_KIND, b]), int(W[HAZARD_VEHICLE, b]),
                           int(W[HAZARD_ONSET, b]), W[HAZARD_DECEL, b],
                           int(W[HAZARD_LANE, b]), W[HAZARD_SPEED, b])
            fleet_terms(p, F, I, W[SPEED_LIMIT, b])
            count_x = sort_by_x(F, I)
            lane_members(p, F, I, road_length, lane_slots)
            traffic_act(p, F, I, count_x, lane_count, road_length, lane_slots)
            cutter = lane_change_slot(p, I, step, int(W[HAZARD_KIND, b]),
                                      int(W[HAZARD_VEHICLE, b]), int(W[HAZARD_ONSET, b]),
                                      W[HAZARD_LATERAL_SPEED, b])
            traffic_step(p, F, I, road_length, lane_count, cutter, step - int(W[HAZARD_ONSET, b]),
                         W[HAZARD_LATERAL_SPEED, b], int(W[HAZARD_LANE, b]))
            ego_step(p, F, I, FS[k, b], W[FIRST_A, b], W[FIRST_STEERING, b],
                     W[SECOND_A, b], W[SECOND_STEERING, b], road_length, lane_count)
            ego_collisions(p, F, I, corners)
            step += 1
            if track:
                tick.onset[b] = stopped_vehicle_onset(
                    F, I, tick.hazard_kind[b], tick.hazard_vehicle[b], tick.trigger_range[b],
                    tick.onset[b], step)
                if tick.onset[b] == step and tick.hazard_kind[b] != NO_HAZARD:
                    record_onset_poses(F, I, tick.hazard_vehicle[b], tick.onset_poses, b)
                tick.ego_speed[k, b] = F[SPEED, 0]
                tick.integrated[k, b] = True
                if I[CRASHED, 0] or not ego_on_road(p, F, I, road_length) \
                        or step >= tick.duration[b]:
                    active = False
        worlds.substep_out[b] = step
        if track:
            tick.alive[b] = active
        for j in range(slots):
            out.position[b, j, 0], out.position[b, j, 1] = F[X, j], F[Y, j]
            out.heading[b, j], out.speed[b, j] = F[HEADING, j], F[SPEED, j]
            out.lane[b, j], out.target_lane[b, j] = I[LANE, j], I[TARGET_LANE, j]
            out.timer[b, j] = F[TIMER, j]
            out.steering[b, j], out.acceleration[b, j] = F[STEERING, j], F[ACCELERATION, j]
            out.crashed[b, j] = I[CRASHED, j]
            out.impact[b, j, 0], out.impact[b, j, 1] = F[IMPACT_X, j], F[IMPACT_Y, j]
            out.impact_pending[b, j] = I[IMPACT_PENDING, j]
            worlds.order[b, j] = I[ORDER, j]
            if hazard_writable:
                out.target_speed[b, j] = F[TARGET_SPEED, j]
                out.braking[b, j] = I[BRAKING, j]
                out.braking_decel[b, j] = F[BRAKING_DECEL, j]


@jit(parallel=True)
def substep_worlds(p, vehicles, out, worlds, tick, has_hint, lane_slots, hazard_writable,
                   track, per_task):
    """All `B` worlds: `numba.prange` over work items of `per_task` worlds (`substep_task`,
    each with its own workspace rows `F (N_FLOAT, N)`, `I (N_INT, N)`).

    Args:
        p: `KernelParams`.
        vehicles: the input state's `VehicleArrays` (not modified).
        out: the output `VehicleArrays` (the fields of `WRITTEN_FIELDS` are written; those
            of `ON_HAZARD` only if `hazard_writable`).
        worlds: `WorldArrays` (substep counts, hint, world table, first pieces; outputs).
        tick: `TickArrays` (read and written if `track`; any sizes otherwise).
        has_hint, lane_slots, hazard_writable, track: see `substep_task`.
        per_task: worlds per work item.
    """
    batch, slots = vehicles.valid.shape
    tasks = (batch + per_task - 1) // per_task
    for task in prange(tasks):
        F = np.empty((N_FLOAT, slots))
        I = np.empty((N_INT, slots), dtype=np.int64)
        corners = np.empty((2, 4, 2))
        substep_task(p, task * per_task, min(batch, (task + 1) * per_task), vehicles, out,
                     worlds, tick, has_hint, lane_slots, hazard_writable, track, F, I, corners)
