"""reflexdrive: autonomous-driving stacks on a clock.

`import reflexdrive` registers the Gymnasium ids (reflexdrive/Highway-v0, ...,
reflexdrive/LeadBrake-v0, ...), so `gym.make("reflexdrive/LeadBrake-v0", mode="realtime",
latency="fixed:0.03")` works. `from reflexdrive import Agent, Decision` is the public way to
write a driving stack of your own (docs/your-stack.md), and `reflexdrive.compare_stacks(...)`
compares stacks from Python, returning pandas DataFrames (imported on first use).

Layers (imports point down only): `reflexdrive` (running, comparing, reporting, training,
the CLI) on top of `reflexdrive.agents` (driving stacks), which builds on
`reflexdrive.policies` (torch modules) and `reflexdrive.envs` (the world and its clock).
"""

from reflexdrive.agents.base import Agent, Decision, StageTimer
from reflexdrive.envs.registration import register_envs

register_envs()

__version__ = "0.1.0"
__all__ = ["Agent", "CompareResult", "Decision", "StageTimer", "compare_stacks",
           "register_envs", "__version__"]


def __getattr__(name: str):
    """`compare_stacks` and `CompareResult`, imported on first use: the compare layer
    (pandas, the runner) is not loaded by `import reflexdrive`."""
    if name in ("compare_stacks", "CompareResult"):
        from reflexdrive.compare import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'reflexdrive' has no attribute {name!r}")
