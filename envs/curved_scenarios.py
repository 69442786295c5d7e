"""Hazards where the road curves or paths cross: a stopped vehicle on a curve, and cross
traffic that does not yield at the intersection (both backends: the batched one runs
them on `NetworkBackend`, each world on its own curve, docs/backends.md).

Both are seeded generators like those of `envs.scenarios` (registered there, in
`SCENARIOS`): a seed in, a `ScenarioInit` out, every draw from the scenario's
`np.random.Generator`.

**stopped-vehicle-curve.** UN R157's stationary-obstacle test (OSC-ALKS 4.2_1
FullyBlockingTarget) runs on a straight road and on 250 m and 1000 m radius arcs, turning
left and right (`ALKS_Road_{left,right}_radius_{250,1000}m.xodr`: the whole road is the arc,
three 3.5 m lanes; the ego starts at s = 5 m, the target stands in its lane at s = 500 m).
Here the road ("curve", `RoadSpec`) is a straight lead-in of `EGO_START_S` (nodes "0" ->
"1"), an arc of `CURVE_ARC_M` along the ego lane ("1" -> "2", highway-env `CircularLane`s
sharing one centre) and a straight exit ("2" -> "3"), with the straight scenarios' 4 m
lanes and markings. The episode is the straight stopped-vehicle episode of the same seed
(same draws, same traffic, same distances along the lanes) bent onto that road: the ego
starts where the arc begins, so it drives the curve from the start as OSC's ego does, and
the stopped vehicle stands in its lane on the arc, out of sensor range at the start. Then
the radius and the turn are drawn. Onset: as on the straight road, the first boundary at
which the stopped vehicle reaches the sensors (`envs.hazards.sensor_reach`, in the ego
frame, so it holds on curves: on an arc the straight-line distance is shorter than the
distance along the lane, and the onset comes a little earlier than `onset_s` says).

**intersection-cross-traffic.** highway-env's four-way intersection (`IntersectionEnv`;
approach `i` is "o{i}" -> "ir{i}", 100 m, ending 11 m from the centre at its stop line). The
ego comes from the west (approach 1) on the priority road (highway-env's horizontal lanes
have priority 3, the vertical ones 1) and goes straight across to "o3". The crossing
vehicle comes from the south or the north (approach 0 or 2, drawn) and goes straight
across: its route crosses the ego's where the two lane centrelines cross (the conflict
point). Its speed is drawn, and it is placed so that its centre reaches the conflict point
`arrival_offset_s` (drawn) after the ego's would at the ego's initial speed. It should
yield and does not: its approach is kept free, so it drives at its constant speed. It is
*committed* from the first substep boundary at which it could no longer stop its front at
its stop line braking at `yield_decel_mps2` (`HazardPlan.commit_substep`, computed here from
its constant speed). Onset: the first substep boundary at which it is committed and
reaches the sensors (`sensor_reach` within `trigger_range_m`). Its hazard-removed twin
yields: it drives the same until `commit_substep`, then brakes to a stop at its stop line
(`envs.scenarios.without_hazard`), so every vehicle of the two worlds is the same until the
crossing vehicle is committed, and the twins observe the same world before the onset.
The other traffic comes towards the ego from the east and goes straight on or turns right,
so the crossing vehicle is the only one whose path crosses the ego's. That traffic follows
highway-env's right-of-way rules (`RegulatedRoad`, run by both backends at its 2 Hz
cadence: `envs.backends.regulation`): the lower-priority or rear vehicle of a predicted
conflict stops for the next 0.5 s. The crossing vehicle takes part in the conflicts but
never yields to them (`VehicleInit.regulated` False, in the episode and in its twin): it
runs the stop line by design, and its twin's yield is the scripted one above, so the two
worlds stay the same until `commit_substep`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from reflexdrive.envs.scenarios import (
    EGO_START_S,
    VEHICLE_LENGTH_M,
    HazardPlan,
    LaneId,
    NetworkConfig,
    RoadSpec,
    StoppedVehicleConfig,
    VehicleInit,
    _stopped_vehicle,
    _uniform,
)

from reflexdrive.common.validation import (
    ConfigError,
    check_interval,
    choice,
    interval,
    override,
    real,
)

CURVE_ARC_M = 600.0
"""Length of the arc along the ego's lane [m]; the arc's angle is `CURVE_ARC_M / radius`."""
CURVE_EXIT_M = 400.0
"""Length of the straight exit after the arc [m]."""
R157_RADII_M = (250.0, 1000.0)
"""The curve radii of UN R157's (OSC-ALKS's) stationary-obstacle tests [m]."""
CURVE_DIRECTIONS = ("either", "left", "right")
CURVE_DESTINATION = "3"
"""The node at the end of the curve's exit: every vehicle's destination."""

INTERSECTION_APPROACH_M = 100.0
"""Length of an approach lane of highway-env's intersection [m]: its end is the stop line."""
INTERSECTION_STOP_LINE_M = 11.0
"""Distance of the stop lines from the intersection's centre [m] (highway-env's
`outer_distance`: its 9 m right-turn radius plus half a lane)."""
INTERSECTION_LANE_OFFSET_M = 2.0
"""Offset of a lane's centreline from the road's axis [m] (half of a 4 m lane)."""
INTERSECTION_SPEED_LIMIT_MPS = 10.0
"""Speed limit of every lane of highway-env's intersection [m/s]: its IDM caps the target
speed there."""
CROSS_EGO_LANE: LaneId = ("o1", "ir1", 0)
CROSS_EGO_START_S = 60.0
"""The ego's start on its approach [m], as in the intersection scenario."""
CROSS_EGO_DESTINATION = "o3"
CROSS_SIDES = (0, 2)
"""The approaches the crossing vehicle comes from: south (0) or north (2)."""
ONCOMING_LANE: LaneId = ("o3", "ir3", 0)
ONCOMING_EXITS = ("o1", "o2")
"""Where the other traffic goes: oncoming from the east, straight on or turning right, paths
that do not cross the ego's."""


