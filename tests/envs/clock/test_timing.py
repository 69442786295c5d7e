"""`obs["timing"]` (`envs.clock.timing`): the observation's age and the command in flight,
pinned from the tick contract at 10 Hz ticks, and identical on both backends."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from reflexdrive.envs.clock.timing import TIMING_FEATURES
from reflexdrive.envs.gym.single import DrivingEnv
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.envs.latency import LatencyProfile, save_profile
from reflexdrive.envs.registration import make_env

SHORT = {"duration_s": 2.0, "onset_s": (1.0, 1.5)}
EPS = 1e-6   # float32 rounding of values like 0.15 s


def action(k: int) -> np.ndarray:
    """A distinct command per decision: `[0.5 (k + 1) m/s^2, 0.01 (k + 1) rad]`."""
    return np.array([0.5 * (k + 1), 0.01 * (k + 1)])


def single_timings(latency: str, decisions: int, execution: str = "sequential",
                   mode: str = "realtime") -> list[np.ndarray]:
    """The single env's `obs["timing"]` at each decision (before it acts)."""
    env = make_env("lead-brake", latency=latency, execution=execution, mode=mode,
                   observations=False, scenario_config=SHORT)
    obs, _ = env.reset(seed=3)
    seen = [obs["timing"]]
    for k in range(decisions - 1):
        obs, *_ = env.step(action(k))
        seen.append(obs["timing"])
    return seen


def test_space_and_features():
    env = DrivingEnv("lead-brake", observations=False, scenario_config=SHORT)
    assert env.observation_space["timing"].shape == (len(TIMING_FEATURES),) == (4,)
    obs, _ = env.reset(seed=0)
    assert obs["timing"].dtype == np.float32
    obs, *_ = env.step(np.array([1.0, 0.02]))         # lockstep: [0, held command, 0]
    np.testing.assert_array_equal(obs["timing"], np.float32([0.0, 1.0, 0.02, 0.0]))


def test_check_env_passes_on_the_clock():
    check_env(make_env("lead-brake", latency="fixed:0.03+0.1", scenario_config=SHORT,
                       observations=False).unwrapped, skip_render_check=True)
    check_env(make_env("lead-brake", latency="fixed:0.25", scenario_config=SHORT,
                       observations=False), skip_render_check=True)


def test_sequential_fixed_latency_above_a_tick():
    """fixed:0.25 at 10 Hz: the agent observes at ticks 0, 3, 6 (m = 3); its command lands
    at t_k + 0.25, before it observes again, so nothing is in flight when it decides: the
    latency it will be charged, the held command (its previous one), 0."""
    seen = single_timings("fixed:0.25", 4)
    np.testing.assert_allclose(seen[0], [0.25, 0.0, 0.0, 0.0], atol=EPS)
    for k in range(1, 4):
        np.testing.assert_allclose(seen[k], [0.25, *action(k - 1), 0.0], atol=EPS)


def test_batched_busy_ticks_show_the_command_in_flight():
    """The batched env also returns the busy ticks' observations: the command decided at
    t_0 lands at 0.25 s, i.e. 0.15 s after t_1 and 0.05 s after t_2; landed by t_3."""
    env = BatchedDrivingEnv(1, "lead-brake", latency="fixed:0.25", observations=False,
                            scenario_config=SHORT)
    env.reset(seed=3)
    rows = [env.step(action(0)[None])[0]["timing"][0] for _ in range(3)]
    np.testing.assert_allclose(rows[0], [0.25, *action(0), 0.15], atol=EPS)
    np.testing.assert_allclose(rows[1], [0.25, *action(0), 0.05], atol=EPS)
    np.testing.assert_allclose(rows[2], [0.25, *action(0), 0.0], atol=EPS)


def test_latency_below_a_tick_and_the_extra_delay():
    for spec, latency in (("fixed:0.03", 0.03), ("fixed:0.03+0.1", 0.13)):
        seen = single_timings(spec, 3)
        np.testing.assert_allclose(seen[0], [latency, 0.0, 0.0, 0.0], atol=EPS)
        for k in (1, 2):
            np.testing.assert_allclose(seen[k], [latency, *action(k - 1), 0.0], atol=EPS)


def test_pipelined_commands_are_in_flight():
    """Stages 0.1 + 0.1 + 0.05 s, each within a 0.1 s tick: a frame every tick, each command
    landing 0.25 s after its frame. At t_k the command of tick k-1 lands at
    t_{k-1} + 0.25 = t_k + 0.15 (tick k-2's landed at t_k + 0.05, older: superseded in
    the sense of "newest in flight" only)."""
    seen = single_timings("fixed:a=0.1,b=0.1,c=0.05", 5, execution="pipelined")
    np.testing.assert_allclose(seen[0], [0.25, 0.0, 0.0, 0.0], atol=EPS)
    for k in range(1, 5):
        np.testing.assert_allclose(seen[k], [0.25, *action(k - 1), 0.15], atol=EPS)


