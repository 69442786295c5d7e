"""Reaction time: the analytic cases of the tick contract, on synthetic records and real envs.

An agent that responds at the first tick showing the hazard has reaction time
`(t_k* - t_h) + L` exactly with fixed latency `L <= B` (`t_k*` the first tick boundary at or
after the onset `t_h`); with `L > B` it only observes every `m = ceil(L / T)` ticks, so the
dropped frames add whole ticks; in lockstep the reaction does not depend on `L`. This holds
for the counterfactual reaction (departure from the hazard-removed twin, `reaction_time_s`)
whatever the response's strength, and for the brake onset (`brake_onset_s`) only when the
response brakes harder than its threshold.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from reflexdrive.agents.base import Decision
from reflexdrive.envs.clock import TickClock
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.types import Command, SubstepOutcome

from reflexdrive.run.metrics import (
    ReactionConfig,
    brake_onset,
    counterfactual_reaction,
    episode_metrics,
)
from reflexdrive.run.runner import RunConfig, run

T = 0.1          # tick [s] at 10 Hz
BRAKE = Command(-6.0, 0.0)
CRUISE = Command(0.0, 0.0)


def clock_records(latency_s: float, onset_s: float, mode: str = "realtime", seconds: float = 3.0,
                  response: Command = BRAKE):
    """Tick records of a responder that applies `response` from the first tick at or after
    `onset_s` (never, with an infinite onset: the twin)."""
    clock = TickClock(ClockConfig(mode=mode, latency=f"fixed:{latency_s}"))
    records = []
    while clock.time_of(clock.tick) < seconds - 1e-9:
        command = response if clock.time_of(clock.tick) >= onset_s - 1e-9 else CRUISE
        records.extend(clock.decide(command, {"total": latency_s}).records)
    return records


def first_boundary_at_or_after(t_s: float, every_ticks: int = 1) -> float:
    """`t_k*`: the first observed tick boundary at or after `t_s` when the agent observes
    every `every_ticks` ticks from tick 0."""
    k = math.ceil(t_s / T - 1e-9)
    k = math.ceil(k / every_ticks) * every_ticks
    return k * T


@pytest.mark.parametrize("latency", [0.0, 0.003, 0.017, 0.03, 0.1])
@pytest.mark.parametrize("onset", [1.0, 1.04, 1.1, 1.38])
def test_latency_within_budget_adds_exactly_latency(latency, onset):
    react = brake_onset(clock_records(latency, onset), onset, end_s=3.0)
    t_k = first_boundary_at_or_after(onset)
    assert react is not None and react.kind == "brake"
    assert react.total_s == pytest.approx((t_k - onset) + latency, abs=1e-9)
    assert react.wait_s == pytest.approx(t_k - onset, abs=1e-9)
    assert react.notice_s == pytest.approx(0.0, abs=1e-9)
    assert react.compute_s == pytest.approx(latency, abs=1e-9)


@pytest.mark.parametrize("latency, every", [(0.15, 2), (0.25, 3), (0.3, 3), (0.31, 4)])
@pytest.mark.parametrize("onset", [1.04, 1.1, 1.26])
def test_overrun_drops_frames_predictably(latency, every, onset):
    """With `L > T` the agent observes at ticks 0, m, 2m, ...: the wait grows by whole ticks."""
    react = brake_onset(clock_records(latency, onset), onset, end_s=3.0)
    t_k = first_boundary_at_or_after(onset, every)
    assert react.total_s == pytest.approx((t_k - onset) + latency, abs=1e-9)
    assert react.wait_s == pytest.approx(t_k - onset, abs=1e-9)
    assert react.compute_s == pytest.approx(latency, abs=1e-9)


@pytest.mark.parametrize("latency", [0.0, 0.03, 0.25])
def test_lockstep_reaction_does_not_depend_on_latency(latency):
    onset = 1.04
    react = brake_onset(clock_records(latency, onset, mode="lockstep"), onset, end_s=3.0)
    assert react.total_s == pytest.approx(first_boundary_at_or_after(onset) - onset, abs=1e-9)
    assert react.compute_s == 0.0


def test_notice_counts_ticks_before_responding():
    """A stack that needs 3 ticks to respond: notice = 3 T."""
    clock = TickClock(ClockConfig(latency="fixed:0.02"))
    records = []
    for k in range(30):
        records.extend(clock.decide(BRAKE if k >= 14 else CRUISE, {"total": 0.02}).records)
    react = brake_onset(records, onset_s=1.04, end_s=3.0)
    assert react.wait_s == pytest.approx(0.06)
    assert react.notice_s == pytest.approx(0.3)
    assert react.total_s == pytest.approx(0.06 + 0.3 + 0.02)


def test_steering_response_and_thresholds():
    clock = TickClock(ClockConfig(latency="fixed:0"))
    records = []
    for k in range(20):
        command = Command(-1.0, 0.01) if k < 12 else Command(-1.0, 0.05)
        records.extend(clock.decide(command, {"total": 0.0}).records)
    react = brake_onset(records, onset_s=1.0, end_s=2.0)
    assert react.kind == "steer" and react.total_s == pytest.approx(0.2)
    strict = ReactionConfig(decel_threshold_mps2=0.5, steer_threshold_rad=0.5)
    assert brake_onset(records, 1.0, 2.0, strict).total_s == pytest.approx(0.0)   # -1 brakes now


def test_no_reaction_cases():
    records = clock_records(0.03, onset_s=99.0)                 # never brakes
    assert brake_onset(records, onset_s=1.0, end_s=3.0) is None
    assert brake_onset(records, onset_s=math.nan, end_s=3.0) is None
    late = clock_records(0.09, onset_s=2.9)                    # lands at 2.99 > end 2.95
    assert brake_onset(late, onset_s=2.9, end_s=2.95) is None
    assert brake_onset([], onset_s=1.0, end_s=3.0) is None


@pytest.mark.parametrize("latency", [0.0, 0.017, 0.1])
@pytest.mark.parametrize("onset", [1.0, 1.04, 1.38])
@pytest.mark.parametrize("response, kind", [(Command(-1.0, 0.0), "brake"),
                                            (Command(-6.0, 0.0), "brake"),
                                            (Command(0.0, 0.03), "steer"),
                                            (Command(0.6, 0.0), "accelerate")])
def test_departure_from_the_twin_is_the_reaction_whatever_its_strength(latency, onset,
                                                                     response, kind):
    records = clock_records(latency, onset, response=response)
    twin = clock_records(latency, math.inf)
    react = counterfactual_reaction(records, twin, onset, end_s=3.0, twin_end_s=3.0)
    t_k = first_boundary_at_or_after(onset)
    assert react is not None and react.kind == kind
    assert react.total_s == pytest.approx((t_k - onset) + latency, abs=1e-9)
    assert (react.wait_s, react.notice_s, react.compute_s) == pytest.approx(
        (t_k - onset, 0.0, latency), abs=1e-9)
    onset_brake = brake_onset(records, onset, end_s=3.0)
    if response.acceleration <= -2.0:
        assert onset_brake.total_s == pytest.approx(react.total_s, abs=1e-9)
    elif kind != "steer":
        assert onset_brake is None                  # a gentle response: the threshold misses it


@pytest.mark.parametrize("latency, every", [(0.15, 2), (0.31, 4)])
def test_departure_with_dropped_frames_adds_whole_ticks(latency, every):
    onset = 1.04
    records = clock_records(latency, onset, response=Command(-1.0, 0.0))
    react = counterfactual_reaction(records, clock_records(latency, math.inf), onset, 3.0, 3.0)
    t_k = first_boundary_at_or_after(onset, every)
    assert react.total_s == pytest.approx((t_k - onset) + latency, abs=1e-9)


def test_no_departure_no_reaction():
    twin = clock_records(0.03, math.inf)
    same = clock_records(0.03, math.inf)
    assert counterfactual_reaction(same, twin, 1.0, 3.0, 3.0) is None
    below = clock_records(0.03, 1.0, response=Command(-0.4, 0.01))   # under both thresholds
    assert counterfactual_reaction(below, twin, 1.0, 3.0, 3.0) is None
    responds = clock_records(0.03, 1.0, response=Command(-1.0, 0.0))
    assert counterfactual_reaction(responds, twin, math.nan, 3.0, 3.0) is None   # no hazard
    assert counterfactual_reaction(responds, twin, 1.0, 1.02, 3.0) is None    # lands after end
    assert counterfactual_reaction(responds, twin, 1.0, 3.0, 1.02) is None    # twin ended first
    strict = ReactionConfig(accel_departure_mps2=1.5)
    assert counterfactual_reaction(responds, twin, 1.0, 3.0, 3.0, strict) is None


def test_a_difference_before_onset_is_not_a_reaction_to_it():
    """A stack that already drives differently before `t_h` (it saw something else) reacts
    only through decisions observed at or after `t_h`."""
    records = clock_records(0.0, 0.5, response=Command(-1.0, 0.0))
    twin = clock_records(0.0, math.inf)
    react = counterfactual_reaction(records, twin, 1.0, 3.0, 3.0)
    assert react.total_s == pytest.approx(0.0) and react.tick == 10


def test_episode_metrics_on_a_hand_made_trace():
    """Constant 2 m/s^2 braking from 20 m/s for 1 s at dt = 0.1 s: peak decel 2, jerk 0;
    the ego enters its route's exit road at the 8th substep: the exit was reached."""
    dt = 0.1
    speeds = [20.0 - 2.0 * dt * (i + 1) for i in range(10)]
    substeps = [SubstepOutcome(time_s=dt * (i + 1), speed=v, distance_m=v * dt,
                               gap_m=30.0 - i, ttc_s=10.0 - i, crashed=False, on_road=True,
                               on_route_exit=i >= 7)
                for i, v in enumerate(speeds)]
    records = clock_records(0.05, onset_s=0.5, seconds=1.0)
    metrics = episode_metrics(records, substeps, onset_s=0.5, start_speed_mps=20.0,
                              substep_s=dt)
    assert metrics.peak_decel_mps2 == pytest.approx(2.0)
    assert metrics.mean_abs_jerk_mps3 == pytest.approx(0.0, abs=1e-9)
    assert metrics.progress_m == pytest.approx(sum(v * dt for v in speeds))
    assert metrics.min_gap_m == 21.0 and metrics.min_ttc_s == 1.0       # over t >= 0.5 only
    assert metrics.latency_p50_s == pytest.approx(0.05) and metrics.overrun_rate == 0.0
    assert metrics.brake_onset_s == pytest.approx(0.05)
    assert metrics.route_exit_reached is True and metrics.collided is False
    before_exit = [s._replace(on_route_exit=False) for s in substeps]
    assert episode_metrics(records, before_exit, onset_s=0.5, start_speed_mps=20.0,
                           substep_s=dt).route_exit_reached is False
    assert math.isnan(metrics.reaction_time_s)              # no twin given
    assert not metrics.critical and math.isnan(metrics.onset_gap_m)
    assert not metrics.collided and metrics.ticks == 10
    with_twin = episode_metrics(records, substeps, onset_s=0.5, start_speed_mps=20.0,
                                substep_s=dt,
                                twin_records=clock_records(0.05, math.inf, seconds=1.0),
                                twin_end_s=1.0,
                                criticality={"critical": True, "onset_gap_m": 25.0})
    assert with_twin.reaction_time_s == pytest.approx(0.05) and with_twin.critical
    assert with_twin.onset_gap_m == 25.0 and math.isnan(with_twin.required_decel_mps2)


