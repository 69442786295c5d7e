"""`reference-driver`: exact timing of perception, reaction and the brake ramp in ticks,
the cut-in trigger at the stated lateral wander, per-env independence and reset."""

import numpy as np
import pytest
from reflexdrive.agents.reference import ReferenceDriver, ReferenceDriverConfig
from reflexdrive.agents.reference.driver import BRAKE, INACTIVE, PERCEIVE, REACT
from reflexdrive.agents.registry import make_agent

from reflexdrive.common.validation import ConfigError

FULL = 0.774 * 9.81
RAMP_END_S = 0.75 + (FULL - 0.4) / 12.65
TAIL = -(0.4 * (RAMP_END_S - 1.3) + 12.65 * ((RAMP_END_S - 0.75) ** 2 - 0.55 ** 2) / 2
         + FULL * (1.4 - RAMP_END_S)) / 0.1
RESPONSE = [-0.4] * 7 + [-0.558125, -1.665, -2.93, -4.195, -5.46, -6.725, TAIL, -FULL, -FULL]
"""Commands from the tick the reaction begins, at T = 0.1 s (hand-computed: 0.75 s at
-0.4, the ramp at 12.65 m/s^3 from tick 7.5, full braking from 1.3186 s)."""


def lead(k, brake_tick, gap_m=20.0, decel=6.0, vehicle_id=1.0):
    """A lead 20 m ahead (bumper to bumper) at 20 m/s that brakes at `decel` from
    `brake_tick`, seen at tick `k` (positions held: the driver reads speeds and gaps)."""
    speed = 20.0 - decel * 0.1 * max(0, k - brake_tick)
    return {"x_m": gap_m + 5.0, "y_m": 0.0, "vx_mps": speed, "vy_mps": 0.0,
            "vehicle_id": vehicle_id}


def drive(agent, ground_truth, worlds, ticks):
    """Commanded accelerations `(ticks, N)` for `worlds(k) -> (ego_speeds, objects)`."""
    out = []
    for k in range(ticks):
        obs, info = ground_truth(*worlds(k))
        decision = agent.act(obs, info)
        assert decision.actions.shape == (len(obs["ego"]), 2)
        assert decision.actions.dtype == np.float32
        out.append(decision.actions[:, 0].astype(np.float64))
    return np.array(out)


def test_lead_brake_cruise_then_perception_then_release_then_ramp(ground_truth):
    agent = ReferenceDriver()
    agent.reset(np.ones(1, bool))
    commands = drive(agent, ground_truth, lambda k: ([20.0], [[lead(k, brake_tick=10)]]), 40)
    # the speed drop shows at tick 11 (event); 0.4 s of perception = ticks 11..14 at cruise
    np.testing.assert_array_equal(commands[:15, 0], 0.0)
    np.testing.assert_allclose(commands[15:31, 0], RESPONSE, rtol=1e-6)
    np.testing.assert_allclose(commands[31:, 0], -FULL, rtol=1e-6)


def test_phases_follow_the_ticks(ground_truth):
    agent = ReferenceDriver()
    phases = []
    for k in range(25):
        obs, info = ground_truth([20.0], [[lead(k, brake_tick=10)]])
        phases.append(int(agent.act(obs, info).products["phase"][0]))
    assert phases[:11] == [INACTIVE] * 11
    assert phases[11:15] == [PERCEIVE] * 4
    assert phases[15:22] == [REACT] * 7
    assert phases[22:] == [BRAKE] * 3    # the ramp starts inside tick 22 (at 15 + 7.5)


def test_a_lead_braking_at_the_trigger_or_gently_starts_nothing(ground_truth):
    agent = ReferenceDriver()
    commands = drive(agent, ground_truth,
                     lambda k: ([20.0], [[lead(k, brake_tick=5, decel=5.0)]]), 20)
    np.testing.assert_array_equal(commands, 0.0)   # not harder than 5 m/s^2


