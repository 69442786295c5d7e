"""What the sensors and metrics read of `NetworkState` worlds: `network_snapshot` (a
`WorldSnapshot`, as `HighwayBackend.snapshot` reports the same state) and `ego_lane_terms`
(the ego's lane coordinates and the vector features derived from them).

The ego's lane is its closest lane (`NetworkState.lane`, highway-env's `ego.lane` after
its step); on it, with `(s, r)` the ego's lane coordinates:

- lane offset `r` [m]; heading error `wrap(psi - lane.heading_at(s))` [rad];
- lane index: the lane's id on its road (`lane_index[2]`); lane count: the road's lanes;
- on road: `lane.on_lane(position)` (`|r| <= w / 2`, `-l_v <= s < length + l_v`).

The snapshot adds the route's exit: the lane's road is the world's `NetworkState.exit_road`
(one compare per world, in the snapshot only: `ego_on_road` runs every substep without it).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from reflexdrive.envs.backends.batched.lanes import LaneTables
from reflexdrive.envs.backends.batched.network_state import NetworkState
from reflexdrive.envs.backends.batched.torch.network import (
    heading_at,
    local_coordinates,
    on_lane,
    wrap_to_pi,
)
from reflexdrive.envs.types import WorldSnapshot


class EgoLaneTerms(NamedTuple):
    """Each world's ego on its lane, all `(B,)` tensors (see the module docstring)."""

    offset: torch.Tensor
    heading_error: torch.Tensor
    lane_index: torch.Tensor
    lane_count: torch.Tensor
    on_road: torch.Tensor


def ego_lane_terms(tables: LaneTables, state: NetworkState, vehicle_length: float
                   ) -> EgoLaneTerms:
    """The ego's `EgoLaneTerms` on the torch `tables` (`vehicle_length`:
    `AbstractLane.VEHICLE_LENGTH` [m], `Params.lane_vehicle_length`)."""
    lane = state.lane[:, 0]
    s, r = local_coordinates(tables, lane, state.position[:, 0])
    return EgoLaneTerms(
        offset=r,
        heading_error=wrap_to_pi(state.heading[:, 0] - heading_at(tables, lane, s)),
        lane_index=tables.lane_id[lane],
        lane_count=tables.road_lane_count[tables.road[lane]],
        on_road=on_lane(tables, lane, s, r, 0.0, vehicle_length))


def network_snapshot(tables: LaneTables, state: NetworkState, dt: float,
                     vehicle_length: float) -> WorldSnapshot:
    """`state` as `HighwayBackend.snapshot` reports it (fresh numpy arrays, `(B, N)` fields
    0 on padding; `dt` the substep [s])."""
    terms = ego_lane_terms(tables, state, vehicle_length)

    def host(tensor):
        return tensor.detach().cpu().numpy()

    valid = host(state.valid).astype(bool)

    def masked(tensor, mask=valid):
        return np.where(mask, host(tensor), 0.0).astype(np.float64, copy=False)

    return WorldSnapshot(
        time_s=host(state.substep).astype(np.float64) * dt,
        position=masked(state.position, valid[..., None]),
        heading=masked(state.heading),
        speed=masked(state.speed),
        acceleration=masked(state.acceleration),
        length=masked(state.length),
        width=masked(state.width),
        vehicle_id=np.where(valid, np.arange(valid.shape[1]), -1).astype(np.int64),
        valid=valid,
        ego_steering=host(state.steering[:, 0]).astype(np.float64),
        ego_lane_offset=host(terms.offset).astype(np.float64),
        ego_heading_error=host(terms.heading_error).astype(np.float64),
        ego_lane_index=host(terms.lane_index).astype(np.int64),
        ego_lane_count=host(terms.lane_count).astype(np.int64),
        ego_on_road=host(terms.on_road).astype(bool),
        crashed=host(state.crashed[:, 0]).astype(bool),
        ego_on_route_exit=host(tables.road[state.lane[:, 0]] == state.exit_road),
    )
