"""The stack registry with your own stack: `package.module:factory`, the
`reflexdrive.stacks` entry points, and factories for single stages of the staged stack,
accepted by every config and refused in one line when they cannot work."""

from __future__ import annotations

import pytest
from reflexdrive.agents.factories import STACK_ENTRY_POINTS
from reflexdrive.agents.registry import (
    STACKS,
    build_staged,
    check_stack,
    make_agent,
    stack_names,
)
from reflexdrive.agents.staged import Controller, MobilFrenetPlanner

from reflexdrive.common.validation import ConfigError
from reflexdrive.compare.config import CompareConfig
from reflexdrive.protocol.harness import ProtocolConfig
from reflexdrive.run.runner import RunConfig

RECORDING_STACK = '''
class Recorded:
    stage_names = ("control",)
    def __init__(self, **given):
        self.name, self.given = "recorded", given
    def reset(self, done):
        pass
    def act(self, obs, info):
        raise NotImplementedError

def make(seed, tick_s):
    return Recorded(seed=seed, tick_s=tick_s)

def make_list():
    return [1, 2]
'''

STAGES = '''
from reflexdrive.agents.staged import MobilFrenetPlanner

class OwnPlanner(MobilFrenetPlanner):
    def __init__(self, seed):
        super().__init__()
        self.seed = seed

def planner(seed, device):
    return OwnPlanner(seed)

def not_a_planner():
    return "plan"
'''


@pytest.fixture
def registered(tmp_path, monkeypatch, user_module):
    """An installed distribution that registers `my-stack` (the recording stack) and
    `broken-stack` (a module that does not exist) in `reflexdrive.stacks`."""
    module = user_module(RECORDING_STACK)
    info = tmp_path / "site" / "my_stacks-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-stacks\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{STACK_ENTRY_POINTS}]\nmy-stack = {module}:make\n"
        "broken-stack = no_module_of_that_name:make\nstaged = elsewhere:make\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return module


def test_a_factory_spec_builds_the_users_agent_with_the_options_it_names(user_module):
    module = user_module(RECORDING_STACK)
    agent = make_agent(f"{module}:make", seed=5, device="cpu", tick_s=0.05,
                       perception="oracle", controller="pure-pursuit")
    assert agent.name == "recorded" and agent.given == {"seed": 5, "tick_s": 0.05}


def test_a_factory_that_returns_no_agent_or_a_checkpoint_for_it_is_one_line(user_module):
    module = user_module(RECORDING_STACK)
    with pytest.raises(ConfigError) as error:
        make_agent(f"{module}:make_list")
    assert str(error.value) == (f"stack='{module}:make_list' is invalid: returned a list, not "
                                "an Agent: needs name, stage_names, reset(done), act(obs, info)")
    with pytest.raises(ConfigError, match="loads no policy checkpoint"):
        make_agent(f"{module}:make", seed=0, tick_s=0.1, checkpoint="x.pt")


def test_a_registered_entry_point_works_like_a_built_in_name(registered):
    assert stack_names()[:len(STACKS)] == tuple(STACKS)
    assert stack_names().count("staged") == 1           # a built-in name wins
    assert {"my-stack", "broken-stack"} <= set(stack_names())
    agent = make_agent("my-stack", seed=2, tick_s=0.1, device="cpu")
    assert agent.given == {"seed": 2, "tick_s": 0.1}
    assert RunConfig(stack="my-stack").stack == "my-stack"
    assert make_agent("staged").name == "staged"
    with pytest.raises(ConfigError) as error:
        check_stack("stack", "broken-stack")
    assert str(error.value) == (
        "stack='broken-stack' is invalid: entry point broken-stack = "
        "no_module_of_that_name:make: cannot import module 'no_module_of_that_name': No "
        "module named 'no_module_of_that_name'")


def test_an_unknown_name_lists_the_names_and_the_factory_form():
    with pytest.raises(ConfigError) as error:
        check_stack("stack", "autopilot")
    assert str(error.value) == ("stack='autopilot' is invalid: allowed values are "
                                + ", ".join(stack_names())
                                + ", or package.module:factory (a function returning an Agent)")


def test_every_config_accepts_a_users_stack_and_refuses_a_missing_one(user_module):
    spec = f"{user_module(RECORDING_STACK)}:make"
    assert RunConfig(stack=spec).stack == spec
    assert CompareConfig(stacks=("staged", spec), scenarios=("lead-brake",)).stacks == (
        "staged", spec)
    assert ProtocolConfig(stacks=(spec,)).stacks == (spec,)
    missing = "no_module_of_that_name:make"
    for build, field in ((lambda: RunConfig(stack=missing), "stack"),
                         (lambda: CompareConfig(stacks=("staged", missing)), "stacks"),
                         (lambda: ProtocolConfig(stacks=(missing,)), "stacks")):
        with pytest.raises(ConfigError, match=f"^{field}='{missing}' is invalid: cannot "
                                              "import module 'no_module_of_that_name'"):
            build()


def test_a_stage_factory_replaces_that_stage_and_gets_its_options(user_module):
    module = user_module(STAGES)
    agent = build_staged(planner=f"{module}:planner", seed=9, tick_s=0.1)
    assert type(agent.planner).__name__ == "OwnPlanner" and agent.planner.seed == 9
    assert isinstance(agent.planner, MobilFrenetPlanner)
    assert isinstance(agent.controller, Controller)    # the other stages are the built-in ones
    assert agent.stage_names == ("perception", "tracking", "planning", "control")


def test_a_stage_factory_of_the_wrong_kind_is_one_line(user_module):
    module = user_module(STAGES)
    with pytest.raises(ConfigError) as error:
        build_staged(planner=f"{module}:not_a_planner")
    assert str(error.value) == (f"planner='{module}:not_a_planner' is invalid: returned a "
                                "str, not a callable planner(tracks, ego, time_s) -> Plan "
                                "with reset(done)")


@pytest.mark.parametrize("stage, value, message", [
    ("tracker", "sort", "tracker='sort' is invalid: allowed values are kalman, identity, or "
                        "package.module:factory"),
    ("planner", "lattice", "planner='lattice' is invalid: allowed values are mobil-frenet, or "
                           "package.module:factory"),
    ("perception", "radar", "perception='radar' is invalid: allowed values are oracle, lidar, "
                            "learned, or package.module:factory"),
    ("controller", "no_module_of_that_name:make",
     "controller='no_module_of_that_name:make' is invalid: cannot import module"),
])
def test_stage_choices_are_checked_when_a_run_is_configured(stage, value, message):
    with pytest.raises(ConfigError) as error:
        RunConfig(**{stage: value})
    assert str(error.value).startswith(message)


def test_identity_tracking_still_needs_perception_with_ids():
    with pytest.raises(ConfigError, match="identity tracking needs oracle perception"):
        RunConfig(perception="lidar", tracker="identity")
    assert RunConfig(tracker="identity").tracker == "identity"


def test_a_runs_identity_keeps_old_runs_resumable_at_the_default_stages(user_module):
    identity = RunConfig().identity()
    assert "tracker" not in identity and "planner" not in identity
    spec = f"{user_module(STAGES)}:planner"
    assert RunConfig(planner=spec).identity()["planner"] == spec
    assert CompareConfig(planner=spec).identity()["planner"] == spec
    assert "planner" not in CompareConfig().identity()
