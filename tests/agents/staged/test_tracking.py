"""KalmanTracker: ego-motion-compensated constant-acceleration filtering, Hungarian
association and track management, and the trackers' acceleration estimates, on hand-built
scenes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from reflexdrive.agents.staged.tracking import (
    IdentityTracker,
    KalmanTracker,
    KalmanTrackerConfig,
    predict_constant_acceleration,
    update_kalman,
)
from reflexdrive.agents.staged.types import Detections
from reflexdrive.envs.config import EGO_FEATURES

from reflexdrive.common.validation import ConfigError

SPEED = EGO_FEATURES.index("speed_mps")
HEADING_ERROR = EGO_FEATURES.index("heading_error_rad")


def detections(positions, velocities=None, valid=None, sizes=None):
    """Detections `(N, M)` from nested lists; velocities NaN (unknown) unless given."""
    position = np.array(positions, dtype=np.float64).reshape(-1, len(positions[0]), 2)
    n, m = position.shape[:2]
    velocity = (np.full((n, m, 2), np.nan) if velocities is None
                else np.array(velocities, dtype=np.float64).reshape(n, m, 2))
    size = np.tile([4.5, 1.9], (n, m, 1)) if sizes is None else np.array(sizes, float)
    return Detections(position=position, velocity=velocity, size=size,
                      heading=np.zeros((n, m)), object_id=np.full((n, m), -1),
                      valid=np.ones((n, m), bool) if valid is None else np.array(valid, bool))


def ego_state(speed, heading_error=0.0, n=1):
    ego = np.zeros((n, len(EGO_FEATURES)), dtype=np.float32)
    ego[:, SPEED] = speed
    ego[:, HEADING_ERROR] = heading_error
    return ego


def test_config_is_validated():
    with pytest.raises(ConfigError, match=r"tracker.min_hits=0 is invalid: must lie in \[1, 100\]"):
        KalmanTrackerConfig(min_hits=0)
    with pytest.raises(ConfigError, match="tracker.gate_m"):
        KalmanTrackerConfig(gate_m=-1.0)
    with pytest.raises(ConfigError, match="tracker.max_tracks"):
        KalmanTrackerConfig(max_tracks=2.5)
    with pytest.raises(ConfigError, match="tracker.position_noise_m"):
        KalmanTrackerConfig(position_noise_m=0.0)
    with pytest.raises(ConfigError, match=r"tracker.jerk_noise_mps3=-1.0 is invalid"):
        KalmanTrackerConfig(jerk_noise_mps3=-1.0)
    with pytest.raises(ConfigError, match=r"tracker.initial_accel_std_mps2=-1.0 is invalid"):
        KalmanTrackerConfig(initial_accel_std_mps2=-1.0)
    with pytest.raises(ConfigError, match=r"tracker.default_size_m\[1\]"):
        KalmanTrackerConfig(default_size_m=(5.0, -2.0))


@pytest.mark.parametrize("kwargs, message", [
    ({"min_hits": True}, "tracker.min_hits=True is invalid: must be an integer"),
    ({"min_hits": "3"}, "tracker.min_hits='3' is invalid: must be an integer"),
    ({"max_misses": 3.0}, "tracker.max_misses=3.0 is invalid: must be an integer"),
    ({"gate_m": True}, "tracker.gate_m=True is invalid: must be a number"),
    ({"gate_m": "3"}, "tracker.gate_m='3' is invalid: must be a number"),
    ({"default_size_m": ("5", 2.0)},
     "tracker.default_size_m[0]='5' is invalid: must be a number")])
def test_config_rejects_bools_strings_and_float_counts(kwargs, message):
    with pytest.raises(ConfigError) as error:
        KalmanTrackerConfig(**kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize("target_speed", [20.0, 0.0, 30.0])
def test_velocity_converges_with_ego_motion(target_speed):
    """Ego at 25 m/s, a target ahead at constant ground speed, positions only: the relative
    position changes by (v - 25) * 0.1 m a tick; the ground-velocity estimate converges to
    (v, 0) (it starts at the ego's velocity, 25 m/s)."""
    tracker = KalmanTracker()
    ego = ego_state(25.0)
    for k in range(25):
        t = 0.1 * k
        tracks = tracker(detections([[[40.0 + (target_speed - 25.0) * t, 1.0]]]), ego,
                         np.array([t]))
        if k == 3:
            assert abs(tracks.velocity[0, 0, 0] - target_speed) < 1.5
    assert tracks.valid[0].sum() == 1
    assert tracks.velocity[0, 0] == pytest.approx([target_speed, 0.0], abs=0.02)
    assert tracks.position[0, 0] == pytest.approx([40.0 + (target_speed - 25.0) * t, 1.0],
                                                  abs=1e-3)
    # from the initial 10^2 (m/s)^2 to the steady state of 2 m/s^2 process noise
    assert tracks.velocity_var[0, 0, 0] < 2.0 and tracks.position_var[0, 0, 0] < 0.3 ** 2


def test_measured_velocity_is_used_exactly():
    """Oracle detections carry the exact ground velocity: the estimate equals it from the
    first confirmed frame (prediction and measurement agree)."""
    tracker = KalmanTracker(KalmanTrackerConfig(min_hits=1))
    ego = ego_state(25.0)
    for k in range(4):
        t = 0.1 * k
        tracks = tracker(detections([[[30.0 - 5.0 * t, 0.0]]], [[[20.0, 0.0]]]), ego,
                         np.array([t]))
        assert tracks.velocity[0, 0] == pytest.approx([20.0, 0.0], abs=1e-9)
        assert tracks.position[0, 0] == pytest.approx([30.0 - 5.0 * t, 0.0], abs=1e-9)


def rotate(vector, angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def test_ego_yaw_compensation_predicts_a_coasting_track():
    """The ego weaves (its heading error changes every tick) while a target moves at a
    constant world velocity. The ego advances along its old heading, then yaws (the motion
    the filter assumes), so after the detections stop, the coasting track's predicted
    position and velocity are exact in the new ego frame. A wrong rotation sign would be off
    by about `dyaw * 30 m`."""
    tracker = KalmanTracker(KalmanTrackerConfig(min_hits=1, max_misses=5))
    ego_xy, ego_heading, speed = np.zeros(2), 0.0, 20.0
    target_xy, target_v = np.array([30.0, 3.0]), np.array([22.0, -0.5])
    for k in range(12):
        t = 0.1 * k
        if k:
            ego_xy = ego_xy + speed * 0.1 * np.array([np.cos(ego_heading), np.sin(ego_heading)])
            ego_heading += 0.03 * np.cos(0.9 * k)             # yaw after the move
            target_xy = target_xy + target_v * 0.1
        relative = rotate(target_xy - ego_xy, -ego_heading)
        velocity = rotate(target_v, -ego_heading)
        seen = k < 8
        tracks = tracker(detections([[relative]], [[velocity]], valid=[[seen]]),
                         ego_state(speed, ego_heading), np.array([t]))
        assert tracks.valid[0].sum() == 1
        assert tracks.misses[0, 0] == max(0, k - 7)
        assert tracks.position[0, 0] == pytest.approx(relative, abs=1e-6)
        assert tracks.velocity[0, 0] == pytest.approx(velocity, abs=1e-6)


def test_variable_dt():
    """An agent under latency skips ticks: dt varies (0.1 to 0.4 s). Positions only; the
    estimate still converges to the true velocity (a fixed-dt filter would not)."""
    tracker = KalmanTracker()
    ego = ego_state(25.0)
    times = np.cumsum([0.0] + [0.1, 0.3, 0.1, 0.2, 0.4, 0.1, 0.1, 0.3, 0.2, 0.1] * 3)
    for t in times:
        tracks = tracker(detections([[[20.0 + (18.0 - 25.0) * t, -3.0 + 0.5 * t]]]), ego,
                         np.array([t]))
    assert tracks.velocity[0, 0] == pytest.approx([18.0, 0.5], abs=0.05)
    # a long gap with no detection: the track coasts by the full interval
    gap = times[-1] + 0.3
    coasting = tracker(detections([[[0.0, 0.0]]], valid=[[False]]), ego, np.array([gap]))
    assert coasting.position[0, 0] == pytest.approx([20.0 - 7.0 * gap, -3.0 + 0.5 * gap],
                                                    abs=0.05)


def test_crossing_tracks_keep_their_ids():
    """Two targets cross (A from y = -4 up, B from y = +4 down, B 1 m further ahead) at the
    ego's speed; detections come in a shuffled order with no velocity. Each keeps its id
    through the crossing, and the velocities stay with the right targets."""
    rng = np.random.default_rng(0)
    tracker = KalmanTracker()
    ego = ego_state(25.0)
    ids = {"A": set(), "B": set()}
    for k in range(41):
        t = 0.1 * k
        truth = {"A": np.array([30.0, -4.0 + 2.0 * t]), "B": np.array([31.0, 4.0 - 2.0 * t])}
        order = ["A", "B"] if rng.random() < 0.5 else ["B", "A"]
        tracks = tracker(detections([[truth[name] for name in order]]), ego, np.array([t]))
        for slot in np.flatnonzero(tracks.valid[0]):
            name = min(truth, key=lambda n: np.linalg.norm(tracks.position[0, slot] - truth[n]))
            assert np.linalg.norm(tracks.position[0, slot] - truth[name]) < 0.1
            ids[name].add(int(tracks.track_id[0, slot]))
    assert ids == {"A": {0}, "B": {1}} or ids == {"A": {1}, "B": {0}}
    by_id = dict(zip(tracks.track_id[0][tracks.valid[0]], tracks.velocity[0][tracks.valid[0]]))
    assert by_id[min(ids["A"])] == pytest.approx([25.0, 2.0], abs=0.05)
    assert by_id[min(ids["B"])] == pytest.approx([25.0, -2.0], abs=0.05)


def test_birth_after_min_hits_death_after_max_misses():
    tracker = KalmanTracker(KalmanTrackerConfig(min_hits=3, max_misses=2))
    ego = ego_state(20.0)
    seen = [True, True, True, True, False, False, True, True, True]
    reported = []
    for k, visible in enumerate(seen):
        tracks = tracker(detections([[[25.0, 0.0]]], [[[20.0, 0.0]]], valid=[[visible]]), ego,
                         np.array([0.1 * k]))
        reported.append([int(i) for i in tracks.track_id[0][tracks.valid[0]]])
    # confirmed on the 3rd hit; coasts through 1 miss, dies at the 2nd; the reappearing
    # object is a new track (id 1: ids are never reused) confirmed 3 frames later
    assert reported == [[], [], [0], [0], [0], [], [], [], [1]]


def test_immediate_confirmation():
    tracker = KalmanTracker(KalmanTrackerConfig(min_hits=1))
    tracks = tracker(detections([[[10.0, 0.0], [20.0, 4.0]]]), ego_state(20.0), np.zeros(1))
    assert tracks.valid[0].sum() == 2
    assert sorted(tracks.track_id[0][tracks.valid[0]]) == [0, 1]
    assert tracks.hits[0][tracks.valid[0]].tolist() == [1, 1]


def test_ids_unique_over_an_episode_and_reset_isolates_envs():
    """Two envs; objects come and go in env 0. Every new object gets a new id; resetting
    env 0 forgets its tracks and restarts its ids, and leaves env 1 untouched."""
    cfg = KalmanTrackerConfig(min_hits=1, max_misses=1)
    tracker = KalmanTracker(cfg)
    ego = ego_state(20.0, n=2)
    # env 0: object at x = 10 + 10 j visible in frames [2j, 2j + 1] only; env 1: one object
    history = []
    for k in range(8):
        positions = [[[10.0 + 10.0 * j, 0.0] for j in range(4)], [[50.0, 0.0]] * 4]
        valid = [[k // 2 == j for j in range(4)], [True, False, False, False]]
        velocities = np.zeros((2, 4, 2))
        velocities[..., 0] = 20.0
        tracks = tracker(detections(positions, velocities, valid), ego, np.full(2, 0.1 * k))
        history.append((tracks.track_id[0][tracks.valid[0]].tolist(),
                        tracks.track_id[1][tracks.valid[1]].tolist()))
    assert [h[0] for h in history] == [[0], [0], [1], [1], [2], [2], [3], [3]]
    assert all(h[1] == [0] for h in history)
    before = tracks
    tracker.reset(np.array([True, False]))
    after = tracker(detections([[[33.0, 0.0]] * 4, [[50.0, 0.0]] * 4], velocities,
                               [[True, False, False, False]] * 2), ego, np.full(2, 0.8))
    assert after.track_id[0][after.valid[0]].tolist() == [0]         # ids restart in env 0
    np.testing.assert_allclose(after.position[0][after.valid[0]], [[33.0, 0.0]])
    assert after.track_id[1][after.valid[1]].tolist() == [0]
    assert after.hits[1][after.valid[1]].tolist() == [before.hits[1][before.valid[1]][0] + 1]


def test_capacity_keeps_the_nearest_and_replaces_stale_tracks():
    """K = 2 slots: of three new objects the two nearest get tracks. When one of them is
    missed, a waiting object takes its slot; tracks matched this frame are never dropped."""
    tracker = KalmanTracker(KalmanTrackerConfig(max_tracks=2, min_hits=1, max_misses=5))
    ego = ego_state(20.0)
    v = [[[20.0, 0.0]] * 3]
    tracks = tracker(detections([[[30.0, 0.0], [10.0, 0.0], [20.0, 4.0]]], v), ego, np.zeros(1))
    assert tracks.valid.shape == (1, 2)
    assert sorted(map(tuple, tracks.position[0])) == [(10.0, 0.0), (20.0, 4.0)]
    tracks = tracker(detections([[[30.0, 0.0], [10.0, 0.0], [20.0, 4.0]]], v,
                                valid=[[True, True, False]]), ego, np.array([0.1]))
    assert sorted(map(tuple, tracks.position[0])) == [(10.0, 0.0), (30.0, 0.0)]
    assert sorted(tracks.track_id[0].tolist()) == [0, 2]                  # a new id


def test_time_running_backwards_restarts_and_batch_size_is_fixed():
    tracker = KalmanTracker(KalmanTrackerConfig(min_hits=1))
    ego = ego_state(20.0)
    tracker(detections([[[10.0, 0.0]]]), ego, np.array([5.0]))
    tracker(detections([[[20.0, 0.0]]]), ego, np.array([5.1]))       # a second object
    tracks = tracker(detections([[[12.0, 0.0]]]), ego, np.array([0.0]))
    assert tracks.track_id[0][tracks.valid[0]].tolist() == [0]
    with pytest.raises(ValueError, match="batch of 2 envs"):
        tracker(detections([[[1.0, 0.0]], [[1.0, 0.0]]]), ego_state(20.0, n=2), np.zeros(2))


def test_size_is_smoothed():
    tracker = KalmanTracker(KalmanTrackerConfig(min_hits=1, size_smoothing=0.5))
    ego = ego_state(20.0)
    tracks = tracker(detections([[[10.0, 0.0]]], sizes=[[[4.0, 2.0]]]), ego, np.zeros(1))
    assert tracks.size[0, 0] == pytest.approx([4.0, 2.0])
    tracks = tracker(detections([[[10.0, 0.0]]], sizes=[[[6.0, np.nan]]]), ego, np.array([0.1]))
    assert tracks.size[0, 0] == pytest.approx([5.0, 2.0])              # NaN width: kept


def test_predict_and_update_by_hand():
    """One step by hand: a static ego (dt = 0.5 s, no yaw), then a yaw of 90 degrees."""
    state = np.array([[10.0, 0.0, 2.0, 1.0, 0.0, 0.0]])
    cov = np.eye(6)[None]
    x, p = predict_constant_acceleration(state, cov, np.array([0.5]), np.array([0.0]),
                                         np.array([0.0]), accel_noise=0.0, jerk_noise=0.0)
    assert x[0] == pytest.approx([11.0, 0.5, 2.0, 1.0, 0.0, 0.0])
    # P_xx + dt^2 P_vv + (dt^2/2)^2 P_aa; P_xv = dt P_vv + dt^3/2 P_aa; P_va = dt P_aa
    assert p[0, 0, 0] == pytest.approx(1.0 + 0.25 + 0.125 ** 2)
    assert p[0, 0, 2] == pytest.approx(0.5 + 0.0625)
    assert p[0, 2, 4] == pytest.approx(0.5)
    x, _ = predict_constant_acceleration(state, cov, np.array([0.5]), np.array([4.0]),
                                         np.array([np.pi / 2]), accel_noise=0.0,
                                         jerk_noise=0.0)
    # moved to (11 - 2, 0.5) in the old frame, then seen from an ego turned to +y
    assert x[0] == pytest.approx([0.5, -9.0, 1.0, -2.0, 0.0, 0.0])
    # an accelerating target: x += v dt + a dt^2 / 2, v += a dt; the acceleration turns too
    accelerating = np.array([[10.0, 0.0, 2.0, 0.0, -4.0, 2.0]])
    x, _ = predict_constant_acceleration(accelerating, cov, np.array([0.5]), np.array([0.0]),
                                         np.array([0.0]), accel_noise=0.0, jerk_noise=0.0)
    assert x[0] == pytest.approx([10.5, 0.25, 0.0, 1.0, -4.0, 2.0])
    x, _ = predict_constant_acceleration(accelerating, cov, np.array([0.5]), np.array([0.0]),
                                         np.array([np.pi / 2]), accel_noise=0.0,
                                         jerk_noise=0.0)
    assert x[0] == pytest.approx([0.25, -10.5, 1.0, 0.0, 2.0, 4.0])
    # the process noise by hand: white acceleration on v (qa) plus white jerk on a (qj)
    _, p = predict_constant_acceleration(state, np.zeros((1, 6, 6)), np.array([0.5]),
                                         np.array([0.0]), np.array([0.0]), accel_noise=2.0,
                                         jerk_noise=3.0)
    dt, qa, qj = 0.5, 4.0, 9.0
    assert p[0, 0, 0] == pytest.approx(qa * dt ** 3 / 3 + qj * dt ** 5 / 20)
    assert p[0, 0, 2] == pytest.approx(qa * dt ** 2 / 2 + qj * dt ** 4 / 8)
    assert p[0, 2, 2] == pytest.approx(qa * dt + qj * dt ** 3 / 3)
    assert p[0, 0, 4] == pytest.approx(qj * dt ** 3 / 6)
    assert p[0, 2, 4] == pytest.approx(qj * dt ** 2 / 2)
    assert p[0, 4, 4] == pytest.approx(qj * dt)
    assert p[0, 0, 1] == 0.0 and p[0, 1, 1] == pytest.approx(p[0, 0, 0])
    # position-only update with equal prior and measurement variance: the midpoint
    x, p = update_kalman(state, cov, np.array([[12.0, 0.0]]), np.full((1, 2), np.nan),
                         position_noise=1.0, velocity_noise=1.0)
    assert x[0] == pytest.approx([11.0, 0.0, 2.0, 1.0, 0.0, 0.0])
    assert np.diag(p[0]) == pytest.approx([0.5, 0.5, 1.0, 1.0, 1.0, 1.0])


def test_velocity_update_moves_the_acceleration_through_its_covariance():
    """Velocity measured, position exactly predicted: with prior P_vv = P_aa = 1,
    P_va = 1/2 and R_v = 1, the gain on a from the v innovation is P_av / (P_vv + R_v) =
    1/4, so a 2 m/s velocity innovation moves a by 0.5 m/s^2."""
    state = np.zeros((1, 6))
    cov = np.eye(6)[None].copy()
    cov[0, 2, 4] = cov[0, 4, 2] = 0.5
    x, p = update_kalman(state, cov, np.zeros((1, 2)), np.array([[2.0, 0.0]]),
                         position_noise=1.0, velocity_noise=1.0)
    assert x[0] == pytest.approx([0.0, 0.0, 1.0, 0.0, 0.5, 0.0])
    assert p[0, 4, 4] == pytest.approx(1.0 - 0.25 / 2.0)               # P_aa - P_av^2 / S


def braking_target(tracker, ticks, decel, start_tick, ego_speed=25.0, gap=30.0):
    """Oracle detections (id 7) of a target ahead at 25 m/s, braking at `decel` [m/s^2]
    from `start_tick` (0.1 s ticks) on, seen from an ego at constant `ego_speed`; returns
    each tick's x-acceleration estimate."""
    ego = ego_state(ego_speed)
    x, v, out = gap, 25.0, []
    for k in range(ticks):
        dets = detections([[[x, 0.0]]], [[[v, 0.0]]])
        dets = Detections(dets.position, dets.velocity, dets.size, dets.heading,
                          np.full((1, 1), 7), dets.valid)
        tracks = tracker(dets, ego, np.array([0.1 * k]))
        out.append(tracks.acceleration[0, 0, 0])
        a = -decel if k >= start_tick else 0.0
        x += (v - ego_speed) * 0.1 + 0.5 * a * 0.01
        v += a * 0.1
    return np.array(out)


def test_kalman_acceleration_converges_on_a_braking_target():
    """A target starts braking at 6 m/s^2 after frame 10 (frame 11 is the first to show
    it, 0.6 m/s slower). The oracle tracker settings (exact velocities trusted) put the
    estimate past 4 m/s^2 on that first frame and within 0.2 m/s^2 of 6 from the third;
    the default settings (velocities trusted to 0.5 m/s, jerk noise 3 m/s^3) are slower:
    within 0.5 m/s^2 of 6 from the 18th frame (1.8 s) on."""
    from reflexdrive.agents.registry import ORACLE_TRACKER

    estimate = braking_target(KalmanTracker(ORACLE_TRACKER), 25, 6.0, 10)
    assert estimate[:11] == pytest.approx(np.zeros(11), abs=1e-9)
    assert estimate[11] < -4.0
    assert estimate[13:] == pytest.approx(np.full(12, -6.0), abs=0.2)
    slow = braking_target(KalmanTracker(KalmanTrackerConfig(min_hits=1)), 40, 6.0, 10)
    assert slow[28:] == pytest.approx(np.full(12, -6.0), abs=0.5)
    assert slow[26] < -5.0 and np.all(np.diff(slow[10:]) < 0)          # no overshoot
    # the constant-velocity limit: no jerk and no initial acceleration uncertainty
    frozen = KalmanTracker(KalmanTrackerConfig(min_hits=1, jerk_noise_mps3=0.0,
                                               initial_accel_std_mps2=0.0))
    assert braking_target(frozen, 25, 6.0, 10) == pytest.approx(np.zeros(25), abs=1e-12)


def test_identity_tracker_differences_velocities():
    """Exact velocities: the backward difference is exactly -6 m/s^2 from the second frame
    of braking on (the first shows the whole interval's braking too: it started at a
    tick), NaN on the first call and after a reset."""
    tracker = IdentityTracker()
    estimate = braking_target(tracker, 6, 6.0, 2)
    assert np.isnan(estimate[0])
    assert estimate[1:3] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert estimate[3:] == pytest.approx(np.full(3, -6.0))
    tracker.reset(np.array([True]))
    assert np.isnan(braking_target(tracker, 1, 6.0, 0)[0])
    # the ego's yaw turns the previous velocity into the current axes: a target at a
    # constant ground velocity has no acceleration however the ego turns
    tracker = IdentityTracker()
    for k, yaw in enumerate([0.0, 0.1, 0.3]):
        velocity = rotate([20.0, 0.0], -yaw)
        dets = detections([[[20.0, 0.0]]], [[velocity]])
        dets = Detections(dets.position, dets.velocity, dets.size, dets.heading,
                          np.full((1, 1), 3), dets.valid)
        tracks = tracker(dets, ego_state(20.0, heading_error=yaw), np.array([0.1 * k]))
    assert tracks.acceleration[0, 0] == pytest.approx([0.0, 0.0], abs=1e-5)  # float32 yaw
    # without ego and time it reports no acceleration
    assert np.isnan(IdentityTracker()(dets).acceleration).all()


def test_identity_tracker_passes_heading_through():
    dets = detections([[[10.0, 0.0]]])
    tracks = IdentityTracker()(dets)
    assert tracks.heading is dets.heading and tracks.track_id is dets.object_id


def circle_route(radius, points=40, step=2.0):
    """The map of an ego on the centre of a left-turning circular lane: route `(1, P, 2)`
    in the ego frame and its lane heading relative to the ego `(1, P)`."""
    angle = np.arange(points) * step / radius
    route = np.stack([radius * np.sin(angle), radius * (1.0 - np.cos(angle))], -1)[None]
    return {"route": route.astype(np.float32), "route_heading": angle[None].astype(np.float32)}


@pytest.mark.parametrize("use_map", [True, False])
def test_static_object_seen_from_an_ego_driving_a_circle(use_map):
    """The ego drives a circle of radius 30 m at 15 m/s on its lane's centre (heading error
    0 throughout); a static object is detected by position only. With the map's route the
    filter knows the ego yaws 0.05 rad per tick and the object keeps zero velocity; without
    it (the straight-road assumption) the object seems to swing round the ego."""
    radius, speed, dt = 30.0, 15.0, 0.1
    tracker = KalmanTracker(KalmanTrackerConfig(min_hits=1))
    target = np.array([35.0, 20.0])
    road_map = circle_route(radius)
    for k in range(30):
        yaw = speed * dt * k / radius
        ego_xy = radius * np.array([np.sin(yaw), 1.0 - np.cos(yaw)])
        relative = rotate(target - ego_xy, -yaw)
        tracks = tracker(detections([[relative]]), ego_state(speed), np.array([dt * k]),
                         road_map=road_map if use_map else None)
    speed_error = np.hypot(*tracks.velocity[0, 0])
    if use_map:
        assert speed_error < 0.05
        assert tracks.position[0, 0] == pytest.approx(relative, abs=0.02)
    else:
        assert speed_error > 1.0
