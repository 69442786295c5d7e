"""Lane geometry of straight multi-lane roads, as highway-env's `StraightLane` computes it.

Lane `i` of a road starts at `(0, i * w)` and heads along +x (`w = Params.lane_width`), so a
world position `(x, y)` has lane coordinates `s = x` (longitudinal) and `r = y - i * w`
(lateral), exactly as `StraightLane.local_coordinates` returns them. Shapes broadcast; all
lengths in metres, angles in radians.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from envs.batched.state import BatchedRoad, Params

LANE_HEADING = 0.0
"""Heading of every lane of a straight road (`arctan2(0, length)`) [rad]."""


def not_zero(x: torch.Tensor, eps: float) -> torch.Tensor:
    """highway-env's `utils.not_zero`: `x` if `|x| > eps`, else `+eps` (x >= 0) or `-eps`."""
    signed_eps = (x >= 0).to(x.dtype) * (2 * eps) - eps      # exactly +eps or -eps
    return torch.where(x.abs() > eps, x, signed_eps)


def wrap_to_pi(x: torch.Tensor) -> torch.Tensor:
    """Angle wrapped to `[-pi, pi)` as `((x + pi) mod 2 pi) - pi` [rad]."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def lane_coordinates(position: torch.Tensor, lane: torch.Tensor,
                     params: Params) -> tuple[torch.Tensor, torch.Tensor]:
    """Lane coordinates of world positions.

    Args:
        position: `(..., 2)` world position [m].
        lane: `(...)` int lane number.

    Returns:
        `s = x` and `r = y - lane * w`, each `(...)` [m].
    """
    offset = lane.to(position.dtype) * params.lane_width
    return position[..., 0], position[..., 1] - offset


def on_lane(s: torch.Tensor, r: torch.Tensor, length: torch.Tensor, params: Params,
            margin: float = 0.0) -> torch.Tensor:
    """`AbstractLane.on_lane`: `|r| <= w/2 + margin` and `-l_v <= s < length + l_v`.

    Args:
        s, r: lane coordinates [m]; length: lane length [m] (broadcasts);
        margin: extra lateral tolerance [m]. `l_v = Params.lane_vehicle_length`.

    Returns:
        bool tensor of the broadcast shape.
    """
    vl = params.lane_vehicle_length
    return (r.abs() <= params.lane_width / 2 + margin) & (s >= -vl) & (s < length + vl)


def is_reachable(s: torch.Tensor, r: torch.Tensor, length: torch.Tensor,
                 params: Params) -> torch.Tensor:
    """`AbstractLane.is_reachable_from`: `|r| <= 2 w` and `0 <= s < length + l_v` (bool)."""
    return ((r.abs() <= params.reachable_lanes * params.lane_width)
            & (s >= 0) & (s < length + params.lane_vehicle_length))


def closest_lane(position: torch.Tensor, heading: torch.Tensor, road: BatchedRoad,
                 params: Params) -> torch.Tensor:
    """`RoadNetwork.get_closest_lane_index` on a straight road (what `on_state_update` does).

    Every lane `i` scores `|r_i| + max(s - length, 0) + max(-s, 0) + |wrap(heading - 0)|`
    (`distance_with_heading`, same float operations); the lowest score wins, the first lane
    on a tie.

    Args:
        position: `(B, ..., 2)` [m]; heading: `(B, ...)` [rad] (world `b` uses road `b`).

    Returns:
        `(B, ...)` int64 lane numbers.
    """
    batch, lane_slots = road.lane_valid.shape
    inner = (1,) * (heading.dim() - 1)
    lanes = torch.arange(lane_slots, device=position.device).to(position.dtype)
    s = position[..., 0, None]
    r = position[..., 1, None] - lanes * params.lane_width            # (B, ..., L)
    length = road.length.reshape(batch, *inner, 1)
    angle = wrap_to_pi(heading - LANE_HEADING).abs()[..., None]
    distance = (r.abs() + torch.clamp(s - length, min=0.0)) + torch.clamp(0.0 - s, min=0.0)
    distance = distance + 1.0 * angle
    distance = torch.where(road.lane_valid.reshape(batch, *inner, lane_slots), distance,
                           math.inf)
    return torch.argmin(distance, dim=-1)


def straight_road_geometry(lanes: int, length: float, lane_width: float,
                           stripe_length: float, stripe_period: float):
    """Centre lines and painted lines of one straight road, as `highway_backend._road_geometry`.

    Returns numpy arrays, in highway-env's lane order (lane 0 first; per lane its left line
    then its right line): lane segments `(lanes, 2, 2)` [m], half widths `(lanes,)` [m],
    marking segments `(K, 2, 2)` [m]. Lane 0 has a continuous left line, lanes `1..n-1` a
    striped left line (stripes of `stripe_length` every `stripe_period` metres), the last lane
    a continuous right line.
    """
    lane_segments, half_widths, markings = [], [], []
    for i in range(lanes):
        y = i * lane_width
        lane_segments.append([[0.0, y], [length, y]])
        half_widths.append(0.5 * lane_width)
        sides = (("continuous" if i == 0 else "striped", -0.5),
                 ("continuous" if i == lanes - 1 else None, 0.5))
        for line, offset in sides:
            if line is None:
                continue
            if line == "striped":
                starts = np.arange(0.0, length, stripe_period)
                ends = np.minimum(starts + stripe_length, length)
            else:
                starts, ends = np.array([0.0]), np.array([length])
            line_y = y + offset * lane_width
            for a, b in zip(starts, ends):
                markings.append([[a, line_y], [b, line_y]])
    return (np.asarray(lane_segments, dtype=np.float64),
            np.asarray(half_widths, dtype=np.float64),
            np.asarray(markings, dtype=np.float64).reshape(-1, 2, 2))
