"""One substep of `B` worlds that each have their own road (a "curve" road drawn per seed):
`network_traffic`'s phases with world `b` on its own lane tables.

The tables are `lanes.stack_tables` of the worlds' layouts (every array world first, the
same lanes and roads in each); `network_worlds_own_tables` takes world `b`'s rows as a
`LaneTables` and runs `network_act`, `network_move` and `network_collisions` on them, so
each world's vehicles see only its lanes (`closest_lane_near` searches every lane of the
table it is given). The model and the operations are `network_traffic`'s.
"""

from __future__ import annotations

import numpy as np
import torch
from reflexdrive.envs.backends.batched.lanes import LaneTables
from reflexdrive.envs.backends.batched.network_state import NetworkState
from reflexdrive.envs.backends.batched.numba.jit import jit, prange
from reflexdrive.envs.backends.batched.numba.layout import kernel_params
from reflexdrive.envs.backends.batched.numba.network import lane_bounds
from reflexdrive.envs.backends.batched.numba.network_traffic import (
    WRITTEN,
    _host,
    _keep_world,
    network_act,
    network_arrays,
    network_collisions,
    network_move,
)
from reflexdrive.envs.backends.batched.state import Params

from reflexdrive.common.threads import kernel_threads


@jit()
def world_tables(s, b):
    """World `b`'s `LaneTables` of the stacked tables `s` (views)."""
    return LaneTables(s.kind[b], s.origin[b], s.direction[b], s.lateral[b], s.heading[b],
                      s.amplitude[b], s.pulsation[b], s.phase[b], s.radius[b],
                      s.start_phase[b], s.orientation[b], s.width[b], s.length[b],
                      s.speed_limit[b], s.priority[b], s.forbidden[b], s.road[b],
                      s.lane_id[b], s.successors[b], s.road_from[b], s.road_to[b],
                      s.road_first_lane[b], s.road_lane_count[b], s.next_roads[b],
                      s.connected[b], s.connected_offset[b])


@jit(parallel=True)
def network_worlds_own_tables(p, stacked, bounds, s_in, s_out, first_s, first, second,
                              active, collisions):
    """`network_traffic.network_worlds` with world `b` on `world_tables(stacked, b)` and
    `bounds[b]` (`(B, L, 3)`, `lane_bounds` of each world)."""
    for b in prange(s_in.valid.shape[0]):
        if not active[b]:
            _keep_world(s_in, s_out, b)
            continue
        t = world_tables(stacked, b)
        corners = np.empty((2, 4, 2))
        network_act(p, t, s_in, s_out, b)
        network_move(p, t, bounds[b], s_in, s_out, b, first_s[b], first[b], second[b])
        if collisions:
            network_collisions(p, s_out, b, corners)


def stacked_bounds(stacked: LaneTables) -> np.ndarray:
    """`(B, L, 3)` `lane_bounds` of each world of `stacked`."""
    return np.stack([lane_bounds(LaneTables(*(a[b] for a in stacked)))
                     for b in range(stacked.kind.shape[0])])


def network_substep_own_tables(params: Params, stacked: LaneTables, bounds: np.ndarray,
                               state: NetworkState, first_s: torch.Tensor,
                               first: torch.Tensor, second: torch.Tensor,
                               active: torch.Tensor | None = None, collisions: bool = True,
                               threads: int | None = None) -> NetworkState:
    """`network_traffic.network_substep_cpu` for worlds with their own roads: `stacked`
    (`lanes.stack_tables`, one world per state row) and `bounds` (`stacked_bounds`); lane
    rows in `state` are each world's own."""
    s_in = network_arrays(state)
    s_out = s_in._replace(**{name: np.empty_like(getattr(s_in, name)) for name in WRITTEN})
    batch = state.valid.shape[0]
    live = (np.ones(batch, dtype=bool) if active is None
            else _host(active, torch.bool))
    with kernel_threads(threads):
        network_worlds_own_tables(kernel_params(params), stacked, bounds, s_in, s_out,
                                  _host(first_s, torch.float64).reshape(batch),
                                  _host(first, torch.float64), _host(second, torch.float64),
                                  live, bool(collisions))
    return state.replace(**{name: torch.from_numpy(getattr(s_out, name)) for name in WRITTEN},
                         substep=state.substep + torch.from_numpy(live).long())
