"""Unit tests of the batched backend: its pure functions against hand-computed cases and
against highway-env's own methods, and the `BatchedBackend` API (resets, shapes, errors).

Trajectory parity with the highway backend lives in tests/test_batched_parity.py.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from highway_env import utils as hwe_utils
from highway_env.road.road import Road, RoadNetwork
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.controller import ControlledVehicle
from highway_env.vehicle.kinematics import Vehicle
from reflexdrive.envs.backends.batched import (
    SUPPORTED_SCENARIOS,
    BatchedBackend,
    BatchedHazardTracker,
    Params,
    commands_from_pieces,
)
from reflexdrive.envs.backends.batched.state import (
    EGO_KIND,
    IDM_KIND,
    BatchedHazard,
    BatchedRoad,
    BatchedState,
    where_env,
)
from reflexdrive.envs.backends.batched.torch.collision import (
    polygons_intersecting,
    rectangle_corners,
)
from reflexdrive.envs.backends.batched.torch.dynamics import (
    clip_actions,
    closest_lane,
    desired_gap,
    idm_acceleration,
    mobil,
    neighbour_vehicles,
    steering_control,
    vehicle_step,
)
from reflexdrive.envs.backends.batched.torch.road import blend
from reflexdrive.envs.backends.batched.torch.traffic import (
    MAX_BITMASK_SLOTS,
    key_order,
    neighbour_index,
    neighbours_of,
    traffic_act,
)
from reflexdrive.envs.backends.highway import HighwayBackend, network_geometry
from reflexdrive.envs.backends.traffic_vehicle import TrafficVehicle
from reflexdrive.envs.hazards import HazardTracker
from reflexdrive.envs.scenarios import SCENARIOS, RoadSpec, generate, make_config
from reflexdrive.envs.types import Command, Piece

from reflexdrive.common.validation import ConfigError

F = 50
DT = 1.0 / F
P = Params.from_highway_env(F)
T = torch.float64


def _t(*values):
    """A float64 tensor: `_t(1.0, 2.0)` is `(2,)`, `_t([[1.0, 2.0]])` is `(1, 2)`."""
    if len(values) == 1 and isinstance(values[0], (list, tuple, np.ndarray)):
        return torch.tensor(np.asarray(values[0]), dtype=T)
    return torch.tensor(values, dtype=T)


def _road(lanes=(3,), length=2000.0, speed_limit=30.0) -> BatchedRoad:
    count = torch.tensor(lanes)
    return BatchedRoad(lane_count=count, length=torch.full((len(lanes),), length, dtype=T),
                       speed_limit=torch.full((len(lanes),), speed_limit, dtype=T),
                       lane_valid=torch.arange(max(lanes))[None] < count[:, None])


def _step(position, heading, speed, steering, acceleration, dt, length=5.0, crashed=False,
          impact=(0.0, 0.0), pending=False):
    return vehicle_step(P, _road(), _t(position), _t(heading), _t(speed), _t(length),
                        _t(steering), _t(acceleration), torch.tensor([crashed]),
                        _t(impact), torch.tensor([pending]), dt)


def _hwe_road(lanes=3) -> Road:
    return Road(RoadNetwork.straight_road_network(lanes=lanes, length=2000.0, speed_limit=30.0),
                np_random=np.random.RandomState(0), record_history=False)


# ------------------------------------------------------------------------------ constants


def test_params_are_read_from_highway_env_classes():
    assert P.comfort_acc_max == IDMVehicle.COMFORT_ACC_MAX == 3.0
    assert P.comfort_acc_min == IDMVehicle.COMFORT_ACC_MIN
    assert P.distance_wanted == IDMVehicle.DISTANCE_WANTED == 10.0
    assert P.time_wanted == IDMVehicle.TIME_WANTED
    assert P.delta == IDMVehicle.DELTA
    assert P.lane_change_delay == IDMVehicle.LANE_CHANGE_DELAY
    assert P.kp_lateral == ControlledVehicle.KP_LATERAL
    assert P.max_steering_angle == ControlledVehicle.MAX_STEERING_ANGLE
    assert (P.max_speed, P.min_speed) == (Vehicle.MAX_SPEED, TrafficVehicle.MIN_SPEED) == (
        Vehicle.MAX_SPEED, 0.0)
    assert P.dt == 1.0 / F and P.lane_width == 4.0 and P.not_zero_eps == 0.01


# ------------------------------------------------------------------------------ bicycle


def test_bicycle_straight_line():
    """No steering: `x += v dt`, `v += a dt`, heading unchanged."""
    out = _step([[10.0, 4.0]], [0.0], [20.0], [0.0], [1.5], 0.1)
    np.testing.assert_allclose(out.position.numpy(), [[12.0, 4.0]], atol=1e-12)
    assert out.heading.item() == 0.0
    assert out.speed.item() == pytest.approx(20.15)
    assert out.lane.item() == 1                                     # y = 4 m: lane 1


def test_bicycle_constant_steering():
    """`tan(delta) = 2` gives slip `beta = atan(1) = pi/4`: the car moves at 45 degrees and
    turns at `v sin(beta) / (l/2)`."""
    delta = math.atan(2.0)
    out = _step([[0.0, 0.0]], [0.0], [10.0], [delta], [0.0], 0.1)
    step = 10.0 * 0.1 * math.sqrt(0.5)
    np.testing.assert_allclose(out.position.numpy(), [[step, step]], atol=1e-12)
    assert out.heading.item() == pytest.approx(10.0 * math.sqrt(0.5) / 2.5 * 0.1, abs=1e-12)
    # Ten steps at constant steering follow the same recursion.
    position, heading = np.zeros(2), 0.0
    p, h, v = _t([[0.0, 0.0]]), _t(0.0), _t(10.0)
    for _ in range(10):
        position = position + 10.0 * np.array([np.cos(heading + np.pi / 4),
                                               np.sin(heading + np.pi / 4)]) * 0.1
        heading = heading + 10.0 * np.sin(np.pi / 4) / 2.5 * 0.1
        out = vehicle_step(P, _road(), p, h, v, _t(5.0), _t(delta), _t(0.0),
                           torch.tensor([False]), _t([[0.0, 0.0]]), torch.tensor([False]), 0.1)
        p, h = out.position, out.heading
    np.testing.assert_allclose(p.numpy()[0], position, atol=1e-9)
    assert h.item() == pytest.approx(heading, abs=1e-12)


def test_clip_actions_speed_bounds_and_crash():
    speed = _t(41.0, -41.0, 20.0, 20.0)
    crashed = torch.tensor([False, False, False, True])
    steering, accel = clip_actions(P, speed, crashed, _t(0.1, 0.1, 0.1, 0.1),
                                   _t(5.0, -5.0, 5.0, 5.0))
    # min(a, 40 - v); max(a, 0 - v) (TrafficVehicle.MIN_SPEED: traffic never reverses)
    assert accel.tolist() == [-1.0, 41.0, 5.0, -20.0]
    assert steering.tolist() == [0.1, 0.1, 0.1, 0.0]


def test_pending_impact_pushes_and_crashes():
    out = _step([[0.0, 0.0]], [0.0], [10.0], [0.0], [0.0], 0.1, impact=[[0.5, -0.25]],
                pending=True)
    np.testing.assert_allclose(out.position.numpy(), [[1.5, -0.25]])
    assert out.crashed.item() and not out.impact_pending.item()


def test_closest_lane_uses_lateral_distance_and_first_lane_on_ties():
    position = _t([[[0.0, 0.0], [0.0, 5.9], [0.0, 6.0], [0.0, 6.1], [0.0, 40.0], [3000.0, 4.0]]])
    lanes = closest_lane(position, torch.zeros(1, 6, dtype=T), _road((3,)), P)
    assert lanes.tolist() == [[0, 1, 1, 2, 2, 1]]


# ------------------------------------------------------------------------------ controller


def test_steering_control_matches_controlled_vehicle():
    rng = np.random.default_rng(0)
    road = _hwe_road(3)
    pos, head, spd, tgt, ref = [], [], [], [], []
    for _ in range(200):
        p = np.array([rng.uniform(0, 500), rng.uniform(-2, 10)])
        h, v, lane = rng.uniform(-0.5, 0.5), rng.choice([rng.uniform(-1, 35), 0.0, 0.005]), \
            int(rng.integers(3))
        vehicle = ControlledVehicle(road, p, h, v, target_lane_index=("0", "1", lane))
        ref.append(vehicle.steering_control(("0", "1", lane)))
        pos.append(p), head.append(h), spd.append(v), tgt.append(lane)
    out = steering_control(P, torch.tensor(np.array(pos)), _t(*head), _t(*spd),
                           torch.full((200,), 5.0, dtype=T), torch.tensor(tgt))
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------ IDM / MOBIL


def _idm(speed, target, distance=None, front_speed=0.0, limit=30.0):
    has = distance is not None
    return idm_acceleration(P, _t(speed), _t(0.0), _t(target), _t(limit),
                            _t(distance if has else 1.0), _t(front_speed), _t(0.0),
                            torch.tensor([has])).item()


def test_idm_free_road():
    assert _idm(20.0, 30.0) == pytest.approx(3.0 * (1 - (20 / 30) ** 4))
    assert _idm(20.0, 40.0) == pytest.approx(3.0 * (1 - (20 / 30) ** 4))   # clipped to limit
    assert _idm(0.0, 30.0) == pytest.approx(3.0)
    # A plain Vehicle (the ego) has target speed 0: highway-env divides by not_zero(0) = 0.01.
    assert _idm(20.0, 0.0) == pytest.approx(3.0 * (1 - (20 / 0.01) ** 4))


def test_idm_gap_term_and_desired_gap():
    """Same speeds, 30 m centre distance: d* = d0 + v tau = 10 + 30 = 40 m."""
    assert desired_gap(P, _t(20.0), _t(0.0), _t(20.0), _t(0.0)).item() == pytest.approx(40.0)
    assert _idm(20.0, 20.0, 30.0, 20.0) == pytest.approx(-3.0 * (40 / 30) ** 2)
    closing = 10 + 30 + 20 * 5 / (2 * math.sqrt(15))
    assert desired_gap(P, _t(20.0), _t(0.0), _t(15.0), _t(0.0)).item() == pytest.approx(closing)


def test_idm_matches_idm_vehicle_acceleration():
    road = _hwe_road(3)
    rng = np.random.default_rng(1)
    for _ in range(50):
        me = IDMVehicle(road, [rng.uniform(0, 100), 4.0], rng.uniform(-0.1, 0.1),
                        rng.uniform(0, 35), target_speed=rng.uniform(0, 40))
        front = Vehicle(road, [me.position[0] + rng.uniform(-3, 60), rng.uniform(2, 6)],
                        rng.uniform(-0.1, 0.1), rng.uniform(0, 35))
        ref = me.acceleration(me, front)
        ours = idm_acceleration(P, _t(me.speed), _t(me.heading), _t(me.target_speed), _t(30.0),
                                _t(front.position[0] - me.position[0]), _t(front.speed),
                                _t(front.heading), torch.tensor([True])).item()
        assert ours == pytest.approx(ref, rel=1e-12, abs=1e-9)


def test_mobil_gain_and_safety():
    def go(self_pred, self_now, nf_pred=0.0):
        return mobil(P, _t(self_pred), _t(self_now), _t(0.0), _t(nf_pred), _t(0.0), _t(0.0)).item()

    assert go(1.0, 0.5)                         # gain 0.5 >= 0.2
    assert not go(0.6, 0.5)                     # gain 0.1 < 0.2
    assert not go(1.0, 0.5, nf_pred=-2.5)       # imposes braking beyond 2 m/s^2


def test_neighbour_vehicles_match_road_neighbour_vehicles():
    rng = np.random.default_rng(2)
    road = _hwe_road(3)
    n = 14
    xs = rng.uniform(-10, 120, n)
    xs[3] = xs[4]                                                    # a tie in s
    ys = rng.uniform(-3, 11, n)
    road.vehicles = [Vehicle(road, [x, y], 0.0, 20.0) for x, y in zip(xs, ys)]
    lanes = torch.tensor([[[0, 1, 2, -1, 3]] * n])                   # incl. non-lanes
    front, rear = neighbour_vehicles(P, _road((3,)), torch.tensor(np.stack([xs, ys], -1))[None],
                                     torch.ones(1, n, dtype=torch.bool), lanes)
    index = {id(v): i for i, v in enumerate(road.vehicles)}
    for j, vehicle in enumerate(road.vehicles):
        for k, lane in enumerate((0, 1, 2)):
            f, r = road.neighbour_vehicles(vehicle, ("0", "1", lane))
            assert front[0, j, k].item() == (index[id(f)] if f else -1)
            assert rear[0, j, k].item() == (index[id(r)] if r else -1)


@pytest.mark.parametrize("n", [14, 40, MAX_BITMASK_SLOTS + 7])
def test_neighbour_vehicles_with_ties_and_many_slots(n):
    """Bit-mask search (up to 63 slots) and its pairwise fallback, many equal `s`."""
    rng = np.random.default_rng(n)
    road = _hwe_road(3)
    xs = np.round(rng.uniform(-10, 120, n) / 10) * 10                 # many ties in s
    ys = rng.choice([-3.0, -1.0, 0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 9.0, 11.0], n)  # band edges
    road.vehicles = [Vehicle(road, [x, y], 0.0, 20.0) for x, y in zip(xs, ys)]
    valid = torch.ones(1, n, dtype=torch.bool)
    lanes = torch.tensor([[[0, 1, 2]] * n])
    front, rear = neighbour_vehicles(P, _road((3,)), torch.tensor(np.stack([xs, ys], -1))[None],
                                     valid, lanes)
    index = {id(v): i for i, v in enumerate(road.vehicles)}
    for j, vehicle in enumerate(road.vehicles):
        for k in range(3):
            f, r = road.neighbour_vehicles(vehicle, ("0", "1", k))
            assert front[0, j, k].item() == (index[id(f)] if f else -1)
            assert rear[0, j, k].item() == (index[id(r)] if r else -1)


def test_neighbour_rows_match_dense_queries_and_order_hints_are_only_hints():
    rng = np.random.default_rng(5)
    b, n = 6, 12
    x = torch.tensor(np.round(rng.uniform(0, 100, (b, n)) / 5) * 5)
    y = torch.tensor(rng.uniform(-2, 10, (b, n)))
    valid = torch.tensor(rng.random((b, n)) < 0.85)
    road = _road((3,) * b)
    fresh, _ = key_order(x)
    assert torch.equal(x.gather(1, fresh), x.sort(dim=1).values)
    for hint in (fresh, torch.zeros_like(fresh), torch.argsort(torch.rand(b, n), dim=1)):
        assert torch.equal(key_order(x, hint)[0], fresh)
    index = neighbour_index(P, road, x, y, valid, 0, 3)
    lane = torch.tensor(rng.integers(0, 3, (b, n)))
    front, rear = neighbours_of(index, lane)
    world = torch.arange(b).repeat_interleave(n)
    slot = torch.arange(n).repeat(b)
    front_rows, rear_rows = neighbours_of(index, lane.reshape(-1), world=world, slot=slot)
    assert torch.equal(front_rows.reshape(b, n), front)
    assert torch.equal(rear_rows.reshape(b, n), rear)


def test_blend_is_exact_where():
    """`blend` (lerp with 0/1 weights) returns its inputs bit for bit, tails included."""
    rng = np.random.default_rng(0)
    for size in (1, 3, 7, 8, 33, 1001):
        a = torch.tensor(rng.standard_normal(size) * 10.0 ** rng.integers(-300, 300, size))
        b = torch.tensor(rng.standard_normal(size) * 10.0 ** rng.integers(-300, 300, size))
        mask = torch.tensor(rng.random(size) < 0.5)
        assert torch.equal(blend(mask.to(T), a, b), torch.where(mask, a, b))


def _state_of(vehicles, lanes=3) -> BatchedState:
    """A one-world `BatchedState` of highway-env vehicles (slot 0 a plain `Vehicle` ego)."""
    n = len(vehicles)

    def col(values, dtype=T):
        return torch.tensor([values], dtype=dtype)

    idm = [isinstance(v, IDMVehicle) for v in vehicles]
    zeros = col([0.0] * n)
    hazard = BatchedHazard(*(torch.tensor([x]) for x in (0, -1, -1)), _t(0.0),
                           torch.tensor([-1]), _t(0.0), _t(0.0), _t(0.0))
    return BatchedState(
        position=torch.tensor(np.array([[v.position for v in vehicles]])),
        heading=col([v.heading for v in vehicles]), speed=col([v.speed for v in vehicles]),
        valid=torch.ones(1, n, dtype=torch.bool), length=col([v.LENGTH for v in vehicles]),
        width=col([v.WIDTH for v in vehicles]), diagonal=col([v.diagonal for v in vehicles]),
        kind=col([IDM_KIND if i else EGO_KIND for i in idm], torch.int64),
        lane=col([v.lane_index[2] for v in vehicles], torch.int64),
        target_lane=col([v.target_lane_index[2] if i else v.lane_index[2]
                         for v, i in zip(vehicles, idm)], torch.int64),
        target_speed=col([v.target_speed if i else 0.0 for v, i in zip(vehicles, idm)]),
        timer=col([v.timer if i else 0.0 for v, i in zip(vehicles, idm)]),
        lane_changes=col([bool(i and v.enable_lane_change) for v, i in zip(vehicles, idm)],
                         torch.bool),
        braking=col([False] * n, torch.bool), braking_decel=zeros, steering=zeros,
        acceleration=zeros, crashed=col([False] * n, torch.bool),
        impact=torch.zeros(1, n, 2, dtype=T), impact_pending=col([False] * n, torch.bool),
        substep=torch.tensor([0]), road=_road((lanes,)), hazard=hazard)


@pytest.mark.parametrize("order", ["y_first", "z_first"])
def test_lane_change_abort_rule_follows_list_order(order):
    """Y (lane 0) and Z (lane 2) both move into lane 1, X (lane 2, far ahead) too. Y is
    within its desired gap behind X, so Y aborts. Z is within its gap behind Y: if Y acted
    first, Y no longer targets lane 1 and Z goes on; if Z acts first it still sees Y's old
    target and aborts too. highway-env's `road.act()` and `traffic_act` must agree."""
    road = _hwe_road(3)

    def idm(x, y, lane):
        vehicle = IDMVehicle(road, [x, y], 0.0, 20.0, target_lane_index=("0", "1", lane),
                             target_speed=20.0)
        vehicle.timer = 0.5
        return vehicle

    ego = Vehicle(road, [0.0, 0.0], 0.0, 20.0)
    x, y, z = idm(150.0, 8.0, 1), idm(120.0, 1.0, 1), idm(100.0, 7.0, 1)
    road.vehicles = [ego, y, z, x] if order == "y_first" else [ego, z, y, x]
    state = _state_of(road.vehicles)
    road.act()
    expected = [v.lane_index[2] if v is ego else v.target_lane_index[2] for v in road.vehicles]
    assert (y.target_lane_index[2], z.target_lane_index[2]) == \
        ((0, 1) if order == "y_first" else (0, 2))
    got = traffic_act(P, state)
    assert got.target_lane[0].tolist() == expected
    np.testing.assert_allclose(got.acceleration[0, 1:].numpy(),
                               [v.action["acceleration"] for v in road.vehicles[1:]], atol=1e-12)
    np.testing.assert_allclose(got.steering[0, 1:].numpy(),
                               [v.action["steering"] for v in road.vehicles[1:]], atol=1e-12)


