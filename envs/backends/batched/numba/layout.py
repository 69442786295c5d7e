"""The kernel's data: its parameters, its argument tuples and its workspace rows.

numba takes NamedTuples of arrays (and scalars) as arguments, so each group of the kernel's
arguments is one NamedTuple written once here: `KernelParams` (the model constants),
`VehicleArrays` (a state's vehicle fields), `WorldArrays` (the other per-world inputs and
outputs) and `TickArrays` (a whole tick's bookkeeping). `KernelParams` is generated from
`Params`' own fields, so a constant added to `Params` reaches the kernel by construction.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import numpy as np
from reflexdrive.envs.backends.batched.state import Params

WORLDS_PER_TASK = 16
"""Worlds per parallel work item (each work item has its own workspace)."""
MAX_LANES = 63
"""Most lane slots `L` (a vehicle's lanes are the bits of an int64)."""

# Rows of the float64 workspace `F (N_FLOAT, N)`: one world's vehicles, one row per field.
(X, Y, HEADING, SPEED, LENGTH, WIDTH, DIAGONAL, TARGET_SPEED, TIMER, BRAKING_DECEL, STEERING,
 ACCELERATION, IMPACT_X, IMPACT_Y,
 # per-substep IDM terms of `fleet_terms`
 COS, SIN, VX, VY, FREE, BASE) = range(20)
N_FLOAT = 20
# Rows of the int64 workspace `I (N_INT, N)` (bools as 0 / 1).
(VALID, KIND, LANE, TARGET_LANE, LANE_CHANGES, BRAKING, CRASHED, IMPACT_PENDING,
 # the neighbour index of `sort_by_x` / `lane_members`
 ORDER, START, MEMBER, SEEN) = range(12)
N_INT = 12
# Rows of the float64 world table `W (N_WORLD, B)` (integers as exact floats): each
# world's road, hazard plan, ego command pieces and active flag.
(LANE_COUNT, ROAD_LENGTH, SPEED_LIMIT, HAZARD_KIND, HAZARD_VEHICLE, HAZARD_ONSET,
 HAZARD_DECEL, HAZARD_LANE, HAZARD_SPEED, HAZARD_LATERAL_SPEED, FIRST_S, FIRST_A,
 FIRST_STEERING, SECOND_A, SECOND_STEERING, ACTIVE) = range(16)
N_WORLD = 16



DERIVED_PARAMS = ("two_sqrt_ab", "member_half_width", "reach")
"""Constants the kernel derives from `Params` (the last fields of `KernelParams`)."""

KernelParams = NamedTuple("KernelParams", [(f.name, float) for f in dataclasses.fields(Params)]
                          + [(name, float) for name in DERIVED_PARAMS])
KernelParams.__doc__ = """`Params` as the kernel reads them (a tuple numba can take): every
field of `Params`, in its order, then the derived constants of `DERIVED_PARAMS`, computed in
Python exactly as the torch path computes them: `two_sqrt_ab = 2 sqrt(a b)` [m/s^2],
`member_half_width = w/2 + margin` (on-lane test of `Road.neighbour_vehicles`) [m],
`reach = reachable_lanes * w` [m]."""


@functools.lru_cache(maxsize=16)
def kernel_params(params: Params) -> KernelParams:
    """The `KernelParams` of `params` (its fields by name, then the derived ones)."""
    return KernelParams(
        **{f.name: getattr(params, f.name) for f in dataclasses.fields(Params)},
        two_sqrt_ab=2 * math.sqrt(-params.comfort_acc_max * params.comfort_acc_min),
        member_half_width=params.lane_width / 2 + params.neighbour_margin,
        reach=params.reachable_lanes * params.lane_width)


class VehicleArrays(NamedTuple):
    """The vehicle fields of a `BatchedState` as numpy arrays, `(B, N)` (`position`,
    `impact`: `(B, N, 2)`), with the state's dtypes (float64, int64, bool); see
    `BatchedState` for each field. The kernel reads one of these and writes another, whose
    fields a substep never changes (`valid` ... `lane_changes`) are the input's arrays."""

    position: np.ndarray
    heading: np.ndarray
    speed: np.ndarray
    valid: np.ndarray
    length: np.ndarray
    width: np.ndarray
    diagonal: np.ndarray
    kind: np.ndarray
    lane: np.ndarray
    target_lane: np.ndarray
    target_speed: np.ndarray
    timer: np.ndarray
    lane_changes: np.ndarray
    braking: np.ndarray
    braking_decel: np.ndarray
    steering: np.ndarray
    acceleration: np.ndarray
    crashed: np.ndarray
    impact: np.ndarray
    impact_pending: np.ndarray


WRITTEN_FIELDS = ("position", "heading", "speed", "lane", "target_lane", "target_speed",
                  "timer", "braking", "braking_decel", "steering", "acceleration", "crashed",
                  "impact", "impact_pending")
"""The `VehicleArrays` fields a substep changes (the others are shared with the input)."""
ON_HAZARD = ("target_speed", "braking", "braking_decel")
"""Fields only a starting hazard changes (written only when one starts in the call)."""


class WorldArrays(NamedTuple):
    """The per-world inputs and outputs of a kernel call besides the vehicles.

    Attributes:
        substep: `(B,)` int64 substeps since reset, before the call.
        hint: `(B, N)` int64 a previous key order (read where `has_hint`).
        table: `(N_WORLD, B)` float64 world table (rows `LANE_COUNT` ... `ACTIVE`).
        first_s: `(S, B)` float64 [s], the ego's first piece in each of the `S` substeps.
        substep_out: `(B,)` int64 substeps since reset after the call (written).
        order: `(B, N)` int64 the last substep's key order (written).
    """

    substep: np.ndarray
    hint: np.ndarray
    table: np.ndarray
    first_s: np.ndarray
    substep_out: np.ndarray
    order: np.ndarray


class TickArrays(NamedTuple):
    """A whole tick's episode bookkeeping (`tick_cpu`; empty arrays for `step_cpu`).

    Attributes:
        duration: `(B,)` int64 episode length [substeps].
        trigger_range: `(B,)` float64 stopped-vehicle trigger range [m].
        onset: `(B,)` int64 hazard onset substep, -1 while unknown (updated in place).
        hazard_kind: `(B,)` int64 hazard code of the tracker.
        hazard_vehicle: `(B,)` int64 slot of the hazard vehicle, -1 if none.
        alive: `(B,)` bool, still running after the tick (written).
        ego_speed: `(S, B)` float64 the ego's speed after each substep run [m/s] (written).
        integrated: `(S, B)` bool, substep `k` ran in world `b` (written).
        onset_poses: `(B, 10)` float64 the ego's then the hazard vehicle's
            `envs.criticality.POSE_FIELDS` at the onset boundary, where it fell within the
            tick (written there; NaN hazard columns if its slot is empty; untouched
            elsewhere).
    """

    duration: np.ndarray
    trigger_range: np.ndarray
    onset: np.ndarray
    hazard_kind: np.ndarray
    hazard_vehicle: np.ndarray
    alive: np.ndarray
    ego_speed: np.ndarray
    integrated: np.ndarray
    onset_poses: np.ndarray
