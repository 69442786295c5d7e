"""The reference driver's braking response as a function of time: pure, batched maths.

UN R157 Annex 4 Appendix 3 (as JRC-FSM's `CC_react` integrates it): once the risk is
perceived the careful and competent driver spends the reaction time `r` lifting the foot
off the accelerator, which decelerates the car at `release`; then brakes with a ramp at
`jerk` up to `max_decel`, where it stays:

    u(sigma) = 0                                        sigma < 0
             = -release                                 0 <= sigma < r
             = -min(release + jerk (sigma - r), max_decel)   sigma >= r

with `sigma` the time since the reaction began [s]. An agent holds one command over a
tick `[t_k, t_k + T)`; `tick_mean_acceleration` is the mean of `u` over the tick, so the
speed at every tick boundary is exactly that of the continuous profile, whatever `T`
(and phase boundaries that fall inside a tick are honoured to the instant).
"""

from __future__ import annotations

import numpy as np


def response_acceleration(sigma_s, reaction_s: float, release_mps2: float, jerk_mps3: float,
                          max_decel_mps2: float) -> np.ndarray:
    """`u(sigma)` [m/s^2] (<= 0) at times `sigma_s` since the reaction began, any shape."""
    sigma = np.asarray(sigma_s, np.float64)
    ramp = -np.minimum(release_mps2 + jerk_mps3 * (sigma - reaction_s), max_decel_mps2)
    return np.where(sigma < 0, 0.0, np.where(sigma < reaction_s, -release_mps2, ramp))


def response_velocity_change(sigma_s, reaction_s: float, release_mps2: float,
                             jerk_mps3: float, max_decel_mps2: float) -> np.ndarray:
    """`integral of u from 0 to sigma` [m/s] (<= 0; 0 for `sigma <= 0`), any shape.

    Needs `max_decel_mps2 >= release_mps2` and `jerk_mps3 > 0` (the configs check them).
    """
    sigma = np.maximum(np.asarray(sigma_s, np.float64), 0.0)
    ramp_s = (max_decel_mps2 - release_mps2) / jerk_mps3
    releasing = np.minimum(sigma, reaction_s)
    ramping = np.clip(sigma - reaction_s, 0.0, ramp_s)
    holding = np.maximum(sigma - reaction_s - ramp_s, 0.0)
    return -(release_mps2 * (releasing + ramping) + 0.5 * jerk_mps3 * ramping ** 2
             + max_decel_mps2 * holding)


def tick_mean_acceleration(start_s, tick_s: float, reaction_s: float, release_mps2: float,
                           jerk_mps3: float, max_decel_mps2: float) -> np.ndarray:
    """Mean of `u` over `[start_s, start_s + tick_s)` [m/s^2], `start_s` any shape: the
    command to hold over a tick that starts `start_s` after the reaction began."""
    args = (reaction_s, release_mps2, jerk_mps3, max_decel_mps2)
    start = np.asarray(start_s, np.float64)
    return (response_velocity_change(start + tick_s, *args)
            - response_velocity_change(start, *args)) / tick_s
