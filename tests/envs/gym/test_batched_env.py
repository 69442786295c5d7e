"""`BatchedDrivingEnv`: the batched backend + batched clock as a Gymnasium VectorEnv.

Its per-env behaviour must be the single env's (highway backend + `ClockWrapper`): same
tick records, same trajectories, same episode ends; plus Gymnasium's vector conventions.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from reflexdrive.envs.clock import DeadlineMiss
from reflexdrive.envs.gym.vector import BatchedDrivingEnv, batched_scenarios
from reflexdrive.envs.registration import make_env

import reflexdrive  # noqa: F401  (registers the ids)
from reflexdrive.common.validation import ConfigError
from reflexdrive.run.runner import RunConfig, run

SHORT = {"duration_s": 1.0}


def test_make_vec_builds_the_batched_env():
    envs = gym.make_vec("reflexdrive/LeadBrake-v0", num_envs=3,
                        vectorization_mode="vector_entry_point", latency="fixed:0.03")
    assert isinstance(envs.unwrapped, BatchedDrivingEnv) and envs.num_envs == 3
    obs, info = envs.reset(seed=7)
    assert envs.observation_space.contains(obs)
    assert info["scenario_seed"].tolist() == [7, 8, 9]
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert envs.observation_space.contains(obs) and reward.shape == (3,)
    assert info["tick"].tolist() == [1, 1, 1] and info["observing"].all()
    assert set(batched_scenarios()) == {"highway", "lead-brake", "cut-in", "stopped-vehicle",
                                        "merge", "roundabout", "intersection",
                                        "intersection-cross-traffic", "stopped-vehicle-curve"}


def test_bad_arguments():
    with pytest.raises(ConfigError, match="scenario='nowhere'"):
        BatchedDrivingEnv(2, "nowhere")
    with pytest.raises(ConfigError, match="num_envs=0"):
        BatchedDrivingEnv(0, "highway")
    with pytest.raises(ConfigError, match="autoreset_mode='sometimes'"):
        BatchedDrivingEnv(1, "highway", autoreset_mode="sometimes")
    with pytest.raises(ConfigError, match="latency"):
        BatchedDrivingEnv(1, "highway", latency="fixed:-1")


def _drive_both(scenario, latency, actions, seed=3, config=None, mode="realtime"):
    """Step the single env (one decision per step) and the batched env (one tick per step)
    with the same decisions; return both envs' tick records and final infos."""
    single = make_env(scenario, mode=mode, latency=latency, scenario_config=config)
    batched = BatchedDrivingEnv(1, scenario, mode=mode, latency=latency, record=True,
                                scenario_config=config, autoreset_mode="disabled")
    _, info_s = single.reset(seed=seed)
    _, info_b = batched.reset(seed=[seed])
    ticks_s, ticks_b, done_s, done_b = [], [], False, False
    decisions = iter(actions)
    action = np.zeros(2)
    while not (done_s and done_b):
        if not done_b:
            if batched.clock.observing()[0]:
                action = next(decisions, np.zeros(2))
                if not done_s:
                    _, _, term, trunc, info_s = single.step(action)
                    ticks_s.extend(info_s["ticks"])
                    done_s = term or trunc
            _, _, term_b, trunc_b, info_b = batched.step(action[None])
            ticks_b.extend(info_b["ticks"][0])
            done_b = bool(term_b[0] or trunc_b[0])
    return single, batched, ticks_s, ticks_b, info_s, info_b


@pytest.mark.parametrize("latency", ["fixed:0.03", "fixed:0.25", "fixed:0.1"])
def test_ticks_and_trajectory_match_the_single_env(latency):
    rng = np.random.default_rng(0)
    actions = [np.array([rng.uniform(-3, 2), rng.uniform(-0.02, 0.02)]) for _ in range(40)]
    single, batched, ticks_s, ticks_b, info_s, info_b = _drive_both(
        "lead-brake", latency, actions, config={"duration_s": 3.0, "onset_s": (1.0, 1.5)})
    end_s = info_s["time_s"]
    # repr: exact float digits, and NaN (not observed) compares equal to NaN
    assert list(map(repr, ticks_b)) == [repr(t) for t in ticks_s if t.t_s < end_s - 1e-9]
    assert any(not t.observed for t in ticks_b) == (latency == "fixed:0.25")
    snap_s = single.unwrapped.backend.snapshot()
    snap_b = batched.backend.snapshot()
    n = snap_s.position.shape[1]
    np.testing.assert_allclose(snap_b.position[0, :n], snap_s.position[0], atol=1e-6)
    np.testing.assert_allclose(snap_b.speed[0, :n], snap_s.speed[0], atol=1e-6)
    assert info_b["hazard"]["onset_s"][0] == info_s["hazard"]["onset_s"]


