"""Latency models: how long the agent's compute took at each decision, per stage [s].

The clock (docs/ARCHITECTURE.md, "One tick, precisely") charges every decision its
compute time `L_k`: in realtime mode the world keeps moving for `L_k` seconds before the
new command lands. A model says where `L_k` comes from (`spec.parse_latency` builds one
from a `ClockConfig.latency` string):

- `FixedLatency`: constants. Deterministic; for tests and what-if studies ("what if
  planning took 40 ms?").
- `ProfileLatency`: per-stage latencies replayed from a profile file recorded on real
  hardware at batch size 1 (`profile_file`). Each decision draws one recorded tick (row)
  uniformly with a generator seeded at every env reset, and returns all stages of that
  row together, so the correlation between stages is kept. Large batched simulations
  thus replay a car computer's latency deterministically.
- `MeasuredLatency`: the wall clock. Either the runner times the agent's stages itself
  and passes them to `sample(reported)`, or the model measures the time from handing out
  the observation to the decision (CUDA-synchronised when torch has initialised CUDA).
  Right for batch size 1 on the target machine; noisy.
- `ScaledLatency`: a base model's stages, each multiplied by a constant `K` (a `*K` spec
  suffix: the same stack on a computer K times slower, or faster for K < 1).
- `ShiftedLatency`: a base model's stages plus one more, "extra", a constant delay added
  once to every decision (a `+SECONDS` spec suffix). It is part of `L_k` like any stage:
  it delays the command's landing, counts against the budget and can drop frames.
- `EpisodeExtraLatency`: the same with an extra delay drawn once per episode, uniformly
  in `[low, high]`, from the episode seed (a `+LOW..HIGH` suffix): training over a
  latency distribution.

Every model returns a fresh `dict` stage -> seconds from `sample()` (one env) and stage ->
`(B,)` float64 array from `sample_batch()` (a batch of `B` envs, the vector env's one call
whatever the model); the decision's total latency is the sum over stages. A model without
stages uses the single stage "total"; "total" is therefore reserved and cannot be combined
with other stage names ("extra" is appended after them, and is reserved in the same places
when a suffix is given).
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import time
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from reflexdrive.envs.latency.errors import (
    EXTRA_STAGE,
    MAX_LATENCY_SCALE,
    SECONDS_ALLOWED,
    STAGE_NAME_RE,
    TOTAL_STAGE,
    LatencySpecError,
    check_seconds,
    check_total_alone,
)
from reflexdrive.envs.latency.profile_file import load_profile

from reflexdrive.common.validation import ConfigError

# --------------------------------------------------------------------------- protocol


@runtime_checkable
class LatencyModel(Protocol):
    """Says how long the agent's compute took for each decision, per stage [s].

    Attributes:
        spec: the spec string the model was built from, e.g. "fixed:0.03".
        deterministic: True when the latencies do not depend on the machine (fixed,
            profile); a seeded `reset` then gives the same sequence every run.
    """

    spec: str
    deterministic: bool

    def reset(self, seed: int | None) -> None:
        """Start an episode; called at every env reset. Profile sampling is reseeded here."""
        ...

    def sample(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """Per-stage latencies [s] of the decision being made now; total = sum of values.

        Args:
            reported: per-stage latencies [s] the runner measured itself; used by
                `measured`, ignored by the other models.
        """
        ...

    def mark_observation_returned(self) -> None:
        """Note that the env has just handed an observation to the agent."""
        ...

    def reset_batch(self, mask: np.ndarray, seeds: Sequence[int]) -> None:
        """Start episodes in the rows of a batch of `B` envs: `reset` for each row.

        Args:
            mask: `(B,)` bool, the rows starting a new episode.
            seeds: `B` ints; row `i`'s draws are seeded with `seeds[i]` where `mask[i]`.
        """
        ...

    def sample_batch(self, observing: np.ndarray,
                     reported: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
        """Per-stage latencies [s] of this tick's decisions in a batch of `B` envs: stage ->
        `(B,)` float64 array, in the stage order of `sample`.

        Row `i` draws exactly what `sample` would draw for env `i` (each row its own
        stream, seeded by `reset_batch`). Rows where `observing` is False draw nothing;
        their values are placeholders the clock ignores.

        Args:
            observing: `(B,)` bool, the rows whose agent decides at this tick.
            reported: per-stage latencies [s] the runner measured for the whole batch;
                used by `measured`, ignored by the other models.
        """
        ...


# --------------------------------------------------------------------------- fixed


class FixedLatency:
    """Constant per-stage latencies [s]; `fixed:SECONDS` uses the single stage "total".

    Attributes:
        spec: the spec string it was built from.
        deterministic: True.
        latencies: read-only stage -> seconds.
    """

    deterministic = True

    def __init__(self, latencies: Mapping[str, float], spec: str | None = None):
        """Args:
            latencies: stage -> seconds, each finite and in [0, 60).
            spec: the spec string; built from `latencies` when None.
        """
        shown = spec if spec is not None else dict(latencies)
        if not latencies:
            raise LatencySpecError(shown, "no stages given")
        clean: dict[str, float] = {}
        for name, value in latencies.items():
            if not isinstance(name, str) or not STAGE_NAME_RE.match(name):
                raise LatencySpecError(shown, f"stage name {name!r} must be an identifier "
                                       "(letters, digits, underscores)")
            problem = check_seconds(value)
            if problem:
                raise LatencySpecError(shown, f"latency of stage {name!r} = {value!r} {problem} "
                                       f"({SECONDS_ALLOWED})")
            clean[name] = float(value)
        check_total_alone(list(clean), lambda why: LatencySpecError(shown, why))
        if spec is None:
            spec = "fixed:" + ",".join(f"{k}={v!r}" for k, v in clean.items())
        self.spec = spec
        self.latencies: Mapping[str, float] = MappingProxyType(clean)

    def reset(self, seed: int | None) -> None:
        """Nothing to reset: the latencies are constants."""

    def sample(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """The constant per-stage latencies [s] (`reported` is ignored)."""
        return dict(self.latencies)

    def mark_observation_returned(self) -> None:
        """Nothing to note: the latencies are constants."""

    def reset_batch(self, mask: np.ndarray, seeds: Sequence[int]) -> None:
        """Nothing to reset: the latencies are constants."""

    def sample_batch(self, observing: np.ndarray,
                     reported: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
        """The constant per-stage latencies [s] in every row: stage -> `(B,)` float64."""
        count = len(observing)
        return {name: np.full(count, value, dtype=np.float64)
                for name, value in self.sample().items()}

    def __repr__(self) -> str:
        return f"FixedLatency({dict(self.latencies)!r})"


# --------------------------------------------------------------------------- profile


class ProfileLatency:
    """Per-stage latencies [s] replayed from a recorded profile, seeded.

    Each `sample()` draws one recorded tick (row) uniformly at random and returns every
    stage's latency at that row, keeping the correlation between stages. `reset(seed)`
    reseeds the generator with `np.random.default_rng(seed)`: the same seed gives the same
    sequence. Before the first reset the generator is seeded with 0.

    `sample_batch` keeps one generator per batch row, reseeded by `reset_batch` with the
    row's episode seed: row `i` draws what a `ProfileLatency` reset with that seed would.

    Attributes:
        spec: the spec string it was built from.
        deterministic: True.
        path: the resolved profile file.
        profile: the validated `LatencyProfile`.
    """

    deterministic = True

    def __init__(self, path: str | os.PathLike, spec: str | None = None):
        """Load and validate the profile at `path` (raises `ProfileError`)."""
        self.path = Path(path)
        self.spec = f"profile:{path}" if spec is None else spec
        self.profile = load_profile(self.path)
        self._names = tuple(self.profile.stages)
        self._table = self.profile.as_array()
        self._rng = np.random.default_rng(0)
        self._row_rngs: list[np.random.Generator] = []

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The profile's stages, in the column order of `table`."""
        return self._names

    @property
    def table(self) -> np.ndarray:
        """`(rows, stages)` recorded latencies [s]; one row per recorded tick (read only)."""
        return self._table

    def reset(self, seed: int | None) -> None:
        """Reseed the row sampler with `np.random.default_rng(seed)`."""
        self._rng = np.random.default_rng(seed)

    def sample(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """One recorded tick's per-stage latencies [s] (`reported` is ignored)."""
        row = self._table[int(self._rng.integers(self._table.shape[0]))]
        return {name: float(value) for name, value in zip(self._names, row)}

    def mark_observation_returned(self) -> None:
        """Nothing to note: latencies come from the profile."""

    def _batch_rngs(self, count: int) -> list[np.random.Generator]:
        """The `count` row generators (each seeded with 0 until its row is reset)."""
        if len(self._row_rngs) != count:
            self._row_rngs = [np.random.default_rng(0) for _ in range(count)]
        return self._row_rngs

    def reset_batch(self, mask: np.ndarray, seeds: Sequence[int]) -> None:
        """Reseed row `i`'s sampler with `np.random.default_rng(seeds[i])` where `mask`."""
        rngs = self._batch_rngs(len(mask))
        for i in np.flatnonzero(mask):
            rngs[i] = np.random.default_rng(seeds[i])

    def sample_batch(self, observing: np.ndarray,
                     reported: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
        """One recorded tick per observing row, drawn from that row's generator: stage ->
        `(B,)` float64 [s]. Rows not observing draw nothing and hold row 0 of the table."""
        rngs = self._batch_rngs(len(observing))
        rows = np.zeros(len(observing), dtype=np.int64)
        for i in np.flatnonzero(observing):                      # each row its own stream
            rows[i] = int(rngs[i].integers(self._table.shape[0]))
        values = self._table[rows]                               # (B, stages)
        return {name: values[:, j] for j, name in enumerate(self._names)}

    def __repr__(self) -> str:
        return f"ProfileLatency({str(self.path)!r}, rows={self._table.shape[0]})"


# --------------------------------------------------------------------------- measured


class MeasuredLatency:
    """Wall-clock latencies [s] of the agent actually computing.

    `sample(reported)` returns the runner's own per-stage timings when it passes them
    (validated: finite, >= 0). Otherwise it returns {"total": seconds since the last
    `mark_observation_returned()`}, read with `time.perf_counter_ns` after a
    `torch.cuda.synchronize()` when torch is imported and has initialised CUDA (so GPU
    work the agent launched is counted). Without a mark since the last reset it returns
    {"total": 0.0}. Torch is never imported by this class.

    Attributes:
        spec: "measured".
        deterministic: False.
    """

    deterministic = False

    def __init__(self, spec: str = "measured"):
        self.spec = spec
        self._mark_ns: int | None = None

    def reset(self, seed: int | None) -> None:
        """Forget the last mark (a new episode starts)."""
        self._mark_ns = None

    def mark_observation_returned(self) -> None:
        """Start timing: the agent has just been given an observation."""
        self._mark_ns = time.perf_counter_ns()

    def sample(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """The decision's per-stage latencies [s]: `reported` if non-empty, else the time
        since the last mark.

        Raises:
            ConfigError: a reported stage name is not a non-empty string or its value is
                not a finite number >= 0, or "total" is mixed with other stages.
        """
        if reported:
            return _validate_reported(reported)
        if self._mark_ns is None:
            return {TOTAL_STAGE: 0.0}
        synchronize_cuda()
        elapsed_ns = time.perf_counter_ns() - self._mark_ns
        return {TOTAL_STAGE: max(0, elapsed_ns) / 1e9}

    def reset_batch(self, mask: np.ndarray, seeds: Sequence[int]) -> None:
        """Nothing to reset: a batch is timed by its runner (`reported`)."""

    def sample_batch(self, observing: np.ndarray,
                     reported: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
        """The runner's `reported` per-stage latencies [s] in every row (validated as by
        `sample`), else {"total": 0} (a batch has no per-row wall clock): stage -> `(B,)`."""
        values = self.sample(reported) if reported else {TOTAL_STAGE: 0.0}
        count = len(observing)
        return {name: np.full(count, value, dtype=np.float64) for name, value in values.items()}

    def __repr__(self) -> str:
        return "MeasuredLatency()"


def _validate_reported(reported: Mapping[str, float]) -> dict[str, float]:
    result: dict[str, float] = {}
    for name, value in reported.items():
        if not isinstance(name, str) or not name:
            raise ConfigError("reported latency stage", name, "must be a non-empty string")
        if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                or not math.isfinite(float(value)) or float(value) < 0.0):
            raise ConfigError(f"reported latency[{name}]", value,
                              "must be a finite number of seconds >= 0")
        result[name] = float(value)
    check_total_alone(list(result), lambda why: ConfigError(
        "reported latency", dict(reported), why))
    return result


def synchronize_cuda() -> None:
    """Wait for queued CUDA work if torch is already imported and CUDA is initialised."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_available() and cuda.is_initialized():
        cuda.synchronize()


# --------------------------------------------------------------------------- scaled


class _WrappedLatency:
    """A latency model around a `base` model (`ScaledLatency`, `ShiftedLatency`): resets,
    the observation mark and `deterministic` are the base model's; subclasses change what
    `sample` / `sample_batch` return."""

    def __init__(self, base: LatencyModel, spec: str):
        self.base = base
        self.spec = spec
        self.deterministic = base.deterministic

    def reset(self, seed: int | None) -> None:
        """Reset the base model."""
        self.base.reset(seed)

    def mark_observation_returned(self) -> None:
        """Pass the mark to the base model."""
        self.base.mark_observation_returned()

    def reset_batch(self, mask: np.ndarray, seeds: Sequence[int]) -> None:
        """Reset the base model's rows."""
        self.base.reset_batch(mask, seeds)


class ScaledLatency(_WrappedLatency):
    """A base model's per-stage latencies, each multiplied by a constant `scale` (`K`).

    Built from a spec with a `*K` suffix (`profile:p.json*2`, `measured*0.5`): the same
    stack on a computer K times slower (K > 1) or faster (K < 1). Stage names are the base
    model's, so per-stage budgets and columns keep their meaning; `sample()` returns
    `{stage: base value * K}` (`sample_batch`: row by row, the base's draws scaled).
    Resets, marks and `reported` timings go to the base model. A `+SECONDS` suffix wraps
    the scaled model (`ShiftedLatency`): `SPEC*K+S` charges `base * K + S`.

    Attributes:
        spec: the whole spec string, suffix included.
        deterministic: the base model's.
        base: the base latency model (not itself scaled or shifted).
        scale: `K`, in (0, MAX_LATENCY_SCALE].
    """

    def __init__(self, base: LatencyModel, scale: float, spec: str | None = None):
        shown = spec if spec is not None else f"{base.spec}*{scale!r}"
        if isinstance(base, (ScaledLatency, ShiftedLatency, EpisodeExtraLatency)):
            raise LatencySpecError(shown, "only one *K scale is allowed, before any "
                                   "+SECONDS: SPEC*K+SECONDS")
        if (isinstance(scale, bool) or not isinstance(scale, numbers.Real)
                or not math.isfinite(float(scale)) or not 0.0 < float(scale)
                <= MAX_LATENCY_SCALE):
            raise LatencySpecError(shown, f"scale *{scale!r} must be a number K with "
                                   f"0 < K <= {MAX_LATENCY_SCALE:g} (a computer K times "
                                   "slower)")
        super().__init__(base, shown)
        self.scale = float(scale)

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The base model's declared stages (empty for measured: they come with the
        timings)."""
        return declared_stages(self.base)

    def sample(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """The base model's per-stage latencies [s], each times `scale`."""
        return {name: value * self.scale for name, value in self.base.sample(reported).items()}

    def sample_batch(self, observing: np.ndarray,
                     reported: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
        """The base model's per-stage `(B,)` latencies [s], each times `scale`."""
        return {name: values * self.scale
                for name, values in self.base.sample_batch(observing, reported).items()}

    def __repr__(self) -> str:
        return f"ScaledLatency({self.base!r}, scale={self.scale!r})"


def declared_stages(model: LatencyModel) -> tuple[str, ...]:
    """The stage names a model declares up front (fixed, profile, and those wrapped in a
    scale); empty for measured latency, whose stages come with the runner's timings."""
    if isinstance(model, FixedLatency):
        return tuple(model.latencies)
    if isinstance(model, (ProfileLatency, ScaledLatency)):
        return tuple(model.stage_names)
    return ()


# --------------------------------------------------------------------------- shifted


class _ExtraDelayLatency(_WrappedLatency):
    """A base model's stages plus the stage "extra" [s]; subclasses say what the extra is
    (`extra_s` for `sample`, `_extra_rows(count)` for `sample_batch`)."""

    extra_s: float

    def _extra_rows(self, count: int) -> np.ndarray:
        raise NotImplementedError

    def sample(self, reported: Mapping[str, float] | None = None) -> dict[str, float]:
        """The base model's per-stage latencies [s], then "extra".

        Raises:
            ConfigError: the base model's stages (e.g. `reported` ones) include "extra".
        """
        stages = self.base.sample(reported)
        _check_no_extra(stages, sorted(stages))
        stages[EXTRA_STAGE] = self.extra_s
        return stages

    def sample_batch(self, observing: np.ndarray,
                     reported: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
        """The base model's per-stage `(B,)` latencies [s], then "extra" per row.

        Raises:
            ConfigError: the base model's stages (e.g. `reported` ones) include "extra".
        """
        stages = self.base.sample_batch(observing, reported)
        _check_no_extra(stages, sorted(stages))
        stages[EXTRA_STAGE] = self._extra_rows(len(observing))
        return stages


class ShiftedLatency(_ExtraDelayLatency):
    """A base model's latencies plus a constant extra delay, the stage "extra" [s].

    Built from a spec with a `+SECONDS` suffix (`measured+0.1`, `fixed:0.03+0.05`,
    `profile:p.json+0.2`, after a scale: `profile:p.json*2+0.2`). `sample()` returns
    the base model's stages, then
    `{"extra": extra_s}`: the decision's total `L_k` grows by exactly `extra_s`, once per
    decision (`sample_batch`: in every row). Resets, marks and `reported` timings go to
    the base model.

    Attributes:
        spec: the whole spec string, suffix included.
        deterministic: the base model's.
        base: the base latency model (possibly a `ScaledLatency`, never a shifted one).
        extra_s: the extra delay [s], in [0, 60).
    """

    def __init__(self, base: LatencyModel, extra_s: float, spec: str | None = None):
        shown = spec if spec is not None else f"{base.spec}+{extra_s!r}"
        if isinstance(base, (ShiftedLatency, EpisodeExtraLatency)):
            raise LatencySpecError(shown, "only one +SECONDS suffix is allowed")
        problem = check_seconds(extra_s)
        if problem:
            raise LatencySpecError(shown, f"extra delay {extra_s!r} {problem} "
                                   f"({SECONDS_ALLOWED})")
        if EXTRA_STAGE in declared_stages(base):
            raise LatencySpecError(shown, f"stage name {EXTRA_STAGE!r} is reserved for the "
                                   "+SECONDS extra delay")
        super().__init__(base, shown)
        self.extra_s = float(extra_s)

    def _extra_rows(self, count: int) -> np.ndarray:
        """`(count,)` copies of the constant extra delay [s]."""
        return np.full(count, self.extra_s, dtype=np.float64)

    def __repr__(self) -> str:
        return f"ShiftedLatency({self.base!r}, extra_s={self.extra_s!r})"


# --------------------------------------------------------------------------- drawn extra

EXTRA_DRAW_STREAM = 1_800
"""Second entropy word of the generator that draws an episode's extra delay:
`np.random.default_rng([seed, EXTRA_DRAW_STREAM])`, a stream apart from the profile rows'
`default_rng(seed)` (the same seed there would tie the extra to the first row drawn)."""


def draw_episode_extra(seed: int | None, low_s: float, high_s: float) -> float:
    """The extra delay [s] of the episode seeded `seed`: `np.random.default_rng([seed,
    EXTRA_DRAW_STREAM]).uniform(low_s, high_s)` (numpy's documented draw, in
    `[low_s, high_s)`; `low_s` when they are equal). `seed=None`: fresh OS entropy."""
    rng = np.random.default_rng(None if seed is None else [int(seed), EXTRA_DRAW_STREAM])
    return float(rng.uniform(low_s, high_s))


class EpisodeExtraLatency(_ExtraDelayLatency):
    """A base model's latencies plus an extra delay drawn once per episode, the stage
    "extra" [s].

    Built from a spec with a `+LOW..HIGH` suffix (`fixed:0.03+0..0.3`,
    `profile:p.json+0..0.3`, `profile:p.json*2+0.05..0.3`): every episode charges each
    decision the base model's stages plus one extra delay `draw_episode_extra(seed, low,
    high)`, drawn at `reset(seed)` from the episode seed alone, so it is deterministic,
    the same on both backends and for an episode's hazard-removed twin (same seed), and
    shown in `obs["timing"][0]` with the rest of `L_k`. Made for training over a latency
    distribution (a policy's own profile plus 0-300 ms); a measurement sweeps constant
    extra delays instead (`reflexdrive compare --extra-latency`).

    `reset_batch(mask, seeds)` draws row `i`'s extra from `seeds[i]`: row `i` of
    `sample_batch` is what a model reset with that seed samples. Before its first reset
    an env (a row) uses the draw of seed 0.

    Attributes:
        spec: the whole spec string, suffix included.
        deterministic: the base model's.
        base: the base latency model (possibly a `ScaledLatency`, never a shifted one).
        low_s, high_s: the range [s], `0 <= low_s <= high_s < 60`.
        extra_s: the current episode's extra delay [s] (one env).
    """

    def __init__(self, base: LatencyModel, low_s: float, high_s: float,
                 spec: str | None = None):
        shown = spec if spec is not None else f"{base.spec}+{low_s!r}..{high_s!r}"
        if isinstance(base, (ShiftedLatency, EpisodeExtraLatency)):
            raise LatencySpecError(shown, "only one +SECONDS or +LOW..HIGH suffix is allowed")
        for name, value in (("low", low_s), ("high", high_s)):
            problem = check_seconds(value)
            if problem:
                raise LatencySpecError(shown, f"extra delay range: {name} {value!r} {problem} "
                                       f"({SECONDS_ALLOWED}; +LOW..HIGH with LOW <= HIGH)")
        if not float(low_s) <= float(high_s):
            raise LatencySpecError(shown, f"extra delay range {low_s!r}..{high_s!r}: LOW must "
                                   "not exceed HIGH (+LOW..HIGH seconds, e.g. +0..0.3)")
        if EXTRA_STAGE in declared_stages(base):
            raise LatencySpecError(shown, f"stage name {EXTRA_STAGE!r} is reserved for the "
                                   "+LOW..HIGH extra delay")
        super().__init__(base, shown)
        self.low_s = float(low_s)
        self.high_s = float(high_s)
        self.extra_s = draw_episode_extra(0, self.low_s, self.high_s)
        self._row_extra = np.zeros(0, dtype=np.float64)

    def reset(self, seed: int | None) -> None:
        """Reset the base model and draw this episode's extra delay from `seed`."""
        self.base.reset(seed)
        self.extra_s = draw_episode_extra(seed, self.low_s, self.high_s)

    def _rows(self, count: int) -> np.ndarray:
        """The `(count,)` per-row extra delays [s] (seed 0's draw until a row is reset)."""
        if len(self._row_extra) != count:
            self._row_extra = np.full(count, draw_episode_extra(0, self.low_s, self.high_s))
        return self._row_extra

    def reset_batch(self, mask: np.ndarray, seeds: Sequence[int]) -> None:
        """Reset the base model's rows `mask` and draw their extra delays from `seeds[i]`."""
        self.base.reset_batch(mask, seeds)
        extra = self._rows(len(mask))
        for i in np.flatnonzero(mask):
            extra[i] = draw_episode_extra(seeds[i], self.low_s, self.high_s)

    def _extra_rows(self, count: int) -> np.ndarray:
        """A copy of each row's drawn extra delay [s], `(count,)`."""
        return self._rows(count).copy()

    def __repr__(self) -> str:
        return (f"EpisodeExtraLatency({self.base!r}, low_s={self.low_s!r}, "
                f"high_s={self.high_s!r})")


def _check_no_extra(stages: Mapping[str, object], shown: object) -> None:
    """Raise ConfigError when a base model's stages (e.g. reported ones) include "extra"."""
    if EXTRA_STAGE in stages:
        raise ConfigError("reported latency", shown, f"stage name {EXTRA_STAGE!r} is "
                          "reserved for the extra delay of a +SECONDS or +LOW..HIGH suffix")
