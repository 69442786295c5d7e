"""Plain data shared by the backends, the sensors, the clock and the metrics.

Everything here is batch-first numpy: `B` worlds, `N` vehicle slots per world (slot 0 is
always the ego), padded slots marked invalid by `valid`. Sensors and outcome metrics are
pure functions of a `WorldSnapshot` and a `RoadGeometry`, so every backend shares one
implementation of them.

Frames: the world frame is highway-env's (x east, y *down* on screen, i.e. a
right-handed frame where positive heading turns towards +y). The ego frame has x forward
along the ego heading and y towards the ego's +heading side (the same handedness as the
world frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

EGO = 0
"""Slot index of the ego vehicle along the `N` axis."""


@dataclass(frozen=True)
class RoadGeometry:
    """The road of one or more worlds as line segments, for rasterising and metrics.

    Curved lanes are sampled into short chords (about 2 m), straight lanes are one segment.

    Attributes:
        lane_segments: `(B, S, 2, 2)` centre-line segments `[start, end]` in world frame [m].
        lane_half_width: `(B, S)` half the lane width along each segment [m].
        lane_valid: `(B, S)` bool, padding mask.
        marking_segments: `(B, K, 2, 2)` painted lane boundaries (continuous or striped) [m].
        marking_valid: `(B, K)` bool, padding mask.
    """

    lane_segments: np.ndarray
    lane_half_width: np.ndarray
    lane_valid: np.ndarray
    marking_segments: np.ndarray
    marking_valid: np.ndarray

    @property
    def batch_size(self) -> int:
        return int(self.lane_segments.shape[0])


@dataclass(frozen=True)
class WorldSnapshot:
    """The state of `B` worlds at one instant, as sensors and metrics need it.

    Attributes:
        time_s: `(B,)` simulated time since reset [s].
        position: `(B, N, 2)` vehicle centres in the world frame [m].
        heading: `(B, N)` yaw in the world frame [rad].
        speed: `(B, N)` signed speed along the heading [m/s].
        acceleration: `(B, N)` longitudinal acceleration being applied [m/s^2].
        length: `(B, N)` vehicle length [m].
        width: `(B, N)` vehicle width [m].
        vehicle_id: `(B, N)` int64, ids stable over an episode (ego is 0, padding is -1).
        valid: `(B, N)` bool, slot holds a vehicle.
        ego_steering: `(B,)` steering angle being applied to the ego [rad].
        ego_lane_offset: `(B,)` lateral offset of the ego from its lane centre [m].
        ego_heading_error: `(B,)` ego heading minus lane heading, wrapped to (-pi, pi] [rad].
        ego_lane_index: `(B,)` int, lane number counted from the road's first lane.
        ego_lane_count: `(B,)` int, lanes on the ego's road section.
        ego_on_road: `(B,)` bool, ego centre lies on a lane.
        crashed: `(B,)` bool, the ego has collided.
        ego_on_route_exit: `(B,)` bool, the ego's lane lies on its route's exit road (the
            road ending at its destination, `envs.backends.route_exit`): it has entered it.
    """

    time_s: np.ndarray
    position: np.ndarray
    heading: np.ndarray
    speed: np.ndarray
    acceleration: np.ndarray
    length: np.ndarray
    width: np.ndarray
    vehicle_id: np.ndarray
    valid: np.ndarray
    ego_steering: np.ndarray
    ego_lane_offset: np.ndarray
    ego_heading_error: np.ndarray
    ego_lane_index: np.ndarray
    ego_lane_count: np.ndarray
    ego_on_road: np.ndarray
    crashed: np.ndarray
    ego_on_route_exit: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """`(B, N)`: worlds and vehicle slots."""
        return tuple(self.valid.shape)  # type: ignore[return-value]

    def validate(self) -> None:
        """Raise ValueError if any field disagrees with `(B, N)`."""
        b, n = self.shape
        expected = {
            "time_s": (b,),
            "position": (b, n, 2),
            "heading": (b, n),
            "speed": (b, n),
            "acceleration": (b, n),
            "length": (b, n),
            "width": (b, n),
            "vehicle_id": (b, n),
            "ego_steering": (b,),
            "ego_lane_offset": (b,),
            "ego_heading_error": (b,),
            "ego_lane_index": (b,),
            "ego_lane_count": (b,),
            "ego_on_road": (b,),
            "crashed": (b,),
            "ego_on_route_exit": (b,),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"WorldSnapshot.{name} has shape {got}, expected {shape}")
        if not np.all(self.valid[:, EGO]):
            raise ValueError("WorldSnapshot.valid[:, 0] must be True: slot 0 is the ego")


@dataclass(frozen=True)
class Command:
    """One driving command: longitudinal acceleration [m/s^2] and front-wheel steering [rad]."""

    acceleration: float
    steering: float

    def as_array(self) -> np.ndarray:
        return np.array([self.acceleration, self.steering], dtype=np.float64)


ZERO_COMMAND = Command(0.0, 0.0)


@dataclass(frozen=True)
class Piece:
    """A stretch of one substep during which one command is applied.

    Attributes:
        duration_s: length of the stretch [s], > 0.
        command: the command applied to the ego throughout it.
    """

    duration_s: float
    command: Command


CRITICALITY_KEYS = ("critical", "onset_gap_m", "onset_ttc_s", "onset_headway_s",
                    "required_decel_mps2")
"""The keys of `info["hazard"]` that say how critical the hazard was at onset
(`envs.criticality.OnsetCriticality`). The vector env holds False and NaN in them before
a world's onset (or without a hazard); the single env leaves them out until the onset
(`HazardState.criticality`)."""


@dataclass(frozen=True)
class HazardState:
    """What a hazard scenario reports about its hazard (ground truth, goes in `info`).

    Attributes:
        kind: "lead_brake", "cut_in", "stopped_vehicle", "cross_traffic", or "none".
        onset_s: hazard onset time `t_h` [s] once known, else None (`inf` in `info`: the
            onset lies beyond any time yet reached). For a stopped vehicle it becomes known
            when the vehicle first comes within sensor range.
        active: the hazard has begun (time >= onset).
        vehicle_id: id of the hazard vehicle, -1 if none.
        criticality: the hazard at onset, `CRITICALITY_KEYS` (`envs.criticality`), once
            the onset is reached (then in `info` too); None before. Before the onset (and
            without a hazard) `info` leaves these keys out rather than holding NaN:
            Gymnasium's env checker compares infos with `==`, and NaN != NaN. Read them
            with `info["hazard"].get(name, nan)`.
    """

    kind: str = "none"
    onset_s: float | None = None
    active: bool = False
    vehicle_id: int = -1
    criticality: dict | None = None

    def as_info(self) -> dict:
        known = self.criticality
        return {
            "kind": self.kind,
            "onset_s": math.inf if self.onset_s is None else float(self.onset_s),
            "active": bool(self.active),
            "vehicle_id": int(self.vehicle_id),
            **({} if known is None else {"critical": bool(known["critical"]),
                                         **{name: float(known[name])
                                            for name in CRITICALITY_KEYS[1:]}}),
        }


class SubstepOutcome(NamedTuple):
    """Per-substep measurements the metrics need (all for the ego, after the substep).

    A named tuple, not a dataclass: the batched env makes one per world and substep
    (hundreds of thousands in a compare cell), and a tuple is built in half the time.

    Attributes:
        time_s: time at the end of the substep [s].
        speed: ego speed [m/s].
        distance_m: distance the ego travelled during the substep [m].
        gap_m: bumper-to-bumper gap to the nearest vehicle ahead in the ego's path [m]
            (inf if none).
        ttc_s: time to collision with that vehicle at constant speeds [s] (inf if not closing).
        crashed: ego has collided.
        on_road: ego centre lies on a lane.
        on_route_exit: the ego's lane lies on its route's exit road
            (`WorldSnapshot.ego_on_route_exit`).
        traffic_speed: mean speed of the other vehicles [m/s] (NaN if there are none).
    """

    time_s: float
    speed: float
    distance_m: float
    gap_m: float
    ttc_s: float
    crashed: bool
    on_road: bool
    on_route_exit: bool
    traffic_speed: float = float("nan")


@dataclass
class EpisodeTrace:
    """Everything recorded over an episode, appended tick by tick (see envs.clock)."""

    ticks: list = field(default_factory=list)
    substeps: list[SubstepOutcome] = field(default_factory=list)
