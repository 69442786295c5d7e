"""`r157-regulation`: esmini's Regulation model — brake at 6 m/s^2 exactly on the ticks
where TTC < v_rel / 12 + 0.35 s + 0.1 s, within 46 m, for in-lane and cutting-in objects."""

import numpy as np
import pytest
from reflexdrive.agents.reference import RegulationConfig, RegulationDriver
from reflexdrive.agents.reference.regulation import regulation_critical
from reflexdrive.agents.registry import make_agent

from reflexdrive.common.validation import ConfigError


def slower_lead(k, start_gap_m=20.0, closing_mps=10.0, y_m=0.0, width_m=2.0):
    """A lead at 10 m/s whose bumper gap to the ego (20 m/s) shrinks by 1 m per tick."""
    return {"x_m": start_gap_m - closing_mps * 0.1 * k + 5.0, "y_m": y_m,
            "vx_mps": 20.0 - closing_mps, "vy_mps": 0.0, "width_m": width_m}


def commands(ground_truth, objects_at, ticks, n=1):
    agent = RegulationDriver()
    out = []
    for k in range(ticks):
        obs, info = ground_truth([20.0] * n, objects_at(k))
        out.append(agent.act(obs, info).actions[:, 0].astype(np.float64))
    return np.array(out)


def test_threshold_is_vrel_over_twice_the_decel_plus_reaction_and_margin():
    cfg = RegulationConfig()
    # closing 10 m/s: threshold 10 / 12 + 0.45 = 1.2833 s
    ttc = np.array([1.29, 1.28, 0.5])
    np.testing.assert_array_equal(regulation_critical(ttc, np.full(3, 10.0), np.full(3, 5.0),
                                                      cfg), [False, True, True])
    assert not regulation_critical(np.array(1.0), np.array(0.0), np.array(5.0), cfg)


def test_brakes_at_six_from_the_first_tick_under_the_threshold(ground_truth):
    got = commands(ground_truth, lambda k: [[slower_lead(k)]], 12)[:, 0]
    # gap 20 - k: TTC (20 - k) / 10; k = 7 gives 1.3 s (not below 1.2833), k = 8 gives 1.2
    np.testing.assert_array_equal(got[:8], 0.0)
    np.testing.assert_array_equal(got[8:], -6.0)


def test_sees_nothing_beyond_46_m(ground_truth):
    # closing 40 m/s: threshold 3.78 s; the gaps 47..42 m (centres 52..47 m) are all
    # critical by TTC, but only centres within 46 m are seen
    got = commands(ground_truth, lambda k: [[slower_lead(k, start_gap_m=47.0,
                                                         closing_mps=10.0)
                                              | {"vx_mps": -20.0}]], 5)[:, 0]
    np.testing.assert_array_equal(got, 0.0)
    near = commands(ground_truth, lambda k: [[slower_lead(k, start_gap_m=40.0)
                                              | {"vx_mps": -20.0}]], 2)[:, 0]
    np.testing.assert_array_equal(near, -6.0)


@pytest.mark.parametrize("centre_y_m, cutting_in", [(2.75, False), (2.625, True)])
def test_cut_in_counts_once_the_front_wheel_is_03_m_inside_the_lane(ground_truth, centre_y_m,
                                                                       cutting_in):
    # width 2 m: its near side is at centre - 1; inside the lane (edge at 2 m) by 0.3 m
    # when centre < 2.7 m
    got = commands(ground_truth, lambda k: [[slower_lead(8, y_m=centre_y_m)]], 1)[0, 0]
    assert got == (-6.0 if cutting_in else 0.0)


def test_each_env_decides_on_its_own(ground_truth):
    got = commands(ground_truth, lambda k: [[slower_lead(k)], [], [slower_lead(k + 3)]], 10,
                   n=3)
    np.testing.assert_array_equal(got[:, 0], [0.0] * 8 + [-6.0] * 2)
    np.testing.assert_array_equal(got[:, 1], 0.0)
    np.testing.assert_array_equal(got[:, 2], [0.0] * 5 + [-6.0] * 5)


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match="regulation.max_decel_mps2"):
        RegulationConfig(max_decel_mps2=0.0)
    with pytest.raises(ConfigError, match="regulation.tick_s"):
        RegulationConfig(tick_s=-0.1)


def test_registry_builds_it():
    agent = make_agent("r157-regulation", tick_s=0.05, device="cpu")
    assert isinstance(agent, RegulationDriver) and agent.config.tick_s == 0.05
    assert agent.stage_names == ("reference",)
