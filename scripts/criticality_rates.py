"""How many hazard episodes are critical at onset, per scenario, for the staged stack and
for an ego that holds its speed (`envs.criticality`; docs/ARCHITECTURE.md, "Criticality").

    .venv/bin/python scripts/criticality_rates.py --seed 90000 --episodes 40 [--set KEY=VALUE]

One batched env of `episodes` worlds per scenario and driver (oracle perception, lockstep
clock with zero latency for the staged stack), each world's first episode read at its end.
Prints one JSON line per (scenario, driver): the critical fraction and the onset gap,
TTC and required-deceleration quantiles.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from reflexdrive.agents.registry import make_agent
from reflexdrive.envs.gym.vector import BatchedDrivingEnv

SCENARIOS = ("lead-brake", "cut-in", "stopped-vehicle")


def first_episodes(scenario: str, driver: str, seeds: list[int], overrides: dict) -> dict:
    """`info["hazard"]` of each seed's episode at its end, as arrays."""
    env = BatchedDrivingEnv(len(seeds), scenario, observations=False, latency="fixed:0",
                            scenario_config=overrides or None)
    agent = make_agent("staged") if driver == "staged" else None
    obs, info = env.reset(seed=seeds)
    if agent is not None:
        agent.reset(np.ones(len(seeds), dtype=bool))
    done = np.zeros(len(seeds), dtype=bool)
    final: dict[str, np.ndarray] = {}
    while not done.all():
        actions = (agent.act(obs, info).actions if agent is not None
                   else np.zeros((len(seeds), 2)))
        obs, _, terminated, truncated, info = env.step(actions)
        ended = (terminated | truncated) & ~done
        for key, values in info["hazard"].items():
            final.setdefault(key, np.array(values, copy=True))[ended] = values[ended]
        done |= ended
    return final


def summary(hazard: dict) -> dict:
    def quantiles(name):
        values = hazard[name][np.isfinite(hazard[name])]
        return [round(float(q), 2) for q in np.quantile(values, [0.0, 0.5, 1.0])] \
            if values.size else []

    return {"episodes": int(hazard["critical"].size),
            "critical": int(hazard["critical"].sum()),
            "no_onset": int(np.isinf(hazard["onset_s"]).sum()),
            "gap_m_min_med_max": quantiles("onset_gap_m"),
            "ttc_s_min_med_max": quantiles("onset_ttc_s"),
            "required_decel_min_med_max": quantiles("required_decel_mps2")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=90000)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--drivers", default="staged,constant-speed")
    parser.add_argument("--set", action="append", default=[],
                        help="scenario config override KEY=JSON (e.g. gap_m=[5,15])")
    args = parser.parse_args()
    overrides = {key: json.loads(value) for key, value in
                 (item.split("=", 1) for item in args.set)}
    seeds = list(range(args.seed, args.seed + args.episodes))
    for scenario in args.scenarios.split(","):
        for driver in args.drivers.split(","):
            row = summary(first_episodes(scenario, driver, seeds, overrides))
            print(json.dumps({"scenario": scenario, "driver": driver,
                              "seeds": f"{seeds[0]}-{seeds[-1]}", **row}), flush=True)


if __name__ == "__main__":
    main()