def test_a_lead_far_enough_ahead_is_perceived_but_not_critical(ground_truth):
    """Headway 3 s: the deceleration is perceived, judged not critical, and not started again
    while the lead keeps braking; it is the closing (TTC < 2 s) that brings the response."""
    agent = ReferenceDriver()
    phases, commands = [], []
    for k in range(30):
        speed = max(0.0, 20.0 - 0.6 * max(0, k - 5))
        # gap 60 m (headway 3 s); it closes to TTC < 2 s at tick 20 (60 / 9.6 ... by hand)
        gap = 60.0 if k < 20 else 15.0
        obs, info = ground_truth([20.0], [[{"x_m": gap + 5.0, "y_m": 0.0, "vx_mps": speed,
                                            "vy_mps": 0.0}]])
        decision = agent.act(obs, info)
        phases.append(int(decision.products["phase"][0]))
        commands.append(float(decision.actions[0, 0]))
    assert phases[6:10] == [PERCEIVE] * 4     # event at tick 6
    assert phases[10:20] == [INACTIVE] * 10   # headway 3 s: not critical, not restarted
    assert commands[:20] == [0.0] * 20
    # tick 20: TTC = 15 / (20 - 11) < 2 s: a closing scenario, perceived 0.4 s later
    assert phases[20:24] == [PERCEIVE] * 4 and phases[24] == REACT
    assert commands[24] == pytest.approx(-0.4)


def cutter(k, lateral_step_m=0.125, speed=14.0):
    """A vehicle in the left lane (centre at +4 m) 10 m ahead (bumper gap), moving towards
    the ego lane by `lateral_step_m` per tick from tick 0: its wander off its lane centre is
    `k * lateral_step_m` (exact in binary floats)."""
    return {"x_m": 15.0, "y_m": 4.0 - lateral_step_m * k, "vx_mps": speed,
            "vy_mps": -lateral_step_m / 0.1, "vehicle_id": 7.0}


def test_cut_in_wander_triggers_past_0375_and_is_perceived_072_further(ground_truth):
    agent = ReferenceDriver()
    phases, commands = [], []
    for k in range(20):
        obs, info = ground_truth([20.0], [[cutter(k)]])
        decision = agent.act(obs, info)
        phases.append(int(decision.products["phase"][0]))
        commands.append(float(decision.actions[0, 0]))
    # wander 0.375 at tick 3 is not past it; 0.5 at tick 4 is: perception starts there
    assert phases[:4] == [INACTIVE] * 4 and phases[4] == PERCEIVE
    # perceived once 0.72 m further than at the trigger (esmini: from t at the trigger):
    # 0.5 + 0.72 = 1.22; tick 9 (1.125, past 0.375 + 0.72 already) still perceives
    assert phases[4:10] == [PERCEIVE] * 6 and phases[10] == REACT
    assert commands[:10] == [0.0] * 10
    # TTC = 10 / 6 < 2 s: critical; the response starts at tick 10
    np.testing.assert_allclose(commands[10:20], RESPONSE[:10], rtol=1e-6)


def test_cut_in_that_is_not_closing_is_perceived_and_dropped(ground_truth):
    agent = ReferenceDriver()
    commands = drive(agent, ground_truth, lambda k: ([20.0], [[cutter(k, speed=20.0)]]), 25)
    np.testing.assert_array_equal(commands, 0.0)


def test_a_vehicle_moving_away_from_the_ego_lane_is_no_cut_in(ground_truth):
    agent = ReferenceDriver()
    away = lambda k: {**cutter(0), "y_m": 3.5 + 0.125 * k, "vy_mps": 1.25}  # noqa: E731
    commands = drive(agent, ground_truth, lambda k: ([20.0], [[away(k)]]), 20)
    np.testing.assert_array_equal(commands, 0.0)


