"""Lane geometry of highway-env road networks on `LaneTables` (torch, any device).

Each function takes the tables as tensors (`lanes.torch_tables`) and a tensor of lane rows,
and evaluates every lane kind's formula, then keeps the one of each lane's kind; the
operations are those of highway-env's `StraightLane`, `SineLane` and `CircularLane`, in
the same order. Shapes broadcast: `lane (...)` int64 rows, `s, r (...)` [m],
`position (..., 2)` [m], headings [rad].
"""

from __future__ import annotations

import math

import torch
from reflexdrive.envs.backends.batched.lanes import CIRCULAR, SINE, LaneTables


def wrap_to_pi(x: torch.Tensor) -> torch.Tensor:
    """highway-env's `utils.wrap_to_pi`, `((x + pi) % 2 pi) - pi` [rad], with numpy's float
    `%` (`fmod`, plus `2 pi` where negative), not `torch.remainder` (`a - floor(a / b) b`):
    the two differ in the last bit, which flips ties between a lane's end and its
    successor's start in `closest_lane`.
    """
    shifted = x + math.pi
    mod = torch.fmod(shifted, 2 * math.pi)
    return torch.where(mod < 0, mod + 2 * math.pi, mod) - math.pi


def _rows(tables: LaneTables, lane: torch.Tensor):
    """The columns the formulas read, gathered at `lane`."""
    return (tables.kind[lane], tables.origin[lane], tables.direction[lane],
            tables.lateral[lane], tables.amplitude[lane], tables.pulsation[lane],
            tables.phase[lane], tables.radius[lane], tables.start_phase[lane],
            tables.orientation[lane])


