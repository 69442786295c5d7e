"""A protocol's grid point: one test case as a `ScenarioInit`, with its parameters and id.

Every grid point of every suite is the same world: a straight 3-lane road (R157's curved
stationary tests: a 3-lane arc, `curve_init`), the vehicle under test (VUT, the ego) in
the middle lane, one target vehicle (slot 1), and the target's `HazardPlan`. No random
traffic: a protocol test is a fixed geometry, so the only seeds in play key sensor noise
and latency draws (`ScenarioInit.seed`).

Hazard vocabulary (`envs.scenarios.HAZARD_KINDS`, no new kind):

- a target that is there from the test's start (Euro NCAP CCRs and CCRm start at TTC 4 s)
  is a "stopped_vehicle" hazard whose trigger range covers the whole road, so its onset
  is `t = 0`: the kind's meaning is "a vehicle whose presence is the hazard", its twin
  (`envs.scenarios.without_hazard`) has that slot empty. For CCRm the vehicle moves: an
  IDM vehicle with no one ahead, cruising at its target speed, which IDM holds exactly;
- a target that is out of the sensors' reach at the start (R157's stationary obstacle)
  is a "stopped_vehicle" hazard with the sensors' range as trigger: its onset is when it
  comes into range, as in the stopped-vehicle scenario;
- a braking target is "lead_brake" at a planned onset substep, a cutting-in one "cut_in".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from reflexdrive.envs.curved_scenarios import (
    CURVE_ARC_M,
    CURVE_DESTINATION,
    CURVE_EXIT_M,
    curve_lane,
)
from reflexdrive.envs.scenarios import (
    EGO_START_S,
    VEHICLE_LENGTH_M,
    HazardPlan,
    RoadSpec,
    ScenarioInit,
    VehicleInit,
)

KPH = 1.0 / 3.6
"""Metres per second in one km/h."""
EGO_LANE = 1
"""The VUT's lane on the 3-lane road (a neighbour on each side)."""
TARGET_SLOT = 1
"""Slot of the target vehicle in every grid point's `ScenarioInit.vehicles`."""
ROAD = RoadSpec(kind="straight", lanes=3, length_m=2000.0)
"""Every protocol test's road (2 km: the longest test drives < 500 m)."""
PRESENT_FROM_START_M = ROAD.length_m
"""Trigger range of a target that is the hazard from `t = 0` [m]: the whole road."""


def lane(index: int) -> tuple[str, str, int]:
    """The highway-env lane id of lane `index` of the straight road."""
    return ("0", "1", index)


@dataclass(frozen=True)
class GridPoint:
    """One test case of a protocol suite.

    Attributes:
        suite: "ncap-ccr" or "r157".
        test: the test family, e.g. "CCRs", "lead-brake".
        point: stable id of the point within the suite, e.g. "CCRs-v20".
        parameters: the point's parameters beside the ego speed, as CSV columns (name ->
            value; units in the names).
        init: the world to play (its hazard-removed twin is `without_hazard(init)`).
        test_speed_mps: the VUT's test speed, held by the harness [m/s].
        release_s: the planned hazard onset [s], when the test rig hands the VUT to the
            stack (`protocol.hold_speed`); 0 for targets present from the start.
        heat_row, heat_col: where the point sits in its test's heat map (labels).
        heat_facet: which of its test's heat maps holds it, for a grid of more than two
            axes (e.g. R157 cut-in: one per lateral speed); "" for a single map.
        ends_when_slower: Euro NCAP's end of test: also when the VUT is at standstill or
            slower than the target (a later contact does not count); False: any contact
            in the episode counts (R157).
        steer_from_start: the rig lets the stack steer before the release too (a curved
            road: steering 0 would leave the lane); False: the rig steers 0 until then.
    """

    suite: str
    test: str
    point: str
    parameters: Mapping[str, float]
    init: ScenarioInit
    test_speed_mps: float
    release_s: float
    heat_row: str
    heat_col: str
    ends_when_slower: bool = False
    target_slot: int = field(default=TARGET_SLOT)
    heat_facet: str = ""
    steer_from_start: bool = False

    @property
    def ego_speed_kph(self) -> float:
        return round(self.test_speed_mps / KPH, 6)

    @property
    def needs_highway(self) -> bool:
        """Whether the point runs on the highway backend: its road is not straight (the
        protocol harness does not use the batched backend's per-world curves yet)."""
        return self.init.road.kind != "straight"


def straight_init(name: str, seed: int, simulation_frequency: int, ego_speed_mps: float,
                  target: VehicleInit, hazard: HazardPlan, duration_s: float) -> ScenarioInit:
    """A grid point's world: the VUT at `EGO_START_S` in `EGO_LANE` at its test speed, and
    `target` in slot 1 (slot 0 is the ego)."""
    ego = VehicleInit(lane(EGO_LANE), EGO_START_S, ego_speed_mps, ego_speed_mps, "ego")
    return ScenarioInit(name=name, seed=int(seed), simulation_frequency=simulation_frequency,
                        road=ROAD, vehicles=(ego, target), hazard=hazard,
                        duration_s=float(duration_s))


def ahead_s(gap_m: float) -> float:
    """Centre position of a vehicle whose rear is `gap_m` ahead of the VUT's front [m]."""
    return EGO_START_S + gap_m + VEHICLE_LENGTH_M


def cruising(lane_index: int, s_m: float, speed_mps: float) -> VehicleInit:
    """An IDM vehicle that keeps its lane and cruises at `speed_mps` (IDM with nobody ahead
    and its target speed equal to its speed accelerates by exactly 0)."""
    return VehicleInit(lane(lane_index), s_m, speed_mps, speed_mps, "idm", lane_changes=False)


def parked(s_m: float) -> VehicleInit:
    """A stationary vehicle in the VUT's lane."""
    return VehicleInit(lane(EGO_LANE), s_m, 0.0, 0.0, "static", lane_changes=False)


def curve_init(name: str, seed: int, simulation_frequency: int, ego_speed_mps: float,
               gap_m: float, turn: str, radius_m: float, hazard: HazardPlan,
               duration_s: float) -> ScenarioInit:
    """A grid point on a curve: the 3-lane road of `envs.curved_scenarios` (a straight
    lead-in of `EGO_START_S`, an arc whose ego-lane centreline has radius `radius_m` [m],
    turning `turn` ("left" or "right"), then a straight exit), the VUT in `EGO_LANE` where
    the arc begins at its test speed, and a stationary target in its lane whose rear is
    `gap_m` [m] ahead of the VUT's front along the lane (slot 1)."""
    sign = 1.0 if turn == "right" else -1.0
    road = RoadSpec(kind="curve", lanes=ROAD.lanes, length_m=CURVE_EXIT_M,
                    lead_in_m=EGO_START_S,
                    radius_m=radius_m + sign * EGO_LANE * ROAD.lane_width_m,
                    arc_rad=sign * CURVE_ARC_M / radius_m)
    ego_lane, ego_s = curve_lane(road, EGO_LANE, EGO_START_S)
    target_lane, target_s = curve_lane(road, EGO_LANE, ahead_s(gap_m))
    ego = VehicleInit(ego_lane, ego_s, ego_speed_mps, ego_speed_mps, "ego",
                      destination=CURVE_DESTINATION)
    target = VehicleInit(target_lane, target_s, 0.0, 0.0, "static", lane_changes=False,
                         destination=CURVE_DESTINATION)
    return ScenarioInit(name=name, seed=int(seed), simulation_frequency=simulation_frequency,
                        road=road, vehicles=(ego, target), hazard=hazard,
                        duration_s=float(duration_s))
