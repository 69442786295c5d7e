"""reflexdrive: autonomous-driving stacks on a clock.

`import reflexdrive` registers the Gymnasium ids (reflexdrive/Highway-v0, ...,
reflexdrive/LeadBrake-v0, ...), so `gym.make("reflexdrive/LeadBrake-v0", mode="realtime",
latency="fixed:0.03")` works. The runner, metrics and CLI live in this package.
"""

from envs.registration import register_envs

register_envs()

__version__ = "0.1.0"
__all__ = ["register_envs", "__version__"]
