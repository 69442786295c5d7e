"""Grid points on the highway backend: the worlds of points the batched backend cannot run
(R157's stationary obstacle on a curve, `GridPoint.needs_highway`) as one Gymnasium vector
env with the batched env's reset options.

`highway_worlds` builds a `SyncVectorEnv` of highway-env worlds on the clock
(`envs.registration.make_env`), world `i` a hazard-removed twin where `counterfactual[i]`.
Each world is wrapped in `GivenInit`, so `reset(options={"scenario_inits": [...],
"reset_mask": ...})` plays entry `i` in world `i`, as `BatchedDrivingEnv.reset` does; the
harness drives both kinds of env with the same loop.
"""

from __future__ import annotations

import functools
from typing import Sequence

import gymnasium as gym

from reflexdrive.envs.registration import make_env

CURVE_SCENARIO = "stopped-vehicle-curve"
"""The registered scenario whose env the curved points run in (its sensors and map; the
point's own `ScenarioInit` replaces the scenario's generated episode)."""


class GivenInit(gym.Wrapper):
    """A world that plays `options["scenario_inits"][index]` at reset (the env's own
    `options["scenario_init"]`); an entry None generates the episode from the seed."""

    def __init__(self, env: gym.Env, index: int):
        super().__init__(env)
        self.index = int(index)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        given = options.pop("scenario_inits", None)
        if given is not None and given[self.index] is not None:
            options["scenario_init"] = given[self.index]
        return self.env.reset(seed=seed, options=options)


def _world(index: int, counterfactual: bool, **kwargs) -> gym.Env:
    return GivenInit(make_env(CURVE_SCENARIO, counterfactual=counterfactual, **kwargs), index)


def highway_worlds(counterfactual: Sequence[bool], *, mode: str, latency: str,
                   simulation_frequency: int, policy_frequency: int,
                   latency_base_dir: str | None = None) -> gym.vector.SyncVectorEnv:
    """`len(counterfactual)` highway-backend worlds on the clock in one vector env
    (autoreset disabled); reset them with `options={"scenario_inits": inits}` (one
    `ScenarioInit` per world; its `seed` keys the world's noise and latency)."""
    factories = [functools.partial(_world, i, bool(twin), mode=mode, latency=latency,
                                   simulation_frequency=simulation_frequency,
                                   policy_frequency=policy_frequency,
                                   latency_base_dir=latency_base_dir)
                 for i, twin in enumerate(counterfactual)]
    return gym.vector.SyncVectorEnv(factories,
                                    autoreset_mode=gym.vector.AutoresetMode.DISABLED)

