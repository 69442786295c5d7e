"""Tests for the Gymnasium envs: registration, API conformance, determinism, the clock's
keyword arguments, actions, config errors, hazards and episode ends.

These run real highway-env substeps (about 50 ms per 10 Hz tick), so episodes are short:
a few ticks each, with scenario durations and hazard onsets overridden where needed.
"""

from __future__ import annotations

import math
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils import env_checker
from reflexdrive.envs import register_envs
from reflexdrive.envs.clock import DeadlineMiss
from reflexdrive.envs.clock.wrapper import ClockWrapper
from reflexdrive.envs.gym.single import DrivingEnv
from reflexdrive.envs.latency import LatencySpecError
from reflexdrive.envs.scenarios import SCENARIOS
from reflexdrive.envs.types import Command

from reflexdrive.common.validation import ConfigError

ENV_IDS = tuple(spec.env_id for spec in SCENARIOS.values())
SUBSTEP_S = 1 / 50
ZERO = np.zeros(2, dtype=np.float32)

# check_env warnings that are design choices, not defects: the action space is in physical
# units, the ego vector and lidar range rates are unbounded, and the wrapped env is wrapped.
EXPECTED_CHECKER_WARNINGS = re.compile(
    r"symmetric and normalized space|observation space (minimum|maximum) value is "
    r"(-)?infinity|different from the unwrapped version")


def _actions(n: int, seed: int = 0) -> list[np.ndarray]:
    """A fixed, varied action sequence: moderate accelerations, small steering."""
    rng = np.random.default_rng(seed)
    accel = rng.uniform(-3.0, 2.0, n)
    steer = rng.uniform(-0.02, 0.02, n)
    return [np.array([a, s], dtype=np.float32) for a, s in zip(accel, steer)]


