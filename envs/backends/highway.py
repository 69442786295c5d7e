"""The `highway` backend: highway-env's roads, vehicles and dynamics, one world per instance.

The reference implementation. It uses highway-env's own classes: `Road`/`RoadNetwork` (and
the Merge, Roundabout and Intersection road builders), a kinematic-bicycle `Vehicle` for the
ego, `IDMVehicle` (IDM + MOBIL) for traffic. One substep is highway-env's simulation step
(`road.act()`, then every vehicle steps `dt`), with these differences:

- the ego is stepped piece by piece, so a command can land mid-substep (see envs.clock);
- braking stops the ego at standstill instead of reversing it, and traffic is a
  `TrafficVehicle` (`MIN_SPEED = 0`): highway-env's IDM reversed stopped vehicles;
- on the straight road, collisions are checked for the ego only (as highway-fast does);
  on road networks (merge, roundabout, intersection, curve) every pair is, as `road.step`
  does (`_handle_collisions`): there traffic that drove through traffic would reverse
  (the IDM behind an overlapped leader runs its speed negative) into the ego;
- on the intersection (a `RegulatedRoad`) the right-of-way rules that `road.step` would run
  every 0.5 s are run by `envs.backends.regulation.regulate`, at the same point of the same
  substeps, sparing the vehicles that must not yield (`VehicleInit.regulated`).
"""

from __future__ import annotations

import types
from typing import Sequence

import numpy as np
from highway_env.road.lane import CircularLane, LineType, StraightLane
from highway_env.road.regulation import RegulatedRoad
from highway_env.road.road import Road, RoadNetwork
from highway_env.utils import wrap_to_pi
from highway_env.vehicle.kinematics import Vehicle
from reflexdrive.envs.backends.highway_map import HighwayRoadMap
from reflexdrive.envs.backends.regulation import regulate, regulation_due, regulation_period
from reflexdrive.envs.backends.route_exit import route_exit_road
from reflexdrive.envs.backends.traffic_vehicle import TrafficVehicle
from reflexdrive.envs.scenarios import (
    HazardPlan,
    RoadSpec,
    ScenarioInit,
    VehicleInit,
    sinusoidal_lane_change,
)
from reflexdrive.envs.types import Piece, RoadGeometry, WorldSnapshot

CHORD_M = 2.0
"""Sampling step for curved lanes in the road geometry [m]."""
STRIPE_LENGTH_M = 3.0
STRIPE_PERIOD_M = 3.0 + 4.33
"""Painted stripes of striped lane lines, as highway-env draws them [m]."""


class BrakingLeadVehicle(TrafficVehicle):
    """An IDM vehicle that, once told to, brakes at a constant rate to a standstill."""

    braking_decel_mps2: float | None = None
    substep_s: float = 0.02

    def act(self, action: dict | str | None = None) -> None:
        if self.braking_decel_mps2 is None or self.crashed:
            super().act(action)
            return
        steering = float(np.clip(self.steering_control(self.target_lane_index),
                                 -self.MAX_STEERING_ANGLE, self.MAX_STEERING_ANGLE))
        # Never overshoot below zero speed within one substep.
        decel = min(self.braking_decel_mps2, max(self.speed, 0.0) / self.substep_s)
        Vehicle.act(self, {"steering": steering, "acceleration": -decel})