def test_traffic_act_matches_road_act_on_random_traffic():
    """Random dense traffic with MOBIL due (timers past the delay): same targets and actions."""
    rng = np.random.default_rng(4)
    for trial in range(5):
        road = _hwe_road(3)
        vehicles = [Vehicle(road, [100.0, 4.0], 0.0, 25.0)]
        for _ in range(14):
            lane = int(rng.integers(3))
            vehicle = IDMVehicle(road, [rng.uniform(0, 250), 4.0 * lane + rng.uniform(-1, 1)],
                                 rng.uniform(-0.05, 0.05), rng.uniform(15, 30),
                                 target_lane_index=("0", "1", int(rng.integers(3))),
                                 target_speed=rng.uniform(15, 35))
            vehicle.timer = rng.uniform(0.5, 1.5)
            vehicles.append(vehicle)
        road.vehicles = vehicles
        state = _state_of(vehicles)
        road.act()
        got = traffic_act(P, state)
        assert got.target_lane[0, 1:].tolist() == [v.target_lane_index[2] for v in vehicles[1:]]
        np.testing.assert_allclose(got.timer[0, 1:].numpy(), [v.timer for v in vehicles[1:]])
        np.testing.assert_allclose(got.acceleration[0, 1:].numpy(),
                                   [v.action["acceleration"] for v in vehicles[1:]], atol=1e-9)
        np.testing.assert_allclose(got.steering[0, 1:].numpy(),
                                   [v.action["steering"] for v in vehicles[1:]], atol=1e-12)


