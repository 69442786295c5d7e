"""The batched world as data: model constants (`Params`) and state (`BatchedState`).

Everything is batch-first torch: `B` worlds, `N` vehicle slots per world (slot 0 is the ego,
padding slots have `valid == False`), `L` lane slots per road (padding lanes have
`road.lane_valid == False`). The dataclasses are frozen: the dynamics in
`envs.backends.batched.torch.dynamics` return new states, they never mutate one.

The constants are read from highway-env's classes (`IDMVehicle.COMFORT_ACC_MAX`, ...), so they
cannot drift from the reference backend.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from highway_env import utils as hwe_utils
from highway_env.road.lane import AbstractLane, StraightLane
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.controller import ControlledVehicle
from highway_env.vehicle.kinematics import Vehicle
from reflexdrive.envs.backends.traffic_vehicle import TrafficVehicle
from reflexdrive.envs.scenarios import HAZARD_KINDS

VEHICLE_KINDS = ("ego", "idm", "static", "braking_lead")
"""Behaviour codes of `BatchedState.kind`, by index."""
EGO_KIND, IDM_KIND, STATIC_KIND, BRAKING_LEAD_KIND = range(len(VEHICLE_KINDS))

HAZARD_CODES = {kind: code for code, kind in enumerate(HAZARD_KINDS)}
"""Codes of `BatchedHazard.kind`: index of the kind in `envs.scenarios.HAZARD_KINDS`."""
NO_HAZARD = HAZARD_CODES["none"]
LEAD_BRAKE = HAZARD_CODES["lead_brake"]
CUT_IN = HAZARD_CODES["cut_in"]
STOPPED_VEHICLE = HAZARD_CODES["stopped_vehicle"]
CROSS_TRAFFIC = HAZARD_CODES["cross_traffic"]


@dataclass(frozen=True)
class Params:
    """Scalar constants of the dynamics (Python floats, shared by all worlds).

    Attributes:
        dt: substep `1 / simulation_frequency` [s].
        max_speed, min_speed: `Vehicle.MAX_SPEED`, `TrafficVehicle.MIN_SPEED` (0: traffic
            never reverses; the ego's brakes stop it at 0 anyway) [m/s]; beyond them the
            acceleration is clipped to `1/s * (limit - v)`.
        kp_lateral: `ControlledVehicle.KP_LATERAL`, lateral position gain [1/s].
        kp_heading: `ControlledVehicle.KP_HEADING`, heading gain [1/s].
        max_steering_angle: `ControlledVehicle.MAX_STEERING_ANGLE` [rad].
        heading_command_limit: bound on the heading reference offset in
            `steering_control` (pi/4 in highway-env's code) [rad].
        acc_max: `IDMVehicle.ACC_MAX`, bound on the IDM command [m/s^2].
        comfort_acc_max: `IDMVehicle.COMFORT_ACC_MAX`, IDM `a` [m/s^2].
        comfort_acc_min: `IDMVehicle.COMFORT_ACC_MIN`, IDM `-b` [m/s^2].
        distance_wanted: `IDMVehicle.DISTANCE_WANTED`, jam distance `d0` (centre to centre) [m].
        time_wanted: `IDMVehicle.TIME_WANTED`, time headway `tau` [s].
        delta: `IDMVehicle.DELTA`, free-road exponent [-].
        politeness: `IDMVehicle.POLITENESS`, MOBIL `p` [-].
        lane_change_min_acc_gain: MOBIL threshold `a_th` [m/s^2].
        lane_change_max_braking_imposed: MOBIL safety bound `b_safe` [m/s^2].
        lane_change_delay: `IDMVehicle.LANE_CHANGE_DELAY`, time between MOBIL decisions [s].
        mobil_min_speed: MOBIL only runs at `|v| >= mobil_min_speed` (1 m/s in the code) [m/s].
        lane_width: `StraightLane.DEFAULT_WIDTH` (what `straight_road_network` builds) [m].
        lane_vehicle_length: `AbstractLane.VEHICLE_LENGTH`, the slack past a lane's ends [m].
        neighbour_margin: lateral margin of `Road.neighbour_vehicles`' on-lane test [m].
        reachable_lanes: a lane is reachable within `reachable_lanes * lane_width` laterally.
        not_zero_eps: `utils.not_zero`'s epsilon [same unit as its argument].
    """

    dt: float
    max_speed: float
    min_speed: float
    kp_lateral: float
    kp_heading: float
    max_steering_angle: float
    heading_command_limit: float
    acc_max: float
    comfort_acc_max: float
    comfort_acc_min: float
    distance_wanted: float
    time_wanted: float
    delta: float
    politeness: float
    lane_change_min_acc_gain: float
    lane_change_max_braking_imposed: float
    lane_change_delay: float
    mobil_min_speed: float
    lane_width: float
    lane_vehicle_length: float
    neighbour_margin: float
    reachable_lanes: float
    not_zero_eps: float

    @classmethod
    def from_highway_env(cls, simulation_frequency: int) -> "Params":
        """The constants of highway-env's `Vehicle`, `ControlledVehicle`, `IDMVehicle` and lanes."""
        return cls(
            dt=1.0 / int(simulation_frequency),
            max_speed=float(Vehicle.MAX_SPEED),
            min_speed=float(TrafficVehicle.MIN_SPEED),
            kp_lateral=float(ControlledVehicle.KP_LATERAL),
            kp_heading=float(ControlledVehicle.KP_HEADING),
            max_steering_angle=float(ControlledVehicle.MAX_STEERING_ANGLE),
            heading_command_limit=float(np.pi / 4),
            acc_max=float(IDMVehicle.ACC_MAX),
            comfort_acc_max=float(IDMVehicle.COMFORT_ACC_MAX),
            comfort_acc_min=float(IDMVehicle.COMFORT_ACC_MIN),
            distance_wanted=float(IDMVehicle.DISTANCE_WANTED),
            time_wanted=float(IDMVehicle.TIME_WANTED),
            delta=float(IDMVehicle.DELTA),
            politeness=float(IDMVehicle.POLITENESS),
            lane_change_min_acc_gain=float(IDMVehicle.LANE_CHANGE_MIN_ACC_GAIN),
            lane_change_max_braking_imposed=float(IDMVehicle.LANE_CHANGE_MAX_BRAKING_IMPOSED),
            lane_change_delay=float(IDMVehicle.LANE_CHANGE_DELAY),
            mobil_min_speed=1.0,
            lane_width=float(StraightLane.DEFAULT_WIDTH),
            lane_vehicle_length=float(AbstractLane.VEHICLE_LENGTH),
            neighbour_margin=1.0,
            reachable_lanes=2.0,
            not_zero_eps=float(hwe_utils.not_zero.__defaults__[0]),
        )


def _map_tensors(obj, fn):
    """Apply `fn` to every tensor field of a (nested) frozen dataclass."""
    changes = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, torch.Tensor):
            changes[f.name] = fn(value)
        elif dataclasses.is_dataclass(value):
            changes[f.name] = _map_tensors(value, fn)
    return dataclasses.replace(obj, **changes)


def take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`values.reshape(-1)[index]` (flat positions, any index shape) via `index_select`
    (cheaper than advanced indexing on CPU for the small row sets of a substep).
    """
    if index.dim() == 1:
        return values.reshape(-1).index_select(0, index)
    return values.reshape(-1).index_select(0, index.reshape(-1)).view(index.shape)


def where_env(mask: torch.Tensor, new, old):
    """Row-wise select between two states (or any nested dataclasses of batch-first tensors).

    Args:
        mask: `(B,)` bool; True takes the world from `new`, False keeps `old`.
        new, old: dataclasses of the same type whose tensors have the same shapes `(B, ...)`.
            A field that is None on one side (an absent cache such as
            `BatchedState.order_hint`) is taken from the other.

    Where `mask` is all True the result is `new` itself (no copies). Otherwise every tensor
    is a copy of `new` with the rows of `old` written in (exact for any values, and much
    cheaper on CPU than a `torch.where` per field).
    """
    if bool(mask.all()):
        return new
    return _with_rows(new, old, torch.nonzero(~mask).flatten())


def _with_rows(new, old, rows: torch.Tensor):
    """`new` with rows `rows` of every tensor taken from `old` (see `where_env`)."""
    changes = {}
    for f in dataclasses.fields(old):
        a, b = getattr(new, f.name), getattr(old, f.name)
        if a is None or b is None:
            changes[f.name] = b if a is None else a
        elif isinstance(b, torch.Tensor):
            changes[f.name] = a.clone().index_copy_(0, rows, b.index_select(0, rows))
        elif dataclasses.is_dataclass(b):
            changes[f.name] = _with_rows(a, b, rows)
    return dataclasses.replace(old, **changes)


@dataclass(frozen=True)
class BatchedRoad:
    """Straight multi-lane roads, one per world (highway-env's `straight_road_network`).

    Lane `i` runs from `(0, i * lane_width)` to `(length, i * lane_width)`, heading 0 (along
    +x); lane 0 is at the top (smallest y).

    Attributes:
        lane_count: `(B,)` int64, lanes of each road.
        length: `(B,)` lane length [m].
        speed_limit: `(B,)` speed limit of every lane [m/s].
        lane_valid: `(B, L)` bool, `lane_valid[b, i] = i < lane_count[b]`.
    """

    lane_count: torch.Tensor
    length: torch.Tensor
    speed_limit: torch.Tensor
    lane_valid: torch.Tensor


@dataclass(frozen=True)
class BatchedHazard:
    """The scripted hazard of each world (`envs.scenarios.HazardPlan` as tensors).

    Attributes:
        kind: `(B,)` int64 code, see `HAZARD_CODES`.
        vehicle: `(B,)` int64 slot of the hazard vehicle, -1 if none.
        onset_substep: `(B,)` int64 planned onset substep, -1 if none or not planned
            (stopped vehicle: its onset is found by `envs.backends.batched.hazards`).
        decel: `(B,)` lead-brake deceleration [m/s^2].
        target_lane: `(B,)` int64 cut-in target lane number, -1 if none.
        target_speed: `(B,)` cut-in target speed [m/s].
        trigger_range: `(B,)` stopped-vehicle trigger range [m].
        lateral_speed: `(B,)` cut-in peak lateral speed [m/s] (`HazardPlan.lateral_speed_mps`;
            0 where None: highway-env's lane change).
    """

    kind: torch.Tensor
    vehicle: torch.Tensor
    onset_substep: torch.Tensor
    decel: torch.Tensor
    target_lane: torch.Tensor
    target_speed: torch.Tensor
    trigger_range: torch.Tensor
    lateral_speed: torch.Tensor


@dataclass(frozen=True)
class BatchedState:
    """The state of `B` worlds after `substep` substeps.

    Vehicle fields are `(B, N)` unless stated; slot 0 is the ego. Values in padding slots
    (`valid == False`) are meaningless and never read.

    Attributes:
        position: `(B, N, 2)` centre in the world frame [m].
        heading: yaw [rad].
        speed: signed speed along the heading [m/s].
        valid: bool, slot holds a vehicle.
        length, width: footprint [m].
        diagonal: `hypot(length, width)` [m] (collision pre-check radius * 2).
        kind: int64 behaviour code (`EGO_KIND`, `IDM_KIND`, `STATIC_KIND`, `BRAKING_LEAD_KIND`).
        lane: int64 current lane number (highway-env's `lane_index[2]`, updated after each
            step as `get_closest_lane_index`).
        target_lane: int64 lane the IDM vehicle steers to (`target_lane_index[2]`).
        target_speed: IDM cruise speed [m/s]; 0 for the ego and static vehicles, because
            highway-env evaluates a plain `Vehicle` follower with
            `getattr(v, "target_speed", 0)`.
        timer: MOBIL decision timer [s] (`IDMVehicle.timer`).
        lane_changes: bool, MOBIL enabled (`enable_lane_change`).
        braking: bool, a braking lead has been told to brake.
        braking_decel: its commanded deceleration [m/s^2].
        steering: last applied steering angle, after `clip_actions` [rad].
        acceleration: last applied acceleration, after `clip_actions` [m/s^2].
        crashed: bool, vehicle has collided (ego and anything it hit).
        impact: `(B, N, 2)` pending collision push, applied at the vehicle's next step [m].
        impact_pending: bool, `impact` is set (highway-env's `impact is not None`).
        substep: `(B,)` int64 substeps since reset.
        road: the roads.
        hazard: the hazard plans.
        order_hint: `(B, N)` int64 or None, a cache: the slots sorted by `x` at an earlier
            substep (`envs.backends.batched.torch.traffic.key_order`), which the next substep
            checks and reuses where still sorted. Any value is safe; None means "sort from scratch".
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
    timer: torch.Tensor
    lane_changes: torch.Tensor
    braking: torch.Tensor
    braking_decel: torch.Tensor
    steering: torch.Tensor
    acceleration: torch.Tensor
    crashed: torch.Tensor
    impact: torch.Tensor
    impact_pending: torch.Tensor
    substep: torch.Tensor
    road: BatchedRoad
    hazard: BatchedHazard
    order_hint: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.valid.shape[0])

    @property
    def num_slots(self) -> int:
        return int(self.valid.shape[1])

    @property
    def device(self) -> torch.device:
        return self.position.device

    @property
    def dtype(self) -> torch.dtype:
        return self.position.dtype

    @property
    def ego_crashed(self) -> torch.Tensor:
        """`(B,)` bool, the ego has collided."""
        return self.crashed[:, 0]

    def replace(self, **changes) -> "BatchedState":
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    def to(self, device: str | torch.device) -> "BatchedState":
        """The same state on another device."""
        return _map_tensors(self, lambda t: t.to(device))


@dataclass(frozen=True)
class EgoCommands:
    """The ego's command pieces for one substep of length `dt`.

    Attributes:
        first_s: `(B,)` duration of the first piece, in `[0, dt]` [s].
        first: `(B, 2)` `[acceleration m/s^2, steering rad]` during `[0, first_s)`.
        second: `(B, 2)` the command during `[first_s, dt)`; a zero-length piece is a no-op.
    """

    first_s: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
