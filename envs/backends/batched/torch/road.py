"""Lane geometry of straight multi-lane roads, as highway-env's `StraightLane` computes it.

Lane `i` of a road starts at `(0, i * w)` and heads along +x (`w = Params.lane_width`), so a
world position `(x, y)` has lane coordinates `s = x` (longitudinal) and `r = y - i * w`
(lateral), exactly as `StraightLane.local_coordinates` returns them. Shapes broadcast; all
lengths in metres, angles in radians.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from reflexdrive.envs.backends.batched.state import BatchedRoad, Params

LANE_HEADING = 0.0
"""Heading of every lane of a straight road (`arctan2(0, length)`) [rad]."""


def as_weight(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A bool mask as a 0.0 / 1.0 float tensor of `like`'s dtype (a `blend` weight)."""
    return mask.to(like.dtype)


def blend(weight: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """`where(weight == 1, new, old)` for a 0.0 / 1.0 float `weight` and finite values.

    One fused `torch.lerp(old, new, weight)`: ATen evaluates `old + w (new - old)` for
    `w < 0.5` and `new - (new - old) (1 - w)` otherwise (the vectorised kernel as one
    fused multiply-add), so `w = 0` gives `old` and `w = 1` gives `new` bit for bit, up to
    the sign of a zero. On CPU it costs about a seventh of `torch.where` (whose kernel is
    not vectorised). Only for finite values: `0 * inf = nan`.

    Args:
        weight: 0.0 / 1.0 floats (see `as_weight`), broadcasting against `new` and `old`.
    """
    return torch.lerp(old, new, weight)


def not_zero(x: torch.Tensor, eps: float) -> torch.Tensor:
    """highway-env's `utils.not_zero`: `x` if `|x| > eps`, else `+eps` (x >= 0) or `-eps`.

    Evaluated as `max(x, eps)` for `x >= 0` and `min(x, -eps)` for `x < 0` (the same values
    without a `torch.where`).
    """
    return blend(as_weight(x >= 0, x), torch.clamp(x, min=eps), torch.clamp(x, max=-eps))


def not_zero_nonnegative(x: torch.Tensor, eps: float) -> torch.Tensor:
    """`not_zero(x, eps)` for `x >= 0` (`+0.0` included): `max(x, eps)`."""
    return torch.clamp(x, min=eps)


def wrap_to_pi(x: torch.Tensor) -> torch.Tensor:
    """Angle wrapped to `[-pi, pi)` as `((x + pi) mod 2 pi) - pi` [rad]."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def wrap_to_pi_(x: torch.Tensor) -> torch.Tensor:
    """`wrap_to_pi` in place (for a fresh tensor the caller owns); returns `x`."""
    return x.add_(math.pi).remainder_(2 * math.pi).sub_(math.pi)


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
    on a tie; padding lanes (`road.lane_valid == False`) never win.

    The lane-independent terms are computed once: at most one of `max(s - length, 0)`
    and `max(-s, 0)` is non-zero, so `(|r| + a) + b = |r| + (a + b)` exactly. The lanes
    are scanned in order with a running minimum `m_i = min(d_0 .. d_i)`: the winner is the
    number of lanes `i` with `m_i` still above the overall minimum (the first lane that
    reaches it, so the first one on a tie).

    Args:
        position: `(B, ..., 2)` [m]; heading: `(B, ...)` [rad] (world `b` uses road `b`).

    Returns:
        `(B, ...)` int64 lane numbers.
    """
    batch, lane_slots = road.lane_valid.shape
    inner = (1,) * (heading.dim() - 1)
    s, y = position[..., 0], position[..., 1]
    length = road.length.reshape(batch, *inner)
    off_road = torch.sub(s, length).clamp_(min=0.0).add_(torch.rsub(s, 0.0).clamp_(min=0.0))
    angle = wrap_to_pi_(heading - LANE_HEADING).abs_()
    padded = not bool(road.lane_valid.all()) if lane_slots > 1 else False
    if padded:
        penalty = torch.zeros(road.lane_valid.shape, dtype=position.dtype,
                              device=position.device).masked_fill_(~road.lane_valid, math.inf)
    running = []
    minimum = None
    for i in range(lane_slots):
        # (|y - i w| + off_road) + angle
        distance = torch.sub(y, float(i) * params.lane_width).abs_().add_(off_road).add_(angle)
        if padded:
            distance.add_(penalty[:, i].reshape(batch, *inner))
        minimum = distance if minimum is None else torch.minimum(minimum, distance)
        running.append(minimum)
    lane = torch.zeros(heading.shape, dtype=torch.int64, device=position.device)
    for partial in running[:-1]:
        lane += partial > minimum
    return lane


@functools.lru_cache(maxsize=256)
def straight_road_geometry(lanes: int, length: float, lane_width: float,
                           stripe_length: float, stripe_period: float):
    """Centre lines and painted lines of one straight road, as
    `envs.backends.highway.network_geometry` samples them.

    Returns read-only numpy arrays (cached: every reset of a batch asks again for the same
    few roads), in highway-env's lane order (lane 0 first; per lane its left line then its
    right line): lane segments `(lanes, 2, 2)` [m], half widths `(lanes,)` [m], marking
    segments `(K, 2, 2)` [m]. Lane 0 has a continuous left line, lanes `1..n-1` a striped
    left line (stripes of `stripe_length` every `stripe_period` metres), the last lane a
    continuous right line.
    """
    lane_segments, half_widths, markings = [], [], []
    stripe_starts = np.arange(0.0, length, stripe_period)
    stripe_ends = np.minimum(stripe_starts + stripe_length, length)
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
                starts, ends = stripe_starts, stripe_ends
            else:
                starts, ends = np.array([0.0]), np.array([length])
            line_y = np.full_like(starts, y + offset * lane_width)
            markings.append(np.stack([np.stack([starts, line_y], axis=-1),
                                      np.stack([ends, line_y], axis=-1)], axis=1))
    result = (np.asarray(lane_segments, dtype=np.float64),
              np.asarray(half_widths, dtype=np.float64),
              np.concatenate(markings).astype(np.float64).reshape(-1, 2, 2))
    for array in result:
        array.flags.writeable = False
    return result
