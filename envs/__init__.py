"""The world: scenarios, sensors, backends, the tick clock and latency models."""

from reflexdrive.envs.registration import make_env, register_envs

register_envs()

__all__ = ["make_env", "register_envs"]
