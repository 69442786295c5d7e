"""Validation at the boundary: one-line errors that name the field and the allowed values.

`check_int`, `check_count`, `check_real`, `check_choice`, `check_interval` and
`check_numbers` test one value. A config dataclass states each field's bounds once, as
field metadata (`integer(...)`, `count(...)`, `real(...)`, `boolean(...)`, `choice(...)`,
`interval(...)`, `number_tuple(...)`, `string(...)`), and `validate_fields(self)` in its
`__post_init__` checks them all; a subclass that changes a default keeps the rule with
`override`. The CLI reads the same fields for its defaults and help (`field_default`,
`field_help`), so a default is written in one place only.

Wording options keep a config's established messages: `integer(..., says_integer=True)`
reads "must be an integer in [0, 10000]" (not "must lie in ..."), `count(..., even=True,
unit="px")` "must be an even integer >= 96 [px]", an optional count adds "(or left out)",
`finite=True` refuses infinities with "must be a finite number", and `message=` replaces
every failure of a field with one sentence naming the whole value (e.g. "must be two
positive numbers (acceleration, steering)").

Numbers are checked by type, not converted: `True` and `"3"` are not numbers here (a bool is
an `int` to Python, and `float("3")` would let a string through to fail later in arithmetic).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

RULE = "reflexdrive.rule"
"""The field-metadata key under which a field's `Rule` is stored."""
HELP = "reflexdrive.help"
"""The field-metadata key of a field's one-line help (units included)."""


class ConfigError(ValueError):
    """A configuration value is out of its allowed set or range."""

    def __init__(self, field: str, value: object, allowed: str):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r} is invalid: {allowed}")


def check_choice(field: str, value: object, choices: tuple) -> None:
    """Raise ConfigError unless `value` is one of `choices`; a number matches only a number
    of its own kind (`True` and `2.0` are not among the integer choices 1, 2, 4)."""
    if isinstance(value, (list, dict, set)) or not any(_same(value, c) for c in choices):
        raise ConfigError(field, value, "allowed values are " + ", ".join(map(str, choices)))


def _same(value: object, choice: object) -> bool:
    if isinstance(value, numbers.Number) or isinstance(choice, numbers.Number):
        if (is_int(value) != is_int(choice)
                or isinstance(value, (bool, np.bool_)) != isinstance(choice, bool)):
            return False
    return value is choice or value == choice


