"""The first staged stack: IDM planning, lead selection, lane keeping, per-stage timing."""

from __future__ import annotations

import numpy as np
import pytest
from reflexdrive.agents.registry import STACKS, make_agent
from reflexdrive.agents.staged.car_following import IDMParams, idm_acceleration
from reflexdrive.agents.staged.control import LaneKeepingController
from reflexdrive.agents.staged.lane_frame import select_lead
from reflexdrive.agents.staged.planning import straight_plan
from reflexdrive.agents.staged.types import Tracks
from reflexdrive.envs.config import EGO_FEATURES
from reflexdrive.envs.sensors import OBJECT_FIELDS

from reflexdrive.common.validation import ConfigError

P = IDMParams()


def test_idm_free_road():
    """Free road: `a = a_max (1 - (v/v0)^4)`: a_max at rest, 0 at the desired speed."""
    speed = np.array([0.0, P.desired_speed_mps, 0.5 * P.desired_speed_mps])
    a = idm_acceleration(speed, np.full(3, np.inf), np.zeros(3), P)
    np.testing.assert_allclose(a, [P.max_accel_mps2, 0.0, P.max_accel_mps2 * (1 - 0.5**4)])


def test_idm_gap_response():
    """Same speed as the lead at gap `s`: `a = a_max (1 - (v/v0)^4 - ((s0 + vT)/s)^2)`."""
    v, s = 20.0, 30.0
    expected = P.max_accel_mps2 * (1 - (v / P.desired_speed_mps) ** 4
                                   - ((P.min_gap_m + v * P.time_headway_s) / s) ** 2)
    a = idm_acceleration(np.array([v]), np.array([s]), np.array([0.0]), P)
    assert a[0] == pytest.approx(expected)
    closing = idm_acceleration(np.array([v]), np.array([s]), np.array([5.0]), P)
    closer = idm_acceleration(np.array([v]), np.array([s / 2]), np.array([0.0]), P)
    assert closing[0] < a[0] and closer[0] < a[0]     # closing in or a shorter gap brakes harder


def tracks(positions, speeds, valid=None):
    n = len(positions)
    position = np.array(positions, dtype=np.float64)[None]
    velocity = np.stack([np.array(speeds, float), np.zeros(n)], axis=1)[None]
    return Tracks(position=position, velocity=velocity, size=np.tile([5.0, 2.0], (1, n, 1)),
                  track_id=np.arange(n)[None],
                  valid=np.ones((1, n), bool) if valid is None else np.array([valid]))


def test_select_lead_takes_nearest_in_lane_ahead():
    t = tracks([[40.0, 0.0], [20.0, 4.0], [-10.0, 0.0], [30.0, 0.3], [10.0, 0.0]],
               [20, 20, 20, 15, 9], valid=[True, True, True, True, False])
    lead, gap, speed = select_lead(t, np.zeros(1), P)
    assert lead[0] == 3                                # 20 m is in the next lane; 10 m invalid
    assert gap[0] == pytest.approx(30.0 - 5.0)         # centre distance minus two half lengths
    assert speed[0] == 15.0
    none, gap, speed = select_lead(tracks([[20.0, 4.0]], [20.0]), np.zeros(1), P)
    assert none[0] == -1 and np.isinf(gap[0]) and speed[0] == 0.0


def ego_row(speed=20.0, lane_offset=0.0, heading_error=0.0):
    ego = np.zeros((1, len(EGO_FEATURES)), dtype=np.float32)
    ego[0, EGO_FEATURES.index("speed_mps")] = speed
    ego[0, EGO_FEATURES.index("lane_offset_m")] = lane_offset
    ego[0, EGO_FEATURES.index("heading_error_rad")] = heading_error
    return ego


def test_lane_keeping_steers_back_to_the_lane_centre():
    controller = LaneKeepingController()
    plan = straight_plan(np.array([20.0]), np.array([1.5]), np.zeros(1), np.array([-1]),
                         np.array([np.inf]))
    centred = controller(plan, ego_row())
    assert centred[0, 0] == pytest.approx(1.5) and centred[0, 1] == pytest.approx(0.0)
    left = controller(plan, ego_row(lane_offset=1.0))       # left of centre: steer right
    right = controller(plan, ego_row(lane_offset=-1.0))
    assert left[0, 1] < 0.0 < right[0, 1]
    assert left[0, 1] == pytest.approx(-right[0, 1])