@pytest.mark.parametrize("vehicles", [40, MAX_BITMASK_SLOTS + 5])
def test_traffic_act_matches_road_act_in_dense_traffic(vehicles):
    """Many slots (bit masks wider than 32 bits, then the pairwise fallback), lanes shared
    by several vehicles changing into them (the abort rule), garbage order hints."""
    rng = np.random.default_rng(vehicles)
    road = _hwe_road(4)
    ego = Vehicle(road, [200.0, 4.0], 0.0, 25.0)
    others = []
    for _ in range(vehicles - 1):
        lane = int(rng.integers(4))
        vehicle = IDMVehicle(road, [rng.uniform(0, 400), 4.0 * lane + rng.uniform(-1.5, 1.5)],
                             rng.uniform(-0.05, 0.05), rng.uniform(15, 30),
                             target_lane_index=("0", "1", int(np.clip(lane + rng.integers(-1, 2),
                                                                      0, 3))),
                             target_speed=rng.uniform(15, 35))
        vehicle.timer = rng.uniform(0.5, 1.5)
        others.append(vehicle)
    road.vehicles = [ego] + others
    state = _state_of(road.vehicles, lanes=4)
    state = state.replace(order_hint=torch.zeros(1, vehicles, dtype=torch.int64))
    road.act()
    got = traffic_act(P, state)
    assert got.target_lane[0, 1:].tolist() == [v.target_lane_index[2] for v in others]
    np.testing.assert_allclose(got.timer[0, 1:].numpy(), [v.timer for v in others])
    np.testing.assert_allclose(got.acceleration[0, 1:].numpy(),
                               [v.action["acceleration"] for v in others], atol=1e-9)
    np.testing.assert_allclose(got.steering[0, 1:].numpy(),
                               [v.action["steering"] for v in others], atol=1e-12)


