"""UN R157 (ALKS) test scenarios as ASAM's OSC-ALKS-scenarios parametrise them, as a grid.

Values from asam-oss/OSC-ALKS-scenarios, `LogicalScenarios/*_Variation.xosc` and their
`ConcreteScenarios/*_TEMPLATE.xosc` (docs/protocol.md cites each file):

- **lead-brake** (4.3_2 FollowLeadVehicleEmergencyBrake): VUT and lead at the same speed,
  bumper headway by speed (`LEAD_BRAKE_PAIRS`), the lead brakes at 6 m/s^2 to a stop.
- **cut-in** (4.4_1 CutInNoCollision, whose variation also holds the unavoidable 4.4_2
  cases): ego 20-60 km/h step 10; the cut-in vehicle slower by 10-50 km/h step 10; it
  starts its lane change when the bumper gap falls to dx0 = 0-60 m step 10, with peak
  lateral speed Vy = 0.5-3 m/s step 0.5 (a sinusoidal lane change, `dynamicsShape=
  "sinusoidal"`, `dynamicsDimension="rate"`: `HazardPlan.lateral_speed_mps`). The
  variation file is a full product; its template's constraints discard the rest: a
  positive cutter speed, and Vy below the cutter's speed (so Vy = 3 m/s is not run with a
  10 km/h cutter).
- **stationary** (4.2_1 FullyBlockingTarget): a stopped car in the lane, ego 5-60 km/h
  step 5; the onset is when it comes into sensor range. The variation runs it on five
  roads (`Road`: `ALKS_Road_straight.xodr`, `ALKS_Road_{left,right}_radius_{250,1000}m.xodr`,
  arcs of curvature 1/250 and 1/1000 per m): the curved points (`STATIONARY_CURVES`,
  `stationary-curve`) put the same target on an arc of that radius (the ego lane's
  centreline; `envs.curved_scenarios`' road: the VUT starts where the arc begins), placed
  the same distance ahead along the lane. They run on the highway backend
  (`GridPoint.needs_highway`: the protocol harness does not use the batched backend's
  per-world curves yet), and the rig lets the stack steer from the start
  (`GridPoint.steer_from_start`): a held steering of 0 would leave the arc.

Judged by the regulation's rule (`r157_score`): a collision counts against the system only
where the reference driver (the `reference-driver` stack) avoids one.

Not varied here (the simulator has one vehicle model and lane-centred traffic): vehicle
models, lateral offset of the lead, road curvature beyond the stationary test, the cut-in
side (from lane 0 only)
and the cut-in vehicle's acceleration (-3..3 m/s^2 in OSC; here 0, the template's default).
"""

from __future__ import annotations

import math

from reflexdrive.envs.scenarios import (
    VEHICLE_LENGTH_M,
    VEHICLE_WIDTH_M,
    HazardPlan,
    lane_change_duration_s,
)
from reflexdrive.protocol.grid import (
    EGO_LANE,
    KPH,
    ROAD,
    GridPoint,
    ahead_s,
    cruising,
    curve_init,
    lane,
    parked,
    straight_init,
)

SUITE = "r157"
LEAD_BRAKE_PAIRS = ((7.2, 1.0), (10.0, 1.1), (20.0, 1.2), (30.0, 1.3), (40.0, 1.4),
                    (50.0, 1.5), (60.0, 1.6))
