"""Labels for when the command lands (`reflexdrive.train.label_shift`,
`CollectionConfig.label_shift`): the shift worked out from the tick contract at 10 Hz
ticks, on hand-built sequences and through `collect_shard` with an expert whose label
encodes the tick it labelled."""

from __future__ import annotations

import numpy as np
import pytest
from reflexdrive.agents.base import Decision

from reflexdrive.common.validation import ConfigError
from reflexdrive.train.expert_data import CollectionConfig, ShardSpec, collect_shard, round_folder
from reflexdrive.train.imitation_config import ImitationConfig
from reflexdrive.train.label_shift import landing_labels, landing_ticks

T = 0.1   # 10 Hz ticks


def f32(seconds: float, count: int) -> np.ndarray:
    """`count` recorded latencies (obs["timing"][0] is float32)."""
    return np.full(count, seconds, dtype=np.float32)


@pytest.mark.parametrize("latency, ticks, expected", [
    # sequential fixed:0.25: observes at 0, 3, 6, 9; lands at t_k + 0.25, halfway between
    # t_{k+2} and t_{k+3}: the earlier, the last world before it acts; 9 + 2 > 10: the last
    (0.25, [0, 3, 6, 9], [2, 5, 8, 10]),
    # sequential fixed:0.15 (observes every other tick): halfway between k+1 and k+2
    (0.15, [0, 2, 4, 6], [1, 3, 5, 7]),
    (0.03, [0, 1, 2, 3], [0, 1, 2, 3]),        # lands 0.03 s after t_k: nearest is t_k
    (0.06, [0, 1, 2, 3], [1, 2, 3, 4]),        # 0.04 s before t_{k+1}
    (0.26, [0, 3, 6], [3, 6, 9]),              # past halfway: k + 3
    (0.25, [0, 1, 2, 9, 10], [2, 3, 4, 10, 10]),   # pipelined: a frame every tick
    (0.0, [0, 5, 10], [0, 5, 10]),             # lockstep: L = 0, no shift
])
def test_landing_ticks_from_the_tick_contract(latency, ticks, expected):
    got = landing_ticks(np.array(ticks), f32(latency, len(ticks)), np.full(len(ticks), 10), T)
    assert got.tolist() == expected


def test_landing_labels_pick_each_frames_own_episode_and_tick():
    """Two episodes, labelled at every tick (shuffled), frames at their observed ticks with
    per-frame latencies (a latency distribution: each episode its own)."""
    episode = np.array([7] * 6 + [3] * 4)
    tick = np.array(list(range(6)) + list(range(4)))
    labels = np.stack([episode * 100.0 + tick, -tick], axis=1).astype(np.float32)
    shuffle = np.random.default_rng(0).permutation(len(tick))
    frames_episode = np.array([7, 7, 3, 3])
    frames_tick = np.array([0, 3, 0, 2])
    latency = np.array([0.25, 0.25, 0.12, 0.12], np.float32)
    got = landing_labels(frames_episode, frames_tick, latency, episode[shuffle], tick[shuffle],
                         labels[shuffle], T)
    # 7: 0 + 2, min(3 + 2, 5); 3: 0 + 1, min(2 + 1, 3)
    np.testing.assert_array_equal(got, [[702, -2], [705, -5], [301, -1], [303, -3]])
    with pytest.raises(ValueError, match="cover ticks 0..last"):
        landing_labels(frames_episode, frames_tick, latency, episode[1:], tick[1:], labels[1:], T)
    with pytest.raises(ValueError, match="no expert labels"):
        landing_labels(np.array([5]), np.array([0]), latency[:1], episode, tick, labels, T)


