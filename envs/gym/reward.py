"""The reward of one decision, for the single env and the vector env alike.

    r = mean over the substeps integrated of clip(v_ego / speed_target_mps, 0, 1)
        - collision_penalty * crashed - offroad_penalty * offroad

The backends only report the ego's speed after each substep; the progress term, its mean
and the penalties are computed here, above the backends' `step`, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reflexdrive.common.validation import real, validate_fields


@dataclass(frozen=True)
class RewardConfig:
    """Reward per decision: mean speed progress minus penalties.

    `r = mean over substeps of clip(v / speed_target_mps, 0, 1)
         - collision_penalty * crashed - offroad_penalty * offroad`.
    """

    speed_target_mps: float = real(30.0, low=0.0, high=100.0, low_inclusive=False,
                                   help="speed that earns the full progress reward [m/s]")
    collision_penalty: float = real(10.0, low=0.0,
                                    help="subtracted once when the ego collides")
    offroad_penalty: float = real(10.0, low=0.0,
                                  help="subtracted once when the ego leaves the road")

    def __post_init__(self) -> None:
        validate_fields(self, "reward.")

    def progress(self, speed_mps):
        """Per-substep progress term `clip(v / speed_target_mps, 0, 1)` (scalar or array)."""
        return np.clip(np.asarray(speed_mps) / self.speed_target_mps, 0.0, 1.0)

    def combine(self, progress, crashed, offroad):
        """`progress - collision_penalty * crashed - offroad_penalty * offroad` (scalars or
        arrays): the reward of one decision from its mean progress and how it ended."""
        return progress - self.collision_penalty * crashed - self.offroad_penalty * offroad


def window_progress(config: RewardConfig, ego_speed_mps) -> float:
    """The mean progress term of one world over the substeps of a decision (the single env).

    Args:
        ego_speed_mps: `(S,)` the ego's speed after each substep integrated [m/s].

    Returns:
        `mean(config.progress(ego_speed_mps))` (numpy's mean), 0 if no substep ran.
    """
    speeds = np.asarray(ego_speed_mps, dtype=np.float64)
    return float(np.mean(config.progress(speeds))) if speeds.size else 0.0


def mean_progress(config: RewardConfig, ego_speed_mps: np.ndarray,
                  integrated: np.ndarray) -> np.ndarray:
    """The mean progress term of `B` worlds over the substeps each integrated (the vector env).

    The terms are summed in substep order (a world's substeps that did not run add 0), then
    divided by the number run (at least 1), as the vector env has always summed them.

    Args:
        ego_speed_mps: `(S, B)` the ego's speed after substep `k` [m/s] (any value where
            not integrated).
        integrated: `(S, B)` bool, world `b` ran substep `k`.

    Returns:
        `(B,)` float64, 0 where no substep ran.
    """
    speed = np.asarray(ego_speed_mps, dtype=np.float64)
    ran = np.asarray(integrated, dtype=bool)
    total = np.zeros(speed.shape[1:], dtype=np.float64)
    count = np.zeros(speed.shape[1:], dtype=np.float64)
    for k in range(speed.shape[0]):
        total += np.where(ran[k], config.progress(speed[k]), 0.0)
        count += ran[k]
    return total / np.maximum(count, 1.0)


def decision_reward(config: RewardConfig, progress, crashed, offroad, live=None):
    """The reward of a decision: `config.combine(progress, crashed, offroad)`, 0 where not
    `live` (vector env: worlds that did not run this tick). Scalars or `(B,)` arrays."""
    reward = config.combine(progress, crashed, offroad)
    if live is None:
        return reward
    return np.where(live, reward, 0.0).astype(np.float64)