"""(ego speed [km/h], bumper headway [s]) of 4.3_2's `DeterministicMultiParameterDistribution`."""
LEAD_DECEL_MPS2 = 6.0
CUT_IN_EGO_SPEEDS_KPH = (20.0, 30.0, 40.0, 50.0, 60.0)
CUT_IN_RELATIVE_SPEEDS_KPH = (-10.0, -20.0, -30.0, -40.0, -50.0)
CUT_IN_GAPS_M = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0)
CUT_IN_LATERAL_SPEEDS_MPS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
"""`CutInVehicle_LaneChange_MaxLateralVelocity_Vy_mps`: the peak lateral speed [m/s]."""
CUT_IN_LANE = 0
"""The cutter's lane (the VUT drives in lane 1)."""
STATIONARY_SPEEDS_KPH = tuple(float(v) for v in range(5, 65, 5))
STATIONARY_CURVES = (("left", 250.0), ("right", 250.0), ("left", 1000.0), ("right", 1000.0))
"""(turn, radius [m]) of 4.2_1's curved roads (`ALKS_Road_{turn}_radius_{radius}m.xodr`)."""
PRE_ONSET_S = 2.0
"""Lead-brake and cut-in: time before the planned onset [s] (OSC uses 10 s; nothing
happens in between but steady driving)."""
AFTER_EVENT_S = 6.0
"""Time run after the lead stops, the cut-in's lane change ends, or the VUT would reach the
stationary target at its test speed [s]."""


def r157_score(collided: bool, reference_collided: bool | None) -> float:
    """1 (pass) or 0 (fail) by R157's rule, NaN when no reference result is known.

    A collision fails only where the reference driver (careful and competent human, R157
    Annex 4 Appendix 3) avoids one; without a collision the point passes.
    """
    if not collided:
        return 1.0
    if reference_collided is None:
        return math.nan
    return 1.0 if reference_collided else 0.0


def r157_grid(simulation_frequency: int = 50, seed: int = 0,
              sensor_range_m: float = 48.0) -> list[GridPoint]:
    """Every lead-brake, cut-in, stationary-obstacle and curved stationary-obstacle point,
    in that order.

    Args:
        simulation_frequency: substeps per second [Hz] (onsets are whole substeps).
        seed: the first point's `ScenarioInit.seed` (point `i` gets `seed + i`).
        sensor_range_m: the sensors' range [m]: the stationary target's onset trigger.
    """
    points: list[GridPoint] = []
    onset = round(PRE_ONSET_S * simulation_frequency)

    def add(test, point, parameters, speed_kph, target, hazard, duration, row, col, facet=""):
        speed = speed_kph * KPH
        init = straight_init(f"{SUITE}/{point}", seed + len(points), simulation_frequency,
                             speed, target, hazard, duration)
        points.append(GridPoint(SUITE, test, point, parameters, init, speed,
                                onset / simulation_frequency, row, col, heat_facet=facet))

    for v, headway in LEAD_BRAKE_PAIRS:
        speed = v * KPH
        gap = headway * speed
        hazard = HazardPlan("lead_brake", vehicle=1, onset_substep=onset,
                            decel_mps2=LEAD_DECEL_MPS2)
        add("lead-brake", f"LB-v{v:g}-h{headway:g}",
            {"headway_s": headway, "gap_m": gap, "target_decel_mps2": LEAD_DECEL_MPS2}, v,
            cruising(EGO_LANE, ahead_s(gap), speed), hazard,
            PRE_ONSET_S + speed / LEAD_DECEL_MPS2 + AFTER_EVENT_S, "lead brakes", f"{v:g}")
    for vy in CUT_IN_LATERAL_SPEEDS_MPS:
        for v in CUT_IN_EGO_SPEEDS_KPH:
            for relative in CUT_IN_RELATIVE_SPEEDS_KPH:
                cutter_speed = (v + relative) * KPH
                if not (v + relative > 0.0 and vy < cutter_speed):
                    continue
                for dx0 in CUT_IN_GAPS_M:
                    # at the onset the bumper gap has closed to dx0 (both speeds are constant)
                    gap = dx0 - relative * KPH * PRE_ONSET_S
                    hazard = HazardPlan("cut_in", vehicle=1, onset_substep=onset,
                                        target_lane=lane(EGO_LANE),
                                        target_speed_mps=cutter_speed, lateral_speed_mps=vy)
                    change_s = lane_change_duration_s(vy, ROAD.lane_width_m)
                    add("cut-in", f"CI-v{v:g}-dv{relative:g}-dx{dx0:g}-vy{vy:.1f}",
                        {"relative_speed_kph": relative, "gap_m": dx0,
                         "target_speed_kph": v + relative, "lateral_speed_mps": vy},
                        v, cruising(CUT_IN_LANE, ahead_s(gap), cutter_speed), hazard,
                        PRE_ONSET_S + change_s + AFTER_EVENT_S, f"{v:g} km/h, Δv {relative:g}",
                        f"{dx0:g}", f"lateral speed {vy:g} m/s")
    for v in STATIONARY_SPEEDS_KPH:
        speed = v * KPH
        gap, hazard, duration = _stationary(speed, sensor_range_m)
        add("stationary", f"SO-v{v:g}", {"target_speed_kph": 0.0, "gap_m": gap}, v,
            parked(ahead_s(gap)), hazard, duration, "stationary", f"{v:g}")
    for turn, radius in STATIONARY_CURVES:
        for v in STATIONARY_SPEEDS_KPH:
            speed = v * KPH
            gap, hazard, duration = _stationary(speed, sensor_range_m, radius)
            init = curve_init(f"{SUITE}/SO-v{v:g}-{turn}{radius:g}", seed + len(points),
                              simulation_frequency, speed, gap, turn, radius, hazard, duration)
            points.append(GridPoint(
                SUITE, "stationary-curve", f"SO-v{v:g}-{turn}{radius:g}",
                {"target_speed_kph": 0.0, "gap_m": gap, "radius_m": radius,
                 "turn_right": float(turn == "right")}, init, speed,
                onset / simulation_frequency, f"{turn} {radius:g} m", f"{v:g}",
                steer_from_start=True))
    return points


