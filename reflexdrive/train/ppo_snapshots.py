"""Policy snapshots of a PPO run: the deterministic policy as it was along the run.

With `PPOConfig.snapshot_every = N > 0`, `train_ppo` exports the policy being trained as our
safe checkpoint (`ppo.export_policy`, i.e. `policies.registry.save_policy`, atomic,
`weights_only`-loadable, driven by `agents.end_to_end.EndToEndAgent` exactly as the final
export) to `OUT/snapshots/<policy>-<timesteps>.pt` (timesteps zero-padded to 12 digits):

- at step 0, before the first rollout (the `--init` policy as PPO received it);
- after every `N`-th update (update `k` ends at `k * n_steps * num_envs` timesteps);
- at the end of training, if that is not already one of the above.

`scripts/ppo_learning_curve.py` evaluates them (`train.learning_curve`).

Resume: a resumed run continues from its newest resume checkpoint, at `T` timesteps, and
every snapshot of the folder must be a state of the run it continues. Those at `<= T`
are (they were written before the checkpoint it resumes from) and are kept as they are,
never written twice; those at `> T` came from updates the kill threw away, which the
resumed run redoes with other random draws, so they are deleted when training starts and
written anew as the resumed run passes their timesteps. The grid of snapshots is
therefore complete and each one belongs to the run's single history. A run killed before
its first resume checkpoint starts again from `init`: its step-0 snapshot is rewritten
with the same weights.

Each snapshot's meta: `command`, `method` ("ppo"), `ppo` (the run's config), `init`,
`seed_ranges` (as the final export's) and `snapshot`: `{"timesteps", "update"}`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from stable_baselines3.common.callbacks import BaseCallback

from reflexdrive.common.seed_ranges import TRAINING, training_meta

SNAPSHOT_DIR = "snapshots"
_SNAPSHOT_NAME = re.compile(r"^(?P<policy>[a-z]+)-(?P<timesteps>\d+)\.pt$")


def snapshot_path(out_dir: str | Path, policy: str, timesteps: int) -> Path:
    """`out_dir/snapshots/<policy>-<timesteps:012d>.pt`."""
    return Path(out_dir) / SNAPSHOT_DIR / f"{policy}-{int(timesteps):012d}.pt"


def snapshots(out_dir: str | Path) -> list[tuple[int, Path]]:
    """The policy snapshots of a run folder as `(timesteps, path)`, oldest first (temporary
    files of an interrupted write are not snapshots)."""
    folder = Path(out_dir) / SNAPSHOT_DIR
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = _SNAPSHOT_NAME.match(path.name)
            if match:
                found.append((int(match.group("timesteps")), path))
    return sorted(found)


def snapshot_meta(config: Any, timesteps: int, init_command: str | None) -> dict[str, Any]:
    """The meta of one snapshot of the run `config` (a `PPOConfig`) at `timesteps`."""
    return {
        "command": config.command,
        "method": "ppo",
        "ppo": config.to_dict(),
        "init": None if config.init is None else {"path": config.init,
                                                  "command": init_command},
        "snapshot": {"timesteps": int(timesteps),
                     "update": int(timesteps) // config.steps_per_update},
        "seed_ranges": training_meta([[TRAINING.start, TRAINING.stop - 1]]),
    }


class PolicySnapshots(BaseCallback):
    """Export the policy at step 0, after every `config.snapshot_every` updates and at the
    end of training (see the module docstring; `config` is the run's `PPOConfig`,
    `export(model, path, meta)` writes the policy checkpoint: `ppo.export_policy`).

    Checked when each rollout starts, i.e. right after the update before it (as the resume
    checkpoints are), so a snapshot at `T` timesteps holds the weights a resume checkpoint
    at `T` holds."""

    def __init__(self, out_dir: str | Path, config: Any,
                 export: Callable[[Any, Path, Mapping[str, Any]], Path],
                 init_command: str | None = None):
        super().__init__()
        if config.snapshot_every < 1:
            raise ValueError("PolicySnapshots needs config.snapshot_every >= 1")
        self.out_dir = Path(out_dir)
        self.config = config
        self.export = export
        self.init_command = init_command
        self.last = 0

    def _on_training_start(self) -> None:
        now = int(self.model.num_timesteps)
        stale = [path for timesteps, path in snapshots(self.out_dir) if timesteps > now]
        if stale:
            warnings.warn(f"resuming at {now} timesteps: deleting {len(stale)} snapshot(s) "
                          f"of updates after the resume checkpoint ({stale[0].name} ...); "
                          "the resumed run writes them anew", stacklevel=2)
            for path in stale:
                path.unlink(missing_ok=True)
        # step 0 always (a fresh start: the init policy); a resume checkpoint on the grid
        # whose snapshot is missing (killed between the two writes) gets it now
        if now == 0 or (self._on_grid(now) and not self._exists(now)):
            self._save(now)
        self.last = now

    def _on_rollout_start(self) -> None:
        now = int(self.model.num_timesteps)
        if now > self.last and self._on_grid(now):
            self._save(now)
            self.last = now

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        now = int(self.model.num_timesteps)
        if not self._exists(now):
            self._save(now)

    def _exists(self, timesteps: int) -> bool:
        return snapshot_path(self.out_dir, self.config.policy, timesteps).exists()

    def _on_grid(self, timesteps: int) -> bool:
        spu = self.config.steps_per_update
        return timesteps % spu == 0 and (timesteps // spu) % self.config.snapshot_every == 0

    def _save(self, timesteps: int) -> Path:
        path = snapshot_path(self.out_dir, self.config.policy, timesteps)
        path.parent.mkdir(parents=True, exist_ok=True)
        return self.export(self.model, path,
                             snapshot_meta(self.config, timesteps, self.init_command))
