"""The ego's lane frame and its neighbours there, batched: tracks turned into the frame of
the ego's lane (`s` along it, `d` across it from the ego lane's centre), and the lead and
follower of the ego in a lane of that frame (with cut-in anticipation)."""

from __future__ import annotations

import numpy as np
from reflexdrive.agents.staged.car_following import IDMParams
from reflexdrive.agents.staged.types import LaneFrameTracks, Tracks


def select_lead(tracks: Tracks, lane_offset: np.ndarray, params: IDMParams
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nearest track ahead that reaches into the ego lane, now or (moving sideways at
    its current lateral speed) within `params.cut_in_horizon_s`.

    Args:
        tracks: batched tracks in the ego frame.
        lane_offset: `(N,)` ego offset from its lane centre [m] (ego-frame +y positive).

    Returns:
        lead index `(N,)` (-1 if none), bumper gap `(N,)` [m] (inf if none) and the lead's
        longitudinal ground speed `(N,)` [m/s] (0 if none).
    """
    frame = to_lane_frame(tracks, lane_offset, np.zeros_like(lane_offset))
    lead, gap, _, _ = lane_neighbours(frame, np.zeros_like(lane_offset), params)
    return lead, gap, track_values(frame.vs, lead)


def to_lane_frame(tracks: Tracks, lane_offset: np.ndarray, heading_error: np.ndarray
                  ) -> LaneFrameTracks:
    """Rotate ego-frame tracks by the ego's heading error (ego heading minus lane heading)
    and shift by its lane offset: `s = x cos(psi) - y sin(psi)`,
    `d = x sin(psi) + y cos(psi) + lane_offset`; velocities and accelerations rotate alike.

    Args:
        lane_offset, heading_error: `(N,)` [m], [rad].
    """
    c, sn = np.cos(heading_error)[:, None], np.sin(heading_error)[:, None]
    x, y = tracks.position[..., 0], tracks.position[..., 1]
    vx, vy = np.nan_to_num(tracks.velocity[..., 0]), np.nan_to_num(tracks.velocity[..., 1])
    accel_s = np.zeros_like(x)
    if tracks.acceleration is not None:
        ax, ay = tracks.acceleration[..., 0], tracks.acceleration[..., 1]
        known = np.isfinite(ax) & np.isfinite(ay)
        accel_s = np.where(known, np.nan_to_num(ax) * c - np.nan_to_num(ay) * sn, 0.0)
    return LaneFrameTracks(s=x * c - y * sn, d=x * sn + y * c + lane_offset[:, None],
                           vs=vx * c - vy * sn, vd=vx * sn + vy * c,
                           length=tracks.size[..., 0], width=tracks.size[..., 1],
                           valid=tracks.valid.astype(bool), accel_s=accel_s)


def lane_neighbours(frame: LaneFrameTracks, lane_centre: np.ndarray, params: IDMParams,
                    ego_speed: np.ndarray | None = None, ego_width_m: float = 2.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lead and follower of the ego in the lane centred at `lane_centre` (lane frame `d`).

    The lead is the nearest track ahead (`s > 0`) that reaches into the lane now or, at its
    lateral speed, within `params.cut_in_horizon_s` (cut-in anticipation); the follower the
    nearest track behind (`s <= 0`) reaching into it now. Given `ego_speed`, a track that
    is still entering the lane (not in it now) is not a lead when the ego will have passed
    it before it can reach the ego's body (`passes_before_contact`): braking for it would
    keep the ego beside it as it moves in.

    Args:
        lane_centre: `(N,)` [m].
        ego_speed: `(N,)` [m/s], or None (every entering track counts).
        ego_width_m: the ego's width [m] (for when an entering track reaches it).

    Returns:
        lead, follower: `(N,)` track indices (-1 if none); lead_gap, follower_gap: `(N,)`
        bumper gaps [m] (inf if none).
    """
    n, k = frame.s.shape
    if k == 0:
        none, inf = np.full(n, -1, dtype=np.int64), np.full(n, np.inf)
        return none, inf, none.copy(), inf.copy()
    from_centre = frame.d - lane_centre[:, None]
    predicted = from_centre + frame.vd * params.cut_in_horizon_s
    crosses = np.sign(from_centre) != np.sign(predicted)
    nearest = np.where(crosses, 0.0, np.minimum(np.abs(from_centre), np.abs(predicted)))
    reach = 0.5 * params.lane_width_m - params.lane_overlap_m
    half_width = 0.5 * frame.width
    in_lane_soon = frame.valid & (nearest - half_width < reach)
    in_lane_now = frame.valid & (np.abs(from_centre) - half_width < reach)
    half_lengths = 0.5 * (frame.length + params.ego_length_m)
    if ego_speed is not None:
        entering = in_lane_soon & ~in_lane_now
        in_lane_soon = in_lane_soon & ~(entering & passes_before_contact(
            frame, from_centre, half_lengths, np.asarray(ego_speed, dtype=np.float64)[:, None],
            ego_width_m))
    ahead_gap = np.where(in_lane_soon & (frame.s > 0), frame.s - half_lengths, np.inf)
    behind_gap = np.where(in_lane_now & (frame.s <= 0), -frame.s - half_lengths, np.inf)
    rows = np.arange(frame.s.shape[0])
    lead, follower = np.argmin(ahead_gap, axis=1), np.argmin(behind_gap, axis=1)
    lead_gap, follower_gap = ahead_gap[rows, lead], behind_gap[rows, follower]
    return (np.where(np.isfinite(lead_gap), lead, -1), lead_gap,
            np.where(np.isfinite(follower_gap), follower, -1), follower_gap)


PASS_MARGIN_S = 0.5
"""How much sooner the ego must be past an entering track than the track can reach it [s]."""


def passes_before_contact(frame: LaneFrameTracks, from_centre: np.ndarray,
                          half_lengths: np.ndarray, ego_speed: np.ndarray, ego_width_m: float
                          ) -> np.ndarray:
    """`(N, K)` bool: the ego, at its speed, is past each track (its rear beyond the track's
    front) `PASS_MARGIN_S` before the track, at its lateral speed towards the lane centre,
    can touch the ego's body there: `(s + half_lengths) / (v_ego - v_s) + margin <
    (|d| - (w + w_ego) / 2) / v_towards`. A track not closing laterally, or one the ego
    does not overtake, never passes.

    Args:
        from_centre: `(N, K)` track offset from the lane centre [m].
        half_lengths: `(N, K)` half the summed lengths [m]; ego_speed: `(N, 1)` [m/s].
    """
    closing = ego_speed - frame.vs
    towards = -np.sign(from_centre) * frame.vd
    clearance = np.abs(from_centre) - 0.5 * (frame.width + ego_width_m)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_pass = np.where(closing > 0.0, (frame.s + half_lengths) / closing, np.inf)
        t_touch = np.where(towards > 0.0, np.maximum(clearance, 0.0) / towards, np.inf)
    return (closing > 0.0) & (t_pass + PASS_MARGIN_S < t_touch)


def track_values(values: np.ndarray, index: np.ndarray, missing: float = 0.0) -> np.ndarray:
    """`values[n, index[n]]`, `missing` where `index == -1`. values: `(N, K)`."""
    if values.shape[1] == 0:
        return np.full(values.shape[0], missing, dtype=np.float64)
    rows = np.arange(values.shape[0])
    return np.where(index >= 0, values[rows, np.maximum(index, 0)], missing)
