"""When an episode ends, for the single env and the vector env alike.

An episode stops integrating after the substep on which its ego crashed, left the road or
reached the scenario's duration (`episode_over`); the decision that ends it is
`terminated` for a crash, leaving the road or (vector env, `on_overrun="terminate"`) a
deadline miss, else `truncated` when the duration is reached (`termination`).

The numba kernel's fused tick (`envs.backends.batched.numba.tick_cpu`) applies the same
stop rule inside the kernel, substep by substep; tests pin it to `episode_over`'s loop.
"""

from __future__ import annotations

import numpy as np


def episode_over(crashed, on_road, substep, duration):
    """True where the episode stops after this substep: `crashed | ~on_road | substep >=
    duration`. numpy or torch bools (`crashed`, `on_road`) and integers [substeps]."""
    return crashed | ~on_road | (substep >= duration)


def termination(crashed, offroad, out_of_time, deadline_miss=False):
    """`(terminated, truncated)` of a decision from how its episode stands after it.

    `terminated = crashed | offroad | deadline_miss`; `truncated = out_of_time` where not
    terminated. Scalars (numpy bools) or `(B,)` bool arrays.
    """
    terminated = np.logical_or(np.logical_or(crashed, offroad), deadline_miss)
    truncated = np.logical_and(np.logical_not(terminated), out_of_time)
    return terminated, truncated