# ------------------------------------------------------------------------------ collisions


def _corners(x, y, heading, length=5.0, width=2.0):
    return rectangle_corners(_t(x, y), _t(heading)[0], _t(length)[0], _t(width)[0])


def _sat(a, b, da=(0.0, 0.0), db=(0.0, 0.0)):
    inter, will, trans = polygons_intersecting(a, b, _t(*da), _t(*db))
    return bool(inter), bool(will), trans.numpy()


def test_sat_axis_aligned_overlap_and_gap():
    inter, will, trans = _sat(_corners(0, 0, 0), _corners(4, 0, 0))
    assert inter and will
    np.testing.assert_allclose(trans, [-1.0, 0.0], atol=1e-12)       # push a back by 1 m
    inter, will, _ = _sat(_corners(0, 0, 0), _corners(6, 0, 0))
    assert not inter and not will


def test_sat_rotated_rectangles_bounding_boxes_overlap_but_bodies_do_not():
    """Two 5 x 2 bodies at 45 degrees side by side: their axis-aligned boxes overlap, the
    rotated bodies (separated along their own normal) do not."""
    a = _corners(0.0, 0.0, math.pi / 4)
    b = _corners(1.6, -1.6, math.pi / 4)                     # 2.26 m apart across the body
    inter, will, _ = _sat(a, b)
    assert not inter and not will
    inter, _, _ = _sat(a, _corners(1.2, -1.2, math.pi / 4))  # 1.70 m apart < width 2 m
    assert inter