def test_lockstep_shows_no_latency():
    seen = single_timings("fixed:0.25", 3, mode="lockstep")
    for k in (1, 2):
        np.testing.assert_allclose(seen[k], [0.0, *action(k - 1), 0.0], atol=EPS)


def test_measured_latency_shows_the_previous_decision():
    env = make_env("lead-brake", latency="measured", observations=False,
                   scenario_config=SHORT)
    obs, _ = env.reset(seed=3)
    assert obs["timing"][0] == 0.0                      # first tick: nothing measured yet
    env.report_latency({"perception": 0.02, "planning": 0.03})
    obs, *_ = env.step(action(0))
    np.testing.assert_allclose(obs["timing"], [0.05, *action(0), 0.0], atol=EPS)
    obs, *_ = env.reset(seed=4)
    assert obs["timing"][0] == 0.0


def _profile(tmp_path) -> str:
    rng = np.random.default_rng(1)
    stages = {"perception": list(rng.uniform(0.01, 0.2, 20)),
              "planning": list(rng.uniform(0.0, 0.12, 20))}
    path = tmp_path / "p.json"
    save_profile(LatencyProfile(stack="s", device="d", batch_size=1, stages=stages,
                                created=""), path)
    return f"profile:{path}"


def test_profile_latency_is_known_before_the_agent_acts(tmp_path):
    """A profile's draws are keyed by the episode seed and the decision's index, so the
    latency shown with an observation is the one the decision on it is then charged."""
    env = make_env("lead-brake", latency=_profile(tmp_path) + "+0.01", observations=False,
                   scenario_config=SHORT)
    obs, _ = env.reset(seed=5)
    shown = []
    for k in range(6):
        shown.append(obs["timing"][0])
        obs, _, term, trunc, info = env.step(action(k))
        assert info["ticks"][0].latency_s == pytest.approx(float(shown[-1]), abs=EPS)
        if term or trunc:
            break
    assert len(set(shown)) > 3


def _drive_both(latency: str, execution: str, mode: str = "realtime",
                reported: bool = False) -> tuple[list, list]:
    """The timing vectors handed to the deciding agent on the single env and on row 0 of
    the batched env (where `clock.observing()`), with the same decisions."""
    single = make_env("lead-brake", latency=latency, execution=execution, mode=mode,
                      observations=False, scenario_config=SHORT)
    batched = BatchedDrivingEnv(2, "lead-brake", latency=latency, execution=execution,
                                mode=mode, observations=False, scenario_config=SHORT,
                                autoreset_mode="disabled")
    obs_s, _ = single.reset(seed=7)
    obs_b, _ = batched.reset(seed=[7, 8])
    rng = np.random.default_rng(0)
    got_s, got_b = [], []
    done_s = done_b = False
    decision = np.zeros(2)
    while not done_b:
        if batched.clock.observing()[0]:
            got_b.append(obs_b["timing"][0].copy())
            decision = np.array([rng.uniform(-3, 2), rng.uniform(-0.02, 0.02)])
            if reported:
                stages = {"total": float(rng.uniform(0.0, 0.3))}
                batched.report_latency(stages)
                single.report_latency(stages)
            if not done_s:
                got_s.append(obs_s["timing"].copy())
                obs_s, _, term, trunc, _ = single.step(decision)
                done_s = term or trunc
        obs_b, _, term_b, trunc_b, _ = batched.step(np.stack([decision, decision]))
        done_b = bool(term_b[0] or trunc_b[0])
    return got_s, got_b


@pytest.mark.parametrize("latency, execution, mode, reported", [
    ("fixed:0.25", "sequential", "realtime", False),
    ("fixed:0.03+0.1", "sequential", "realtime", False),
    ("PROFILE+0.02", "sequential", "realtime", False),
    ("PROFILE", "pipelined", "realtime", False),
    ("fixed:0.03+0..0.3", "sequential", "realtime", False),
    ("PROFILE*0.5+0.05..0.15", "sequential", "realtime", False),
    ("PROFILE+0..0.3", "pipelined", "realtime", False),
    ("fixed:a=0.05,b=0.17", "pipelined", "realtime", False),
    ("fixed:0.25", "sequential", "lockstep", False),
    ("measured", "sequential", "realtime", True),
])
def test_both_backends_give_identical_vectors(tmp_path, latency, execution, mode, reported):
    latency = latency.replace("PROFILE", _profile(tmp_path))
    got_s, got_b = _drive_both(latency, execution, mode, reported)
    assert len(got_s) == len(got_b) > 5
    np.testing.assert_array_equal(np.array(got_b), np.array(got_s))
    if execution == "pipelined":
        assert any(row[3] > 0 for row in got_s)           # commands were in flight
