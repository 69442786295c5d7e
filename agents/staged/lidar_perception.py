"""Classical lidar perception: cluster the returns of each scan into objects, then estimate
each object's centre, size and velocity. Batched over envs in numpy, no learning.

The scan (`obs["lidar"]`, `(N, beams, 2)`: range [m], range rate [m/s]; beam `i` points at
`2 pi i / beams` in the ego frame, towards +y) is cut into clusters where consecutive
returns ("breakpoint detection", Premebida & Nunes 2005) are closer than a threshold that
grows with the range (the beam spacing grows with it). Every cluster is one object.

Box estimate, assuming vehicles are aligned with the ego's lane (a highway; the heading
error is small), at least `prior_length_m` x `prior_width_m` (highway-env's cars), and
using the lane geometry the ego knows (its lane offset; lanes `lane_width_m` apart), as a
map would give it:

- a hit whose `y` lies on the near side line of a neighbouring lane's vehicle
  (`lane centre -+ W/2`, within `side_tolerance_m`) is a *side* hit, any other a *face*
  hit (rear face ahead of the ego, front face behind it);
- `y`: the centre of the lane the cluster lies in when it lies within one (`|y - c| <=
  W/2 + side_tolerance_m`), else the mean `y` of the hits (a car between lanes);
- `x`: ahead, the nearest face hit plus `L/2`; behind, the farthest face hit minus `L/2`;
  with only side hits (the car's face is out of view) the middle of their span; alongside
  (hits on both sides of the ego), their mean.

Velocity from the range rates: a return's range rate is `(v_obj - v_ego) . u` (ground
velocities, `u` the beam direction); for an object moving along the lane `v_obj = (vx, 0)`
and the ego at `(v, 0)`, so `vx = rate / cos(theta) + v`, averaged over the cluster's beams
with `|cos(theta)| >= min_cos`; `vy = 0`. Objects seen only sideways get NaN (unknown) and
the tracker estimates their velocity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from reflexdrive.agents.base import Info, Observation
from reflexdrive.agents.staged.types import Detections
from reflexdrive.envs.config import EGO_FEATURES

from reflexdrive.common.validation import count, real, validate_fields

SPEED = EGO_FEATURES.index("speed_mps")
LANE_OFFSET = EGO_FEATURES.index("lane_offset_m")


@dataclass
class LidarPerception:
    """Breakpoint clustering of the lidar scan into objects (units and bounds of each
    setting in its field's metadata; validated on construction).

    Consecutive returns closer than `max(min_break_m, break_factor * range *
    beam_spacing_rad)` are one object.
    """

    range_m: float = real(48.0, low=0.0, low_inclusive=False,
                          help='the lidar\'s range [m] (returns at or beyond it are "no hit")')
    min_break_m: float = real(1.5, low=0.0, low_inclusive=False,
                              help="smallest gap between returns that splits objects [m]")
    break_factor: float = real(
        1.2, low=0.0, help="gap that splits objects per metre of range per radian [-]")
    prior_length_m: float = real(5.0, low=0.0, low_inclusive=False,
                                 help="smallest object length assumed [m]")
    prior_width_m: float = real(2.0, low=0.0, low_inclusive=False,
                                help="smallest object width assumed [m]")
    lane_width_m: float = real(4.0, low=0.0, low_inclusive=False,
                               help="distance between lane centres [m]")
    side_tolerance_m: float = real(
        0.3, low=0.0, low_inclusive=False,
        help="how close to a near side line a hit must be to count as a side hit, and how "
             "far outside a lane's vehicle band a cluster may be to snap [m]")
    min_cos: float = real(0.5, low=0.0, high=1.0,
                          help="range rates of beams with |cos(theta)| < min_cos are not used "
                               "[-]")
    max_objects: int = count(16, help="detections per env (nearest first) [count]")
    name: str = "lidar"

    def __post_init__(self) -> None:
        validate_fields(self)

    def reset(self, done) -> None:
        """Stateless."""

    def __call__(self, obs: Observation, info: Info) -> Detections:
        scan = np.asarray(obs["lidar"], dtype=np.float64)                   # (N, B, 2)
        ego = np.asarray(obs["ego"], dtype=np.float64)
        labels, count = cluster_scan(scan[..., 0], self.range_m, self.min_break_m,
                                     self.break_factor, ego[:, LANE_OFFSET], self)
        return boxes_from_clusters(scan, labels, count, ego[:, SPEED], ego[:, LANE_OFFSET],
                                   self)


def beam_directions(beams: int) -> tuple[np.ndarray, np.ndarray]:
    """`(cos, sin)` of the beam angles `2 pi i / beams`, `(beams,)` each."""
    angle = np.arange(beams) * (2.0 * np.pi / beams)
    return np.cos(angle), np.sin(angle)


def cluster_scan(ranges: np.ndarray, range_m: float, min_break_m: float,
                 break_factor: float, lane_offset: np.ndarray | None = None,
                 config: "LidarPerception | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """Label the returns of each scan by cluster (breakpoint detection, circular).

    Consecutive returns are one object when closer than the range-dependent threshold, or
    (given the lane geometry: `lane_offset` and `config`) when both lie in the same lane's
    vehicle band (`|y - c| <= W/2 + side_tolerance_m`) less than `prior_length_m` apart
    along it: at shallow angles the beams hit one car's side metres apart.

    Args:
        ranges: `(N, B)` ranges [m]; `>= range_m` means no return.
        lane_offset: `(N,)` ego offset from its lane centre [m], or None (no lane rule).

    Returns:
        labels `(N, B)` int (-1 for no return, else `0 .. count - 1` in beam order, a
        cluster spanning beam `B-1 -> 0` keeps the label of its part at the start) and
        count `(N,)` clusters per scan.
    """
    n, beams = ranges.shape
    hit = ranges < range_m - 1e-6
    cos, sin = beam_directions(beams)
    x, y = ranges * cos, ranges * sin
    nxt = (np.arange(beams) + 1) % beams
    distance = np.hypot(x[:, nxt] - x, y[:, nxt] - y)                  # beam i to i + 1
    threshold = np.maximum(min_break_m, break_factor * np.minimum(ranges, ranges[:, nxt])
                           * (2.0 * np.pi / beams))
    close = distance < threshold
    if lane_offset is not None and config is not None:
        w = config.lane_width_m
        centre = np.rint((y + lane_offset[:, None]) / w) * w - lane_offset[:, None]
        band = np.abs(y - centre) <= 0.5 * config.prior_width_m + config.side_tolerance_m
        close |= (band & band[:, nxt] & (centre == centre[:, nxt])
                  & (np.abs(x[:, nxt] - x) < config.prior_length_m))
    link = hit & hit[:, nxt] & close                                   # i joined to i + 1
    previous_link = np.roll(link, 1, axis=1)                           # i - 1 joined to i
    start = hit & ~previous_link
    # a scan whose hits are all chained in a ring has no start: open it at beam 0
    ring = hit.any(axis=1) & ~start.any(axis=1)
    start[ring, 0] = True
    labels = np.cumsum(start, axis=1) - 1
    # returns before the first start belong to the cluster that wraps past beam B-1
    last = labels[:, -1:]
    labels = np.where(labels < 0, last, labels)
    labels = np.where(hit, labels, -1)
    count = start.sum(axis=1)
    return labels, count


def boxes_from_clusters(scan: np.ndarray, labels: np.ndarray, count: np.ndarray,
                        ego_speed: np.ndarray, lane_offset: np.ndarray,
                        config: LidarPerception) -> Detections:
    """Centre, size and velocity of each cluster (see the module docstring).

    Args:
        scan: `(N, B, 2)` range [m], range rate [m/s]; labels, count: from `cluster_scan`;
        ego_speed: `(N,)` [m/s]; lane_offset: `(N,)` the ego's offset from its lane centre,
            ego frame +y [m].

    Returns:
        `Detections` with `M = config.max_objects` slots, nearest first.
    """
    n, beams, _ = scan.shape
    slots = max(int(count.max()) if count.size else 0, 1)
    cos, sin = beam_directions(beams)
    x, y = scan[..., 0] * cos, scan[..., 0] * sin
    hit = labels >= 0
    flat = np.where(hit, np.arange(n)[:, None] * slots + labels, n * slots)   # dump row
    size = n * slots + 1

    def reduce(values, ufunc, initial):
        out = np.full(size, initial, dtype=np.float64)
        ufunc.at(out, flat.ravel(), values.ravel())
        return out[:-1].reshape(n, slots)

    # lane geometry: centre of the lane each hit lies in, ego frame [m]
    w, half = config.lane_width_m, 0.5 * config.prior_width_m
    offset = lane_offset[:, None]
    centre = np.rint((y + offset) / w) * w - offset                      # (N, B)
    near_side = centre - np.sign(centre) * half
    side = hit & (np.abs(centre) > half) & (np.abs(y - near_side) < config.side_tolerance_m)
    face = hit & ~side

    hits = reduce(np.ones_like(x), np.add, 0.0)
    x_min, x_max = reduce(x, np.minimum, np.inf), reduce(x, np.maximum, -np.inf)
    y_min, y_max = reduce(y, np.minimum, np.inf), reduce(y, np.maximum, -np.inf)
    x_mean = reduce(x, np.add, 0.0) / np.maximum(hits, 1)
    y_mean = reduce(y, np.add, 0.0) / np.maximum(hits, 1)
    face_min = reduce(np.where(face, x, np.inf), np.minimum, np.inf)
    face_max = reduce(np.where(face, x, -np.inf), np.maximum, -np.inf)
    # velocity along the lane from the range rates of the beams looking along it
    usable = hit & (np.abs(cos)[None, :] >= config.min_cos)
    with np.errstate(divide="ignore", invalid="ignore"):
        vx_beam = scan[..., 1] / cos[None, :] + ego_speed[:, None]
    vx_sum = reduce(np.where(usable, vx_beam, 0.0), np.add, 0.0)
    vx_count = reduce(usable.astype(np.float64), np.add, 0.0)

    valid = hits > 0
    length = np.where(valid, np.maximum(config.prior_length_m, x_max - x_min), 0.0)
    width = np.where(valid, np.maximum(config.prior_width_m, y_max - y_min), 0.0)
    has_face = np.isfinite(face_min)
    side_middle = 0.5 * (np.where(valid, x_min, 0.0) + np.where(valid, x_max, 0.0))
    centre_x = np.where(x_min > 0.0, np.where(has_face, face_min + 0.5 * length, side_middle),
                        np.where(x_max < 0.0,
                                 np.where(has_face, face_max - 0.5 * length, side_middle),
                                 x_mean))
    lane_centre = np.rint((y_mean + lane_offset[:, None]) / w) * w - lane_offset[:, None]
    in_lane = np.abs(y_mean - lane_centre) <= half + config.side_tolerance_m
    centre_y = np.where(in_lane & ((y_max - y_min) <= config.prior_width_m + 0.5),
                        lane_centre, y_mean)
    vx = np.where(vx_count > 0, vx_sum / np.maximum(vx_count, 1), np.nan)
    vy = np.where(vx_count > 0, 0.0, np.nan)

    # nearest first, `max_objects` slots
    distance = np.where(valid, np.hypot(centre_x, centre_y), np.inf)
    order = np.argsort(distance, axis=1, kind="stable")[:, :config.max_objects]
    m = config.max_objects

    def take(values, fill):
        picked = np.take_along_axis(values, order, axis=1)
        out = np.full((n, m), fill, dtype=np.float64)
        out[:, :picked.shape[1]] = picked
        return out

    valid_out = take(valid.astype(np.float64), 0.0) > 0
    position = np.stack([take(centre_x, 0.0), take(centre_y, 0.0)], axis=-1)
    velocity = np.stack([take(vx, np.nan), take(vy, np.nan)], axis=-1)
    sizes = np.stack([take(length, 0.0), take(width, 0.0)], axis=-1)
    position[~valid_out] = 0.0
    sizes[~valid_out] = 0.0
    return Detections(position=position, velocity=velocity, size=sizes,
                      heading=np.zeros((n, m)), object_id=np.full((n, m), -1, dtype=np.int64),
                      valid=valid_out)
