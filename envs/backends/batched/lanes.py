"""highway-env road networks as lane tables: every lane's geometry in flat arrays.

A `RoadNetwork` is a dict of dicts of lane objects (`graph[from][to][id]`). The batched code
cannot call those objects, so `network_layout` reads them once into `LaneTables`: one row
per lane, in the order `get_closest_lane_index` visits them (from node, to node, lane id:
the order that decides its ties), and one row per road (a `(from, to)` pair, the same
order). The values are copied from the lane objects' own attributes (`start`, `direction`,
`center`, `length`, ...), so the tables hold highway-env's geometry exactly.

Lane kinds (`LANE_KINDS`) and which columns each uses:

- straight (`StraightLane`): `origin` = start [m], `direction`, `lateral` (unit vectors),
  `heading` [rad];
- sine (`SineLane`): the straight columns of its base line, plus `amplitude` [m],
  `pulsation` [rad/m], `phase` [rad];
- circular (`CircularLane`): `origin` = centre [m], `radius` [m], `start_phase` [rad],
  `orientation` (+1 clockwise, -1 counter-clockwise: highway-env's `direction`).

Unused columns are 0. The same NamedTuple holds numpy arrays (for numba kernels) or torch
tensors (`torch_tables`).

Connected lanes. A `Road` built with `neighbour_vehicles_connected_lanes` (the "curve"
road) searches a vehicle's neighbours on the lanes before and after the searched one too;
`connected` lists them per lane in highway-env's order (`Road.neighbour_vehicles`), with
the offsets that put their coordinates in the searched lane's frame; a network without
the flag has `connected` all -1.

Fixed networks (`NETWORK_KINDS`: merge, roundabout, intersection) have one layout for every
seed (`scenario_layout`); a "curve" road's radius and turn are drawn per seed, so each
world has its own layout (`road_layout`), and `stack_tables` puts the worlds' tables
(all of one shape: the same lanes and roads, other geometry) side by side for the kernel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from highway_env.road.lane import AbstractLane, CircularLane, SineLane, StraightLane
from highway_env.road.road import RoadNetwork
from reflexdrive.envs.backends.route_exit import route_exit_road

LANE_KINDS = ("straight", "sine", "circular")
"""Codes of `LaneTables.kind`, by index."""
STRAIGHT, SINE, CIRCULAR = range(len(LANE_KINDS))

NETWORK_KINDS = ("merge", "roundabout", "intersection")
"""The scenarios' road kinds built from highway-env's own env road builders."""
WORLD_KINDS = ("curve",)
"""Road kinds whose geometry is drawn per seed: one layout per world (`road_layout`)."""


class LaneTables(NamedTuple):
    """One road network's lanes (`L` rows) and roads (`R` rows) as arrays.

    Lane rows, `(L,)` unless stated (`L` lanes in `RoadNetwork.graph` order):
        kind: int64 code, see `LANE_KINDS`.
        origin: `(L, 2)` start (straight, sine) or centre (circular) [m].
        direction, lateral: `(L, 2)` unit vectors along and at +90 deg of a straight line.
        heading: heading of the straight line [rad].
        amplitude [m], pulsation [rad/m], phase [rad]: sine terms.
        radius [m], start_phase [rad], orientation (+1 / -1): circle terms.
        width, length [m], speed_limit [m/s] (inf where highway-env has None).
        priority: int64 `lane.priority`.
        forbidden: bool `lane.forbidden` (MOBIL may not change into it).
        road: int64 road row of the lane; lane_id: int64 its number on that road.
        successors: `(L, S)` int64 lane rows of every lane of every road leaving the lane's
            end node (`graph[to]`, in order), -1 padded.
    Road rows, `(R,)`:
        road_from, road_to: int64 node numbers (`LaneLayout.node_names`).
        road_first_lane: int64 lane row of its lane 0; road_lane_count: int64 its lanes.
        next_roads: `(R, K)` int64 road rows leaving `road_to` in `graph[to]` order, -1
            padded (`RoadNetwork.next_lane`'s candidates).
    Connected lanes, `(L, C)` (module docstring):
        connected: int64 lane rows searched after the lane itself, -1 padded.
        connected_offset: [m] added to a coordinate on that lane to put it in the lane's
            frame (the lane's length after it, minus the earlier lane's length before it).
    """

    kind: np.ndarray
    origin: np.ndarray
    direction: np.ndarray
    lateral: np.ndarray
    heading: np.ndarray
    amplitude: np.ndarray
    pulsation: np.ndarray
    phase: np.ndarray
    radius: np.ndarray
    start_phase: np.ndarray
    orientation: np.ndarray
    width: np.ndarray
    length: np.ndarray
    speed_limit: np.ndarray
    priority: np.ndarray
    forbidden: np.ndarray
    road: np.ndarray
    lane_id: np.ndarray
    successors: np.ndarray
    road_from: np.ndarray
    road_to: np.ndarray
    road_first_lane: np.ndarray
    road_lane_count: np.ndarray
    next_roads: np.ndarray
    connected: np.ndarray
    connected_offset: np.ndarray


@dataclass(frozen=True)
class LaneLayout:
    """A network's `LaneTables` and the names behind their row numbers.

    Attributes:
        tables: the numpy tables (read-only arrays).
        lane_names: `(from, to, id)` highway-env lane index of each lane row.
        road_names: `(from, to)` of each road row.
        node_names: name of each node number.
        obstacles: `(K, 2)` float64 positions of the road's `Obstacle` objects [m]
            (`road.objects`; merge has one at the end of its ramp).
        network: the highway-env `RoadNetwork` the tables were read from (for route
            planning at reset, `RoadNetwork.shortest_path`).
    """

    tables: LaneTables
    lane_names: tuple[tuple[str, str, int], ...]
    road_names: tuple[tuple[str, str], ...]
    node_names: tuple[str, ...]
    obstacles: np.ndarray
    network: RoadNetwork
    _exit_roads: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def lane_row(self, lane_index: tuple[str, str, int]) -> int:
        """The row of a highway-env lane index `(from, to, id)`."""
        return self.lane_names.index((lane_index[0], lane_index[1], int(lane_index[2])))

    def road_row(self, origin: str, destination: str) -> int:
        """The row of the road `origin -> destination`."""
        return self.road_names.index((origin, destination))

    def exit_road_row(self, lane_index: tuple[str, str, int], destination: str | None) -> int:
        """The road row of the route exit from `lane_index` to `destination`
        (`envs.backends.route_exit.route_exit_road`), -1 where the route has none; cached
        per start and destination (walking the network takes up to ~0.1 ms)."""
        key = (tuple(lane_index), destination)
        if key not in self._exit_roads:
            road = route_exit_road(self.network, key[0], destination)
            self._exit_roads[key] = -1 if road is None else self.road_row(*road)
        return self._exit_roads[key]


def _lane_row(lane: AbstractLane) -> dict:
    """The table columns of one lane, copied from its attributes."""
    row = dict(kind=STRAIGHT, origin=(0.0, 0.0), direction=(0.0, 0.0), lateral=(0.0, 0.0),
               heading=0.0, amplitude=0.0, pulsation=0.0, phase=0.0, radius=0.0,
               start_phase=0.0, orientation=0.0)
    if isinstance(lane, StraightLane):           # SineLane is a StraightLane
        row.update(origin=lane.start, direction=lane.direction,
                   lateral=lane.direction_lateral, heading=lane.heading)
        if type(lane) is SineLane:
            row.update(kind=SINE, amplitude=lane.amplitude, pulsation=lane.pulsation,
                       phase=lane.phase)
        elif type(lane) is not StraightLane:
            raise TypeError(f"lane type {type(lane).__name__} has no lane table")
    elif type(lane) is CircularLane:
        row.update(kind=CIRCULAR, origin=lane.center, radius=lane.radius,
                   start_phase=lane.start_phase, orientation=lane.direction)
    else:
        raise TypeError(f"lane type {type(lane).__name__} has no lane table")
    limit = lane.speed_limit
    row.update(width=lane.width, length=lane.length,
               speed_limit=np.inf if limit is None else limit,
               priority=lane.priority, forbidden=lane.forbidden)
    return row


def _connected_lanes(network: RoadNetwork, lane_names: list) -> list:
    """Per lane, `(lane index, offset [m])` of the connected lanes `Road.neighbour_vehicles`
    searches with `neighbour_vehicles_connected_lanes`, in its order: lane `id` (else 0)
    of each road leaving the lane's end (offset: the lane's length), then of each road
    ending at its start (offset: minus that lane's length)."""
    out = []
    for origin, destination, lane_id in lane_names:
        length = network.graph[origin][destination][lane_id].length
        found = []
        for after, lanes in network.graph.get(destination, {}).items():
            if lanes:
                found.append(((destination, after, lane_id if lane_id < len(lanes) else 0),
                              length))
        for before, to_dict in network.graph.items():
            if origin in to_dict and to_dict[origin]:
                lanes = to_dict[origin]
                k = lane_id if lane_id < len(lanes) else 0
                found.append(((before, origin, k), -lanes[k].length))
        out.append(found)
    return out


def network_layout(network: RoadNetwork, obstacles=(), connected_lanes: bool = False
                   ) -> LaneLayout:
    """Read `network` into a `LaneLayout` (`obstacles`: positions of static road objects;
    `connected_lanes`: the road searches neighbours on connected lanes too)."""
    lane_names, road_names, rows, node_names = [], [], [], []
    road_first, road_count = [], []
    for origin, to_dict in network.graph.items():
        for destination, lanes in to_dict.items():
            for node in (origin, destination):
                if node not in node_names:
                    node_names.append(node)
            road_first.append(len(lane_names))
            road_count.append(len(lanes))
            for lane_id, lane in enumerate(lanes):
                lane_names.append((origin, destination, lane_id))
                rows.append(_lane_row(lane) | {"road": len(road_names), "lane_id": lane_id})
            road_names.append((origin, destination))
    next_lists = [[road_names.index((destination, after))
                   for after in network.graph.get(destination, {})]
                  for _, destination in road_names]
    width = max([1] + [len(n) for n in next_lists])
    next_roads = np.full((len(road_names), width), -1, dtype=np.int64)
    for r, n in enumerate(next_lists):
        next_roads[r, :len(n)] = n
    successor_lists = [[road_first[n] + i for n in next_lists[row["road"]]
                        for i in range(road_count[n])] for row in rows]
    successors = np.full((len(rows), max([1] + [len(s) for s in successor_lists])), -1,
                         dtype=np.int64)
    for lane, s in enumerate(successor_lists):
        successors[lane, :len(s)] = s

    connected_lists = (_connected_lanes(network, lane_names) if connected_lanes
                       else [[] for _ in lane_names])
    width = max([1] + [len(c) for c in connected_lists])
    connected = np.full((len(rows), width), -1, dtype=np.int64)
    connected_offset = np.zeros((len(rows), width))
    for lane, found in enumerate(connected_lists):
        for k, (name, offset) in enumerate(found):
            connected[lane, k] = lane_names.index(name)
            connected_offset[lane, k] = offset

    def column(name, dtype):
        return np.asarray([row[name] for row in rows], dtype=dtype)

    floats = {name: column(name, np.float64) for name in (
        "origin", "direction", "lateral", "heading", "amplitude", "pulsation", "phase",
        "radius", "start_phase", "orientation", "width", "length", "speed_limit")}
    tables = LaneTables(
        kind=column("kind", np.int64), **floats,
        priority=column("priority", np.int64), forbidden=column("forbidden", bool),
        road=column("road", np.int64), lane_id=column("lane_id", np.int64),
        successors=successors,
        road_from=np.asarray([node_names.index(a) for a, _ in road_names], dtype=np.int64),
        road_to=np.asarray([node_names.index(b) for _, b in road_names], dtype=np.int64),
        road_first_lane=np.asarray(road_first, dtype=np.int64),
        road_lane_count=np.asarray(road_count, dtype=np.int64),
        next_roads=next_roads, connected=connected, connected_offset=connected_offset)
    for array in tables:
        array.flags.writeable = False
    return LaneLayout(tables=tables, lane_names=tuple(lane_names), road_names=tuple(road_names),
                      node_names=tuple(node_names),
                      obstacles=np.asarray(obstacles, dtype=np.float64).reshape(-1, 2),
                      network=network)


@functools.lru_cache(maxsize=len(NETWORK_KINDS))
def scenario_layout(kind: str) -> LaneLayout:
    """The `LaneLayout` of the road the highway backend builds for road kind `kind` (one of
    `NETWORK_KINDS`; these builders draw no random numbers, so one layout serves every seed)."""
    from reflexdrive.envs.backends.highway import build_road
    from reflexdrive.envs.scenarios import RoadSpec

    if kind not in NETWORK_KINDS:
        from reflexdrive.common.validation import ConfigError

        raise ConfigError("road.kind", kind, "allowed values are " + ", ".join(NETWORK_KINDS))
    road = build_road(RoadSpec(kind=kind), seed=0)
    return network_layout(road.network, [o.position for o in road.objects])


@functools.lru_cache(maxsize=1024)
def road_layout(road) -> LaneLayout:
    """The `LaneLayout` of the road the highway backend builds for `road` (a `RoadSpec` of
    a kind in `WORLD_KINDS`, drawn per seed; cached per spec: the twins of an episode and
    a rerun share it)."""
    from reflexdrive.envs.backends.highway import build_road

    if road.kind not in WORLD_KINDS:
        from reflexdrive.common.validation import ConfigError

        raise ConfigError("road.kind", road.kind, "allowed values are " + ", ".join(WORLD_KINDS))
    built = build_road(road, seed=0)
    return network_layout(built.network, [o.position for o in built.objects],
                          connected_lanes=built.neighbour_vehicles_connected_lanes)


def stack_tables(layouts) -> LaneTables:
    """The numpy tables of `B` layouts side by side: every array `(B, ...)` (world first).
    All must have the same lanes and roads (`lane_names`); ValueError otherwise."""
    first = layouts[0]
    for layout in layouts[1:]:
        if layout.lane_names != first.lane_names or any(
                a.shape != b.shape for a, b in zip(layout.tables, first.tables)):
            raise ValueError("stacked worlds need the same lanes and roads: "
                             f"{first.lane_names} and {layout.lane_names}")
    return LaneTables(*(np.stack(arrays) for arrays in zip(*(layout.tables
                                                             for layout in layouts))))


def flat_tables(stacked: LaneTables) -> LaneTables:
    """`B` worlds' stacked tables (`stack_tables`) as one table of `B L` lanes and `B R`
    roads: world `b`'s lane `i` is row `b L + i`, its road `r` row `b R + r` (the row
    columns offset to match). For what indexes lanes row by row (the snapshot), not for
    what searches every lane (`closest_lane`: it would cross worlds)."""
    batch, lanes = stacked.kind.shape
    roads = stacked.road_from.shape[1]
    lane_base = (np.arange(batch) * lanes).reshape(-1, 1, 1)
    road_base = (np.arange(batch) * roads).reshape(-1, 1, 1)

    def shift(array, base):
        shifted = np.where(array >= 0, array + base.reshape(
            (batch,) + (1,) * (array.ndim - 1)), array)
        return shifted

    columns = stacked._asdict()
    columns.update(road=shift(stacked.road, road_base), successors=shift(stacked.successors,
                                                                         lane_base),
                   road_first_lane=shift(stacked.road_first_lane, lane_base),
                   next_roads=shift(stacked.next_roads, road_base),
                   connected=shift(stacked.connected, lane_base))
    return LaneTables(*(np.ascontiguousarray(columns[name]).reshape(
        (-1,) + columns[name].shape[2:]) for name in LaneTables._fields))


def torch_tables(tables: LaneTables, device=None, dtype=None) -> LaneTables:
    """The same tables as torch tensors (floats as `dtype`, default float64)."""
    import torch

    def convert(array: np.ndarray):
        tensor = torch.as_tensor(np.array(array), device=device)
        if tensor.is_floating_point():
            tensor = tensor.to(dtype or torch.float64)
        return tensor

    return LaneTables(*(convert(a) for a in tables))

