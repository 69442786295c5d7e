"""`reference-driver`: UN R157's careful and competent human driver, as a batched stack.

The model of UN R157 Annex 4 Appendix 3 as esmini's `ControllerALKS_R157SM::ReferenceDriver`
implements it (after ec-jrc/JRC-FSM), on ground truth (`scene.lane_scene`), no sensors.
Per env a small state machine runs in simulated time (ticks of `tick_s`):

- INACTIVE: keep the speed (zero acceleration; esmini with `cruise=false`) and the lane,
  and watch the *focus*: the nearest object ahead that is in the ego lane or intruding
  into it. A scenario starts when the focus
  - decelerates harder than `lead_decel_trigger_mps2` (in the lane; esmini's
    "Deceleration"): risk evaluated on time headway;
  - wanders, from an adjacent lane and moving towards the ego's, more than
    `cut_in_wander_m` off its lane centre (esmini's `WanderingTrigger`; "CutIn"): risk
    evaluated on time-to-collision;
  - closes in the lane with TTC under `critical_ttc_s` ("Closing"; esmini has no such
    scenario, it leaves slower and standing objects to its ACC cruise and AEB, see
    docs/reference_drivers.md): risk evaluated on time-to-collision.
- PERCEIVE: `perception_s` for a deceleration or closing; for a cut-in, until the
  intruder has moved a further `cut_in_perception_m` sideways (esmini's default
  `cutInPerceptionDelayMode=Dist`: R157's 0.72 m, the 0.4 s at the worst-case lateral
  speed).
- REACT: `reaction_s` at `-release_decel_mps2` (foot off the accelerator), then BRAKE:
  a ramp at `brake_jerk_mps3` to `max_decel_mps2` (`response.response_acceleration`). The
  risk is evaluated when the perception ends and on every tick of the reaction; where it
  is not (or no longer) critical the scenario ends and is not started again for the same
  object and kind until its trigger condition has lapsed (esmini registers a scenario
  only for a new object or action).
- BRAKE ends (back to INACTIVE) at standstill, when the focus is lost, or once the risk is
  gone and the gap exceeds `min_gap_base_m + min_gap_headway_s * v` (esmini's
  "decelerate until safe", its `MinDist`).

Phase boundaries are times; the command held over a tick is the mean of the continuous
response over that tick (`response.tick_mean_acceleration`). The runner gives reference
stacks zero latency, so every tick is a decision; the agent counts its calls as ticks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from reflexdrive.agents.base import Decision, Info, Observation, StageTimer
from reflexdrive.agents.reference.lane_keeping import keep_lane
from reflexdrive.agents.reference.response import tick_mean_acceleration
from reflexdrive.agents.reference.scene import (
    SPEED,
    closing_speed,
    in_ego_lane,
    lane_scene,
    longitudinal_acceleration,
    nearest,
    pick,
    slot_of,
    time_headway,
    time_to_collision,
)
from reflexdrive.agents.staged.control import LaneKeepingController
from reflexdrive.envs.config import ACCELERATION_BOUNDS

from reflexdrive.common.validation import ConfigError, real, validate_fields

STANDARD_GRAVITY_MPS2 = 9.81
"""g as R157's 0.774 g is converted by esmini and JRC-FSM [m/s^2]."""

INACTIVE, PERCEIVE, REACT, BRAKE = 0, 1, 2, 3
"""Phases of the state machine (esmini's `ReferenceDriver::Phase`, BRAKE_REF as BRAKE)."""
PHASES = ("inactive", "perceive", "react", "brake")
NO_SCENARIO, DECELERATION, CUT_IN, CLOSING = 0, 1, 2, 3
"""Scenario kinds (esmini's `ScenarioType` Deceleration and CutIn, plus Closing)."""
SCENARIOS = ("none", "deceleration", "cut-in", "closing")
TRIGGERED = np.array([CUT_IN, DECELERATION, CLOSING])
"""The scenarios an object can start, in order of precedence."""

_TIME_TOLERANCE_S = 1e-9
"""Slack when a phase boundary is compared with a tick boundary (`k * T` in floats) [s]."""


