"""The run layer's configs validate from field metadata: integers reject bools, strings and
floats; errors name the field as before."""

from __future__ import annotations

import pytest

from reflexdrive.common.validation import ConfigError
from reflexdrive.run.metrics import ReactionConfig
from reflexdrive.run.profile import ProfileConfig
from reflexdrive.run.runner import RunConfig


@pytest.mark.parametrize("value", [True, "3", 3.0])
@pytest.mark.parametrize("name", ["episodes", "seed", "envs", "simulation_frequency",
                                  "policy_frequency"])
def test_run_config_integers_reject_bools_strings_and_floats(name, value):
    with pytest.raises(ConfigError, match=rf"^{name}=.* is invalid: must be an integer"):
        RunConfig(**{name: value})


def test_run_config_messages():
    with pytest.raises(ConfigError, match=r"^episodes=0 is invalid: must be an integer >= 1$"):
        RunConfig(episodes=0)
    with pytest.raises(ConfigError, match=r"^seed=-1 is invalid: must be an integer >= 0$"):
        RunConfig(seed=-1)
    with pytest.raises(ConfigError, match=r"^budget=-1.0 is invalid: must lie in \(0, 3600\]$"):
        RunConfig(budget_s=-1.0)
    with pytest.raises(ConfigError, match=r"^mode='fast' is invalid: allowed values are "
                                          r"realtime, lockstep$"):
        RunConfig(mode="fast")


def test_run_config_clock_defaults_are_the_clock_config_defaults():
    from reflexdrive.envs.config import ClockConfig

    run, clock = RunConfig(), ClockConfig()
    for name in ("mode", "latency", "budget_s", "on_overrun", "simulation_frequency",
                 "policy_frequency"):
        assert getattr(run, name) == getattr(clock, name), name
    assert dict(run.stage_budgets_s) == dict(clock.stage_budgets_s) == {}


@pytest.mark.parametrize("value", [True, "3", 3.0])
@pytest.mark.parametrize("name", ["episodes", "seed", "warmup"])
def test_profile_config_integers_reject_bools_strings_and_floats(name, value):
    with pytest.raises(ConfigError, match=rf"^{name}=.* is invalid: must be an integer >= "):
        ProfileConfig(**{name: value})


def test_profile_config_bounds():
    with pytest.raises(ConfigError, match=r"^episodes=0 is invalid: must be an integer >= 1$"):
        ProfileConfig(episodes=0)
    with pytest.raises(ConfigError, match=r"^warmup=-1 is invalid: must be an integer >= 0$"):
        ProfileConfig(warmup=-1)
    ProfileConfig(seed=0, warmup=0)


@pytest.mark.parametrize("value", [True, "3", 0.0, 9.0])
def test_reaction_config_thresholds(value):
    with pytest.raises(ConfigError, match=r"^reaction.decel_threshold_mps2=.* is invalid: "):
        ReactionConfig(decel_threshold_mps2=value)
    with pytest.raises(ConfigError, match=r"^reaction.steer_threshold_rad=.* is invalid: "):
        ReactionConfig(steer_threshold_rad=value if value != 0.0 else 1.5)


def test_reference_drivers_run_at_zero_compute_latency():
    """Their delays are behaviour: a run refuses to charge them compute, and they count
    ticks of 1 / policy_frequency."""
    with pytest.raises(ConfigError, match="latency='fixed:0.03'.*fixed:0"):
        RunConfig(stack="reference-driver", latency="fixed:0.03")
    config = RunConfig(stack="r157-regulation", policy_frequency=25)
    assert config.agent_options()["tick_s"] == pytest.approx(0.04)


def test_twins_run_only_on_hazard_scenarios():
    assert RunConfig(scenario="lead-brake", envs=3).worlds == 6
    assert RunConfig(scenario="lead-brake", envs=3, twins=False).worlds == 3
    assert RunConfig(scenario="highway", envs=3).worlds == 3
    with pytest.raises(ConfigError, match="twins"):
        RunConfig(twins="yes")


def test_profile_table_adds_the_slowest_stage_when_pipelined():
    """Decisions (60, 50) and (40, 70) ms: totals 110, 110 ms; slowest stage 60, 70 ms
    (p50 65 ms), what sets a pipelined stack's rate."""
    from reflexdrive.envs.latency import LatencyProfile

    from reflexdrive.run.profile import percentile_table

    profile = LatencyProfile(stack="staged", device="cpu", batch_size=1,
                             stages={"perception": (0.06, 0.04), "planning": (0.05, 0.07)},
                             created="2026-01-01T00:00:00Z")
    assert "slowest" not in percentile_table(profile)
    lines = percentile_table(profile, "pipelined").splitlines()
    assert lines[-2].split()[:2] == ["total", "110.000"]
    assert lines[-1].split()[:3] == ["slowest", "stage", "65.000"]
    with pytest.raises(ConfigError, match="execution"):
        ProfileConfig(execution="parallel")
