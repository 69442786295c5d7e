"""Seeded scenario generators: a seed in, an initial state (road, vehicles, hazard plan) out.

A scenario is the project's own code, not a backend's: `generate(name, config, seed, f)`
returns a `ScenarioInit` that any backend instantiates, so two backends run the very same
episode from the same seed. Every random draw comes from `np.random.default_rng(seed)`.

Straight multi-lane roads ("straight") serve Highway and the three straight hazard
scenarios; Merge, Roundabout and Intersection use highway-env's own road networks ("merge",
"roundabout", "intersection") and lane names; the hazards on curves and at crossings
(`envs.curved_scenarios`) a straight lead-in into an arc ("curve") and the intersection.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from reflexdrive.common.validation import (
    ConfigError,
    boolean,
    check_interval,
    integer,
    interval,
    override,
    real,
    validate_fields,
)

LaneId = tuple[str, str, int]
"""highway-env lane index: (from node, to node, lane number)."""

HAZARD_KINDS = ("none", "lead_brake", "cut_in", "stopped_vehicle", "cross_traffic")
VEHICLE_LENGTH_M = 5.0
VEHICLE_WIDTH_M = 2.0


@dataclass(frozen=True)
class RoadSpec:
    """The road to build.

    Attributes:
        kind: "straight", "curve", "merge", "roundabout" or "intersection".
        lanes: lanes of a straight road or a curve.
        length_m: length of a straight road, or of a curve's straight exit [m].
        lane_width_m: lane width of a straight road or a curve [m]; both backends support
            only highway-env's 4 m (`StraightLane.DEFAULT_WIDTH`) and reject anything else.
        speed_limit_mps: speed limit of a straight road or a curve [m/s].
        lead_in_m: "curve": length of the straight lead-in (nodes "0" -> "1") [m].
        radius_m: "curve": radius of lane 0's centreline on the arc ("1" -> "2") [m].
        arc_rad: "curve": the arc's angle [rad]; > 0 turns towards the higher lane indices
            (highway-env's `CircularLane(clockwise=True)`, a right turn as highway-env draws
            the road, lane 0 on the driver's left), < 0 the other way. The exit ("2" -> "3")
            is straight, `length_m` long.
    """

    kind: str = "straight"
    lanes: int = 3
    length_m: float = 2000.0
    lane_width_m: float = 4.0
    speed_limit_mps: float = 30.0
    lead_in_m: float = 0.0
    radius_m: float = 0.0
    arc_rad: float = 0.0


@dataclass(frozen=True)
class VehicleInit:
    """One vehicle's initial state.

    Attributes:
        lane: highway-env lane index it starts on.
        s_m: longitudinal position along that lane [m].
        speed_mps: initial speed [m/s].
        target_speed_mps: cruise speed its driver model aims for [m/s].
        behavior: "ego" (driven by the agent), "idm" (IDM + MOBIL) or "static" (parked).
        lane_changes: whether an "idm" vehicle may change lanes (MOBIL).
        destination: highway-env destination node for route-following traffic, or None.
        length_m, width_m: footprint [m].
        present: False keeps the slot but puts no vehicle in it (the hazard-removed twin of
            a stopped-vehicle episode, `without_hazard`): every other vehicle keeps its slot,
            id and sensor-noise stream.
        yield_substep: an "idm" vehicle that yields: from this substep on it brakes at the
            constant rate that stops its front bumper at the end of its starting lane (its
            stop line). The crossing vehicle of a cross-traffic episode's hazard-removed
            twin (`without_hazard`); None: never.
        regulated: whether the intersection's right-of-way rules (highway-env's
            `RegulatedRoad`, `envs.backends.regulation`) may make an "idm" vehicle yield.
            False for the crossing vehicle of a cross-traffic episode (it runs the stop
            line by design; its twin yields by `yield_substep`), which still takes part in
            the conflicts others yield in.
    """

    lane: LaneId
    s_m: float
    speed_mps: float
    target_speed_mps: float
    behavior: str = "idm"
    lane_changes: bool = True
    destination: str | None = None
    length_m: float = VEHICLE_LENGTH_M
    width_m: float = VEHICLE_WIDTH_M
    present: bool = True
    yield_substep: int | None = None
    regulated: bool = True


@dataclass(frozen=True)
class HazardPlan:
    """The scripted hazard of an episode.

    Attributes:
        kind: one of HAZARD_KINDS.
        vehicle: slot (index into `ScenarioInit.vehicles`) of the hazard vehicle, -1 if none.
        onset_substep: substep at which a "lead_brake" or "cut_in" begins (onset time
            `t_h = onset_substep * dt`); None for "stopped_vehicle", whose onset is the first
            substep boundary at which it reaches the sensors (its footprint within
            `trigger_range_m` of the ego's centre: `envs.hazards.sensor_reach`), and for
            "cross_traffic", whose onset is the first boundary at or after `commit_substep`
            at which it reaches the sensors (committed and visible).
        decel_mps2: "lead_brake": constant deceleration of the lead until standstill;
            "cross_traffic": the deceleration a yielding driver would stop at its stop line
            with, which defines `commit_substep` [m/s^2].
        target_lane: "cut_in": lane the vehicle moves into.
        target_speed_mps: "cut_in": speed the vehicle slows to while cutting in [m/s].
        trigger_range_m: "stopped_vehicle", "cross_traffic": sensor range that defines the
            onset [m].
        commit_substep: "cross_traffic": the first substep boundary at which the crossing
            vehicle, at its constant speed, can no longer stop its front at its stop line
            braking at `decel_mps2` (it is committed); the twin's crossing vehicle starts
            yielding in this substep.
        lateral_speed_mps: "cut_in": peak lateral speed of the lane change [m/s], > 0, as
            OpenSCENARIO's `LaneChangeAction` with `dynamicsShape="sinusoidal"`,
            `dynamicsDimension="rate"` (OSC-ALKS 4.4_1's `..._MaxLateralVelocity_Vy`): from
            the onset the cutter's lateral position follows `sinusoidal_lane_change` from its
            lane's centre to the target lane's centre (an adjacent lane), in
            `lane_change_duration_s`; its longitudinal motion stays IDM towards
            `target_speed_mps`. None: highway-env's own lane change (IDM steering to
            `target_lane`), whose lateral speed is not a parameter.
    """

    kind: str = "none"
    vehicle: int = -1
    onset_substep: int | None = None
    decel_mps2: float = 0.0
    target_lane: LaneId | None = None
    target_speed_mps: float = 0.0
    trigger_range_m: float = 0.0
    lateral_speed_mps: float | None = None
    commit_substep: int | None = None

    def __post_init__(self) -> None:
        speed = self.lateral_speed_mps
        if speed is None:
            return
        if self.kind != "cut_in":
            raise ConfigError("hazard.lateral_speed_mps", speed,
                              f"only a cut_in hazard has one (kind is {self.kind!r}); use None")
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) \
                or not math.isfinite(speed) or speed <= 0.0:
            raise ConfigError("hazard.lateral_speed_mps", speed,
                              "must be a finite number > 0 [m/s], or None (highway-env's "
                              "lane change)")


def lane_change_duration_s(lateral_speed_mps: float, lane_width_m: float) -> float:
    """How long a sinusoidal lane change over one lane takes [s]: `T = pi w / (2 v_peak)`.

    The lateral velocity `w pi / (2 T) sin(pi t / T)` peaks at `lateral_speed_mps` half way
    (esmini's reading of OpenSCENARIO's sinusoidal shape with a "rate" dimension).
    """
    return math.pi * lane_width_m / (2.0 * lateral_speed_mps)


def sinusoidal_lane_change(elapsed_s: float, lateral_speed_mps: float,
                           lane_width_m: float) -> tuple[float, float]:
    """Where a sinusoidal lane change over one lane is after `elapsed_s` [s] from its start.

    With phase `phi = min(2 v t / w, pi)` (so `phi = pi t / T`, `T = lane_change_duration_s`):

        distance still to go  = w (1 + cos phi) / 2       [m], w at t = 0, 0 from t = T on
        lateral speed         = v sin phi                 [m/s], 0 at both ends, v at T / 2

    Returns:
        (distance still to go [m], lateral speed towards the target lane [m/s]). The three
        backends implement exactly these operations in this order (highway:
        `envs.backends.highway.ProfiledCutInVehicle`, torch and numba kernels).
    """
    phase = min(2.0 * lateral_speed_mps / lane_width_m * elapsed_s, math.pi)
    to_go = lane_width_m * ((1.0 + math.cos(phase)) * 0.5)
    return to_go, (lateral_speed_mps * math.sin(phase) if phase < math.pi else 0.0)


@dataclass(frozen=True)
class ScenarioInit:
    """Everything a backend needs to instantiate one episode."""

    name: str
    seed: int
    simulation_frequency: int
    road: RoadSpec
    vehicles: tuple[VehicleInit, ...]
    hazard: HazardPlan
    duration_s: float

    def __post_init__(self) -> None:
        hazard = self.hazard
        if hazard.lateral_speed_mps is None:
            return
        if not 0 <= hazard.vehicle < len(self.vehicles) or hazard.target_lane is None:
            raise ConfigError("hazard.vehicle", hazard.vehicle,
                              "a cut-in with a lateral speed needs its vehicle's slot and a "
                              "target lane")
        lane = self.vehicles[hazard.vehicle].lane
        if lane[:2] != hazard.target_lane[:2] or abs(lane[2] - hazard.target_lane[2]) != 1:
            raise ConfigError("hazard.target_lane", hazard.target_lane,
                              f"a cut-in with a lateral speed moves one lane: must be next "
                              f"to the cutter's lane {lane}")

    @property
    def duration_substeps(self) -> int:
        return round(self.duration_s * self.simulation_frequency)


def without_hazard(init: ScenarioInit) -> ScenarioInit:
    """The hazard-removed twin of an episode: everything else identical, slot for slot.

    The counterfactual reaction time compares an episode with its twin: until the hazard
    reaches the sensors the two are the same world. The lead of a "lead_brake" keeps its
    pre-hazard (IDM) behaviour, the cut-in vehicle keeps its lane and speed, the stopped
    vehicle is absent (its slot stays, empty, so no other vehicle changes slot, id or
    noise stream), and the crossing vehicle of a "cross_traffic" yields: it drives as in
    the episode until `commit_substep`, then brakes to a stop at its stop line
    (`VehicleInit.yield_substep`), so both worlds are the same until it is committed. An
    episode without a hazard is its own twin.
    """
    hazard = init.hazard
    if hazard.kind == "none":
        return init
    vehicles = list(init.vehicles)
    if hazard.kind == "stopped_vehicle":
        vehicles[hazard.vehicle] = dataclasses.replace(vehicles[hazard.vehicle], present=False)
    elif hazard.kind == "cross_traffic":
        vehicles[hazard.vehicle] = dataclasses.replace(vehicles[hazard.vehicle],
                                                       yield_substep=hazard.commit_substep)
    return dataclasses.replace(init, vehicles=tuple(vehicles), hazard=HazardPlan())


# ----------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class TrafficConfig:
    """Traffic on a straight road (bounds and units of each field in its metadata)."""

    lanes: int = integer(3, low=1, high=8, help="number of lanes")
    vehicles: int = integer(
        12, low=0, high=200, help="traffic vehicles to place (fewer if the road segment is full)")
    ego_speed_mps: tuple[float, float] = interval(
        (22.0, 26.0), low=0.0, high=40.0, help="(low, high) initial ego speed [m/s]")
    traffic_speed_mps: tuple[float, float] = interval(
        (20.0, 27.0), low=0.0, high=40.0,
        help="(low, high) initial and cruise speed of traffic [m/s]")
    lane_changes: bool = boolean(True, help="traffic may change lanes (MOBIL)")
    duration_s: float = real(20.0, low=0.0, high=600.0, low_inclusive=False,
                             help="episode length [s]")
    min_spacing_m: float = real(
        20.0, low=6.0, high=200.0,
        help="minimum centre distance between vehicles in one lane at start [m]")

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class HighwayConfig(TrafficConfig):
    """Highway: multi-lane traffic with IDM car-following and MOBIL lane changes."""

    lanes: int = override(TrafficConfig, "lanes", 4)
    vehicles: int = override(TrafficConfig, "vehicles", 15)


@dataclass(frozen=True)
class LeadBrakeConfig(TrafficConfig):
    """Lead brake: the vehicle ahead in the ego lane brakes hard to a standstill.

    The default ranges make the hazard critical (`envs.criticality`): an ego that holds its
    speed hits the lead within 4 s of the onset, also after a following stack has dropped
    back to its own time gap before the onset (docs/ARCHITECTURE.md, "Criticality").
    """

    vehicles: int = override(TrafficConfig, "vehicles", 8)
    lane_changes: bool = override(TrafficConfig, "lane_changes", False)
    duration_s: float = override(TrafficConfig, "duration_s", 12.0)
    onset_s: tuple[float, float] = interval(
        (2.0, 4.0), low=0.0,
        help="(low, high) hazard onset time [s], within duration_s; early, so that a "
             "following stack has little time to drop back")
    decel_mps2: tuple[float, float] = interval(
        (6.0, 8.0), low=0.5, high=12.0,
        help="(low, high) deceleration of the lead [m/s^2]; >= 6 stops it within about "
             "4 s from 24 m/s, so a gap up to about 48 m is critical")
    gap_m: tuple[float, float] = interval(
        (15.0, 30.0), low=2.0, high=200.0,
        help="(low, high) initial bumper-to-bumper gap to the lead [m] (0.6-1.4 s at "
             "the start speed)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interval("onset_s", self.onset_s, 0.0, self.duration_s)


@dataclass(frozen=True)
class CutInConfig(TrafficConfig):
    """Cut-in: a vehicle in the next lane, slightly ahead, changes into the ego lane and slows.

    The cutter's lane is kept free of other traffic, so it cruises at the ego's start speed
    until the onset (no slower vehicle ahead of it shrinks the gap beforehand). Needs at
    least 2 lanes. The default ranges make the hazard critical (`envs.criticality`).
    """

    vehicles: int = override(TrafficConfig, "vehicles", 8)
    lane_changes: bool = override(TrafficConfig, "lane_changes", False)
    duration_s: float = override(TrafficConfig, "duration_s", 12.0)
    ego_speed_mps: tuple[float, float] = override(TrafficConfig, "ego_speed_mps", (20.0, 24.0))
    onset_s: tuple[float, float] = interval(
        (1.0, 2.5), low=0.0,
        help="(low, high) time the cut-in starts [s], within duration_s; early, before a "
             "stack cruising at another speed has opened the gap")
    gap_m: tuple[float, float] = interval(
        (4.0, 10.0), low=0.0, high=200.0,
        help="(low, high) initial longitudinal bumper gap of the cutter ahead of the ego [m]")
    slowdown_mps: tuple[float, float] = interval(
        (5.0, 9.0), low=0.0, high=30.0,
        help="(low, high) how much slower than the ego's start speed it drives after "
             "cutting in [m/s]; with gap_m, an ego that holds its speed closes the gap "
             "within 4 s (critical)")
    lateral_speed_mps: tuple[float, float] | None = interval(
        None, low=0.1, high=10.0, optional=True,
        help="(low, high) peak lateral speed of a sinusoidal lane change [m/s] "
             "(`HazardPlan.lateral_speed_mps`, as R157's cut-in grid); None: highway-env's "
             "own lane change")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interval("onset_s", self.onset_s, 0.0, self.duration_s)
        if self.lanes < 2:
            raise ConfigError("lanes", self.lanes, "cut-in needs at least 2 lanes")


@dataclass(frozen=True)
class StoppedVehicleConfig(TrafficConfig):
    """Stopped vehicle: a vehicle stands still in the ego lane and comes into sensor range.

    `onset_s` is the (low, high) time at which, at its initial speed, the ego would bring
    the stopped vehicle's rear within `trigger_range_m`; the recorded onset is when it
    reaches the sensors (`envs.hazards.sensor_reach`). At onset it is about 45 m ahead:
    critical (contact within about 2 s) at every speed of the default range.
    """

    vehicles: int = override(TrafficConfig, "vehicles", 8)
    lane_changes: bool = override(TrafficConfig, "lane_changes", False)
    duration_s: float = override(TrafficConfig, "duration_s", 14.0)
    ego_speed_mps: tuple[float, float] = override(TrafficConfig, "ego_speed_mps", (18.0, 24.0))
    onset_s: tuple[float, float] = interval(
        (2.0, 4.0), low=0.0,
        help="(low, high) time the ego would bring the stopped vehicle's rear within "
             "trigger_range_m [s], within duration_s")
    trigger_range_m: float = real(
        48.0, low=1.0, high=500.0,
        help="sensor range defining the onset [m] (the sensors' range_m): the onset is the "
             "first boundary at which its footprint is this close to the ego's centre "
             "along both ego-frame axes")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interval("onset_s", self.onset_s, 0.0, self.duration_s)


@dataclass(frozen=True)
class NetworkConfig:
    """Merge, roundabout and intersection: highway-env road networks with traffic (bounds
    and units of each field in its metadata)."""

    vehicles: int = integer(6, low=0, high=50, help="traffic vehicles")
    duration_s: float = real(15.0, low=0.0, high=600.0, low_inclusive=False,
                             help="episode length [s]")
    ego_speed_mps: tuple[float, float] = interval(
        (8.0, 12.0), low=0.0, high=40.0, help="(low, high) initial ego speed [m/s]")
    traffic_speed_mps: tuple[float, float] = interval(
        (8.0, 12.0), low=0.0, high=40.0, help="(low, high) traffic speed [m/s]")

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class MergeConfig(NetworkConfig):
    """Merge: highway traffic and a vehicle joining from an on-ramp."""

    vehicles: int = override(NetworkConfig, "vehicles", 6)
    duration_s: float = override(NetworkConfig, "duration_s", 12.0)
    ego_speed_mps: tuple[float, float] = override(NetworkConfig, "ego_speed_mps", (22.0, 26.0))
    traffic_speed_mps: tuple[float, float] = override(NetworkConfig, "traffic_speed_mps",
                                                      (20.0, 26.0))


@dataclass(frozen=True)
class RoundaboutConfig(NetworkConfig):
    """Roundabout: enter a two-lane roundabout with circulating traffic."""


@dataclass(frozen=True)
class IntersectionConfig(NetworkConfig):
    """Intersection: cross a four-way junction with traffic from the other approaches."""


# ----------------------------------------------------------------------------- helpers


def _uniform(rng: np.random.Generator, interval: tuple[float, float]) -> float:
    low, high = interval
    return float(low) if low == high else float(rng.uniform(low, high))


def _straight_lane(i: int) -> LaneId:
    return ("0", "1", i)


def _place_traffic(
    rng: np.random.Generator,
    config: TrafficConfig,
    occupied: list[tuple[int, float]],
    lanes: list[int],
    s_range: tuple[float, float],
    count: int,
) -> list[VehicleInit]:
    """Drop `count` IDM vehicles on `lanes` within `s_range`, keeping `min_spacing_m` per lane.

    `occupied` lists `(lane, s)` already taken (ego, hazard vehicles) and is extended.
    Placement is rejection sampling with a fixed number of tries, so it is deterministic
    for a seed and may place fewer vehicles on a crowded road.
    """
    placed = []
    if not lanes:
        return placed
    for _ in range(count):
        for _attempt in range(50):
            lane = int(lanes[rng.integers(len(lanes))])
            s = float(rng.uniform(*s_range))
            if all(abs(s - s_other) >= config.min_spacing_m
                   for lane_other, s_other in occupied if lane_other == lane):
                speed = _uniform(rng, config.traffic_speed_mps)
                placed.append(VehicleInit(_straight_lane(lane), s, speed, speed,
                                          lane_changes=config.lane_changes))
                occupied.append((lane, s))
                break
    return placed


def _straight_road(config: TrafficConfig) -> RoadSpec:
    return RoadSpec(kind="straight", lanes=config.lanes)


EGO_START_S = 200.0
"""Ego start position along a straight road [m]: room behind for following traffic."""


# ----------------------------------------------------------------------------- generators


def _highway(config: HighwayConfig, rng: np.random.Generator, f: int) -> tuple:
    ego_lane = int(rng.integers(config.lanes))
    ego_speed = _uniform(rng, config.ego_speed_mps)
    ego = VehicleInit(_straight_lane(ego_lane), EGO_START_S, ego_speed, ego_speed, "ego")
    occupied = [(ego_lane, EGO_START_S)]
    traffic = _place_traffic(rng, config, occupied, list(range(config.lanes)),
                             (EGO_START_S - 80.0, EGO_START_S + 300.0), config.vehicles)
    return _straight_road(config), (ego, *traffic), HazardPlan()


def _hazard_traffic(rng, config: TrafficConfig, ego_lane: int, occupied: list,
                    keep_free: tuple[int, ...] = ()) -> list:
    """Traffic for hazard scenarios: the other lanes, ahead and behind; none in the ego lane
    (nor in `keep_free`, so that the hazard unfolds as planned)."""
    other_lanes = [lane for lane in range(config.lanes)
                   if lane != ego_lane and lane not in keep_free]
    return _place_traffic(rng, config, occupied, other_lanes,
                          (EGO_START_S - 60.0, EGO_START_S + 250.0), config.vehicles)


def _lead_brake(config: LeadBrakeConfig, rng: np.random.Generator, f: int) -> tuple:
    ego_lane = int(rng.integers(config.lanes))
    speed = _uniform(rng, config.ego_speed_mps)
    gap = _uniform(rng, config.gap_m)
    lead_s = EGO_START_S + gap + VEHICLE_LENGTH_M
    ego = VehicleInit(_straight_lane(ego_lane), EGO_START_S, speed, speed, "ego")
    lead = VehicleInit(_straight_lane(ego_lane), lead_s, speed, speed, "idm", lane_changes=False)
    onset = round(_uniform(rng, config.onset_s) * f)
    hazard = HazardPlan("lead_brake", vehicle=1, onset_substep=onset,
                        decel_mps2=_uniform(rng, config.decel_mps2))
    occupied = [(ego_lane, EGO_START_S), (ego_lane, lead_s)]
    traffic = _hazard_traffic(rng, config, ego_lane, occupied)
    return _straight_road(config), (ego, lead, *traffic), hazard


def _cut_in(config: CutInConfig, rng: np.random.Generator, f: int) -> tuple:
    ego_lane = int(rng.integers(config.lanes))
    sides = [lane for lane in (ego_lane - 1, ego_lane + 1) if 0 <= lane < config.lanes]
    cutter_lane = int(sides[rng.integers(len(sides))])
    speed = _uniform(rng, config.ego_speed_mps)
    gap = _uniform(rng, config.gap_m)
    cutter_s = EGO_START_S + gap + VEHICLE_LENGTH_M
    ego = VehicleInit(_straight_lane(ego_lane), EGO_START_S, speed, speed, "ego")
    cutter = VehicleInit(_straight_lane(cutter_lane), cutter_s, speed, speed, "idm",
                         lane_changes=False)
    onset = round(_uniform(rng, config.onset_s) * f)
    hazard = HazardPlan("cut_in", vehicle=1, onset_substep=onset,
                        target_lane=_straight_lane(ego_lane),
                        target_speed_mps=max(0.0, speed - _uniform(rng, config.slowdown_mps)))
    occupied = [(ego_lane, EGO_START_S), (cutter_lane, cutter_s)]
    traffic = _hazard_traffic(rng, config, ego_lane, occupied, keep_free=(cutter_lane,))
    if config.lateral_speed_mps is not None:      # drawn last: the rest is the default's
        hazard = dataclasses.replace(hazard,
                                     lateral_speed_mps=_uniform(rng, config.lateral_speed_mps))
    return _straight_road(config), (ego, cutter, *traffic), hazard


def _stopped_vehicle(config: StoppedVehicleConfig, rng: np.random.Generator, f: int) -> tuple:
    ego_lane = int(rng.integers(config.lanes))
    speed = _uniform(rng, config.ego_speed_mps)
    onset = _uniform(rng, config.onset_s)
    # its rear reaches trigger_range_m of the ego's centre after `onset` s at `speed`
    stopped_s = EGO_START_S + config.trigger_range_m + VEHICLE_LENGTH_M / 2 + speed * onset
    ego = VehicleInit(_straight_lane(ego_lane), EGO_START_S, speed, speed, "ego")
    stopped = VehicleInit(_straight_lane(ego_lane), stopped_s, 0.0, 0.0, "static",
                          lane_changes=False)
    hazard = HazardPlan("stopped_vehicle", vehicle=1, trigger_range_m=config.trigger_range_m)
    occupied = [(ego_lane, EGO_START_S), (ego_lane, stopped_s)]
    traffic = _hazard_traffic(rng, config, ego_lane, occupied)
    return _straight_road(config), (ego, stopped, *traffic), hazard


def _merge(config: MergeConfig, rng: np.random.Generator, f: int) -> tuple:
    # Lanes as in highway-env's MergeEnv: highway a->b->c->d (lanes 0, 1), ramp j->k->b.
    ego_speed = _uniform(rng, config.ego_speed_mps)
    ego = VehicleInit(("a", "b", 1), 30.0, ego_speed, ego_speed, "ego")
    vehicles = [ego]
    occupied = [(1, 30.0)]
    for _ in range(config.vehicles):
        for _attempt in range(50):
            lane = int(rng.integers(2))
            s = float(rng.uniform(0.0, 200.0))
            if all(abs(s - so) >= 15.0 for lo, so in occupied if lo == lane):
                speed = _uniform(rng, config.traffic_speed_mps)
                vehicles.append(VehicleInit(("a", "b", lane), s, speed, speed))
                occupied.append((lane, s))
                break
    ramp_speed = _uniform(rng, config.traffic_speed_mps)
    vehicles.append(VehicleInit(("j", "k", 0), float(rng.uniform(90.0, 120.0)), ramp_speed,
                                ramp_speed, lane_changes=True))
    return RoadSpec(kind="merge"), tuple(vehicles), HazardPlan()


def _roundabout(config: RoundaboutConfig, rng: np.random.Generator, f: int) -> tuple:
    # Lanes as in highway-env's RoundaboutEnv: ego enters from the south, exits north.
    ego_speed = _uniform(rng, config.ego_speed_mps)
    ego = VehicleInit(("ser", "ses", 0), 125.0, ego_speed, ego_speed, "ego", destination="nxs")
    ring = [("we", "sx"), ("sx", "se"), ("se", "ex"), ("ex", "ee"), ("ee", "nx"),
            ("nx", "ne"), ("ne", "wx"), ("wx", "we")]
    exits = ["exr", "sxr", "nxr", "wxr"]
    vehicles = [ego]
    slots = rng.permutation(len(ring) * 2)[: config.vehicles]
    for slot in slots:
        edge = ring[int(slot) // 2]
        lane = int(slot) % 2
        speed = _uniform(rng, config.traffic_speed_mps)
        vehicles.append(VehicleInit((edge[0], edge[1], lane), float(rng.uniform(0.0, 5.0)),
                                    speed, speed, destination=exits[rng.integers(len(exits))]))
    return RoadSpec(kind="roundabout"), tuple(vehicles), HazardPlan()


def _intersection(config: IntersectionConfig, rng: np.random.Generator, f: int) -> tuple:
    # Lanes as in highway-env's IntersectionEnv: approach i is "o{i}" -> "ir{i}".
    ego_speed = _uniform(rng, config.ego_speed_mps)
    ego = VehicleInit(("o0", "ir0", 0), 60.0, ego_speed, ego_speed, "ego", destination="o1")
    vehicles = [ego]
    occupied: list[tuple[int, float]] = []
    for _ in range(config.vehicles):
        for _attempt in range(50):
            approach = int(rng.integers(1, 4))
            s = float(rng.uniform(20.0, 85.0))
            if all(abs(s - so) >= 12.0 for ao, so in occupied if ao == approach):
                speed = _uniform(rng, config.traffic_speed_mps)
                destination = f"o{int(rng.choice([i for i in range(4) if i != approach]))}"
                vehicles.append(VehicleInit((f"o{approach}", f"ir{approach}", 0), s, speed, speed,
                                            destination=destination))
                occupied.append((approach, s))
                break
    return RoadSpec(kind="intersection"), tuple(vehicles), HazardPlan()


# ----------------------------------------------------------------------------- registry

# The hazards on curves and at crossings build on the types and helpers above (the package's
# __init__ imports this module first, so the cycle resolves here).
from reflexdrive.envs import curved_scenarios as _curved  # noqa: E402


@dataclass(frozen=True)
class ScenarioSpec:
    """A named scenario: CLI name, Gymnasium id, one-line description, config and generator."""

    name: str
    env_id: str
    description: str
    config_type: type
    generator: Callable[[Any, np.random.Generator, int], tuple]
    hazard: str = "none"

    @property
    def straight(self) -> bool:
        """Runs on a straight multi-lane road (what the batched backend supports)."""
        return self.generator in (_highway, _lead_brake, _cut_in, _stopped_vehicle)


SCENARIOS: dict[str, ScenarioSpec] = {
    spec.name: spec
    for spec in (
        ScenarioSpec("highway", "reflexdrive/Highway-v0",
                     "4-lane highway, IDM/MOBIL traffic; drive fast without collisions",
                     HighwayConfig, _highway),
        ScenarioSpec("merge", "reflexdrive/Merge-v0",
                     "highway with an on-ramp; a vehicle merges into traffic",
                     MergeConfig, _merge),
        ScenarioSpec("roundabout", "reflexdrive/Roundabout-v0",
                     "enter and cross a two-lane roundabout with circulating traffic",
                     RoundaboutConfig, _roundabout),
        ScenarioSpec("intersection", "reflexdrive/Intersection-v0",
                     "cross a four-way intersection with traffic from other approaches",
                     IntersectionConfig, _intersection),
        ScenarioSpec("lead-brake", "reflexdrive/LeadBrake-v0",
                     "hazard: the lead vehicle in the ego lane brakes hard to a stop",
                     LeadBrakeConfig, _lead_brake, "lead_brake"),
        ScenarioSpec("cut-in", "reflexdrive/CutIn-v0",
                     "hazard: a vehicle from the next lane cuts in close ahead and slows",
                     CutInConfig, _cut_in, "cut_in"),
        ScenarioSpec("stopped-vehicle", "reflexdrive/StoppedVehicle-v0",
                     "hazard: a stopped vehicle in the ego lane comes into sensor range",
                     StoppedVehicleConfig, _stopped_vehicle, "stopped_vehicle"),
        ScenarioSpec("stopped-vehicle-curve", "reflexdrive/StoppedVehicleCurve-v0",
                     "hazard: a stopped vehicle in the ego lane on a curve (R157: 250 m, "
                     "1000 m radius) comes into sensor range",
                     _curved.StoppedVehicleCurveConfig, _curved.stopped_vehicle_curve,
                     "stopped_vehicle"),
        ScenarioSpec("intersection-cross-traffic", "reflexdrive/IntersectionCrossTraffic-v0",
                     "hazard: a vehicle from a side road crosses the ego's path without "
                     "yielding", _curved.CrossTrafficConfig, _curved.cross_traffic,
                     "cross_traffic"),
    )
}


def scenario_spec(name: str) -> ScenarioSpec:
    """The spec of a scenario by CLI name; ConfigError listing the names otherwise."""
    if name not in SCENARIOS:
        raise ConfigError("scenario", name, "allowed values are " + ", ".join(SCENARIOS))
    return SCENARIOS[name]


def make_config(name: str, overrides: dict | None = None) -> Any:
    """The scenario's config with `overrides` applied; unknown keys are a ConfigError."""
    spec = scenario_spec(name)
    overrides = dict(overrides or {})
    fields = {f.name for f in dataclasses.fields(spec.config_type)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}", overrides[unknown[0]],
                          "allowed keys are " + ", ".join(sorted(fields)))
    for key, value in overrides.items():
        if isinstance(value, list):
            overrides[key] = tuple(value)
    return spec.config_type(**overrides)


def generate(name: str, config: Any, seed: int, simulation_frequency: int) -> ScenarioInit:
    """The initial state of scenario `name` for `seed` (pure: same inputs, same output)."""
    spec = scenario_spec(name)
    if not isinstance(config, spec.config_type):
        raise ConfigError(f"{name} config", type(config).__name__,
                          f"must be a {spec.config_type.__name__}")
    rng = np.random.default_rng(seed)
    road, vehicles, hazard = spec.generator(config, rng, simulation_frequency)
    return ScenarioInit(name=name, seed=int(seed), simulation_frequency=simulation_frequency,
                        road=road, vehicles=tuple(vehicles), hazard=hazard,
                        duration_s=float(config.duration_s))