class TickExpert:
    """An expert whose label says which tick it labelled: acceleration `(-1)^t 0.02 t`
    m/s^2 at the `t`-th tick since its env's reset (alternating, so the car drives on)."""

    name = "tick-expert"
    stage_names = ("total",)

    def __init__(self, count: int):
        self.ticks = np.zeros(count, dtype=np.int64)

    def reset(self, done: np.ndarray) -> None:
        self.ticks[done] = 0

    def act(self, obs, info) -> Decision:
        actions = np.zeros((len(self.ticks), 2), np.float32)
        actions[:, 0] = 0.02 * self.ticks * np.where(self.ticks % 2 == 0, 1.0, -1.0)
        self.ticks += 1
        return Decision(actions=actions, stage_latency_s={"total": 0.0})


def labelled_ticks(data) -> np.ndarray:
    return np.rint(np.abs(data.action[:, 0]) / 0.02).astype(np.int64)


@pytest.mark.parametrize("shift", ["landing", "none"])
def test_collected_frames_are_labelled_at_the_landing_tick(shift):
    """Sequential fixed:0.25 at 10 Hz: frames at ticks 0, 3, 6, ...; with "landing" each is
    labelled with the expert's command at tick k + 2 (its episode's last tick at the end),
    with "none" at tick k. The executed commands are the expert's at k either way."""
    config = CollectionConfig(envs=2, shard_episodes=2, weights=(("lead-brake", 1.0),),
                              mode="realtime", latency="fixed:0.25", label_shift=shift)
    spec = ShardSpec(round=0, index=0, scenario="lead-brake", first=0, episodes=2)
    data = collect_shard(spec, config, expert=TickExpert(2))
    assert len(np.unique(data.episode)) == 2 and len(data) > 30
    assert (data.tick % 3 == 0).all()
    executed = np.rint(np.abs(data.executed[:, 0]) / 0.02)
    assert executed.tolist() == data.tick.tolist()
    got = labelled_ticks(data)
    if shift == "none":
        assert got.tolist() == data.tick.tolist()
        return
    last_frame = np.r_[data.episode[1:] != data.episode[:-1], True]
    np.testing.assert_array_equal(got[~last_frame], data.tick[~last_frame] + 2)
    assert ((got[last_frame] >= data.tick[last_frame])
            & (got[last_frame] <= data.tick[last_frame] + 2)).all()


def test_a_latency_distribution_shifts_each_episode_by_its_own_draw():
    """`fixed:0.03+0..0.3`: each episode's latency is its own (`timing[0]`), and so is its
    shift, `round(L / T)` ticks (halfway: down)."""
    config = CollectionConfig(envs=3, shard_episodes=3, weights=(("lead-brake", 1.0),),
                              mode="realtime", latency="fixed:0.03+0..0.3")
    spec = ShardSpec(round=0, index=0, scenario="lead-brake", first=0, episodes=3)
    data = collect_shard(spec, config, expert=TickExpert(3))
    got = labelled_ticks(data)
    shifts = set()
    for episode in np.unique(data.episode):
        rows = np.flatnonzero(data.episode == episode)[:-1]       # not the episode's last
        latency = float(data.timing[rows[0], 0])
        assert (data.timing[rows, 0] == np.float32(latency)).all()
        shift = int(np.ceil((latency - 1e-6) / T - 0.5))
        np.testing.assert_array_equal(got[rows], data.tick[rows] + shift)
        shifts.add(shift)
    assert len(shifts) > 1


def test_the_option_is_validated_and_keys_only_realtime_data(tmp_path):
    with pytest.raises(ConfigError, match="label_shift='later' is invalid"):
        CollectionConfig(label_shift="later")
    with pytest.raises(ConfigError, match="label_shift"):
        ImitationConfig(label_shift="x", policy_config={})
    assert ImitationConfig().collection().label_shift == "landing"
    lockstep = [round_folder(tmp_path, 0, 4, CollectionConfig(label_shift=s))
                for s in ("landing", "none")]
    realtime = [round_folder(tmp_path, 0, 4, CollectionConfig(mode="realtime", label_shift=s))
                for s in ("landing", "none")]
    assert lockstep[0] == lockstep[1] and realtime[0] != realtime[1]
