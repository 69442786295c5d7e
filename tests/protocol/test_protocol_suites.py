"""Protocol suites: grids as the protocols state them, scoring bands, the test rig, and an
end-to-end run through the CLI and the harness with scripted stacks (exact outcomes)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from reflexdrive.agents.base import Decision
from reflexdrive.agents.registry import STACKS
from reflexdrive.envs.scenarios import EGO_START_S, VEHICLE_LENGTH_M

from reflexdrive.cli import main
from reflexdrive.common.validation import ConfigError
from reflexdrive.protocol.grid import KPH
from reflexdrive.protocol.harness import ProtocolConfig, ncap_test_over, run_protocol
from reflexdrive.protocol.hold_speed import HoldSpeedAgent, hold_speed_command, rig_actions
from reflexdrive.protocol.ncap import impact_score, ncap_grid
from reflexdrive.protocol.r157 import PRE_ONSET_S, r157_grid, r157_score


def _gap(point) -> float:
    ego, target = point.init.vehicles
    return target.s_m - ego.s_m - VEHICLE_LENGTH_M


def _by_test(points, test):
    return [p for p in points if p.test == test]


def test_ncap_grid_has_the_protocols_speeds_gaps_and_decelerations():
    points = ncap_grid()
    assert [p.ego_speed_kph for p in _by_test(points, "CCRs")] == list(range(10, 55, 5))
    assert [p.ego_speed_kph for p in _by_test(points, "CCRm")] == list(range(30, 85, 5))
    ccrb = _by_test(points, "CCRb")
    assert sorted((p.parameters["gap_m"], p.parameters["target_decel_mps2"]) for p in ccrb) == [
        (12.0, 2.0), (12.0, 6.0), (40.0, 2.0), (40.0, 6.0)]
    assert all(p.ego_speed_kph == 50.0 and p.init.vehicles[1].speed_mps == 50.0 * KPH
               for p in ccrb)
    assert len({p.point for p in points}) == len(points) == 24


def test_ccrs_and_ccrm_start_at_ttc_4s():
    for point in _by_test(ncap_grid(), "CCRs") + _by_test(ncap_grid(), "CCRm"):
        ego, target = point.init.vehicles
        closing = ego.speed_mps - target.speed_mps
        assert _gap(point) == pytest.approx(4.0 * closing, abs=1e-9)
        assert point.init.vehicles[0].s_m == EGO_START_S
        assert point.release_s == 0.0 and point.init.hazard.kind == "stopped_vehicle"
    ccrm = _by_test(ncap_grid(), "CCRm")
    assert {p.init.vehicles[1].speed_mps for p in ccrm} == {20.0 * KPH}
    assert _gap(ccrm[-1]) == pytest.approx(4.0 * 60.0 / 3.6)         # 80 vs 20 km/h


def test_r157_grid_follows_osc_alks():
    points = r157_grid()
    lead = _by_test(points, "lead-brake")
    assert [(p.ego_speed_kph, p.parameters["headway_s"]) for p in lead] == [
        (7.2, 1.0), (10.0, 1.1), (20.0, 1.2), (30.0, 1.3), (40.0, 1.4), (50.0, 1.5),
        (60.0, 1.6)]
    assert all(_gap(p) == pytest.approx(p.parameters["headway_s"] * p.test_speed_mps)
               and p.init.hazard.decel_mps2 == 6.0 for p in lead)
    cut_in = _by_test(points, "cut-in")
    # ego 20..60 x relative -10..-50 with a positive cutter speed (15 pairs) x dx0 0..60 (7)
    # x Vy 0.5..3 (6), less Vy = 3 m/s with the five 10 km/h cutters (Vy < cutter speed)
    assert len(cut_in) == 15 * 7 * 6 - 5 * 7 == 595
    assert {p.parameters["gap_m"] for p in cut_in} == {0, 10, 20, 30, 40, 50, 60}
    assert {p.parameters["lateral_speed_mps"] for p in cut_in} == {0.5, 1.0, 1.5, 2.0, 2.5, 3.0}
    assert all(p.ego_speed_kph + p.parameters["relative_speed_kph"] > 0 for p in cut_in)
    assert all(p.parameters["lateral_speed_mps"] < p.init.vehicles[1].speed_mps for p in cut_in)
    assert not [p for p in cut_in if p.parameters["lateral_speed_mps"] == 3.0
                and p.parameters["target_speed_kph"] == 10.0]
    assert len([p for p in cut_in if p.parameters["lateral_speed_mps"] == 2.5
                and p.parameters["target_speed_kph"] == 10.0]) == 5 * 7
    assert len({p.point for p in points}) == len(points)
    point = next(p for p in cut_in if p.point == "CI-v40-dv-20-dx10-vy1.5")
    assert point.init.hazard.lateral_speed_mps == 1.5 and point.heat_facet.endswith("1.5 m/s")
    # runs 6 s past the end of the lane change: T = pi 4 m / (2 Vy)
    assert point.init.duration_s == pytest.approx(PRE_ONSET_S + 4.0 * math.pi / 3.0 + 6.0)
    for p in cut_in:          # the bumper gap has closed to dx0 exactly at the onset
        ego, cutter = p.init.vehicles
        at_onset = _gap(p) - (ego.speed_mps - cutter.speed_mps) * PRE_ONSET_S
        assert at_onset == pytest.approx(p.parameters["gap_m"], abs=1e-9)
        assert p.init.hazard.onset_substep == round(PRE_ONSET_S * 50)
    stationary = _by_test(points, "stationary")
    assert [p.ego_speed_kph for p in stationary] == list(range(5, 65, 5))
    assert all(p.init.hazard.trigger_range_m == 48.0 for p in stationary)


@pytest.mark.parametrize("test, speed, impact, score", [
    ("CCRs", 50, 0.0, 1.0), ("CCRs", 50, 4.99, 1.0), ("CCRs", 50, 5.0, 0.75),
    ("CCRs", 50, 29.9, 0.5), ("CCRs", 50, 39.9, 0.25), ("CCRs", 50, 40.0, 0.0),
    ("CCRs", 20, 0.0, 1.0), ("CCRs", 20, 1.0, 0.0), ("CCRs", 25, 14.9, 0.5),
    ("CCRm", 80, 19.9, 0.75), ("CCRm", 80, 49.9, 0.25), ("CCRm", 30, 5.0, 0.0),
    ("CCRb", 50, 0.5, 1.0), ("CCRb", 50, 3.0, 0.0)])
def test_impact_speed_bands(test, speed, impact, score):
    assert impact_score(test, speed, impact) == score


def test_impact_score_rejects_speeds_the_protocol_lacks():
    with pytest.raises(ConfigError, match="CCRs ego_speed_kph"):
        impact_score("CCRs", 55, 0.0)


def test_r157_rule_counts_a_collision_only_where_the_reference_avoids_one():
    assert r157_score(False, None) == 1.0
    assert r157_score(True, True) == 1.0
    assert r157_score(True, False) == 0.0
    assert math.isnan(r157_score(True, None))


def test_rig_holds_before_release_and_takes_the_lower_acceleration_after():
    stack = np.array([[-3.0, 0.1], [2.0, -0.2], [-3.0, 0.1]])
    hold = np.array([0.0, 0.0, 0.5])
    applied = rig_actions(stack, hold, np.array([True, True, False]))
    np.testing.assert_array_equal(applied, [[-3.0, 0.1], [0.0, -0.2], [0.5, 0.0]])
    np.testing.assert_allclose(hold_speed_command(np.array([10.0, 9.0, 20.0, 0.0]),
                                                  np.array([10.0, 10.0, 10.0, 10.0])),
                               [0.0, 2.0, -8.0, 4.0])


class _Scripted:
    """Brakes at -8 m/s^2 at every tick the target (vehicle 1) is in the ground truth, and
    otherwise asks for +4 m/s^2 (which the rig caps at the test speed)."""

    name = "scripted"
    stage_names = ("policy",)

    def __init__(self, brakes: bool = True, **_):
        self.brakes = brakes

    def reset(self, done):
        pass

    def act(self, obs, info):
        sees = (info["gt_valid"] & (info["gt_objects"][..., -1] == 1)).any(axis=1)
        accel = np.where(sees & self.brakes, -8.0, 4.0)
        return Decision(np.stack([accel, np.zeros_like(accel)], 1).astype(np.float32),
                        {"policy": 0.0})


def test_hold_speed_agent_wraps_a_stack():
    agent = HoldSpeedAgent(_Scripted(), np.array([10.0, 10.0]), np.array([0.0, 5.0]))
    objects = np.zeros((2, 1, 8), np.float32)
    objects[:, 0, -1] = 1
    info = {"gt_valid": np.ones((2, 1), bool), "gt_objects": objects,
            "time_s": np.array([1.0, 1.0])}
    decision = agent.act({"ego": np.array([[10.0], [10.0]], np.float32)}, info)
    np.testing.assert_array_equal(decision.actions, [[-8.0, 0.0], [0.0, 0.0]])


def test_harness_scores_scripted_stacks_exactly(monkeypatch):
    monkeypatch.setitem(STACKS, "brakes", lambda **kw: _Scripted(brakes=True))
    monkeypatch.setitem(STACKS, "never", lambda **kw: _Scripted(brakes=False))
    config = ProtocolConfig(suite="ncap-ccr", stacks=("brakes", "never"),
                            points=("CCRs-v20", "CCRs-v50"), latency="fixed:0.03")
    frame = run_protocol(config).set_index(["stack", "point"])
    # held at the test speed, the stack that never brakes hits at exactly that speed
    for speed in (20, 50):
        row = frame.loc[("never", f"CCRs-v{speed}")]
        assert row.collided and row.impact_speed_kph == pytest.approx(speed, abs=1e-3)
        assert math.isnan(row.reaction_time_s)
    assert frame.loc[("never", "CCRs-v50")].score == 0.0
    # the target is in the ground truth from t_h = 0: reaction = (t_k* - t_h) + L = 0.03 s
    for speed in (20, 50):
        row = frame.loc[("brakes", f"CCRs-v{speed}")]
        assert not row.collided and row.score == 1.0
        assert row.reaction_time_s == pytest.approx(0.03, abs=1e-9)


def test_ncap_test_ends_at_standstill_or_when_slower_than_the_target():
    assert ncap_test_over(0.0, 0.0) and ncap_test_over(5.0, 6.0)
    assert not ncap_test_over(6.0, 6.0) and not ncap_test_over(3.0, math.nan)


@pytest.mark.parametrize("kwargs, field", [
    ({"latency": "measured"}, "latency"), ({"stacks": ("nope",)}, "stacks"),
    ({"points": ("CCRs-v11",)}, "points"), ({"suite": "iihs"}, "suite"),
    ({"stacks": ("staged", "staged")}, "stacks")])
def test_protocol_config_rejects_bad_input(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ProtocolConfig(**kwargs)


def test_cli_writes_csv_and_report(tmp_path, capsys):
    out = tmp_path / "ncap"
    assert main(["protocol", "--suite", "ncap-ccr", "--stacks", "staged", "--points",
                 "CCRs-v20,CCRb-d6-g12", "--latency", "fixed:0.03", "--out", str(out)]) == 0
    frame = pd.read_csv(out / "protocol.csv")
    assert list(frame["point"]) == ["CCRs-v20", "CCRb-d6-g12"]
    assert {"stack", "suite", "test", "point", "ego_speed_kph", "gap_m", "collided",
            "impact_speed_kph", "reaction_time_s", "score"} <= set(frame.columns)
    page = (out / "protocol_report.html").read_text()
    assert "data:image/png;base64," in page and "CCRb" in page
    assert main(["protocol", "--suite", "ncap-ccr", "--points", "CCRs-v11",
                 "--out", str(out)]) == 2
    assert "points" in capsys.readouterr().err
