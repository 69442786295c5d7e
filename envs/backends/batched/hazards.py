"""Hazard onset bookkeeping for `B` worlds: `envs.hazards.HazardTracker`, batched in torch.

Lead-brake and cut-in hazards start at their planned substep; a stopped vehicle's onset is
the first substep boundary at which its centre is within the trigger range of the ego's
centre (`|p_hazard - p_ego| <= trigger_range`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from reflexdrive.envs.backends.batched.state import HAZARD_CODES, NO_HAZARD, STOPPED_VEHICLE
from reflexdrive.envs.scenarios import HAZARD_KINDS, HazardPlan
from reflexdrive.envs.types import HazardState

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
    """

    kind: torch.Tensor
    vehicle: torch.Tensor
    trigger_range: torch.Tensor
    onset_substep: torch.Tensor
    active: torch.Tensor


def update_onsets(onsets: HazardOnsets, position: torch.Tensor, valid: torch.Tensor,
                  substep: torch.Tensor) -> HazardOnsets:
    """`HazardTracker.update` for every world: find stopped-vehicle onsets, flag active ones.

    Args:
        onsets: the bookkeeping so far.
        position: `(B, N, 2)` vehicle centres after `substep` substeps [m]; slot 0 is the ego.
        valid: `(B, N)` bool.
        substep: `(B,)` int64 substeps integrated so far.

    Returns:
        the bookkeeping after this boundary.
    """
    slots = position.shape[1]
    slot = onsets.vehicle.clamp(0, slots - 1)
    hazard_position = torch.gather(position, 1, slot[:, None, None].expand(-1, 1, 2))[:, 0]
    offset = hazard_position - position[:, 0]
    distance = torch.sqrt(offset[:, 0] * offset[:, 0] + offset[:, 1] * offset[:, 1])
    present = (onsets.vehicle >= 0) & (onsets.vehicle < slots) & torch.gather(
        valid, 1, slot[:, None])[:, 0]
    found = ((onsets.kind == STOPPED_VEHICLE) & (onsets.onset_substep < 0) & present
             & (distance <= onsets.trigger_range))
    onset = torch.where(found, substep, onsets.onset_substep)
    active = (onsets.kind != NO_HAZARD) & (onset >= 0) & (substep >= onset)
    return HazardOnsets(onsets.kind, onsets.vehicle, onsets.trigger_range, onset, active)


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
                                   zeros - 1, torch.zeros_like(zeros, dtype=torch.bool))

    def reset(self, plans: Sequence[HazardPlan | None]) -> None:
        """Start tracking the plans of the worlds whose entry is not None (others untouched)."""
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
        )

    def update(self, position: torch.Tensor, valid: torch.Tensor,
               substep: torch.Tensor) -> HazardOnsets:
        """Record the boundary after `substep (B,)` substeps; positions `(B, N, 2)` [m]."""
        self.onsets = update_onsets(self.onsets, position.to(self.device),
                                    valid.to(self.device), substep.to(self.device))
        return self.onsets

    def set_onsets(self, onset_substep: torch.Tensor, substep: torch.Tensor) -> HazardOnsets:
        """Take the onsets `(B,)` int64 found elsewhere (`kernel.tick_cpu` tracks them while
        it runs a tick) at the boundary after `substep (B,)` substeps."""
        o = self.onsets
        onset = onset_substep.to(self.device, torch.int64)
        active = (o.kind != NO_HAZARD) & (onset >= 0) & (substep.to(self.device) >= onset)
        self.onsets = HazardOnsets(o.kind, o.vehicle, o.trigger_range, onset, active)
        return self.onsets

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
                active=bool(active), vehicle_id=int(vehicle)))
        return out
