"""Hazard onset bookkeeping shared by all backends: when did `t_h` happen, is it active.

Lead-brake and cut-in hazards start at a planned substep; a stopped vehicle's onset is the
first substep boundary at which its centre is within the trigger range of the ego's.
"""

from __future__ import annotations

import numpy as np
from reflexdrive.envs.scenarios import HazardPlan
from reflexdrive.envs.types import EGO, HazardState, WorldSnapshot


class HazardTracker:
    """Turns a `HazardPlan` and the snapshots of one world into its `HazardState`."""

    def __init__(self, plan: HazardPlan, simulation_frequency: int):
        self.plan = plan
        self.simulation_frequency = simulation_frequency
        self.onset_substep: int | None = plan.onset_substep
        """The substep at which the hazard starts (None until a stopped vehicle is in range)."""

    def update(self, snapshot: WorldSnapshot, substep_index: int) -> HazardState:
        """The hazard state after `substep_index` substeps, given the world then (`B = 1`)."""
        plan = self.plan
        if plan.kind == "none":
            return HazardState()
        if plan.kind == "stopped_vehicle" and self.onset_substep is None:
            slot = np.flatnonzero(snapshot.vehicle_id[0] == plan.vehicle)
            if slot.size:
                distance = np.linalg.norm(snapshot.position[0, slot[0]] - snapshot.position[0, EGO])
                if distance <= plan.trigger_range_m:
                    self.onset_substep = substep_index
        onset = self.onset_substep
        return HazardState(
            kind=plan.kind,
            onset_s=None if onset is None else onset / self.simulation_frequency,
            active=onset is not None and substep_index >= onset,
            vehicle_id=plan.vehicle,
        )
