"""Synthetic ground truth for the reference-driver tests: one tick of `N` envs."""

import numpy as np
import pytest
from reflexdrive.envs.config import EGO_FEATURES
from reflexdrive.envs.sensors import OBJECT_FIELDS


def _tick(ego_speed, objects):
    """`(obs, info)` for one tick.

    Args:
        ego_speed: `(N,)` ego speeds [m/s] (ego centred in its lane, aligned with it).
        objects: per env a list of dicts with keys of `OBJECT_FIELDS` (x_m, y_m, vx_mps,
            vy_mps, and optionally heading_rad, length_m (5), width_m (2), vehicle_id (1)).
    """
    n = len(ego_speed)
    m = max(1, max(len(row) for row in objects))
    table = np.zeros((n, m, len(OBJECT_FIELDS)), np.float32)
    valid = np.zeros((n, m), bool)
    for i, row in enumerate(objects):
        for j, obj in enumerate(row):
            values = {"heading_rad": 0.0, "length_m": 5.0, "width_m": 2.0, "vehicle_id": 1.0,
                      **obj}
            table[i, j] = [values[name] for name in OBJECT_FIELDS]
            valid[i, j] = True
    ego = np.zeros((n, len(EGO_FEATURES)), np.float32)
    ego[:, EGO_FEATURES.index("speed_mps")] = ego_speed
    ego[:, EGO_FEATURES.index("lane_count")] = 3
    ego[:, EGO_FEATURES.index("on_road")] = 1
    return {"ego": ego}, {"gt_objects": table, "gt_valid": valid}


@pytest.fixture
def ground_truth():
    """The builder `_tick(ego_speed, objects) -> (obs, info)`."""
    return _tick