def local_coordinates(tables: LaneTables, lane: torch.Tensor, position: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """`lane.local_coordinates(position)`: longitudinal `s` and lateral `r` [m], `(...)` each.

    straight: `d = p - start`, `s = d . direction`, `r = d . lateral`;
    sine: the straight `s` and `r - A sin(omega s + phase)`;
    circular: `d = p - centre`, `phi = phi0 + wrap(atan2(d) - phi0)`,
    `s = o (phi - phi0) R`, `r = o (R - |d|)`.
    """
    kind, origin, direction, lateral, amplitude, pulsation, phase, radius, start_phase, \
        orientation = _rows(tables, lane)
    delta = position - origin
    dx, dy = delta[..., 0], delta[..., 1]
    s_line = dx * direction[..., 0] + dy * direction[..., 1]
    r_line = dx * lateral[..., 0] + dy * lateral[..., 1]
    r_sine = r_line - amplitude * torch.sin(pulsation * s_line + phase)
    phi = torch.atan2(dy, dx)
    phi = start_phase + wrap_to_pi(phi - start_phase)
    s_circle = orientation * (phi - start_phase) * radius
    r_circle = orientation * (radius - torch.sqrt(dx * dx + dy * dy))
    circle = kind == CIRCULAR
    s = torch.where(circle, s_circle, s_line)
    r = torch.where(circle, r_circle, torch.where(kind == SINE, r_sine, r_line))
    return s, r


def lane_position(tables: LaneTables, lane: torch.Tensor, s: torch.Tensor, r: torch.Tensor
                  ) -> torch.Tensor:
    """`lane.position(s, r)`: the world position `(..., 2)` [m] of lane coordinates.

    straight: `start + s direction + r lateral` (sine: `r + A sin(omega s + phase)`);
    circular: `centre + (R - r o) [cos phi, sin phi]` with `phi = o s / R + phi0`.
    """
    kind, origin, direction, lateral, amplitude, pulsation, phase, radius, start_phase, \
        orientation = _rows(tables, lane)
    r_line = torch.where(kind == SINE, r + amplitude * torch.sin(pulsation * s + phase), r)
    line = origin + s[..., None] * direction + r_line[..., None] * lateral
    phi = orientation * s / radius + start_phase
    scale = radius - r * orientation
    circle = origin + scale[..., None] * torch.stack([torch.cos(phi), torch.sin(phi)], dim=-1)
    return torch.where((kind == CIRCULAR)[..., None], circle, line)


def heading_at(tables: LaneTables, lane: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """`lane.heading_at(s)` [rad]: straight `heading`; sine
    `heading + atan(A omega cos(omega s + phase))`; circular `o s / R + phi0 + o pi/2`."""
    kind = tables.kind[lane]
    heading = tables.heading[lane]
    pulsation = tables.pulsation[lane]
    sine = heading + torch.atan(tables.amplitude[lane] * pulsation
                                * torch.cos(pulsation * s + tables.phase[lane]))
    orientation = tables.orientation[lane]
    phi = orientation * s / tables.radius[lane] + tables.start_phase[lane]
    circle = phi + math.pi / 2 * orientation
    return torch.where(kind == CIRCULAR, circle,
                       torch.where(kind == SINE, sine, heading.expand_as(sine)))


def lane_distance(tables: LaneTables, lane: torch.Tensor, s: torch.Tensor, r: torch.Tensor
                  ) -> torch.Tensor:
    """`AbstractLane.distance` from lane coordinates: `|r| + max(s - l, 0) + max(-s, 0)` [m]."""
    length = tables.length[lane]
    return (r.abs() + torch.clamp(s - length, min=0.0)) + torch.clamp(0.0 - s, min=0.0)


def on_lane(tables: LaneTables, lane: torch.Tensor, s: torch.Tensor, r: torch.Tensor,
            margin: float, vehicle_length: float) -> torch.Tensor:
    """`AbstractLane.on_lane`: `|r| <= w / 2 + margin` and `-l_v <= s < l + l_v` (bool).

    Args:
        margin: lateral tolerance [m]; vehicle_length: `AbstractLane.VEHICLE_LENGTH` [m].
    """
    return ((r.abs() <= tables.width[lane] / 2 + margin) & (s >= -vehicle_length)
            & (s < tables.length[lane] + vehicle_length))


def closest_lane(tables: LaneTables, position: torch.Tensor, heading: torch.Tensor
                 ) -> torch.Tensor:
    """`RoadNetwork.get_closest_lane_index(position, heading)`: `(...)` int64 lane rows.

    Every lane scores `distance + |wrap(heading - heading_at(s))|` (`distance_with_heading`,
    weight 1); the lowest wins, the first row (graph order) on a tie.

    Args:
        position: `(..., 2)` [m]; heading: `(...)` [rad].
    """
    lanes = torch.arange(tables.kind.shape[0], device=position.device)
    s, r = local_coordinates(tables, lanes, position[..., None, :])
    angle = wrap_to_pi(heading[..., None] - heading_at(tables, lanes, s)).abs()
    score = lane_distance(tables, lanes, s, r) + angle
    return torch.argmin(score, dim=-1)


def next_lane(tables: LaneTables, lane: torch.Tensor, position: torch.Tensor,
              route_road: torch.Tensor, route_lane: torch.Tensor, route_next: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """`RoadNetwork.next_lane(lane, route, position)`: the lane to follow after `lane`.

    With `k = route_next` the route's next element:

    1. if `route[k]` is on `lane`'s road it is dropped (`k += 1`, highway-env's `pop`);
    2. if `route[k]` starts at `lane`'s end node, its road is the only candidate (with its
       lane id, where it has one), else every road leaving the end node is one;
    3. on a candidate road the lane is `lane`'s own id (the route's, where given) when the
       road has as many lanes as `lane`'s road, else its lane closest to `p*` (`distance`,
       the first on a tie), `p*` the projection of `position` on `lane`; the candidate
       whose lane is closest to `p*` wins (the first on a tie);
    4. no road leaves the end node: `lane` itself.

    No random draw is involved: highway-env 1.12 takes the closest next road where the
    route is open.

    Args:
        lane: `(M,)` int64 lane rows; position: `(M, 2)` [m].
        route_road: `(M, R)` int64 road rows of each vehicle's route, -1 padded.
        route_lane: `(M, R)` int64 lane id of each route element, -1 where it is None.
        route_next: `(M,)` int64 the route's next element.

    Returns:
        `(M,)` int64 next lane rows and `(M,)` int64 updated route pointers.
    """
    slots = route_road.shape[-1]

    def element(k):
        at = k.clamp(max=slots - 1)[:, None]
        road_k = route_road.gather(1, at)[:, 0]
        present = (k < slots) & (road_k >= 0)
        return torch.where(present, road_k, -1), route_lane.gather(1, at)[:, 0]

    road = tables.road[lane]
    first_road, _ = element(route_next)
    route_next = route_next + (first_road == road).long()
    next_road, next_id = element(route_next)
    follows = (next_road >= 0) & (tables.road_from[next_road.clamp(min=0)]
                                  == tables.road_to[road])
    candidates = tables.next_roads[road]                                   # (M, K)
    routed = torch.full_like(candidates, -1)
    routed[:, 0] = next_road
    candidates = torch.where(follows[:, None], routed, candidates)
    present = candidates >= 0
    candidate = candidates.clamp(min=0)
    first = tables.road_first_lane[candidate]
    count = tables.road_lane_count[candidate]
    s, _ = local_coordinates(tables, lane, position)
    projected = lane_position(tables, lane, s, torch.zeros_like(s))
    width = int(tables.road_lane_count.max())
    offsets = torch.arange(width, device=lane.device)
    rows = (first[..., None] + offsets).clamp(max=tables.kind.shape[0] - 1)  # (M, K, W)
    s_all, r_all = local_coordinates(tables, rows, projected[:, None, None, :])
    distance = lane_distance(tables, rows, s_all, r_all)
    distance = torch.where(offsets < count[..., None], distance, math.inf)
    closest = torch.argmin(distance, dim=-1)                               # (M, K)
    own = torch.where(follows & (next_id >= 0), next_id, tables.lane_id[lane])
    same = count == tables.road_lane_count[road][:, None]
    chosen = torch.where(same, own[:, None].expand_as(closest), closest)
    chosen_distance = distance.gather(-1, chosen.clamp(max=width - 1)[..., None])[..., 0]
    chosen_distance = torch.where(present, chosen_distance, math.inf)
    best = torch.argmin(chosen_distance, dim=-1)[:, None]
    result = (first.gather(1, best) + chosen.gather(1, best))[:, 0]
    return torch.where(present.any(dim=-1), result, lane), route_next
