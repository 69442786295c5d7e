"""Hazard onset bookkeeping shared by all backends: when did `t_h` happen, is it active, and
how critical was the hazard then.

Lead-brake and cut-in hazards start at a planned substep. A stopped vehicle's onset is the
first substep boundary at which it reaches the sensors: its footprint comes within
`trigger_range_m` of the ego's centre in the ego frame, along both axes (`sensor_reach`).
A crossing vehicle's ("cross_traffic") is the first boundary at or after its
`commit_substep` at which it reaches the sensors: committed and visible. The test works in
the ego frame, whatever the road's shape, so it holds on curves and at crossings.
That square of half-side `range_m` holds everything the default sensors see (the lidar's
disc of radius `range_m`; the bev's `range_m` ahead, `bev_behind_m` behind and
`bev_half_width_m` to the sides, both <= `range_m`), so before the onset an episode and
its hazard-removed twin observe the same world. For a vehicle ahead that overlaps the ego's
centre line (the stopped vehicle in the ego's lane) it is exactly when the lidar's forward
beam first hits it. Bev position noise can draw a vehicle from outside the square into the
raster; with `bev_position_noise_m > 0` the twins may differ before the onset.
"""

from __future__ import annotations

import numpy as np
import torch
from reflexdrive.envs.criticality import (
    OnsetCriticality,
    arc_longitudinal,
    crossing_criticality,
    planned_criticality,
    snapshot_criticality,
    unknown_criticality,
)
from reflexdrive.envs.lane_paths import RoadLanes, centreline_crossing
from reflexdrive.envs.scenarios import HAZARD_KINDS, HazardPlan
from reflexdrive.envs.types import EGO, HazardState, WorldSnapshot

TRIGGER_SLACK_M = 1e-3
"""The stopped-vehicle trigger fires this much before the footprint reaches
`trigger_range_m` [m]: the sensors work in float32 (a few 1e-6 m at 50 m), so a return
right at the range cannot come before the onset."""


def sensor_reach(dx, dy, ego_heading, heading, length, width):
    """How far a vehicle's footprint is from the ego's centre, along the ego frame's axes
    [m]: `max(|x| - h_x, |y| - h_y, 0)` of its centre `(x, y)` in the ego frame and the
    half extents `(h_x, h_y)` of its footprint's ego-frame bounding box.

    numpy arrays or torch tensors (same kind out); the numba kernel's
    `stopped_vehicle_onset` repeats the operations in this order.

    Args:
        dx, dy: its centre minus the ego's, world frame [m].
        ego_heading, heading: world-frame headings [rad].
        length, width: its footprint [m].
    """
    lib = torch if isinstance(dx, torch.Tensor) else np
    c, s = lib.cos(ego_heading), lib.sin(ego_heading)
    x = dx * c + dy * s
    y = dy * c - dx * s
    relative = heading - ego_heading
    cr, sr = lib.abs(lib.cos(relative)), lib.abs(lib.sin(relative))
    half_x = 0.5 * length * cr + 0.5 * width * sr
    half_y = 0.5 * length * sr + 0.5 * width * cr
    reach = lib.maximum(lib.abs(x) - half_x, lib.abs(y) - half_y)
    return lib.maximum(reach, lib.zeros_like(reach))


SENSOR_TRIGGERED = ("stopped_vehicle", "cross_traffic")
"""Hazard kinds whose onset is when the hazard vehicle reaches the sensors."""


