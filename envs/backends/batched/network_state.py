"""The batched world on a highway-env road network (merge, roundabout, intersection).

`NetworkState` is `BatchedState`'s counterpart for roads given as `LaneTables`: lanes are
rows of the tables (not lane numbers of one straight road), and every route-following
vehicle carries its route. `network_state` builds it from `ScenarioInit`s as the highway
backend builds its vehicles (`envs.backends.highway._make_vehicle`).

Routes. highway-env's `plan_route_to(destination)` makes the route `[lane_index] + [(a, b,
None) for the shortest path's roads]`, from the lane the vehicle is on when created; at a
lane's end `RoadNetwork.next_lane` drops the route's head if it is the road just finished
and takes the next element's road. Here a route is a row of road rows (`route_road`) with
lane ids (`route_lane`, -1 for None) and a pointer to its head (`route_next`): dropping the
head is `route_next += 1`. Routes are planned once at reset from the scenario's
destinations (`RoadNetwork.shortest_path`, breadth-first, deterministic); where a vehicle
has no route, or past its end, `next_lane` takes the next road whose lane is closest,
which in highway-env 1.12 draws no random number, so every route decision is reproduced.

MOBIL lane changes (`lane_changes`, `timer`) run in the numba kernel only
(`numba.network_traffic`); the torch substep refuses them where they could act (a network
with multi-lane roads; on the intersection, every road one lane, `change_lane_policy`
never changes a target, see `mobil_free`).

Hazards: a stopped vehicle ("stopped_vehicle") is a "static" vehicle (it never moves; its
hazard-removed twin leaves the slot empty); a crossing vehicle ("cross_traffic") is an IDM
vehicle at its constant speed, and its twin yields (`VehicleInit.yield_substep`: from that
substep on it brakes at the constant rate that stops its front at the end of its starting
lane, highway-env's `YieldingVehicle` in `envs.backends.highway`): `yield_substep`,
`yield_lane` say when and where, `brake_decel` is the rate once known (set by
`start_yielding` at the boundary, applied by the numba kernel's `network_act`).
Collisions (`crashed`, `impact`) are set by the numba kernel's collision phase
(`numba.network_traffic.network_collisions`, or `torch.collision.pair_collisions` when the
torch substep is asked for them); otherwise the torch substep carries and honours them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.objects import Obstacle
from reflexdrive.envs.backends.batched.lanes import LaneLayout, torch_tables
from reflexdrive.envs.backends.batched.state import EGO_KIND, IDM_KIND, STATIC_KIND
from reflexdrive.envs.backends.batched.torch.network import closest_lane, heading_at, lane_position
from reflexdrive.envs.scenarios import ScenarioInit

from reflexdrive.common.validation import ConfigError

OBSTACLE_KIND = 4
"""Kind code of a road object (`Obstacle`): never moves, is seen as a front vehicle with
velocity 0 (after `state.VEHICLE_KINDS`' four codes)."""
BEHAVIOUR_KINDS = {"ego": EGO_KIND, "idm": IDM_KIND, "static": STATIC_KIND}


@dataclass(frozen=True)
class NetworkState:
    """`B` worlds on one road network after `substep` substeps.

    Vehicle fields are `(B, N)` unless stated; slot 0 is the ego, then the scenario's
    vehicles, then the road's obstacles; padding slots have `valid == False`.

    Attributes:
        position: `(B, N, 2)` centre [m]; heading [rad]; speed [m/s].
        valid: bool; length, width: footprint [m]; diagonal: `hypot(length, width)` [m]
            (the collision pre-check radius, as highway-env computes it per object).
        kind: int64 `EGO_KIND`, `IDM_KIND`, `STATIC_KIND` or `OBSTACLE_KIND`.
        lane: int64 lane row (`get_closest_lane_index` after each step).
        target_lane: int64 lane row an IDM vehicle steers to (`target_lane_index`).
        target_speed: IDM cruise speed [m/s]; 0 for the others.
        lane_changes: bool, an IDM vehicle with MOBIL (`enable_lane_change`).
        timer: MOBIL decision timer [s] (`IDMVehicle.timer`: `(x + y) pi mod
            LANE_CHANGE_DELAY` at creation, `+ dt` each step, 0 at each decision).
        steering [rad], acceleration [m/s^2]: last applied action.
        crashed: bool.
        impact: `(B, N, 2)` displacement a collision applies at the vehicle's next step [m];
        impact_pending: bool, `impact` not applied yet.
        route_road: `(B, N, R)` int64 road rows of the route, -1 padded (all -1: no route).
        route_lane: `(B, N, R)` int64 lane id of each route element, -1 for None.
        route_next: int64 index of the route's head in `route_road`.
        exit_road: `(B,)` int64 road row of the ego's route exit (`envs.backends.route_exit`:
            the road ending at its destination), -1 where its route has none.
        yield_substep: int64 substep from which an IDM vehicle yields, -1: never.
        yield_lane: int64 lane row whose end is its stop line (its starting lane), -1: none.
        brake_decel: constant deceleration it brakes at to a standstill [m/s^2] (-1: not
            braking): `v^2 / (2 d)` at its `yield_substep`, `d` its front's distance to
            the stop line (`start_yielding`).
        regulated: bool, an IDM vehicle the intersection's right-of-way rules may make
            yield (`VehicleInit.regulated`; `numba.regulation`).
        is_yielding: bool, yielding under those rules (target speed 0 until the next
            enforcement releases it: highway-env's `is_yielding`).
        yield_timer: int64 enforcements it has yielded through (highway-env's
            `yield_timer`; with `YIELD_DURATION = 0` a yield lasts one enforcement).
        substep: `(B,)` int64 substeps since reset.
    """

    position: torch.Tensor
    heading: torch.Tensor
    speed: torch.Tensor
    valid: torch.Tensor
    length: torch.Tensor
    width: torch.Tensor
    diagonal: torch.Tensor
    kind: torch.Tensor
    lane: torch.Tensor
    target_lane: torch.Tensor
    target_speed: torch.Tensor
    lane_changes: torch.Tensor
    timer: torch.Tensor
    steering: torch.Tensor
    acceleration: torch.Tensor
    crashed: torch.Tensor
    impact: torch.Tensor
    impact_pending: torch.Tensor
    route_road: torch.Tensor
    route_lane: torch.Tensor
    route_next: torch.Tensor
    exit_road: torch.Tensor
    yield_substep: torch.Tensor
    yield_lane: torch.Tensor
    brake_decel: torch.Tensor
    regulated: torch.Tensor
    is_yielding: torch.Tensor
    yield_timer: torch.Tensor
    substep: torch.Tensor

    def replace(self, **changes) -> "NetworkState":
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    def to(self, device) -> "NetworkState":
        """The state on `device` (itself if it is there already)."""
        device = torch.device(device)
        if self.position.device == device:
            return self
        return NetworkState(**{f.name: getattr(self, f.name).to(device)
                               for f in dataclasses.fields(self)})

    def validate(self) -> None:
        """Raise ValueError unless every field has its documented shape."""
        batch, slots = self.valid.shape
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = {"position": (batch, slots, 2), "impact": (batch, slots, 2),
                        "substep": (batch,), "exit_road": (batch,)}.get(
                f.name, (batch, slots))
            if f.name in ("route_road", "route_lane"):
                expected = (batch, slots, self.route_road.shape[-1])
            if tuple(value.shape) != expected:
                raise ValueError(f"NetworkState.{f.name} has shape {tuple(value.shape)}, "
                                 f"expected {expected}")


def mobil_free(tables) -> bool:
    """True if MOBIL can never change a lane on the network of `tables` (`LaneTables`,
    numpy or torch): every road has one lane."""
    return bool((tables.road_lane_count == 1).all())


NETWORK_HAZARDS = ("none", "stopped_vehicle", "cross_traffic")
"""Hazard kinds the network state models (module docstring)."""


def _check(init: ScenarioInit, layout_kind: str) -> None:
    """ConfigError where `init` needs what the network backend does not model yet."""
    if init.road.kind != layout_kind:
        raise ConfigError("road.kind", init.road.kind, f"every world must be {layout_kind!r}")
    if init.hazard.kind not in NETWORK_HAZARDS:
        raise ConfigError("hazard.kind", init.hazard.kind,
                          "road networks support " + ", ".join(NETWORK_HAZARDS))
    for vehicle in init.vehicles:
        if vehicle.yield_substep is not None and vehicle.behavior != "idm":
            raise ConfigError("vehicle.yield_substep", vehicle.yield_substep,
                              "only an 'idm' vehicle yields")


def network_state(inits: Sequence[ScenarioInit], layout: LaneLayout, layout_kind: str,
                  device="cpu", dtype=torch.float64, slots: int | None = None,
                  route_width: int | None = None) -> NetworkState:
    """The initial `NetworkState` of `inits` (one world each, all on `layout`'s network).

    `slots`, `route_width`: at least this many vehicle slots `N` and route elements `R`
    (padding), so that worlds reset later fit an existing state (`NetworkBackend`).

    Each vehicle is put on its lane at `s_m` with the lane's heading; its `lane` is the
    closest lane of that pose (as highway-env's constructor finds it), its target lane the
    scenario's lane, its target speed `target_speed_mps or speed_mps` (IDM) or 0, and its
    route `plan_route_to(destination)` from its closest lane (IDM with a destination);
    the ego's route exit is `route_exit_road` from its scenario lane, as the highway backend
    finds it (`LaneLayout.exit_road_row`).
    """
    for init in inits:
        _check(init, layout_kind)
    tables = torch_tables(layout.tables, device=device, dtype=dtype)
    obstacles = layout.obstacles
    batch = len(inits)
    slots = max([max(len(init.vehicles) for init in inits) + len(obstacles), slots or 0])
    lane = np.zeros((batch, slots), dtype=np.int64)
    s = np.zeros((batch, slots))
    columns = {name: np.zeros((batch, slots)) for name in
               ("speed", "length", "width", "diagonal", "target_speed")}
    valid = np.zeros((batch, slots), dtype=bool)
    lane_changes = np.zeros((batch, slots), dtype=bool)
    regulated = np.zeros((batch, slots), dtype=bool)
    yield_substep = np.full((batch, slots), -1, dtype=np.int64)
    yield_lane = np.full((batch, slots), -1, dtype=np.int64)
    kind = np.full((batch, slots), STATIC_KIND, dtype=np.int64)
    for b, init in enumerate(inits):
        for j, vehicle in enumerate(init.vehicles):
            if not vehicle.present:
                continue
            valid[b, j] = True
            kind[b, j] = BEHAVIOUR_KINDS[vehicle.behavior]
            lane[b, j] = layout.lane_row(vehicle.lane)
            s[b, j] = vehicle.s_m
            columns["speed"][b, j] = vehicle.speed_mps
            columns["length"][b, j] = vehicle.length_m
            columns["width"][b, j] = vehicle.width_m
            columns["diagonal"][b, j] = float(np.hypot(vehicle.length_m, vehicle.width_m))
            if vehicle.behavior == "idm":
                columns["target_speed"][b, j] = vehicle.target_speed_mps or vehicle.speed_mps
                lane_changes[b, j] = vehicle.lane_changes
                regulated[b, j] = vehicle.regulated
                if vehicle.yield_substep is not None:
                    yield_substep[b, j] = vehicle.yield_substep
                    yield_lane[b, j] = lane[b, j]
    lane_t = torch.as_tensor(lane, device=device)
    s_t = torch.as_tensor(s, device=device, dtype=dtype)
    position = lane_position(tables, lane_t, s_t, torch.zeros_like(s_t))
    heading = heading_at(tables, lane_t, s_t)
    for k, point in enumerate(obstacles):
        j = slots - len(obstacles) + k
        valid[:, j] = True
        kind[:, j] = OBSTACLE_KIND
        position[:, j] = torch.as_tensor(point, dtype=dtype)
        heading[:, j] = 0.0
        columns["length"][:, j] = Obstacle.LENGTH
        columns["width"][:, j] = Obstacle.WIDTH
        columns["diagonal"][:, j] = np.sqrt(Obstacle.LENGTH ** 2 + Obstacle.WIDTH ** 2)
    closest = closest_lane(tables, position, heading)
    # IDMVehicle: `timer or (sum(position) * pi) % LANE_CHANGE_DELAY` (numpy's float `%`)
    delay = float(IDMVehicle.LANE_CHANGE_DELAY)
    timer = np.where(kind == IDM_KIND,
                     np.sum(position.cpu().numpy(), axis=-1) * np.pi % delay, 0.0)
    routes = _routes(inits, layout, closest.cpu().numpy())
    width = max([1, route_width or 0] + [len(route) for world in routes for route in world])
    route_road = np.full((batch, slots, width), -1, dtype=np.int64)
    route_lane = np.full((batch, slots, width), -1, dtype=np.int64)
    for b, world in enumerate(routes):
        for j, route in enumerate(world):
            for k, (road, lane_id) in enumerate(route):
                route_road[b, j, k], route_lane[b, j, k] = road, lane_id

    def tensor(array, as_dtype=None):
        return torch.as_tensor(array, device=device, dtype=as_dtype)

    state = NetworkState(
        position=position, heading=heading, speed=tensor(columns["speed"], dtype),
        valid=tensor(valid), length=tensor(columns["length"], dtype),
        width=tensor(columns["width"], dtype), diagonal=tensor(columns["diagonal"], dtype),
        kind=tensor(kind), lane=closest,
        target_lane=torch.where(tensor(kind) == IDM_KIND, lane_t, closest),
        target_speed=tensor(columns["target_speed"], dtype),
        lane_changes=tensor(lane_changes), timer=tensor(timer, dtype),
        steering=torch.zeros((batch, slots), device=device, dtype=dtype),
        acceleration=torch.zeros((batch, slots), device=device, dtype=dtype),
        crashed=torch.zeros((batch, slots), device=device, dtype=torch.bool),
        impact=torch.zeros((batch, slots, 2), device=device, dtype=dtype),
        impact_pending=torch.zeros((batch, slots), device=device, dtype=torch.bool),
        route_road=tensor(route_road), route_lane=tensor(route_lane),
        route_next=torch.zeros((batch, slots), device=device, dtype=torch.int64),
        exit_road=tensor(_exit_roads(inits, layout)),
        yield_substep=tensor(yield_substep), yield_lane=tensor(yield_lane),
        brake_decel=torch.full((batch, slots), -1.0, device=device, dtype=dtype),
        regulated=tensor(regulated),
        is_yielding=torch.zeros((batch, slots), device=device, dtype=torch.bool),
        yield_timer=torch.zeros((batch, slots), device=device, dtype=torch.int64),
        substep=torch.zeros((batch,), device=device, dtype=torch.int64))
    state.validate()
    return state


def start_yielding(tables, state: NetworkState) -> NetworkState:
    """The state with `brake_decel` set for every yielding vehicle whose `yield_substep` has
    come (`substep >= yield_substep`) and that is not braking yet: `YieldingVehicle.act`'s
    `v^2 / (2 max(d, 1e-3))`, `d = length - s - l / 2` of its centre's coordinate `s` on
    `yield_lane` [m] (`tables`: numpy `LaneTables`). The state itself when none starts."""
    due = ((state.yield_substep >= 0) & (state.brake_decel < 0) & state.valid
           & (state.substep[:, None] >= state.yield_substep))
    if not bool(due.any()):
        return state
    from reflexdrive.envs.backends.batched.numba.network import local_coordinates_many

    rows, slots = torch.nonzero(due, as_tuple=True)
    lanes = state.yield_lane[rows, slots].numpy()
    s, _ = local_coordinates_many(tables, lanes, state.position[rows, slots].numpy())
    left = tables.length[lanes] - s - state.length[rows, slots].numpy() / 2
    speed = state.speed[rows, slots].numpy()
    decel = state.brake_decel.clone()
    decel[rows, slots] = torch.as_tensor(speed * speed / (2.0 * np.maximum(left, 1e-3)),
                                         dtype=decel.dtype)
    return state.replace(brake_decel=decel)


def _exit_roads(inits: Sequence[ScenarioInit], layout: LaneLayout) -> np.ndarray:
    """`(B,)` int64 road row of each world's ego route exit (-1: none)."""
    return np.array([layout.exit_road_row(init.vehicles[0].lane, init.vehicles[0].destination)
                     for init in inits], dtype=np.int64).reshape(len(inits))


def _routes(inits: Sequence[ScenarioInit], layout: LaneLayout, closest: np.ndarray) -> list:
    """Per world, per vehicle slot: the planned route as `(road row, lane id or -1)` pairs
    (`ControlledVehicle.plan_route_to` from the closest lane `closest[b, j]`)."""
    paths: dict = {}
    routes = []
    for b, init in enumerate(inits):
        world = []
        for j, vehicle in enumerate(init.vehicles):
            if not vehicle.present or vehicle.behavior != "idm" or vehicle.destination is None:
                world.append([])
                continue
            origin, destination, lane_id = layout.lane_names[int(closest[b, j])]
            key = (destination, vehicle.destination)
            if key not in paths:
                try:
                    paths[key] = layout.network.shortest_path(*key)
                except KeyError:
                    paths[key] = []
            path = paths[key]
            world.append([(layout.road_row(origin, destination), lane_id)]
                         + [(layout.road_row(path[i], path[i + 1]), -1)
                            for i in range(len(path) - 1)])
        routes.append(world)
    return routes