def _check_env(env, **kwargs) -> None:
    """gymnasium's own `check_env`; fail on any checker warning other than the expected
    ones."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env_checker.check_env(env, **kwargs)
    unexpected = [str(w.message) for w in caught
                  if not EXPECTED_CHECKER_WARNINGS.search(str(w.message))]
    assert not unexpected


def _assert_same_step(a, b) -> None:
    """Two `(obs, info)` pairs (or step tuples reduced to them) are identical."""
    (obs_a, info_a), (obs_b, info_b) = a, b
    assert obs_a.keys() == obs_b.keys()
    for key in obs_a:
        np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=key)
    assert info_a["time_s"] == info_b["time_s"]
    assert info_a["tick"] == info_b["tick"]
    np.testing.assert_equal(info_a["hazard"], info_b["hazard"])
    np.testing.assert_array_equal(info_a["gt_objects"], info_b["gt_objects"])
    np.testing.assert_array_equal(info_a["gt_valid"], info_b["gt_valid"])
    for key in info_a["map"]:
        np.testing.assert_array_equal(info_a["map"][key], info_b["map"][key], err_msg=key)
    assert info_a["crashed"] == info_b["crashed"]


# ----------------------------------------------------------------------------- registration


def test_register_envs_is_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gym.register warns when it overrides an id
        register_envs()
        register_envs()
    for spec in SCENARIOS.values():
        registered = gym.registry[spec.env_id]
        assert registered.entry_point == "reflexdrive.envs.registration:make_env"
        assert registered.kwargs == {"scenario": spec.name}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_defaults(env_id):
    env = gym.make(env_id)
    assert isinstance(env.unwrapped, DrivingEnv)
    assert env.unwrapped.scenario.env_id == env_id
    config = env.get_wrapper_attr("clock_config")
    assert (config.mode, config.latency, config.on_overrun) == ("realtime", "fixed:0", "record")
    assert env.observation_space["bev"].shape == (4, 64, 64)
    assert env.observation_space["bev"].dtype == np.uint8
    assert env.observation_space["lidar"].shape == (64, 2)
    assert env.observation_space["lidar"].dtype == np.float32
    assert env.observation_space["ego"].shape == (8,)
    assert env.observation_space["ego"].dtype == np.float32


# ----------------------------------------------------------------------------- env checker


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env(env_id):
    env = gym.make(env_id, mode="realtime", latency="fixed:0.03")
    _check_env(env.unwrapped)
    _check_env(env)
    rendered = gym.make(env_id, render_mode="rgb_array")
    _check_env(rendered.unwrapped)


def test_render_rgb_array():
    env = gym.make("reflexdrive/Highway-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (300, 600, 3)


def test_render_none_returns_none():
    env = gym.make("reflexdrive/Highway-v0")
    env.reset(seed=0)
    assert env.unwrapped.render() is None


def test_unknown_render_mode():
    with pytest.raises(ConfigError, match="render_mode"):
        gym.make("reflexdrive/Highway-v0", render_mode="human")


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_episode(env_id):
    envs = [gym.make(env_id, mode="realtime", latency="fixed:0.03") for _ in range(2)]
    runs = [[env.reset(seed=3)] for env in envs]
    _assert_same_step(runs[0][0], runs[1][0])
    for action in _actions(10):
        for env, run in zip(envs, runs):
            obs, reward, terminated, truncated, info = env.step(action)
            assert obs in env.observation_space
            assert not (terminated or truncated)
            run.append((obs, info))
        _assert_same_step(runs[0][-1], runs[1][-1])
    assert runs[0][-1][1]["tick"] == 10
    assert runs[0][-1][1]["time_s"] == pytest.approx(1.0)
    # Reset with the same seed replays the start exactly, even after an episode.
    _assert_same_step(envs[0].reset(seed=3), runs[1][0])
    # Another seed starts elsewhere.
    obs, info = envs[1].reset(seed=4)
    start = runs[0][0]
    assert envs[1].unwrapped.init != envs[0].unwrapped.init
    assert (not np.array_equal(obs["bev"], start[0]["bev"])
            or not np.array_equal(info["gt_objects"], start[1]["gt_objects"])
            or not np.array_equal(obs["ego"], start[0]["ego"]))


def test_seedless_reset_draws_a_seed():
    env = gym.make("reflexdrive/Highway-v0")
    _, info = env.reset(seed=7)
    _, first = env.reset()
    _, second = env.reset()
    assert first["scenario_seed"] != second["scenario_seed"]
    _, again = env.reset(seed=7)
    assert again["scenario_seed"] == info["scenario_seed"] == 7



def test_reset_plays_a_given_scenario_init_with_its_seed():
    from reflexdrive.envs.scenarios import generate, make_config, without_hazard

    init = generate("stopped-vehicle-curve", make_config("stopped-vehicle-curve"), 11, 50)
    env = gym.make("reflexdrive/Highway-v0")
    _, info = env.reset(seed=3, options={"scenario_init": init})
    assert env.unwrapped.init == init and info["scenario_seed"] == 11
    twin = DrivingEnv("highway", counterfactual=True)
    twin.reset(seed=3, options={"scenario_init": init})
    assert twin.init == without_hazard(init)
    # the same world as the env of its own scenario reset with the init's seed
    own = gym.make("reflexdrive/StoppedVehicleCurve-v0")
    _assert_same_step(own.reset(seed=11), env.reset(options={"scenario_init": init}))

# ----------------------------------------------------------------------------- the clock's kwargs


def test_fixed_latency_reaches_the_clock():
    env = gym.make("reflexdrive/LeadBrake-v0", mode="realtime", latency="fixed:0.03")
    _, info = env.reset(seed=0)
    assert info["tick"] == 0 and info["time_s"] == 0.0
    for k in range(1, 4):
        _, _, _, _, info = env.step(ZERO)
        assert info["mode"] == "realtime" and info["deadline_miss"] is False
        assert info["tick"] == k and info["time_s"] == pytest.approx(0.1 * k)
        (record,) = info["ticks"]
        assert record.tick == k - 1 and record.observed
        assert record.t_s == pytest.approx(0.1 * (k - 1))
        assert record.latency_s == pytest.approx(0.03)
        assert record.lands_s == pytest.approx(record.t_s + 0.03)
        assert not record.overrun and record.dropped_after == 0
        assert len(info["substeps"]) == 5
        assert [o.time_s for o in info["substeps"]] == pytest.approx(
            [record.t_s + SUBSTEP_S * (j + 1) for j in range(5)])


def test_long_latency_spans_several_ticks():
    env = gym.make("reflexdrive/LeadBrake-v0", mode="realtime", latency="fixed:0.25")
    _, info = env.reset(seed=0)
    assert info["tick"] == 0
    _, _, terminated, _, info = env.step(ZERO)
    assert not terminated
    assert info["tick"] == 3 and info["time_s"] == pytest.approx(0.3)
    records = info["ticks"]
    assert [r.tick for r in records] == [0, 1, 2]
    assert [r.observed for r in records] == [True, False, False]
    assert records[0].latency_s == pytest.approx(0.25)
    assert records[0].lands_s == pytest.approx(0.25)
    assert records[0].dropped_after == 2
    assert records[0].overrun  # the default budget is one tick
    for record in records[1:]:
        assert math.isnan(record.latency_s) and math.isnan(record.lands_s)
        assert record.command is None
    assert len(info["substeps"]) == 15
    assert info["deadline_miss"] is False  # on_overrun="record"


def test_overrun_terminate():
    env = gym.make("reflexdrive/LeadBrake-v0", mode="realtime", latency="fixed:0.25",
                   budget=0.1, on_overrun="terminate")
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(ZERO)
    assert terminated and not truncated
    assert info["deadline_miss"] is True
    assert info["ticks"][0].overrun
    assert not info["crashed"]


def test_within_budget_does_not_terminate():
    env = gym.make("reflexdrive/LeadBrake-v0", mode="realtime", latency="fixed:0.05",
                   budget=0.06, on_overrun="terminate")
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(ZERO)
    assert not terminated and not truncated and info["deadline_miss"] is False


def test_overrun_raise():
    env = gym.make("reflexdrive/LeadBrake-v0", mode="realtime", latency="fixed:0.25",
                   budget=0.1, on_overrun="raise")
    env.reset(seed=0)
    with pytest.raises(DeadlineMiss, match="exceeds the budget"):
        env.step(ZERO)


def test_stage_budget_overrun_raises():
    env = gym.make("reflexdrive/LeadBrake-v0", latency="fixed:perception=0.03,planning=0.01",
                   stage_budgets={"perception": 0.02}, on_overrun="raise")
    env.reset(seed=0)
    with pytest.raises(DeadlineMiss, match="perception"):
        env.step(ZERO)


def test_lockstep_advances_one_tick_per_step():
    env = gym.make("reflexdrive/LeadBrake-v0", mode="lockstep", latency="fixed:0.25")
    env.reset(seed=0)
    for k in range(1, 4):
        _, _, terminated, _, info = env.step(ZERO)
        assert not terminated
        assert info["mode"] == "lockstep"
        assert info["tick"] == k and info["time_s"] == pytest.approx(0.1 * k)
        (record,) = info["ticks"]
        assert record.observed and record.dropped_after == 0
        assert record.latency_s == pytest.approx(0.25)  # recorded ...
        assert record.overrun  # ... and checked against the budget ...
        assert record.lands_s == pytest.approx(record.t_s)  # ... but the world waited
        assert len(info["substeps"]) == 5


def test_unwrapped_step_is_lockstep_without_latency():
    env = gym.make("reflexdrive/Highway-v0").unwrapped
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
    (record,) = info["ticks"]
    assert record.latency_s == 0.0 and record.lands_s == 0.0
    assert record.command == Command(1.0, 0.0)


# ----------------------------------------------------------------------------- actions


def test_action_space_bounds():
    space = gym.make("reflexdrive/Highway-v0").action_space
    assert isinstance(space, gym.spaces.Box) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low, [-8.0, -0.5])
    np.testing.assert_array_equal(space.high, [4.0, 0.5])


def test_out_of_bounds_actions_are_clipped():
    envs = [gym.make("reflexdrive/Highway-v0", latency="fixed:0.03") for _ in range(2)]
    for env in envs:
        env.reset(seed=1)
    wild = envs[0].step(np.array([100.0, 5.0]))
    edge = envs[1].step(np.array([4.0, 0.5], dtype=np.float32))
    assert wild[4]["ticks"][0].command == Command(4.0, 0.5)
    _assert_same_step((wild[0], wild[4]), (edge[0], edge[4]))
    _, _, _, _, info = envs[0].step([-100.0, -5.0])  # plain lists are accepted too
    assert info["ticks"][0].command == Command(-8.0, -0.5)


@pytest.mark.parametrize("action", [
    [math.nan, 0.0], [0.0, math.inf], [1.0, 0.0, 0.0], [1.0],
])
def test_invalid_action_raises_and_leaves_env_usable(action):
    env = gym.make("reflexdrive/Highway-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected 2 finite numbers \[acceleration, steering\]"):
        env.step(np.array(action))
    # Nothing advanced: the next valid step is the first tick.
    _, _, _, _, info = env.step(ZERO)
    assert info["tick"] == 1 and info["ticks"][0].tick == 0


def test_unwrapped_nan_action_raises():
    env = gym.make("reflexdrive/Highway-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([0.0, np.nan]))


def test_step_before_reset_raises():
    env = gym.make("reflexdrive/Highway-v0", disable_env_checker=True)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(ZERO)


# ----------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(("kwargs", "error_type", "field", "hints"), [
    ({"mode": "bogus"}, ConfigError, "mode", ("realtime", "lockstep")),
    ({"on_overrun": "ignore"}, ConfigError, "on_overrun", ("record", "terminate", "raise")),
    ({"latency": "fixed:-1"}, LatencySpecError, "latency", ("fixed:SECONDS", "[0, 60)")),
    ({"latency": "gaussian:0.1"}, LatencySpecError, "latency", ("fixed:SECONDS", "measured")),
    ({"simulation_frequency": 50, "policy_frequency": 7}, ConfigError, "policy_frequency",
     ("must divide simulation_frequency=50",)),
    ({"budget": -0.1}, ConfigError, "budget", ("(0, 3600]",)),
    ({"stage_budgets": {"perception": 0.0}}, ConfigError, "stage_budgets_s[perception]",
     ("(0, 3600]",)),
    ({"scenario_config": {"bogus": 1}}, ConfigError, "lead-brake.bogus",
     ("allowed keys are", "decel_mps2")),
    ({"scenario_config": {"decel_mps2": (1.0, 20.0)}}, ConfigError, "decel_mps2[1]",
     ("[0.5, 12]",)),
    ({"sensors": {"range_m": -1.0}}, ConfigError, "sensors.range_m", ("(0, 500]",)),
    ({"reward": {"bogus": 1}}, ConfigError, "reward.bogus", ("collision_penalty",)),
])
def test_bad_kwargs_raise_config_error(kwargs, error_type, field, hints):
    with pytest.raises(ConfigError) as excinfo:
        gym.make("reflexdrive/LeadBrake-v0", **kwargs)
    error = excinfo.value
    assert isinstance(error, error_type)
    assert error.field == field
    message = str(error)
    assert message.startswith(f"{field}=") and "\n" not in message
    for hint in hints:
        assert hint in message


def test_clock_wrapper_rejects_mismatched_frequencies():
    from reflexdrive.envs.config import ClockConfig

    world = DrivingEnv("highway", simulation_frequency=50, policy_frequency=10)
    with pytest.raises(ValueError, match="frequencies"):
        ClockWrapper(world, ClockConfig(simulation_frequency=50, policy_frequency=5))


# ----------------------------------------------------------------------------- hazards


def test_lead_brake_onset_and_braking():
    env = gym.make("reflexdrive/LeadBrake-v0", mode="lockstep",
                   scenario_config={"onset_s": (0.4, 0.4), "decel_mps2": (6.0, 6.0)})
    _, info = env.reset(seed=0)
    hazard = info["hazard"]
    assert hazard["kind"] == "lead_brake" and hazard["vehicle_id"] == 1
    assert hazard["onset_s"] == pytest.approx(0.4) and not hazard["active"]
    world = env.unwrapped

    def lead_speed() -> float:
        return float(world.backend.snapshot().speed[0, hazard["vehicle_id"]])

    cruise = lead_speed()
    for k in range(1, 7):
        _, _, terminated, _, info = env.step(ZERO)
        assert not terminated
        assert info["hazard"]["onset_s"] == pytest.approx(0.4)
        assert info["hazard"]["active"] is (info["time_s"] >= 0.4 - 1e-9)
        if k <= 4:
            assert lead_speed() == pytest.approx(cruise, abs=1e-6)  # cruising until t_h
    # Braking starts exactly at t_h = 0.4 s: 0.2 s later the lead is 1.2 m/s slower.
    assert lead_speed() == pytest.approx(cruise - 6.0 * 0.2, abs=1e-6)


def test_lead_brake_default_onset_is_quantised():
    config = SCENARIOS["lead-brake"].config_type()
    env = gym.make("reflexdrive/LeadBrake-v0")
    for seed in range(3):
        _, info = env.reset(seed=seed)
        onset = info["hazard"]["onset_s"]
        assert math.isfinite(onset)
        assert config.onset_s[0] <= onset <= config.onset_s[1]
        assert abs(onset / SUBSTEP_S - round(onset / SUBSTEP_S)) < 1e-9
        assert onset == env.unwrapped.init.hazard.onset_substep * SUBSTEP_S
        assert info["hazard"]["active"] is False


def test_cut_in_onset():
    env = gym.make("reflexdrive/CutIn-v0", scenario_config={"onset_s": (0.1, 0.1)})
    _, info = env.reset(seed=0)
    assert info["hazard"]["kind"] == "cut_in" and info["hazard"]["onset_s"] == pytest.approx(0.1)
    assert not info["hazard"]["active"]
    _, _, _, _, info = env.step(ZERO)
    assert info["hazard"]["active"]


def test_stopped_vehicle_onset_when_in_range():
    # At 20 m/s the stopped vehicle's rear comes within the 48 m trigger range after 0.3 s.
    env = gym.make("reflexdrive/StoppedVehicle-v0",
                   scenario_config={"onset_s": (0.3, 0.3), "ego_speed_mps": (20.0, 20.0)})
    _, info = env.reset(seed=0)
    assert info["hazard"]["kind"] == "stopped_vehicle"
    assert math.isinf(info["hazard"]["onset_s"]) and not info["hazard"]["active"]
    for _ in range(2):
        _, _, _, _, info = env.step(ZERO)
        assert math.isinf(info["hazard"]["onset_s"]) and not info["hazard"]["active"]
    for _ in range(2):
        _, _, _, _, info = env.step(ZERO)
    onset = info["hazard"]["onset_s"]
    assert 0.3 - 1e-9 <= onset <= 0.3 + SUBSTEP_S + 1e-9
    assert abs(onset / SUBSTEP_S - round(onset / SUBSTEP_S)) < 1e-9
    assert info["hazard"]["active"]
    objects = info["gt_objects"][info["gt_valid"]]
    stopped = objects[objects[:, 7] == info["hazard"]["vehicle_id"]][0]
    assert stopped[0] - 2.5 <= 48.0      # its rear has reached the sensors' range


def test_stopped_vehicle_onset_unknown_at_reset_by_default():
    env = gym.make("reflexdrive/StoppedVehicle-v0")
    for seed in range(3):
        _, info = env.reset(seed=seed)
        assert math.isinf(info["hazard"]["onset_s"]) and not info["hazard"]["active"]


@pytest.mark.parametrize("env_id", ["reflexdrive/Highway-v0", "reflexdrive/Merge-v0"])
def test_no_hazard(env_id):
    _, info = gym.make(env_id).reset(seed=0)
    assert info["hazard"]["kind"] == "none" and info["hazard"]["vehicle_id"] == -1
    assert math.isinf(info["hazard"]["onset_s"]) and not info["hazard"]["active"]


# ----------------------------------------------------------------------------- episode ends


def test_crash_terminates():
    env = gym.make("reflexdrive/LeadBrake-v0", scenario_config={
        "gap_m": (2.0, 2.0), "onset_s": (0.1, 0.1), "decel_mps2": (12.0, 12.0)})
    env.reset(seed=0)
    for _ in range(15):
        _, reward, terminated, truncated, info = env.step(np.array([4.0, 0.0], np.float32))
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert info["crashed"] and not info["offroad"] and not info["deadline_miss"]
    assert info["substeps"][-1].crashed
    assert not any(o.crashed for o in info["substeps"][:-1])  # stopped at the crash substep
    assert reward < -9.0  # collision penalty
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.step(ZERO)
    _, info = env.reset(seed=0)  # a reset starts over
    assert not info["crashed"] and info["tick"] == 0


def test_duration_truncates():
    env = gym.make("reflexdrive/Highway-v0", latency="fixed:0.03",
                   scenario_config={"duration_s": 0.3})
    env.reset(seed=0)
    for k in range(1, 4):
        _, _, terminated, truncated, info = env.step(ZERO)
        assert not terminated and not info["crashed"]
        assert truncated is (k == 3)
    assert info["time_s"] == pytest.approx(0.3) and info["tick"] == 3
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.step(ZERO)


def test_duration_truncates_mid_window():
    # A decision that spans 3 ticks ends at the duration, not past it.
    env = gym.make("reflexdrive/Highway-v0", latency="fixed:0.25",
                   scenario_config={"duration_s": 0.2})
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(ZERO)
    assert truncated and not terminated
    assert info["time_s"] == pytest.approx(0.2) and len(info["substeps"]) == 10
