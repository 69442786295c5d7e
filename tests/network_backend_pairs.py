"""The parity tests' setup for road networks (tests/envs/.../test_*network*.py): the same
scenario inits in the batched `NetworkBackend` and in one highway-env `HighwayBackend` each."""

from __future__ import annotations

from typing import Sequence

from reflexdrive.envs.backends.batched.network_backend import NetworkBackend
from reflexdrive.envs.backends.highway import HighwayBackend
from reflexdrive.envs.scenarios import ScenarioInit


def network_backend_pair(inits: Sequence[ScenarioInit], substeps_per_tick: int
                         ) -> tuple[NetworkBackend, list[HighwayBackend]]:
    """`(batched, singles)`: a `NetworkBackend` of `len(inits)` worlds of the inits' road
    kind and one `HighwayBackend` per init, all reset to `inits`, at `substeps_per_tick`
    substeps per tick."""
    batched = NetworkBackend(len(inits), inits[0].road.kind, substeps_per_tick)
    batched.reset(inits)
    singles = []
    for init in inits:
        single = HighwayBackend(substeps_per_tick)
        single.reset(init)
        singles.append(single)
    return batched, singles
