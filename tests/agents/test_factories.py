"""User factories: specs load, calls pass only the accepted options, products are checked,
and every failure is one ConfigError line naming the field and the spec."""

from __future__ import annotations

import sys

import pytest
from reflexdrive.agents.factories import (
    AGENT_INTERFACE,
    STACK_ENTRY_POINTS,
    call_factory,
    check_agent,
    check_stage,
    entry_point_specs,
    is_spec,
    load_factory,
)

from reflexdrive.common.validation import ConfigError

AGENT_SOURCE = '''
class Tiny:
    name = "tiny"
    stage_names = ("control",)
    def reset(self, done):
        pass
    def act(self, obs, info):
        return None

def make():
    return Tiny()

class Maker:
    @staticmethod
    def create():
        return Tiny()

VALUE = 3
'''


@pytest.mark.parametrize("text, expected", [
    ("examples.headway_agent:make", True), ("pkg.mod:Class.create", True), ("m:f", True),
    ("staged", False), ("pkg.mod:", False), (":make", False), ("pkg mod:make", False),
    ("pkg.mod:make:again", False), ("pkg..mod:make", False), (3, False), (None, False)])
def test_a_spec_is_module_colon_attribute_both_dotted_names(text, expected):
    assert is_spec(text) is expected


def test_load_factory_finds_a_function_and_a_dotted_attribute(user_module):
    name = user_module(AGENT_SOURCE)
    assert load_factory("stack", f"{name}:make")().name == "tiny"
    assert load_factory("stack", f"{name}:Maker.create")().name == "tiny"


def test_load_factory_failures_are_one_line_each(user_module):
    name = user_module(AGENT_SOURCE)
    broken = user_module("raise RuntimeError('no GPU here')\n")
    cases = [
        ("no_such_module_for_reflexdrive:make",
         "stack='no_such_module_for_reflexdrive:make' is invalid: cannot import module "
         "'no_such_module_for_reflexdrive': No module named 'no_such_module_for_reflexdrive'"),
        (f"{name}:build", f"stack='{name}:build' is invalid: module '{name}' has no "
                          "attribute 'build'"),
        (f"{name}:Maker.build", f"stack='{name}:Maker.build' is invalid: type "
                                f"'{name}.Maker' has no attribute 'build'"),
        (f"{name}:VALUE", f"stack='{name}:VALUE' is invalid: {name}.VALUE is an int, not a "
                          "callable factory"),
        (f"{broken}:make", f"stack='{broken}:make' is invalid: cannot import module "
                           f"'{broken}': RuntimeError: no GPU here"),
        ("not a spec", "stack='not a spec' is invalid: must be package.module:factory"),
    ]
    for spec, message in cases:
        with pytest.raises(ConfigError) as error:
            load_factory("stack", spec)
        assert str(error.value) == message
        assert "\n" not in str(error.value)


def test_a_module_in_the_current_directory_loads_without_being_on_the_path(
        tmp_path, monkeypatch):
    (tmp_path / "beside_the_command.py").write_text(AGENT_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "beside_the_command", raising=False)
    assert load_factory("stack", "beside_the_command:make")().name == "tiny"
    assert sys.path[-1] == str(tmp_path)        # searched last: installed packages win


def test_call_factory_passes_only_the_options_the_signature_accepts():
    options = {"seed": 7, "device": "cpu", "tick_s": 0.1, "perception": "oracle"}

    def seed_only(seed):
        return {"seed": seed}

    def keyword_only(*, tick_s, device="cuda"):
        return {"tick_s": tick_s, "device": device}

    def everything(**kwargs):
        return kwargs

    def nothing():
        return "built"

    def positional_only(seed, /):
        return seed

    assert call_factory(seed_only, options) == {"seed": 7}
    assert call_factory(keyword_only, options) == {"tick_s": 0.1, "device": "cpu"}
    assert call_factory(everything, options) == options
    assert call_factory(nothing, options) == "built"
    with pytest.raises(ConfigError, match="cannot be called"):   # positional-only: no option
        call_factory(positional_only, options)


def test_check_agent_names_what_came_back_and_what_an_agent_needs(user_module):
    name = user_module(AGENT_SOURCE)
    check_agent("stack", f"{name}:make", load_factory("stack", f"{name}:make")())

    class NoAct:
        name = "half"
        stage_names = ("control",)

        def reset(self, done):
            pass

    class BadStages(NoAct):
        stage_names = "control"

        def act(self, obs, info):
            pass

    for product, what in (([], "a list"), (None, "None"), (NoAct(), "a NoAct"),
                          (BadStages(), "a BadStages"), (3, "an int")):
        with pytest.raises(ConfigError) as error:
            check_agent("stack", "pkg.mod:make", product)
        assert str(error.value) == (f"stack='pkg.mod:make' is invalid: returned {what}, not "
                                    f"an Agent: needs {AGENT_INTERFACE}")
    assert AGENT_INTERFACE == "name, stage_names, reset(done), act(obs, info)"


def test_check_stage_wants_a_callable_and_reset_for_the_stages_the_stack_resets():
    class CallOnly:
        def __call__(self, *args):
            return None

    class CallAndReset(CallOnly):
        def reset(self, done):
            pass

    check_stage("perception", "m:f", CallOnly())             # perception is not reset
    for stage in ("tracker", "planner", "controller"):
        check_stage(stage, "m:f", CallAndReset())
        with pytest.raises(ConfigError, match=f"^{stage}='m:f' is invalid: returned a "
                                              f"CallOnly, not a callable {stage}"):
            check_stage(stage, "m:f", CallOnly())
    with pytest.raises(ConfigError, match=r"returned a dict, not a callable "
                                          r"perception\(obs, info\) -> Detections"):
        check_stage("perception", "m:f", {})


def test_entry_points_of_an_installed_distribution_are_found(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "my_stacks-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-stacks\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{STACK_ENTRY_POINTS}]\nmy-stack = my_stacks_module:make\n")
    assert "my-stack" not in entry_point_specs()
    monkeypatch.syspath_prepend(str(site))
    assert entry_point_specs()["my-stack"] == "my_stacks_module:make"


def test_a_factory_needing_arguments_reflexdrive_does_not_pass_is_one_clear_error():
    from reflexdrive.agents.registry import make_agent

    with pytest.raises(ConfigError, match=r"stack='json:dumps'.*cannot be called.*'obj'"):
        make_agent("json:dumps")
