"""The kernel's entry points: `step_cpu` (one substep, the torch `step`'s signature) and
`tick_cpu` (a whole tick of the vector env in one call); they pack a `BatchedState` into the
kernel's argument tuples (`layout`) and unpack the result."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from reflexdrive.envs.backends.batched.numba.jit import AVAILABLE
from reflexdrive.envs.backends.batched.numba.layout import (
    ACTIVE,
    FIRST_A,
    FIRST_S,
    FIRST_STEERING,
    HAZARD_DECEL,
    HAZARD_KIND,
    HAZARD_LANE,
    HAZARD_LATERAL_SPEED,
    HAZARD_ONSET,
    HAZARD_SPEED,
    HAZARD_VEHICLE,
    LANE_COUNT,
    MAX_LANES,
    N_WORLD,
    ON_HAZARD,
    ROAD_LENGTH,
    SECOND_A,
    SECOND_STEERING,
    SPEED_LIMIT,
    WORLDS_PER_TASK,
    WRITTEN_FIELDS,
    TickArrays,
    VehicleArrays,
    WorldArrays,
    kernel_params,
)
from reflexdrive.envs.backends.batched.numba.world import substep_worlds
from reflexdrive.envs.backends.batched.state import BatchedState, EgoCommands, Params

from reflexdrive.common.threads import kernel_threads


def supports(state: BatchedState) -> bool:
    """True if `step_cpu` can run `state`: numba is there, the state is float64 on CPU."""
    return AVAILABLE and state.device.type == "cpu" and state.dtype == torch.float64


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A numpy view of `tensor` (of a contiguous copy if it is not contiguous)."""
    return tensor.contiguous().numpy()


def step_cpu(params: Params, state: BatchedState, commands: EgoCommands,
             active: torch.Tensor | None = None) -> BatchedState:
    """`envs.backends.batched.torch.step` by the numba kernel (same arguments, same result).

    Args:
        params: the model constants (`params.dt` is the substep [s]).
        state: the worlds at substep `k`, float64 on CPU (`supports(state)`); not modified.
        commands: the ego's pieces: `first_s (B,)` [s] in `[0, dt]`, `first`, `second`
            `(B, 2)` `[acceleration m/s^2, steering rad]`.
        active: optional `(B,)` bool; worlds where it is False are returned as they are,
            substep counter included (`BatchedBackend.substep(active=...)`).

    Returns:
        the worlds at substep `k + 1`: new tensors for the fields a substep changes
        (`target_speed`, `braking`, `braking_decel` only when a hazard starts), the others
        shared with `state`. `order_hint` is this substep's key order (valid vehicles by
        `x`, then the padding slots), which the next call starts its sort from.
    """
    first_s = torch.as_tensor(commands.first_s).reshape(1, state.batch_size)
    new, _ = _run(params, state, first_s, commands.first, commands.second, active, None)
    return new


class TickStops(NamedTuple):
    """What `tick_cpu` needs to run a whole tick of `BatchedDrivingEnv`: when each world's
    episode ends and what it tracks meanwhile (all `(B,)`).

    Attributes:
        duration: int64 episode length [substeps]: the world stops at this substep count.
        trigger_range: float64 stopped-vehicle trigger range [m] (`HazardOnsets`).
        onset: int64 hazard onset substep known so far, -1 while unknown (`HazardOnsets`;
            only stopped-vehicle onsets are found here, the others are planned).
        hazard_kind: int64 hazard code of the tracker (`HazardOnsets.kind`).
        hazard_vehicle: int64 slot of the hazard vehicle, -1 if none.
    """

    duration: torch.Tensor
    trigger_range: torch.Tensor
    onset: torch.Tensor
    hazard_kind: torch.Tensor
    hazard_vehicle: torch.Tensor