# --------------------------------------------------------------------------- real envs


class HazardResponder:
    """Applies `response` from the first tick at which `info` shows the hazard active (never
    in a twin, which has none); else cruises."""

    name = "responder"
    stage_names = ("total",)

    def __init__(self, response: tuple[float, float] = (-6.0, 0.0)):
        self.response = np.asarray(response, dtype=np.float32)

    def reset(self, done: np.ndarray) -> None:
        pass

    def act(self, obs, info) -> Decision:
        active = np.asarray(info["hazard"]["active"], dtype=bool)
        actions = np.zeros((len(active), 2), dtype=np.float32)
        actions[active] = self.response
        return Decision(actions=actions, stage_latency_s={})


SHORT_LEAD_BRAKE = {"duration_s": 2.5, "onset_s": (1.0, 1.4), "gap_m": (60.0, 60.0)}


def run_responder(mode: str, latency: float, episodes: int = 3, envs: int = 1,
                  response=(-6.0, 0.0), backend: str = "auto"):
    config = RunConfig(scenario="lead-brake", episodes=episodes, seed=5, mode=mode,
                       latency=f"fixed:{latency}", envs=envs, backend=backend,
                       scenario_config=SHORT_LEAD_BRAKE)
    episodes_frame, ticks = run(config, agent=HazardResponder(response), progress=False)
    return episodes_frame, ticks


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["batched", "highway"])
def test_real_env_gentle_response_is_found_by_the_twin_and_missed_by_brake_onset(backend):
    episodes, _ = run_responder("realtime", 0.03, episodes=2, response=(-1.0, 0.0),
                                backend=backend)
    for row in episodes.itertuples():
        t_k = first_boundary_at_or_after(row.hazard_onset_s)
        assert row.reaction_time_s == pytest.approx(t_k - row.hazard_onset_s + 0.03, abs=1e-9)
        assert row.reaction_kind == "brake" and math.isnan(row.brake_onset_s)
    never, _ = run_responder("realtime", 0.03, episodes=2, response=(0.0, 0.0), backend=backend)
    assert never["reaction_time_s"].isna().all() and never["brake_onset_s"].isna().all()