class ProfiledCutInVehicle(TrafficVehicle):
    """An IDM vehicle that, once told to, changes lanes along a given lateral profile.

    Before `start_lane_change` (and in the hazard-removed twin, which never calls it) it
    is an `IDMVehicle`. From then on, each `step(dt)` while the profile runs and the
    vehicle has not crashed:

        u      = v cos(psi - psi_lane)                  longitudinal speed [m/s]
        s     += u dt                                   (highway-env's explicit Euler)
        r      = -side * to_go(t + dt)                  lateral offset from the target lane
        u     += a dt                                   a: IDM's command after `clip_actions`
        psi    = psi_lane + atan2(v_lat(t + dt), u),  v = hypot(u, v_lat(t + dt))

    with `(to_go, v_lat) = envs.scenarios.sinusoidal_lane_change(t + dt, ...)`, `t` the
    whole substeps since the start times `dt`, and `side = sign(-r)` (towards the target
    lane's centre). A pending impact is applied after the move, as in `Vehicle.step`. So
    the heading is the direction of motion and `v [cos psi, sin psi]` is the velocity.
    Once the profile has ended (`t >= T`, the vehicle on the target lane's centre) or the
    vehicle crashed, it is again an `IDMVehicle` (steering to `target_lane_index`).
    """

    lateral_speed_mps: float | None = None
    lane_change_steps: int = 0

    def start_lane_change(self, lateral_speed_mps: float) -> None:
        """Start the profile towards `target_lane_index` (set it first)."""
        self.lateral_speed_mps = float(lateral_speed_mps)
        self.lane_change_steps = 0

    def _changing(self, dt: float) -> bool:
        if self.lateral_speed_mps is None or self.crashed:
            return False
        width = self.road.network.get_lane(self.target_lane_index).width_at(0.0)
        phase = 2.0 * self.lateral_speed_mps / width * (self.lane_change_steps * dt)
        return phase < np.pi

    def step(self, dt: float) -> None:
        if not self._changing(dt):
            super().step(dt)
            return
        self.timer += dt
        self.clip_actions()
        lane = self.road.network.get_lane(self.target_lane_index)
        s, r = lane.local_coordinates(self.position)
        lane_heading = lane.heading_at(s)
        side = float(np.sign(-r))
        self.lane_change_steps += 1
        to_go, lateral = sinusoidal_lane_change(self.lane_change_steps * dt,
                                                self.lateral_speed_mps, lane.width_at(s))
        u = self.speed * np.cos(self.heading - lane_heading)
        self.position = lane.position(u * dt + s, -(side * to_go))
        if self.impact is not None:
            self.position += self.impact
            self.crashed = True
            self.impact = None
        u = self.action["acceleration"] * dt + u
        lateral = side * lateral
        self.heading = lane_heading + float(np.arctan2(lateral, u))
        self.speed = float(np.hypot(u, lateral))
        self.on_state_update()


class YieldingVehicle(BrakingLeadVehicle):
    """An IDM vehicle that, from substep `yield_substep` on, brakes to a stop at the end of
    its starting lane (its stop line): `VehicleInit.yield_substep`, the crossing vehicle of a
    cross-traffic episode's twin. In that substep it takes the constant deceleration
    `v^2 / (2 d)` that stops its front in the distance `d` left to the line (then as
    `BrakingLeadVehicle`)."""

    yield_substep: int = 0
    stop_lane: tuple | None = None
    substeps: int = 0

    def act(self, action: dict | str | None = None) -> None:
        if self.braking_decel_mps2 is None and self.substeps >= self.yield_substep:
            lane = self.road.network.get_lane(self.stop_lane)
            left = lane.length - lane.local_coordinates(self.position)[0] - self.LENGTH / 2
            self.braking_decel_mps2 = self.speed * self.speed / (2.0 * max(left, 1e-3))
        self.substeps += 1
        super().act(action)


def _curve_network(spec: RoadSpec) -> RoadNetwork:
    """A "curve" road (`RoadSpec`): straight lead-in "0" -> "1" along +x, `CircularLane`
    arc "1" -> "2" about one centre, straight exit "2" -> "3"; the straight road's lane
    width and markings on every edge."""
    width, lanes = spec.lane_width_m, spec.lanes
    turn = 1.0 if spec.arc_rad > 0 else -1.0
    centre = np.array([spec.lead_in_m, turn * spec.radius_m])
    start_phase = -turn * np.pi / 2
    net = RoadNetwork()
    for lane in range(lanes):
        line_types = [LineType.CONTINUOUS_LINE if lane == 0 else LineType.STRIPED,
                      LineType.CONTINUOUS_LINE if lane == lanes - 1 else LineType.NONE]
        limit = spec.speed_limit_mps
        net.add_lane("0", "1", StraightLane([0.0, lane * width], [spec.lead_in_m, lane * width],
                                            line_types=line_types, speed_limit=limit))
        arc = CircularLane(centre, spec.radius_m - turn * lane * width, start_phase,
                           start_phase + spec.arc_rad, clockwise=turn > 0, width=width,
                           line_types=line_types, speed_limit=limit)
        net.add_lane("1", "2", arc)
        start = arc.position(arc.length, 0.0)
        heading = arc.heading_at(arc.length)
        end = start + spec.length_m * np.array([np.cos(heading), np.sin(heading)])
        net.add_lane("2", "3", StraightLane(start, end, line_types=line_types,
                                            speed_limit=limit))
    return net