def test_sat_swept_will_intersect():
    a, b = _corners(0, 0, 0), _corners(5.5, 0, 0)            # 0.5 m gap
    assert _sat(a, b, da=(0.4, 0.0))[:2] == (False, False)
    assert _sat(a, b, da=(0.6, 0.0))[:2] == (False, True)


def test_sat_matches_are_polygons_intersecting():
    rng = np.random.default_rng(3)
    for _ in range(300):
        pa, pb = rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2) * 4
        ha, hb = rng.uniform(-np.pi, np.pi, 2)
        da, db = rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2)
        va, vb = Vehicle(None, pa, ha, 0.0), Vehicle(None, pb, hb, 0.0)
        ref = hwe_utils.are_polygons_intersecting(va.polygon(), vb.polygon(), da, db)
        a = rectangle_corners(torch.tensor(pa), _t(ha)[0], _t(5.0)[0], _t(2.0)[0])
        b = rectangle_corners(torch.tensor(pb), _t(hb)[0], _t(5.0)[0], _t(2.0)[0])
        inter, will, trans = _sat(a, b, da, db)
        assert (inter, will) == (ref[0], ref[1])
        if will:
            np.testing.assert_allclose(trans, ref[2], atol=1e-9)


# ------------------------------------------------------------------------------ backend API


