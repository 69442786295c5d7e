"""The test rig: the VUT held at its test speed, the stack free to brake and steer below it.

AEB and ALKS tests judge how a system slows down or steers, not how it cruises: a driver
robot (or the test's speed control) holds the test speed and the system may only take
away from it. `HoldSpeedAgent` wraps a stack so that, per world and tick `t_k`, with
`t_r` the world's release time (its grid point's planned hazard onset, the same for the
world and its hazard-removed twin):

- the speed-holding command is `a_hold = clip(gain * (v_test - v), -8, 4)` [m/s^2]
  (`hold_speed_command`): exactly 0 at the test speed;
- before the release (`t_k < t_r`) the rig drives: acceleration `a_hold`, steering 0
  (the VUT starts centred and straight on a straight road, so steering 0 keeps its
  lane exactly). Whatever the stack would do, the test geometry at the onset (the grid's
  speeds and gaps) is the protocol's. On a curve (`steer_from_start`) the stack steers
  from the start: the rig holds only the speed (a world and its twin see the same road
  and steer alike until the hazard reaches the sensors);
- from the release on the acceleration is `min(a_stack, a_hold)` (the stack brakes as it
  likes, never drives faster than the test speed) and the steering is the stack's.

Before `t_r` a world and its twin apply the very same commands; after it, each applies
what its stack decides (capped at the test speed), so the counterfactual reaction is the
first departure of the stack's behaviour with the hazard from its behaviour without it.
The rig adds no latency of its own: the clock applies the combined command after the
stack's latency.
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


def rig_actions(stack_actions: np.ndarray, hold_accel_mps2: np.ndarray,
                released: np.ndarray, steer_free: np.ndarray | bool = False) -> np.ndarray:
    """The applied actions `(N, 2)` [m/s^2, rad] from the stack's `(N, 2)`, the holder's
    acceleration `(N,)` and `released` (bool `(N,)`, `t_k >= t_r`): where released,
    `[min(a_stack, a_hold), steering_stack]`, elsewhere `[a_hold, 0]`, or
    `[a_hold, steering_stack]` where `steer_free` (bool `(N,)`: the stack steers from the
    start)."""
    stack_actions = np.asarray(stack_actions, dtype=np.float64)
    steers = np.asarray(released, dtype=bool) | np.asarray(steer_free, dtype=bool)
    return np.stack([
        np.where(released, np.minimum(stack_actions[:, 0], hold_accel_mps2), hold_accel_mps2),
        np.where(steers, stack_actions[:, 1], 0.0)], axis=1)


class HoldSpeedAgent:
    """A stack on the test rig (see the module docstring); an `Agent` itself.

    Args:
        agent: the stack under test.
        test_speed_mps: `(N,)` test speed of each of its worlds [m/s].
        release_s: `(N,)` release time `t_r` of each of its worlds [s].
        gain_per_s: the speed holder's gain [1/s].
        steer_from_start: `(N,)` bool, worlds whose stack steers before the release too
            (curved roads); default none.
    """

    def __init__(self, agent: Agent, test_speed_mps: np.ndarray, release_s: np.ndarray,
                 gain_per_s: float = HOLD_GAIN_PER_S,
                 steer_from_start: np.ndarray | None = None):
        self.agent = agent
        self.name = agent.name
        self.stage_names = agent.stage_names
        self.test_speed_mps = np.asarray(test_speed_mps, dtype=np.float64)
        self.release_s = np.asarray(release_s, dtype=np.float64)
        self.gain_per_s = float(gain_per_s)
        self.steer_from_start = (np.zeros(self.release_s.shape, dtype=bool)
                                 if steer_from_start is None
                                 else np.asarray(steer_from_start, dtype=bool))

    def reset(self, done: np.ndarray) -> None:
        self.agent.reset(done)

    def act(self, obs: Observation, info: Info) -> Decision:
        decision = self.agent.act(obs, info)
        hold = hold_speed_command(obs["ego"][:, 0], self.test_speed_mps, self.gain_per_s)
        released = np.asarray(info["time_s"]) >= self.release_s - TIME_EPS_S
        actions = rig_actions(decision.actions, hold, released,
                              self.steer_from_start).astype(np.float32)
        return Decision(actions=actions, stage_latency_s=decision.stage_latency_s,
                        products=decision.products)
