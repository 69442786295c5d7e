"""Gymnasium registration of the scenarios: `gym.make("reflexdrive/LeadBrake-v0", ...)`.

Every id builds a `DrivingEnv` on the clock (`ClockWrapper`); the clock's settings are
plain keyword arguments, so any RL library can train with latency in the loop:

    gym.make("reflexdrive/LeadBrake-v0", mode="realtime", latency="fixed:0.03")

The straight-road ids also build `B` envs on the batched backend in one process:

    gym.make_vec("reflexdrive/LeadBrake-v0", num_envs=1024,
                 vectorization_mode="vector_entry_point", latency="fixed:0.03")
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
from reflexdrive.envs.clock.wrapper import ClockWrapper
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.gym.single import DrivingEnv
from reflexdrive.envs.scenarios import SCENARIOS


def make_env(
    scenario: str = "highway",
    *,
    mode: str = "realtime",
    latency: str = "fixed:0",
    budget: float | None = None,
    stage_budgets: Mapping[str, float] | None = None,
    on_overrun: str = "record",
    simulation_frequency: int = 50,
    policy_frequency: int = 10,
    sensors: Any = None,
    scenario_config: Any = None,
    reward: Any = None,
    render_mode: str | None = None,
    latency_base_dir: str | None = None,
    observations: bool = True,
    counterfactual: bool = False,
    execution: str = "sequential",
) -> ClockWrapper:
    """A scenario env on the clock. See `ClockConfig` for the clock's arguments and
    `DrivingEnv` for the others (`counterfactual`: play the hazard-removed twins)."""
    clock = ClockConfig(simulation_frequency=simulation_frequency,
                        policy_frequency=policy_frequency, mode=mode, budget_s=budget,
                        stage_budgets_s=dict(stage_budgets or {}), on_overrun=on_overrun,
                        latency=latency, execution=execution)
    world = DrivingEnv(scenario, scenario_config=scenario_config, sensors=sensors,
                       simulation_frequency=simulation_frequency,
                       policy_frequency=policy_frequency, reward=reward, render_mode=render_mode,
                       observations=observations, counterfactual=counterfactual)
    return ClockWrapper(world, clock, latency_base_dir=latency_base_dir)


def register_envs() -> None:
    """Register every scenario id; safe to call any number of times.

    Every scenario also gets a vector entry point, the batched backend:
    `gym.make_vec(id, num_envs=B, vectorization_mode="vector_entry_point")`.
    """
    for spec in SCENARIOS.values():
        if spec.env_id not in gym.registry:
            gym.register(id=spec.env_id, entry_point="reflexdrive.envs.registration:make_env",
                         vector_entry_point="reflexdrive.envs.gym.vector:make_batched_env",
                         kwargs={"scenario": spec.name})
