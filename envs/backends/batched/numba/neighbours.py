"""Neighbour queries in the kernel: the world's vehicles sorted by `x` (`sort_by_x`), their
lane memberships as bits (`lane_members`), and the nearest vehicle ahead / behind on a lane
(`front`, `rear`), as highway-env's `Road.neighbour_vehicles` finds them."""

from __future__ import annotations

from reflexdrive.envs.backends.batched.numba.jit import jit
from reflexdrive.envs.backends.batched.numba.layout import MEMBER, ORDER, SEEN, START, VALID, X, Y


@jit()
def sort_by_x(F, I):
    """Key order of the world's vehicles, for `front` / `rear`.

    Sorts `I[ORDER]` (a previous order, or any values): the valid slots by `x` ascending,
    ties by slot descending (the "key order" of `envs.backends.batched.torch.traffic.
    key_order`), then the padding slots. Starting from the previous substep's order the
    insertion sort mostly only checks that it is still sorted; a row that is not a
    permutation of the slots is replaced by the slots in order first. Sets `I[START, j]`,
    the key position of the first vehicle with `x == x_j` (valid `j`).

    Returns:
        the number of valid vehicles.
    """
    x, valid, order, start, seen = F[X], I[VALID], I[ORDER], I[START], I[SEEN]
    slots = x.shape[0]
    seen[:] = 0
    for q in range(slots):
        s = order[q]
        if s < 0 or s >= slots or seen[s]:
            for r in range(slots):
                order[r] = r
            break
        seen[s] = 1
    count = 0
    for q in range(slots):                        # valid slots first (stable)
        s = order[q]
        if valid[s]:
            order[count] = s
            count += 1
        else:
            seen[q - count] = s
    for q in range(slots - count):
        order[count + q] = seen[q]
    for q in range(1, count):                     # insertion sort by (x, -slot)
        s = order[q]
        xs = x[s]
        while q > 0:
            t = order[q - 1]
            if x[t] > xs or (x[t] == xs and t < s):
                order[q] = t
                q -= 1
            else:
                break
        order[q] = s
    for q in range(count):
        s = order[q]
        if q > 0 and x[order[q - 1]] == x[s]:
            start[s] = start[order[q - 1]]
        else:
            start[s] = q
    return count


@jit()
def lane_members(p, F, I, road_length, lane_slots):
    """`I[MEMBER, j]`: bit `k` set if `j` is on lane `k` for `Road.neighbour_vehicles`:
    valid, `|y - k w| <= w/2 + 1` and `-l_v <= x < length + l_v` [m] (lanes `0 .. L-1`,
    `L <= MAX_LANES`)."""
    x, y, valid, member = F[X], F[Y], I[VALID], I[MEMBER]
    low, high = -p.lane_vehicle_length, road_length + p.lane_vehicle_length
    for j in range(x.shape[0]):
        bits = 0
        if valid[j] and low <= x[j] < high:
            for k in range(lane_slots):
                if abs(y[j] - k * p.lane_width) <= p.member_half_width:
                    bits |= 1 << k
        member[j] = bits


@jit()
def front_of(I, j, lane, count):
    """`Road.neighbour_vehicles(j, lane)[0]`: the nearest vehicle `v != j` on `lane` with
    `x_j <= x_v` (the highest slot on a tie), or -1."""
    order, member = I[ORDER], I[MEMBER]
    bit = 1 << lane
    for q in range(I[START, j], count):
        v = order[q]
        if v != j and member[v] & bit:
            return v
    return -1


@jit()
def rear_of(I, j, lane):
    """`Road.neighbour_vehicles(j, lane)[1]`: the nearest vehicle on `lane` with
    `x_v < x_j` (the lowest slot on a tie), or -1."""
    order, member = I[ORDER], I[MEMBER]
    bit = 1 << lane
    for q in range(I[START, j] - 1, -1, -1):
        v = order[q]
        if member[v] & bit:
            return v
    return -1

