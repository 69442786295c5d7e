"""The `batched` backend: `B` straight-road worlds in torch tensors, stepped together.

`BatchedBackend` instantiates `ScenarioInit`s (one per world, resettable one at a time) into
a `BatchedState` and advances all worlds one substep at a time, on CPU or GPU. Same seeds
and commands give the same trajectories as the `highway` backend (float64: to rounding; the
parity tests pin 1e-3 m and 1e-3 m/s over 10 s).

Which implementation of the substep runs (`kernel=`, default "auto"; `IMPLEMENTATIONS`
maps each name to its `step(params, state, commands, active=None) -> state`):

- float64 on CPU: "numba", the kernel `envs.backends.batched.numba.step_cpu` (per-world
  scalar code, `numba.prange` over worlds on numba's threads, `NUMBA_NUM_THREADS` /
  `numba.set_num_threads`);
- anything else (CUDA, float32), or numba missing: "torch", the function
  `envs.backends.batched.torch.step`.

`kernel="torch"` forces the torch function (e.g. to compare the two, which agree to ~1e-13
m and m/s and exactly on every discrete field: `tests/envs/backends/test_batched_kernel.py`);
`kernel="numba"` insists on the kernel (a `ConfigError` where it cannot run). Thread
counts and speeds of both: `docs/backends.md`.

Only straight multi-lane roads (`RoadSpec.kind == "straight"`: the highway, lead-brake,
cut-in and stopped-vehicle scenarios) are supported; other scenarios raise a `ConfigError`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch
from reflexdrive.envs.backends.batched import numba as numba_impl
from reflexdrive.envs.backends.batched import torch as torch_impl
from reflexdrive.envs.backends.batched.state import (
    BRAKING_LEAD_KIND,
    EGO_KIND,
    HAZARD_CODES,
    IDM_KIND,
    STATIC_KIND,
    BatchedHazard,
    BatchedRoad,
    BatchedState,
    EgoCommands,
    Params,
)
from reflexdrive.envs.backends.batched.torch.road import (
    LANE_HEADING,
    closest_lane,
    lane_coordinates,
    on_lane,
    straight_road_geometry,
    wrap_to_pi,
)
from reflexdrive.envs.backends.highway import STRIPE_LENGTH_M, STRIPE_PERIOD_M
from reflexdrive.envs.road_map import straight_road_map
from reflexdrive.envs.scenarios import SCENARIOS, ScenarioInit
from reflexdrive.envs.types import EGO, Piece, RoadGeometry, WorldSnapshot

from reflexdrive.common.validation import ConfigError, check_choice

SUPPORTED_SCENARIOS = tuple(name for name, spec in SCENARIOS.items() if spec.straight)
"""Scenarios the batched backend runs (those on straight multi-lane roads)."""

IMPLEMENTATIONS = {"numba": numba_impl.step, "torch": torch_impl.step}
"""The substep implementations by name, each `step(params, state, commands, active=None)
-> state` (same arguments, same result)."""
KERNELS = ("auto", *IMPLEMENTATIONS)
"""Values of `BatchedBackend(kernel=...)`."""

_KIND_OF_BEHAVIOR = {"ego": EGO_KIND, "idm": IDM_KIND, "static": STATIC_KIND}
_VEHICLE_FIELDS = ("position", "heading", "speed", "valid", "length", "width", "diagonal",
                   "kind", "target_lane", "target_speed", "timer", "lane_changes",
                   "braking", "braking_decel", "steering", "acceleration", "crashed", "impact",
                   "impact_pending")


def check_supported(init: ScenarioInit, params: Params) -> None:
    """Raise `ConfigError` unless the batched backend can run `init` exactly like `highway`."""
    if init.road.kind != "straight":
        raise ConfigError(
            "scenario", init.name,
            "the batched backend runs straight-road scenarios only ("
            + ", ".join(SUPPORTED_SCENARIOS) + f"); run {init.name!r} on the highway backend")
    if init.road.lane_width_m != params.lane_width:
        raise ConfigError(
            "road.lane_width_m", init.road.lane_width_m,
            f"must be {params.lane_width:g}: highway-env's straight roads (and so the highway "
            "backend) always have StraightLane.DEFAULT_WIDTH lanes")
    if not init.vehicles or init.vehicles[0].behavior != "ego":
        raise ConfigError("vehicles[0].behavior", init.vehicles[0].behavior if init.vehicles
                          else None, "slot 0 must be the ego")
    for slot, vehicle in enumerate(init.vehicles):
        if vehicle.behavior not in _KIND_OF_BEHAVIOR or (slot and vehicle.behavior == "ego"):
            raise ConfigError(f"vehicles[{slot}].behavior", vehicle.behavior,
                              "allowed values are ego (slot 0 only), idm, static")
        lane = vehicle.lane
        if lane[:2] != ("0", "1") or not 0 <= lane[2] < init.road.lanes:
            raise ConfigError(f"vehicles[{slot}].lane", lane,
                              f"must be ('0', '1', i) with 0 <= i < {init.road.lanes}")
        if vehicle.destination is not None:
            raise ConfigError(f"vehicles[{slot}].destination", vehicle.destination,
                              "route following is not supported on straight roads")


def _world_rows(init: ScenarioInit, slots: int, lanes: int, params: Params) -> dict:
    """numpy rows (one world) of every state field, vehicles placed as highway-env places them."""
    f64 = np.zeros(slots, dtype=np.float64)
    rows = {name: f64.copy() for name in ("heading", "speed", "length", "width", "diagonal",
                                           "target_speed", "timer", "braking_decel",
                                           "steering", "acceleration")}
    rows.update(position=np.zeros((slots, 2)), impact=np.zeros((slots, 2)),
                kind=np.zeros(slots, np.int64), target_lane=np.zeros(slots, np.int64),
                valid=np.zeros(slots, bool), lane_changes=np.zeros(slots, bool),
                braking=np.zeros(slots, bool), crashed=np.zeros(slots, bool),
                impact_pending=np.zeros(slots, bool))
    hazard = init.hazard
    direction, lateral = np.array([1.0, 0.0]), np.array([-0.0, 1.0])
    for slot, vehicle in enumerate(init.vehicles):
        start = np.array([0.0, vehicle.lane[2] * params.lane_width])
        position = start + vehicle.s_m * direction + 0.0 * lateral       # lane.position(s, 0)
        kind = _KIND_OF_BEHAVIOR[vehicle.behavior]
        if kind == IDM_KIND and hazard.kind == "lead_brake" and hazard.vehicle == slot:
            kind = BRAKING_LEAD_KIND
        idm = kind in (IDM_KIND, BRAKING_LEAD_KIND)
        rows["position"][slot] = position
        rows["speed"][slot] = vehicle.speed_mps
        rows["length"][slot] = vehicle.length_m
        rows["width"][slot] = vehicle.width_m
        rows["diagonal"][slot] = float(np.hypot(vehicle.length_m, vehicle.width_m))
        rows["kind"][slot] = kind
        rows["target_lane"][slot] = vehicle.lane[2]
        # ControlledVehicle: `target_speed or speed`; a plain Vehicle has none (reads as 0).
        rows["target_speed"][slot] = (vehicle.target_speed_mps or vehicle.speed_mps) if idm else 0.0
        # IDMVehicle: `timer or (sum(position) * pi) % LANE_CHANGE_DELAY`.
        rows["timer"][slot] = (np.sum(position) * np.pi) % params.lane_change_delay if idm else 0.0
        rows["lane_changes"][slot] = idm and vehicle.lane_changes
        rows["valid"][slot] = vehicle.present
    lane_valid = np.arange(lanes) < init.road.lanes
    road = dict(lane_count=np.int64(init.road.lanes),
                length=float(np.linalg.norm([init.road.length_m, 0.0])),
                speed_limit=float(init.road.speed_limit_mps), lane_valid=lane_valid)
    hazard_row = dict(
        kind=np.int64(HAZARD_CODES[hazard.kind]), vehicle=np.int64(hazard.vehicle),
        onset_substep=np.int64(-1 if hazard.onset_substep is None else hazard.onset_substep),
        decel=float(hazard.decel_mps2),
        target_lane=np.int64(-1 if hazard.target_lane is None else hazard.target_lane[2]),
        target_speed=float(hazard.target_speed_mps),
        trigger_range=float(hazard.trigger_range_m),
        lateral_speed=float(hazard.lateral_speed_mps or 0.0))
    return {"vehicles": rows, "road": road, "hazard": hazard_row}


def _stack(worlds: list[dict], device, dtype) -> BatchedState:
    """A `BatchedState` of the given worlds (rows from `_world_rows`), lanes assigned."""
    def tensor(values):
        array = np.stack(values)
        if array.dtype == np.float64:
            return torch.as_tensor(array, device=device).to(dtype)
        return torch.as_tensor(array, device=device)

    vehicles = {name: tensor([w["vehicles"][name] for w in worlds]) for name in _VEHICLE_FIELDS}
    road = BatchedRoad(**{name: tensor([w["road"][name] for w in worlds])
                          for name in ("lane_count", "length", "speed_limit", "lane_valid")})
    hazard = BatchedHazard(**{name: tensor([w["hazard"][name] for w in worlds])
                              for name in ("kind", "vehicle", "onset_substep", "decel",
                                           "target_lane", "target_speed", "trigger_range",
                                           "lateral_speed")})
    substep = torch.zeros(len(worlds), dtype=torch.int64, device=device)
    return BatchedState(lane=torch.zeros_like(vehicles["kind"]), substep=substep, road=road,
                        hazard=hazard, **{k: v for k, v in vehicles.items()})


def _pad_state(state: BatchedState, slots: int, lanes: int) -> BatchedState:
    """`state` with `slots` vehicle slots and `lanes` lane slots (new ones invalid, zero)."""
    def pad(tensor, size, dim):
        extra = size - tensor.shape[dim]
        if extra <= 0:
            return tensor
        shape = list(tensor.shape)
        shape[dim] = extra
        return torch.cat([tensor, torch.zeros(shape, dtype=tensor.dtype, device=tensor.device)],
                         dim=dim)

    changes = {name: pad(getattr(state, name), slots, 1) for name in _VEHICLE_FIELDS + ("lane",)}
    road = state.road
    road = BatchedRoad(road.lane_count, road.length, road.speed_limit,
                       pad(road.lane_valid, lanes, 1))
    hint = state.order_hint if slots == state.num_slots else None
    return state.replace(road=road, order_hint=hint, **changes)


def _put_rows(old, index: torch.Tensor, new):
    """`old` with rows `index` replaced by the rows of `new` (nested dataclasses of tensors)."""
    changes = {}
    for f in dataclasses.fields(old):
        a, b = getattr(new, f.name), getattr(old, f.name)
        if a is None or b is None:          # a cache (`order_hint`): any value will do
            changes[f.name] = b
        elif isinstance(b, torch.Tensor):
            merged = b.clone()
            merged[index] = a
            changes[f.name] = merged
        else:
            changes[f.name] = _put_rows(b, index, a)
    return dataclasses.replace(old, **changes)


def commands_from_pieces(pieces: Sequence[Sequence[Piece]], dt: float
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn per-world command pieces (one or two `Piece`s summing to `dt`) into the arrays of
    `BatchedBackend.substep`: `first_s (B,)` [s], `first (B, 2)`, `second (B, 2)`."""
    first_s = np.empty(len(pieces))
    first = np.empty((len(pieces), 2))
    second = np.empty((len(pieces), 2))
    for b, world in enumerate(pieces):
        if len(world) == 1:
            first_s[b], first[b], second[b] = dt, world[0].command.as_array(), \
                world[0].command.as_array()
        elif len(world) == 2:
            first_s[b] = world[0].duration_s
            first[b], second[b] = world[0].command.as_array(), world[1].command.as_array()
        else:
            raise ValueError(f"world {b}: {len(world)} pieces, the batched backend takes 1 or 2")
    return first_s, first, second


