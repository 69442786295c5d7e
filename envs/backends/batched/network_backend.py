"""`NetworkBackend`: `B` worlds on highway-env road networks (merge, roundabout,
intersection: one network for all; the "curve" road: one per world), with
`BatchedBackend`'s interface as `BatchedDrivingEnv` uses it.

The worlds are a `NetworkState` stepped by the numba network kernel
(`numba.network_traffic.network_substep_cpu`: traffic, the ego's command pieces, the ego's
collisions; on per-world roads `numba.network_worlds.network_substep_own_tables`, each
world on its own lane tables); the snapshot is `network_snapshot` and the road geometry is
`envs.backends.highway.network_geometry` of the same network, so both backends' sensors
draw the same road. Runs float64 on CPU (the kernel's); `tick` is not offered
(`stepper = "network"`: the vector env steps substep by substep).

Per-world roads (`lanes.WORLD_KINDS`): a curve's radius and turn are drawn per seed, so
the worlds of one batch have different geometry but the same lanes and roads (the same
lane count). Each world's `LaneLayout` comes from its `RoadSpec` (`lanes.road_layout`,
cached per spec); the kernel reads the worlds' tables stacked (`lanes.stack_tables`),
world `b` its own rows; the snapshot reads them flattened (`lanes.flat_tables`, world
`b`'s lane `i` at row `b L + i`); the road geometry and the map are each world's.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch
from reflexdrive.envs.backends.batched import numba as numba_impl
from reflexdrive.envs.backends.batched.lanes import (
    WORLD_KINDS,
    LaneLayout,
    flat_tables,
    road_layout,
    scenario_layout,
    stack_tables,
    torch_tables,
)
from reflexdrive.envs.backends.batched.network_snapshot import ego_lane_terms, network_snapshot
from reflexdrive.envs.backends.batched.network_state import (
    NetworkState,
    network_state,
    start_yielding,
)
from reflexdrive.envs.backends.batched.numba.network_traffic import network_substep_cpu
from reflexdrive.envs.backends.batched.numba.network_worlds import (
    network_substep_own_tables,
    stacked_bounds,
)
from reflexdrive.envs.backends.batched.numba.regulation import network_substep_regulated
from reflexdrive.envs.backends.batched.state import Params
from reflexdrive.envs.backends.highway import network_geometry
from reflexdrive.envs.backends.highway_map import HighwayRoadMap
from reflexdrive.envs.backends.regulation import REGULATED_KINDS
from reflexdrive.envs.road_map import empty_map
from reflexdrive.envs.scenarios import ScenarioInit
from reflexdrive.envs.types import EGO, RoadGeometry, WorldSnapshot

from reflexdrive.common.validation import ConfigError


class NetworkBackend:
    """`B` worlds on the road network of kind `road_kind` (`lanes.NETWORK_KINDS`), or each
    on its own road of that kind (`lanes.WORLD_KINDS`).

    Args:
        num_envs: worlds `B`.
        road_kind: "merge", "roundabout", "intersection" or "curve"; every reset's inits
            must have it.
        simulation_frequency: substeps per second [Hz].
        device: must be "cpu" (the numba kernel's).
    """

    name = "batched"
    stepper = "network"
    """No whole-tick kernel: `BatchedDrivingEnv` calls `substep` per substep."""

    def __init__(self, num_envs: int, road_kind: str, simulation_frequency: int = 50,
                 device: str = "cpu"):
        if int(num_envs) < 1:
            raise ConfigError("num_envs", num_envs, "must be at least 1")
        if torch.device(device).type != "cpu" or not numba_impl.AVAILABLE:
            raise ConfigError("device", device, "road networks run on the numba kernel: "
                              "use cpu (with numba installed)")
        self.num_envs = int(num_envs)
        self.road_kind = road_kind
        self.per_world = road_kind in WORLD_KINDS
        self.layout: LaneLayout | None = None if self.per_world else scenario_layout(road_kind)
        """The network of every world (None on per-world roads: `layouts`)."""
        self.layouts: list[LaneLayout | None] = [self.layout] * self.num_envs
        """Each world's layout (None before its first reset)."""
        self.tables = None if self.per_world else torch_tables(self.layout.tables)
        self._stacked = self._bounds = None
        self._roads: list = [None] * self.num_envs
        self.simulation_frequency = int(simulation_frequency)
        self.device = torch.device("cpu")
        self.params = Params.from_highway_env(self.simulation_frequency)
        self._state: NetworkState | None = None
        self._geometry: RoadGeometry | None = None
        self._destinations: list[str | None] = [None] * self.num_envs
        self._maps: dict[str | None, HighwayRoadMap] = {}

    @property
    def state(self) -> NetworkState:
        """The current `NetworkState` (after `reset`)."""
        if self._state is None:
            raise RuntimeError("call reset() first")
        return self._state

    @property
    def substep_index(self) -> np.ndarray:
        """`(B,)` int64 substeps integrated since each world's reset."""
        return self.state.substep.numpy()

    def reset(self, inits: Sequence[ScenarioInit | None]) -> None:
        """Instantiate `inits[b]` in world `b`; a None entry leaves that world untouched
        (the first reset must fill every world). ConfigError for what the network state
        does not model (`network_state`)."""
        if len(inits) != self.num_envs:
            raise ValueError(f"got {len(inits)} scenarios for {self.num_envs} envs")
        rows = [b for b, init in enumerate(inits) if init is not None]
        if self._state is None and len(rows) != self.num_envs:
            raise ValueError("the first reset must give a scenario to every env")
        if not rows:
            return
        for b in rows:
            self._destinations[b] = inits[b].vehicles[0].destination
            if self.per_world:
                if inits[b].road.kind != self.road_kind:
                    raise ConfigError("road.kind", inits[b].road.kind,
                                      f"every world must be {self.road_kind!r}")
                if any(v.yield_substep is not None for v in inits[b].vehicles):
                    raise ConfigError("vehicle.yield_substep", "set", "per-world roads "
                                      "have no yielding vehicles")
                self.layouts[b] = road_layout(inits[b].road)
                self._roads[b] = inits[b].road
        if self.per_world:
            self._stacked = stack_tables(self.layouts) if None not in self.layouts else None
            self._bounds = None if self._stacked is None else stacked_bounds(self._stacked)
            self.tables = None if self._stacked is None else torch_tables(
                flat_tables(self._stacked))
            self._geometry = None
        old = self._state
        slots = None if old is None else old.valid.shape[1]
        width = None if old is None else old.route_road.shape[-1]
        new = self._new_state([inits[b] for b in rows], [self.layouts[b] for b in rows],
                              slots, width)
        if old is None:
            self._state = new
            return
        if new.valid.shape[1] != slots:
            raise ValueError(f"a reset world needs {new.valid.shape[1]} vehicle slots, the "
                             f"batch has {slots}")
        if new.route_road.shape[-1] != width:
            old = old.replace(**{name: _pad_routes(getattr(old, name),
                                                   new.route_road.shape[-1])
                                 for name in ("route_road", "route_lane")})
        index = torch.as_tensor(rows)
        changes = {}
        for name in NetworkState.__dataclass_fields__:
            merged = getattr(old, name).clone()
            merged[index] = getattr(new, name)
            changes[name] = merged
        self._state = old.replace(**changes)

    def _new_state(self, inits: list, layouts: list, slots, width) -> NetworkState:
        """`network_state` of `inits`, the worlds of one layout together (each per-world
        road alone), then in the order of `inits`, with at least `slots` vehicle slots and
        `width` route elements."""
        groups: dict[int, list[int]] = {}
        for i, layout in enumerate(layouts):
            groups.setdefault(id(layout), []).append(i)
        if len(groups) == 1:
            return network_state(inits, layouts[0], self.road_kind, slots=slots,
                                 route_width=width)
        slots = max([slots or 0] + [len(init.vehicles) + len(layout.obstacles)
                                    for init, layout in zip(inits, layouts)])
        parts = [(members, network_state([inits[i] for i in members], layouts[members[0]],
                                         self.road_kind, slots=slots, route_width=width))
                 for members in groups.values()]
        width = max(part.route_road.shape[-1] for _, part in parts)
        order = torch.as_tensor([i for members, _ in parts for i in members])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        fields = {}
        for name in NetworkState.__dataclass_fields__:
            values = [getattr(part, name) for _, part in parts]
            if name in ("route_road", "route_lane"):
                values = [_pad_routes(v, width) for v in values]
            fields[name] = torch.cat(values)[inverse]
        return NetworkState(**fields)

    def network(self, world: int):
        """The highway-env `RoadNetwork` of world `world` (hazard criticality is measured
        along its lanes, `envs.lane_paths.RoadLanes`)."""
        return self.layouts[world].network

    def _flat_state(self) -> NetworkState:
        """The state with lane and road rows of `self.tables` (on per-world roads, rows of
        `flat_tables`: world `b`'s offset by `b L` lanes and `b R` roads)."""
        state = self.state
        if not self.per_world:
            return state
        lanes, roads = self._stacked.kind.shape[1], self._stacked.road_from.shape[1]
        world = torch.arange(self.num_envs)
        exit_road = torch.where(state.exit_road >= 0, state.exit_road + world * roads,
                                state.exit_road)
        return state.replace(lane=state.lane + (world * lanes)[:, None], exit_road=exit_road)

    def substep(self, first_s, first, second, active: torch.Tensor | None = None) -> None:
        """One substep of the worlds where `active` (all when None): the ego applies
        `first (B, 2)` `[m/s^2, rad]` for `first_s (B,)` [s], then `second`."""
        if self.per_world:
            self._state = network_substep_own_tables(self.params, self._stacked, self._bounds,
                                                     self.state, first_s, first, second,
                                                     active)
            return
        state = start_yielding(self.layout.tables, self.state)
        substep = (network_substep_regulated if self.road_kind in REGULATED_KINDS
                   else network_substep_cpu)     # the intersection's right of way
        self._state = substep(self.params, self.layout.tables, state, first_s, first, second,
                              active)

    def snapshot(self) -> WorldSnapshot:
        """The worlds as `HighwayBackend.snapshot` reports them (`network_snapshot`)."""
        return network_snapshot(self.tables, self._flat_state(), self.params.dt,
                                self.params.lane_vehicle_length)

    def ego_on_road(self) -> torch.Tensor:
        """`(B,)` bool: each ego's centre lies on its lane."""
        return ego_lane_terms(self.tables, self._flat_state(),
                              self.params.lane_vehicle_length).on_road

    def road_map(self, snapshot: WorldSnapshot | None = None) -> dict[str, np.ndarray]:
        """`info["map"]` of every world, `(B, ...)`: `envs.backends.highway_map` on the same
        highway-env network and the ego's destination, so both backends give the same map
        (`snapshot` is unused: the lane rows come from the state). The worlds of one
        network and destination are mapped together (`HighwayRoadMap.observe_many`)."""
        state = self.state
        lane = state.lane[:, EGO].numpy()
        position = state.position[:, EGO].numpy()
        heading = state.heading[:, EGO].numpy()
        keys = [(id(layout), d) for layout, d in zip(self.layouts, self._destinations)]
        distinct = list(dict.fromkeys(keys))
        road_map = empty_map(self.num_envs) if len(distinct) > 1 else {}
        if self.per_world:       # the maps of the worlds' current roads only
            self._maps = {key: self._maps[key] for key in distinct if key in self._maps}
        for key in distinct:
            rows = np.array([b for b, k in enumerate(keys) if k == key])
            layout = self.layouts[rows[0]]
            if key not in self._maps:
                self._maps[key] = HighwayRoadMap(layout.network, key[1])
            names = layout.lane_names
            part = self._maps[key].observe_many(position[rows], heading[rows],
                                                [names[k] for k in lane[rows]])
            if len(distinct) == 1:                         # every world: no copy
                return part
            for key, value in part.items():
                road_map[key][rows] = value
        return road_map

    def road_geometry(self) -> RoadGeometry:
        """`network_geometry` of the network (what the highway backend draws), as read-only
        views broadcast to `B` worlds; on per-world roads each world's, padded (`*_valid`
        False) to the most segments."""
        if self._geometry is None and self.per_world:
            self._geometry = _stack_geometry([_world_geometry(road) for road in self._roads])
        if self._geometry is None:
            one = network_geometry(self.layout.network)
            self._geometry = RoadGeometry(*(
                np.broadcast_to(a, (self.num_envs,) + a.shape[1:]) for a in (
                    one.lane_segments, one.lane_half_width, one.lane_valid,
                    one.marking_segments, one.marking_valid)))
        return self._geometry


def _pad_routes(routes: torch.Tensor, width: int) -> torch.Tensor:
    """`(B, N, R)` route rows padded with -1 to `width` elements."""
    pad = torch.full((*routes.shape[:2], width - routes.shape[-1]), -1, dtype=routes.dtype)
    return torch.cat([routes, pad], dim=-1)


@functools.lru_cache(maxsize=256)
def _world_geometry(road) -> RoadGeometry:
    """`network_geometry` of a per-world road (`RoadSpec`; cached: twins share it)."""
    return network_geometry(road_layout(road).network)


def _stack_geometry(worlds: list[RoadGeometry]) -> RoadGeometry:
    """`B` one-world geometries as one, padded to the most segments."""
    def stack(name):
        arrays = [getattr(g, name)[0] for g in worlds]
        size = max(a.shape[0] for a in arrays)
        out = np.zeros((len(arrays), size) + arrays[0].shape[1:], dtype=arrays[0].dtype)
        for b, a in enumerate(arrays):
            out[b, :a.shape[0]] = a
        return out

    return RoadGeometry(lane_segments=stack("lane_segments"),
                        lane_half_width=stack("lane_half_width"),
                        lane_valid=stack("lane_valid"),
                        marking_segments=stack("marking_segments"),
                        marking_valid=stack("marking_valid"))
