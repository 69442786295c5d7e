"""The Gymnasium envs around the backends: the single and the vector env, and their reward
and termination (computed here once, above the backends' step)."""
