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
    """Highway outcome: collision and off-road rates (with Wilson 95 % intervals), speeds
    (ego's against traffic's), mean progress along the road [m]."""
    from reflexdrive.compare.summary import wilson_interval

    speed = frame["mean_speed_mps"].to_numpy()
    traffic = frame["traffic_mean_speed_mps"].to_numpy()
    failed = frame["collided"].astype(bool) | frame["offroad"].astype(bool)
    return {"episodes": len(frame), "collision_rate": rate(frame["collided"]),
            "collision_rate_ci95": list(wilson_interval(int(frame["collided"].sum()),
                                                        len(frame))),
            "offroad_rate": rate(frame["offroad"]),
            "failure_rate": rate(failed),
            "failure_rate_ci95": list(wilson_interval(int(failed.sum()), len(frame))),
            "mean_speed_mps": float(speed.mean()),
            "traffic_mean_speed_mps": float(traffic.mean()),
            "speed_ratio": float(speed.mean() / traffic.mean()),
            "mean_progress_m": float(frame["progress_m"].mean())}


def hazard_summary(frame: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """Hazard outcome over all episodes and over the critical ones (`critical` column):
    collisions (with a Wilson 95 % interval of the rate), the share of critical episodes
    with a reaction, the counterfactual reaction time and the brake onset (medians with
    bootstrap 95 % intervals, over the critical episodes that reacted) [s], min TTC p50 [s].
    """
    from reflexdrive.compare.summary import bootstrap, wilson_interval

    critical = frame[frame["critical"].astype(bool)] if "critical" in frame else frame
    collisions = int(frame["collided"].sum())
    failed = frame["collided"].astype(bool) | frame["offroad"].astype(bool)
    out: dict[str, Any] = {
        "episodes": len(frame), "critical_episodes": len(critical),
        "collisions": collisions, "collision_rate": rate(frame["collided"]),
        "collision_rate_ci95": list(wilson_interval(collisions, len(frame))),
        "failure_rate": rate(failed),
        "failure_rate_ci95": list(wilson_interval(int(failed.sum()), len(frame))),
        "critical_collisions": int(critical["collided"].sum()),
        "reacted": rate(critical["reaction_time_s"].notna()),
        "min_ttc_s_p50": float(frame["min_ttc_s"].median())}
    rng = np.random.default_rng(seed)
    for column, name in (("reaction_time_s", "reaction_time"), ("brake_onset_s", "brake_onset")):
        values = critical[column].dropna().to_numpy() if column in critical else np.array([])
        estimate, low, high = bootstrap(values, {"p50": lambda v: np.median(v, axis=-1)},
                                        rng)["p50"]
        out[f"{name}_p50_s"] = None if np.isnan(estimate) else estimate
        out[f"{name}_p50_ci95_s"] = None if np.isnan(low) else [low, high]
    return out


def protocol_summary(suite: str, stack: str = "staged", curves: bool = False
                     ) -> dict[str, Any]:
    """`stack` against the UN R157 reference driver on one protocol suite's grid (lockstep,
    zero latency): collisions of each, the grid points where `stack` collides but the
    reference driver does not, and `stack`'s reaction time p50 [s]. The points on curves
    (R157's stationary obstacle on 250 m / 1000 m arcs: they run in highway-env worlds,
    ~40 s per point and stack on 2 loaded cores) only with `curves`."""
    from reflexdrive.protocol.harness import ProtocolConfig, run_protocol

    reference = "reference-driver"
    config = ProtocolConfig(suite=suite, stacks=(stack, reference), latency="fixed:0")
    if not curves:
        points = tuple(p.point for p in config.grid() if not p.needs_highway)
        config = ProtocolConfig(suite=suite, stacks=(stack, reference), latency="fixed:0",
                                points=points)
    frame = run_protocol(config)
    collided = frame.pivot(index="point", columns="stack", values="collided").astype(bool)
    worse = collided.index[collided[stack] & ~collided[reference]]
    reaction = frame[frame["stack"] == stack]["reaction_time_s"].dropna()
    return {"points": int(len(collided)), "curves": curves,
            "collisions": int(collided[stack].sum()),
            "reference_collisions": int(collided[reference].sum()),
            "collides_where_reference_avoids": sorted(worse.tolist()),
            "reaction_p50_s": float(reaction.median()) if len(reaction) else None}


def timed(function, *args, **kwargs) -> tuple[Any, float]:
    """`function(*args, **kwargs)` and its wall time [s]."""
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def route_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """The curved scenarios' goals (issue 17) over `episodes.csv` rows: collision and
    off-road rates, and three shares of the clean episodes (no collision, no off-road),
    each [%] of all episodes with its Wilson 95 % interval (`*_ci95`, [%]):

    - `exit_reached_pct`: the ego entered its route's exit road (`route_exit_reached`, from
      the ego's lane on the env: `envs.backends.route_exit`);
    - `progress_reach_pct`: its progress was at least `REACH_SHARE` of the time limit's
      reach (`time_limit_reach_m`), the issue's alternative for an exit beyond that reach;
    - `through_pct`: either (the issue's "the route's exit reached (or progress along the
      route >= 90 % of the time limit's reach)").

    With the episode count, the seed range and the mean progress [m].

    Raises:
        ConfigError: the rows have no `route_exit_reached` column (written before the flag).
    """
    from reflexdrive.common.validation import ConfigError
    from reflexdrive.compare.summary import flags, wilson_interval

    if "route_exit_reached" not in frame:
        raise ConfigError("episodes", "no route_exit_reached column",
                          "rerun the episodes: they predate the route exit flag")
    n = len(frame)
    clean = ~flags(frame["collided"]) & ~flags(frame["offroad"])
    exit_reached = clean & flags(frame["route_exit_reached"])
    progress = frame["progress_m"].to_numpy(dtype=float)
    progress_reach = clean & (progress >= REACH_SHARE * time_limit_reach_m(frame))
    seeds = frame["seed"].astype(int)
    out: dict[str, Any] = {"n": n, "seeds": [int(seeds.min()), int(seeds.max())]}
    for name, values in (("collisions", flags(frame["collided"])),
                         ("offroad", flags(frame["offroad"])),
                         ("exit_reached", exit_reached),
                         ("progress_reach", progress_reach),
                         ("through", exit_reached | progress_reach)):
        out[f"{name}_pct"] = 100.0 * rate(values)
        out[f"{name}_pct_ci95"] = [100.0 * bound for bound in
                                   wilson_interval(int(values.sum()), n)]
    out["mean_progress_m"] = float(frame["progress_m"].mean())
    return out


REACH_SHARE = 0.9
"""The issue's alternative to reaching the exit: progress at least this share of the time
limit's reach (`time_limit_reach_m`)."""


def time_limit_reach_m(frame: pd.DataFrame) -> np.ndarray:
    """`(n,)` how far the route reaches within each episode's time limit [m]: the traffic's
    mean speed over the episode (`traffic_mean_speed_mps`, the speed the road allowed)
    times its duration (`duration_s`: the time limit for an episode that ran out; a
    collision or off-road ends one earlier, and those never count as through); inf where
    either is missing (no traffic: only the exit counts)."""
    nan = np.full(len(frame), np.nan)
    speed = frame["traffic_mean_speed_mps"].to_numpy(dtype=float) if (
        "traffic_mean_speed_mps" in frame) else nan
    duration = frame["duration_s"].to_numpy(dtype=float) if "duration_s" in frame else nan
    return np.nan_to_num(speed * duration, nan=np.inf)
