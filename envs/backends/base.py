"""The `Backend` protocol: what the clock, sensors and metrics need from a world.

`Backend` is the one-world form (`HighwayBackend`). The batched backend
(`envs.backends.batched.BatchedBackend`) offers the same operations over `B` worlds: `reset` takes
one `ScenarioInit` or None per world (per-env reset), `substep(first_s, first, second)`
takes the ego's two command pieces per world as tensors, `substep_index` is `(B,)`, and
`snapshot()` / `road_geometry()` return the same batch-first types; `substep` also takes
an `active` mask (worlds left out keep their state, e.g. episodes that ended mid-tick).

A backend instantiates a `ScenarioInit`, integrates one substep at a time with the ego's
command pieces (it never sees latency: the clock already turned latency into pieces), and
reports its state as a batch-first `WorldSnapshot`. Hazard scripting (a lead that brakes at
its onset substep, a vehicle that cuts in) is world dynamics and lives in the backend; the
onset bookkeeping shared by all backends lives in `envs.hazards`.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from reflexdrive.envs.scenarios import ScenarioInit
from reflexdrive.envs.types import Piece, RoadGeometry, WorldSnapshot


class Backend(Protocol):
    """One world (or a batch of them) that advances in substeps of `1 / simulation_frequency`."""

    name: str
    simulation_frequency: int

    def reset(self, init: ScenarioInit) -> None:
        """Build the road and vehicles of `init`; substep counter back to 0."""

    def substep(self, pieces: Sequence[Piece]) -> None:
        """Advance one substep `dt`: traffic decides once, then everyone moves for `dt`; the
        ego moves through `pieces` in order (their durations sum to `dt`)."""

    @property
    def substep_index(self) -> int:
        """Substeps integrated since reset."""

    def snapshot(self) -> WorldSnapshot:
        """The current state, batch-first (`B = 1` for a single-world backend)."""

    def road_geometry(self) -> RoadGeometry:
        """The static road as segments (computed once per reset)."""
