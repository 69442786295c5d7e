"""The one rollout loop: a vector env driven tick by tick, episodes fed from a seed queue.

Every driver of a vector env in the app layer uses it: `reflexdrive run` (the runner), the
video recorder, expert-data collection for imitation and detector-data generation. The loop
owns what they share:

- **seeds**: each env slot takes the next item of a queue when its episode ends (lowest
  slot first); the item's scenario seed goes to that slot's `reset`. A slot whose queue is
  empty goes **idle**: it is reset too (a vector env with autoreset off cannot step an
  ended env) and replays a seed nobody records;
- **resets**: one `reset(seed=[...], options={"reset_mask": mask})` of the ended envs
  (the first reset masks every env); the rows it returns are merged into the loop's whole
  `obs` and `info` (Gymnasium's vector envs return only the reset rows);
- **steps**: `decide(obs, info)` returns the actions (or a `Decision`, whose measured stage
  latencies are handed to the env first when `report_latency` is set), the env steps, and
  the step is yielded to the caller **before** the ended envs are reset;
- **bookkeeping**: per slot the episode it plays (`Episode`: queue item, seed, start speed,
  ticks stepped, and the clock's tick records and substep outcomes where the env reports
  them), and the arrays `live`, `seeds`, `ticks` for vectorised callers.

**Twins** (`twins=True`, for the counterfactual reaction time): the env has `2n` slots and
slot `n + i` plays the hazard-removed twin of whatever slot `i` plays (the env makes it so,
e.g. `BatchedDrivingEnv(counterfactual=...)`). Only the first `n` slots take queue items;
a twin is reset with its slot's seed whenever its slot is, and both step together, so
they see the same latency draws (even `measured` ones: one decision's latency goes to
every env). A twin that ends first is reset and replayed unrecorded until its slot's
episode ends; its records stop where it ended (`Episode.twin`).

The loop ends when every slot is idle (before resetting them), or when `decide` returns
None. Nothing here draws a random number: the same queue gives the same seeds to the same
slots in the same order, whatever the caller does per tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from reflexdrive.agents.base import Decision
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.run.metrics import EpisodeMetrics, ReactionConfig, episode_metrics

IDLE_SEEDS = ("zero", "last")
"""What an idle slot replays: scenario seed 0, or its last episode's seed (0 if none)."""


@dataclass
class Episode:
    """The episode one env slot plays and what has been recorded of it so far.

    Attributes:
        item: the queue item it came from (e.g. the runner's `(episode index, seed)`).
        seed: its scenario seed.
        start_speed_mps: the ego's speed in the first observation [m/s].
        ticks: env steps taken in it so far.
        records: the clock's `TickRecord`s (envs that report `info["ticks"]`).
        substeps: the `SubstepOutcome`s (envs that report `info["substeps"]`).
        twin: the hazard-removed twin's recording (a rollout with `twins=True`), else None.
        ended: the episode has ended (a twin may end before its episode).
    """

    item: Any
    seed: int
    start_speed_mps: float = 0.0
    ticks: int = 0
    records: list = field(default_factory=list)
    substeps: list = field(default_factory=list)
    twin: "Episode | None" = None
    ended: bool = False

    @property
    def end_s(self) -> float:
        """The time its last recorded substep ended [s] (0 before any)."""
        return self.substeps[-1].time_s if self.substeps else 0.0

    @property
    def reached_records(self) -> list:
        """The tick records of the ticks the world reached (before `end_s`)."""
        return [r for r in self.records if r.t_s < self.end_s - 1e-9]

    def metrics(self, hazard: Mapping[str, Any], substep_s: float,
                config: ReactionConfig = ReactionConfig()) -> EpisodeMetrics:
        """The episode's `EpisodeMetrics`, its twin's records giving the counterfactual
        reaction. `hazard`: its `info["hazard"]` entries at the end (`onset_s` and the
        `CRITICALITY_KEYS` known; `info_at` reads them from a batched info)."""
        twin = self.twin
        return episode_metrics(
            self.reached_records, self.substeps, float(hazard["onset_s"]),
            self.start_speed_mps, substep_s, config,
            twin_records=None if twin is None else twin.reached_records,
            twin_end_s=twin.end_s if twin is not None and twin.ended else math.inf,
            criticality=hazard)