class TickOutcome(NamedTuple):
    """What a `tick_cpu` tick reports per world (numpy arrays).

    Attributes:
        alive: `(B,)` bool, still running after the tick (False where its ego crashed, left
            the road or reached its duration during the tick, or it was not active).
        onset: `(B,)` int64 hazard onset substep after the tick (-1 while unknown).
        ego_speed: `(S, B)` float64 the ego's speed after each substep the world ran [m/s]
            (0 elsewhere): what the reward's progress term needs (`envs.gym.reward`).
        integrated: `(S, B)` bool, the world ran substep `k` of the tick.
        onset_poses: `(B, 10)` float64, where the world's hazard onset boundary fell within
            the tick (after one of its substeps), the ego's then the hazard vehicle's
            `envs.criticality.POSE_FIELDS` there; NaN elsewhere.
    """

    alive: np.ndarray
    onset: np.ndarray
    ego_speed: np.ndarray
    integrated: np.ndarray
    onset_poses: np.ndarray


def tick_cpu(params: Params, state: BatchedState, first_s: torch.Tensor,
             first: torch.Tensor, second: torch.Tensor, active: torch.Tensor,
             stops: TickStops) -> tuple[BatchedState, TickOutcome]:
    """A whole tick of `S` substeps in one kernel call, with the env's per-substep
    bookkeeping done inside: the same result as `S` calls of `step_cpu` with
    `BatchedDrivingEnv._run_tick`'s loop around them (each world stops, frozen, after the
    substep on which its ego crashed, left the road or reached `stops.duration`;
    stopped-vehicle onsets found at each substep boundary, and the poses at each onset
    boundary recorded for its criticality).

    Why: each world is loaded into its workspace and stored once per tick instead of once
    per substep, and the Python and torch work between substeps disappears.

    Args:
        params, state: as `step_cpu`'s.
        first_s: `(S, B)` float64 [s]: how long the ego applies `first` in substep `k`
            (`BatchedClock.substep_pieces(k)[0]`).
        first, second: `(B, 2)` `[acceleration m/s^2, steering rad]`, the held and the new
            command (the same for every substep of a tick).
        active: `(B,)` bool, the worlds that run this tick.
        stops: durations and hazard onsets (`TickStops`).

    Returns:
        `(state after the tick, TickOutcome)`.
    """
    batch = state.batch_size
    first_s = torch.as_tensor(first_s, dtype=torch.float64)
    if first_s.dim() != 2 or first_s.shape[1] != batch:
        raise ValueError(f"first_s must be (S, {batch}), got {tuple(first_s.shape)}")
    return _run(params, state, first_s, first, second, active, stops)