def _inits(name="highway", seeds=(0, 1), **overrides):
    return [generate(name, make_config(name, overrides), seed, F) for seed in seeds]


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n not in SUPPORTED_SCENARIOS])
def test_unsupported_scenarios_raise_config_error(name):
    backend = BatchedBackend(1, F)
    with pytest.raises(ConfigError) as error:
        backend.reset(_inits(name, (0,)))
    message = str(error.value)
    assert name in message
    assert all(supported in message for supported in SUPPORTED_SCENARIOS)


def test_supported_scenarios_are_the_straight_ones():
    assert set(SUPPORTED_SCENARIOS) == {"highway", "lead-brake", "cut-in", "stopped-vehicle"}


def test_reset_rejects_other_lane_widths_and_frequencies():
    init = _inits(seeds=(0,))[0]
    wide = dataclasses.replace(init, road=RoadSpec(lanes=4, lane_width_m=3.5))
    with pytest.raises(ConfigError, match="lane_width_m"):
        BatchedBackend(1, F).reset([wide])
    with pytest.raises(ValueError, match="Hz"):
        BatchedBackend(1, 20).reset([init])
    with pytest.raises(ValueError, match="every env"):
        BatchedBackend(2, F).reset([init, None])


def test_reset_matches_highway_backend_initial_snapshot():
    inits = _inits("cut-in", (0, 1, 2))
    batched = BatchedBackend(3, F)
    batched.reset(inits)
    snap = batched.snapshot()
    snap.validate()
    for w, init in enumerate(inits):
        highway = HighwayBackend(F)
        highway.reset(init)
        ref = highway.snapshot()
        n = ref.valid.shape[1]
        for f in dataclasses.fields(ref):
            x, y = getattr(ref, f.name)[0], getattr(snap, f.name)[w]
            np.testing.assert_array_equal(y[:n] if x.ndim else y, x, err_msg=f.name)
        timers = [v.timer for v in highway.road.vehicles[1:]]
        np.testing.assert_array_equal(batched.state.timer[w, 1:n].numpy(), timers)