def _build_network_road(kind: str, rng: np.random.RandomState) -> Road:
    """Build one of highway-env's own road networks by calling its env's `_make_road`."""
    from highway_env.envs.intersection_env import IntersectionEnv
    from highway_env.envs.merge_env import MergeEnv
    from highway_env.envs.roundabout_env import RoundaboutEnv

    env_type = {"merge": MergeEnv, "roundabout": RoundaboutEnv,
                "intersection": IntersectionEnv}[kind]
    holder = types.SimpleNamespace(config=env_type.default_config(), np_random=rng)
    env_type._make_road(holder)
    holder.road.record_history = False
    return holder.road


def build_road(spec: RoadSpec, seed: int) -> Road:
    """A highway-env `Road` (no vehicles yet) for `spec`."""
    rng = np.random.RandomState(seed % (2**32))
    if spec.kind in ("straight", "curve"):
        if spec.lane_width_m != StraightLane.DEFAULT_WIDTH:
            from reflexdrive.common.validation import ConfigError

            raise ConfigError("road.lane_width_m", spec.lane_width_m,
                              f"must be {StraightLane.DEFAULT_WIDTH:g}: highway-env's straight "
                              "road network has fixed-width lanes")
        if spec.kind == "curve":     # IDM sees leaders across the edges' ends
            return Road(network=_curve_network(spec), np_random=rng, record_history=False,
                        neighbour_vehicles_connected_lanes=True)
        network = RoadNetwork.straight_road_network(
            lanes=spec.lanes, length=spec.length_m, speed_limit=spec.speed_limit_mps)
        return Road(network=network, np_random=rng, record_history=False)
    return _build_network_road(spec.kind, rng)


def _make_vehicle(road: Road, init: VehicleInit, slot: int, hazard: HazardPlan,
                  substep_s: float) -> Vehicle:
    lane = road.network.get_lane(init.lane)
    position = lane.position(init.s_m, 0.0)
    heading = lane.heading_at(init.s_m)
    if init.behavior == "ego" or init.behavior == "static":
        vehicle = Vehicle(road, position, heading, init.speed_mps)
    elif init.behavior == "idm":
        vehicle_type = TrafficVehicle
        if hazard.vehicle == slot and hazard.kind == "lead_brake":
            vehicle_type = BrakingLeadVehicle
        elif hazard.vehicle == slot and hazard.lateral_speed_mps is not None:
            vehicle_type = ProfiledCutInVehicle
        elif init.yield_substep is not None:
            vehicle_type = YieldingVehicle
        vehicle = vehicle_type(road, position, heading, init.speed_mps,
                               target_lane_index=init.lane, target_speed=init.target_speed_mps,
                               enable_lane_change=init.lane_changes)
        if isinstance(vehicle, BrakingLeadVehicle):
            vehicle.substep_s = substep_s
        if isinstance(vehicle, YieldingVehicle):
            vehicle.yield_substep, vehicle.stop_lane = init.yield_substep, init.lane
        if init.destination is not None:
            vehicle.plan_route_to(init.destination)
    else:
        raise ValueError(f"vehicle behavior {init.behavior!r}: allowed values are ego, idm, static")
    vehicle.LENGTH = init.length_m
    vehicle.WIDTH = init.width_m
    vehicle.diagonal = float(np.hypot(init.length_m, init.width_m))
    return vehicle


