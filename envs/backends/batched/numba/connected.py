"""`Road.neighbour_vehicles` with `neighbour_vehicles_connected_lanes` (the "curve" road) in
the kernel: the front and rear vehicles of a lane searched on the lanes connected to it
too (`LaneTables.connected`), as highway-env 1.12 searches them.

`network_traffic.neighbours` hands over to `neighbours_connected` where the searched lane
has connected lanes; on the fixed networks (none) nothing changes.
"""

from __future__ import annotations

import math

from reflexdrive.envs.backends.batched.numba.jit import jit
from reflexdrive.envs.backends.batched.numba.network import local_coordinates


@jit()
def _on_lane(p, t, lane, s, r):
    """`lane.on_lane(position, s, r, margin=1)` (`p.neighbour_margin`)."""
    return (abs(r) <= t.width[lane] / 2 + p.neighbour_margin
            and s >= -p.lane_vehicle_length and s < t.length[lane] + p.lane_vehicle_length)


@jit()
def neighbours_connected(p, t, s, b, j, search_lane):
    """`Road.neighbour_vehicles(j, search_lane)` with connected lanes in world `b`: each
    valid vehicle's coordinate on the first of `search_lane` and its `connected` lanes it
    is on (1 m margin), plus that lane's `connected_offset`, in `search_lane`'s frame;
    the vehicle ahead (smallest `s_v >= s_j`, the last slot on a tie) and behind (largest
    `s_v < s_j`, the first on a tie); -1 where none."""
    position, valid = s.position, s.valid
    s_own, _ = local_coordinates(t, search_lane, position[b, j, 0], position[b, j, 1])
    front, s_front, rear, s_rear = -1, math.inf, -1, -math.inf
    for k in range(valid.shape[1]):
        if k == j or not valid[b, k]:
            continue
        x, y = position[b, k, 0], position[b, k, 1]
        s_k, r_k = local_coordinates(t, search_lane, x, y)
        found = _on_lane(p, t, search_lane, s_k, r_k)
        for c in range(t.connected.shape[1]):
            if found:
                break
            lane = t.connected[search_lane, c]
            if lane < 0:
                break
            s_k, r_k = local_coordinates(t, lane, x, y)
            found = _on_lane(p, t, lane, s_k, r_k)
            s_k = s_k + t.connected_offset[search_lane, c]
        if not found:
            continue
        if s_k >= s_own and s_k <= s_front:
            front, s_front = k, s_k
        if s_k < s_own and s_k > s_rear:
            rear, s_rear = k, s_k
    return front, rear