class BatchedBackend:
    """`B` straight-road worlds advanced together (see the module docstring).

    Args:
        num_envs: worlds `B`.
        simulation_frequency: substeps per second [Hz]; `dt = 1 / simulation_frequency`.
        device: torch device ("cpu", "cuda", ...).
        dtype: float dtype of the state (float64 for parity with highway-env).
        max_vehicles: vehicle slots `N`; None sizes them to the largest scenario reset so far
            (growing the padding of every world when a larger one arrives).
        kernel: which substep implementation runs: "auto" (the numba kernel for float64 on
            CPU, else the torch function), "numba" (a `ConfigError` unless numba is
            installed and the state is float64 on CPU) or "torch". `stepper` says which
            one was chosen.
    """

    name = "batched"

    def __init__(self, num_envs: int, simulation_frequency: int = 50, device: str = "cpu",
                 dtype: torch.dtype = torch.float64, max_vehicles: int | None = None,
                 kernel: str = "auto"):
        if int(num_envs) < 1:
            raise ConfigError("num_envs", num_envs, "must be at least 1")
        check_choice("kernel", kernel, KERNELS)
        self.num_envs = int(num_envs)
        self.simulation_frequency = int(simulation_frequency)
        self.device = torch.device(device)
        self.dtype = dtype
        kernel_runs = self.device.type == "cpu" and dtype == torch.float64
        if kernel == "numba" and not numba_impl.AVAILABLE:
            raise ConfigError("kernel", kernel, "needs numba, which is not installed; "
                              "allowed values here are auto, torch")
        if kernel == "numba" and not kernel_runs:
            raise ConfigError("kernel", kernel, f"the numba kernel runs float64 states on "
                              f"CPU, not {dtype} on {self.device}; use auto or torch")
        self.kernel = kernel
        self.stepper = ("numba" if kernel == "numba" or (
            kernel == "auto" and numba_impl.AVAILABLE and kernel_runs) else "torch")
        """The implementation `substep` runs: "numba" or "torch"."""
        self.max_vehicles = None if max_vehicles is None else int(max_vehicles)
        self.params = Params.from_highway_env(self.simulation_frequency)
        self._state: BatchedState | None = None
        self._roads: list[tuple[int, float] | None] = [None] * self.num_envs
        self._speed_limits = np.full(self.num_envs, np.inf)
        self._geometry: RoadGeometry | None = None

    # -- protocol -------------------------------------------------------------------------

    @property
    def state(self) -> BatchedState:
        """The current `BatchedState` (after `reset`)."""
        if self._state is None:
            raise RuntimeError("call reset() first")
        return self._state

    @property
    def substep_index(self) -> np.ndarray:
        """`(B,)` int64 substeps integrated since each world's reset."""
        return self.state.substep.cpu().numpy()

    def reset(self, inits: Sequence[ScenarioInit | None]) -> None:
        """Instantiate `inits[b]` in world `b`; a None entry leaves that world untouched.

        The first reset must give every world a scenario. Raises `ConfigError` for scenarios
        the backend cannot run (see `check_supported`) or more vehicles than `max_vehicles`.
        """
        if len(inits) != self.num_envs:
            raise ValueError(f"got {len(inits)} scenarios for {self.num_envs} envs")
        rows = [b for b, init in enumerate(inits) if init is not None]
        if self._state is None and len(rows) != self.num_envs:
            raise ValueError("the first reset must give a scenario to every env")
        if not rows:
            return
        for b in rows:
            init = inits[b]
            if init.simulation_frequency != self.simulation_frequency:
                raise ValueError(
                    f"scenario generated for {init.simulation_frequency} Hz, backend runs at "
                    f"{self.simulation_frequency} Hz")
            check_supported(init, self.params)
            if self.max_vehicles is not None and len(init.vehicles) > self.max_vehicles:
                raise ConfigError("max_vehicles", self.max_vehicles,
                                  f"scenario {init.name!r} (seed {init.seed}) has "
                                  f"{len(init.vehicles)} vehicles")
        slots = self.max_vehicles or max(len(inits[b].vehicles) for b in rows)
        lanes = max(inits[b].road.lanes for b in rows)
        if self._state is not None:
            slots = max(slots, self._state.num_slots)
            lanes = max(lanes, self._state.road.lane_valid.shape[1])
        worlds = [_world_rows(inits[b], slots, lanes, self.params) for b in rows]
        fresh = _stack(worlds, self.device, self.dtype)
        fresh = fresh.replace(lane=closest_lane(fresh.position, fresh.heading, fresh.road,
                                                self.params))
        if self._state is None:
            self._state = fresh
        else:
            old = _pad_state(self._state, slots, lanes)
            index = torch.tensor(rows, dtype=torch.int64, device=self.device)
            self._state = _put_rows(old, index, fresh)
        for b in rows:
            self._roads[b] = (inits[b].road.lanes, float(inits[b].road.length_m))
            self._speed_limits[b] = float(inits[b].road.speed_limit_mps)
        self._geometry = None

    def substep(self, first_s, first, second, active: torch.Tensor | None = None) -> None:
        """Advance every world one substep `dt` (or only the `active` ones).

        Args:
            first_s: `(B,)` seconds in `[0, dt]` during which the ego applies `first` [s].
            first: `(B, 2)` `[acceleration m/s^2, steering rad]` for the first piece.
            second: `(B, 2)` the command for the remaining `dt - first_s`.
            active: optional `(B,)` bool; worlds where it is False keep their state
                (substep counter included), e.g. episodes that ended mid-tick.
        """
        state = self.state
        as_tensor = lambda x: torch.as_tensor(x, device=self.device).to(self.dtype)  # noqa: E731
        commands = EgoCommands(as_tensor(first_s).reshape(self.num_envs),
                               as_tensor(first).reshape(self.num_envs, 2),
                               as_tensor(second).reshape(self.num_envs, 2))
        dt = self.params.dt
        if bool(((commands.first_s < 0) | (commands.first_s > dt)).any()):
            raise ValueError(f"first_s must lie in [0, dt = {dt}] s")
        if active is not None:
            active = torch.as_tensor(active, device=self.device).to(torch.bool)
        self._state = IMPLEMENTATIONS[self.stepper](self.params, state, commands,
                                                    active=active)

    def tick(self, first_s: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
             active: torch.Tensor, stops: "numba_impl.TickStops") -> "numba_impl.TickOutcome":
        """A whole tick of `S` substeps in one numba kernel call (`stepper == "numba"`
        only): see `envs.backends.batched.numba.tick_cpu` for the arguments and the result;
        the same worlds as `S` `substep` calls with the env's bookkeeping between them."""
        if self.stepper != "numba":
            raise RuntimeError("tick() runs on the numba stepper; use substep() per substep")
        self._state, outcome = numba_impl.tick_cpu(self.params, self.state, first_s, first,
                                                     second, active, stops)
        return outcome

    def substep_pieces(self, pieces: Sequence[Sequence[Piece]]) -> None:
        """`substep` from per-world `Piece`s (as the clock produces them)."""
        self.substep(*commands_from_pieces(pieces, self.params.dt))

    def snapshot(self) -> WorldSnapshot:
        """The current state as numpy, batch-first, as `HighwayBackend.snapshot` reports it.

        Fresh arrays (no view of the state). The `(B, N)` fields are masked in numpy, from
        one host copy of each tensor: element-wise torch ops that large would wake torch's
        thread pool, which stalls for milliseconds while numba's threads (the sensor
        kernels) hold the cores.
        """
        s, params = self.state, self.params
        ego_lane = s.lane[:, 0]
        along, offset = lane_coordinates(s.position[:, 0], ego_lane, params)
        on_road = self.ego_on_road(along, offset)
        heading_error = wrap_to_pi(s.heading[:, 0] - LANE_HEADING)

        def host(tensor):
            return tensor.detach().cpu().numpy()

        valid = host(s.valid).astype(bool)

        def masked(tensor, mask=valid):                # float64, 0 where not valid
            return np.where(mask, host(tensor), 0.0).astype(np.float64, copy=False)

        return WorldSnapshot(
            time_s=host(s.substep).astype(np.float64) * params.dt,
            position=masked(s.position, valid[..., None]),
            heading=masked(s.heading),
            speed=masked(s.speed),
            acceleration=masked(s.acceleration),
            length=masked(s.length),
            width=masked(s.width),
            vehicle_id=np.where(valid, np.arange(s.num_slots), -1).astype(np.int64, copy=False),
            valid=valid,
            ego_steering=host(s.steering[:, 0]).astype(np.float64),
            ego_lane_offset=host(offset).astype(np.float64),
            ego_heading_error=host(heading_error).astype(np.float64),
            ego_lane_index=host(ego_lane).astype(np.int64),
            ego_lane_count=host(s.road.lane_count).astype(np.int64),
            ego_on_road=host(on_road).astype(bool),
            crashed=host(s.crashed[:, 0]).astype(bool),
            # one road (highway-env's `0 -> 1`), the route's exit: `envs.backends.route_exit`
            ego_on_route_exit=np.ones(valid.shape[0], dtype=bool),
        )

    def ego_on_road(self, along: torch.Tensor | None = None,
                    offset: torch.Tensor | None = None) -> torch.Tensor:
        """`(B,)` bool: each ego's centre lies on its lane (`WorldSnapshot.ego_on_road`).

        `along`, `offset`: the ego's lane coordinates [m] when the caller has them already.
        """
        s, params = self.state, self.params
        if along is None or offset is None:
            along, offset = lane_coordinates(s.position[:, 0], s.lane[:, 0], params)
        return on_lane(along, offset, s.road.length, params)

    def road_geometry(self) -> RoadGeometry:
        """The roads as `(B, S, 2, 2)` segments, padded with validity masks.

        The content of each world is `envs.backends.highway.network_geometry` of the same road. When
        several worlds all have the same road the arrays are read-only broadcast views.
        """
        if self._geometry is None:
            self._geometry = self._build_geometry()
        return self._geometry

    def road_map(self, snapshot: WorldSnapshot | None = None) -> dict[str, np.ndarray]:
        """`info["map"]` (`envs.road_map.straight_road_map`) of every world, `(B, ...)`.

        `snapshot`: the current `snapshot()` when the caller has it already.
        """
        snapshot = self.snapshot() if snapshot is None else snapshot
        lanes, length = zip(*self._roads)
        return straight_road_map(snapshot.position[:, EGO], snapshot.heading[:, EGO],
                                 snapshot.ego_lane_index, np.array(lanes), np.array(length),
                                 self.params.lane_width, self._speed_limits)

    # -- internals ------------------------------------------------------------------------

    def _build_geometry(self) -> RoadGeometry:
        if self._state is None:
            raise RuntimeError("call reset() first")
        keys = sorted(set(self._roads))
        parts = [straight_road_geometry(lanes, length, self.params.lane_width,
                                        STRIPE_LENGTH_M, STRIPE_PERIOD_M)
                 for lanes, length in keys]
        s_max = max(p[0].shape[0] for p in parts)
        k_max = max(p[2].shape[0] for p in parts)
        u = len(parts)
        lane_segments = np.zeros((u, s_max, 2, 2))
        half_width = np.zeros((u, s_max))
        lane_valid = np.zeros((u, s_max), bool)
        markings = np.zeros((u, k_max, 2, 2))
        marking_valid = np.zeros((u, k_max), bool)
        for i, (segments, halves, marks) in enumerate(parts):
            lane_segments[i, :len(segments)] = segments
            half_width[i, :len(segments)] = halves
            lane_valid[i, :len(segments)] = True
            markings[i, :len(marks)] = marks
            marking_valid[i, :len(marks)] = True
        arrays = (lane_segments, half_width, lane_valid, markings, marking_valid)
        b = self.num_envs
        if u == 1 and b == 1:
            pass
        elif u == 1:      # one road for all: read-only views, no B copies
            arrays = tuple(np.broadcast_to(a, (b,) + a.shape[1:]) for a in arrays)
        else:
            which = np.array([keys.index(key) for key in self._roads])
            arrays = tuple(a[which] for a in arrays)
        return RoadGeometry(*arrays)
