"""Training learned components (`reflexdrive train`): the bev detector of the `learned`
perception, and end-to-end policies by imitation of the staged stack (expert data,
behaviour cloning, DAgger) or by PPO (stable-baselines3 adapters)."""
