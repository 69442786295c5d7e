"""Closed-loop evaluations shared by the evaluation scripts (`scripts/eval_*.py`).

Each function runs one stack on seeded episodes of one scenario through `reflexdrive.
runner.run` (lockstep at zero latency unless told otherwise: the stack's decisions, not
its speed) and summarises the episodes as a JSON-able dict. Episode `i` uses scenario seed
`seed + i`, so two stacks evaluated with the same `seed` and `episodes` drive the very same
episodes and their numbers compare pair by pair.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from reflexdrive.run.runner import RunConfig, run


def rate(values: Any) -> float:
    """Mean of a boolean column (NaN for none)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()) if values.size else float("nan")


def episodes(scenario: str, stack: str = "staged", episodes: int = 50, seed: int = 0,
             envs: int = 25, **options: Any) -> pd.DataFrame:
    """`episodes.csv` rows of `stack` on `scenario` (lockstep, zero latency by default).

    `options`: further `RunConfig` fields (perception, checkpoint, latency, mode, ...).
    """
    fields = dict(mode="lockstep", latency="fixed:0")
    fields.update(options)
    config = RunConfig(scenario=scenario, stack=stack, episodes=episodes, seed=seed,
                       envs=envs, **fields)
    frame, _ = run(config, progress=False)
    return frame


def highway_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Highway outcome: collision and off-road rates, speeds (ego's against traffic's),
    mean progress along the road [m]."""
    speed = frame["mean_speed_mps"].to_numpy()
    traffic = frame["traffic_mean_speed_mps"].to_numpy()
    return {"episodes": len(frame), "collision_rate": rate(frame["collided"]),
            "offroad_rate": rate(frame["offroad"]),
            "mean_speed_mps": float(speed.mean()),
            "traffic_mean_speed_mps": float(traffic.mean()),
            "speed_ratio": float(speed.mean() / traffic.mean()),
            "mean_progress_m": float(frame["progress_m"].mean())}


def hazard_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Hazard outcome: collisions, reaction time p50 [s], min TTC p50 [s]."""
    reaction = frame["reaction_time_s"].dropna()
    return {"episodes": len(frame), "collisions": int(frame["collided"].sum()),
            "collision_rate": rate(frame["collided"]),
            "reaction_time_p50_s": float(reaction.median()) if len(reaction) else None,
            "min_ttc_s_p50": float(frame["min_ttc_s"].median())}


def timed(function, *args, **kwargs) -> tuple[Any, float]:
    """`function(*args, **kwargs)` and its wall time [s]."""
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start