def curve_lane_radius(road: RoadSpec, lane: int) -> float:
    """Radius of lane `lane`'s centreline on the arc of a "curve" road [m]: lanes towards
    the inside of the turn are `lane_width_m` tighter each."""
    return road.radius_m - math.copysign(1.0, road.arc_rad) * lane * road.lane_width_m


def curve_lane(road: RoadSpec, lane: int, s_m: float) -> tuple[LaneId, float]:
    """The edge and the position on it of the point `s_m` [m] along lane `lane` of a
    "curve" road, counted from the start of the lead-in: `(("0", "1", lane), s)` on the
    lead-in, `(("1", "2", lane), s - lead_in)` on the arc (the arc's start included), then
    the exit."""
    if s_m < road.lead_in_m:
        return ("0", "1", lane), s_m
    arc = curve_lane_radius(road, lane) * abs(road.arc_rad)
    if s_m < road.lead_in_m + arc:
        return ("1", "2", lane), s_m - road.lead_in_m
    return ("2", "3", lane), s_m - road.lead_in_m - arc


@dataclass(frozen=True)
class StoppedVehicleCurveConfig(StoppedVehicleConfig):
    """Stopped vehicle on a curve: the straight scenario's episode on an arc of radius
    `radius_m` (module docstring). `radius_m = (250, 250)` or `(1000, 1000)` with a fixed
    `direction` are R157's curves. The stopped vehicle stands on the arc: `onset_s` and
    `ego_speed_mps` must keep it within `CURVE_ARC_M` of the ego's start."""

    radius_m: tuple[float, float] = interval(
        (250.0, 1000.0), low=200.0, high=5000.0,
        help="(low, high) radius of the ego lane's centreline on the arc [m]; R157 tests "
             "250 and 1000")
    direction: str = choice("either", choices=CURVE_DIRECTIONS,
                            help="which way the road turns: left, right, or either (drawn)")

    def __post_init__(self) -> None:
        super().__post_init__()
        ahead = (self.trigger_range_m + VEHICLE_LENGTH_M / 2
                 + self.ego_speed_mps[1] * self.onset_s[1])
        if ahead > CURVE_ARC_M:
            raise ConfigError("onset_s", self.onset_s,
                              f"the stopped vehicle must stand on the arc: trigger_range_m + "
                              f"2.5 m + ego_speed_mps high * onset_s high = {ahead:g} m must "
                              f"be <= {CURVE_ARC_M:g} m")


