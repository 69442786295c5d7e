"""The intersection's right-of-way rules: highway-env's `RegulatedRoad`, applied by the
highway backend at highway-env's cadence.

highway-env's intersection road (`IntersectionEnv._make_road`) is a `RegulatedRoad`: every
`int(1 / dt / REGULATION_FREQUENCY)` simulation steps (25 at 50 Hz: 2 Hz) its `step`
calls `enforce_road_rules` after `road.act()` and before the vehicles move:

1. every yielding vehicle is released (`YIELD_DURATION = 0`: a yield lasts one period):
   its target speed becomes its lane's speed limit;
2. every pair `i < j` of `road.vehicles` (slot order) whose constant-speed predictions
   (0.25 s to 2.75 s every 0.25 s: route followers along their route, `ControlledVehicle.
   predict_trajectory_constant_speed`; a plain `Vehicle` by its kinematic bicycle with
   its current steering and no acceleration, "constant_steering")
   come within `v_i.LENGTH` and whose rectangles (1.5 x length, 0.9 x width) have a corner,
   an edge midpoint or the centre inside the other's (`utils.rotated_rectangles_intersect`)
   is a conflict; `respect_priorities` picks who yields: the lower `lane.priority`, at
   equal priority the one behind (the larger `front_distance_to`);
3. the yielding vehicle, if it is a `ControlledVehicle` and not an `MDPVehicle`, gets
   target speed 0 (IDM brakes it to a stop) and `is_yielding`.

The highway backend never calls `road.step` (it steps the vehicles itself, the ego piece by
piece), so `regulate` calls the road's own `enforce_road_rules` at the same point of the
substep: after `road.act()`, at the substeps `k` (0-based) where `(k + 1) % period == 0`.
The ego is a plain `Vehicle`: like intersection-v0's `MDPVehicle` ego it never yields, and
others yield to it where the rules say so; unlike it, it is predicted by its current
steering (a plain `Vehicle`'s prediction), not along its route. A vehicle
with `VehicleInit.regulated` False (the crossing vehicle of intersection-cross-traffic,
which runs the stop line by design, and its twin, which yields by its own script) takes part
in the conflicts but never yields: `regulate` undoes what the rules did to it. Roads that
are not a `RegulatedRoad` (merge, roundabout, the straight and curved roads) have no rules.
The batched backend's kernel (`batched.numba.regulation`) computes the same decisions.
"""

from __future__ import annotations

from typing import Sequence

from highway_env.road.regulation import RegulatedRoad

REGULATED_KINDS = ("intersection",)
"""The `RoadSpec.kind`s whose road highway-env builds as a `RegulatedRoad`."""


def regulation_period(substep_s: float) -> int:
    """Substeps between two enforcements of the rules: `RegulatedRoad.step`'s
    `int(1 / dt / REGULATION_FREQUENCY)` with `dt = substep_s` [s] (25 at 50 Hz)."""
    return int(1 / substep_s / RegulatedRoad.REGULATION_FREQUENCY)


def regulation_due(substep_index, period: int):
    """Whether the rules run in the substep that starts at `substep_index` (0-based; an
    int, or an int array of one index per world: a bool array): `RegulatedRoad.step`
    counts its calls from 1 and runs them when the count is a multiple of `period`."""
    return (substep_index + 1) % period == 0


def regulate(road, exempt: Sequence) -> None:
    """`road.enforce_road_rules()` (highway-env's code) on a `RegulatedRoad`; then every
    vehicle of `exempt` that it made yield gets back its target speed and stops yielding
    (it still took part in the conflicts, as highway-env's non-controlled vehicles do)."""
    kept = [(vehicle, vehicle.target_speed) for vehicle in exempt]
    road.enforce_road_rules()
    for vehicle, target_speed in kept:
        if getattr(vehicle, "is_yielding", False):
            vehicle.target_speed = target_speed
            vehicle.is_yielding = False
            if hasattr(vehicle, "color"):
                del vehicle.color


__all__ = ["REGULATED_KINDS", "regulate", "regulation_due", "regulation_period"]
