"""Running stacks on the clock: the runner (`reflexdrive run`), the one rollout loop every
driver of a vector env shares, episode metrics (reaction time and outcomes), result files,
latency profiling at batch size 1, and evaluation helpers for scripts."""