def test_busy_envs_ignore_actions_while_frames_drop():
    env = BatchedDrivingEnv(2, "highway", latency="fixed:0.25", record=True,
                            scenario_config=SHORT)
    env.reset(seed=0)
    seen = []
    for k in range(4):
        action = np.full((2, 2), [1.0 + k, 0.0])
        _, _, _, _, info = env.step(action)
        seen.append(info["observing"].tolist())
        for record in info["ticks"][0]:
            assert record.observed == (k in (0, 3))
            if record.observed:
                assert record.command.acceleration == 1.0 + k
    assert seen == [[True, True], [False, False], [False, False], [True, True]]


def test_mid_tick_crash_freezes_the_env_where_the_single_env_stops():
    config = {"gap_m": (3.0, 3.0), "onset_s": (0.2, 0.2), "duration_s": 3.0}
    actions = [np.array([4.0, 0.0])] * 30
    _, batched, ticks_s, ticks_b, info_s, info_b = _drive_both(
        "lead-brake", "fixed:0.03", actions, config=config)
    assert info_s["crashed"] and info_b["crashed"][0]
    assert info_b["time_s"][0] == pytest.approx(info_s["time_s"])
    assert [s.time_s for s in info_b["substeps"][0]][-1] == pytest.approx(info_s["time_s"])


def test_autoreset_next_step():
    env = BatchedDrivingEnv(2, "highway", scenario_config={"duration_s": 0.3})
    env.reset(seed=0)
    zero = np.zeros((2, 2))
    for _ in range(2):
        _, _, _, truncated, _ = env.step(zero)
        assert not truncated.any()
    _, _, _, truncated, _ = env.step(zero)
    assert truncated.all()
    obs, reward, terminated, truncated, info = env.step(zero)     # the reset step
    assert (reward == 0).all() and not (terminated | truncated).any()
    assert info["tick"].tolist() == [0, 0] and (info["scenario_seed"] != [0, 1]).all()


def test_autoreset_same_step_and_disabled():
    env = BatchedDrivingEnv(2, "highway", scenario_config={"duration_s": 0.2},
                            autoreset_mode="same_step")
    env.reset(seed=0)
    env.step(np.zeros((2, 2)))
    obs, _, _, truncated, info = env.step(np.zeros((2, 2)))
    assert truncated.all() and info["final_obs"][0] is not None
    assert (env.backend.substep_index == 0).all()
    for i in range(2):                 # the final observation, not the new episode's first
        final = info["final_obs"][i]
        assert not np.shares_memory(final["bev"], obs["bev"])
        assert final["ego"][0] != obs["ego"][i, 0]          # speed at the end vs at a start
    disabled = BatchedDrivingEnv(2, "highway", scenario_config={"duration_s": 0.1},
                                 autoreset_mode="disabled")
    disabled.reset(seed=0)
    disabled.step(np.zeros((2, 2)))
    with pytest.raises(RuntimeError, match="reset_mask"):
        disabled.step(np.zeros((2, 2)))
    _, info = disabled.reset(seed=[5, 6], options={"reset_mask": np.array([True, False])})
    assert disabled.backend.substep_index.tolist() == [0, 5]
    assert info["scenario_seed"].tolist() == [5, 1]


NOISY = {"bev_position_noise_m": 0.4, "bev_dropout_prob": 0.2, "lidar_range_noise_m": 0.05,
         "lidar_range_rate_noise_mps": 0.1, "lidar_dropout_prob": 0.1}


