"""The PPO run's reward settings (`PPOConfig.reward`, `--reward`) reach the envs it trains in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reflexdrive.cli import main
from reflexdrive.common.validation import ConfigError
from reflexdrive.train import ppo
from reflexdrive.train.ppo import PPOConfig, make_env, resolved_policy_config
from reflexdrive.train.sb3_adapters import RAW_ACTION_LIMIT


def crash_reward(tmp_path: Path, reward) -> float:
    """Full throttle, straight, at a stopped vehicle in the ego lane: the reward of the
    step on which the ego collides."""
    config = PPOConfig(policy="cnn", scenarios=("stopped-vehicle",), num_envs=1, n_steps=64,
                       batch_size=64, mode="lockstep", latency="fixed:0", reward=reward,
                       out_dir=str(tmp_path / "run"), device="cpu")
    env = make_env(config, resolved_policy_config(config), encode=False)
    try:
        env.reset()
        full_throttle = np.array([[RAW_ACTION_LIMIT, 0.0]], np.float32)
        for _ in range(400):
            _, rewards, dones, infos = env.step(full_throttle)
            if dones[0]:
                assert not infos[0].get("TimeLimit.truncated", False)   # a crash, not time
                assert infos[0]["is_success"] is False
                return float(rewards[0])
        raise AssertionError("the ego never hit the stopped vehicle")
    finally:
        env.close()


def test_the_collision_penalty_is_what_the_config_says(tmp_path):
    # reward = progress in [0, 1] - collision_penalty on the crash step
    default = crash_reward(tmp_path / "a", None)
    assert -10.0 <= default <= -9.0
    heavier = crash_reward(tmp_path / "b", {"collision_penalty": 100.0})
    assert -100.0 <= heavier <= -99.0
    assert heavier - default == pytest.approx(-90.0, abs=1e-9)   # the same crash, same progress


@pytest.mark.parametrize("reward, message", [
    ({"crash_penalty": 1.0}, "reward.crash_penalty=1.0 is invalid: allowed keys are "
                             "collision_penalty, offroad_penalty, speed_target_mps"),
    ({"collision_penalty": -1.0}, "reward.collision_penalty=-1.0 is invalid"),
    ([1, 2], "reward=\\[1, 2\\] is invalid: must be a dict"),
])
def test_bad_rewards_name_the_field(tmp_path, reward, message):
    with pytest.raises(ConfigError, match=message):
        PPOConfig(reward=reward, out_dir=str(tmp_path))


def test_reward_is_a_cli_option_recorded_in_the_command(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_train_ppo(config, progress=True):
        seen["config"] = config
        return Path(config.export_file)

    monkeypatch.setattr(ppo, "train_ppo", fake_train_ppo)
    assert main(["train", "--policy", "cnn", "--method", "ppo", "--reward",
                 '{"offroad_penalty": 50, "collision_penalty": 100}',
                 "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    config = seen["config"]
    assert config.reward == {"offroad_penalty": 50, "collision_penalty": 100}
    assert ("--reward '{\"collision_penalty\": 100, \"offroad_penalty\": 50}'"
            in config.command)
    assert "reward" not in ppo.RESUMABLE_FIELDS          # it defines the run
    assert main(["train", "--policy", "cnn", "--method", "ppo", "--reward", "100",
                 "--out", str(tmp_path / "a")]) == 2
    assert "--reward='100' is invalid: must be a JSON object" in capsys.readouterr().err
    assert main(["train", "--policy", "cnn", "--method", "bc", "--reward", "{}",
                 "--out", str(tmp_path / "b")]) == 2
    assert "is a PPO option" in capsys.readouterr().err
