"""Stacks by name, as the CLI's `--stack` chooses them."""

from __future__ import annotations

from typing import Any, Callable

from agents.base import Agent
from agents.staged import (IdentityTracker, LaneKeepingController, MobilFrenetPlanner,
                           OraclePerception, StagedAgent)
from envs.errors import ConfigError

PERCEPTIONS = ("oracle",)


def build_staged(perception: str = "oracle", seed: int = 0, **_: Any) -> StagedAgent:
    """The staged stack: oracle perception, identity tracking, IDM planning, lane keeping."""
    if perception not in PERCEPTIONS:
        raise ConfigError("perception", perception, "allowed values are " + ", ".join(PERCEPTIONS))
    return StagedAgent(OraclePerception(seed=seed), IdentityTracker(), MobilFrenetPlanner(),
                       LaneKeepingController(), name="staged")


STACKS: dict[str, Callable[..., Agent]] = {"staged": build_staged}


def make_agent(stack: str, **options: Any) -> Agent:
    """Build the stack named `stack`; ConfigError listing the stacks otherwise."""
    if stack not in STACKS:
        raise ConfigError("stack", stack, "allowed values are " + ", ".join(STACKS))
    return STACKS[stack](**options)
