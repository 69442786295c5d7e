"""`NetworkBackend`: `B` worlds on one highway-env road network (merge, roundabout,
intersection), with `BatchedBackend`'s interface as `BatchedDrivingEnv` uses it.

The worlds are a `NetworkState` stepped by the numba network kernel
(`numba.network_traffic.network_substep_cpu`: traffic, the ego's command pieces, the ego's
collisions); the snapshot is `network_snapshot` and the road geometry is
`envs.backends.highway.network_geometry` of the same network, so both backends' sensors
draw the same road. Runs float64 on CPU (the kernel's); `tick` is not offered
(`stepper = "network"`: the vector env steps substep by substep).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from reflexdrive.envs.backends.batched import numba as numba_impl
from reflexdrive.envs.backends.batched.lanes import scenario_layout, torch_tables
from reflexdrive.envs.backends.batched.network_snapshot import ego_lane_terms, network_snapshot
from reflexdrive.envs.backends.batched.network_state import (
    NetworkState,
    network_state,
    start_yielding,
)
from reflexdrive.envs.backends.batched.numba.network_traffic import network_substep_cpu
from reflexdrive.envs.backends.batched.state import Params
from reflexdrive.envs.backends.highway import network_geometry
from reflexdrive.envs.backends.highway_map import HighwayRoadMap
from reflexdrive.envs.road_map import empty_map
from reflexdrive.envs.scenarios import ScenarioInit
from reflexdrive.envs.types import EGO, RoadGeometry, WorldSnapshot

from reflexdrive.common.validation import ConfigError


class NetworkBackend:
    """`B` worlds on the road network of kind `road_kind` (`lanes.NETWORK_KINDS`).

    Args:
        num_envs: worlds `B`.
        road_kind: "merge", "roundabout" or "intersection"; every reset's inits must have it.
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
        self.layout = scenario_layout(road_kind)
        self.tables = torch_tables(self.layout.tables)
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
        old = self._state
        slots = None if old is None else old.valid.shape[1]
        width = None if old is None else old.route_road.shape[-1]
        new = network_state([inits[b] for b in rows], self.layout, self.road_kind,
                            slots=slots, route_width=width)
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

    def substep(self, first_s, first, second, active: torch.Tensor | None = None) -> None:
        """One substep of the worlds where `active` (all when None): the ego applies
        `first (B, 2)` `[m/s^2, rad]` for `first_s (B,)` [s], then `second`."""
        state = start_yielding(self.layout.tables, self.state)
        self._state = network_substep_cpu(self.params, self.layout.tables, state,
                                          first_s, first, second, active)

    def network(self, world: int):
        """The highway-env `RoadNetwork` of world `world` (hazard criticality is measured
        along its lanes, `envs.lane_paths.RoadLanes`)."""
        return self.layout.network

    def snapshot(self) -> WorldSnapshot:
        """The worlds as `HighwayBackend.snapshot` reports them (`network_snapshot`)."""
        return network_snapshot(self.tables, self.state, self.params.dt,
                                self.params.lane_vehicle_length)

    def ego_on_road(self) -> torch.Tensor:
        """`(B,)` bool: each ego's centre lies on its lane."""
        return ego_lane_terms(self.tables, self.state, self.params.lane_vehicle_length).on_road

    def road_map(self, snapshot: WorldSnapshot | None = None) -> dict[str, np.ndarray]:
        """`info["map"]` of every world, `(B, ...)`: `envs.backends.highway_map` on the same
        highway-env network and the ego's destination, so both backends give the same map
        (`snapshot` is unused: the lane rows come from the state). The worlds of one
        destination are mapped together (`HighwayRoadMap.observe_many`)."""
        state = self.state
        lane = state.lane[:, EGO].numpy()
        position = state.position[:, EGO].numpy()
        heading = state.heading[:, EGO].numpy()
        destinations = list(dict.fromkeys(self._destinations))
        road_map = empty_map(self.num_envs) if len(destinations) > 1 else {}
        for destination in destinations:
            rows = np.array([b for b, d in enumerate(self._destinations) if d == destination])
            if destination not in self._maps:
                self._maps[destination] = HighwayRoadMap(self.layout.network, destination)
            names = self.layout.lane_names
            part = self._maps[destination].observe_many(position[rows], heading[rows],
                                                        [names[k] for k in lane[rows]])
            if len(destinations) == 1:                     # every world: no copy
                return part
            for key, value in part.items():
                road_map[key][rows] = value
        return road_map

    def road_geometry(self) -> RoadGeometry:
        """`network_geometry` of the network (what the highway backend draws), as read-only
        views broadcast to `B` worlds."""
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
