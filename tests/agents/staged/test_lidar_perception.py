"""Classical lidar perception on hand-built scans of lane-aligned boxes."""

from __future__ import annotations

import numpy as np
import pytest
from reflexdrive.agents.staged.lidar_perception import (
    LidarPerception,
    beam_directions,
    cluster_scan,
)
from reflexdrive.envs.config import EGO_FEATURES

from reflexdrive.common.validation import ConfigError

BEAMS, RANGE = 64, 48.0


def scan_of(boxes, ego_speed=25.0, beams=BEAMS):
    """Ranges and range rates of `beams` rays from the origin against axis-aligned boxes
    `(x, y, length, width, vx)` (slab method), as `envs.sensors.cast_lidar` defines them."""
    cos, sin = beam_directions(beams)
    scan = np.zeros((1, beams, 2))
    scan[0, :, 0] = RANGE
    for i in range(beams):
        for x, y, length, width, vx in boxes:
            lo = np.array([x - length / 2, y - width / 2])
            hi = np.array([x + length / 2, y + width / 2])
            d = np.array([cos[i], sin[i]])
            with np.errstate(divide="ignore", invalid="ignore"):
                t1, t2 = lo / d, hi / d
            t_near = np.nanmax(np.minimum(t1, t2))
            t_far = np.nanmin(np.maximum(t1, t2))
            if t_near <= t_far and t_near > 0 and t_near < scan[0, i, 0]:
                scan[0, i] = (t_near, (vx - ego_speed) * cos[i])
    return scan


def observe(scan, speed=25.0, lane_offset=0.0):
    ego = np.zeros((1, len(EGO_FEATURES)), np.float32)
    ego[0, EGO_FEATURES.index("speed_mps")] = speed
    ego[0, EGO_FEATURES.index("lane_offset_m")] = lane_offset
    return {"lidar": scan.astype(np.float32), "ego": ego}


def detections_of(boxes, **kwargs):
    return LidarPerception()(observe(scan_of(boxes), **kwargs), {})


def test_car_straight_ahead_is_one_object_with_its_rear_face_and_speed():
    """Beams 63 and 0 (either side of straight ahead) hit the same car: the cluster that
    wraps past the last beam is one object. Centre = rear face + L/2; vx = rate + v_ego."""
    det = detections_of([(20.0, 0.0, 5.0, 2.0, 20.0)])
    assert det.valid.sum() == 1
    assert det.position[0, 0] == pytest.approx([20.0, 0.0], abs=1e-9)
    assert det.velocity[0, 0] == pytest.approx([20.0, 0.0], abs=1e-6)
    assert det.size[0, 0] == pytest.approx([5.0, 2.0])
    assert det.object_id[0, 0] == -1


def test_car_beside_in_the_next_lane_snaps_to_its_lane_centre():
    det = detections_of([(0.0, -4.0, 5.0, 2.0, 25.0)])
    assert det.valid.sum() == 1
    assert det.position[0, 0] == pytest.approx([0.0, -4.0], abs=0.05)
    # its corner beams still look along the lane (|cos| >= 0.5): its speed is known
    assert det.velocity[0, 0] == pytest.approx([25.0, 0.0], abs=1e-6)
    # a car straight beside, seen only by near-lateral beams: velocity unknown
    narrow = LidarPerception(min_cos=0.9)(observe(scan_of([(0.0, -4.0, 5.0, 2.0, 25.0)])), {})
    assert np.isnan(narrow.velocity[0, 0]).all()


def test_side_hits_metres_apart_are_one_car_and_separate_cars_stay_apart():
    """A car ahead-left is hit on its side at shallow angles, metres apart: one object.
    Two cars in different lanes: two objects, nearest first."""
    det = detections_of([(12.0, -4.0, 5.0, 2.0, 25.0), (30.0, 4.0, 5.0, 2.0, 25.0)])
    assert det.valid.sum() == 2
    near, far = det.position[0, 0], det.position[0, 1]
    assert near[1] == pytest.approx(-4.0) and far[1] == pytest.approx(4.0)
    assert abs(near[0] - 12.0) <= 2.5 and abs(far[0] - 30.0) <= 2.5   # side-only ambiguity


def test_car_behind_uses_its_front_face():
    det = detections_of([(-15.0, 0.0, 5.0, 2.0, 30.0)])
    assert det.valid.sum() == 1
    assert det.position[0, 0] == pytest.approx([-15.0, 0.0], abs=1e-9)
    assert det.velocity[0, 0, 0] == pytest.approx(30.0, abs=1e-6)


def test_lane_offset_moves_the_lane_centres():
    """Ego 1 m to +y of its lane centre: the next lane's centre is at -5 m in its frame."""
    det = detections_of([(0.0, -5.0, 5.0, 2.0, 25.0)], lane_offset=1.0)
    assert det.position[0, 0, 1] == pytest.approx(-5.0, abs=1e-9)


def test_empty_scan_and_cluster_labels():
    det = detections_of([])
    assert det.valid.shape == (1, 16) and not det.valid.any()
    ranges = np.full((1, 8), RANGE)
    ranges[0, [0, 1, 7]] = 10.0                   # one object across the wrap, 7 -> 0 -> 1
    ranges[0, 4] = 10.0                           # another one
    labels, count = cluster_scan(ranges, RANGE, 1.5, 1.2 * 8)
    assert count[0] == 2
    assert labels[0, 0] == labels[0, 1] == labels[0, 7] != labels[0, 4]
    assert (labels[0, [2, 3, 5, 6]] == -1).all()


def test_config_is_validated():
    with pytest.raises(ConfigError, match="min_cos"):
        LidarPerception(min_cos=2.0)
    with pytest.raises(ConfigError, match="max_objects"):
        LidarPerception(max_objects=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"range_m": True}, "range_m=True is invalid: must be a number"),
    ({"min_break_m": "3"}, "min_break_m='3' is invalid: must be a number"),
    ({"max_objects": 16.0}, "max_objects=16.0 is invalid: must be an integer >= 1"),
    ({"max_objects": True}, "max_objects=True is invalid: must be an integer >= 1"),
    ({"min_cos": 2.0}, "min_cos=2.0 is invalid: must lie in [0, 1]"),
])
def test_config_rejects_bools_strings_and_float_counts(kwargs, message):
    with pytest.raises(ConfigError) as error:
        LidarPerception(**kwargs)
    assert str(error.value) == message
