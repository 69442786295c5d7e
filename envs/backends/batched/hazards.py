"""Hazard onset bookkeeping for `B` worlds: `envs.hazards.HazardTracker`, batched in torch.

Lead-brake and cut-in hazards start at their planned substep; a stopped vehicle's onset is
the first substep boundary at which it reaches the sensors (`envs.hazards.sensor_reach`
within the trigger range), a crossing vehicle's ("cross_traffic") the first such boundary
at or after its `commit_substep`. At each world's onset boundary the tracker records how
critical the hazard is (`envs.criticality`), from a `WorldSnapshot` of that boundary or, on
the numba kernel's whole-tick path, from the poses the kernel recorded there; a world given
its highway-env road (`RoadLanes`, the road networks) is measured along its lanes as the
highway backend measures it (`envs.hazards.lane_criticality`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from reflexdrive.envs.backends.batched.state import (
    CROSS_TRAFFIC,
    HAZARD_CODES,
    NO_HAZARD,
    STOPPED_VEHICLE,
    BatchedState,
)
from reflexdrive.envs.backends.batched.torch.road import LANE_HEADING
from reflexdrive.envs.criticality import (
    OnsetCriticality,
    pose_criticality,
    snapshot_criticality,
    unknown_criticality,
)
from reflexdrive.envs.hazards import TRIGGER_SLACK_M, lane_criticality, sensor_reach
from reflexdrive.envs.lane_paths import RoadLanes
from reflexdrive.envs.scenarios import HAZARD_KINDS, HazardPlan
from reflexdrive.envs.types import CRITICALITY_KEYS, HazardState, WorldSnapshot

__all__ = ["HazardOnsets", "update_onsets", "BatchedHazardTracker"]


@dataclass(frozen=True)
class HazardOnsets:
    """What is known about each world's hazard.

    Attributes:
        kind: `(B,)` int64 hazard code (`envs.backends.batched.state.HAZARD_CODES`).
        vehicle: `(B,)` int64 slot (= vehicle id) of the hazard vehicle, -1 if none.
        trigger_range: `(B,)` stopped-vehicle trigger range [m].
        onset_substep: `(B,)` int64 onset substep, -1 while unknown (or no hazard).
        active: `(B,)` bool, a hazard exists and `substep >= onset_substep`.
        commit_substep: `(B,)` int64 first boundary a cross-traffic onset may fall on (0
            for the others); None: 0 everywhere.
    """

    kind: torch.Tensor
    vehicle: torch.Tensor
    trigger_range: torch.Tensor
    onset_substep: torch.Tensor
    active: torch.Tensor
    commit_substep: torch.Tensor | None = None


def update_onsets(onsets: HazardOnsets, state: BatchedState) -> HazardOnsets:
    """`HazardTracker.update` for every world: find stopped-vehicle and cross-traffic onsets
    (the latter from `commit_substep` on), flag active ones.

    Args:
        onsets: the bookkeeping so far.
        state: the worlds after `state.substep` `(B,)` substeps (`position`, `heading`,
            `length`, `width`, `valid`; slot 0 is the ego): a `BatchedState` or a
            `NetworkState`.

    Returns:
        the bookkeeping after this boundary.
    """
    slots = state.position.shape[1]
    slot = onsets.vehicle.clamp(0, slots - 1)

    def hazard(field):
        return torch.gather(field, 1, slot[:, None])[:, 0]

    hazard_position = torch.gather(state.position, 1, slot[:, None, None].expand(-1, 1, 2))[:, 0]
    offset = hazard_position - state.position[:, 0]
    reach = sensor_reach(offset[:, 0], offset[:, 1], state.heading[:, 0], hazard(state.heading),
                         hazard(state.length), hazard(state.width))
    present = (onsets.vehicle >= 0) & (onsets.vehicle < slots) & hazard(state.valid)
    substep = state.substep
    triggered = onsets.kind == STOPPED_VEHICLE
    if onsets.commit_substep is not None:
        triggered = triggered | ((onsets.kind == CROSS_TRAFFIC)
                                 & (substep >= onsets.commit_substep))
    found = (triggered & (onsets.onset_substep < 0) & present
             & (reach <= onsets.trigger_range + TRIGGER_SLACK_M))
    onset = torch.where(found, substep, onsets.onset_substep)
    active = (onsets.kind != NO_HAZARD) & (onset >= 0) & (substep >= onset)
    return dataclasses.replace(onsets, onset_substep=onset, active=active)


class BatchedHazardTracker:
    """Per-world hazard onsets of a batched backend (the batched `HazardTracker`).

    Args:
        num_envs: worlds `B`.
        simulation_frequency: substeps per second [Hz] (for onset times in seconds).
        device: torch device of the tensors.
    """

    def __init__(self, num_envs: int, simulation_frequency: int, device: str = "cpu"):
        self.num_envs = int(num_envs)
        self.simulation_frequency = int(simulation_frequency)
        self.device = torch.device(device)
        zeros = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self.onsets = HazardOnsets(zeros, zeros - 1, torch.zeros(self.num_envs, dtype=torch.float64,
                                                                 device=self.device),
                                   zeros - 1, torch.zeros_like(zeros, dtype=torch.bool),
                                   zeros.clone())
        self.criticality: OnsetCriticality = unknown_criticality(self.num_envs)
        """Each world's hazard at its onset (False and NaN until the onset is reached)."""
        self._measured = np.zeros(self.num_envs, dtype=bool)
        self._decel = np.zeros(self.num_envs)
        self._target_speed = np.zeros(self.num_envs)
        self._duration_s = np.full(self.num_envs, np.inf)
        self._lanes: list[RoadLanes | None] = [None] * self.num_envs

    def reset(self, plans: Sequence[HazardPlan | None],
              duration_s: Sequence[float | None] | None = None,
              lanes: Sequence[RoadLanes | None] | None = None) -> None:
        """Start tracking the plans of the worlds whose entry is not None (others untouched);
        `duration_s` are their episodes' lengths [s] (the criticality rule's episode end;
        None: no end); `lanes` their highway-env roads and routes where criticality is
        measured along the lanes (`envs.hazards.lane_criticality`, as the highway backend's
        `HazardTracker`; None: along the ego's lane heading, the straight road's rule)."""
        if len(plans) != self.num_envs:
            raise ValueError(f"got {len(plans)} hazard plans for {self.num_envs} envs")
        rows = [i for i, plan in enumerate(plans) if plan is not None]
        if not rows:
            return
        chosen = [plans[i] for i in rows]
        index = torch.tensor(rows, dtype=torch.int64, device=self.device)

        def put(old, values, dtype):
            new = old.clone()
            new[index] = torch.tensor(values, dtype=dtype, device=self.device)
            return new

        o = self.onsets
        self.onsets = HazardOnsets(
            kind=put(o.kind, [HAZARD_CODES[p.kind] for p in chosen], torch.int64),
            vehicle=put(o.vehicle, [p.vehicle for p in chosen], torch.int64),
            trigger_range=put(o.trigger_range, [p.trigger_range_m for p in chosen],
                              torch.float64),
            onset_substep=put(o.onset_substep,
                              [-1 if p.onset_substep is None else p.onset_substep
                               for p in chosen], torch.int64),
            active=put(o.active, [False] * len(chosen), torch.bool),
            commit_substep=put(o.commit_substep, [p.commit_substep or 0 for p in chosen],
                               torch.int64),
        )
        unknown = unknown_criticality(len(rows))
        for name in CRITICALITY_KEYS + ("contact_time_s",):
            getattr(self.criticality, name)[rows] = getattr(unknown, name)
        self._measured[rows] = False
        self._decel[rows] = [p.decel_mps2 for p in chosen]
        self._target_speed[rows] = [p.target_speed_mps for p in chosen]
        self._duration_s[rows] = [np.inf if duration_s is None or duration_s[i] is None
                                  else float(duration_s[i]) for i in rows]
        for i in rows:
            self._lanes[i] = None if lanes is None else lanes[i]

    def update(self, state: BatchedState,
               snapshot: Callable[[], WorldSnapshot] | WorldSnapshot | None = None
               ) -> HazardOnsets:
        """Record the boundary after `state.substep (B,)` substeps.

        `snapshot`: the worlds then (or a function that makes it, called only when some
        world reaches its onset here), from which the criticality of those worlds is taken;
        None leaves it unknown (NaN).
        """
        self.onsets = update_onsets(self.onsets, state.to(self.device))
        if snapshot is not None:
            rows = self._onsets_now(state.substep)
            if rows.size:
                self._measure(rows, snapshot() if callable(snapshot) else snapshot)
        return self.onsets

    def set_onsets(self, onset_substep: torch.Tensor, substep: torch.Tensor,
                   onset_poses: np.ndarray | None = None) -> HazardOnsets:
        """Take the onsets `(B,)` int64 found elsewhere (`kernel.tick_cpu` tracks them while
        it runs a tick) at the boundary after `substep (B,)` substeps.

        `onset_poses`: `(B, 10)` the ego's and the hazard vehicle's `POSE_FIELDS` at each
        world's onset boundary where it fell within the tick (`TickOutcome.onset_poses`,
        NaN elsewhere), from which their criticality is taken.
        """
        o = self.onsets
        onset = onset_substep.to(self.device, torch.int64)
        active = (o.kind != NO_HAZARD) & (onset >= 0) & (substep.to(self.device) >= onset)
        self.onsets = dataclasses.replace(o, onset_substep=onset, active=active)
        if onset_poses is not None:
            rows = np.flatnonzero(~self._measured & (o.kind.cpu().numpy() != NO_HAZARD)
                                  & ~np.isnan(onset_poses[:, 0]))
            if rows.size:
                poses = onset_poses[rows]
                self._store(rows, pose_criticality(
                    poses[:, :5], poses[:, 5:], np.full(rows.size, LANE_HEADING),
                    o.kind.cpu().numpy()[rows], self._decel[rows], self._target_speed[rows],
                    self._time_left(rows, onset.cpu().numpy()[rows])))
        return self.onsets

    def _onsets_now(self, substep: torch.Tensor) -> np.ndarray:
        """The worlds not yet measured whose onset is this boundary."""
        o = self.onsets
        now = ((o.kind != NO_HAZARD) & (o.onset_substep == substep.to(self.device))).cpu().numpy()
        return np.flatnonzero(now & ~self._measured)

    def _measure(self, rows: np.ndarray, snapshot: WorldSnapshot) -> None:
        along = np.array([self._lanes[i] is not None for i in rows], dtype=bool)
        for i in rows[along]:
            self._measure_along_lanes(int(i), snapshot)
        rows = rows[~along]
        if not rows.size:
            return
        o = self.onsets
        self._store(rows, snapshot_criticality(
            snapshot, o.kind.cpu().numpy()[rows], o.vehicle.cpu().numpy()[rows],
            self._decel[rows], self._target_speed[rows],
            self._time_left(rows, o.onset_substep.cpu().numpy()[rows]), rows=rows))

    def _measure_along_lanes(self, i: int, snapshot: WorldSnapshot) -> None:
        """World `i`'s criticality along its lanes (`lane_criticality` of its row of
        `snapshot`, what `envs.hazards.HazardTracker` measures on the highway backend)."""
        o = self.onsets
        row = WorldSnapshot(**{f.name: getattr(snapshot, f.name)[i:i + 1]
                               for f in dataclasses.fields(WorldSnapshot)})
        j = int(o.vehicle[i])
        if not (0 <= j < row.shape[1] and row.valid[0, j]):
            return
        plan = HazardPlan(HAZARD_KINDS[int(o.kind[i])], vehicle=j,
                          decel_mps2=float(self._decel[i]),
                          target_speed_mps=float(self._target_speed[i]))
        time_left = self._time_left(np.array([i]), np.array([int(o.onset_substep[i])]))[0]
        self._store(np.array([i]), lane_criticality(row, plan, self._lanes[i], time_left))

    def _time_left(self, rows: np.ndarray, onset: np.ndarray) -> np.ndarray:
        return self._duration_s[rows] - onset / self.simulation_frequency

    def _store(self, rows: np.ndarray, measured: OnsetCriticality) -> None:
        for name in CRITICALITY_KEYS + ("contact_time_s",):
            getattr(self.criticality, name)[rows] = getattr(measured, name)
        self._measured[rows] = True

    def info(self) -> dict[str, np.ndarray]:
        """`CRITICALITY_KEYS` as `(B,)` arrays (copies), for `info["hazard"]`."""
        return {name: getattr(self.criticality, name).copy() for name in CRITICALITY_KEYS}

    def states(self) -> list[HazardState]:
        """The onsets as one `envs.types.HazardState` per world (what `info["hazard"]` holds)."""
        o = self.onsets
        out = []
        for kind, vehicle, onset, active in zip(o.kind.tolist(), o.vehicle.tolist(),
                                                o.onset_substep.tolist(), o.active.tolist()):
            if kind == NO_HAZARD:
                out.append(HazardState())
                continue
            out.append(HazardState(
                kind=HAZARD_KINDS[kind],
                onset_s=None if onset < 0 else onset / self.simulation_frequency,
                active=bool(active), vehicle_id=int(vehicle),
                criticality=self.criticality.row(len(out)) if self._measured[len(out)]
                else None))
        return out
