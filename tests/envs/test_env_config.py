"""SensorConfig and ClockConfig check their fields by type: a bool, a string or (for a
count) a float is not a number here, and the error names the field."""

from __future__ import annotations

import pytest
from reflexdrive.envs.config import ClockConfig, SensorConfig
from reflexdrive.envs.gym.reward import RewardConfig
from reflexdrive.envs.registration import make_env

from reflexdrive.common.validation import ConfigError, field_default, field_help


@pytest.mark.parametrize("field, value, needle", [
    ("range_m", True, "sensors.range_m=True is invalid: must be a number"),
    ("range_m", "48", "sensors.range_m='48' is invalid: must be a number"),
    ("lidar_beams", 64.0, "sensors.lidar_beams=64.0 is invalid: must be an integer"),
    ("lidar_beams", True, "sensors.lidar_beams=True is invalid: must be an integer"),
    ("max_objects", "3", "sensors.max_objects='3' is invalid: must be an integer"),
    ("bev_occlusion", 1, "sensors.bev_occlusion=1 is invalid: must be true or false"),
])
def test_sensor_config_rejects_bools_strings_and_float_counts(field, value, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        SensorConfig(**{field: value})


@pytest.mark.parametrize("field, value, needle", [
    ("simulation_frequency", 50.0, "simulation_frequency=50.0 is invalid: must be an integer"),
    ("policy_frequency", True, "policy_frequency=True is invalid: must be an integer"),
    ("policy_frequency", "10", "policy_frequency='10' is invalid: must be an integer"),
    ("budget_s", True, "budget=True is invalid: must be a number"),
    ("budget_s", "0.1", "budget='0.1' is invalid: must be a number"),
])
def test_clock_config_rejects_bools_strings_and_float_frequencies(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        ClockConfig(**{field: value})


def test_bounds_and_cross_field_checks_keep_their_messages():
    with pytest.raises(ConfigError, match=r"^sensors.range_m=-1.0 is invalid: must lie in "
                                          r"\(0, 500\]$"):
        SensorConfig(range_m=-1.0)
    with pytest.raises(ConfigError, match="whole number of pixels"):
        SensorConfig(range_m=48.5)
    with pytest.raises(ConfigError, match="must divide simulation_frequency=50"):
        ClockConfig(policy_frequency=7)
    with pytest.raises(ConfigError, match=r"^budget=0.0 is invalid: must lie in \(0, 3600\]$"):
        ClockConfig(budget_s=0.0)
    assert ClockConfig(budget_s=None).budget == pytest.approx(0.1)


def test_defaults_and_help_come_from_the_fields():
    assert field_default(SensorConfig, "range_m") == SensorConfig().range_m == 48.0
    assert field_default(ClockConfig, "simulation_frequency") == 50
    assert "[m]" in field_help(SensorConfig, "range_m")
    assert "[Hz]" in field_help(ClockConfig, "policy_frequency")


@pytest.mark.parametrize("field, value, needle", [
    ("speed_target_mps", True, "reward.speed_target_mps=True is invalid: must be a number"),
    ("speed_target_mps", 0.0, r"reward.speed_target_mps=0.0 is invalid: must lie in \(0, 100\]"),
    ("collision_penalty", "10", "reward.collision_penalty='10' is invalid: must be a number"),
    ("offroad_penalty", -1.0, r"reward.offroad_penalty=-1.0 is invalid: must lie in \[0, inf\]"),
])
def test_reward_config_checks_its_fields_by_type_and_bound(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        RewardConfig(**{field: value})


def test_an_env_refuses_a_bad_reward_dict_naming_the_field():
    with pytest.raises(ConfigError, match="reward.speed_target_mps"):
        make_env("highway", reward={"speed_target_mps": -3.0})