@dataclass
class Step:
    """One env step, as yielded by `Rollout.steps` (valid until the next one is asked for:
    the reset that follows writes into `obs` and `info`).

    Attributes:
        prior_obs: the observation `decide` saw.
        actions: the actions stepped, `(N, 2)`.
        obs, info: what the step returned (before any reset).
        terminated, truncated, done: `(N,)` bool; `done = terminated | truncated`.
        live: `(N,)` bool, the slots whose episode is recorded (not idle) during the step.
        ticks: `(N,)` int64, each slot's tick index of this step within its episode.
        finished: `(slot, Episode)` of the live slots whose episode ended at this step.
    """

    prior_obs: dict
    actions: np.ndarray
    obs: dict
    info: dict
    terminated: np.ndarray
    truncated: np.ndarray
    done: np.ndarray
    live: np.ndarray
    ticks: np.ndarray
    finished: list[tuple[int, Episode]]


def merge_info(current: dict, new: dict, mask: np.ndarray) -> dict:
    """Overwrite the rows `mask` of a batched vector-env info with those of `new` (rows a
    `_key` mask marks absent are kept); nested dicts alike. Returns `current`."""
    for key, value in new.items():
        if key.startswith("_"):
            continue
        rows = mask & np.asarray(new.get("_" + key, mask), dtype=bool)
        if isinstance(value, dict):
            current[key] = merge_info(current.get(key, {}), value, rows)
        elif key not in current:
            current[key] = value.copy()
        else:
            current[key][rows] = value[rows]
    return current


def info_at(info: Mapping[str, Any], index: int, keys: Iterable[str]) -> dict:
    """The entries `keys` of env `index` in a batched vector-env info; keys missing, or
    marked absent for that env by their `_key` mask (Gymnasium's vector envs fill such rows
    with placeholders), are left out."""
    out = {}
    for key in keys:
        if key in info and ("_" + key not in info or bool(info["_" + key][index])):
            out[key] = info[key][index]
    return out


def merge_obs(current: dict, new: dict, mask: np.ndarray) -> dict:
    """Overwrite the rows `mask` of every array of a batched observation with `new`'s."""
    for key, value in new.items():
        current[key][mask] = value[mask]
    return current


def report_latency(env: Any, stage_latency_s: Mapping[str, float]) -> None:
    """Hand a batched decision's measured stage latencies [s] to every env of `env` (a
    `BatchedDrivingEnv` takes them itself; a Gymnasium vector env passes them on)."""
    if isinstance(env, BatchedDrivingEnv):
        env.report_latency(stage_latency_s)
    else:
        env.call("report_latency", stage_latency_s)


