"""Errors raised at the boundary (configs, latency specs, profile files).

Each message names the field and the allowed values, so the CLI can print it as one line.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is out of its allowed set or range."""

    def __init__(self, field: str, value: object, allowed: str):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r} is invalid: {allowed}")


def check_choice(field: str, value: object, choices: tuple) -> None:
    """Raise ConfigError unless `value` is one of `choices`."""
    if value not in choices:
        raise ConfigError(field, value, "allowed values are " + ", ".join(map(str, choices)))


def check_range(
    field: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
) -> None:
    """Raise ConfigError unless `low <= value <= high` (either bound optional)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(field, value, "must be a number") from None
    if number != number:  # NaN
        raise ConfigError(field, value, "must be a number, not NaN")
    bad_low = low is not None and (number < low if low_inclusive else number <= low)
    bad_high = high is not None and number > high
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        bracket = "[" if low_inclusive else "("
        raise ConfigError(field, value, f"must lie in {bracket}{lo}, {hi}]")


def check_interval(field: str, value: tuple[float, float], low: float | None = None,
                   high: float | None = None) -> None:
    """Raise ConfigError unless `value` is a `(lo, hi)` pair with `lo <= hi` within bounds."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(field, value, "must be a (low, high) pair")
    check_range(f"{field}[0]", value[0], low, high)
    check_range(f"{field}[1]", value[1], low, high)
    if value[0] > value[1]:
        raise ConfigError(field, value, "low must not exceed high")