@dataclass(frozen=True)
class ReferenceDriverConfig:
    """The careful and competent driver's parameters (defaults: esmini's ReferenceDriver,
    JRC-FSM's CC_human_driver, UN R157 Annex 4 Appendix 3). Validated on construction
    (`ConfigError` naming `reference_driver.<field>`)."""

    tick_s: float = real(0.1, low=0.0, high=10.0, low_inclusive=False,
                         help="time between calls, 1 / policy_frequency [s]")
    perception_s: float = real(0.4, low=0.0, high=10.0,
                               help="perception time of a deceleration or closing [s]")
    cut_in_wander_m: float = real(
        0.375, low=0.0, high=5.0,
        help="lane wander of an adjacent vehicle, off its lane centre towards the ego lane, "
             "that starts a cut-in's perception [m]")
    cut_in_perception_m: float = real(
        0.72, low=0.0, high=5.0,
        help="further lateral travel of the intruder until the cut-in is perceived [m]")
    reaction_s: float = real(0.75, low=0.0, high=10.0, help="reaction time [s]")
    release_decel_mps2: float = real(
        0.4, low=0.0, high=8.0, help="deceleration during the reaction (foot off) [m/s^2]")
    brake_jerk_mps3: float = real(12.65, low=0.0, high=1000.0, low_inclusive=False,
                                  help="rate at which braking builds up [m/s^3]")
    max_decel_mps2: float = real(
        0.774 * STANDARD_GRAVITY_MPS2, low=0.0, high=-ACCELERATION_BOUNDS[0],
        low_inclusive=False,
        help="full braking [m/s^2], at least release_decel_mps2, at most the env's bound")
    critical_ttc_s: float = real(2.0, low=0.0, high=60.0,
                                 help="risk when time-to-collision is below this [s]")
    critical_headway_s: float = real(
        2.0, low=0.0, high=60.0, help="risk (deceleration) when time headway is below [s]")
    lead_decel_trigger_mps2: float = real(
        5.0, low=0.0, high=20.0,
        help="lead deceleration above which a deceleration scenario starts [m/s^2]")
    min_gap_base_m: float = real(2.0, low=0.0, high=100.0,
                                 help="braking ends beyond this gap plus the next [m]")
    min_gap_headway_s: float = real(2.0, low=0.0, high=60.0,
                                    help="... plus this time at the ego's speed [s]")
    range_m: float = real(100.0, low=0.0, high=1000.0, low_inclusive=False,
                          help="look-ahead distance (centre to centre) [m]")
    lane_width_m: float = real(4.0, low=0.0, high=20.0, low_inclusive=False,
                               help="lane width (highway-env's straight lanes) [m]")
    ego_length_m: float = real(5.0, low=0.0, high=50.0, low_inclusive=False,
                               help="ego length, for bumper gaps [m]")
    standstill_mps: float = real(0.01, low=0.0, high=5.0,
                                 help="speed below which braking ends [m/s]")

    def __post_init__(self) -> None:
        validate_fields(self, "reference_driver.")
        if self.max_decel_mps2 < self.release_decel_mps2:
            raise ConfigError("reference_driver.max_decel_mps2", self.max_decel_mps2,
                              f"must be at least release_decel_mps2={self.release_decel_mps2}")

    def response_parameters(self) -> tuple[float, float, float, float]:
        """`(reaction_s, release, jerk, max_decel)` for `response.*`."""
        return (self.reaction_s, self.release_decel_mps2, self.brake_jerk_mps3,
                self.max_decel_mps2)


@dataclass
class _Observed:
    """One tick's measurements of every object `(N, M)` and the candidates for focus."""

    gap: np.ndarray
    ttc: np.ndarray
    headway: np.ndarray
    wander: np.ndarray
    lateral: np.ndarray
    ids: np.ndarray
    triggers: np.ndarray       # (N, M, 3) bool: each object meets the trigger of TRIGGERED
    focus: np.ndarray          # (N,) slot of the nearest candidate, -1 if none