@pytest.mark.slow
@pytest.mark.parametrize("mode, latency, every", [
    ("realtime", 0.03, 1), ("realtime", 0.1, 1), ("realtime", 0.25, 3),
    ("lockstep", 0.0, 1), ("lockstep", 0.25, 1)])
def test_real_env_reaction_matches_the_tick_contract(mode, latency, every):
    episodes, ticks = run_responder(mode, latency)
    assert len(episodes) == 3 and set(episodes["seed"]) == {5, 6, 7}
    for row in episodes.itertuples():
        onset = row.hazard_onset_s
        assert onset == pytest.approx(round(onset * 50) / 50)           # on a substep
        t_k = first_boundary_at_or_after(onset, every)
        compute = latency if mode == "realtime" else 0.0
        assert row.reaction_time_s == pytest.approx(t_k - onset + compute, abs=1e-9)
        assert row.brake_onset_s == pytest.approx(row.reaction_time_s, abs=1e-9)
        assert row.reaction_compute_s == pytest.approx(compute, abs=1e-9)
        assert row.peak_decel_mps2 == pytest.approx(6.0, abs=1e-6)
        assert row.ticks == 25
    assert ticks.groupby("seed").size().tolist() == [25, 25, 25]


@pytest.mark.slow
def test_results_do_not_depend_on_the_number_of_envs():
    one, _ = run_responder("realtime", 0.03, episodes=3, envs=1)
    two, _ = run_responder("realtime", 0.03, episodes=3, envs=2)
    columns = ["seed", "hazard_onset_s", "reaction_time_s", "min_gap_m", "progress_m"]
    assert one[columns].equals(two[columns])


