"""`DrivingEnv`: one scenario on one backend, observed through the sensors.

The world env. `step(action)` is plain Gymnasium (lockstep, no latency: one tick, the
command applied from the tick's start). The clock (`envs.clock.ClockWrapper`) drives it
through `run_window`, which integrates whatever command pieces the tick contract
produced. Observations are `Dict(bev, lidar, ego, route, timing)` (`route`: the navigation
targets of `envs.road_map.route_targets`; `timing`: the observation's age and the command in
flight, `envs.clock.timing`, here lockstep's `[0, held command, 0]`, which the clock wrapper
replaces); ground truth (objects in the ego frame, hazard state) and
the HD map (`info["map"]`, `envs.road_map`) go in `info`, never in the observation.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from reflexdrive.envs import sensors
from reflexdrive.envs.backends.highway import HighwayBackend
from reflexdrive.envs.clock.contract import Window
from reflexdrive.envs.clock.single import TickClock
from reflexdrive.envs.clock.timing import TIMING_FEATURES, timing_vector
from reflexdrive.envs.config import (
    ACCELERATION_BOUNDS,
    EGO_FEATURES,
    STEERING_BOUNDS,
    ClockConfig,
    SensorConfig,
)
from reflexdrive.envs.gym.reward import RewardConfig, window_progress
from reflexdrive.envs.gym.termination import episode_over, termination
from reflexdrive.envs.hazards import HazardTracker
from reflexdrive.envs.lane_paths import RoadLanes
from reflexdrive.envs.outcomes import substep_outcomes
from reflexdrive.envs.road_map import ROUTE_TARGETS_M, route_targets
from reflexdrive.envs.scenarios import (
    ScenarioInit,
    generate,
    make_config,
    scenario_spec,
    without_hazard,
)
from reflexdrive.envs.types import EGO, Command, SubstepOutcome, WorldSnapshot

from reflexdrive.common.validation import ConfigError, check_bool


def coerce_config(config_type: type, value: Any, field_name: str):
    """A `config_type` instance from an instance, a dict of its fields, or None (defaults).

    Lists in the dict become tuples (the config dataclasses are frozen and hashable).

    Raises:
        ConfigError: a dict key is not a field (named as `field_name.key`), or `value` is
            neither a `config_type`, a dict nor None.
    """
    if value is None:
        return config_type()
    if isinstance(value, config_type):
        return value
    if isinstance(value, dict):
        allowed = {f.name for f in fields(config_type)}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ConfigError(f"{field_name}.{unknown[0]}", value[unknown[0]],
                              "allowed keys are " + ", ".join(sorted(allowed)))
        return config_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
    raise ConfigError(field_name, value, f"must be a {config_type.__name__} or a dict")


def observation_space(sensor_config: SensorConfig) -> spaces.Dict:
    """The `Dict(bev, lidar, ego, route, timing)` space for `sensor_config`.

    `route`: `(K, 2)` float32 [m], the route's points `ROUTE_TARGETS_M` ahead in the ego
    frame (`envs.road_map.route_targets`); unbounded like `ego`. `timing`: `(4,)` float32,
    `[latency s, pending acceleration m/s^2, pending steering rad, pending in s]`
    (`envs.clock.timing.TIMING_FEATURES`); unbounded.
    """
    beams = sensor_config.lidar_beams
    lidar_low = np.tile(np.array([0.0, -np.inf], dtype=np.float32), (beams, 1))
    lidar_high = np.tile(np.array([sensor_config.range_m, np.inf], dtype=np.float32), (beams, 1))
    return spaces.Dict({
        "bev": spaces.Box(0, 255, sensor_config.bev_shape, dtype=np.uint8),
        "lidar": spaces.Box(lidar_low, lidar_high, dtype=np.float32),
        "ego": spaces.Box(-np.inf, np.inf, (len(EGO_FEATURES),), dtype=np.float32),
        "route": spaces.Box(-np.inf, np.inf, (len(ROUTE_TARGETS_M), 2), dtype=np.float32),
        "timing": spaces.Box(-np.inf, np.inf, (len(TIMING_FEATURES),), dtype=np.float32),
    })


def action_space() -> spaces.Box:
    """`[acceleration m/s^2, steering rad]` within `ACCELERATION_BOUNDS`, `STEERING_BOUNDS`."""
    low = np.array([ACCELERATION_BOUNDS[0], STEERING_BOUNDS[0]], dtype=np.float32)
    high = np.array([ACCELERATION_BOUNDS[1], STEERING_BOUNDS[1]], dtype=np.float32)
    return spaces.Box(low, high, dtype=np.float32)


def action_to_command(action) -> Command:
    """Clip an action `[acceleration, steering]` to the bounds and turn it into a `Command`.

    Plain Python on two floats: this runs every tick, where numpy on 2-element arrays is
    slow (docs/clock.md).
    """
    try:
        values = [float(v) for v in np.asarray(action).reshape(-1).tolist()]
    except (TypeError, ValueError):
        values = []
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"action {action!r}: expected 2 finite numbers [acceleration, steering]")
    acceleration = min(max(values[0], ACCELERATION_BOUNDS[0]), ACCELERATION_BOUNDS[1])
    steering = min(max(values[1], STEERING_BOUNDS[0]), STEERING_BOUNDS[1])
    return Command(acceleration, steering)


class DrivingEnv(gym.Env):
    """A reflexdrive scenario as a Gymnasium env (highway-env backend).

    Args:
        scenario: scenario name, e.g. "lead-brake" (see `reflexdrive scenarios`).
        scenario_config: the scenario's config or a dict of overrides.
        sensors: a `SensorConfig` or a dict of overrides.
        simulation_frequency: substep rate [Hz].
        policy_frequency: tick rate [Hz]; must divide `simulation_frequency`.
        reward: a `RewardConfig` or a dict of overrides.
        render_mode: None or "rgb_array" (highway-env's pygame top-down view).
        observations: render `bev` and `lidar` (False leaves them zero: for benchmarks and
            agents that read only `ego` and ground truth).
        counterfactual: play every episode's hazard-removed twin
            (`envs.scenarios.without_hazard`): the world the counterfactual reaction time
            compares an episode with.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        scenario: str = "highway",
        scenario_config: Any = None,
        sensors: Any = None,
        simulation_frequency: int = 50,
        policy_frequency: int = 10,
        reward: Any = None,
        render_mode: str | None = None,
        observations: bool = True,
        counterfactual: bool = False,
    ):
        self.scenario = scenario_spec(scenario)
        self.observations = bool(observations)
        check_bool("counterfactual", counterfactual)
        self.counterfactual = bool(counterfactual)
        if scenario_config is None or isinstance(scenario_config, dict):
            self.scenario_config = make_config(scenario, scenario_config)
        else:
            self.scenario_config = coerce_config(self.scenario.config_type, scenario_config,
                                                 "scenario_config")
        self.sensor_config: SensorConfig = coerce_config(SensorConfig, sensors, "sensors")
        self.reward_config: RewardConfig = coerce_config(RewardConfig, reward, "reward")
        self.timing = ClockConfig(simulation_frequency=simulation_frequency,
                                  policy_frequency=policy_frequency, mode="lockstep")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError("render_mode", render_mode, "allowed values are None, rgb_array")
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": policy_frequency}
        self.observation_space = observation_space(self.sensor_config)
        self.action_space = action_space()
        self.backend = HighwayBackend(simulation_frequency)
        self._lockstep_clock = TickClock(self.timing)
        self.init: ScenarioInit | None = None
        self._snapshot: WorldSnapshot | None = None
        self._road_map: dict[str, np.ndarray] | None = None

    # -- Gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """A new episode: generated from `seed`, or `options["scenario_init"]` (a
        `ScenarioInit`, e.g. a test protocol's grid point on a curve) played as given, its
        `seed` keying the episode's sensor noise and latency draws (as the vector env's
        `options["scenario_inits"]`)."""
        super().reset(seed=seed)
        given = (options or {}).get("scenario_init")
        if given is not None:
            episode_seed = int(given.seed)
        else:
            episode_seed = (int(seed) if seed is not None
                            else int(self.np_random.integers(2**31 - 1)))
        self.episode_seed = episode_seed
        self.init = given if given is not None else generate(
            self.scenario.name, self.scenario_config, episode_seed,
            self.timing.simulation_frequency)
        if self.counterfactual:
            self.init = without_hazard(self.init)
        self.backend.reset(self.init)
        self._hazard = HazardTracker(self.init.hazard, self.timing.simulation_frequency,
                                     self.init.duration_s,
                                     lanes=RoadLanes.of(self.backend.road.network, self.init))
        self._lockstep_clock.reset()
        self._snapshot = self.backend.snapshot()
        self._hazard_state = self._hazard.update(self._snapshot, 0)
        self._episode_over = False
        obs = self._observe(self._snapshot)
        return obs, self._info(self._snapshot, window=None, outcomes=[])

    def step(self, action):
        """One tick in lockstep with no latency: the command applies from the tick's start."""
        window = self._lockstep_clock.decide(action_to_command(action), {})
        return self.run_window(window)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from reflexdrive.envs.rendering import render_top_down

        return render_top_down(self.backend)

    # -- the clock's entry point -----------------------------------------------------------

    @property
    def tick(self) -> int:
        """Ticks elapsed (whole ticks only; an episode may end mid-tick on a crash)."""
        return self.backend.substep_index // self.timing.substeps_per_tick

    def run_window(self, window: Window):
        """Integrate a clock `Window` substep by substep; stop early when the episode ends.

        Returns the Gymnasium step tuple; `info["ticks"]` holds the window's tick records and
        `info["substeps"]` the per-substep outcomes.
        """
        if self._snapshot is None:
            raise RuntimeError("call reset() before step()")
        if self._episode_over:
            raise RuntimeError("the episode has ended: call reset() before stepping again")
        if window.first_tick != self.tick:
            raise RuntimeError(f"window starts at tick {window.first_tick}, "
                               f"world is at {self.tick}")
        duration = self.init.duration_substeps
        outcomes: list[SubstepOutcome] = []
        snapshot = self._snapshot
        previous_position = snapshot.position[0, EGO].copy()
        for pieces in window.pieces:
            self.backend.substep(pieces)
            snapshot = self.backend.snapshot()
            index = self.backend.substep_index
            self._hazard_state = self._hazard.update(snapshot, index)
            outcomes.append(substep_outcomes(
                snapshot, previous_position[None], [index / self.timing.simulation_frequency],
                rows=[0])[0])
            previous_position = snapshot.position[0, EGO].copy()
            if episode_over(snapshot.crashed[0], snapshot.ego_on_road[0], index, duration):
                break
        self._snapshot = snapshot
        crashed = bool(snapshot.crashed[0])
        offroad = not bool(snapshot.ego_on_road[0])
        terminated, truncated = map(bool, termination(
            crashed, offroad, self.backend.substep_index >= duration))
        self._episode_over = terminated or truncated
        reward = self._reward(outcomes, crashed, offroad)
        obs = self._observe(snapshot)
        return obs, reward, terminated, truncated, self._info(snapshot, window, outcomes)

    # -- internals -------------------------------------------------------------------------

    def _observe(self, snapshot: WorldSnapshot) -> dict[str, np.ndarray]:
        config = self.sensor_config
        # the map of this observation, for `obs["route"]` and `info["map"]` (`_info`)
        self._road_map = {key: value[0] for key, value in self.backend.road_map().items()}
        route = route_targets(self._road_map["route"])
        timing = timing_vector(self._lockstep_clock, 0.0)     # a ClockWrapper replaces it
        if not self.observations:
            return {"bev": np.zeros(config.bev_shape, dtype=np.uint8),
                    "lidar": np.zeros((config.lidar_beams, 2), dtype=np.float32),
                    "ego": sensors.ego_vector(snapshot)[0], "route": route, "timing": timing}
        road = self.backend.road_geometry()
        # The noise: a function of the episode's seed and the tick observed (rounded up: an
        # episode that ends mid-tick gets fresh noise), as `BatchedDrivingEnv` draws it.
        tick = -(-self.backend.substep_index // self.timing.substeps_per_tick)
        noise = sensors.episode_noise_keys([self.episode_seed], [tick])
        return {
            "bev": sensors.render_bev(snapshot, road, config, noise)[0],
            "lidar": sensors.cast_lidar(snapshot, config, noise)[0],
            "ego": sensors.ego_vector(snapshot)[0],
            "route": route,
            "timing": timing,
        }

    def _reward(self, outcomes: list[SubstepOutcome], crashed: bool, offroad: bool) -> float:
        progress = window_progress(self.reward_config, [o.speed for o in outcomes])
        return self.reward_config.combine(progress, crashed, offroad)

    def _info(self, snapshot: WorldSnapshot, window: Window | None, outcomes: list) -> dict:
        objects, valid = sensors.ground_truth_objects(snapshot, self.sensor_config)
        return {
            "scenario": self.scenario.name,
            "scenario_seed": self.episode_seed,
            "time_s": float(snapshot.time_s[0]),
            "tick": self.tick,
            "gt_objects": objects[0],
            "gt_valid": valid[0],
            "map": self._road_map,
            "hazard": self._hazard_state.as_info(),
            "crashed": bool(snapshot.crashed[0]),
            "offroad": not bool(snapshot.ego_on_road[0]),
            "ticks": list(window.records) if window is not None else [],
            "substeps": outcomes,
        }