class ReferenceDriver:
    """UN R157's careful and competent driver over `N` envs (module docstring).

    `products`: "plan" (the lane-keeping `Plan`), "phase" `(N,)` int (`PHASES`),
    "scenario" `(N,)` int (`SCENARIOS`), "focus_id" `(N,)` vehicle id (-1 none).
    """

    stage_names = ("reference",)

    def __init__(self, config: ReferenceDriverConfig | None = None, name: str = "reference-driver"):
        self.config = config if config is not None else ReferenceDriverConfig()
        self.name = name
        self.steering = LaneKeepingController(vehicle_length_m=self.config.ego_length_m)
        self._n = -1

    # -- state ----------------------------------------------------------------------------

    def _allocate(self, n: int) -> None:
        self._n = n
        self.tick = np.zeros(n, np.int64)
        """Ticks since the env's episode began."""
        self.phase = np.full(n, INACTIVE, np.int64)
        self.scenario = np.full(n, NO_SCENARIO, np.int64)
        self.focus_id = np.full(n, -1, np.int64)
        self.event_tick = np.zeros(n, np.int64)
        """Tick at which the scenario started (perception began)."""
        self.reaction_start_s = np.full(n, np.nan)
        """Episode time at which the reaction begins [s]."""
        self.wander_at_trigger = np.zeros(n)
        self.side = np.zeros(n)
        self.dismissed_id = np.full(n, -1, np.int64)
        self.dismissed_scenario = np.full(n, NO_SCENARIO, np.int64)
        self._previous_id: np.ndarray | None = None
        self._previous_vs: np.ndarray | None = None

    def reset(self, done: np.ndarray) -> None:
        """Forget every per-env state where `done` `(N,)`."""
        done = np.asarray(done, bool)
        if self._n != done.shape[0]:
            self._allocate(done.shape[0])
            return
        self.tick[done] = 0
        self.phase[done] = INACTIVE
        self.scenario[done] = NO_SCENARIO
        self.focus_id[done] = -1
        self.reaction_start_s[done] = np.nan
        self.dismissed_id[done] = -1
        self.dismissed_scenario[done] = NO_SCENARIO
        if self._previous_id is not None:
            self._previous_id[done] = -1

    def _end(self, where: np.ndarray, dismiss: bool) -> None:
        """Back to INACTIVE where `where`; `dismiss`: do not start the same scenario on the
        same object again until its trigger lapses."""
        if dismiss:
            self.dismissed_id[where] = self.focus_id[where]
            self.dismissed_scenario[where] = self.scenario[where]
        self.phase[where] = INACTIVE
        self.scenario[where] = NO_SCENARIO
        self.focus_id[where] = -1
        self.reaction_start_s[where] = np.nan

    # -- one tick -------------------------------------------------------------------------

    def _observe(self, obs: Observation, info: Info) -> _Observed:
        cfg = self.config
        scene = lane_scene(obs["ego"], info, cfg.ego_length_m)
        ttc = time_to_collision(scene.gap, closing_speed(scene))
        headway = time_headway(scene.gap, scene.ego_speed[:, None])
        accel = longitudinal_acceleration(scene, self._previous_id, self._previous_vs,
                                          cfg.tick_s)
        self._previous_id, self._previous_vs = scene.vehicle_id.copy(), scene.vs.copy()
        in_lane = in_ego_lane(scene, cfg.lane_width_m, cfg.range_m)
        half = 0.5 * cfg.lane_width_m
        side = np.sign(scene.d)
        wander = cfg.lane_width_m - side * scene.d      # off the adjacent lane's centre
        adjacent = (scene.valid & (scene.s > 0) & (scene.s <= cfg.range_m)
                    & (np.abs(scene.d) >= half) & (np.abs(scene.d) < 3 * half))
        intruding = adjacent & (scene.vd * side < 0) & (wander > cfg.cut_in_wander_m)
        triggers = np.stack([intruding,
                             in_lane & (accel < -cfg.lead_decel_trigger_mps2),
                             in_lane & (ttc < cfg.critical_ttc_s)], axis=-1)
        return _Observed(gap=scene.gap, ttc=ttc, headway=headway, wander=wander,
                         lateral=scene.d, ids=scene.vehicle_id, triggers=triggers,
                         focus=nearest(in_lane | intruding, scene.gap))

    def _start(self, seen: _Observed) -> None:
        """INACTIVE envs whose focus triggers a scenario begin to perceive it."""
        rows = np.arange(self._n)
        dismissed_slot = slot_of(seen.ids, self.dismissed_id)
        which = np.argmax(TRIGGERED[None, :] == self.dismissed_scenario[:, None], axis=1)
        still = (dismissed_slot >= 0) & seen.triggers[rows, np.maximum(dismissed_slot, 0), which]
        self.dismissed_id[~still] = -1
        self.dismissed_scenario[~still] = NO_SCENARIO
        focus_id = pick(seen.ids, seen.focus, -1).astype(np.int64)
        blocked = ((focus_id == self.dismissed_id)[:, None]
                   & (TRIGGERED[None, :] == self.dismissed_scenario[:, None]))
        allowed = (seen.triggers[rows, np.maximum(seen.focus, 0)] & ~blocked
                   & (seen.focus >= 0)[:, None])                                 # (N, 3)
        kind = np.where(allowed.any(axis=1), TRIGGERED[np.argmax(allowed, axis=1)], NO_SCENARIO)
        start = (self.phase == INACTIVE) & (kind != NO_SCENARIO)
        self.phase[start] = PERCEIVE
        self.scenario[start] = kind[start]
        self.focus_id[start] = focus_id[start]
        self.event_tick[start] = self.tick[start]
        timed = start & (kind != CUT_IN)
        self.reaction_start_s[timed] = self.tick[timed] * self.config.tick_s \
            + self.config.perception_s
        self.wander_at_trigger[start] = pick(seen.wander, seen.focus, 0.0)[start]
        self.side[start] = np.sign(pick(seen.lateral, seen.focus, 0.0))[start]

    def act(self, obs: Observation, info: Info) -> Decision:
        timer = StageTimer()
        with timer("reference"):
            actions, plan = self._decide(obs, info)
        return Decision(actions=actions, stage_latency_s=timer.latencies,
                        products={"plan": plan, "phase": self.phase.copy(),
                                  "scenario": self.scenario.copy(),
                                  "focus_id": self.focus_id.copy()})

    def _decide(self, obs: Observation, info: Info):
        cfg = self.config
        ego = np.asarray(obs["ego"], np.float64)
        if self._n != ego.shape[0]:
            self._allocate(ego.shape[0])
        seen = self._observe(obs, info)
        self._start(seen)
        now_s = self.tick * cfg.tick_s
        slot = slot_of(seen.ids, self.focus_id)
        self._end((self.phase != INACTIVE) & (slot < 0), dismiss=False)   # lost sight

        # perception ends: by time (deceleration, closing) or lateral travel (cut-in)
        wander = cfg.lane_width_m - self.side * pick(seen.lateral, slot, 0.0)
        by_distance = (self.scenario == CUT_IN) & (
            wander > self.wander_at_trigger + cfg.cut_in_perception_m)
        by_time = (self.scenario != CUT_IN) & (
            now_s + cfg.tick_s > self.reaction_start_s + _TIME_TOLERANCE_S)
        perceived = (self.phase == PERCEIVE) & (by_distance | by_time)
        cut_in_perceived = perceived & (self.scenario == CUT_IN)
        self.reaction_start_s[cut_in_perceived] = now_s[cut_in_perceived]
        self.phase[perceived] = REACT

        critical = np.where(self.scenario == DECELERATION,
                            pick(seen.headway, slot, np.inf) < cfg.critical_headway_s,
                            pick(seen.ttc, slot, np.inf) < cfg.critical_ttc_s)
        self._end((self.phase == REACT) & ~critical, dismiss=True)
        sigma_s = now_s - self.reaction_start_s
        braking_due = sigma_s + cfg.tick_s > cfg.reaction_s + _TIME_TOLERANCE_S
        self.phase[(self.phase == REACT) & braking_due] = BRAKE

        gap = pick(seen.gap, slot, np.inf)
        speed = ego[:, SPEED]
        safe = ~critical & (gap > cfg.min_gap_base_m + cfg.min_gap_headway_s * speed)
        self._end((self.phase == BRAKE) & ((speed < cfg.standstill_mps) | safe),
                  dismiss=False)

        responding = (self.phase == REACT) | (self.phase == BRAKE)
        command = np.where(responding, tick_mean_acceleration(
            np.where(responding, sigma_s, 0.0), cfg.tick_s, *cfg.response_parameters()), 0.0)
        watched_gap = pick(seen.gap, seen.focus, np.inf)
        actions, plan = keep_lane(self.steering, command, ego, watched_gap)
        self.tick += 1
        return actions, plan