def test_staged_agent_decision():
    agent = make_agent("staged")
    n, m = 3, 4
    objects = np.zeros((n, m, len(OBJECT_FIELDS)), dtype=np.float32)
    column = {name: i for i, name in enumerate(OBJECT_FIELDS)}
    objects[:, 0, column["x_m"]] = [15.0, 40.0, 200.0]     # 200 m: beyond sensor range
    objects[:, 0, column["vx_mps"]] = 25.0                # as fast as the ego
    objects[:, :, column["length_m"]] = 5.0
    objects[:, :, column["width_m"]] = 2.0
    valid = np.zeros((n, m), bool)
    valid[:, 0] = True
    ego = np.repeat(ego_row(speed=25.0), n, axis=0)
    obs = {"ego": ego, "bev": np.zeros((n, 4, 64, 64), np.uint8),
           "lidar": np.zeros((n, 64, 2), np.float32)}
    decision = agent.act(obs, {"gt_objects": objects, "gt_valid": valid,
                                "time_s": np.zeros(n)})
    assert decision.actions.shape == (n, 2) and decision.actions.dtype == np.float32
    assert set(decision.stage_latency_s) == {"perception", "tracking", "planning", "control"}
    assert all(v >= 0.0 for v in decision.stage_latency_s.values())
    assert decision.latency_s == pytest.approx(sum(decision.stage_latency_s.values()))
    accel = decision.actions[:, 0]
    assert accel[0] < accel[1] < accel[2]              # the nearer the lead, the harder the braking
    # 10 m behind a lead at the ego's speed: the IDM's -19 m/s^2 is cooled by the ACC model
    # (the CAH is 0: nothing closes) to 0.01 a_IDM + 0.99 b tanh(a_IDM / b)
    planner = agent.planner
    idm = idm_acceleration(np.array([25.0]), np.array([10.0]), np.zeros(1), planner.capped_idm)
    b = P.comfort_decel_mps2
    plan = decision.products["plan"]
    assert idm[0] < -8.0
    assert plan.acceleration[0] == pytest.approx(0.01 * idm[0] + 0.99 * b * np.tanh(idm[0] / b))
    assert {"detections", "tracks", "plan"} <= set(decision.products)
    agent.reset(np.array([True, False, True]))


def test_unknown_stack_and_perception():
    with pytest.raises(ConfigError, match="allowed values are " + ", ".join(STACKS)):
        make_agent("autopilot")
    with pytest.raises(ConfigError, match="perception='radar'"):
        make_agent("staged", perception="radar")


def test_select_lead_anticipates_a_cut_in():
    """A car in the next lane (4 m left) moving right at 3 m/s reaches the ego lane within the
    1 s horizon: followed already. Moving away or standing still: not followed."""
    def with_lateral(vy):
        t = tracks([[12.0, 4.0]], [20.0])
        velocity = t.velocity.copy()
        velocity[0, 0, 1] = vy
        return Tracks(t.position, velocity, t.size, t.track_id, t.valid)

    assert select_lead(with_lateral(-3.0), np.zeros(1), P)[0][0] == 0
    assert select_lead(with_lateral(+3.0), np.zeros(1), P)[0][0] == -1
    assert select_lead(with_lateral(0.0), np.zeros(1), P)[0][0] == -1
    far = IDMParams(cut_in_horizon_s=0.1)               # 0.3 m in 0.1 s: not yet
    assert select_lead(with_lateral(-3.0), np.zeros(1), far)[0][0] == -1


@pytest.mark.parametrize("value, message", [
    (True, "score_threshold=True is invalid: must be a number"),
    ("0.5", "score_threshold='0.5' is invalid: must be a number"),
    (1.0, "score_threshold=1.0 is invalid: must lie in (0, 1)"),
    (0.0, "score_threshold=0.0 is invalid: must lie in (0, 1)"),
])
def test_learned_perception_checks_its_threshold_before_loading(value, message):
    from reflexdrive.agents.staged.learned_perception import LearnedPerception

    with pytest.raises(ConfigError) as error:
        LearnedPerception(checkpoint="/nonexistent/detector.pt", score_threshold=value)
    assert str(error.value) == message
