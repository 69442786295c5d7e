"""The rollout loop's bookkeeping, on a scripted vector env: seeds from the queue, resets of
ended slots only, and twins that follow their slots (reset together, recorded until they
end, replayed unrecorded after)."""

from __future__ import annotations

import numpy as np
import pytest

from reflexdrive.run.rollout import Rollout


class ScriptedVectorEnv:
    """`num_envs` envs whose episodes last `length(seed, twin)` steps; each step reports the
    slot's seed as its only tick record."""

    def __init__(self, num_envs: int, length, twins: bool = False):
        self.num_envs = num_envs
        self.length = length
        self.twin = np.arange(num_envs) >= num_envs // 2 if twins else np.zeros(num_envs, bool)
        self.seeds = np.zeros(num_envs, dtype=np.int64)
        self.age = np.zeros(num_envs, dtype=np.int64)
        self.resets: list[tuple[int, int]] = []                    # (slot, seed)
        self.closed = False

    def _obs(self):
        return {"ego": np.zeros((self.num_envs, 3), dtype=np.float32)}

    def reset(self, seed, options):
        mask = options["reset_mask"]
        for i in np.flatnonzero(mask):
            self.seeds[i], self.age[i] = seed[i], 0
            self.resets.append((int(i), int(seed[i])))
        return self._obs(), {}

    def step(self, actions):
        assert actions.shape == (self.num_envs, 2)
        self.age += 1
        ends = np.array([self.length(int(s), bool(t)) for s, t in zip(self.seeds, self.twin)])
        done = self.age >= ends
        assert not (self.age > ends).any(), "stepped an ended env"
        ticks = np.empty(self.num_envs, dtype=object)
        for i in range(self.num_envs):
            ticks[i] = [(int(self.seeds[i]), int(self.age[i]))]
        return (self._obs(), np.zeros(self.num_envs), done, np.zeros(self.num_envs, bool),
                {"ticks": ticks})

    def close(self):
        self.closed = True


def play(env, items, **kwargs):
    finished = []
    with Rollout(env, items, **kwargs) as rollout:
        for step in rollout.steps(lambda obs, info: np.zeros((env.num_envs, 2))):
            finished.extend(episode for _, episode in step.finished)
    return finished


def test_queue_items_go_to_the_first_free_slot_and_only_ended_slots_reset():
    env = ScriptedVectorEnv(2, lambda seed, twin: {10: 3, 11: 5, 12: 1, 13: 2}[seed])
    finished = play(env, [10, 11, 12, 13])
    assert [(e.seed, e.ticks) for e in finished] == [(10, 3), (12, 1), (11, 5), (13, 2)]
    assert env.resets[:4] == [(0, 10), (1, 11), (0, 12), (0, 13)]
    assert env.closed


def test_twins_follow_their_slot_and_stop_recording_when_they_end():
    # seed 20: the twin outlives the episode; seed 21: the twin ends after 2 of 6 steps
    lengths = {(20, False): 3, (20, True): 7, (21, False): 6, (21, True): 2}
    env = ScriptedVectorEnv(2, lambda seed, twin: lengths[(seed, twin)], twins=True)
    finished = play(env, [20, 21], twins=True)
    assert [(e.seed, e.ticks) for e in finished] == [(20, 3), (21, 6)]
    first, second = finished
    assert first.twin.seed == 20 and first.twin.ticks == 3 and not first.twin.ended
    assert first.twin.records == [(20, k) for k in (1, 2, 3)]
    assert second.twin.ticks == 2 and second.twin.ended
    assert second.twin.records == [(21, 1), (21, 2)]
    # slot 1 (the twin) is reset with its slot's seed; alone (replayed) each time it ends
    # first: after steps 2 and 4 of seed 21's 6
    assert env.resets == [(0, 20), (1, 20), (0, 21), (1, 21), (1, 21), (1, 21)]


def test_twins_need_an_even_number_of_envs():
    with pytest.raises(ValueError, match="even number"):
        Rollout(ScriptedVectorEnv(3, lambda seed, twin: 1), [1], twins=True)
