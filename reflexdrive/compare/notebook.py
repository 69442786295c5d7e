"""`compare_stacks`: a compare from Python, its results as pandas DataFrames (notebooks).

    import reflexdrive

    result = reflexdrive.compare_stacks(
        stacks=["staged", "examples.headway_agent:make"], scenarios=["lead-brake"],
        episodes=20, modes=["realtime"], latency="fixed:0.03", extra_latency_s=[0, 0.1])
    result.summary[["stack", "extra_latency_s", "reaction_time_s_mean", "collision_rate"]]

It runs `reflexdrive compare` (`reflexdrive.compare.experiment.compare`) with the same
settings (`CompareConfig`'s fields as keywords). A compare keeps every episode in a folder
so it can resume: with `out` it is that folder (run again with the same settings, it
resumes), without it a temporary folder that is deleted on return, so nothing is left on
disk and `CompareResult.out` is None. A stack defined in the notebook itself runs as
`"__main__:make"` (the notebook's namespace is the module `__main__`) with the local
executor.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from typing import Any, Sequence

from reflexdrive.compare.config import CompareConfig
from reflexdrive.compare.experiment import CompareResult, compare


def compare_stacks(stacks: Sequence[str], scenarios: Sequence[str] | None = None,
                   episodes: int | None = None, out: str | os.PathLike | None = None,
                   progress: bool = True, **settings: Any) -> CompareResult:
    """Compare `stacks` on the same seeded episodes of `scenarios`; return the episodes and
    the summary as DataFrames.

    Args:
        stacks: stack names or `package.module:factory` specs.
        scenarios: scenario names (None: `CompareConfig`'s default, the three hazards).
        episodes: episodes per cell (None: `CompareConfig`'s default).
        out: folder to keep the compare in (and resume from); None runs in a temporary
            folder deleted before returning.
        progress: show progress bars.
        **settings: any other `CompareConfig` field (modes, latency, extra_latency_s,
            envs, backend, perception, tracker, planner, controller, ...).

    Returns:
        `CompareResult`: `episodes` (one row per episode, as `episodes.csv`), `summary`
        (one row per stack x scenario x mode x extra latency, as `summary.csv`), `out`
        (the folder, None when temporary), `ran` and `wall_s`.

    Raises:
        ConfigError: a setting out of its allowed values (nothing is run).
    """
    fields: dict[str, Any] = {"stacks": tuple(stacks), **settings}
    if scenarios is not None:
        fields["scenarios"] = tuple(scenarios)
    if episodes is not None:
        fields["episodes"] = episodes
    if out is not None:
        return compare(CompareConfig(out=str(out), **fields), progress=progress)
    config = CompareConfig(**fields)                 # bad settings fail before a folder exists
    with tempfile.TemporaryDirectory(prefix="reflexdrive-compare-") as folder:
        result = compare(replace(config, out=folder), progress=progress)
    return replace(result, out=None)
