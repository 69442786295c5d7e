"""Both backends report the same criticality at onset (`info["hazard"]`), and the batched
env the same on its per-substep path and the numba kernel's whole-tick path; values pinned
by kinematics where the episode makes them exact."""

import math

import numpy as np
import pytest
from reflexdrive.envs.criticality import CRITICAL_HORIZON_S
from reflexdrive.envs.gym.single import DrivingEnv
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.envs.scenarios import generate, make_config
from reflexdrive.envs.types import CRITICALITY_KEYS

SEEDS = (1000, 1001, 1002)
HAZARDS = ("lead-brake", "cut-in", "stopped-vehicle")


def _batched_at_end(scenario, record):
    env = BatchedDrivingEnv(len(SEEDS), scenario, observations=False, record=record)
    _, info = env.reset(seed=list(SEEDS))
    assert not info["hazard"]["critical"].any()
    for key in CRITICALITY_KEYS[1:]:
        assert np.isnan(info["hazard"][key]).all()
    done = np.zeros(len(SEEDS), dtype=bool)
    final = {}
    while not done.all():
        _, _, terminated, truncated, info = env.step(np.zeros((len(SEEDS), 2)))
        ended = (terminated | truncated) & ~done
        for key in CRITICALITY_KEYS + ("onset_s",):
            final.setdefault(key, info["hazard"][key].copy())[ended] = info["hazard"][key][ended]
        done |= ended
    return final


def _highway_at_end(scenario, seed):
    env = DrivingEnv(scenario, observations=False)
    _, info = env.reset(seed=seed)
    assert not set(CRITICALITY_KEYS) & set(info["hazard"])     # left out before onset
    first = None
    while True:
        _, _, terminated, truncated, info = env.step(np.zeros(2))
        if first is None and "critical" in info["hazard"]:
            first = {key: info["hazard"][key] for key in CRITICALITY_KEYS}
        if terminated or truncated:
            break
    assert first == {key: info["hazard"][key] for key in CRITICALITY_KEYS}   # frozen
    return info["hazard"]


@pytest.mark.parametrize("scenario", HAZARDS)
def test_backends_and_paths_agree_on_criticality(scenario):
    per_substep = _batched_at_end(scenario, record=True)
    numba_tick = _batched_at_end(scenario, record=False)
    for key in CRITICALITY_KEYS + ("onset_s",):
        np.testing.assert_allclose(numba_tick[key], per_substep[key], rtol=1e-12, atol=1e-9)
    for i, seed in enumerate(SEEDS):
        highway = _highway_at_end(scenario, seed)
        assert highway["onset_s"] == per_substep["onset_s"][i]
        assert highway["critical"] == per_substep["critical"][i]
        # the backends' stated parity: 1e-3 m and m/s
        assert highway["onset_gap_m"] == pytest.approx(per_substep["onset_gap_m"][i], abs=1e-3)
        for key in ("onset_ttc_s", "onset_headway_s", "required_decel_mps2"):
            assert highway[key] == pytest.approx(per_substep[key][i], rel=1e-3, abs=1e-4)


def test_lead_brake_at_onset_is_the_closed_form_of_its_initial_state():
    # an ego holding its speed behind a lead cruising at the same speed: the onset gap is
    # the initial gap, and the lead stops first, so a = v^2 / (2 (g + v^2 / (2 b)))
    config = make_config("lead-brake")
    final = _batched_at_end("lead-brake", record=False)
    for i, seed in enumerate(SEEDS):
        init = generate("lead-brake", config, seed, 50)
        ego, lead = init.vehicles[0], init.vehicles[1]
        gap = lead.s_m - ego.s_m - 5.0
        v, b = ego.speed_mps, init.hazard.decel_mps2
        assert final["onset_gap_m"][i] == pytest.approx(gap, abs=1e-9)
        assert final["onset_ttc_s"][i] == math.inf
        assert final["onset_headway_s"][i] == pytest.approx(gap / v)
        required = v * v / (2 * (gap + v * v / (2 * b)))
        assert final["required_decel_mps2"][i] == pytest.approx(required)
        t_stop = v / b
        touches = gap < v * CRITICAL_HORIZON_S - (v * t_stop / 2 if t_stop < CRITICAL_HORIZON_S
                                                  else v * 4 - b * 8)
        assert bool(final["critical"][i]) == touches


def test_stopped_vehicle_at_onset_is_45_m_ahead_and_needs_v2_over_2g():
    final = _batched_at_end("stopped-vehicle", record=False)
    config = make_config("stopped-vehicle")
    for i, seed in enumerate(SEEDS):
        v = generate("stopped-vehicle", config, seed, 50).vehicles[0].speed_mps
        gap = final["onset_gap_m"][i]
        # its rear within 48 m of the ego's centre, for the first boundary: 45.5 - v dt < g
        assert 45.5 - v / 50 < gap <= 45.5 + 1e-3
        assert final["required_decel_mps2"][i] == pytest.approx(v * v / (2 * gap))
        assert final["onset_ttc_s"][i] == pytest.approx(gap / v)
        assert final["critical"][i]