def _bounds(field: str, value: Any, low: float | None, high: float | None,
            low_inclusive: bool, high_inclusive: bool = True) -> None:
    bad_low = low is not None and (value < low if low_inclusive else value <= low)
    bad_high = high is not None and (value > high if high_inclusive else value >= high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        opening = "[" if low_inclusive else "("
        closing = "]" if high_inclusive else ")"
        raise ConfigError(field, value, f"must lie in {opening}{lo}, {hi}{closing}")


def is_real(value: Any) -> bool:
    """A real number that is not a bool (ints and numpy scalars included, strings not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_int(value: Any) -> bool:
    """An integer that is not a bool (numpy integers included, floats and strings not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_real(field: str, value: Any, low: float | None = None, high: float | None = None,
               *, low_inclusive: bool = True, high_inclusive: bool = True,
               finite: bool = False) -> None:
    """Raise ConfigError unless `value` is a real number (not a bool or a string, not NaN)
    with `low <= value <= high` (`low < value` when not `low_inclusive`, `value < high` when
    not `high_inclusive`; bounds optional). With `finite`, infinities are refused too, and
    a non-number or an infinity reads "must be a finite number"."""
    if finite and (not is_real(value) or not math.isfinite(value)):
        raise ConfigError(field, value, "must be a finite number")
    if not is_real(value):
        raise ConfigError(field, value, "must be a number")
    if math.isnan(value):
        raise ConfigError(field, value, "must be a number, not NaN")
    _bounds(field, value, low, high, low_inclusive, high_inclusive)


def check_int(field: str, value: Any, low: int | None = None,
              high: int | None = None, *, says_integer: bool = False) -> None:
    """Raise ConfigError unless `value` is an integer (not a bool, a float or a string) with
    `low <= value <= high` (bounds optional). Out of range it reads "must lie in [low,
    high]", or with `says_integer` "must be an integer in [low, high]" ("must be an integer
    >= low" without `high`)."""
    if not is_int(value):
        raise ConfigError(field, value, "must be an integer")
    if says_integer and low is not None:
        if value < low or (high is not None and value > high):
            raise ConfigError(field, value, f"must be an integer >= {low}" if high is None
                              else f"must be an integer in [{low}, {high}]")
    _bounds(field, value, low, high, True)


def check_count(field: str, value: Any, low: int = 1, *, even: bool = False,
                unit: str = "", optional: bool = False) -> None:
    """Raise ConfigError unless `value` is an integer (not a bool, a float or a string)
    `>= low`: a count or a width with no upper bound ("must be an integer >= 1"). With
    `even` it must be even too ("must be an even integer >= 96"), `unit` ends the message
    (" [px]"); `optional` lets None through and adds "(or left out)"."""
    if value is None and optional:
        return
    if not is_int(value) or value < low or (even and value % 2):
        kind = "an even integer" if even else "an integer"
        raise ConfigError(field, value, f"must be {kind} >= {low}"
                          + (f" [{unit}]" if unit else "")
                          + (" (or left out)" if optional else ""))


def check_str(field: str, value: Any) -> None:
    """Raise ConfigError unless `value` is a string (e.g. a spec parsed later)."""
    if not isinstance(value, str):
        raise ConfigError(field, value, "must be a string")


def check_bool(field: str, value: Any) -> None:
    """Raise ConfigError unless `value` is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(field, value, "must be true or false")


def check_interval(field: str, value: Any, low: float | None = None,
                   high: float | None = None) -> None:
    """Raise ConfigError unless `value` is a `(lo, hi)` pair with `lo <= hi` within bounds."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(field, value, "must be a (low, high) pair")
    check_real(f"{field}[0]", value[0], low, high)
    check_real(f"{field}[1]", value[1], low, high)
    if value[0] > value[1]:
        raise ConfigError(field, value, "low must not exceed high")


def check_numbers(field: str, value: Any, low: float | None = None,
                  high: float | None = None, *, low_inclusive: bool = True,
                  integers: bool = False, min_length: int = 1,
                  max_length: int | None = None, finite: bool = False) -> None:
    """Raise ConfigError unless `value` is a tuple (or list) of `min_length` to `max_length`
    numbers (integers when `integers`; finite when `finite`), each within the bounds as in
    `check_real` / `check_int`; an element's error names it `field[i]`."""
    what = "integers" if integers else "numbers"
    if max_length is None:
        size = f"{min_length} or more"
    elif max_length == min_length:
        size = f"{min_length}"
    else:
        size = f"{min_length} to {max_length}"
    if (not isinstance(value, (tuple, list)) or len(value) < min_length
            or (max_length is not None and len(value) > max_length)):
        raise ConfigError(field, value, f"must be a tuple of {size} {what}")
    for i, item in enumerate(value):
        if integers:
            check_int(f"{field}[{i}]", item, low, high)
        else:
            check_real(f"{field}[{i}]", item, low, high, low_inclusive=low_inclusive,
                       finite=finite)


@dataclass(frozen=True)
class Rule:
    """What a config field allows: `kind` is "int", "count", "real", "bool", "choice",
    "interval", "numbers" or "str"; bounds for numbers and intervals; `choices` for a
    choice; `integers`, `min_length` and `max_length` for a tuple of numbers; `optional`
    lets None through. Wording: `says_integer` (an int's range as "an integer in
    [lo, hi]"), `even` and `unit` (a count), `finite` (a real or a tuple of numbers), and
    `message`, which replaces the text of every failure (the error names the whole
    value)."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple = ()
    optional: bool = False
    integers: bool = False
    min_length: int = 1
    max_length: int | None = None
    says_integer: bool = False
    even: bool = False
    unit: str = ""
    finite: bool = False
    message: str = ""

    def check(self, field: str, value: Any) -> None:
        """Raise ConfigError naming `field` unless `value` is allowed."""
        if not self.message:
            self._check(field, value)
            return
        try:
            self._check(field, value)
        except ConfigError:
            raise ConfigError(field, value, self.message) from None

    def _check(self, field: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if self.kind == "int":
            check_int(field, value, self.low, self.high, says_integer=self.says_integer)
        elif self.kind == "count":
            check_count(field, value, 0 if self.low is None else int(self.low),
                        even=self.even, unit=self.unit, optional=self.optional)
        elif self.kind == "real":
            check_real(field, value, self.low, self.high, low_inclusive=self.low_inclusive,
                       high_inclusive=self.high_inclusive, finite=self.finite)
        elif self.kind == "bool":
            check_bool(field, value)
        elif self.kind == "choice":
            check_choice(field, value, self.choices)
        elif self.kind == "interval":
            check_interval(field, value, self.low, self.high)
        elif self.kind == "numbers":
            check_numbers(field, value, self.low, self.high, low_inclusive=self.low_inclusive,
                          integers=self.integers, min_length=self.min_length,
                          max_length=self.max_length, finite=self.finite)
        elif self.kind == "str":
            check_str(field, value)
        else:
            raise ValueError(f"Rule.kind={self.kind!r} is invalid: allowed values are int, "
                             "count, real, bool, choice, interval, numbers, str")


def _field(default: Any, rule: Rule, help: str) -> Any:
    return dataclasses.field(default=default, metadata={RULE: rule, HELP: help})


def integer(default: Any = dataclasses.MISSING, *, low: int | None = None,
            high: int | None = None, optional: bool = False, says_integer: bool = False,
            help: str = "") -> Any:
    """A dataclass field holding an integer in `[low, high]`; out of range its error reads
    "must lie in [low, high]", or with `says_integer` "must be an integer in [low, high]"
    ("must be an integer >= low" without `high`)."""
    return _field(default, Rule("int", low, high, optional=optional,
                                says_integer=says_integer), help)


def count(default: Any = dataclasses.MISSING, *, low: int = 1, even: bool = False,
          unit: str = "", optional: bool = False, help: str = "") -> Any:
    """A dataclass field holding an integer `>= low` with no upper bound (a count, a
    layer's width); its error reads "must be an integer >= low". `even`: an even integer
    ("must be an even integer >= low"); `unit` ends the error (" [px]"); `optional` lets
    None through (the error then adds "(or left out)")."""
    return _field(default, Rule("count", low, optional=optional, even=even, unit=unit),
                  help)


def real(default: Any = dataclasses.MISSING, *, low: float | None = None,
         high: float | None = None, low_inclusive: bool = True, high_inclusive: bool = True,
         optional: bool = False, finite: bool = False, message: str = "",
         help: str = "") -> Any:
    """A dataclass field holding a real number in `[low, high]` (the bound left out of the
    range when not `low_inclusive` / not `high_inclusive`); `finite` refuses infinities
    ("must be a finite number", also for a non-number); `message`, when given, is the
    error of any failure (e.g. "must be a finite number of seconds in (0, 60)")."""
    return _field(default, Rule("real", low, high, low_inclusive, high_inclusive,
                                optional=optional, finite=finite, message=message), help)


def string(default: Any = dataclasses.MISSING, *, optional: bool = False,
           help: str = "") -> Any:
    """A dataclass field holding a string (a spec or a name checked further in code)."""
    return _field(default, Rule("str", optional=optional), help)


def boolean(default: Any = dataclasses.MISSING, *, help: str = "") -> Any:
    """A dataclass field holding True or False."""
    return _field(default, Rule("bool"), help)


def choice(default: Any = dataclasses.MISSING, *, choices: tuple, optional: bool = False,
           help: str = "") -> Any:
    """A dataclass field holding one of `choices`."""
    return _field(default, Rule("choice", choices=tuple(choices), optional=optional), help)


def interval(default: Any = dataclasses.MISSING, *, low: float | None = None,
             high: float | None = None, optional: bool = False, help: str = "") -> Any:
    """A dataclass field holding a `(lo, hi)` pair within `[low, high]` (or None when
    `optional`)."""
    return _field(default, Rule("interval", low, high, optional=optional), help)


def number_tuple(default: Any = dataclasses.MISSING, *, low: float | None = None,
                 high: float | None = None, low_inclusive: bool = True,
                 integers: bool = False, min_length: int = 1, max_length: int | None = None,
                 finite: bool = False, message: str = "", help: str = "") -> Any:
    """A dataclass field holding a tuple of `min_length` to `max_length` numbers (integers
    when `integers`, finite when `finite`), each in `[low, high]` (`(low, high]` when not
    `low_inclusive`). `message`, when given, is the error of any failure, naming the
    whole tuple (e.g. "must be two positive numbers (acceleration, steering)")."""
    rule = Rule("numbers", low, high, low_inclusive, integers=integers,
                min_length=min_length, max_length=max_length, finite=finite,
                message=message)
    return _field(default, rule, help)


def override(base: type, name: str, default: Any = dataclasses.MISSING) -> Any:
    """Field `name` of the dataclass `base` with a new `default`, its rule and help kept:
    for a subclass that changes a default (a plain `name: int = 8` there would drop the
    rule, since the subclass's field replaces the base's). Without `default`, the field
    keeps `base`'s default too: a config that passes the field on to `base` (e.g. a run's
    clock settings) then states neither its default nor its bounds a second time."""
    item = _field_of(base, name)
    if default is dataclasses.MISSING:
        if item.default_factory is not dataclasses.MISSING:
            return dataclasses.field(default_factory=item.default_factory,
                                     metadata=item.metadata)
        default = item.default
    return dataclasses.field(default=default, metadata=item.metadata)


def validate_fields(instance: Any, prefix: str = "",
                    labels: Mapping[str, str] | None = None) -> None:
    """Check every field of the dataclass `instance` that carries a `Rule`, in field order;
    the error names the field as `prefix + name` (e.g. prefix "clock."), or as
    `prefix + labels[name]` where `labels` renames it (e.g. to the keyword a caller used)."""
    labels = labels or {}
    for item in dataclasses.fields(instance):
        rule = item.metadata.get(RULE)
        if rule is not None:
            label = labels.get(item.name, item.name)
            rule.check(prefix + label, getattr(instance, item.name))


def _field_of(cls: type, name: str) -> dataclasses.Field:
    for item in dataclasses.fields(cls):
        if item.name == name:
            return item
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def field_default(cls: type, name: str) -> Any:
    """The default of field `name` of the dataclass `cls` (from its factory if it has one),
    for CLI defaults that must equal the config's."""
    item = _field_of(cls, name)
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    if item.default is dataclasses.MISSING:
        raise KeyError(f"{cls.__name__}.{name} has no default")
    return item.default


def field_help(cls: type, name: str) -> str:
    """The one-line help of field `name` of the dataclass `cls` ("" when it has none)."""
    return _field_of(cls, name).metadata.get(HELP, "")