def stopped_vehicle_curve(config: StoppedVehicleCurveConfig, rng: np.random.Generator,
                          f: int) -> tuple:
    """The straight stopped-vehicle episode of the same draws, bent onto a curve."""
    _, straight, hazard = _stopped_vehicle(config, rng, f)
    radius = _uniform(rng, config.radius_m)
    direction = config.direction
    if direction == "either":
        direction = ("left", "right")[int(rng.integers(2))]
    sign = 1.0 if direction == "right" else -1.0
    ego_lane = straight[0].lane[2]
    road = RoadSpec(kind="curve", lanes=config.lanes, length_m=CURVE_EXIT_M,
                    lead_in_m=EGO_START_S,
                    radius_m=radius + sign * ego_lane * RoadSpec.lane_width_m,
                    arc_rad=sign * CURVE_ARC_M / radius)
    vehicles = []
    for vehicle in straight:
        lane, s = curve_lane(road, vehicle.lane[2], vehicle.s_m)
        vehicles.append(dataclasses.replace(vehicle, lane=lane, s_m=s,
                                            destination=CURVE_DESTINATION))
    return road, tuple(vehicles), hazard


@dataclass(frozen=True)
class CrossTrafficConfig(NetworkConfig):
    """Cross traffic at the intersection: a vehicle from a side road that should yield
    crosses the ego's path at about the time the ego gets there (module docstring). The
    default ranges make it critical (`envs.criticality.crossing_criticality`): an ego that
    keeps its speed meets it in the conflict zone within 4 s of the onset."""

    vehicles: int = override(NetworkConfig, "vehicles", 3)
    duration_s: float = override(NetworkConfig, "duration_s", 10.0)
    crossing_speed_mps: tuple[float, float] = interval(
        (7.0, 10.0), low=1.0, high=INTERSECTION_SPEED_LIMIT_MPS,
        help="(low, high) constant speed of the crossing vehicle [m/s]; at most the "
             "intersection's speed limit, which highway-env's IDM never exceeds")
    arrival_offset_s: tuple[float, float] = interval(
        (-0.3, 0.3), low=-3.0, high=3.0,
        help="(low, high) when the crossing vehicle's centre reaches the conflict point, "
             "after the ego's would at its initial speed [s]")
    yield_decel_mps2: float = real(
        3.0, low=0.5, high=10.0,
        help="deceleration a yielding driver stops at the stop line with [m/s^2]; past the "
             "point where it no longer can, the crossing vehicle is committed")
    trigger_range_m: float = real(
        48.0, low=1.0, high=500.0,
        help="sensor range defining the onset [m] (the sensors' range_m): the onset is the "
             "first boundary at which the committed crossing vehicle's footprint is this "
             "close to the ego's centre along both ego-frame axes")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interval("ego_speed_mps", self.ego_speed_mps, 1.0, 40.0)
        # the earliest start of the crossing vehicle must lie on its approach lane
        reach, room = max(
            ((self.crossing_speed_mps[1] * (_ego_to_conflict_m(side) / self.ego_speed_mps[0]
                                            + self.arrival_offset_s[1]),
              _crossing_to_conflict_m(side) - VEHICLE_LENGTH_M / 2) for side in CROSS_SIDES),
            key=lambda pair: pair[0] - pair[1])
        if reach > room:
            raise ConfigError("crossing_speed_mps", self.crossing_speed_mps,
                              f"the crossing vehicle would start before its approach: high "
                              f"speed * (the slowest ego's time to the conflict point + "
                              f"arrival_offset_s high) = {reach:.1f} m must be <= "
                              f"{room:g} m")