def test_padding_and_max_vehicles():
    inits = [_inits("highway", (0,))[0], _inits("lead-brake", (0,))[0]]
    backend = BatchedBackend(2, F)
    backend.reset(inits)
    snap = backend.snapshot()
    n0, n1 = len(inits[0].vehicles), len(inits[1].vehicles)
    assert snap.shape == (2, max(n0, n1))
    assert snap.valid[1, :n1].all() and not snap.valid[1, n1:].any()
    assert (snap.vehicle_id[1, n1:] == -1).all() and snap.vehicle_id[1, :n1].tolist() == \
        list(range(n1))
    with pytest.raises(ConfigError, match="max_vehicles"):
        BatchedBackend(1, F, max_vehicles=5).reset(inits[:1])
    fixed = BatchedBackend(2, F, max_vehicles=40)
    fixed.reset(inits)
    assert fixed.state.num_slots == 40


def test_slots_grow_when_a_larger_scenario_is_reset():
    small = _inits("lead-brake", (0, 1))
    backend = BatchedBackend(2, F)
    backend.reset(small)
    zero = np.zeros((2, 2))
    backend.substep(np.full(2, DT), zero, zero)
    before = backend.state
    backend.reset([None, _inits("highway", (3,))[0]])
    after = backend.state
    n = before.num_slots
    assert after.num_slots == len(_inits("highway", (3,))[0].vehicles) > n
    assert torch.equal(after.position[0, :n], before.position[0])
    assert not after.valid[0, n:].any()
    assert backend.substep_index.tolist() == [1, 0]


def test_per_env_reset_leaves_other_envs_untouched():
    inits = _inits("highway", (0, 1, 2))
    backend = BatchedBackend(3, F)
    backend.reset(inits)
    zero = np.zeros((3, 2))
    for _ in range(5):
        backend.substep(np.full(3, DT), zero, zero)
    before = backend.state
    backend.reset([None, _inits("highway", (9,))[0], None])
    after = backend.state
    for f in dataclasses.fields(before):
        a, b = getattr(before, f.name), getattr(after, f.name)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a[[0, 2]], b[[0, 2]]), f.name
    fresh = BatchedBackend(1, F)
    fresh.reset(_inits("highway", (9,)))
    assert torch.equal(after.position[1], fresh.state.position[0])
    assert after.substep.tolist() == [5, 0, 5]


