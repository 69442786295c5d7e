"""The test rig: the VUT held at its test speed, the stack free to brake and steer below it.

AEB and ALKS tests judge how a system slows down or steers, not how it cruises: a driver
robot (or the test's speed control) holds the test speed and the system may only take
away from it. `HoldSpeedAgent` wraps a stack so that, per world and tick `t_k`:

- the speed-holding command is `a_hold = clip(gain * (v_test - v), -8, 4)` [m/s^2]
  (`hold_speed_command`): exactly 0 at the test speed;
- before the world's hazard onset (`t_k < t_h`, `info["hazard"]["onset_s"]`) the applied
  acceleration is `a_hold`: whatever the stack would do, the test geometry (the grid's
  speeds and gaps at onset) is the protocol's;
- from the onset on it is `min(a_stack, a_hold)`: the stack brakes as it likes, never
  drives faster than the test speed;
- the steering is always the stack's.

A hazard-removed twin has no onset, so it is held throughout: before `t_h` a world and its
twin apply the very same commands, and the counterfactual reaction is the first tick at
which the stack brakes (or steers) away from the held command. The rig adds no latency of
its own: the clock applies the combined command after the stack's latency.
"""

from __future__ import annotations

import numpy as np

from reflexdrive.agents.base import Agent, Decision, Info, Observation
from reflexdrive.envs.clock import TIME_EPS_S
from reflexdrive.envs.config import ACCELERATION_BOUNDS

HOLD_GAIN_PER_S = 2.0
"""Speed-holding gain [1/s]: a speed error of 1 m/s asks for 2 m/s^2."""


def hold_speed_command(speed_mps: np.ndarray, test_speed_mps: np.ndarray,
                       gain_per_s: float = HOLD_GAIN_PER_S) -> np.ndarray:
    """The speed holder's acceleration `(N,)` [m/s^2] for ego speeds and test speeds `(N,)`
    [m/s], clipped to the action bounds."""
    return np.clip(gain_per_s * (np.asarray(test_speed_mps, dtype=np.float64)
                                 - np.asarray(speed_mps, dtype=np.float64)),
                   *ACCELERATION_BOUNDS)


def rig_acceleration(stack_accel_mps2: np.ndarray, hold_accel_mps2: np.ndarray,
                     stack_counts: np.ndarray) -> np.ndarray:
    """The applied acceleration `(N,)` [m/s^2]: `min(stack, hold)` where `stack_counts`
    (bool `(N,)`, the hazard has begun), the holder's alone elsewhere."""
    return np.where(stack_counts, np.minimum(stack_accel_mps2, hold_accel_mps2),
                    hold_accel_mps2)


class HoldSpeedAgent:
    """A stack on the test rig (see the module docstring); an `Agent` itself.

    Args:
        agent: the stack under test.
        test_speed_mps: `(N,)` test speed of each of its worlds [m/s].
        gain_per_s: the speed holder's gain [1/s].
    """

    def __init__(self, agent: Agent, test_speed_mps: np.ndarray,
                 gain_per_s: float = HOLD_GAIN_PER_S):
        self.agent = agent
        self.name = agent.name
        self.stage_names = agent.stage_names
        self.test_speed_mps = np.asarray(test_speed_mps, dtype=np.float64)
        self.gain_per_s = float(gain_per_s)

    def reset(self, done: np.ndarray) -> None:
        self.agent.reset(done)

    def act(self, obs: Observation, info: Info) -> Decision:
        decision = self.agent.act(obs, info)
        actions = np.array(decision.actions, dtype=np.float32, copy=True)
        hold = hold_speed_command(obs["ego"][:, 0], self.test_speed_mps, self.gain_per_s)
        counts = np.asarray(info["time_s"]) >= np.asarray(info["hazard"]["onset_s"]) - TIME_EPS_S
        actions[:, 0] = rig_acceleration(actions[:, 0], hold, counts)
        return Decision(actions=actions, stage_latency_s=decision.stage_latency_s,
                        products=decision.products)
