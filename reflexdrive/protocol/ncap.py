"""Euro NCAP AEB Car-to-Car rear tests (test protocol v3.0.2) as a grid, and their scoring.

- **CCRs**: stationary target; VUT at 10-50 km/h in 5 km/h steps; the test starts at
  TTC 4 s, so the bumper gap is `4 s x v_VUT`.
- **CCRm**: target at 20 km/h; VUT at 30-80 km/h in 5 km/h steps; start at TTC 4 s (gap
  `4 s x (v_VUT - 20 km/h)`).
- **CCRb**: both at 50 km/h, gap 12 or 40 m, the target then brakes at 2 or 6 m/s^2 to a
  stop (here `PRE_ONSET_S` after the start).

100 % overlap only. End of test: VUT standstill, VUT slower than the target, or contact.
Each test scores by the VUT's relative impact speed in bands that depend on the test speed
(`IMPACT_BANDS`, as BeamNG/BeamNG_NCAP_Tests `src/beamng_ncap/scenarios.py` encodes the
Euro NCAP colour bands; sources and caveats in docs/protocol.md).
"""

from __future__ import annotations

from reflexdrive.common.validation import ConfigError
from reflexdrive.envs.scenarios import HazardPlan
from reflexdrive.protocol.grid import (
    EGO_LANE,
    KPH,
    PRESENT_FROM_START_M,
    GridPoint,
    ahead_s,
    cruising,
    parked,
    straight_init,
)

SUITE = "ncap-ccr"
START_TTC_S = 4.0
"""Every CCRs and CCRm test starts at this time to collision [s]."""
CCRS_SPEEDS_KPH = tuple(range(10, 55, 5))
CCRM_SPEEDS_KPH = tuple(range(30, 85, 5))
CCRM_TARGET_KPH = 20.0
CCRB_SPEED_KPH = 50.0
CCRB_GAPS_M = (12.0, 40.0)
CCRB_DECELS_MPS2 = (2.0, 6.0)
PRE_ONSET_S = 2.0
"""CCRb: both vehicles cruise this long before the target brakes [s]."""
AFTER_CONTACT_TIME_S = 4.0
"""CCRs/CCRm run this long past the time of contact at the test speed [s]: a VUT that
brakes reaches the target later, or stops."""

# Relative impact speed bands [km/h] by test and VUT test speed [km/h]: a list of
# (upper bound, score), first match wins (`impact < bound`); past the last band, 0.
_AVOID = ((1.0, 1.0),)
_SLOW = ((5.0, 1.0), (15.0, 0.5))                      # 25 km/h CCRs; 40, 45 km/h CCRm
_MEDIUM = ((5.0, 1.0), (15.0, 0.75), (25.0, 0.5))      # 30, 35 km/h CCRs; 50, 55 CCRm
_FAST = ((5.0, 1.0), (15.0, 0.75), (25.0, 0.5), (35.0, 0.25))
IMPACT_BANDS: dict[str, dict[float, tuple[tuple[float, float], ...]]] = {
    "CCRs": {10.0: _AVOID, 15.0: _AVOID, 20.0: _AVOID, 25.0: _SLOW, 30.0: _MEDIUM,
             35.0: _MEDIUM, 40.0: _FAST, 45.0: _FAST,
             50.0: ((5.0, 1.0), (15.0, 0.75), (30.0, 0.5), (40.0, 0.25))},
    "CCRm": {30.0: ((5.0, 1.0),), 35.0: ((5.0, 1.0),), 40.0: _SLOW, 45.0: _SLOW,
             50.0: _MEDIUM, 55.0: _MEDIUM, 60.0: _FAST, 65.0: _FAST,
             70.0: ((5.0, 1.0), (15.0, 0.75), (30.0, 0.5), (40.0, 0.25)),
             75.0: ((5.0, 1.0), (15.0, 0.75), (30.0, 0.5), (45.0, 0.25)),
             80.0: ((5.0, 1.0), (20.0, 0.75), (35.0, 0.5), (50.0, 0.25))},
    "CCRb": {CCRB_SPEED_KPH: _AVOID},
}
"""Score of a test by relative impact speed: 1 (green) to 0.25 (brown), 0 (red) past the
last bound. Low-speed tests (CCRs up to 20 km/h, CCRb) score only when contact is avoided
(impact below 1 km/h)."""


def impact_score(test: str, ego_speed_kph: float, impact_speed_kph: float) -> float:
    """The score [0, 1] of one test from its relative impact speed [km/h] (0: no contact).

    ConfigError for a test or test speed the protocol does not have.
    """
    if test not in IMPACT_BANDS:
        raise ConfigError("test", test, "allowed values are " + ", ".join(IMPACT_BANDS))
    bands = IMPACT_BANDS[test]
    speed = float(ego_speed_kph)
    if speed not in bands:
        raise ConfigError(f"{test} ego_speed_kph", ego_speed_kph,
                          "allowed values are " + ", ".join(f"{s:g}" for s in bands))
    for bound, score in bands[speed]:
        if impact_speed_kph < bound:
            return score
    return 0.0


def ncap_grid(simulation_frequency: int = 50, seed: int = 0) -> list[GridPoint]:
    """Every CCRs, CCRm and CCRb point, in that order; point `i` has sensor seed `seed + i`.

    Args:
        simulation_frequency: substeps per second [Hz] (onsets are whole substeps).
        seed: the first point's `ScenarioInit.seed`.
    """
    points: list[GridPoint] = []

    def add(test, point, parameters, init_args, speed_kph, row, col, release_s=0.0):
        speed = speed_kph * KPH
        init = straight_init(f"{SUITE}/{point}", seed + len(points), simulation_frequency,
                             speed, *init_args)
        points.append(GridPoint(SUITE, test, point, parameters, init, speed, release_s, row,
                                col, ends_when_slower=True))

    present = HazardPlan("stopped_vehicle", vehicle=1, trigger_range_m=PRESENT_FROM_START_M)
    for v in CCRS_SPEEDS_KPH:
        gap = START_TTC_S * v * KPH
        add("CCRs", f"CCRs-v{v}", {"target_speed_kph": 0.0, "gap_m": gap},
            (parked(ahead_s(gap)), present, START_TTC_S + AFTER_CONTACT_TIME_S),
            float(v), "CCRs", f"{v}")
    for v in CCRM_SPEEDS_KPH:
        gap = START_TTC_S * (v - CCRM_TARGET_KPH) * KPH
        target = cruising(EGO_LANE, ahead_s(gap), CCRM_TARGET_KPH * KPH)
        add("CCRm", f"CCRm-v{v}", {"target_speed_kph": CCRM_TARGET_KPH, "gap_m": gap},
            (target, present, START_TTC_S + AFTER_CONTACT_TIME_S), float(v), "CCRm", f"{v}")
    onset = round(PRE_ONSET_S * simulation_frequency)
    for gap in CCRB_GAPS_M:
        for decel in CCRB_DECELS_MPS2:
            speed = CCRB_SPEED_KPH * KPH
            hazard = HazardPlan("lead_brake", vehicle=1, onset_substep=onset, decel_mps2=decel)
            duration = PRE_ONSET_S + speed / decel + AFTER_CONTACT_TIME_S
            add("CCRb", f"CCRb-d{decel:g}-g{gap:g}",
                {"target_speed_kph": CCRB_SPEED_KPH, "gap_m": gap, "target_decel_mps2": decel},
                (cruising(EGO_LANE, ahead_s(gap), speed), hazard, duration), CCRB_SPEED_KPH,
                f"gap {gap:g} m", f"{decel:g} m/s²", release_s=onset / simulation_frequency)
    return points
