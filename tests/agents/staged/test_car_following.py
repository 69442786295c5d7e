"""The constant-acceleration heuristic and the ACC model (Kesting, Treiber, Helbing 2010)
against hand-computed values, each checked against the kinematics it stands for."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reflexdrive.agents.staged.car_following import (
    acc_model_acceleration,
    braking_lead_floor,
    constant_acceleration_heuristic,
)

A_MAX = 3.0


def cah(v, s, vl, al):
    return float(constant_acceleration_heuristic(np.array([v]), np.array([s]), np.array([vl]),
                                                 np.array([al]), A_MAX)[0])


def test_cah_lead_stops_first():
    """v = v_l = 20 m/s, s = 30 m, lead braking at 4 m/s^2: v_l dv = 0 <= -2 s a_l = 240,
    so a = v^2 a_l / (v_l^2 - 2 s a_l) = 400 (-4) / 640 = -2.5 m/s^2. Check: the ego stops
    in 400 / 5 = 80 m, the lead in 400 / 8 = 50 m, 30 m ahead: zero gap at rest."""
    assert cah(20.0, 30.0, 20.0, -4.0) == pytest.approx(-2.5)
    assert 20.0 ** 2 / (2 * 2.5) == pytest.approx(30.0 + 20.0 ** 2 / (2 * 4.0))


def test_cah_closing_while_both_move():
    """v = 30, v_l = 20 m/s, s = 10 m, a_l = -1: v_l dv = 200 > -2 s a_l = 20, so
    a = a_l - dv^2 / (2 s) = -1 - 100 / 20 = -6 m/s^2. Check: relative deceleration 5 m/s^2
    closes 10 m/s in 100 / 10 = 10 m = s, when the lead still moves (20 - 1 * 2 = 18 m/s)."""
    assert cah(30.0, 10.0, 20.0, -1.0) == pytest.approx(-6.0)


def test_cah_no_closing_and_capped_lead_acceleration():
    # ego slower than a steady lead: nothing to avoid (first branch, a_l = 0): 0
    assert cah(15.0, 30.0, 20.0, 0.0) == 0.0
    # a lead accelerating at 5 m/s^2 counts as a_max = 3: second branch, dv = 0: 3
    assert cah(20.0, 30.0, 20.0, 5.0) == pytest.approx(3.0)
    # faster ego, steady lead: the kinematic -dv^2 / (2 s)
    assert cah(25.0, 20.0, 20.0, 0.0) == pytest.approx(-25.0 / 40.0)


def test_cah_stopped_lead_is_the_kinematic_stop():
    """A stopped lead (v_l = 0, a_l = 0; the first branch's 0/0 limit): -v^2 / (2 s)."""
    assert cah(20.0, 40.0, 0.0, 0.0) == pytest.approx(-5.0)
    assert cah(20.0, 40.0, 0.0, -2.0) == pytest.approx(-5.0)            # it cannot reverse
    assert cah(20.0, 40.0, -1.0, 0.0) == pytest.approx(-5.0)            # clamped to 0 m/s


def test_acc_model_blend():
    """a_ACC = a_IDM where a_IDM >= a_CAH; else (1 - c) a_IDM + c (a_CAH + b tanh((a_IDM -
    a_CAH) / b)). With a_IDM = -6, a_CAH = -1, b = 2, c = 0.99:
    0.01 (-6) + 0.99 (-1 + 2 tanh(-2.5)) = -0.06 + 0.99 (-2.973229) = -3.003496."""
    idm, cah_ = np.array([-1.0, -6.0]), np.array([-2.0, -1.0])
    a = acc_model_acceleration(idm, cah_, comfort_decel=2.0, coolness=0.99)
    assert a == pytest.approx([-1.0, -3.003496], abs=1e-6)
    assert -0.06 + 0.99 * (-1.0 + 2.0 * math.tanh(-2.5)) == pytest.approx(-3.003496, abs=1e-6)
    # c = 0 is the IDM; c = 1 and an IDM far below the CAH: a_CAH - b
    assert acc_model_acceleration(idm, cah_, 2.0, 0.0) == pytest.approx(idm)
    assert acc_model_acceleration(np.array([-100.0]), np.array([-1.0]), 2.0, 1.0) == (
        pytest.approx([-3.0]))


def test_acc_model_lies_between_idm_and_cah():
    """Never below the IDM (it only cools overreactions), never above max(IDM, CAH)."""
    grid = np.linspace(-10.0, 3.0, 27)
    idm, cah_ = (g.ravel() for g in np.meshgrid(grid, grid))
    a = acc_model_acceleration(idm, cah_, 5.0, 0.99)
    assert np.all(a >= idm - 1e-12) and np.all(a <= np.maximum(idm, cah_) + 1e-12)


def test_braking_lead_floor_keeps_its_margin():
    """The CAH on `gap - margin`: 32 m with a 2 m margin is the 30 m case above (-2.5);
    no lead (inf gap): no bound."""
    floor = braking_lead_floor(np.array([20.0, 20.0]), np.array([32.0, np.inf]),
                               np.array([20.0, 20.0]), np.array([-4.0, -4.0]), A_MAX, 2.0)
    assert floor[0] == pytest.approx(-2.5) and floor[1] == np.inf


def test_braking_lead_floor_only_brakes_and_ignores_a_lead_that_stops_out_of_reach():
    """At 20 m/s the ego covers 600 m in FLOOR_HORIZON_S (30 s). A lead 32 m ahead at 20 m/s
    braking at 4 m/s^2 stops 82 m ahead: the floor binds (-2.5, as above). Easing off at
    0.1 m/s^2 it stops 2032 m ahead: no bound (the CAH alone gives -0.09). A stopped ego
    behind a lead 37 m ahead that drives off at 8 m/s while easing off: no bound (the CAH
    alone allows 0). A lead accelerating away: no bound (the CAH alone caps at its 0.5)."""
    speed = np.array([20.0, 20.0, 0.0, 10.0])
    gap = np.array([32.0, 32.0, 37.0, 40.0])
    lead_speed = np.array([20.0, 20.0, 8.0, 10.0])
    lead_accel = np.array([-4.0, -0.1, -0.08, 0.5])
    floor = braking_lead_floor(speed, gap, lead_speed, lead_accel, A_MAX, 2.0)
    assert floor[0] == pytest.approx(-2.5)
    assert np.isinf(floor[1:]).all()
    cah = constant_acceleration_heuristic(speed, gap - 2.0, lead_speed, lead_accel, A_MAX)
    assert cah[1] < 0.0 and cah[2] == 0.0 and cah[3] == pytest.approx(0.5)
