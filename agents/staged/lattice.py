"""The Frenet lattice of one planning call (`agents.staged.planning`): quintic lateral
profiles towards the lane each env moves to, one per duration, over a longitudinal profile,
checked against the tracks' constant-velocity predictions (`agents.staged.frenet`)."""

from __future__ import annotations

import numpy as np
from reflexdrive.agents.staged import frenet
from reflexdrive.agents.staged.planner_config import PlannerConfig
from reflexdrive.agents.staged.types import LaneFrameTracks


class Lattice:
    """The Frenet candidates of one planning call: lateral quintics towards the lane each
    env moves to (`relative` lanes away; 0 = keep), one per duration, over a longitudinal
    profile `path_s`, checked against the tracks' constant-velocity predictions.

    Candidates `C`: the lane-change durations then the lane-keeping ones; an env changing
    lanes uses the change candidates, one keeping its lane the keeping ones.
    """

    def __init__(self, config: PlannerConfig, times: np.ndarray, sight_speed_mps: float,
                 frame: LaneFrameTracks, offset: np.ndarray, lateral_speed: np.ndarray,
                 relative: np.ndarray):
        cfg, params = config, config.idm
        self.config, self.times = cfg, times
        change = np.asarray(cfg.change_durations_s, dtype=np.float64)
        keep = np.asarray(cfg.keep_durations_s, dtype=np.float64)
        durations = np.concatenate([change, keep])                           # (C,)
        self.is_change = np.arange(durations.shape[0]) < change.shape[0]
        d_end = np.where(self.is_change[None, :],
                         (relative * params.lane_width_m)[:, None], 0.0)     # (N, C)
        coefficients = frenet.quintic_coefficients(offset[:, None], lateral_speed[:, None],
                                                   d_end, durations[None, :])
        self.lateral, jerk = frenet.lateral_profile(
            coefficients, np.broadcast_to(durations, d_end.shape), self.times)  # (N, C, P)
        self.cost = cfg.jerk_weight * jerk + cfg.duration_weight * durations[None, :]
        self.usable = self.is_change[None, :] == (relative != 0)[:, None]
        # tracks ahead of the ego, or outside its lane, can conflict (the ones behind in
        # the own lane are the follower's business)
        self.frame = frame
        self.relevant = frame.valid & ((frame.s > 0)
                                       | (np.abs(frame.d) > 0.5 * params.lane_width_m))
        self.half_length = 0.5 * (frame.length + params.ego_length_m) + cfg.margin_s_m
        self.half_width = 0.5 * (frame.width + cfg.ego_width_m) + cfg.margin_d_m
        self.max_speed = min(params.desired_speed_mps, sight_speed_mps)

    def conflicts(self, path_s: np.ndarray, track_decel: np.ndarray | None = None
                  ) -> np.ndarray:
        """`(N, C)` bool: the candidate meets a track (constant velocity, or braking at
        `track_decel (N, K)`), or moves sideways more steeply than `max_path_slope`, with
        longitudinal profile `path_s`."""
        f = self.frame
        meets = frenet.first_conflict(np.broadcast_to(path_s[:, None, :], self.lateral.shape),
                                      self.lateral, f.s, f.d, f.vs, f.vd, self.half_length,
                                      self.half_width, self.relevant, self.times, track_decel)
        sideways = np.abs(np.diff(self.lateral, axis=-1))                     # (N, C, P-1)
        forward = np.diff(path_s, axis=-1)[:, None, :]
        steep = (sideways > self.config.max_path_slope * forward + 1e-3).any(axis=-1)
        return meets | steep

    def feasible(self, speed: np.ndarray, accel: np.ndarray, change: bool,
                 path_s: np.ndarray | None = None, track_decel: np.ndarray | None = None
                 ) -> np.ndarray:
        """`(N,)` bool: some usable candidate of that kind is conflict-free under the
        constant-acceleration profile `accel` (or the given `path_s`)."""
        if path_s is None:
            path_s, _ = frenet.longitudinal_profile(speed, accel, self.times, self.max_speed)
        kind = self.is_change if change else ~self.is_change
        free = ~self.conflicts(path_s, track_decel)
        return (self.usable & kind[None, :] & free).any(axis=1)

    def best_path(self, path_s: np.ndarray) -> np.ndarray:
        """`(N, P)` lateral offsets of the cheapest conflict-free usable candidate; if every
        usable one conflicts, the cheapest usable one (the emergency rule brakes)."""
        cost = np.where(self.usable, self.cost, np.inf)
        free = np.where(~self.conflicts(path_s), cost, np.inf)
        cost = np.where(np.isfinite(free).any(axis=1)[:, None], free, cost)
        choice = np.argmin(cost, axis=1)
        return self.lateral[np.arange(cost.shape[0]), choice]
