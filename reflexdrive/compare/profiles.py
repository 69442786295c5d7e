"""`profiled` latency: each stack timed at batch size 1 on this machine, then replayed.

Before the cells of a compare run, every stack whose latency is `profiled`
(`compare.latency`) drives a few episodes of the compare's first scenario at batch size 1,
lockstep, on one CPU thread (a car's computer gives the stack a core, as `reflexdrive
profile --threads 1`), with `run.profile.profile_stack` (the first `warmup` decisions
dropped, `ProfileConfig`'s default; enough episodes to keep `PROFILE_DECISIONS`). The
profile is saved atomically in `OUT/profiles/STACK.json` (`envs.latency.save_profile`) and
every cell of the stack replays it (`profile:OUT/profiles/STACK.json`, seeded per
episode): all envs of a cell then run batched, one forward pass for all, while each
decision is charged the latency of one car's computer.

A profile already in `OUT/profiles/` is reused as it is (a resumed compare replays the
same latencies; `CompareConfig.identity` names only `profiled`, never the file). A profile
is written before any cell of its stack runs; one missing while a cell of its stack holds
a run is an error (its episodes replayed a profile that is gone).
"""

from __future__ import annotations

import math
from pathlib import Path

from reflexdrive.common.threads import cpu_threads
from reflexdrive.common.validation import ConfigError, field_default
from reflexdrive.compare.config import CompareConfig
from reflexdrive.envs.latency import save_profile
from reflexdrive.envs.scenarios import make_config
from reflexdrive.run.profile import ProfileConfig, profile_stack

PROFILE_THREADS = 1
"""torch and numba CPU threads while a stack is profiled (one core, as a car's computer)."""

PROFILE_DECISIONS = 200
"""Decisions a profile keeps at least (after the warm-up): the episodes driven are as many
as that takes at the scenario's duration, never fewer than `ProfileConfig`'s default."""


def profile_config(config: CompareConfig, stack: str) -> ProfileConfig:
    """How `stack` is profiled: its first cell's stack options (perception, controller,
    checkpoint, tick) and device, on the compare's first scenario (with its scenario
    overrides) from its first seed."""
    run = next(cell.run for cell in config.cells(replay_profiles=False) if cell.stack == stack)
    options = {name: value for name, value in run.agent_options().items()
               if name not in ("seed", "device")}
    duration_s = make_config(run.scenario, dict(run.scenario_config)).duration_s
    per_episode = max(1, math.floor(duration_s * run.policy_frequency))
    warmup = field_default(ProfileConfig, "warmup")
    episodes = max(field_default(ProfileConfig, "episodes"),
                   math.ceil((warmup + PROFILE_DECISIONS) / per_episode))
    return ProfileConfig(stack=stack, agent_options=tuple(sorted(options.items())),
                         scenario=run.scenario, episodes=episodes, seed=config.seed,
                         warmup=warmup, device=run.resolved_device,
                         scenario_config=dict(run.scenario_config))


def missing_profiles(config: CompareConfig, cells_dir: Path) -> list[str]:
    """The `profiled` stacks whose `OUT/profiles/STACK.json` is not there yet.

    Raises:
        ConfigError: a missing profile's stack already has a cell folder with a run in
            `cells_dir` (its episodes replayed a profile that is gone).
    """
    missing = [stack for stack in config.profiled_stacks()
               if not config.profile_path(stack).is_file()]
    for cell in config.cells(replay_profiles=False):
        if cell.stack in missing and (cells_dir / cell.name / "run.json").exists():
            raise ConfigError("--out", config.out, f"holds runs of {cell.stack} but not the "
                              f"profile they replayed ({config.profile_path(cell.stack)}); "
                              "use a new directory")
    return missing


def record_profiles(config: CompareConfig, stacks: list[str], progress: bool = True
                    ) -> list[Path]:
    """Profile each of `stacks` at batch size 1 and save it in `OUT/profiles/STACK.json`
    (atomically: an interrupted compare leaves no half-written profile). Returns the paths."""
    paths = []
    for stack in stacks:
        with cpu_threads(PROFILE_THREADS):
            profile = profile_stack(profile_config(config, stack), progress=progress)
        path = config.profile_path(stack)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_profile(profile, path)
        paths.append(path)
    return paths
