"""Driving stacks: the Agent protocol, the staged stack, (later) end-to-end agents."""

from reflexdrive.agents.base import Agent, Decision, StageTimer
from reflexdrive.agents.registry import STACKS, make_agent

__all__ = ["Agent", "Decision", "STACKS", "StageTimer", "make_agent"]
