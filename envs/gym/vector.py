"""`BatchedDrivingEnv`: `B` scenario envs on the clock as one Gymnasium `VectorEnv`.

The batched route past highway-env's speed: the world is the `batched` backend (all envs'
state in torch tensors, one pure-function substep for all), the tick contract is the
batched clock (`envs.clock.batched`), and the sensors render all envs in one call.

    envs = gym.make_vec("reflexdrive/LeadBrake-v0", num_envs=1024,
                        vectorization_mode="vector_entry_point", latency="fixed:0.03")

One `step(actions)` is one tick `[t_k, t_{k+1})` for every env. An env whose agent is still
busy with an earlier decision (latency `L > T`: dropped frames) ignores its row of
`actions` that tick; `info["observing"]` says which rows were taken. Otherwise the contract
is the single env's (`envs.clock.ClockWrapper`): realtime commands land exactly at
`t_k + L`, lockstep ones at `t_k`, overruns are recorded / terminate / raise, and with
`record=True` `info["ticks"]` and `info["substeps"]` hold per env the same `TickRecord`s and
`SubstepOutcome`s the highway env produces (what `reflexdrive run` needs; off by default,
since building Python objects per env and tick is what the batch exists to avoid).

An env whose episode ends mid-tick (collision, off road) is frozen at that substep, as the
single env stops integrating there. Autoreset follows Gymnasium's modes: next-step
(default), same-step (final observation and info under `info["final_obs"]`,
`info["final_info"]`) or disabled (reset finished envs with `options={"reset_mask": m}`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from reflexdrive.envs import sensors
from reflexdrive.envs.backends.batched import BatchedBackend, BatchedHazardTracker
from reflexdrive.envs.backends.batched.network_backend import NetworkBackend
from reflexdrive.envs.backends.batched.numba import TickStops
from reflexdrive.envs.clock.batched import BatchedClock, to_tick_records_per_env
from reflexdrive.envs.clock.contract import DeadlineMiss
from reflexdrive.envs.clock.timing import batched_timing
from reflexdrive.envs.config import ACCELERATION_BOUNDS, STEERING_BOUNDS, ClockConfig, SensorConfig
from reflexdrive.envs.gym.reward import RewardConfig, decision_reward, mean_progress
from reflexdrive.envs.gym.single import action_space, coerce_config, observation_space
from reflexdrive.envs.gym.termination import episode_over, termination
from reflexdrive.envs.lane_paths import RoadLanes
from reflexdrive.envs.latency import parse_latency
from reflexdrive.envs.latency.lookahead import BatchedLatencyLookahead
from reflexdrive.envs.outcomes import substep_outcomes
from reflexdrive.envs.road_map import route_targets
from reflexdrive.envs.scenarios import (
    HAZARD_KINDS,
    SCENARIOS,
    ScenarioInit,
    generate,
    make_config,
    scenario_spec,
    without_hazard,
)
from reflexdrive.envs.types import EGO

from reflexdrive.common.validation import ConfigError

_AUTORESET = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP,
              "disabled": AutoresetMode.DISABLED}


NETWORK_SCENARIOS = ("merge", "roundabout", "intersection", "intersection-cross-traffic",
                     "stopped-vehicle-curve")
"""Road-network scenarios the batched backend runs (`NetworkBackend`, the numba network
kernel with MOBIL and the ego's collisions), with observations equal to the highway
backend's (`tests/envs/gym/test_batched_network_env.py`) and the hazards' onsets,
criticality and collisions too (`tests/envs/gym/test_batched_network_hazards.py`)."""


def batched_scenarios() -> tuple[str, ...]:
    """Scenario names the batched backend runs: the straight multi-lane roads and
    `NETWORK_SCENARIOS`."""
    return tuple(name for name, spec in SCENARIOS.items()
                 if spec.straight or name in NETWORK_SCENARIOS)


class BatchedDrivingEnv(gym.vector.VectorEnv):
    """`num_envs` copies of one scenario on the batched backend and the batched clock.

    Args:
        num_envs: `B`.
        scenario: one of `batched_scenarios()` (a road network runs on `NetworkBackend`,
            CPU only).
        mode, latency, budget, stage_budgets, on_overrun, simulation_frequency,
            policy_frequency, execution: the clock, as for `envs.registration.make_env`.
        sensors, scenario_config, reward: as for `DrivingEnv`.
        device: torch device of the world and sensors ("cpu", "cuda"); road networks
            always run on the CPU (the numba network kernel), whatever `device` says.
        observations: render `bev` and `lidar` (False leaves them zero: for benchmarks and
            for agents that read only `ego` and ground truth).
        record: put per-env `TickRecord`s and `SubstepOutcome`s in `info` (slow at large B).
        autoreset_mode: "next_step", "same_step", "disabled" (or an `AutoresetMode`).
        copy: return fresh observation arrays each step (as Gymnasium's `copy=True`). False
            draws `bev` into one reused buffer (faster at large B on CPU): the arrays of a
            step are overwritten by the next one, so copy what you keep.
        latency_base_dir: directory relative `profile:PATH` specs resolve against.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
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
        device: str = "cpu",
        observations: bool = True,
        record: bool = False,
        autoreset_mode: str | AutoresetMode = "next_step",
        copy: bool = True,
        latency_base_dir: str | None = None,
        render_mode: str | None = None,
        counterfactual: bool | Sequence[bool] = False,
        execution: str = "sequential",
    ):
        spec = scenario_spec(scenario)
        if scenario not in batched_scenarios():
            raise ConfigError("scenario", scenario, "the batched backend runs "
                              + ", ".join(batched_scenarios())
                              + "; use the highway backend for the others")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError("num_envs", num_envs, "must be an integer >= 1")
        if render_mode is not None:
            raise ConfigError("render_mode", render_mode,
                              "the batched env does not render; use the highway backend")
        if isinstance(autoreset_mode, str):
            if autoreset_mode not in _AUTORESET:
                raise ConfigError("autoreset_mode", autoreset_mode,
                                  "allowed values are " + ", ".join(_AUTORESET))
            autoreset_mode = _AUTORESET[autoreset_mode]
        self.scenario = spec
        if scenario_config is None or isinstance(scenario_config, dict):
            self.scenario_config = make_config(spec.name, scenario_config)
        else:
            self.scenario_config = coerce_config(spec.config_type, scenario_config,
                                                 "scenario_config")
        self.sensor_config: SensorConfig = coerce_config(SensorConfig, sensors, "sensors")
        self.reward_config: RewardConfig = coerce_config(RewardConfig, reward, "reward")
        self.clock_config = ClockConfig(
            simulation_frequency=simulation_frequency, policy_frequency=policy_frequency,
            mode=mode, budget_s=budget, stage_budgets_s=dict(stage_budgets or {}),
            on_overrun=on_overrun, latency=latency, execution=execution)
        self.latency_model = parse_latency(latency, base_dir=latency_base_dir)
        self.lookahead = BatchedLatencyLookahead(self.latency_model, num_envs)
        self.num_envs = num_envs
        self.counterfactual = _per_env_flags("counterfactual", counterfactual, num_envs)
        if not spec.straight:
            device = "cpu"                      # NetworkBackend: the numba kernel only
        self.device = torch.device(device)
        self.observations = bool(observations)
        self.record = bool(record)
        self.copy = bool(copy)
        self._bev_buffer: np.ndarray | None = None
        self.autoreset_mode = autoreset_mode
        self.metadata = {**self.metadata, "autoreset_mode": autoreset_mode,
                         "render_fps": policy_frequency}
        self.render_mode = None
        self.single_observation_space = observation_space(self.sensor_config)
        self.single_action_space = action_space()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

        if spec.straight:
            self.backend = BatchedBackend(num_envs, simulation_frequency, device=device)
        else:
            road = generate(spec.name, self.scenario_config, 0, simulation_frequency).road
            self.backend = NetworkBackend(num_envs, road.kind, simulation_frequency,
                                          device=device)
        self.clock = BatchedClock(self.clock_config, num_envs, device=self.device)
        self._substeps_per_tick = self.clock_config.substeps_per_tick
        self._seeds = np.zeros(num_envs, dtype=np.int64)
        self._duration = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._done = np.zeros(num_envs, dtype=bool)
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self.hazards = BatchedHazardTracker(num_envs, simulation_frequency, device=device)
        self._reported: dict[str, float] | None = None
        self._last_position = np.zeros((num_envs, 2))
        self._started = False

    # -- Gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict | None = None):
        """Reset every env, or those in `options["reset_mask"]` (`(B,)` bool).

        Seeds: an int `s` gives env `i` the scenario seed `s + i`; a sequence gives one per
        env; None draws them from the env's generator.

        `options["scenario_inits"]` (a sequence of `B` `ScenarioInit`s or None) plays the
        given initial states instead of generating them, where not None (e.g. a test
        protocol's grid points; `init.seed` keys their sensor noise and latency draws).
        """
        options = dict(options or {})
        given = options.pop("scenario_inits", None)
        if given is not None and len(given) != self.num_envs:
            raise ValueError(f"options['scenario_inits'] has {len(given)} entries for "
                             f"{self.num_envs} envs")
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, dtype=bool)
        mask = np.asarray(mask)
        if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
            raise ValueError(f"options['reset_mask'] must be a ({self.num_envs},) bool array "
                             "with at least one True")
        if not self._started and not mask.all():
            raise ValueError("the first reset must reset every env")
        if isinstance(seed, (int, np.integer)):
            super().reset(seed=int(seed))
            seeds = [int(seed) + i for i in range(self.num_envs)]
        elif seed is None:
            if not self._started:
                super().reset(seed=None)
            seeds = [int(s) for s in self.np_random.integers(2**31 - 1, size=self.num_envs)]
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
            if not self._started:
                super().reset(seed=seeds[0])
        if given is not None:
            seeds = [seeds[i] if given[i] is None else int(given[i].seed)
                     for i in range(self.num_envs)]
        self._reset_envs(mask, seeds, given)
        obs, info = self._observe_and_info()
        return obs, info

    def report_latency(self, stage_latency_s: Mapping[str, float]) -> None:
        """The measured stage latencies [s] of the batched decision about to be stepped
        (used by the `measured` latency model; ignored by the others)."""
        self._reported = dict(stage_latency_s)

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)
        if actions.shape[1] != 2 or not np.all(np.isfinite(actions)):
            raise ValueError(f"actions must be finite, shape ({self.num_envs}, 2) "
                             "[acceleration, steering]")
        if not self._started:
            raise RuntimeError("call reset() before step()")
        starting = np.zeros(self.num_envs, dtype=bool)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP and self._needs_reset.any():
            starting = self._needs_reset.copy()
            self._reset_envs(starting, None)
        elif self.autoreset_mode == AutoresetMode.DISABLED and self._done.any():
            raise RuntimeError("envs " + ", ".join(map(str, np.flatnonzero(self._done)[:8]))
                               + " have ended: reset them with options={'reset_mask': ...}")
        live_np = ~(self._done | starting)
        live = torch.as_tensor(live_np, device=self.device)

        commands = torch.as_tensor(np.stack([
            np.clip(actions[:, 0], *ACCELERATION_BOUNDS),
            np.clip(actions[:, 1], *STEERING_BOUNDS)], axis=1), device=self.device)
        observing = self.clock.observing() & live
        stage_latency = self._sample_latency(observing.cpu().numpy())
        decision = self.clock.decide(commands, stage_latency)
        overrun = (decision.overrun & live).cpu().numpy()
        if self.clock_config.on_overrun == "raise" and overrun.any():
            env = int(np.flatnonzero(overrun)[0])
            latency = float(decision.latency_s[env])
            raise DeadlineMiss(f"env {env}: latency {latency * 1e3:.3f} ms exceeds the budget "
                               f"{self.clock_config.budget * 1e3:.3f} ms")
        records = self.clock.records() if self.record else None

        outcomes, progress = self._run_tick(live)
        self.clock.advance()

        crashed = self.backend.state.crashed[:, EGO].cpu().numpy()
        offroad = ~self.backend.ego_on_road().cpu().numpy()
        substep = self.backend.state.substep
        deadline = overrun & (self.clock_config.on_overrun == "terminate")
        terminated, truncated = termination(crashed, offroad,
                                            (substep >= self._duration).cpu().numpy(), deadline)
        terminated, truncated = live_np & terminated, live_np & truncated
        reward = self._reward(progress, crashed, offroad, live_np)
        self._done = terminated | truncated
        obs, info = self._observe_and_info()
        info["observing"] = observing.cpu().numpy()
        info["deadline_miss"] = deadline
        info["mode"] = np.full(self.num_envs, self.clock_config.mode, dtype=object)
        if self.record:
            info["ticks"], info["substeps"] = self._records(records, outcomes, live_np)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._needs_reset = self._done.copy()
        elif self.autoreset_mode == AutoresetMode.SAME_STEP and self._done.any():
            done = self._done.copy()
            # copies: the reset below draws the new episodes' first observations into `obs`
            info["final_obs"] = np.array([{k: v[i].copy() for k, v in obs.items()}
                                          if done[i] else None
                                          for i in range(self.num_envs)], dtype=object)
            info["final_info"] = {k: v for k, v in info.items() if k != "final_obs"}
            self._reset_envs(done, None)
            new_obs, _ = self._observe_and_info()
            for key in obs:
                obs[key][done] = new_obs[key][done]
            self._done[:] = False
        reward[starting] = 0.0
        return obs, reward, terminated, truncated, info

    def close_extras(self, **kwargs):
        self.backend = None

    # -- internals -------------------------------------------------------------------------

    def _reset_envs(self, mask: np.ndarray, seeds: Sequence[int] | None,
                    given: Sequence[ScenarioInit | None] | None = None) -> None:
        """Generate (or take from `given`) and instantiate new episodes where `mask`; the
        counterfactual envs play each one's hazard-removed twin."""
        if seeds is None:
            seeds = [int(s) for s in self.np_random.integers(2**31 - 1, size=self.num_envs)]
        f = self.clock_config.simulation_frequency
        inits: list[ScenarioInit | None] = [None] * self.num_envs
        for i in np.flatnonzero(mask):
            init = given[i] if given is not None and given[i] is not None else generate(
                self.scenario.name, self.scenario_config, seeds[i], f)
            inits[i] = without_hazard(init) if self.counterfactual[i] else init
        self.backend.reset(inits)
        rows = np.flatnonzero(mask)
        for i in rows:
            self._seeds[i] = seeds[i]
            self._duration[i] = inits[i].duration_substeps
        self.lookahead.reset_batch(mask, seeds)
        self.clock.reset(torch.as_tensor(mask, device=self.device))
        ego = self.backend.state.position[:, EGO].cpu().numpy()
        self._last_position[mask] = ego[mask]
        lanes = None
        if isinstance(self.backend, NetworkBackend):     # criticality along the lanes
            lanes = [None if init is None else RoadLanes.of(self.backend.network(i), init)
                     for i, init in enumerate(inits)]
        self.hazards.reset([init.hazard if init is not None else None for init in inits],
                           [init.duration_s if init is not None else None for init in inits],
                           lanes)
        self.hazards.update(self.backend.state, self.backend.snapshot)
        self._done[mask] = False
        self._needs_reset[mask] = False
        self._started = True

    def _sample_latency(self, observing: np.ndarray) -> dict[str, torch.Tensor]:
        """Per-stage `(B,)` float64 latencies [s] of this tick's decisions, from the latency
        model's `sample_batch` (rows not observing: placeholders the clock ignores)."""
        reported, self._reported = self._reported, None
        stages = self.lookahead.take(observing, reported)
        return {name: torch.as_tensor(values, dtype=torch.float64, device=self.device)
                for name, values in stages.items()}

    def _run_tick(self, live: torch.Tensor):
        """Integrate the tick's substeps; envs that end mid-tick are frozen from then on.

        Returns per-substep `(active (B,) bool, snapshot)` pairs when recording (else empty)
        and the `(B,)` mean progress term over each env's integrated substeps (the reward's).
        On the numba stepper without recording, the whole tick is one kernel call
        (`BatchedBackend.tick`, the same result as the loop below).
        """
        backend = self.backend
        if backend.stepper == "numba" and not self.record:
            pieces = [self.clock.substep_pieces(j) for j in range(self._substeps_per_tick)]
            onsets = self.hazards.onsets
            stops = TickStops(duration=self._duration, trigger_range=onsets.trigger_range,
                              onset=onsets.onset_substep, hazard_kind=onsets.kind,
                              hazard_vehicle=onsets.vehicle)
            outcome = backend.tick(torch.stack([p[0] for p in pieces]), pieces[0][1],
                                   pieces[0][2], live, stops)
            self.hazards.set_onsets(torch.from_numpy(outcome.onset), backend.state.substep,
                                    outcome.onset_poses)
            return [], mean_progress(self.reward_config, outcome.ego_speed, outcome.integrated)
        active = live.clone()
        outcomes: list = []
        speeds, integrated = [], []
        for j in range(self._substeps_per_tick):
            first_s, first, second = self.clock.substep_pieces(j)
            backend.substep(first_s, first, second, active=active)
            state = backend.state
            self.hazards.update(state, backend.snapshot)
            speeds.append(state.speed[:, EGO].clone())
            integrated.append(active)
            if self.record:
                outcomes.append((active.cpu().numpy(), backend.snapshot()))
            ended_now = active & episode_over(state.crashed[:, EGO], backend.ego_on_road(),
                                              state.substep, self._duration)
            active = active & ~ended_now
        return outcomes, mean_progress(self.reward_config, torch.stack(speeds).cpu().numpy(),
                                       torch.stack(integrated).cpu().numpy())

    def _reward(self, progress, crashed, offroad, live) -> np.ndarray:
        return decision_reward(self.reward_config, progress, crashed, offroad, live)

    def _observe_and_info(self) -> tuple[dict, dict]:
        snapshot = self.backend.snapshot()
        config = self.sensor_config
        b = self.num_envs
        substep = self.backend.substep_index
        if self.observations:
            road = self.backend.road_geometry()
            out = None
            if not self.copy and self.device.type == "cpu":
                if self._bev_buffer is None:
                    self._bev_buffer = np.zeros((b, *config.bev_shape), dtype=np.uint8)
                out = self._bev_buffer
            # Each world's noise: a function of its episode's seed and the tick it observes
            # (rounded up: a world that ended mid-tick gets fresh noise), never of its index
            # or the batch (`DrivingEnv._observe` draws the same for the same episode).
            ticks = -(-substep // self._substeps_per_tick)
            noise = sensors.episode_noise_keys(self._seeds, ticks)
            bev, lidar = sensors.observe(snapshot, road, config, noise, device=self.device,
                                         out=out)
        else:
            bev = np.zeros((b, *config.bev_shape), dtype=np.uint8)
            lidar = np.zeros((b, config.lidar_beams, 2), dtype=np.float32)
        road_map = self.backend.road_map(snapshot)
        # the coming decisions' latencies, drawn now for the envs that will decide next
        self.lookahead.draw(self.clock.observing().cpu().numpy() & ~self._done)
        timing = batched_timing(self.clock_config, self.clock.state,
                                torch.as_tensor(self.lookahead.known_s, device=self.device))
        obs = {"bev": bev, "lidar": lidar.astype(np.float32, copy=False),
               "ego": sensors.ego_vector(snapshot), "route": route_targets(road_map["route"]),
               "timing": timing}
        objects, valid = sensors.ground_truth_objects(snapshot, config)
        onsets = self.hazards.onsets
        onset_substep = onsets.onset_substep.cpu().numpy()
        kind = onsets.kind.cpu().numpy()
        f = self.clock_config.simulation_frequency
        info = {
            "scenario": np.full(b, self.scenario.name, dtype=object),
            "scenario_seed": self._seeds.copy(),
            "time_s": snapshot.time_s.astype(np.float64),
            "tick": (substep // self._substeps_per_tick).astype(np.int64),
            "gt_objects": objects,
            "gt_valid": valid,
            "map": road_map,
            "hazard": {
                "kind": np.array(HAZARD_KINDS, dtype=object)[kind],
                "onset_s": np.where(onset_substep >= 0, onset_substep / f, math.inf),
                "active": onsets.active.cpu().numpy(),
                "vehicle_id": onsets.vehicle.cpu().numpy(),
                **self.hazards.info(),
            },
            "crashed": snapshot.crashed.astype(bool),
            "offroad": ~snapshot.ego_on_road.astype(bool),
        }
        return obs, info

    def _records(self, records, outcomes, live: np.ndarray):
        """Per-env `TickRecord` and `SubstepOutcome` lists for `info` (record mode)."""
        ticks = np.empty(self.num_envs, dtype=object)
        substeps = np.empty(self.num_envs, dtype=object)
        per_env: list[list] = [[] for _ in range(self.num_envs)]
        for active, snapshot in outcomes:
            rows = np.flatnonzero(active)
            for i, outcome in substep_outcomes(snapshot, self._last_position, snapshot.time_s,
                                               rows).items():
                per_env[i].append(outcome)
            self._last_position[rows] = snapshot.position[rows, EGO]
        rows = [int(i) for i in np.flatnonzero(live)]
        converted = dict(zip(rows, to_tick_records_per_env(records, rows))) if rows else {}
        for i in range(self.num_envs):
            ticks[i] = converted.get(i, [])
            substeps[i] = per_env[i]
        return ticks, substeps


def _per_env_flags(name: str, value: bool | Sequence[bool], num_envs: int) -> np.ndarray:
    """A bool or one bool per env as a `(num_envs,)` bool array (ConfigError otherwise)."""
    flags = np.broadcast_to(np.asarray(value), (num_envs,)) if np.ndim(value) == 0 else (
        np.asarray(value))
    if flags.shape != (num_envs,) or flags.dtype != np.bool_:
        raise ConfigError(name, value, f"must be true, false or {num_envs} of them")
    return flags.copy()


def make_batched_env(num_envs: int = 1, **kwargs) -> BatchedDrivingEnv:
    """Vector entry point of every scenario id (`gym.make_vec(..., vectorization_mode=
    "vector_entry_point")`)."""
    kwargs.pop("max_episode_steps", None)
    return BatchedDrivingEnv(num_envs=num_envs, **kwargs)
