"""The field-metadata rules beyond numbers and choices: counts, open upper bounds, tuples of
numbers, labels, and subclasses that change a default."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pytest

from reflexdrive.common.validation import (
    ConfigError,
    check_choice,
    check_count,
    check_int,
    check_numbers,
    check_real,
    check_str,
    count,
    field_help,
    integer,
    number_tuple,
    override,
    real,
    string,
    validate_fields,
)


@pytest.mark.parametrize("value", [0, True, 2.0, "3", None])
def test_check_count_says_integer_at_least_low(value):
    with pytest.raises(ConfigError, match=r"^hidden=.* is invalid: must be an integer >= 1$"):
        check_count("hidden", value)


def test_check_count_takes_the_bound_itself():
    check_count("hidden", 1)
    check_count("lidar_hidden", 0, low=0)


def test_an_open_upper_bound_excludes_it():
    check_real("score", 0.999, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    with pytest.raises(ConfigError, match=r"^score=1.0 is invalid: must lie in \(0, 1\)$"):
        check_real("score", 1.0, 0.0, 1.0, low_inclusive=False, high_inclusive=False)


def test_check_numbers_sizes_and_elements():
    check_numbers("size", (5.0, 2), 0.0, low_inclusive=False, min_length=2, max_length=2)
    check_numbers("durations", [1.5], 0.0, low_inclusive=False)
    check_numbers("channels", (32, 64), 1, integers=True, max_length=6)
    with pytest.raises(ConfigError, match=r"^size=\(5.0,\) is invalid: must be a tuple of 2 "
                                          r"numbers$"):
        check_numbers("size", (5.0,), min_length=2, max_length=2)
    with pytest.raises(ConfigError, match=r"^durations=\(\) is invalid: must be a tuple of 1 or "
                                          r"more numbers$"):
        check_numbers("durations", ())
    with pytest.raises(ConfigError, match=r"^channels=.* is invalid: must be a tuple of 1 to 6 "
                                          r"integers$"):
        check_numbers("channels", (8,) * 7, 1, integers=True, max_length=6)
    with pytest.raises(ConfigError, match=r"^channels\[1\]=2.0 is invalid: must be an integer$"):
        check_numbers("channels", (1, 2.0), 1, integers=True)
    with pytest.raises(ConfigError, match=r"^size\[1\]=0.0 is invalid: must lie in \(0, inf\]$"):
        check_numbers("size", (1.0, 0.0), 0.0, low_inclusive=False)
    with pytest.raises(ConfigError, match=r"^size\[0\]=True is invalid: must be a number$"):
        check_numbers("size", (True, 1.0))
    with pytest.raises(ConfigError, match="must be a tuple"):
        check_numbers("size", "12")


@dataclass(frozen=True)
class _Base:
    width: int = count(128, help="layer width")
    budget_s: float | None = real(None, low=0.0, low_inclusive=False, optional=True)
    sizes_m: tuple[float, ...] = number_tuple((5.0, 2.0), low=0.0, low_inclusive=False,
                                              min_length=2, max_length=2, help="[m]")
    lanes: int = integer(3, low=1, high=8)

    def __post_init__(self) -> None:
        validate_fields(self, labels={"budget_s": "budget"})


@dataclass(frozen=True)
class _Child(_Base):
    lanes: int = override(_Base, "lanes", 4)


def test_labels_rename_a_field_in_its_error():
    with pytest.raises(ConfigError, match=r"^budget=-1 is invalid: must lie in \(0, inf\]$"):
        _Base(budget_s=-1)
    with pytest.raises(ConfigError, match=r"^width=0 is invalid: must be an integer >= 1$"):
        _Base(width=0)
    with pytest.raises(ConfigError, match=r"^sizes_m\[0\]=-1.0 is invalid"):
        _Base(sizes_m=(-1.0, 2.0))


def test_a_subclass_default_keeps_the_rule_help_and_field_order():
    assert _Child().lanes == 4 and _Base().lanes == 3
    assert [f.name for f in dataclasses.fields(_Child)] == ["width", "budget_s", "sizes_m",
                                                            "lanes"]
    with pytest.raises(ConfigError, match=r"^lanes=9 is invalid: must lie in \[1, 8\]$"):
        _Child(lanes=9)
    with pytest.raises(ConfigError, match=r"^lanes=3.0 is invalid: must be an integer$"):
        _Child(lanes=3.0)
    assert field_help(_Child, "sizes_m") == "[m]"


def test_a_number_matches_only_a_choice_of_its_kind():
    check_choice("stride", 2, (1, 2, 4))
    check_choice("stride", np.int64(4), (1, 2, 4))
    check_choice("mode", "lockstep", ("realtime", "lockstep"))
    for value in (True, 2.0, "2"):
        with pytest.raises(ConfigError, match=r"^stride=.* is invalid: allowed values are "
                                              r"1, 2, 4$"):
            check_choice("stride", value, (1, 2, 4))


def test_integer_can_say_integer_in_its_range():
    with pytest.raises(ConfigError, match=r"^epochs=-1 is invalid: must be an integer in "
                                          r"\[0, 10000\]$"):
        check_int("epochs", -1, 0, 10_000, says_integer=True)
    with pytest.raises(ConfigError, match=r"^every=0 is invalid: must be an integer >= 1$"):
        check_int("every", 0, 1, None, says_integer=True)
    with pytest.raises(ConfigError, match=r"^epochs=3.0 is invalid: must be an integer$"):
        check_int("epochs", 3.0, 0, 10_000, says_integer=True)
    with pytest.raises(ConfigError, match=r"^epochs=-1 is invalid: must lie in \[0, 10000\]$"):
        check_int("epochs", -1, 0, 10_000)


@pytest.mark.parametrize("value", [94, 97, True, 96.0, "96"])
def test_an_even_count_with_a_unit(value):
    with pytest.raises(ConfigError, match=r"^panel=.* is invalid: must be an even integer >= "
                                          r"96 \[px\]$"):
        check_count("panel", value, 96, even=True, unit="px")
    check_count("panel", 96, 96, even=True, unit="px")


def test_an_optional_count_says_it_may_be_left_out():
    check_count("envs", None, optional=True)
    with pytest.raises(ConfigError, match=r"^envs=0 is invalid: must be an integer >= 1 "
                                          r"\(or left out\)$"):
        check_count("envs", 0, optional=True)


@pytest.mark.parametrize("value", [math.inf, -math.inf, True, "1"])
def test_a_finite_real_refuses_infinities(value):
    with pytest.raises(ConfigError, match=r"^gain=.* is invalid: must be a finite number$"):
        check_real("gain", value, 0.0, finite=True)
    check_real("gain", math.inf, 0.0)                      # without `finite`: allowed


def test_check_str():
    check_str("latency", "fixed:0")
    with pytest.raises(ConfigError, match=r"^latency=3 is invalid: must be a string$"):
        check_str("latency", 3)


@dataclass(frozen=True)
class _Worded:
    epochs: int = integer(4, low=0, high=10_000, says_integer=True)
    panel: int = count(160, low=96, even=True, unit="px")
    envs: int | None = count(None, optional=True)
    gain: float = real(0.5, low=0.0, finite=True)
    std: tuple[float, float] = number_tuple(
        (0.3, 0.05), low=0.0, low_inclusive=False, finite=True, min_length=2, max_length=2,
        message="must be two positive numbers (acceleration, steering)")
    spec: str = string("fixed:0")
    budget_s: float | None = real(0.1, low=0.0, high=60.0, low_inclusive=False,
                                  high_inclusive=False, optional=True,
                                  message="must be a finite number of seconds in (0, 60)")

    def __post_init__(self) -> None:
        validate_fields(self, "x.")


@pytest.mark.parametrize("changes, needle", [
    ({"epochs": -1}, "x.epochs=-1 is invalid: must be an integer in [0, 10000]"),
    ({"epochs": True}, "x.epochs=True is invalid: must be an integer"),
    ({"panel": 98.0}, "x.panel=98.0 is invalid: must be an even integer >= 96 [px]"),
    ({"envs": 0}, "x.envs=0 is invalid: must be an integer >= 1 (or left out)"),
    ({"gain": math.inf}, "x.gain=inf is invalid: must be a finite number"),
    ({"std": (0.3, 0.0)}, "x.std=(0.3, 0.0) is invalid: must be two positive numbers "
                          "(acceleration, steering)"),
    ({"std": (0.3, math.inf)}, "x.std=(0.3, inf) is invalid: must be two positive"),
    ({"std": (0.3,)}, "x.std=(0.3,) is invalid: must be two positive"),
    ({"spec": None}, "x.spec=None is invalid: must be a string"),
    ({"budget_s": 60}, "x.budget_s=60 is invalid: must be a finite number of seconds in "
                       "(0, 60)"),
    ({"budget_s": "1"}, "x.budget_s='1' is invalid: must be a finite number of seconds"),
])
def test_the_wording_options_as_field_rules(changes, needle):
    _Worded(envs=3, budget_s=None)
    with pytest.raises(ConfigError) as error:
        _Worded(**changes)
    assert str(error.value) == needle or str(error.value).startswith(needle)


@dataclass(frozen=True)
class _User:
    lanes: int = override(_Base, "lanes")
    width: int = override(_Base, "width")


def test_override_without_a_default_keeps_the_base_default():
    assert _User().lanes == 3 and _User().width == 128
    assert field_help(_User, "width") == "layer width"
    with pytest.raises(ConfigError, match=r"^lanes=9 is invalid: must lie in \[1, 8\]$"):
        validate_fields(_User(lanes=9))
