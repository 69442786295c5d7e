"""reflexdrive: autonomous-driving stacks on a clock.

`import reflexdrive` registers the Gymnasium ids (reflexdrive/Highway-v0, ...,
reflexdrive/LeadBrake-v0, ...), so `gym.make("reflexdrive/LeadBrake-v0", mode="realtime",
latency="fixed:0.03")` works. `from reflexdrive import Agent, Decision` is the public way to
write a driving stack of your own.

Layers (imports point down only): `reflexdrive` (running, comparing, reporting, training,
the CLI) on top of `reflexdrive.agents` (driving stacks), which builds on
`reflexdrive.policies` (torch modules) and `reflexdrive.envs` (the world and its clock).
"""

from reflexdrive.agents.base import Agent, Decision, StageTimer
from reflexdrive.envs.registration import register_envs

register_envs()

__version__ = "0.1.0"
__all__ = ["Agent", "Decision", "StageTimer", "register_envs", "__version__"]