def lane_criticality(snapshot: WorldSnapshot, plan: HazardPlan, lanes: RoadLanes,
                     time_left_s: float) -> OnsetCriticality:
    """The criticality of world 0 of `snapshot` at its onset, measured along the lanes of a
    highway-env road (`envs.lane_paths`).

    A hazard vehicle ahead (lead brake, cut-in, stopped vehicle): the gap is the difference
    of the two centres' arc lengths along the ego's path (its route, from the lane it is in)
    minus the half lengths (`arc_longitudinal`): on a curve the distance along the lane,
    not along the ego's heading. Cross traffic: each vehicle's distance along its own path
    to where the two centrelines cross (`centreline_crossing`), and `crossing_criticality`;
    paths that do not cross ahead of both are NaN, not critical.
    """
    j = plan.vehicle
    position, heading = snapshot.position[0], snapshot.heading[0]
    speed, length, width = snapshot.speed[0], snapshot.length[0], snapshot.width[0]
    ego_path = lanes.path(EGO, position[EGO])
    ego_s, _, ego_lane_heading = ego_path.coordinates(position[EGO])
    if plan.kind != "cross_traffic":
        hazard_s, _, hazard_lane_heading = ego_path.coordinates(position[j])
        gap, v_e, v_h = arc_longitudinal(
            [ego_s], heading[EGO], speed[EGO], length[EGO], ego_lane_heading, [hazard_s],
            heading[j], speed[j], length[j], hazard_lane_heading)
        return planned_criticality(gap, v_e, v_h, [HAZARD_KINDS.index(plan.kind)],
                                   [plan.decel_mps2], [plan.target_speed_mps], [time_left_s])
    hazard_path = lanes.path(j, position[j])
    hazard_s, _, hazard_lane_heading = hazard_path.coordinates(position[j])
    crossing = centreline_crossing(ego_path, hazard_path)
    if crossing is None:
        distances, angle = (np.nan, np.nan), np.pi / 2
    else:
        distances, angle = (crossing[0] - ego_s, crossing[1] - hazard_s), crossing[2]
    return crossing_criticality(
        [distances[0]], [speed[EGO] * np.cos(heading[EGO] - ego_lane_heading)], [length[EGO]],
        [width[EGO]], [distances[1]], [speed[j] * np.cos(heading[j] - hazard_lane_heading)],
        [length[j]], [width[j]], [angle], [time_left_s])


class HazardTracker:
    """Turns a `HazardPlan` and the snapshots of one world into its `HazardState`.

    Args:
        plan: the episode's hazard.
        simulation_frequency: substeps per second [Hz].
        duration_s: the episode's length [s] (the criticality rule's "before the episode
            ends").
        lanes: the world's highway-env road and routes: criticality is then measured along
            the lanes (`lane_criticality`). None: along the ego's lane heading
            (`envs.criticality.snapshot_criticality`, straight roads); a "cross_traffic"
            hazard's criticality is then unknown (False and NaN), its onset as with lanes.
    """

    def __init__(self, plan: HazardPlan, simulation_frequency: int,
                 duration_s: float = float("inf"), lanes: RoadLanes | None = None):
        self.lanes = lanes
        self.plan = plan
        self.simulation_frequency = simulation_frequency
        self.duration_s = float(duration_s)
        self.onset_substep: int | None = plan.onset_substep
        """The substep at which the hazard starts (None until a stopped vehicle is in range)."""
        self.criticality: dict | None = None
        """`envs.criticality.OnsetCriticality.row` at the onset boundary, once reached."""

    def update(self, snapshot: WorldSnapshot, substep_index: int) -> HazardState:
        """The hazard state after `substep_index` substeps, given the world then (`B = 1`)."""
        plan = self.plan
        if plan.kind == "none":
            return HazardState()
        j = plan.vehicle
        if plan.kind in SENSOR_TRIGGERED and self.onset_substep is None \
                and substep_index >= (plan.commit_substep or 0) \
                and 0 <= j < snapshot.shape[1] and snapshot.valid[0, j]:
            offset = snapshot.position[0, j] - snapshot.position[0, EGO]
            reach = sensor_reach(offset[0], offset[1], snapshot.heading[0, EGO],
                                 snapshot.heading[0, j], snapshot.length[0, j],
                                 snapshot.width[0, j])
            if reach <= plan.trigger_range_m + TRIGGER_SLACK_M:
                self.onset_substep = substep_index
        onset = self.onset_substep
        if onset is not None and onset == substep_index and self.criticality is None:
            time_left = self.duration_s - onset / self.simulation_frequency
            if self.lanes is not None and 0 <= j < snapshot.shape[1] and snapshot.valid[0, j]:
                found = lane_criticality(snapshot, plan, self.lanes, time_left)
            elif plan.kind == "cross_traffic":
                found = unknown_criticality(1)
            else:
                found = snapshot_criticality(
                    snapshot, [HAZARD_KINDS.index(plan.kind)], [plan.vehicle],
                    [plan.decel_mps2], [plan.target_speed_mps], [time_left])
            self.criticality = found.row(0)
        return HazardState(
            kind=plan.kind,
            onset_s=None if onset is None else onset / self.simulation_frequency,
            active=onset is not None and substep_index >= onset,
            vehicle_id=plan.vehicle,
            criticality=self.criticality,
        )