def test_pipelined_reaction_skips_frames_dropped_between_stages():
    """Stages 20, 250, 10 ms at T = 100 ms (tests/envs/clock/test_pipeline.py): frames 0, 2,
    5, 7 land, frame 1 is dropped before planning. Onset at 0.1 s, every frame from tick 1
    brakes, the twin never does: frame 1 would respond but never takes effect; frame 2
    lands at 0.53 s, 330 ms old. Reaction 0.43 s = wait 0 + notice 0.1 + compute 0.33."""
    from reflexdrive.run.metrics import counterfactual_reaction, decision_age_and_rate

    def records(brakes: bool):
        clock = TickClock(ClockConfig(simulation_frequency=50, policy_frequency=10,
                                      execution="pipelined"))
        out = []
        while clock.tick < 12:
            command = Command(-5.0 if brakes and clock.tick >= 1 else 0.0, 0.0)
            out += clock.decide(command, {"perception": 0.02, "planning": 0.25,
                                          "control": 0.01}).records
        return out

    react = counterfactual_reaction(records(True), records(False), 0.1, 1.2, 1.2)
    assert react.tick == 2 and react.kind == "brake"
    assert (react.total_s, react.wait_s, react.notice_s, react.compute_s) == pytest.approx(
        (0.43, 0.0, 0.1, 0.33), abs=1e-12)
    age, rate = decision_age_and_rate(records(True), 1.2)   # 280, 330, 280, 330 ms landed
    assert age == pytest.approx(0.305, abs=1e-12) and rate == pytest.approx(4 / 1.2)
