"""A time-headway cruise controller on the lidar: a driving stack of your own in ~30 lines.

    reflexdrive run --stack examples.headway_agent:make --scenario lead-brake --out runs/hw

Walk-through: docs/your-stack.md.
"""

import numpy as np

from reflexdrive import Decision, StageTimer

RANGE_M = 48.0           # lidar range (SensorConfig.range_m): a beam that hits nothing reads it
BEAMS_AHEAD = 8          # beams either side of straight ahead that may see the lead
HALF_LANE_M, HALF_EGO_M = 1.5, 2.5


class HeadwayAgent:
    """Keeps `headway_s` behind whatever the lidar sees in the ego lane, else cruises at
    `cruise_mps`; steers to the lane centre."""

    stage_names = ("control",)

    def __init__(self, headway_s=1.5, cruise_mps=30.0, name="headway"):
        self.headway_s, self.cruise_mps, self.name = headway_s, cruise_mps, name

    def reset(self, done):
        """Stateless: nothing to forget when an episode ends."""

    def act(self, obs, info):
        timer = StageTimer()
        with timer("control"):
            lidar, ego = obs["lidar"], obs["ego"]                  # (N, beams, 2), (N, 8)
            speed, lane_offset, heading_error = ego[:, 0], ego[:, 3], ego[:, 4]
            beams = np.r_[0:BEAMS_AHEAD + 1, -BEAMS_AHEAD:0] % lidar.shape[1]
            angle = 2 * np.pi * beams / lidar.shape[1]             # beam i at 2 pi i / beams
            rng, rate = lidar[:, beams, 0], lidar[:, beams, 1]     # [m], [m/s] (< 0 closing)
            ahead = (rng < RANGE_M) & (np.abs(rng * np.sin(angle)) < HALF_LANE_M)
            gap = np.where(ahead, rng * np.cos(angle) - HALF_EGO_M, np.inf).min(axis=1)
            closing = np.maximum(-np.where(ahead, rate, 0.0).min(axis=1), 0.0)
            cruise = 0.5 * (self.cruise_mps - speed)
            follow = 0.4 * (gap - 2.0 - self.headway_s * speed) - closing
            stop = np.where(closing > 0, -closing ** 2 / (2 * np.maximum(gap - 2.0, 0.5)),
                            np.inf)                        # speeds equal 2 m behind it
            accel = np.minimum(np.minimum(cruise, follow), stop).clip(-8.0, 2.0)
            turn = -lane_offset / (1.5 * np.maximum(speed, 1.0)) - heading_error  # [rad]
            steer = (5.0 * turn / (0.5 * np.maximum(speed, 1.0))).clip(-0.5, 0.5)
            actions = np.stack([accel, steer], axis=1).astype(np.float32)
        return Decision(actions=actions, stage_latency_s=timer.latencies)


def make():
    """The factory `--stack examples.headway_agent:make` calls; it takes none of the
    options the registry offers (seed, device, tick_s, ...), so it is passed none."""
    return HeadwayAgent()
