"""The protocol harness: every grid point x stack as worlds of one `BatchedDrivingEnv`.

Points whose road the batched backend lacks (R157's curved stationary tests,
`GridPoint.needs_highway`) run the same way in highway-env worlds
(`protocol.highway_worlds`), a second batch after the straight points.

Each (stack, point) is two worlds of the batch: the point's `ScenarioInit` and its
hazard-removed twin (`counterfactual=[...]` flags), so `run.metrics.counterfactual_reaction`
gives the reaction time. All stacks drive on the test rig (`HoldSpeedAgent`). The env runs
with `record=True` (tick records and substep outcomes per world) and autoreset disabled; a
world whose episode has ended replays its point unrecorded until the last one ends.

Outcome of a point (`PointOutcome`): contact with the target, the relative impact speed
(the VUT's speed minus the target's velocity along the VUT's heading, at the substep of
contact), and, for Euro NCAP, the end of test: once the VUT stands still or is slower
than the target (checked at tick boundaries from the onset on), a later contact does not
count. The score is the suite's (`ncap.impact_score`, `r157.r157_score`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from reflexdrive.agents.registry import (
    REFERENCE_STACKS,
    STACKS,
    check_stack,
    check_staged_options,
    make_agent,
)
from reflexdrive.common.devices import resolve_device
from reflexdrive.common.validation import (
    ConfigError,
    choice,
    count,
    override,
    validate_fields,
)
from reflexdrive.envs.clock import TIME_EPS_S
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.envs.latency import parse_latency
from reflexdrive.envs.sensors.ground_truth import OBJECT_FIELDS
from reflexdrive.protocol.grid import KPH, GridPoint
from reflexdrive.protocol.highway_worlds import highway_worlds
from reflexdrive.protocol.hold_speed import HoldSpeedAgent
from reflexdrive.protocol.ncap import impact_score, ncap_grid
from reflexdrive.protocol.r157 import r157_grid, r157_score
from reflexdrive.run.metrics import ReactionConfig, counterfactual_reaction
from reflexdrive.run.rollout import merge_info, merge_obs
from reflexdrive.run.runner import RunConfig

SUITES: dict[str, Callable[..., list[GridPoint]]] = {"ncap-ccr": ncap_grid, "r157": r157_grid}
"""Suite name -> grid builder."""
REFERENCE_STACK = "reference-driver"
"""The stack R157 judges against; added to an r157 run when it is registered."""
STANDSTILL_MPS = 0.01
"""Euro NCAP end of test: the VUT is at standstill below this speed [m/s]."""
_VX = OBJECT_FIELDS.index("vx_mps")
_ID = OBJECT_FIELDS.index("vehicle_id")


@dataclass(frozen=True)
class ProtocolConfig:
    """One `reflexdrive protocol` run (bounds and units of each field in its metadata).

    `stacks` are stack names (`agents.registry.stack_names`) or `package.module:factory`
    specs; `perception` and `controller` (the staged stack's) are as `RunConfig`'s;
    `points` restricts the suite to
    the given point ids (None: all). The clock's fields are `ClockConfig`'s.
    """

    suite: str = choice("ncap-ccr", choices=tuple(SUITES), help="protocol suite")
    stacks: tuple[str, ...] = ("staged",)
    points: tuple[str, ...] | None = None
    mode: str = override(ClockConfig, "mode")
    latency: str = override(ClockConfig, "latency")
    simulation_frequency: int = override(ClockConfig, "simulation_frequency")
    policy_frequency: int = override(ClockConfig, "policy_frequency")
    perception: str = override(RunConfig, "perception")
    controller: str = override(RunConfig, "controller")
    device: str = choice("cpu", choices=("cpu", "cuda", "auto"),
                         help="torch device of the batched backend and of the networks")
    seed: int = count(0, low=0, help="sensor-noise seed of the first grid point")
    reaction: ReactionConfig = field(default_factory=ReactionConfig)

    def __post_init__(self) -> None:
        validate_fields(self)
        if isinstance(self.stacks, str) or not self.stacks:
            raise ConfigError("stacks", self.stacks, "must be a non-empty list of stack names")
        for stack in self.stacks:
            check_stack("stacks", stack)
        check_staged_options(perception=self.perception, controller=self.controller)
        if len(set(self.stacks)) != len(self.stacks):
            raise ConfigError("stacks", ",".join(self.stacks), "must not repeat a stack")
        if self.latency.strip() == "measured":
            raise ConfigError("latency", self.latency,
                              "the stacks share one batch: use fixed:SECONDS, "
                              "fixed:STAGE=SECONDS,... or profile:PATH")
        ClockConfig(simulation_frequency=self.simulation_frequency,
                    policy_frequency=self.policy_frequency, mode=self.mode,
                    latency=self.latency)
        parse_latency(self.latency, base_dir=os.getcwd())
        resolve_device(self.device)
        if self.points is not None:
            known = [p.point for p in self.grid(all_points=True)]
            unknown = [p for p in self.points if p not in known]
            if unknown or not self.points:
                raise ConfigError("points", ",".join(unknown) or "(empty)",
                                  f"allowed values are {self.suite} point ids, e.g. "
                                  + ", ".join(known[:3]))

    def grid(self, all_points: bool = False) -> list[GridPoint]:
        """The suite's grid points (those in `points` unless `all_points`)."""
        points = SUITES[self.suite](simulation_frequency=self.simulation_frequency,
                                    seed=self.seed)
        if all_points or self.points is None:
            return points
        return [p for p in points if p.point in self.points]

    def run_stacks(self) -> tuple[str, ...]:
        """The stacks driven: `stacks`, plus the reference driver for r157 where registered."""
        if self.suite == "r157" and REFERENCE_STACK in STACKS and REFERENCE_STACK not in \
                self.stacks:
            return (*self.stacks, REFERENCE_STACK)
        return tuple(self.stacks)


@dataclass
class PointOutcome:
    """What one hazard world showed (the twin only lends its tick records).

    Attributes:
        collided: contact with the target before the test ended.
        impact_speed_kph: relative impact speed [km/h], 0 without contact.
        test_over: the test has ended (contact, or Euro NCAP's standstill / slower rule).
        reaction_time_s: counterfactual reaction [s], NaN if none.
    """

    collided: bool = False
    impact_speed_kph: float = 0.0
    test_over: bool = False
    reaction_time_s: float = math.nan


def target_velocity(objects: np.ndarray, valid: np.ndarray, slot: int) -> np.ndarray:
    """The target's ground velocity along the ego heading `(B,)` [m/s] from `info`'s
    ground-truth objects `(B, M, 8)` and `valid (B, M)`; NaN where it is absent."""
    match = valid & (np.rint(objects[..., _ID]) == slot)
    found = match.any(axis=1)
    index = match.argmax(axis=1)
    vx = objects[np.arange(objects.shape[0]), index, _VX].astype(np.float64)
    return np.where(found, vx, np.nan)


def ncap_test_over(speed_mps: float, target_vx_mps: float) -> bool:
    """Euro NCAP's end of test without contact: the VUT stands still or is slower than the
    target (an absent target, NaN, never ends it)."""
    return speed_mps < STANDSTILL_MPS or speed_mps < target_vx_mps - STANDSTILL_MPS


def _rows_of(tree: Any, rows: slice) -> Any:
    """The rows `rows` of every array of a (nested) batched obs / info dict."""
    if isinstance(tree, dict):
        return {key: _rows_of(value, rows) for key, value in tree.items()}
    return tree[rows] if isinstance(tree, np.ndarray) else tree


def run_protocol(config: ProtocolConfig, progress: Callable[[int, int], None] | None = None
                 ) -> pd.DataFrame:
    """Drive every grid point with every stack on the rig; one row per stack x point.

    Args:
        config: the suite, stacks, clock and perception.
        progress: called with `(worlds ended, worlds)` after every tick, if given.

    Returns:
        the `protocol.csv` frame (`result_columns`).
    """
    points = config.grid()
    stacks = config.run_stacks()
    # the reference drivers' delays are behaviour: they drive at zero latency, in their own
    # batch (one batch has one latency model)
    reference = tuple(stack for stack in stacks if stack in REFERENCE_STACKS)
    systems = tuple(stack for stack in stacks if stack not in REFERENCE_STACKS)
    rows = []
    straight = [point for point in points if not point.needs_highway]
    curved = [point for point in points if point.needs_highway]
    for group, latency in ((systems, config.latency), (reference, "fixed:0")):
        for batch in (straight, curved):
            if group and batch:
                rows.extend(_drive(config, batch, group, latency, progress))
    rows.sort(key=lambda row: stacks.index(row["stack"]))
    return _scored(pd.DataFrame(rows, columns=result_columns(points)), config.suite)


def _drive(config: ProtocolConfig, points: Sequence[GridPoint], stacks: Sequence[str],
           latency: str, progress: Callable[[int, int], None] | None) -> list[dict]:
    """Drive `points` with `stacks` (and their twins) in one batch at `latency`; the rows."""
    per_stack = 2 * len(points)
    inits = [point.init for _ in stacks for point in points for _twin in (0, 1)]
    twins = [bool(twin) for _ in stacks for _ in points for twin in (0, 1)]
    device = str(resolve_device(config.device))
    clock = dict(mode=config.mode, latency=latency,
                 simulation_frequency=config.simulation_frequency,
                 policy_frequency=config.policy_frequency, latency_base_dir=os.getcwd())
    if any(point.needs_highway for point in points):
        env = highway_worlds(twins, **clock)
        seed: Any = [int(init.seed) for init in inits]
    else:
        env = BatchedDrivingEnv(num_envs=len(inits), scenario="lead-brake", device=device,
                                record=True, autoreset_mode="disabled", counterfactual=twins,
                                **clock)
        seed = config.seed
    test_speed = np.array([point.test_speed_mps for point in points for _ in (0, 1)])
    release = np.array([point.release_s for point in points for _ in (0, 1)])
    steer_free = np.array([point.steer_from_start for point in points for _ in (0, 1)])
    agents = [HoldSpeedAgent(make_agent(stack, seed=config.seed, device=device,
                                        perception=config.perception,
                                        controller=config.controller,
                                        tick_s=1.0 / config.policy_frequency),
                             test_speed, release, steer_from_start=steer_free)
              for stack in stacks]
    obs, info = env.reset(seed=seed, options={"scenario_inits": inits})
    for agent in agents:
        agent.reset(np.ones(per_stack, dtype=bool))
    worlds = len(inits)
    records: list[list] = [[] for _ in range(worlds)]
    substeps: list[list] = [[] for _ in range(worlds)]
    ended = np.zeros(worlds, dtype=bool)
    onset_s = np.full(worlds, math.inf)
    outcomes = [PointOutcome() for _ in range(worlds)]
    point_of = [point for _ in stacks for point in points for _ in (0, 1)]
    while not ended.all():
        actions = np.zeros((worlds, 2), dtype=np.float32)
        for s, agent in enumerate(agents):
            rows = slice(s * per_stack, (s + 1) * per_stack)
            actions[rows] = agent.act(_rows_of(obs, rows), _rows_of(info, rows)).actions
        obs, _, terminated, truncated, info = env.step(actions)
        done = np.asarray(terminated | truncated, dtype=bool)
        vx = target_velocity(info["gt_objects"], info["gt_valid"], 1)
        for i in np.flatnonzero(~ended):
            records[i].extend(info["ticks"][i])
            substeps[i].extend(info["substeps"][i])
            _observe_test(outcomes[i], point_of[i], float(obs["ego"][i, 0]), float(vx[i]),
                          bool(info["crashed"][i]), float(info["time_s"][i]),
                          float(info["hazard"]["onset_s"][i]))
            if done[i]:
                onset_s[i] = float(info["hazard"]["onset_s"][i])
        ended |= done
        if progress is not None:
            progress(int(ended.sum()), worlds)
        if done.any() and not ended.all():
            replay = [inits[i] if done[i] else None for i in range(worlds)]
            new_obs, new_info = env.reset(options={"scenario_inits": replay,
                                                   "reset_mask": done.copy()})
            obs = merge_obs(obs, new_obs, done)
            info = merge_info(info, new_info, done)
            for s, agent in enumerate(agents):
                agent.reset(done[s * per_stack:(s + 1) * per_stack])
    env.close()
    rows = []
    for s, stack in enumerate(stacks):
        for p, point in enumerate(points):
            world = s * per_stack + 2 * p
            outcome = outcomes[world]
            end = substeps[world][-1].time_s if substeps[world] else 0.0
            twin_end = substeps[world + 1][-1].time_s if substeps[world + 1] else 0.0
            reaction = counterfactual_reaction(records[world], records[world + 1],
                                               onset_s[world], end, twin_end, config.reaction)
            outcome.reaction_time_s = reaction.total_s if reaction else math.nan
            rows.append(_row(stack, point, outcome, onset_s[world]))
    return rows


def _observe_test(outcome: PointOutcome, point: GridPoint, speed_mps: float, target_vx: float,
                  crashed: bool, time_s: float, onset_s: float) -> None:
    """Update a hazard world's outcome after a tick (twins are observed too, harmlessly)."""
    if outcome.test_over:
        return
    if crashed:
        outcome.collided = True
        closing = speed_mps - (0.0 if math.isnan(target_vx) else target_vx)
        outcome.impact_speed_kph = max(0.0, closing) / KPH
        outcome.test_over = True
    elif point.ends_when_slower and time_s >= onset_s - TIME_EPS_S and ncap_test_over(
            speed_mps, target_vx):
        outcome.test_over = True


BASE_COLUMNS = ("stack", "suite", "test", "point", "ego_speed_kph")
OUTCOME_COLUMNS = ("hazard_onset_s", "collided", "impact_speed_kph", "reaction_time_s",
                   "score")


def result_columns(points: Sequence[GridPoint]) -> list[str]:
    """`protocol.csv`'s columns: the base ones, every parameter of the points (in order of
    first appearance), the outcomes."""
    parameters: list[str] = []
    for point in points:
        parameters += [name for name in point.parameters if name not in parameters]
    return [*BASE_COLUMNS, *parameters, *OUTCOME_COLUMNS[:-1], "score"]


def _row(stack: str, point: GridPoint, outcome: PointOutcome, onset_s: float) -> dict:
    return {"stack": stack, "suite": point.suite, "test": point.test, "point": point.point,
            "ego_speed_kph": point.ego_speed_kph, **dict(point.parameters),
            "hazard_onset_s": onset_s if math.isfinite(onset_s) else math.nan,
            "collided": outcome.collided, "impact_speed_kph": outcome.impact_speed_kph,
            "reaction_time_s": outcome.reaction_time_s, "score": math.nan}


def _scored(frame: pd.DataFrame, suite: str) -> pd.DataFrame:
    """`frame` with its `score` column: Euro NCAP's impact-speed bands, or R157's rule
    against the reference driver's row of the same point (NaN where no reference ran)."""
    if suite == "ncap-ccr":
        frame["score"] = [impact_score(test, speed, impact) for test, speed, impact in zip(
            frame["test"], frame["ego_speed_kph"], frame["impact_speed_kph"])]
        return frame
    reference = frame[frame["stack"] == REFERENCE_STACK].set_index("point")["collided"]
    frame["score"] = [r157_score(bool(collided), bool(reference[point])
                                 if point in reference.index else None)
                      for point, collided in zip(frame["point"], frame["collided"])]
    return frame