def _ego_to_conflict_m(side: int) -> float:
    """Distance from the ego's start to the conflict point along its route [m]: its lane
    runs east at y = +2 from its stop line at x = -11; the crossing lane from the south
    is at x = +2, the one from the north at x = -2."""
    x = INTERSECTION_LANE_OFFSET_M if side == 0 else -INTERSECTION_LANE_OFFSET_M
    return INTERSECTION_APPROACH_M - CROSS_EGO_START_S + INTERSECTION_STOP_LINE_M + x


def _crossing_to_conflict_m(side: int) -> float:
    """Distance from the start of approach `side` to the conflict point along its route
    [m]: the ego's lane crosses the junction at y = +2 (`side` 0 drives towards -y from
    its stop line at y = 11, `side` 2 towards +y from y = -11)."""
    y = INTERSECTION_LANE_OFFSET_M if side == 0 else -INTERSECTION_LANE_OFFSET_M
    return INTERSECTION_APPROACH_M + INTERSECTION_STOP_LINE_M - y


def commit_substep(start_s: float, speed: float, decel: float, f: int,
                   stop_line_s: float = INTERSECTION_APPROACH_M,
                   length: float = VEHICLE_LENGTH_M) -> int:
    """The first substep boundary `k >= 0` at which a vehicle whose centre starts at
    `start_s` [m] and drives at constant `speed` [m/s] can no longer stop its front at
    `stop_line_s` braking at `decel` [m/s^2]: `stop_line_s - (s + L / 2) <= v^2 / (2 b)`
    with `s = start_s + v k / f`."""
    braking_point = stop_line_s - speed * speed / (2.0 * decel) - length / 2
    return max(0, math.ceil((braking_point - start_s) * f / speed - 1e-9))


def cross_traffic(config: CrossTrafficConfig, rng: np.random.Generator, f: int) -> tuple:
    ego_speed = _uniform(rng, config.ego_speed_mps)
    side = CROSS_SIDES[int(rng.integers(len(CROSS_SIDES)))]
    speed = _uniform(rng, config.crossing_speed_mps)
    offset = _uniform(rng, config.arrival_offset_s)
    arrival = _ego_to_conflict_m(side) / ego_speed + offset
    start = _crossing_to_conflict_m(side) - speed * arrival
    ego = VehicleInit(CROSS_EGO_LANE, CROSS_EGO_START_S, ego_speed, ego_speed, "ego",
                      destination=CROSS_EGO_DESTINATION)
    crossing = VehicleInit((f"o{side}", f"ir{side}", 0), start, speed, speed, "idm",
                           lane_changes=False, destination=f"o{(side + 2) % 4}",
                           regulated=False)
    hazard = HazardPlan("cross_traffic", vehicle=1, decel_mps2=config.yield_decel_mps2,
                        trigger_range_m=config.trigger_range_m,
                        commit_substep=commit_substep(start, speed, config.yield_decel_mps2, f))
    vehicles = [ego, crossing]
    occupied: list[float] = []
    for _ in range(config.vehicles):
        for _attempt in range(50):
            s = float(rng.uniform(20.0, 85.0))
            if all(abs(s - other) >= 12.0 for other in occupied):
                traffic_speed = _uniform(rng, config.traffic_speed_mps)
                destination = ONCOMING_EXITS[int(rng.integers(len(ONCOMING_EXITS)))]
                vehicles.append(VehicleInit(ONCOMING_LANE, s, traffic_speed, traffic_speed,
                                            destination=destination))
                occupied.append(s)
                break
    return RoadSpec(kind="intersection"), tuple(vehicles), hazard


__all__ = ["CROSS_SIDES", "CURVE_ARC_M", "CURVE_DIRECTIONS", "CURVE_EXIT_M",
           "CrossTrafficConfig", "R157_RADII_M", "StoppedVehicleCurveConfig", "commit_substep",
           "cross_traffic", "curve_lane", "curve_lane_radius", "stopped_vehicle_curve"]