def test_zero_length_pieces_are_no_ops():
    inits = _inits("lead-brake", (0, 1))
    a, b = BatchedBackend(2, F), BatchedBackend(2, F)
    a.reset(inits)
    b.reset(inits)
    command = np.array([[1.0, 0.01], [-2.0, -0.01]])
    junk = np.full((2, 2), 99.0)
    for _ in range(10):
        a.substep(np.full(2, DT), command, junk)       # all in the first piece
        b.substep(np.zeros(2), junk, command)          # all in the second piece
    for f in ("position", "speed", "heading", "steering", "acceleration"):
        assert torch.equal(getattr(a.state, f), getattr(b.state, f)), f
    with pytest.raises(ValueError, match="first_s"):
        a.substep(np.full(2, 2 * DT), command, command)


def test_commands_from_pieces():
    first_s, first, second = commands_from_pieces(
        [[Piece(DT, Command(1.0, 0.1))],
         [Piece(0.005, Command(-1.0, 0.0)), Piece(DT - 0.005, Command(2.0, -0.1))]], DT)
    np.testing.assert_array_equal(first_s, [DT, 0.005])
    np.testing.assert_array_equal(first, [[1.0, 0.1], [-1.0, 0.0]])
    np.testing.assert_array_equal(second, [[1.0, 0.1], [2.0, -0.1]])


def test_road_geometry_matches_highway_backend():
    inits = _inits("highway", (0, 1))
    backend = BatchedBackend(2, F)
    backend.reset(inits)
    geometry = backend.road_geometry()
    network = RoadNetwork.straight_road_network(lanes=4, length=2000.0, speed_limit=30.0)
    ref = network_geometry(network)
    for f in dataclasses.fields(ref):
        x = getattr(ref, f.name)
        y = getattr(geometry, f.name)
        assert y.shape == (2,) + x.shape[1:], f.name
        np.testing.assert_array_equal(y, np.broadcast_to(x, y.shape), err_msg=f.name)


def test_road_geometry_pads_roads_with_different_lane_counts():
    inits = [_inits("highway", (0,))[0], _inits("lead-brake", (0,))[0]]   # 4 and 3 lanes
    backend = BatchedBackend(2, F)
    backend.reset(inits)
    geometry = backend.road_geometry()
    for w, lanes in enumerate((4, 3)):
        ref = network_geometry(RoadNetwork.straight_road_network(lanes=lanes, length=2000.0))
        s, k = ref.lane_segments.shape[1], ref.marking_segments.shape[1]
        np.testing.assert_array_equal(geometry.lane_segments[w, :s], ref.lane_segments[0])
        np.testing.assert_array_equal(geometry.marking_segments[w, :k], ref.marking_segments[0])
        assert geometry.lane_valid[w].sum() == s and geometry.marking_valid[w].sum() == k
    assert not geometry.lane_valid[1, 3:].any()


def test_hazard_tracker_finds_the_stopped_vehicle_onset():
    inits = _inits("stopped-vehicle", (0, 1)) + _inits("lead-brake", (0,))
    backend = BatchedBackend(3, F)
    backend.reset(inits)
    tracker = BatchedHazardTracker(3, F)
    tracker.reset([i.hazard for i in inits])
    references = [HazardTracker(i.hazard, F) for i in inits]
    zero = np.zeros((3, 2))
    for k in range(125):                             # onsets at substeps 105 and 115
        state = backend.state
        onsets = tracker.update(state, backend.snapshot)
        snap = backend.snapshot()
        for w, ref in enumerate(references):
            expected = ref.update(dataclasses.replace(
                snap, **{f.name: getattr(snap, f.name)[w:w + 1]
                         for f in dataclasses.fields(snap)}), k)
            assert tracker.states()[w] == expected
            assert bool(onsets.active[w]) == expected.active
        backend.substep(np.full(3, DT), zero, zero)
    onset = tracker.onsets.onset_substep.tolist()
    assert onset[0] > 0 and onset[1] > 0 and onset[2] == inits[2].hazard.onset_substep


def test_state_helpers():
    backend = BatchedBackend(2, F)
    backend.reset(_inits("highway", (0, 1)))
    state = backend.state
    assert state.to("cpu").position.device.type == "cpu"
    moved = state.replace(position=state.position + 1.0)
    mixed = where_env(torch.tensor([True, False]), moved, state)
    assert torch.equal(mixed.position[0], moved.position[0])
    assert torch.equal(mixed.position[1], state.position[1])
    assert where_env(torch.tensor([True, True]), moved, state) is moved
    hinted = moved.replace(order_hint=torch.zeros_like(state.kind))
    assert where_env(torch.tensor([True, False]), hinted, state).order_hint is hinted.order_hint
    assert state.ego_crashed.shape == (2,)
