"""`unique_rows`: exact groups of identical rows (fingerprint collisions split again), and
the end-to-end agent computing each distinct row once with the actions and states of the
whole batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reflexdrive.agents.duplicate_rows import unique_rows
from reflexdrive.agents.end_to_end import EndToEndAgent, policy_spec
from reflexdrive.policies.registry import build

ENCODER = {"channels": [8, 8, 8], "bev_features": 32, "features": 32}
SMALL = {"cnn": {"encoder": ENCODER}, "gru": {"encoder": ENCODER, "hidden_size": 16},
         "lstm": {"encoder": ENCODER, "hidden_size": 16, "layers": 2}}


def small(name: str):
    torch.manual_seed(0)
    return build(name, policy_spec()["observation"], **SMALL[name])


def observations(n: int, seed: int) -> dict[str, np.ndarray]:
    """Vector-env observations: uint8 rasters of 0/255, float32 ego and lidar."""
    rng = np.random.default_rng(seed)
    return {"bev": (rng.random((n, 4, 64, 64)) > 0.8).astype(np.uint8) * 255,
            "ego": rng.normal([22, 0, 0, 0, 0, 1, 4, 1], 0.5, (n, 8)).astype(np.float32),
            "lidar": rng.uniform(0, 48, (n, 64, 2)).astype(np.float32)}


def test_identical_rows_form_groups_and_distinct_batches_give_none():
    obs = observations(6, seed=1)
    assert unique_rows(obs) is None
    for key in obs:
        obs[key][4] = obs[key][1]
        obs[key][5] = obs[key][1]
    first, group = unique_rows(obs)
    np.testing.assert_array_equal(first, [0, 1, 2, 3])
    np.testing.assert_array_equal(group, [0, 1, 2, 3, 1, 1])
    for key, array in obs.items():
        np.testing.assert_array_equal(array[first][group], array)


def test_rows_that_only_share_a_fingerprint_or_differ_in_state_stay_apart():
    obs = observations(3, seed=2)
    obs["bev"][1] = obs["bev"][0]
    obs["ego"][1] = obs["ego"][0]
    obs["lidar"][1] = obs["lidar"][0]
    obs["bev"][2] = obs["bev"][0]
    obs["ego"][2] = obs["ego"][0]
    obs["lidar"][2] = obs["lidar"][0]
    words = obs["bev"][2].reshape(-1).view(np.int64)
    words[[0, 1]] = words[[1, 0]]          # the same word sum, other bytes
    assert words[0] != words[1]
    first, group = unique_rows(obs)
    np.testing.assert_array_equal(group, [0, 0, 1])
    state = (torch.zeros(1, 3, 4),)
    state[0][0, 1, 2] = 1.0                # row 1's recurrent state differs from row 0's
    assert unique_rows(obs, state) is None


@pytest.mark.parametrize("name", ["cnn", "gru", "lstm"])
def test_the_agent_gives_duplicated_rows_the_actions_and_states_of_the_whole_batch(name):
    obs = observations(8, seed=3)
    for key in obs:
        obs[key][4:] = obs[key][:4]          # twins before their hazard
    agent = EndToEndAgent(small(name), device="cpu")
    rows_computed: list[int] = []
    agent.policy.register_forward_hook(
        lambda module, args, output: rows_computed.append(args[0]["bev"].shape[0]))
    policy = small(name).eval()
    state = policy.initial_state(8, torch.device("cpu"))
    for tick in range(3):
        decision = agent.act(obs, {})
        with torch.inference_mode():
            action, state = policy({k: torch.from_numpy(v) for k, v in obs.items()}, state)
        np.testing.assert_allclose(decision.actions, action.numpy(), atol=1e-5)
        twins = [0, 1, 3] if tick else [0, 1, 2, 3]     # row 6 leaves its pair after tick 0
        np.testing.assert_array_equal(decision.actions[[t + 4 for t in twins]],
                                      decision.actions[twins])
        for mine, theirs in zip(agent.state, state):
            torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)
        obs["ego"][6] += 0.5                   # one twin's hazard starts
    assert rows_computed == [4, 5, 5]