def network_geometry(network: RoadNetwork) -> RoadGeometry:
    """Sample every lane of `network` into centre-line segments and painted boundary segments."""
    lane_segments, half_widths, markings = [], [], []
    for lanes in (to_dict for from_dict in network.graph.values()
                  for to_dict in from_dict.values()):
        for lane in lanes:
            straight = type(lane) is StraightLane
            n = 1 if straight else max(1, int(np.ceil(lane.length / CHORD_M)))
            s = np.linspace(0.0, lane.length, n + 1)
            centre = np.array([lane.position(si, 0.0) for si in s])
            for i in range(n):
                lane_segments.append(centre[i:i + 2])
                half_widths.append(0.5 * lane.width_at(0.5 * (s[i] + s[i + 1])))
            for side, line_type in enumerate(lane.line_types or ()):
                if line_type in (LineType.NONE,):
                    continue
                offset = (side - 0.5)
                if line_type == LineType.STRIPED:
                    starts = np.arange(0.0, lane.length, STRIPE_PERIOD_M)
                    ends = np.minimum(starts + STRIPE_LENGTH_M, lane.length)
                else:
                    starts, ends = s[:-1], s[1:]
                for a, b in zip(starts, ends):
                    markings.append([lane.position(a, offset * lane.width_at(a)),
                                     lane.position(b, offset * lane.width_at(b))])
    lane_array = np.asarray(lane_segments, dtype=np.float64)[None]
    marking_array = np.asarray(markings, dtype=np.float64).reshape(-1, 2, 2)[None]
    return RoadGeometry(
        lane_segments=lane_array,
        lane_half_width=np.asarray(half_widths, dtype=np.float64)[None],
        lane_valid=np.ones(lane_array.shape[:2], dtype=bool),
        marking_segments=marking_array,
        marking_valid=np.ones(marking_array.shape[:2], dtype=bool),
    )