def test_envs_are_independent_and_reset_forgets_one(ground_truth):
    def worlds(k):
        return ([20.0, 20.0, 20.0],
                [[lead(k, brake_tick=10)], [lead(k, brake_tick=15)], []])

    agent = ReferenceDriver()
    commands = drive(agent, ground_truth, worlds, 40)
    alone = drive(ReferenceDriver(), ground_truth,
                  lambda k: ([20.0], [[lead(k, brake_tick=10)]]), 40)
    np.testing.assert_array_equal(commands[:, 0], alone[:, 0])
    np.testing.assert_array_equal(commands[5:, 1], alone[:-5, 0])   # 5 ticks later
    np.testing.assert_array_equal(commands[:, 2], 0.0)

    # reset env 0 in the middle of its ramp: it starts over, env 1 carries on
    agent = ReferenceDriver()
    drive(agent, ground_truth, worlds, 24)
    agent.reset(np.array([True, False, False]))
    after = drive(agent, ground_truth, lambda k: worlds(k + 24), 16)
    # env 0: a new episode whose lead is already slowing at a constant rate: the first tick
    # has no previous speed (no deceleration seen), the second shows 6 m/s^2 again
    assert after[0, 0] == 0.0
    np.testing.assert_allclose(after[:, 1], alone[19:35, 0])
    assert np.all(after[1:5, 0] == 0.0) and after[5, 0] == pytest.approx(-0.4)


def test_keeps_the_lane_centre_and_reports_one_timed_stage(ground_truth):
    obs, info = ground_truth([20.0, 20.0], [[], []])
    obs["ego"][0, 3] = 0.5      # lane offset +0.5 m (to +y): steer towards -y
    obs["ego"][1, 3] = -0.5
    decision = ReferenceDriver().act(obs, info)
    assert decision.actions[0, 1] < 0 < decision.actions[1, 1]
    assert decision.actions[0, 1] == pytest.approx(-decision.actions[1, 1])
    assert list(decision.stage_latency_s) == ["reference"]
    assert decision.stage_latency_s["reference"] >= 0.0


def test_tick_length_scales_the_timing(ground_truth):
    """At 20 Hz perception is 8 ticks and the ramp starts at 23 ticks (1.15 s)."""
    agent = ReferenceDriver(ReferenceDriverConfig(tick_s=0.05))

    def world(k):
        speed = 20.0 - 6.0 * 0.05 * max(0, k - 10)
        return [20.0], [[{"x_m": 25.0, "y_m": 0.0, "vx_mps": speed, "vy_mps": 0.0}]]

    commands = drive(agent, ground_truth, world, 36)[:, 0]
    np.testing.assert_array_equal(commands[:19], 0.0)          # event 11, 8 ticks perceiving
    np.testing.assert_allclose(commands[19:34], -0.4)           # 0.75 s = 15 ticks
    assert commands[34] == pytest.approx(-0.4 - 12.65 * 0.05 / 2)


@pytest.mark.parametrize("field, value", [("tick_s", 0.0), ("tick_s", "0.1"),
                                          ("max_decel_mps2", 9.0), ("reaction_s", -1.0)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"reference_driver.{field}"):
        ReferenceDriverConfig(**{field: value})


def test_max_decel_below_the_release_is_refused():
    with pytest.raises(ConfigError, match="release_decel_mps2"):
        ReferenceDriverConfig(max_decel_mps2=0.3)


def test_registry_builds_it_with_the_tick_and_ignores_other_options():
    agent = make_agent("reference-driver", tick_s=0.05, perception="oracle", seed=3)
    assert isinstance(agent, ReferenceDriver) and agent.config.tick_s == 0.05
    assert agent.name == "reference-driver"


def test_a_dropped_deceleration_starts_again_once_the_lead_has_stopped_braking(ground_truth):
    """Same lead, same kind: esmini registers the scenario again only after the action
    changed; here the lead brakes (headway 3 s: dropped), cruises, then brakes again at
    headway 1.5 s, which starts a new scenario."""
    def speed(k):
        braked = min(max(0, k - 5), 7) + max(0, k - 20)       # ticks spent braking
        return 20.0 - 0.6 * braked

    agent = ReferenceDriver()
    phases = []
    for k in range(27):
        gap = 60.0 if k < 15 else 30.0
        obs, info = ground_truth([20.0], [[{"x_m": gap + 5.0, "y_m": 0.0,
                                            "vx_mps": speed(k), "vy_mps": 0.0}]])
        phases.append(int(agent.act(obs, info).products["phase"][0]))
    assert phases[6:10] == [PERCEIVE] * 4 and phases[10:21] == [INACTIVE] * 11
    assert phases[21:25] == [PERCEIVE] * 4 and phases[25:] == [REACT] * 2
