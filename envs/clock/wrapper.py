"""`ClockWrapper`: the tick contract as a Gymnasium wrapper, for any RL library or runner.

Each `step(action)` is one decision: the latency model says how long the agent took (per
stage), the `TickClock` turns that into a window of command pieces (realtime: the command
lands at `t_k + L_k`, overruns drop frames; lockstep: the world waits), and the wrapped
`DrivingEnv` integrates it. `info["ticks"]` carries one `TickRecord` per tick advanced.

Latency comes from the model named by `ClockConfig.latency`; a runner that times the agent
itself hands the stage latencies over with `report_latency` before `step`. Deterministic
models are drawn one decision ahead (`envs.latency.lookahead`), so `obs["timing"]`
(`envs.clock.timing`) shows the agent the latency its decision will be charged.
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
from reflexdrive.envs.clock.contract import DeadlineMiss
from reflexdrive.envs.clock.single import TickClock
from reflexdrive.envs.clock.timing import timing_vector
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.gym.single import DrivingEnv, action_to_command
from reflexdrive.envs.latency import parse_latency
from reflexdrive.envs.latency.lookahead import LatencyLookahead


class ClockWrapper(gym.Wrapper):
    """Put a `DrivingEnv` on the clock.

    Args:
        env: a `DrivingEnv`, unwrapped: the clock calls its `run_window`, so a wrapper in
            between would be skipped on `step`. Put other wrappers around the `ClockWrapper`.
        config: the tick contract's settings; its frequencies must match the env's.
        latency_base_dir: directory that relative `profile:PATH` specs resolve against.
    """

    def __init__(self, env: gym.Env, config: ClockConfig | None = None,
                 latency_base_dir: str | None = None):
        super().__init__(env)
        world = env
        if not isinstance(world, DrivingEnv):
            raise TypeError("ClockWrapper wraps a reflexdrive DrivingEnv directly (the clock "
                            "drives its run_window); put other wrappers outside it")
        config = config or ClockConfig(simulation_frequency=world.timing.simulation_frequency,
                                       policy_frequency=world.timing.policy_frequency)
        if (config.simulation_frequency, config.policy_frequency) != (
                world.timing.simulation_frequency, world.timing.policy_frequency):
            raise ValueError("ClockConfig frequencies must match the env's")
        self.clock_config = config
        self.clock = TickClock(config)
        self.latency_model = parse_latency(config.latency, base_dir=latency_base_dir)
        self.lookahead = LatencyLookahead(self.latency_model)
        self._reported: Mapping[str, float] | None = None

    def report_latency(self, stage_latency_s: Mapping[str, float]) -> None:
        """Hand over the measured stage latencies [s] of the decision about to be stepped.

        Used by runners that time a batched agent themselves; with the "measured" model
        they replace the wrapper's own wall-clock reading. Other models ignore them.
        """
        self._reported = dict(stage_latency_s)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.clock.reset()
        self.lookahead.reset(info["scenario_seed"])
        self._reported = None
        obs["timing"] = timing_vector(self.clock, self.lookahead.known_s)
        self.latency_model.mark_observation_returned()
        return obs, info

    def step(self, action):
        command = action_to_command(action)
        reported, self._reported = self._reported, None
        stage_latency_s = self.lookahead.take(reported)
        window = self.clock.decide(command, stage_latency_s)
        if window.overrun and self.clock_config.on_overrun == "raise":
            record = window.records[0]
            raise DeadlineMiss(
                f"tick {record.tick}: latency {record.latency_s * 1e3:.3f} ms exceeds the "
                f"budget {self.clock_config.budget * 1e3:.3f} ms"
                + (f" (stages over budget: {', '.join(window.stage_overruns)})"
                   if window.stage_overruns else ""))
        obs, reward, terminated, truncated, info = self.env.run_window(window)
        info["deadline_miss"] = bool(window.overrun and self.clock_config.on_overrun == "terminate")
        if info["deadline_miss"] and not terminated:
            terminated, truncated = True, False
        info["mode"] = self.clock_config.mode
        obs["timing"] = timing_vector(self.clock, self.lookahead.known_s)
        self.latency_model.mark_observation_returned()
        return obs, reward, terminated, truncated, info