def test_sensor_noise_does_not_depend_on_batching():
    """A world's `bev` and `lidar` noise is a function of its episode (scenario seed) and
    tick only: the same seed alone (B = 1) and as world 3 of B = 5 sees the same
    observations, tick after tick, also after a per-world reset mid-run."""
    kwargs = dict(latency="fixed:0.03", sensors=NOISY, autoreset_mode="disabled")
    alone = BatchedDrivingEnv(1, "highway", **kwargs)
    among = BatchedDrivingEnv(5, "highway", **kwargs)
    truth = BatchedDrivingEnv(1, "highway", latency="fixed:0.03", autoreset_mode="disabled",
                              sensors={"lidar_range_noise_m": 0.0,
                                       "lidar_range_rate_noise_mps": 0.0})
    rng = np.random.default_rng(4)

    def check(obs_a, obs_b, info_a, info_b):
        assert info_a["tick"][0] == info_b["tick"][3]
        np.testing.assert_array_equal(obs_a["bev"][0], obs_b["bev"][3])
        np.testing.assert_array_equal(obs_a["lidar"][0], obs_b["lidar"][3])

    def steps(count, obs_a, info_a, obs_b, info_b, noiseless=None):
        seen = [obs_a["lidar"][0].copy()]
        for _ in range(count):
            actions = np.column_stack([rng.uniform(-2, 1, 5), rng.uniform(-0.01, 0.01, 5)])
            obs_a, _, _, _, info_a = alone.step(actions[3:4])
            obs_b, _, _, _, info_b = among.step(actions)
            check(obs_a, obs_b, info_a, info_b)
            seen.append(obs_a["lidar"][0].copy())
            if noiseless is not None:
                plain, *_ = noiseless.step(actions[3:4])
                hits = plain["lidar"][0, :, 0] < 80.0
                assert hits.any()                            # returns, hence noise, seen
                assert not np.array_equal(plain["lidar"][0], obs_a["lidar"][0])
        return seen

    obs_a, info_a = alone.reset(seed=[11])
    obs_b, info_b = among.reset(seed=[2, 3, 4, 11, 5])
    truth.reset(seed=[11])
    check(obs_a, obs_b, info_a, info_b)
    seen = steps(4, obs_a, info_a, obs_b, info_b, noiseless=truth)
    assert not np.array_equal(seen[-1], seen[-2])
    # world 3 starts another episode while the others go on: its tick counts from 0 again
    mask = np.array([False, False, False, True, False])
    obs_b, info_b = among.reset(seed=[0, 0, 0, 21, 0], options={"reset_mask": mask})
    obs_a, info_a = alone.reset(seed=[21])
    assert info_b["tick"].tolist() == [4, 4, 4, 0, 4]
    check(obs_a, obs_b, info_a, info_b)
    steps(3, obs_a, info_a, obs_b, info_b)
    # the same episode as world 0 of another batch: the same again
    other = BatchedDrivingEnv(2, "highway", **kwargs)
    obs_c, _ = other.reset(seed=[21, 8])
    obs_a, _ = alone.reset(seed=[21])
    np.testing.assert_array_equal(obs_c["bev"][0], obs_a["bev"][0])
    np.testing.assert_array_equal(obs_c["lidar"][0], obs_a["lidar"][0])


def test_both_backends_key_the_noise_by_episode_and_tick(monkeypatch):
    """The highway env and the batched env pass the sensors the same noise keys for the same
    episode and tick (`sensors.episode_noise_keys`)."""
    from reflexdrive.envs import sensors

    keys = {"single": [], "batched": []}
    render_bev, observe = sensors.render_bev, sensors.observe

    def spy_bev(snapshot, road, config, rng=None, *args, **kwargs):
        keys["single"].append((rng.bev.copy(), rng.lidar.copy()))
        return render_bev(snapshot, road, config, rng, *args, **kwargs)

    def spy_observe(snapshot, road, config, rng=None, *args, **kwargs):
        keys["batched"].append((rng.bev.copy(), rng.lidar.copy()))
        return observe(snapshot, road, config, rng, *args, **kwargs)

    monkeypatch.setattr(sensors, "render_bev", spy_bev)
    monkeypatch.setattr(sensors, "observe", spy_observe)
    single = make_env("highway", latency="fixed:0.03", scenario_config=SHORT)
    batched = BatchedDrivingEnv(1, "highway", latency="fixed:0.03", scenario_config=SHORT)
    single.reset(seed=6)
    batched.reset(seed=[6])
    for _ in range(3):
        single.step(np.zeros(2))
        batched.step(np.zeros((1, 2)))
    assert len(keys["single"]) == len(keys["batched"]) == 4
    for (bev_s, lidar_s), (bev_b, lidar_b) in zip(keys["single"], keys["batched"]):
        np.testing.assert_array_equal(bev_s, bev_b)
        np.testing.assert_array_equal(lidar_s, lidar_b)
    expected = sensors.episode_noise_keys([6], [3])
    np.testing.assert_array_equal(keys["batched"][-1][1], expected.lidar)
    assert len({k[0].tobytes() for k in keys["batched"]}) == 4      # a key per tick