class Rollout:
    """A vector env (autoreset disabled) playing the episodes of a queue; see the module
    docstring. A context manager: the env is closed on exit.

    Args:
        env: the vector env, `N = env.num_envs` slots.
        items: the queue: one item per episode, in order.
        seed_of: an item's scenario seed (default `int(item)`).
        idle_seed: what an idle slot replays (`IDLE_SEEDS`).
        twins: the second half of the env's slots plays the first half's twins (see the
            module docstring); `N` must be even.

    Attributes:
        live: `(N,)` bool, the slot plays a queued episode.
        seeds: `(N,)` int64, the scenario seed each slot was last reset with.
        ticks: `(N,)` int64, steps taken in each slot's current episode.
        episodes: per slot its `Episode`, None while idle.
        obs, info: the whole current observation and info (what `decide` gets next).
    """

    def __init__(self, env: Any, items: Iterable, *, seed_of: Callable[[Any], int] = int,
                 idle_seed: str = "last", twins: bool = False):
        if idle_seed not in IDLE_SEEDS:
            raise ValueError(f"idle_seed={idle_seed!r} is invalid: allowed values are "
                             + ", ".join(IDLE_SEEDS))
        self.env = env
        self.num_envs = int(env.num_envs)
        self.twins = bool(twins)
        if self.twins and self.num_envs % 2:
            raise ValueError(f"a rollout with twins needs an even number of envs, got "
                             f"{self.num_envs}")
        self.slots = self.num_envs // 2 if self.twins else self.num_envs
        """Slots that take queue items (the first half with twins)."""
        self._queue = iter(items)
        self._exhausted = False
        self.seed_of = seed_of
        self.idle_seed = idle_seed
        self.live = np.zeros(self.num_envs, dtype=bool)
        self.seeds = np.full(self.num_envs, -1, dtype=np.int64)
        self.ticks = np.zeros(self.num_envs, dtype=np.int64)
        self.episodes: list[Episode | None] = [None] * self.num_envs
        self.obs: dict | None = None
        self.info: dict = {}

    def __enter__(self) -> "Rollout":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.env.close()

    def _take(self, mask: np.ndarray) -> None:
        """Give each slot of `mask` the next queued episode, or make it idle; with twins,
        the twin of each such slot follows it, and a twin reset alone replays unrecorded."""
        n = self.slots
        for i in np.flatnonzero(mask[:n]):
            item = None if self._exhausted else next(self._queue, _END)
            self._exhausted = self._exhausted or item is _END
            if self._exhausted:
                self.live[i] = False
                self.episodes[i] = None
                self.seeds[i] = 0 if self.idle_seed == "zero" else max(int(self.seeds[i]), 0)
            else:
                seed = int(self.seed_of(item))
                self.live[i] = True
                self.episodes[i] = Episode(item=item, seed=seed)
                self.seeds[i] = seed
        if self.twins:
            for j in np.flatnonzero(mask[n:]) + n:
                i = j - n
                if mask[i]:
                    self.seeds[j] = self.seeds[i]
                    self.live[j] = self.live[i]
                    if self.live[i]:
                        self.episodes[i].twin = self.episodes[j] = Episode(
                            item=self.episodes[i].item, seed=int(self.seeds[i]))
                    else:
                        self.episodes[j] = None
                else:                                  # the twin ended first: replay it
                    self.live[j] = False
                    self.episodes[j] = None
        self.ticks[mask] = 0

    def _reset(self, mask: np.ndarray) -> None:
        obs, info = self.env.reset(seed=[int(s) for s in self.seeds],
                                   options={"reset_mask": mask.copy()})
        self.obs = obs if self.obs is None else merge_obs(self.obs, obs, mask)
        self.info = merge_info(self.info, info, mask)
        for i in np.flatnonzero(mask & self.live):
            self.episodes[i].start_speed_mps = float(self.obs["ego"][i, 0])

    def steps(self, decide: Callable[[dict, dict], Any], *,
              on_reset: Callable[[dict, dict, np.ndarray], None] | None = None,
              measured: bool = False) -> Iterator[Step]:
        """Play the queue, yielding each `Step` before the envs it ended are reset.

        Args:
            decide: `(obs, info) -> actions (N, 2)`, a `Decision`, or None to stop.
            on_reset: called with `(obs, info, mask)` after each reset (`mask`: the slots
                reset, a copy), e.g. to reset an agent's per-env state.
            measured: hand a `Decision`'s stage latencies to the env before it steps
                (`report_latency`; for the `measured` latency model).
        """
        mask = np.ones(self.num_envs, dtype=bool)
        while True:
            if mask.any():
                self._take(mask)
                if not self.live.any():
                    return
                self._reset(mask)
                if on_reset is not None:
                    on_reset(self.obs, self.info, mask.copy())
            decision = decide(self.obs, self.info)
            if decision is None:
                return
            actions = decision
            if isinstance(decision, Decision):
                actions = decision.actions
                if measured:
                    report_latency(self.env, decision.stage_latency_s)
            prior_obs = self.obs
            obs, _, terminated, truncated, step_info = self.env.step(actions)
            self.obs = obs
            self.info = merge_info(self.info, step_info, np.ones(self.num_envs, dtype=bool))
            done = np.asarray(terminated | truncated, dtype=bool)
            live = self.live.copy()
            finished = []
            for i in np.flatnonzero(live):
                episode = self.episodes[i]
                episode.ticks += 1
                if "ticks" in step_info:
                    episode.records.extend(step_info["ticks"][i])
                if "substeps" in step_info:
                    episode.substeps.extend(step_info["substeps"][i])
                episode.ended = bool(done[i])
                if done[i] and i < self.slots:
                    finished.append((int(i), episode))
            step = Step(prior_obs=prior_obs, actions=actions, obs=obs,
                        info=step_info, terminated=terminated, truncated=truncated, done=done,
                        live=live, ticks=self.ticks.copy(), finished=finished)
            self.ticks += 1
            yield step
            mask = done.copy()
            if self.twins:
                mask[self.slots:] |= done[:self.slots]


_END = object()
"""The queue's end marker."""
