"""`PlannerConfig`: what the staged planner (`agents.staged.planning.MobilFrenetPlanner`)
does, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from reflexdrive.agents.staged import yielding
from reflexdrive.agents.staged.car_following import IDMParams

from reflexdrive.common.validation import boolean, number_tuple, real, validate_fields


@dataclass(frozen=True)
class PlannerConfig:
    """What `MobilFrenetPlanner` does; validated on construction (units and bounds in each
    field's metadata).

    The lattice's cost is `jerk_weight * int(jerk^2) + duration_weight * T`; its conflict
    check adds `margin_s_m` / `margin_d_m` to the summed half sizes along / across the lane.
    The assured-clear-distance rule caps the cruise speed so that the ego, reacting within
    `sight_reaction_s` and braking at `sight_decel_mps2`, stops before anything that appears
    at the edge of sight (`v t_r + v^2 / (2 b) <= sight_distance - car lengths - margin`).
    """

    idm: IDMParams = IDMParams()
    """Car-following parameters (also the followers' model in MOBIL)."""
    yielding: yielding.YieldConfig = yielding.YieldConfig()
    """Gap acceptance where a curved route crosses or joins a lane with the right of way
    (`agents.staged.yielding`)."""
    lane_changes: bool = boolean(True, help="let MOBIL change lanes (False: keep the lane)")
    politeness: float = real(
        0.3, low=0.0, help="MOBIL p [-], weight of the followers' accelerations")
    min_gain_mps2: float = real(0.2, low=0.0, help="MOBIL threshold a_th [m/s^2]")
    max_imposed_braking_mps2: float = real(
        2.0, low=0.0,
        help="MOBIL safety b_safe: the new follower must not need to brake harder than this "
             "[m/s^2]")
    min_side_gap_m: float = real(
        4.0, low=0.0, help="bumper gap required to the new lead and follower [m]")
    min_change_speed_mps: float = real(0.0, low=0.0,
                                       help="no lane changes below this speed [m/s]")
    cooldown_s: float = real(
        3.0, low=0.0, help="time after a lane change ends before the next can start [s]")
    change_durations_s: tuple[float, ...] = number_tuple(
        (3.0, 4.0, 5.0), low=0.0, low_inclusive=False,
        help="durations of the lane-change candidates of the lattice [s]")
    keep_durations_s: tuple[float, ...] = number_tuple(
        (1.5, 2.5), low=0.0, low_inclusive=False,
        help="durations of the lane-keeping candidates [s]")
    horizon_s: float = real(
        5.0, low=0.0, low_inclusive=False,
        help="length of the planned path [s] (points every PLAN_STEP_S)")
    jerk_weight: float = real(1.0, low=0.0, help="lattice cost weight w_j of int(jerk^2)")
    duration_weight: float = real(0.5, low=0.0, help="lattice cost weight w_T of T [1/s]")
    margin_s_m: float = real(1.0, low=0.0, help="conflict margin along the lane [m]")
    margin_d_m: float = real(0.2, low=0.0, help="conflict margin across the lane [m]")
    ego_width_m: float = real(2.0, low=0.0, low_inclusive=False, help="ego width [m]")
    max_path_slope: float = real(
        0.5, low=0.0, low_inclusive=False,
        help="a candidate may move at most this many metres sideways per metre travelled "
             "(a kinematic bicycle cannot move sideways on the spot) [-]")
    standstill_gap_m: float = real(
        12.0, low=0.0, low_inclusive=False,
        help="jam distance s0 behind a lead slower than 1 m/s, so that the ego stops with "
             "room to pull out around it [m]")
    sight_distance_m: float = real(
        48.0, low=0.0, low_inclusive=False,
        help="how far ahead the perception sees (SensorConfig.range_m) [m]")
    sight_decel_mps2: float = real(
        7.0, low=0.0, low_inclusive=False,
        help="braking b of the assured-clear-distance rule [m/s^2]")
    sight_reaction_s: float = real(
        0.2, low=0.0, help="reaction time t_r of the assured-clear-distance rule [s]")
    anticipation: bool = boolean(
        True, help="use the leads' tracked accelerations: the ACC model (IDM + CAH) under the "
                   "CAH braking floor (False: the plain IDM on gap and speeds)")
    coolness: float = real(
        0.99, low=0.0, high=1.0,
        help="the ACC model's coolness factor c: weight of the CAH in its blend (0: the "
             "IDM) [-]")
    cah_margin_m: float = real(
        2.0, low=0.0,
        help="gap the CAH braking floor keeps to a lead that goes on braking as now (to "
             "the gap the IDM sees, shortened behind a stopped lead) [m]")
    emergency_ttc_s: float = real(
        1.2, low=0.0, low_inclusive=False,
        help="brake at the action bound when the time to collision with a lead (gap / "
             "closing speed) falls below this [s]")
    done_offset_m: float = real(
        0.5, low=0.0, low_inclusive=False,
        help="a lane change is over once the ego is this close to the target lane's "
             "centre [m]")
    max_lateral_accel_mps2: float = real(
        3.0, low=0.0, low_inclusive=False,
        help="lateral acceleration bound on a curved route: the speed on a curve of "
             "curvature kappa is at most sqrt(a / |kappa|) [m/s^2]")
    curve_decel_mps2: float = real(
        2.0, low=0.0, low_inclusive=False,
        help="deceleration planned to slow down before a bend to its speed [m/s^2]")
    bend_brake_min_mps2: float = real(
        1.0, low=0.0,
        help="braking for a slower bend or speed limit ahead starts once it needs at least "
             "this deceleration (0: from as far as the route reaches) [m/s^2]")

    def __post_init__(self) -> None:
        validate_fields(self)
