"""A latency model drawn one decision ahead: the latency an agent will be charged, known
when it is handed the observation (`obs["timing"]`, `envs.clock.timing`).

A deterministic model (fixed, profile, their `*K` / `+SECONDS` forms) draws each decision's
stage latencies from a stream keyed by the episode seed alone (profile: one generator per
env, reseeded at every reset, one draw per decision). Drawing a decision's latencies when
its observation is handed out instead of when the action comes back therefore charges
exactly the same latencies, decision for decision, and lets the env show them to the agent
beforehand. `measured` latency exists only once the agent has acted: it is sampled at the
decision as before, and the latency shown is the previous decision's (0 at an episode's
first tick).

`LatencyLookahead` does this for one env (`envs.clock.ClockWrapper`), `BatchedLatencyLookahead`
for the `B` rows of `envs.gym.vector.BatchedDrivingEnv`, row `i` what the former gives env `i`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from reflexdrive.envs.latency.models import LatencyModel


def total_latency_s(stages: Mapping[str, float]) -> float:
    """`L_k`, the sum of the stage latencies in stage order [s] (as `TickClock.decide`)."""
    return float(sum(stages.values()))


class LatencyLookahead:
    """One env's latency model, drawn one decision ahead where it is deterministic.

    Per episode: `reset(seed)`, then per decision `known_s` (shown with the observation)
    and `take(reported)` (the decision's stage latencies, which also draws the next one's).
    """

    def __init__(self, model: LatencyModel):
        self.model = model
        self._next: dict[str, float] | None = None
        self._last_s = 0.0

    def reset(self, seed: int | None) -> None:
        """Start an episode: reset the model and, deterministic, draw the first decision's."""
        self.model.reset(seed)
        self._last_s = 0.0
        self._next = self.model.sample() if self.model.deterministic else None

    @property
    def known_s(self) -> float:
        """The coming decision's latency [s]: drawn ahead, or (measured) the previous one's."""
        return total_latency_s(self._next) if self._next is not None else self._last_s

    def take(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """The stage latencies [s] of the decision being made now (`reported`: the runner's
        own timings, for `measured`)."""
        if self._next is not None:
            stages, self._next = self._next, self.model.sample()
        else:
            stages = self.model.sample(reported)
        self._last_s = total_latency_s(stages)
        return stages


class BatchedLatencyLookahead:
    """The latency model of `B` envs, drawn one decision ahead per row where deterministic.

    `draw(rows)` draws the coming decision of the rows that will decide next (once per
    decision: a row already drawn keeps its draw), `known_s` is shown with the
    observations, `take(observing, reported)` hands the clock this tick's latencies.
    """

    def __init__(self, model: LatencyModel, batch: int):
        self.model = model
        self._next: dict[str, np.ndarray] | None = None
        self._drawn = np.zeros(batch, dtype=bool)
        self._last_s = np.zeros(batch, dtype=np.float64)

    def reset_batch(self, mask: np.ndarray, seeds: Sequence[int]) -> None:
        """Start episodes in the rows `mask` (`(B,)` bool), seeded with `seeds[i]`."""
        self.model.reset_batch(mask, seeds)
        self._drawn[mask] = False
        self._last_s[mask] = 0.0

    def draw(self, rows: np.ndarray) -> None:
        """Draw the coming decision's latencies of `rows` (`(B,)` bool) not drawn yet
        (deterministic models only)."""
        need = rows & ~self._drawn
        if not self.model.deterministic or not need.any():
            return
        values = self.model.sample_batch(need)
        if self._next is None:
            self._next = {name: np.array(value, dtype=np.float64) for name, value in
                          values.items()}
        else:
            for name, value in values.items():
                self._next[name][need] = value[need]
        self._drawn |= need

    @property
    def known_s(self) -> np.ndarray:
        """`(B,)` float64 [s]: each row's drawn coming latency, else its previous one's."""
        if self._next is None:
            return self._last_s.copy()
        return np.where(self._drawn, _total(self._next), self._last_s)

    def take(self, observing: np.ndarray, reported: Mapping[str, float] | None = None
             ) -> dict[str, np.ndarray]:
        """Stage -> `(B,)` float64 latencies [s] of this tick's decisions in the rows
        `observing` (other rows: placeholders the clock ignores)."""
        if self.model.deterministic:
            self.draw(observing)
            stages = {name: value.copy() for name, value in (self._next or {}).items()}
            if not stages:       # nobody observes and nothing was ever drawn
                stages = self.model.sample_batch(observing, reported)
            self._drawn[observing] = False
        else:
            stages = self.model.sample_batch(observing, reported)
        self._last_s[observing] = _total(stages)[observing]
        return stages


def _total(stages: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per row, the sum of the stage latencies in stage order [s] (`total_latency_s`)."""
    total = np.zeros_like(next(iter(stages.values())), dtype=np.float64)
    for value in stages.values():
        total = total + value
    return total
