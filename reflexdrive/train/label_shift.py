"""Labels for when the command lands: the expert's command on the world the learner's
command will act on (`CollectionConfig.label_shift`).

In realtime mode a decision on the observation of tick `k` (at `t_k = k T`) lands at
`t_k + L_k` (docs/ARCHITECTURE.md, "One tick, precisely"); until then the held command
drives. Labelling frame `k` with the expert's command on the observation of tick `k`
teaches the learner to answer a world that is `L_k` old by the time its answer acts. With
`label_shift="landing"` the label of frame `k` is instead the expert's command on the
observation of tick

    j = k + round(L_k / T)      (halfway: the earlier tick), at most the episode's last tick,

the tick whose start is nearest the landing instant. A landing exactly halfway between two
tick starts takes the earlier one: the last world the expert sees before the command acts
(the later one already holds part of the command's own effect, which in a DAgger round is
the learner's). `L_k` is the frame's recorded `timing[0]` (float32; halfway is judged within
`HALFWAY_TOLERANCE_S`).

The expert labels every tick of an episode, observed or not: `collect_shard` records only
the ticks where the agent observes (sequential mode with `L > T` skips the busy ticks), but
the batched env hands out an observation at every tick and the expert is stepped on each,
so the shift is exact in ticks, not rounded to the recorded frames. Example, `fixed:0.25`
at 10 Hz, sequential: frames at ticks 0, 3, 6, ...; the command of tick 0 lands at 0.25 s,
halfway between tick 2 (0.2 s) and tick 3 (0.3 s): frame 0 is labelled with the expert's
command at tick 2, frame 3 with tick 5's. Lockstep: `L_k = 0` there (`obs["timing"]`), so
"landing" labels are the unshifted ones.
"""

from __future__ import annotations

import numpy as np

LABEL_SHIFTS = ("landing", "none")
"""`landing`: label frame k with the expert's command at the tick nearest its command's
landing; `none`: at tick k itself."""

HALFWAY_TOLERANCE_S = 1e-6
"""A landing within this of halfway between two tick starts counts as halfway [s] (the
float32 rounding of a recorded latency below 60 s is under 4 microseconds)."""


def landing_ticks(ticks: np.ndarray, latency_s: np.ndarray, last_tick: np.ndarray,
                  tick_s: float) -> np.ndarray:
    """The tick whose start is nearest each frame's landing instant (module docstring).

    Args:
        ticks: `(F,)` ints, the frames' ticks `k` within their episodes.
        latency_s: `(F,)` the latencies `L_k` [s] of the decisions on them (>= 0).
        last_tick: `(F,)` ints, the last labelled tick of each frame's episode.
        tick_s: the tick period `T` [s].

    Returns:
        `(F,)` int64: `min(k + round_half_down(L_k / T), last_tick)`.
    """
    latency = np.asarray(latency_s, dtype=np.float64)
    shift = np.ceil((latency - HALFWAY_TOLERANCE_S) / float(tick_s) - 0.5)
    shift = np.maximum(shift, 0.0).astype(np.int64)
    return np.minimum(np.asarray(ticks, dtype=np.int64) + shift,
                      np.asarray(last_tick, dtype=np.int64))


def landing_labels(episode: np.ndarray, tick: np.ndarray, latency_s: np.ndarray,
                   labelled_episode: np.ndarray, labelled_tick: np.ndarray,
                   labels: np.ndarray, tick_s: float) -> np.ndarray:
    """The expert's labels at each frame's landing tick (`landing_ticks`).

    Args:
        episode, tick, latency_s: `(F,)` the frames' episode ids, ticks and latencies [s].
        labelled_episode, labelled_tick: `(N,)` every tick the expert labelled: each
            episode's ticks 0, 1, ..., its last, each once (any order).
        labels: `(N, 2)` the expert's commands at those ticks.
        tick_s: the tick period `T` [s].

    Returns:
        `(F, 2)` the labels, dtype of `labels`.

    Raises:
        ValueError: a frame's episode or landing tick was not labelled (the expert must
            label every tick of an episode).
    """
    order = np.lexsort((labelled_tick, labelled_episode))
    episodes, ticks = labelled_episode[order], labelled_tick[order]
    labels = labels[order]
    ids, first, counts = np.unique(episodes, return_index=True, return_counts=True)
    position = np.searchsorted(ids, episode)
    if (position >= len(ids)).any() or not np.array_equal(ids[np.minimum(
            position, len(ids) - 1)], episode):
        raise ValueError("a frame's episode has no expert labels")
    last = ticks[first + counts - 1]
    if not np.array_equal(ticks[first + counts - 1] - ticks[first], counts - 1) \
            or (ticks[first] != 0).any():
        raise ValueError("the expert's labels must cover ticks 0..last of every episode")
    target = landing_ticks(tick, latency_s, last[position], tick_s)
    return labels[first[position] + target]