def _run(params: Params, state: BatchedState, first_s: torch.Tensor, first: torch.Tensor,
         second: torch.Tensor, active: torch.Tensor | None, stops: TickStops | None
         ) -> tuple[BatchedState, TickOutcome | None]:
    """`step_cpu` (`stops` None, `first_s (1, B)`) or `tick_cpu`."""
    if not AVAILABLE:
        raise RuntimeError("the numba kernel needs numba; use envs.backends.batched.torch.step")
    if not supports(state):
        raise ValueError(f"the numba kernel runs float64 states on CPU, got "
                         f"{state.dtype} on {state.device}")
    if state.road.lane_valid.shape[1] > MAX_LANES:
        raise ValueError(f"the numba kernel handles at most {MAX_LANES} lanes per road")
    batch, slots = state.batch_size, state.num_slots
    road, hazard = state.road, state.hazard
    vehicles = VehicleArrays(*(_array(getattr(state, name)) for name in VehicleArrays._fields))
    substep, onset = _array(state.substep), _array(hazard.onset_substep)
    world = np.empty((N_WORLD, batch))
    for column, tensor in ((LANE_COUNT, road.lane_count), (ROAD_LENGTH, road.length),
                           (SPEED_LIMIT, road.speed_limit), (HAZARD_KIND, hazard.kind),
                           (HAZARD_VEHICLE, hazard.vehicle), (HAZARD_ONSET, hazard.onset_substep),
                           (HAZARD_DECEL, hazard.decel), (HAZARD_LANE, hazard.target_lane),
                           (HAZARD_SPEED, hazard.target_speed),
                           (HAZARD_LATERAL_SPEED, hazard.lateral_speed)):
        world[column] = _array(tensor)
    world[FIRST_A:FIRST_STEERING + 1] = _array(torch.as_tensor(first).reshape(batch, 2)).T
    world[SECOND_A:SECOND_STEERING + 1] = _array(torch.as_tensor(second).reshape(batch, 2)).T
    world[ACTIVE] = 1.0 if active is None else _array(
        torch.as_tensor(active, dtype=torch.bool).reshape(batch))
    first_s = np.ascontiguousarray(_array(first_s.to(torch.float64)))
    substeps = first_s.shape[0]
    world[FIRST_S] = first_s[0]
    # the fields only a starting hazard changes are shared unless one starts
    starts = (onset >= 0) & (onset >= substep) & (onset < substep + substeps)
    hazard_writable = bool((starts & (world[ACTIVE] > 0)).any())

    written = [name for name in WRITTEN_FIELDS if name not in ON_HAZARD or hazard_writable]
    out = {name: torch.empty(getattr(state, name).shape, dtype=getattr(state, name).dtype,
                             device="cpu") for name in written + ["substep"]}
    out["order_hint"] = torch.empty((batch, slots), dtype=torch.int64, device="cpu")
    # the fields a substep leaves alone (and those of ON_HAZARD unless a hazard starts)
    # are the input's arrays in `out_vehicles`: the kernel does not write them
    out_vehicles = vehicles._replace(**{name: out[name].numpy() for name in written})
    hint = state.order_hint
    has_hint = (hint is not None and tuple(hint.shape) == (batch, slots)
                and hint.dtype == torch.int64 and hint.device.type == "cpu")
    order = out["order_hint"].numpy()
    worlds = WorldArrays(substep=substep, hint=_array(hint) if has_hint else order,
                         table=world, first_s=first_s, substep_out=out["substep"].numpy(),
                         order=order)
    track = stops is not None
    if track:
        tick = TickArrays(
            duration=np.ascontiguousarray(_array(stops.duration), dtype=np.int64),
            trigger_range=np.ascontiguousarray(_array(stops.trigger_range), dtype=np.float64),
            onset=np.array(_array(stops.onset), dtype=np.int64),           # updated in place
            hazard_kind=np.ascontiguousarray(_array(stops.hazard_kind), dtype=np.int64),
            hazard_vehicle=np.ascontiguousarray(_array(stops.hazard_vehicle), dtype=np.int64),
            alive=np.zeros(batch, dtype=np.bool_), ego_speed=np.zeros((substeps, batch)),
            integrated=np.zeros((substeps, batch), dtype=np.bool_),
            onset_poses=np.full((batch, 10), np.nan))
    else:
        empty_int = np.zeros(0, np.int64)
        tick = TickArrays(empty_int, np.zeros(0), empty_int, empty_int, empty_int,
                          np.zeros(0, np.bool_), np.zeros((0, 0)), np.zeros((0, 0), np.bool_),
                          np.zeros((0, 10)))
    # Dynamic scheduling, one work item at a time: a thread whose core is busy with another
    # process takes fewer items instead of holding the others up. No more threads than work
    # items: waking a thread whose core runs another process can take a scheduler time
    # slice, far more than a small batch's substep.
    with kernel_threads(-(-batch // WORLDS_PER_TASK)):
        substep_worlds(kernel_params(params), vehicles, out_vehicles, worlds, tick, has_hint,
                       road.lane_valid.shape[1], hazard_writable, track, WORLDS_PER_TASK)
    outcome = (TickOutcome(tick.alive, tick.onset, tick.ego_speed, tick.integrated,
                           tick.onset_poses) if track else None)
    changes = {name: out[name] for name in written + ["substep", "order_hint"]}
    return state.replace(**changes), outcome