def test_overrun_terminate_and_raise():
    env = BatchedDrivingEnv(2, "highway", latency="fixed:0.12", budget=0.1,
                            on_overrun="terminate")
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(np.zeros((2, 2)))
    assert terminated.all() and info["deadline_miss"].all()
    strict = BatchedDrivingEnv(1, "highway", latency="fixed:0.12", budget=0.1,
                               on_overrun="raise")
    strict.reset(seed=0)
    with pytest.raises(DeadlineMiss, match="exceeds the budget"):
        strict.step(np.zeros((1, 2)))


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["lead-brake", "cut-in", "stopped-vehicle"])
def test_staged_runs_agree_across_backends(scenario):
    """`reflexdrive run --stack staged` gives the same reaction times and outcomes with
    either backend for the same seeds."""
    results = {}
    for backend in ("highway", "batched"):
        config = RunConfig(scenario=scenario, episodes=3, seed=11, latency="fixed:0.03",
                           envs=2 if backend == "batched" else 1, backend=backend,
                           scenario_config={"duration_s": 6.0})
        results[backend], _ = run(config, progress=False)
    a, b = results["highway"], results["batched"]
    assert a["seed"].tolist() == b["seed"].tolist()
    for column in ("hazard_onset_s", "reaction_time_s", "reaction_wait_s", "reaction_notice_s",
                   "reaction_compute_s", "collided", "ticks", "end_reason"):
        assert a[column].equals(b[column]), column
    for column in ("min_gap_m", "min_ttc_s", "progress_m", "peak_decel_mps2"):
        np.testing.assert_allclose(b[column], a[column], rtol=1e-6, atol=1e-3, err_msg=column)


def test_profile_latency_of_each_env_is_its_own_seeded_stream(tmp_path):
    """Env `i` replays the rows a `ProfileLatency` reset with its episode's seed draws, at
    the ticks it observes, through auto-resets (the vector env's one `sample_batch` call)."""
    from reflexdrive.envs.latency import LatencyProfile, parse_latency, save_profile

    rng = np.random.default_rng(1)
    stages = {"perception": list(rng.uniform(0.01, 0.2, 20)),
              "planning": list(rng.uniform(0.0, 0.05, 20))}
    path = tmp_path / "p.json"
    save_profile(LatencyProfile(stack="s", device="d", batch_size=1, stages=stages,
                                created=""), path)
    spec = f"profile:{path}+0.01"
    env = BatchedDrivingEnv(3, "lead-brake", latency=spec, record=True, observations=False,
                            scenario_config={"duration_s": 1.0, "onset_s": (0.5, 0.5)})
    _, info = env.reset(seed=4)
    seeds = [None] * 3
    singles = [None] * 3
    checked = episodes = 0
    for _ in range(40):
        for i in range(3):
            if info["scenario_seed"][i] != seeds[i]:            # a new episode: new stream
                seeds[i] = info["scenario_seed"][i]
                singles[i] = parse_latency(spec)
                singles[i].reset(int(seeds[i]))
                episodes += 1
        _, _, _, _, info = env.step(np.zeros((3, 2)))
        for i in range(3):
            if info["scenario_seed"][i] != seeds[i]:            # auto-reset at this step
                assert info["ticks"][i] == []
                continue
            for record in info["ticks"][i]:
                if record.observed:
                    assert record.stage_latency_s == singles[i].sample()
                    checked += 1
    env.close()
    assert checked > 50 and episodes > 6
