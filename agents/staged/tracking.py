"""Tracking stages: `Detections` over time to `Tracks`."""

from __future__ import annotations

from agents.staged.types import Detections, Tracks


class IdentityTracker:
    """Passes detections that already carry ids and velocities (oracle perception) through.

    The tracker for ground truth: ids are the simulator's vehicle ids, velocities exact.
    """

    name = "identity"

    def reset(self, done) -> None:
        """Stateless."""

    def __call__(self, detections: Detections, ego=None, time_s=None) -> Tracks:
        return Tracks(position=detections.position, velocity=detections.velocity,
                      size=detections.size, track_id=detections.object_id,
                      valid=detections.valid)