def _stationary(speed_mps: float, sensor_range_m: float, radius_m: float = math.inf
                ) -> tuple[float, HazardPlan, float]:
    """A stationary test at `speed_mps` on a lane of radius `radius_m` [m] (inf: straight):
    the target's bumper gap [m] along the lane, its hazard plan and the episode's duration
    [s]. The target stands where its footprint comes within the sensors' range
    (`envs.hazards.sensor_reach`, the onset) exactly `PRE_ONSET_S` after the start at the
    test speed, so the onset is the rig's release (`stationary_reach_distance_m`)."""
    centre = stationary_reach_distance_m(sensor_range_m, radius_m) + speed_mps * PRE_ONSET_S
    hazard = HazardPlan("stopped_vehicle", vehicle=1, trigger_range_m=sensor_range_m)
    return (centre - VEHICLE_LENGTH_M, hazard,
            PRE_ONSET_S + centre / speed_mps + AFTER_EVENT_S)


def stationary_reach_distance_m(sensor_range_m: float, radius_m: float = math.inf,
                                length_m: float = VEHICLE_LENGTH_M,
                                width_m: float = VEHICLE_WIDTH_M) -> float:
    """Distance along the lane [m] between the ego's centre and a stopped car's centre, both
    on a lane of radius `radius_m` (inf: straight), at which the car's footprint reaches
    `sensor_range_m` along the ego frame's forward axis (`sensor_reach`): on a straight lane
    `range + length / 2`; on an arc, with `a = d / R` the angle between them, the root of
    `R sin a - (length cos a + width sin a) / 2 = range` (bisection to 1e-12 m; the
    lateral axis `R (1 - cos a)` stays far inside the range on R157's radii)."""
    if math.isinf(radius_m):
        return sensor_range_m + length_m / 2

    def forward_reach(angle: float) -> float:
        return (radius_m * math.sin(angle)
                - 0.5 * (length_m * math.cos(angle) + width_m * math.sin(angle)))

    low, high = 0.0, math.pi / 2
    while (high - low) * radius_m > 1e-12:
        middle = 0.5 * (low + high)
        low, high = (middle, high) if forward_reach(middle) < sensor_range_m else (low, middle)
    return radius_m * 0.5 * (low + high)
