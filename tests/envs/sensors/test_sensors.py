"""Tests for envs.sensors: bev raster, lidar, ego vector, ground-truth objects.

Every expected value is computed by hand from the conventions in the module docstring
(pixel (r, c) centred at x = range_m - (r + 0.5) * res, y = -half_width + (c + 0.5) * res;
lidar beam i at angle 2 pi i / beams towards +y), or by a brute-force float64 reference.
Geometry keeps pixel centres off shape boundaries, except in the one test about ties.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pytest
import reflexdrive.envs.sensors as sensors
import torch
from reflexdrive.envs.config import EGO_FEATURES, SensorConfig
from reflexdrive.envs.sensors import (
    BEV_EGO,
    BEV_MARKINGS,
    BEV_ROAD,
    BEV_VEHICLES,
    OBJECT_FIELDS,
    cast_lidar,
    constants,
    ego_vector,
    ground_truth_objects,
    render_bev,
    road_plan,
    tensor_ops,
    to_ego_frame,
)
from reflexdrive.envs.types import RoadGeometry, WorldSnapshot

TRUTH = SensorConfig(lidar_range_noise_m=0.0, lidar_range_rate_noise_mps=0.0)
"""Default geometry (64 x 64 px at 1 m, range 48 m, 16 m behind, 32 m each side)."""

CAR = (4.6, 1.8)          # length, width [m]: edges fall between pixel centres
TRUCK = (12.0, 2.5)


# ----------------------------------------------------------------------------- builders


def make_snapshot(worlds, slots=None, ego_speed=20.0):
    """WorldSnapshot from per-world vehicle lists; vehicle 0 of each list is the ego.

    Each vehicle: (x, y, heading, speed, length, width). Padding slots hold a decoy
    vehicle (right in front of the ego) marked invalid, so any use of padding shows.
    """
    slots = slots or max(len(w) for w in worlds)
    b = len(worlds)
    position = np.zeros((b, slots, 2))
    heading, speed = np.zeros((b, slots)), np.zeros((b, slots))
    length, width = np.full((b, slots), 4.0), np.full((b, slots), 2.0)
    vid = np.full((b, slots), -1, dtype=np.int64)
    valid = np.zeros((b, slots), dtype=bool)
    for i, world in enumerate(worlds):
        ego_x, ego_y, ego_h = world[0][:3]
        position[i, :] = (ego_x + 6.0 * math.cos(ego_h), ego_y + 6.0 * math.sin(ego_h))
        for j, (x, y, h, s, ln, wd) in enumerate(world):
            position[i, j] = (x, y)
            heading[i, j], speed[i, j], length[i, j], width[i, j] = h, s, ln, wd
            vid[i, j], valid[i, j] = j, True
    z = np.zeros(b)
    snap = WorldSnapshot(
        time_s=z.copy(), position=position, heading=heading, speed=speed,
        acceleration=np.tile(np.linspace(0.5, 1.0, slots), (b, 1)), length=length,
        width=width, vehicle_id=vid, valid=valid, ego_steering=z + 0.1,
        ego_lane_offset=z + 0.2, ego_heading_error=z + 0.3,
        ego_lane_index=np.ones(b, dtype=np.int64), ego_lane_count=np.full(b, 3),
        ego_on_road=np.ones(b, dtype=bool), crashed=np.zeros(b, dtype=bool),
        ego_on_route_exit=np.ones(b, dtype=bool))
    snap.validate()
    return snap


def ego(x=0.0, y=0.0, heading=0.0, speed=20.0, size=CAR):
    return (x, y, heading, speed, *size)


def car(x, y, heading=0.0, speed=20.0, size=CAR):
    return (x, y, heading, speed, *size)


def make_road(worlds):
    """RoadGeometry from per-world (lanes, markings); lanes: [((x0, y0), (x1, y1), hw)],
    markings: [((x0, y0), (x1, y1))]. Padding segments are decoys marked invalid."""
    b = len(worlds)
    s = max(1, max(len(w[0]) for w in worlds))
    k = max(1, max(len(w[1]) for w in worlds))
    decoy = [[-10.0, 0.0], [10.0, 0.0]]
    lanes = np.tile(np.array(decoy), (b, s, 1, 1))
    half = np.full((b, s), 2.0)
    lane_valid = np.zeros((b, s), dtype=bool)
    marks = np.tile(np.array(decoy), (b, k, 1, 1))
    mark_valid = np.zeros((b, k), dtype=bool)
    for i, (ls, ms) in enumerate(worlds):
        for j, (p, q, hw) in enumerate(ls):
            lanes[i, j], half[i, j], lane_valid[i, j] = (p, q), hw, True
        for j, (p, q) in enumerate(ms):
            marks[i, j], mark_valid[i, j] = (p, q), True
    return RoadGeometry(lanes, half, lane_valid, marks, mark_valid)


NO_ROAD = ([], [])


def three_lanes(y0=0.0):
    """Lanes centred at y0 + 0, 4, 8 (half width 2), markings at y0 - 2, 2, 6, 10."""
    lanes = [((-500.0, y0 + 4.0 * i), (500.0, y0 + 4.0 * i), 2.0) for i in range(3)]
    marks = [((-500.0, y0 + 4.0 * i - 2.0), (500.0, y0 + 4.0 * i - 2.0)) for i in range(4)]
    return lanes, marks


def on(mask):
    """Rows and columns that are on in a 2-D mask, as sorted lists."""
    rows, cols = np.nonzero(mask)
    return sorted(set(rows.tolist())), sorted(set(cols.tolist()))


def lidar_of(world, config=TRUTH, **kw):
    return cast_lidar(make_snapshot([world]), config, **kw)[0]


def bev_of(world, road=NO_ROAD, config=TRUTH, **kw):
    return render_bev(make_snapshot([world]), make_road([road]), config, **kw)[0]


# ----------------------------------------------------------------------------- lidar


def test_lidar_vehicle_ahead_range_and_rate():
    scan = lidar_of([ego(speed=20.0), car(20.0, 0.0, speed=15.0, size=(5.0, 2.0))])
    assert scan.shape == (64, 2) and scan.dtype == np.float32
    assert scan[0, 0] == pytest.approx(17.5, abs=1e-4)
    assert scan[0, 1] == pytest.approx(15.0 - 20.0, abs=1e-4)
    # The box subtends atan(1 / 17.5) < 2 pi / 64: every other beam sees nothing.
    np.testing.assert_array_equal(scan[1:], np.tile([TRUTH.range_m, 0.0], (63, 1)))


def test_lidar_vehicle_behind_hits_beam_at_pi_and_closes():
    scan = lidar_of([ego(speed=20.0), car(-20.0, 0.0, speed=25.0, size=(5.0, 2.0))])
    assert scan[32, 0] == pytest.approx(17.5, abs=1e-4)
    assert scan[32, 1] == pytest.approx(-5.0, abs=1e-4)   # faster car behind: closing
    assert scan[0, 0] == TRUTH.range_m


def test_lidar_plus_y_is_beam_quarter_turn():
    scan = lidar_of([ego(), car(0.0, 10.0, size=(5.0, 2.0))])
    assert scan[16, 0] == pytest.approx(9.0, abs=1e-4)
    assert scan[16, 1] == pytest.approx(0.0, abs=1e-4)
    assert scan[48, 0] == TRUTH.range_m


def test_lidar_returns_the_nearer_of_two_vehicles_on_one_ray():
    scan = lidar_of([ego(speed=20.0), car(40.0, 0.0, speed=0.0, size=(5.0, 2.0)),
                     car(20.0, 0.0, speed=18.0, size=(5.0, 2.0))])
    assert scan[0, 0] == pytest.approx(17.5, abs=1e-4)
    assert scan[0, 1] == pytest.approx(-2.0, abs=1e-4)


def test_lidar_empty_world_and_out_of_range():
    for world in ([ego()], [ego(), car(60.0, 0.0)]):
        scan = lidar_of(world)
        np.testing.assert_array_equal(scan, np.tile([TRUTH.range_m, 0.0], (64, 1)))
    # Invalid padding slots (decoys 6 m ahead) are never hit.
    scan = cast_lidar(make_snapshot([[ego()]], slots=4), TRUTH)[0]
    np.testing.assert_array_equal(scan, np.tile([TRUTH.range_m, 0.0], (64, 1)))


def test_lidar_is_invariant_to_rotating_and_moving_the_world():
    world = [ego(speed=22.0), car(20.0, 0.3, 0.1, 18.0), car(-12.0, -4.0, -0.2, 30.0),
             car(5.0, 8.0, 1.2, 5.0, TRUCK)]
    angle, shift = 0.7, np.array([123.0, -45.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = [(*(rot @ np.array(v[:2]) + shift), v[2] + angle, *v[3:]) for v in world]
    np.testing.assert_allclose(lidar_of(moved), lidar_of(world), atol=1e-4)


def test_lidar_rate_uses_ground_velocities_of_a_crossing_vehicle():
    # A vehicle 10 m ahead driving across (+y) at 8 m/s while the ego does 20 m/s:
    # relative velocity (-20, 8), beam 0 direction (1, 0): rate -20.
    scan = lidar_of([ego(speed=20.0), car(10.0, 0.0, math.pi / 2, 8.0, (5.0, 2.0))])
    assert scan[0, 0] == pytest.approx(9.0, abs=1e-4)      # its side faces the ego
    assert scan[0, 1] == pytest.approx(-20.0, abs=1e-4)


# ----------------------------------------------------------------------------- bev


def test_bev_shape_dtype_and_values():
    for config in (TRUTH, SensorConfig(range_m=20.0, bev_behind_m=10.0, bev_half_width_m=16.0,
                                       bev_m_per_px=0.5)):
        bev = render_bev(make_snapshot([[ego(), car(10.0, 0.0)]] * 2),
                         make_road([three_lanes()] * 2), config)
        assert bev.shape == (2,) + config.bev_shape and bev.dtype == np.uint8
        assert set(np.unique(bev).tolist()) <= {0, 255}
    assert SensorConfig(range_m=20.0, bev_behind_m=10.0, bev_half_width_m=16.0,
                        bev_m_per_px=0.5).bev_shape == (4, 60, 64)


def test_bev_ego_rows_and_columns():
    # Ego 4.6 x 1.8 at the origin: x in [-2.3, 2.3] -> centres 1.5 .. -1.5 -> rows 46..49;
    # y in [-0.9, 0.9] -> centres -0.5, 0.5 -> columns 31, 32. Any world pose, same raster.
    for pose in ((0.0, 0.0, 0.0), (250.0, -40.0, 2.1)):
        bev = bev_of([ego(*pose)])
        assert on(bev[BEV_EGO]) == ([46, 47, 48, 49], [31, 32])
        assert (bev[BEV_EGO] > 0).sum() == 8
        assert not bev[BEV_VEHICLES].any() and not bev[BEV_ROAD].any()


def test_bev_vehicle_ahead_and_to_the_plus_y_side():
    bev = bev_of([ego(), car(10.0, 0.0), car(10.0, 4.0)])
    vehicles = bev[BEV_VEHICLES] > 0
    # x in [7.7, 12.3] -> centres 11.5 .. 8.5 -> rows 36..39; y = 0 -> columns 31, 32;
    # y in [3.1, 4.9] -> centres 3.5, 4.5 -> columns 35, 36 (+y is to the right).
    assert on(vehicles[:, :34]) == ([36, 37, 38, 39], [31, 32])
    assert on(vehicles[:, 34:]) == ([36, 37, 38, 39], [1, 2])
    assert vehicles.sum() == 16


def test_bev_rotated_vehicle_and_rotated_ego():
    # A car across the road 20 m ahead: x in [19.1, 20.9] -> rows 27, 28;
    # y in [-2.3, 2.3] -> columns 30..33.
    expected = ([27, 28], [30, 31, 32, 33])
    assert on(bev_of([ego(), car(20.0, 0.0, math.pi / 2)])[BEV_VEHICLES]) == expected
    # The same scene seen by an ego heading 0.9 rad from elsewhere in the world.
    h = 0.9
    c, s = math.cos(h), math.sin(h)
    world = [ego(30.0, -7.0, h), car(30.0 + 20.0 * c, -7.0 + 20.0 * s, h + math.pi / 2)]
    assert on(bev_of(world)[BEV_VEHICLES]) == expected


def test_bev_straight_three_lane_road_columns():
    # Lanes at world y = 0, 4, 8; ego at y = 0.25 so in the ego frame the road spans
    # y in [-2.25, 9.75] and the markings lie at -2.25, 1.75, 5.75, 9.75.
    bev = bev_of([ego(100.0, 0.25)], three_lanes())
    road, marks = bev[BEV_ROAD] > 0, bev[BEV_MARKINGS] > 0
    # Road: centres -1.5 .. 9.5 -> columns 30..41, the same in every row.
    assert np.nonzero(road[0])[0].tolist() == list(range(30, 42))
    np.testing.assert_array_equal(road, road[:1].repeat(64, 0))
    # Markings: within 0.5 px -> centres -2.5, 1.5, 5.5, 9.5 -> columns 29, 33, 37, 41.
    assert np.nonzero(marks[0])[0].tolist() == [29, 33, 37, 41]
    np.testing.assert_array_equal(marks, marks[:1].repeat(64, 0))


def test_bev_boundaries_on_pixel_centres_are_inside_in_every_row():
    # Ego centred in its lane, 5 x 2, heading off by 1e-9 rad: the markings (y = -2, 2, 6,
    # 10) lie exactly between two pixel centres and the ego's ends (x = +-2.5) exactly on
    # them. Boundaries are inside, consistently despite float32 rounding.
    bev = bev_of([ego(137.3, 0.0, 1e-9, size=(5.0, 2.0))], three_lanes()) > 0
    for row in bev[BEV_MARKINGS]:
        assert np.nonzero(row)[0].tolist() == [29, 30, 33, 34, 37, 38, 41, 42]
    assert on(bev[BEV_EGO]) == (list(range(45, 51)), [31, 32])   # x 2.5 .. -2.5


def test_bev_road_far_away_is_not_drawn_and_segment_ends_are_round():
    assert not bev_of([ego()], ([((0.0, 200.0), (100.0, 200.0), 2.0)], []))[BEV_ROAD].any()
    # A lane centre ending at x = 10.25 (y = 0.25): the cap reaches x = 12.25 on its axis.
    road = bev_of([ego()], ([((-200.0, 0.25), (10.25, 0.25), 2.0)], []))[BEV_ROAD] > 0
    first_row = np.nonzero(road.any(axis=1))[0][0]
    assert first_row == 36                                  # centre x = 11.5
    # |y - 0.25| <= sqrt(2^2 - 1.25^2) = 1.56 -> centres -0.5, 0.5, 1.5 -> columns 31..33.
    assert np.nonzero(road[36])[0].tolist() == [31, 32, 33]


def test_bev_occlusion_hides_a_car_behind_a_truck():
    # Truck 12 x 2.5 at x = 20 (near face at 14): its shadow at x = 27.7 spans
    # |y| <= 1.25 * 27.7 / 14 = 2.47, covering the car behind it but not the one beside.
    world = [ego(), car(20.0, 0.0, size=TRUCK), car(30.0, 0.0), car(30.0, 4.0)]
    hidden = bev_of(world)[BEV_VEHICLES] > 0
    shown = bev_of(world, config=replace(TRUTH, bev_occlusion=False))[BEV_VEHICLES] > 0
    car_rows, car_cols = slice(16, 20), slice(31, 33)       # x 28.5 .. 31.5, y = 0
    assert not hidden[car_rows, car_cols].any()
    assert shown[car_rows, car_cols].all()
    assert hidden[car_rows, 35:37].all()                    # the car beside: visible
    assert hidden[22:34, 31:33].all()                       # the truck: x 25.5 .. 14.5
    assert (shown & ~hidden).sum() == 8


def test_bev_matches_brute_force_reference():
    rng = np.random.default_rng(7)
    config = replace(TRUTH, bev_occlusion=False)
    for _ in range(4):
        ex, ey, eh = rng.uniform(-50, 50), rng.uniform(-50, 50), rng.uniform(-np.pi, np.pi)
        world = [ego(ex, ey, eh)] + [
            car(ex + rng.uniform(-40, 50), ey + rng.uniform(-40, 40), rng.uniform(-4, 4),
                size=(rng.uniform(3, 15), rng.uniform(1.5, 3))) for _ in range(12)]
        lanes = [((ex + rng.uniform(-90, 90), ey + rng.uniform(-90, 90)),
                  (ex + rng.uniform(-90, 90), ey + rng.uniform(-90, 90)), rng.uniform(1, 3))
                 for _ in range(6)]
        marks = [((ex + rng.uniform(-60, 60), ey + rng.uniform(-60, 60)),
                  (ex + rng.uniform(-60, 60), ey + rng.uniform(-60, 60))) for _ in range(6)]
        bev = bev_of(world, (lanes, marks), config) > 0
        ref, margin = _reference_bev(world, lanes, marks, config)
        bad = (bev != ref) & (margin > 1e-3)
        assert not bad.any(), np.argwhere(bad)[:5]
        assert ref[BEV_ROAD].any() and ref[BEV_VEHICLES].any()


def _reference_bev(world, lanes, marks, config):
    """Per-pixel float64 reference: (on, |distance to the boundary|) per channel."""
    _, h, w = config.bev_shape
    res = config.bev_m_per_px
    x = config.range_m - (np.arange(h) + 0.5) * res
    y = -config.bev_half_width_m + (np.arange(w) + 0.5) * res
    px, py = np.meshgrid(x, y, indexing="ij")
    ex, ey, eh = world[0][:3]
    c, s = math.cos(eh), math.sin(eh)

    def local(point):
        dx, dy = point[0] - ex, point[1] - ey
        return np.array([dx * c + dy * s, -dx * s + dy * c])

    on = np.zeros((4, h, w), dtype=bool)
    margin = np.full((4, h, w), np.inf)

    def segments(channel, items):
        for p, q, r in items:
            a, b = local(p), local(q)
            d = b - a
            t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / (d @ d), 0, 1)
            dist = np.hypot(px - a[0] - t * d[0], py - a[1] - t * d[1])
            on[channel] |= dist <= r
            margin[channel] = np.minimum(margin[channel], abs(dist - r))

    segments(BEV_ROAD, lanes)
    segments(BEV_MARKINGS, [(p, q, 0.5 * res) for p, q in marks])
    for j, (vx, vy, vh, _, ln, wd) in enumerate(world):
        channel = BEV_EGO if j == 0 else BEV_VEHICLES
        centre, rel = local((vx, vy)), vh - eh
        u = (px - centre[0]) * math.cos(rel) + (py - centre[1]) * math.sin(rel)
        v = -(px - centre[0]) * math.sin(rel) + (py - centre[1]) * math.cos(rel)
        on[channel] |= (abs(u) <= ln / 2) & (abs(v) <= wd / 2)
        near = np.minimum(abs(abs(u) - ln / 2), abs(abs(v) - wd / 2))
        margin[channel] = np.minimum(margin[channel], near)
    return on, margin


def test_chunked_equals_unchunked(monkeypatch):
    snap = make_snapshot([[ego(), car(10.0, 0.0), car(-8.0, 4.0, 0.3), car(30.0, 0.0)],
                          [ego(5.0, 5.0, 1.0), car(5.0, 25.0, 1.2, size=TRUCK)]])
    road = make_road([three_lanes(), three_lanes(3.0)])
    bev, scan = render_bev(snap, road, TRUTH), cast_lidar(snap, TRUTH)
    monkeypatch.setattr(tensor_ops, "CHUNK_ELEMENTS", 50)     # one world or primitive a chunk
    np.testing.assert_array_equal(render_bev(snap, road, TRUTH), bev)
    np.testing.assert_array_equal(cast_lidar(snap, TRUTH), scan)


# ----------------------------------------------------------------------------- batching


WORLD_A = [ego(0.0, 0.25, 0.0, 20.0), car(10.0, 0.0), car(20.0, 4.0, 0.0, 25.0),
           car(-10.0, -4.0, 0.1, 18.0, TRUCK)]
WORLD_B = [ego(50.0, 30.0, 1.1, 15.0), car(60.0, 45.0, 1.0, 10.0)]
ROAD_A = three_lanes()
ROAD_B = ([((0.0, 0.0), (100.0, 90.0), 1.8), ((0.0, 4.0), (100.0, 94.0), 1.8)],
          [((0.0, -2.0), (100.0, 88.0))])


def test_batched_equals_per_world():
    snap = make_snapshot([WORLD_A, WORLD_B])
    road = make_road([ROAD_A, ROAD_B])
    bev, scan = render_bev(snap, road, TRUTH), cast_lidar(snap, TRUTH)
    objects, valid = ground_truth_objects(snap, TRUTH)
    for i, (world, rd) in enumerate(((WORLD_A, ROAD_A), (WORLD_B, ROAD_B))):
        one = make_snapshot([world], slots=len(WORLD_A))
        np.testing.assert_array_equal(bev[i], render_bev(one, make_road([rd]), TRUTH)[0])
        np.testing.assert_array_equal(scan[i], cast_lidar(one, TRUTH)[0])
        one_objects, one_valid = ground_truth_objects(one, TRUTH)
        np.testing.assert_array_equal(objects[i], one_objects[0])
        np.testing.assert_array_equal(valid[i], one_valid[0])
        np.testing.assert_array_equal(ego_vector(snap)[i], ego_vector(one)[0])
    assert bev[0, BEV_VEHICLES].any() and bev[1, BEV_VEHICLES].any()
    assert bev[0, BEV_ROAD].any() and bev[1, BEV_ROAD].any()


def test_one_road_shared_by_all_worlds():
    snap = make_snapshot([WORLD_A, [ego(0.0, 4.0)]])
    shared = render_bev(snap, make_road([ROAD_A]), TRUTH)
    np.testing.assert_array_equal(shared, render_bev(snap, make_road([ROAD_A] * 2), TRUTH))


# ----------------------------------------------------------------------------- noise

NOISY = SensorConfig(bev_position_noise_m=1.0, bev_dropout_prob=0.2, lidar_range_noise_m=0.5,
                     lidar_range_rate_noise_mps=0.5, lidar_dropout_prob=0.1)
BUSY = [ego(), car(10.0, 0.0), car(20.0, 4.0), car(-10.0, -4.0), car(5.0, -4.0),
        car(30.0, 0.0), car(-20.0, 0.0), car(0.0, 8.0)]


def _noisy(seed):
    rng = np.random.default_rng(seed)
    snap, road = make_snapshot([BUSY]), make_road([ROAD_A])
    return render_bev(snap, road, NOISY, rng), cast_lidar(snap, NOISY, rng)


def test_noise_is_deterministic_per_seed():
    bev1, scan1 = _noisy(3)
    bev2, scan2 = _noisy(3)
    np.testing.assert_array_equal(bev1, bev2)
    np.testing.assert_array_equal(scan1, scan2)
    bev3, scan3 = _noisy(4)
    assert not np.array_equal(bev1[:, BEV_VEHICLES], bev3[:, BEV_VEHICLES])
    assert not np.array_equal(scan1, scan3)
    # Road and ego carry no noise.
    np.testing.assert_array_equal(bev1[:, [BEV_ROAD, BEV_MARKINGS, BEV_EGO]],
                                  bev3[:, [BEV_ROAD, BEV_MARKINGS, BEV_EGO]])


def test_noise_only_on_hits_and_ranges_clipped():
    _, scan = _noisy(5)
    scan = scan[0]
    truth = lidar_of(BUSY)
    no_hit = truth[:, 0] == TRUTH.range_m
    np.testing.assert_array_equal(scan[no_hit], truth[no_hit])
    assert (scan[:, 0] >= 0).all() and (scan[:, 0] <= NOISY.range_m).all()
    kept = ~no_hit & (scan[:, 0] != NOISY.range_m)
    assert kept.sum() > 5
    assert np.abs(scan[kept, 0] - truth[kept, 0]).max() < 3.0   # 6 sigma
    assert (scan[kept, 0] != truth[kept, 0]).all()


def test_rng_none_is_the_truth_even_with_noise_configured():
    snap, road = make_snapshot([BUSY]), make_road([ROAD_A])
    np.testing.assert_array_equal(render_bev(snap, road, NOISY),
                                  render_bev(snap, road, replace(NOISY, bev_position_noise_m=0.0,
                                                                 bev_dropout_prob=0.0)))
    np.testing.assert_array_equal(cast_lidar(snap, NOISY), cast_lidar(snap, TRUTH))


def test_randomness_consumed_depends_on_shapes_only():
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    render_bev(make_snapshot([BUSY]), make_road([ROAD_A]), NOISY, a)
    cast_lidar(make_snapshot([BUSY]), NOISY, a)
    quiet = [ego()] + [car(300.0 + 10 * i, 0.0) for i in range(len(BUSY) - 1)]
    render_bev(make_snapshot([quiet]), make_road([NO_ROAD]), NOISY, b)
    cast_lidar(make_snapshot([quiet]), NOISY, b)
    assert a.random() == b.random()


def test_dropout_one_removes_every_vehicle_and_return():
    config = replace(NOISY, bev_dropout_prob=1.0, lidar_dropout_prob=1.0)
    rng = np.random.default_rng(0)
    snap = make_snapshot([BUSY])
    bev = render_bev(snap, make_road([ROAD_A]), config, rng)[0]
    assert not bev[BEV_VEHICLES].any() and bev[BEV_EGO].any()
    np.testing.assert_array_equal(cast_lidar(snap, config, rng)[0],
                                  np.tile([config.range_m, 0.0], (64, 1)))


# ----------------------------------------------------------------------------- truth, ego


def test_ground_truth_objects_in_a_rotated_ego_frame():
    # Ego at (10, 5) heading +y: world +y is ego +x, world -x is ego +y.
    world = [ego(10.0, 5.0, math.pi / 2, 20.0),
             car(10.0, 15.0, math.pi / 2, 10.0),            # 10 m ahead, same heading
             car(7.0, 5.0, math.pi, 5.0, TRUCK),             # 3 m to the +y side
             car(10.0, -25.0, 0.0, 0.0)]                     # 30 m behind, heading -pi/2
    objects, valid = ground_truth_objects(make_snapshot([world]), TRUTH)
    assert objects.shape == (1, TRUTH.max_objects, len(OBJECT_FIELDS))
    assert objects.dtype == np.float32 and valid.dtype == bool
    assert valid[0].tolist() == [True] * 3 + [False] * (TRUTH.max_objects - 3)
    expected = np.array([
        [0.0, 3.0, 0.0, 5.0, math.pi / 2, *TRUCK, 2],
        [10.0, 0.0, 10.0, 0.0, 0.0, *CAR, 1],
        [-30.0, 0.0, 0.0, 0.0, -math.pi / 2, *CAR, 3]])
    np.testing.assert_allclose(objects[0, :3], expected, atol=1e-5)
    assert not objects[0, 3:].any()


def test_ground_truth_heading_wraps_to_half_open_interval_and_truncates():
    world = [ego(0.0, 0.0, math.pi / 2), car(5.0, 0.0, -math.pi / 2),
             car(0.0, 20.0), car(0.0, 2.0 * 10.0 + 15.0), car(0.0, 9.0)]
    snap = make_snapshot([world], slots=7)
    snap.valid[0, 1] = False                                  # nearest, but invalid
    objects, valid = ground_truth_objects(snap, replace(TRUTH, max_objects=2))
    assert objects.shape == (1, 2, 8) and valid.all()
    np.testing.assert_array_equal(objects[0, :, 7], [4.0, 2.0])   # 9 m, then 20 m
    world[1] = car(0.0, 4.0, -math.pi / 2)                        # relative -pi -> +pi
    objects, _ = ground_truth_objects(make_snapshot([world]), TRUTH)
    assert objects[0, 0, 4] == pytest.approx(math.pi)
    assert objects[0, 0, 7] == 1.0


def test_ground_truth_with_no_other_vehicle():
    objects, valid = ground_truth_objects(make_snapshot([[ego()]]), TRUTH)
    assert objects.shape == (1, TRUTH.max_objects, 8) and not valid.any()
    assert not objects.any()


def test_ego_vector_order_and_dtype():
    snap = make_snapshot([[ego(speed=12.5)], [ego(speed=3.0)]])
    vec = ego_vector(snap)
    assert vec.shape == (2, len(EGO_FEATURES)) and vec.dtype == np.float32
    np.testing.assert_allclose(vec[0], [12.5, 0.5, 0.1, 0.2, 0.3, 1.0, 3.0, 1.0], atol=1e-6)
    assert vec[1, 0] == 3.0


def test_to_ego_frame_numpy_and_torch_agree():
    points = np.array([[[1.0, 2.0], [3.0, -1.0]], [[0.0, 0.0], [5.0, 5.0]]])
    ego_pos = np.array([[1.0, 1.0], [0.0, 0.0]])
    ego_heading = np.array([math.pi / 2, math.pi])
    expected = np.array([[[1.0, 0.0], [-2.0, -2.0]], [[0.0, 0.0], [-5.0, -5.0]]])
    np.testing.assert_allclose(to_ego_frame(points, ego_pos, ego_heading), expected, atol=1e-12)
    got = to_ego_frame(torch.from_numpy(points), torch.from_numpy(ego_pos),
                       torch.from_numpy(ego_heading))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    # Extra middle axes are fine: (B, 1, 2, 2).
    assert to_ego_frame(points[:, None], ego_pos, ego_heading).shape == (2, 1, 2, 2)


# ----------------------------------------------------------------------------- fast paths
#
# The bev is drawn per row (runs of columns), with a fast path for straight roads and a
# generic path for other roads (see envs/sensors/). These tests pin both against a slow,
# straightforward float64 reference that tests every pixel centre against every shape
# (with occlusion and noise), on highway-env's own roads: they must agree on every pixel
# whose centre is more than `TIE_M` from a shape boundary (closer, float32 rounding may
# go either way).

TIE_M = 1e-3


def _highway_world(lanes, seed, seconds=1.0):
    """(snapshot, road) of a stepped highway scene from the real backend (B = 1)."""
    from reflexdrive.envs.backends.highway import HighwayBackend
    from reflexdrive.envs.scenarios import generate, make_config
    from reflexdrive.envs.types import Command, Piece

    init = generate("highway", make_config("highway", {"lanes": lanes, "vehicles": 18}),
                    seed, 50)
    backend = HighwayBackend(50)
    backend.reset(init)
    for _ in range(int(seconds * 50)):
        backend.substep((Piece(0.02, Command(0.0, 0.0)),))
    return backend.snapshot(), backend.road_geometry()


def _moved(snap, dx=0.0, dy=0.0, ego_turn=0.0, squeeze=1.0):
    """A copy of a B = 1 snapshot moved along the road, its ego turned by `ego_turn`, and
    its traffic pulled towards the ego by `squeeze` (to get occlusions and close calls)."""
    position = snap.position.copy()
    rel = position - position[:, :1]
    position = position[:, :1] + rel * np.array([squeeze, 1.0])
    position[..., 0] += dx
    position[..., 1] += dy
    heading = snap.heading.copy()
    heading[:, 0] += ego_turn
    return replace(snap, position=position, heading=heading)


def _stack(snaps, roads=None):
    """Concatenate B = 1 snapshots (same N) and roads (padded to the largest)."""
    fields = {name: np.concatenate([getattr(s, name) for s in snaps])
              for name in WorldSnapshot.__dataclass_fields__}
    snap = WorldSnapshot(**fields)
    if roads is None:
        return snap
    s = max(r.lane_segments.shape[1] for r in roads)
    k = max(r.marking_segments.shape[1] for r in roads)

    def pad(a, n, fill):
        extra = np.full((1, n - a.shape[1]) + a.shape[2:], fill, dtype=a.dtype)
        return np.concatenate([a, extra], 1)

    return snap, RoadGeometry(
        np.concatenate([pad(r.lane_segments, s, 0.0) for r in roads]),
        np.concatenate([pad(r.lane_half_width, s, 0.0) for r in roads]),
        np.concatenate([pad(r.lane_valid, s, False) for r in roads]),
        np.concatenate([pad(r.marking_segments, k, 0.0) for r in roads]),
        np.concatenate([pad(r.marking_valid, k, False) for r in roads]))


def _reference_slab(origin, direction, half):
    """Float64 slab method, broadcasting: `(t_enter, t_leave)` of the rays
    `origin + t direction` through the boxes `|x| <= half` (their own frames), `t_enter`
    clamped at 0; a zero direction component is inside or outside that slab for all t."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - origin) / direction, (half - origin) / direction
    inside = np.abs(origin) <= half
    lo = np.where(direction == 0, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
    hi = np.where(direction == 0, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
    return np.maximum(lo.max(-1), 0.0), hi.min(-1)


def _into(vectors, heading):
    """World/ego-frame vectors `(..., 2)` seen in frames of heading `heading` (broadcast)."""
    c, s = np.cos(heading), np.sin(heading)
    return np.stack([vectors[..., 0] * c + vectors[..., 1] * s,
                     vectors[..., 1] * c - vectors[..., 0] * s], -1)


def _reference_visible(centre, heading, half, valid):
    """Float64 occlusion, straight from its definition: vehicle j is hidden when the ray
    from the ego centre to each of its 5 sample points enters another valid non-ego box
    (slab method) before `1 - 1e-4` of the way."""
    n = len(valid)
    visible = np.ones(n, dtype=bool)
    signs = np.array(constants.SAMPLE_SIGNS)
    others = valid.copy()
    others[0] = False
    origin = _into(-centre, heading)                          # ego centre in each box frame
    for j in np.nonzero(others)[0]:
        samples = centre[j] + _into(signs * half[j], -heading[j])       # (5, 2)
        blockers = others & (np.arange(n) != j)
        direction = _into(samples[:, None, :], heading[None, :])         # (5, n, 2)
        enter, leave = _reference_slab(origin[None], direction, half[None])
        blocked = (leave >= enter) & (enter < 1.0 - 1e-4) & blockers[None]
        visible[j] = (~blocked.any(1)).any()
    return visible


def _reference_world(snap, road, b, config, noise=None, keep=None):
    """Float64 bev of world `b`: `(on (C, H, W) bool, margin (C, H, W) [m])`, margin the
    distance of the pixel centre from the nearest boundary of a shape of its channel."""
    _, h, w = config.bev_shape
    res = config.bev_m_per_px
    ex, ey = snap.position[b, 0]
    eh = snap.heading[b, 0]
    c, s = math.cos(eh), math.sin(eh)
    x = config.range_m - (np.arange(h) + 0.5) * res
    y = -config.bev_half_width_m + (np.arange(w) + 0.5) * res
    px, py = np.meshgrid(x, y, indexing="ij")                 # ego frame
    on = np.zeros((4, h, w), dtype=bool)
    margin = np.full((4, h, w), np.inf)

    def local(points):                                        # world -> ego frame
        d = points - np.array([ex, ey])
        return np.stack([d[..., 0] * c + d[..., 1] * s, d[..., 1] * c - d[..., 0] * s], -1)

    def capsules(channel, segments, radii):
        segments = local(segments)
        near = np.hypot(*(0.5 * (segments[:, 0] + segments[:, 1])).T) <= (
            0.5 * np.hypot(*(segments[:, 1] - segments[:, 0]).T) + radii + 80.0)
        for (a, q), r in zip(segments[near], radii[near]):
            d = q - a
            t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / (d @ d), 0, 1)
            dist = np.hypot(px - a[0] - t * d[0], py - a[1] - t * d[1])
            on[channel] |= dist <= r
            margin[channel] = np.minimum(margin[channel], np.abs(dist - r))

    lanes = road.lane_valid[b]
    capsules(BEV_ROAD, road.lane_segments[b][lanes], road.lane_half_width[b][lanes])
    marks = road.marking_valid[b]
    capsules(BEV_MARKINGS, road.marking_segments[b][marks], np.full(marks.sum(), 0.5 * res))
    centre = local(snap.position[b])
    heading = snap.heading[b] - eh
    half = np.stack([snap.length[b], snap.width[b]], -1) / 2
    drawn = snap.valid[b].copy()
    if config.bev_occlusion:
        drawn &= _reference_visible(centre, heading, half, snap.valid[b])
    if keep is not None:
        drawn[1:] &= keep[b, 1:]
    shown = centre + (0.0 if noise is None else noise[b] * (np.arange(len(drawn)) > 0)[:, None])
    for j in np.nonzero(drawn)[0]:
        channel = BEV_EGO if j == 0 else BEV_VEHICLES
        cr, sr = math.cos(heading[j]), math.sin(heading[j])
        u = (px - shown[j, 0]) * cr + (py - shown[j, 1]) * sr
        v = (py - shown[j, 1]) * cr - (px - shown[j, 0]) * sr
        on[channel] |= (np.abs(u) <= half[j, 0]) & (np.abs(v) <= half[j, 1])
        edge = np.minimum(np.abs(np.abs(u) - half[j, 0]), np.abs(np.abs(v) - half[j, 1]))
        margin[channel] = np.minimum(margin[channel], edge)
    return on, margin


def _assert_matches_reference(bev, snap, road, config, noise=None, keep=None):
    for b in range(bev.shape[0]):
        ref, margin = _reference_world(snap, road, b, config, noise, keep)
        bad = ((bev[b] > 0) != ref) & (margin > TIE_M)
        assert not bad.any(), (b, np.argwhere(bad)[:5])


@functools.lru_cache(maxsize=1)
def _highway_batch():
    """8 worlds on 3- and 4-lane highway-env roads: moved along the road (two near its
    ends), egos turned by up to 0.4 rad (one by 1.2 rad: beyond the fast path, drawn by the
    generic path in the same batch), traffic squeezed towards the ego."""
    snaps, roads = [], []
    for i, (lanes, dx, turn, squeeze) in enumerate([
            (4, 0.0, 0.0, 1.0), (3, 37.1, 0.05, 0.5), (4, 811.3, -0.4, 0.35),
            (3, -185.0, 0.2, 0.6), (4, 1750.5, 0.01, 0.4), (3, 5.0, 1.2, 0.3),
            (4, 402.7, 0.31, 0.5), (3, 999.0, 1e-9, 0.45)]):
        snap, road = _highway_world(lanes, seed=i)
        snaps.append(_moved(snap, dx=dx, ego_turn=turn, squeeze=squeeze))
        roads.append(road)
    return _stack(snaps, roads)


def test_prepare_road_finds_the_straight_structure_of_highway_roads():
    _, road = _highway_world(4, seed=0, seconds=0.0)
    plan = sensors.prepare_road(road.lane_segments, road.lane_half_width, road.lane_valid,
                                road.marking_segments, road.marking_valid)
    assert plan.straight.tolist() == [True] and not plan.any_generic
    lines = plan.lines[0]
    assert (plan.lanes, plan.marks) == (4, 5) and lines.shape[0] == 4 + 5 + 1
    np.testing.assert_allclose(lines[:4, 0].numpy(), [0.0, 4.0, 8.0, 12.0])
    np.testing.assert_allclose(lines[4:9, 0].numpy(), [-2.0, 2.0, 6.0, 10.0, 14.0])
    assert plan.striped == (False,) * 4 + (False, True, True, True, False) + (False,)
    np.testing.assert_allclose(lines[5, 1:6].numpy(), [0.0, 7.33, 3.0, 273.0, 1996.76])
    # The lanes side by side make one band: t from -2 to 14, over the whole road.
    assert plan.merged
    np.testing.assert_allclose(lines[9, [0, 1, 5, 6, 7]].numpy(), [6.0, 0.0, 2000.0, 8.0, 1.0])
    assert plan.min_gap.tolist() == pytest.approx([4.33])
    # Duplicated rows are analysed once; curved chords and uneven stripes are not straight.
    _, three = _highway_world(3, seed=0, seconds=0.0)
    _, both = _stack([make_snapshot([[ego()]])] * 3, [road, three, road])
    plan = sensors.prepare_road(both.lane_segments, both.lane_half_width, both.lane_valid,
                                both.marking_segments, both.marking_valid)
    assert plan.variant.tolist() == [0, 1, 0] and plan.straight.tolist() == [True, True]
    bent = make_road([([((0.0, 0.0), (50.0, 0.0), 2.0), ((50.0, 0.0), (100.0, 5.0), 2.0)],
                       [])])
    uneven = make_road([([((0.0, 0.0), (100.0, 0.0), 2.0)],
                         [((0.0, 2.0), (3.0, 2.0)), ((7.0, 2.0), (10.0, 2.0)),
                          ((15.0, 2.0), (18.0, 2.0))])])
    for road in (bent, uneven):
        plan = sensors.prepare_road(road.lane_segments, road.lane_half_width, road.lane_valid,
                                    road.marking_segments, road.marking_valid)
        assert plan.straight.tolist() == [False] and plan.any_generic


def test_bev_on_highway_roads_matches_the_reference():
    snap, road = _highway_batch()
    config = replace(TRUTH, bev_position_noise_m=0.5, bev_dropout_prob=0.2)
    noise, keep = sensors.draw_bev_noise(np.random.default_rng(3), config, *snap.shape)
    bev = sensors.render_bev(snap, road, config, np.random.default_rng(3))
    _assert_matches_reference(bev, snap, road, config, noise, keep)
    assert bev[:, BEV_MARKINGS].any((1, 2)).all() and bev[:, BEV_VEHICLES].any()
    # The ego 0.4 rad off the road's heading and worlds near the road's ends stay exact;
    # with no turn at all (world 0) the run bounds follow the rows exactly.
    assert bev[0, BEV_ROAD].any(1).all()


def test_bev_generic_path_agrees_with_the_fast_path(monkeypatch):
    snap, road = _highway_batch()
    fast = render_bev(snap, road, TRUTH)
    monkeypatch.setattr(constants, "MIN_COS", 2.0)             # no world takes the fast path
    road_plan.PLAN_CACHE.clear()
    generic = render_bev(snap, road, TRUTH)
    road_plan.PLAN_CACHE.clear()
    for b in range(len(fast)):
        _, margin = _reference_world(snap, road, b, TRUTH)
        differ = fast[b] != generic[b]
        assert not (differ & (margin > TIE_M)).any(), b
    _assert_matches_reference(generic, snap, road, TRUTH)


def test_bev_batched_equals_per_world_on_highway_roads():
    snap, road = _highway_batch()
    config = replace(TRUTH, bev_position_noise_m=0.3, bev_dropout_prob=0.1)
    noise, keep = sensors.draw_bev_noise(np.random.default_rng(1), config, *snap.shape)
    with torch.inference_mode():
        plan = sensors.prepare_road(road.lane_segments, road.lane_half_width, road.lane_valid,
                                    road.marking_segments, road.marking_valid)

        def draw(rows):
            one = plan if len(rows) > 1 else sensors.prepare_road(
                *(torch.from_numpy(a[rows]) for a in (
                    road.lane_segments, road.lane_half_width, road.lane_valid,
                    road.marking_segments, road.marking_valid)))
            return sensors.render_bev_torch(
                *(torch.from_numpy(np.ascontiguousarray(a[rows])) for a in (
                    snap.position, snap.heading, snap.length, snap.width, snap.valid)),
                *one.segments, config, position_noise=torch.from_numpy(noise[rows]),
                keep=torch.from_numpy(keep[rows]), road_plan=one)

        batch = draw(np.arange(snap.shape[0]))
        for b in range(snap.shape[0]):
            assert torch.equal(batch[b:b + 1], draw(np.array([b]))), b
    # ... and the lidar.
    scan = cast_lidar(snap, TRUTH)
    for b in range(snap.shape[0]):
        one = _stack([replace(snap, **{k: getattr(snap, k)[b:b + 1]
                                       for k in WorldSnapshot.__dataclass_fields__})])
        np.testing.assert_array_equal(scan[b], cast_lidar(one, TRUTH)[0])


@pytest.mark.parametrize("path", ["fast", "generic"])
def test_bev_stripes_light_exactly_the_expected_pixels(path, monkeypatch):
    # A painted line at y = 0.5 (column 32's centre) striped every 7.33 m from x = 10.2:
    # [10.2, 13.2], [17.53, 20.53], [24.86, 27.86]. Pixel rows are centred at
    # x = 47.5 - r. A row is lit where its centre is within 0.5 of a stripe, caps included:
    # x = 13.5 (0.3 past the end), 17.5 (0.03 before the start) and 24.5 (0.36) are; 9.5,
    # 16.5, 21.5, 23.5, 28.5 (0.7, 1.03, 0.97, 1.36, 0.64 away) are not.
    if path == "generic":
        monkeypatch.setattr(constants, "MIN_COS", 2.0)         # no world takes the fast path
    stripes = [((x, 0.5), (x + 3.0, 0.5)) for x in (10.2, 17.53, 24.86)]
    road = ([((-100.0, 8.0), (100.0, 8.0), 2.0)], stripes)
    expected = [(r, 32) for r in list(range(20, 24)) + list(range(27, 31)) + list(range(34, 38))]
    bev = bev_of([ego()], road) > 0
    assert sorted(map(tuple, np.argwhere(bev[BEV_MARKINGS]).tolist())) == expected
    # The same from a world rotated and moved: every pixel keeps its place.
    angle, shift = -2.1, np.array([350.0, -75.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])

    def move(p):
        return tuple(rot @ np.array(p) + shift)

    moved = ([(move(p), move(q), r) for p, q, r in road[0]],
             [(move(p), move(q)) for p, q in stripes])
    bev = bev_of([ego(*shift, angle)], moved) > 0
    assert sorted(map(tuple, np.argwhere(bev[BEV_MARKINGS]).tolist())) == expected


def test_bev_into_a_given_buffer():
    snap, road = make_snapshot([WORLD_A, WORLD_B]), make_road([ROAD_A, ROAD_B])
    expected = render_bev(snap, road, TRUTH)
    out = torch.full((2,) + TRUTH.bev_shape, 7, dtype=torch.uint8)
    with torch.inference_mode():
        got = sensors.render_bev_torch(
            *(torch.from_numpy(a) for a in (snap.position, snap.heading, snap.length,
                                            snap.width, snap.valid, road.lane_segments,
                                            road.lane_half_width, road.lane_valid,
                                            road.marking_segments, road.marking_valid)),
            TRUTH, out=out)
    assert got is out
    np.testing.assert_array_equal(out.numpy(), expected)
    with pytest.raises(ValueError):
        sensors.render_bev_torch(*(torch.from_numpy(a) for a in (
            snap.position, snap.heading, snap.length, snap.width, snap.valid,
            road.lane_segments, road.lane_half_width, road.lane_valid,
            road.marking_segments, road.marking_valid)), TRUTH, out=out[:1])


def test_road_plan_is_cached_per_road_object():
    snap, road = make_snapshot([WORLD_A]), make_road([ROAD_A])
    road_plan.PLAN_CACHE.clear()
    render_bev(snap, road, TRUTH)
    render_bev(snap, road, TRUTH)
    assert len(road_plan.PLAN_CACHE) == 1
    render_bev(snap, make_road([ROAD_A]), TRUTH)                # an equal road, another object
    assert len(road_plan.PLAN_CACHE) == 2


def _reference_lidar(snap, b, config):
    """Float64 lidar of world `b` by the slab method, all beams against all boxes."""
    eh = snap.heading[b, 0]
    beam = eh + 2 * np.pi * np.arange(config.lidar_beams) / config.lidar_beams
    d = np.stack([np.cos(beam), np.sin(beam)], -1)                      # (beams, 2) world
    heading = snap.heading[b]
    origin = _into(snap.position[b, 0] - snap.position[b], heading)     # (N, 2)
    half = np.stack([snap.length[b], snap.width[b]], -1) / 2
    enter, leave = _reference_slab(origin[None], _into(d[:, None], heading[None]), half[None])
    target = snap.valid[b] & (np.arange(len(heading)) > 0)
    t = np.where((leave >= enter) & target[None], enter, np.inf)        # (beams, N)
    j = t.argmin(1)
    best = t[np.arange(len(j)), j]
    velocity = snap.speed[b][:, None] * np.stack([np.cos(heading), np.sin(heading)], -1)
    rate = ((velocity[j] - velocity[0]) * d).sum(1)
    hit = best < config.range_m
    return np.stack([np.where(hit, best, config.range_m), np.where(hit, rate, 0.0)], -1)


def test_lidar_on_highway_scenes_matches_the_reference():
    snap, _ = _highway_batch()
    scan = cast_lidar(snap, TRUTH)
    hits = 0
    for b in range(snap.shape[0]):
        ref = _reference_lidar(snap, b, TRUTH)
        np.testing.assert_allclose(scan[b], ref, atol=1e-4)
        hits += (ref[:, 0] < TRUTH.range_m).sum()
    assert hits > 20


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    snap = make_snapshot([WORLD_A, WORLD_B, BUSY])
    road = make_road([ROAD_A, ROAD_B, ROAD_A])
    for seed in (None, 1):
        rng = lambda: None if seed is None else np.random.default_rng(seed)  # noqa: E731
        np.testing.assert_array_equal(render_bev(snap, road, NOISY, rng(), "cuda"),
                                      render_bev(snap, road, NOISY, rng()))
        np.testing.assert_allclose(cast_lidar(snap, NOISY, rng(), "cuda"),
                                   cast_lidar(snap, NOISY, rng()), atol=1e-4)
