"""The staged stack's intermediate products: batched arrays, padded with a validity mask.

Positions and velocities are in each env's ego frame (x forward, y to the ego's left of
heading as in envs.sensors), metres and metres per second; velocities are ground velocities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Objects perceived this tick.

    Attributes:
        position: `(N, M, 2)` centre [m].
        velocity: `(N, M, 2)` ground velocity [m/s] (NaN where the detector cannot tell).
        size: `(N, M, 2)` length, width [m].
        heading: `(N, M)` heading relative to the ego [rad].
        object_id: `(N, M)` int, the object's id where known (oracle), else -1.
        valid: `(N, M)` bool.
    """

    position: np.ndarray
    velocity: np.ndarray
    size: np.ndarray
    heading: np.ndarray
    object_id: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class Tracks:
    """Objects tracked over time.

    Attributes:
        position: `(N, K, 2)` [m]. velocity: `(N, K, 2)` [m/s]. size: `(N, K, 2)` [m].
        track_id: `(N, K)` int, stable over an episode. valid: `(N, K)` bool.
    """

    position: np.ndarray
    velocity: np.ndarray
    size: np.ndarray
    track_id: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class Plan:
    """The planner's output for one tick.

    Attributes:
        acceleration: `(N,)` longitudinal acceleration to apply [m/s^2].
        lateral_target: `(N,)` lateral offset to steer to, relative to the current lane centre [m].
        lead_track: `(N,)` int, index of the lead track in `Tracks`, -1 if none.
        lead_gap: `(N,)` bumper gap to the lead [m], inf if none.
    """

    acceleration: np.ndarray
    lateral_target: np.ndarray
    lead_track: np.ndarray
    lead_gap: np.ndarray
