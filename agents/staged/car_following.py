"""Car following on the lead's acceleration: the constant-acceleration heuristic (CAH) and
the ACC model of Kesting, Treiber & Helbing, "Enhanced intelligent driver model to access
the impact of driving strategies on traffic capacity", Phil. Trans. R. Soc. A 368 (2010).

The Intelligent Driver Model (Treiber, Hennecke, Helbing 2000; `IDMParams`,
`idm_acceleration`) and MOBIL's follower terms (`mobil_gain`) are here too. The IDM sees the
lead's speed but not its acceleration; these functions add it, batched over `(N,)` arrays:

- `constant_acceleration_heuristic`: the largest acceleration that avoids a collision if
  both vehicles keep their current accelerations (the lead's capped at `a_max`), eq. (3.2);
- `acc_model_acceleration`: the paper's ACC blend of IDM and CAH with coolness `c`,
  eq. (3.4). It never brakes harder than the IDM alone (it damps the IDM's overreaction
  when a car cuts in close at the ego's speed);
- `braking_lead_floor`: the CAH evaluated `margin` metres short of the lead, i.e. the
  constant acceleration that keeps `margin` to a lead that goes on braking as it does now.
  The planner brakes at least this hard, which is what makes it react in the tick a lead's
  braking shows in its track (the ACC blend alone cannot: it is never below the IDM). It
  only ever brakes, and not for a lead whose stopping point lies beyond the ego's reach
  within `FLOOR_HORIZON_S`: the CAH assumes the ego keeps its acceleration for ever, so
  behind a lead easing off at 0.1 m/s^2 far ahead it allows no acceleration at all (the
  ego crawled behind a car turning ahead of it at the intersection, and a stopped ego
  could never start behind a lead that was still slowing down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reflexdrive.common.validation import real, validate_fields

MIN_GAP_M = 0.1
"""Gaps below this count as this, so no formula divides by zero [m]."""

FLOOR_HORIZON_S = 30.0
"""`braking_lead_floor` binds only for a braking lead that stops within the distance the
ego covers in this time at its current speed [s]. Long enough that a lead's braking binds
in the tick its first, still small, estimate shows (at 20 m/s the ego's reach is 600 m: a
lead at 20 m/s binds from -0.35 m/s^2 on); short enough that a lead easing off at 0.1 m/s^2
far ahead of a slow ego does not."""


def constant_acceleration_heuristic(speed: np.ndarray, gap: np.ndarray,
                                    lead_speed: np.ndarray, lead_accel: np.ndarray,
                                    max_accel: float) -> np.ndarray:
    """CAH acceleration [m/s^2] (Kesting et al. 2010, eq. 3.2), batched `(N,)`.

    With `a_l = min(lead_accel, max_accel)` (the lead's acceleration, capped by the ego's
    own maximum so a lead speeding away does not invite a chase), `dv = v - v_l`:

        a_CAH = v^2 a_l / (v_l^2 - 2 s a_l)          if v_l dv <= -2 s a_l
                a_l - dv^2 Theta(dv) / (2 s)          otherwise

    The first branch is for a lead that stops before the gap would close (both then stop
    with zero gap); the second keeps the gap from closing while both move. A stopped lead
    that is not accelerating (`v_l = 0`, `a_l = 0`) takes the first branch's limit,
    `-v^2 / (2 s)`. Speeds are clamped to `>= 0`; envs without a lead (`gap = inf`) are
    the caller's to mask.

    Args:
        speed: ego speed `v` [m/s].
        gap: bumper gap `s` [m] (clamped to `MIN_GAP_M`).
        lead_speed: lead speed `v_l` [m/s].
        lead_accel: lead acceleration [m/s^2] (0 where unknown).
        max_accel: the ego's maximum acceleration `a_max` [m/s^2].
    """
    v = np.maximum(np.asarray(speed, np.float64), 0.0)
    vl = np.maximum(np.asarray(lead_speed, np.float64), 0.0)
    al = np.minimum(np.asarray(lead_accel, np.float64), max_accel)
    s = np.maximum(np.asarray(gap, np.float64), MIN_GAP_M)
    dv = v - vl
    with np.errstate(divide="ignore", invalid="ignore"):               # inf gaps: masked
        stops_first = vl * dv <= -2.0 * s * al
        denominator = vl * vl - 2.0 * s * al
        first = np.where(denominator > 0.0, v * v * al / denominator, -v * v / (2.0 * s))
        second = al - np.square(np.maximum(dv, 0.0)) / (2.0 * s)
    return np.where(stops_first, first, second)


def acc_model_acceleration(idm_accel: np.ndarray, cah_accel: np.ndarray,
                           comfort_decel: float, coolness: float) -> np.ndarray:
    """The ACC model's acceleration [m/s^2] (Kesting et al. 2010, eq. 3.4), batched `(N,)`:

        a_ACC = a_IDM                                                  if a_IDM >= a_CAH
                (1 - c) a_IDM + c (a_CAH + b tanh((a_IDM - a_CAH) / b))  otherwise

    Args:
        idm_accel: `a_IDM` [m/s^2].
        cah_accel: `a_CAH` [m/s^2].
        comfort_decel: comfortable deceleration `b` > 0 [m/s^2].
        coolness: `c` in [0, 1] (0: the IDM; the paper uses 0.99).
    """
    blend = (1.0 - coolness) * idm_accel + coolness * (
        cah_accel + comfort_decel * np.tanh((idm_accel - cah_accel) / comfort_decel))
    return np.where(idm_accel >= cah_accel, idm_accel, blend)


def braking_lead_floor(speed: np.ndarray, gap: np.ndarray, lead_speed: np.ndarray,
                       lead_accel: np.ndarray, max_accel: float, margin_m: float
                       ) -> np.ndarray:
    """The deceleration [m/s^2] `(N,)` that keeps `margin_m` to a lead that keeps its
    current acceleration: `constant_acceleration_heuristic` on the gap `gap - margin_m`
    where that is negative; `inf` (no bound) where it is not, where `gap` is not finite (no
    lead), and where the lead brakes but stops beyond `speed * FLOOR_HORIZON_S` from the
    ego (at `gap + v_l^2 / (2 |a_l|)`)."""
    gap = np.asarray(gap, np.float64)
    lead_speed = np.maximum(np.asarray(lead_speed, np.float64), 0.0)
    lead_accel = np.asarray(lead_accel, np.float64)
    floor = constant_acceleration_heuristic(speed, gap - margin_m, lead_speed, lead_accel,
                                            max_accel)
    with np.errstate(divide="ignore", invalid="ignore"):
        lead_stops_at = gap + np.where(lead_accel < 0.0,
                                       lead_speed ** 2 / (2.0 * np.abs(lead_accel)), np.inf)
    beyond_reach = (lead_accel < 0.0) & (
        lead_stops_at > np.maximum(np.asarray(speed, np.float64), 0.0) * FLOOR_HORIZON_S)
    binds = np.isfinite(gap) & (floor < 0.0) & ~beyond_reach
    return np.where(binds, floor, np.inf)


@dataclass(frozen=True)
class IDMParams:
    """Intelligent Driver Model parameters (units and bounds in each field's metadata;
    validated on construction)."""

    desired_speed_mps: float = real(27.0, low=0.0, low_inclusive=False,
                                    help="free-road cruise speed v0 [m/s]")
    time_headway_s: float = real(1.0, low=0.0, help="desired time gap T [s]")
    min_gap_m: float = real(2.0, low=0.0, help="jam distance s0, bumper to bumper [m]")
    max_accel_mps2: float = real(3.0, low=0.0, low_inclusive=False,
                                 help="maximum acceleration a_max [m/s^2]")
    comfort_decel_mps2: float = real(5.0, low=0.0, low_inclusive=False,
                                     help="comfortable deceleration b [m/s^2]")
    delta: float = real(4.0, low=0.0, low_inclusive=False, help="free-road exponent [-]")
    lane_width_m: float = real(4.0, low=0.0, low_inclusive=False,
                               help="lane width used to decide what is in the ego lane [m]")
    lane_overlap_m: float = real(
        0.5, low=0.0, help="how far a vehicle must reach into the ego lane to be followed [m]")
    ego_length_m: float = real(5.0, low=0.0, low_inclusive=False,
                               help="ego length for bumper gaps [m]")
    cut_in_horizon_s: float = real(
        1.0, low=0.0,
        help="a vehicle whose lateral motion brings it into the ego lane within this time "
             "is followed already (cut-in anticipation) [s]")

    def __post_init__(self) -> None:
        validate_fields(self)


def idm_acceleration(speed: np.ndarray, gap: np.ndarray, closing_speed: np.ndarray,
                     params: IDMParams) -> np.ndarray:
    """IDM acceleration [m/s^2], batched.

    Args:
        speed: `(N,)` ego speed [m/s].
        gap: `(N,)` bumper gap to the lead [m]; `inf` for a free road.
        closing_speed: `(N,)` ego speed minus lead speed along the ego heading [m/s].
    """
    free = 1.0 - np.power(np.maximum(speed, 0.0) / params.desired_speed_mps, params.delta)
    dynamic = speed * params.time_headway_s + speed * closing_speed / (
        2.0 * np.sqrt(params.max_accel_mps2 * params.comfort_decel_mps2))
    desired_gap = params.min_gap_m + np.maximum(0.0, dynamic)
    with np.errstate(divide="ignore", invalid="ignore"):
        interaction = np.where(np.isfinite(gap),
                               np.square(desired_gap / np.maximum(gap, 0.1)), 0.0)
    return params.max_accel_mps2 * (free - interaction)


def mobil_gain(params: IDMParams, speed: np.ndarray, accel_now: np.ndarray,
               accel_new: np.ndarray, old_follower_speed: np.ndarray,
               old_follower_gaps: tuple[np.ndarray, np.ndarray],
               old_follower_closing: tuple[np.ndarray, np.ndarray],
               new_follower_speed: np.ndarray, new_follower_gaps: tuple[np.ndarray, np.ndarray],
               new_follower_closing: tuple[np.ndarray, np.ndarray], politeness: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """MOBIL's incentive and the braking imposed on the new follower.

    Each follower's IDM acceleration is evaluated before and after the change
    (`*_gaps = (before, after)` bumper gaps [m], inf = free road; `*_closing` the closing
    speeds [m/s]); a follower that does not exist has gap inf both times and adds 0.

    Returns:
        gain `(N,)` [m/s^2] `= a_new - a_now + p (dA_new_follower + dA_old_follower)` and the
        new follower's acceleration after the change `(N,)` [m/s^2].
    """
    def idm(v, gap, closing):
        return idm_acceleration(v, gap, closing, params)

    new_before = idm(new_follower_speed, new_follower_gaps[0], new_follower_closing[0])
    new_after = idm(new_follower_speed, new_follower_gaps[1], new_follower_closing[1])
    old_before = idm(old_follower_speed, old_follower_gaps[0], old_follower_closing[0])
    old_after = idm(old_follower_speed, old_follower_gaps[1], old_follower_closing[1])
    gain = accel_new - accel_now + politeness * ((new_after - new_before)
                                                 + (old_after - old_before))
    return gain, new_after
