"""The reference driver's response profile: release, ramp, hold; tick means exact."""

import numpy as np
import pytest
from reflexdrive.agents.reference.response import (
    response_acceleration,
    response_velocity_change,
    tick_mean_acceleration,
)

R157 = (0.75, 0.4, 12.65, 0.774 * 9.81)   # reaction, release, jerk, max decel
RAMP_S = (0.774 * 9.81 - 0.4) / 12.65       # time from release to full braking


def test_profile_is_zero_before_then_release_then_ramp_then_full_braking():
    sigma = np.array([-0.5, 0.0, 0.5, 0.75, 0.85, 0.75 + RAMP_S, 3.0])
    expected = [0.0, -0.4, -0.4, -0.4, -(0.4 + 12.65 * 0.1), -0.774 * 9.81, -0.774 * 9.81]
    np.testing.assert_allclose(response_acceleration(sigma, *R157), expected, rtol=1e-12)


def test_velocity_change_integrates_the_profile_piece_by_piece():
    full = 0.774 * 9.81
    # 0.75 s at 0.4, the ramp's area (0.4 + full) / 2 * RAMP_S, then 1 s of full braking
    end = 0.75 + RAMP_S + 1.0
    expected = -(0.4 * 0.75 + 0.5 * (0.4 + full) * RAMP_S + full * 1.0)
    assert response_velocity_change(end, *R157) == pytest.approx(expected, rel=1e-12)
    assert response_velocity_change(-1.0, *R157) == 0.0


def test_tick_means_at_tenth_of_a_second_ticks_are_the_hand_computed_values():
    starts = np.arange(-2, 16) * 0.1
    ramp_end = 0.75 + RAMP_S                       # 1.3186... s
    full = 0.774 * 9.81
    last_partial = -(0.4 * (ramp_end - 1.3) + 12.65 * ((ramp_end - 0.75) ** 2 - 0.55 ** 2) / 2
                     + full * (1.4 - ramp_end)) / 0.1
    expected = [0.0, 0.0] + [-0.4] * 7 + [
        -0.4 - 12.65 * 0.05 ** 2 / 2 / 0.1,   # [0.7, 0.8): 0.05 s of ramp
        -0.4 - 12.65 * 0.1,                   # [0.8, 0.9): ramp from 0.05 to 0.15 s
        -0.4 - 12.65 * 0.2, -0.4 - 12.65 * 0.3, -0.4 - 12.65 * 0.4, -0.4 - 12.65 * 0.5,
        last_partial, -full, -full]
    got = tick_mean_acceleration(starts, 0.1, *R157)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert got[9] == pytest.approx(-0.558125)


def test_tick_mean_over_a_tick_straddling_the_onset_counts_only_the_released_part():
    assert tick_mean_acceleration(-0.05, 0.1, *R157) == pytest.approx(-0.2)