class HighwayBackend:
    """One highway-env world behind the `Backend` protocol (`B = 1`)."""

    name = "highway"

    def __init__(self, simulation_frequency: int = 50):
        self.simulation_frequency = int(simulation_frequency)
        self._substep_s = 1.0 / self.simulation_frequency
        self._substep_index = 0
        self.road: Road | None = None
        self.ego: Vehicle | None = None
        self._others: list = []
        self._all_pairs = False
        """Check every pair for collisions (road networks), not only the ego's."""
        self._hazard = HazardPlan()
        self._hazard_vehicle = None
        self._geometry: RoadGeometry | None = None
        self._road_map: HighwayRoadMap | None = None
        self._exit_road: tuple[str, str] | None = None
        self._regulation_period = regulation_period(self._substep_s)
        self._unregulated: list = []
        """The vehicles the intersection's rules never make yield (`regulate`)."""

    # -- protocol -------------------------------------------------------------------------

    @property
    def substep_index(self) -> int:
        return self._substep_index

    def reset(self, init: ScenarioInit) -> None:
        if init.simulation_frequency != self.simulation_frequency:
            raise ValueError(
                f"scenario generated for {init.simulation_frequency} Hz, backend runs at "
                f"{self.simulation_frequency} Hz")
        road = build_road(init.road, init.seed)
        # an absent slot (`VehicleInit.present` False) stays in the snapshot as padding
        vehicles = [_make_vehicle(road, v, slot, init.hazard, self._substep_s) if v.present
                    else None for slot, v in enumerate(init.vehicles)]
        road.vehicles.extend(v for v in vehicles if v is not None)
        self.road = road
        self.ego = vehicles[0]
        self._others = vehicles[1:] + list(road.objects)
        self._all_pairs = init.road.kind != "straight"
        self._ids = (list(range(len(vehicles)))
                     + [len(vehicles) + i for i in range(len(road.objects))])
        self._hazard = init.hazard
        self._hazard_vehicle = vehicles[init.hazard.vehicle] if init.hazard.vehicle >= 0 else None
        self._unregulated = [v for v, spec in zip(vehicles, init.vehicles)
                             if v is not None and not spec.regulated]
        self._substep_index = 0
        self._geometry = network_geometry(road.network)
        self._road_map = HighwayRoadMap(road.network, init.vehicles[0].destination)
        self._exit_road = route_exit_road(road.network, init.vehicles[0].lane,
                                          init.vehicles[0].destination)

    def substep(self, pieces: Sequence[Piece]) -> None:
        self._trigger_hazard()
        dt = self._substep_s
        road, ego = self.road, self.ego
        road.act()
        if isinstance(road, RegulatedRoad) and regulation_due(self._substep_index,
                                                              self._regulation_period):
            regulate(road, self._unregulated)
        for vehicle in road.vehicles:
            if vehicle is not ego:
                vehicle.step(dt)
        for piece in pieces:
            # Brakes stop the car; they do not reverse it.
            acceleration = max(piece.command.acceleration, -max(ego.speed, 0.0) / piece.duration_s)
            ego.act({"acceleration": acceleration, "steering": piece.command.steering})
            ego.step(piece.duration_s)
        self._handle_collisions(dt)
        self._substep_index += 1

    def _handle_collisions(self, dt: float) -> None:
        """highway-env's `Road.step` collision loop after a substep (every vehicle against
        those after it, then against the objects); on the straight road only its first
        row, the ego's (`road.vehicles[0]`)."""
        vehicles, objects = self.road.vehicles, self.road.objects
        for i, vehicle in enumerate(vehicles if self._all_pairs else vehicles[:1]):
            for other in vehicles[i + 1:]:
                vehicle.handle_collisions(other, dt)
            for other in objects:
                vehicle.handle_collisions(other, dt)

    def snapshot(self) -> WorldSnapshot:
        ego = self.ego
        bodies = [ego, *self._others]
        lane = ego.lane
        s, lateral = lane.local_coordinates(ego.position)
        lane_count = len(self.road.network.graph[ego.lane_index[0]][ego.lane_index[1]])

        valid = np.array([[b is not None for b in bodies]])

        def column(read, dtype=np.float64):
            return np.asarray([read(b) if b is not None else np.zeros_like(read(ego))
                               for b in bodies], dtype=dtype)[None]

        return WorldSnapshot(
            time_s=np.array([self._substep_index * self._substep_s]),
            position=column(lambda b: b.position),
            heading=column(lambda b: b.heading),
            speed=column(lambda b: b.speed),
            acceleration=column(lambda b: getattr(b, "action", {}).get("acceleration", 0.0)),
            length=column(lambda b: b.LENGTH),
            width=column(lambda b: b.WIDTH),
            vehicle_id=np.where(valid, [0, *self._ids[1:]], -1).astype(np.int64),
            valid=valid,
            ego_steering=np.array([float(ego.action["steering"])]),
            ego_lane_offset=np.array([lateral]),
            ego_heading_error=np.array([wrap_to_pi(ego.heading - lane.heading_at(s))]),
            ego_lane_index=np.array([ego.lane_index[2]], dtype=np.int64),
            ego_lane_count=np.array([lane_count], dtype=np.int64),
            ego_on_road=np.array([bool(ego.on_road)]),
            crashed=np.array([bool(ego.crashed)]),
            ego_on_route_exit=np.array([tuple(ego.lane_index[:2]) == self._exit_road]),
        )

    def road_geometry(self) -> RoadGeometry:
        return self._geometry

    def road_map(self) -> dict[str, np.ndarray]:
        """`info["map"]` (`envs.road_map`) of the current state, batch-first (`B = 1`)."""
        ego = self.ego
        return self._road_map.observe(ego.position, ego.heading, ego.lane_index)

    # -- hazards --------------------------------------------------------------------------

    def _trigger_hazard(self) -> None:
        """Start a scripted hazard when its onset substep begins (t = onset_substep * dt)."""
        plan, vehicle = self._hazard, self._hazard_vehicle
        if plan.onset_substep is None or self._substep_index != plan.onset_substep:
            return
        if plan.kind == "lead_brake":
            vehicle.braking_decel_mps2 = plan.decel_mps2
        elif plan.kind == "cut_in":
            vehicle.target_lane_index = plan.target_lane
            vehicle.target_speed = plan.target_speed_mps
            if plan.lateral_speed_mps is not None:
                vehicle.start_lane_change(plan.lateral_speed_mps)
