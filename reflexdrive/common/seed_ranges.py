"""Which scenario seeds each job may read: development, held-out, training.

Every scenario draws a whole episode (traffic, hazard parameters, sensor noise) from one
integer seed, so a range of seeds is a set of episodes. Three disjoint ranges keep the
figures honest:

- `DEVELOPMENT` `[0, 500_000)`: what people and code look at while building: tests, the
  demo, tuning (the staged stack's curved-road tuning seeds 4,100-4,199), checkpoint
  selection and the development evaluations (`scripts/eval_policies.py`'s `development`
  section). A figure on these seeds may have been tuned on them.
- `HELD_OUT` `[500_000, 1_000_000)`: read only by final evaluations
  (`scripts/eval_policies.py`'s `held_out` section, the README's policy table). Nothing
  that trains, fine-tunes, tunes or selects checkpoints may read it.
- `TRAINING` `[1_000_000, 2**31 - 1)`: every training episode (expert data, DAgger rounds,
  PPO rollouts, the detector's frames). Training refuses any seed outside it
  (`require_training_seeds`), so it can never read the other two.

Checkpoints record the ranges they read (`training_meta`) next to their training command.
"""

from __future__ import annotations

from dataclasses import dataclass

from reflexdrive.common.validation import ConfigError

SEED_LIMIT = 2**31 - 1
"""Largest scenario seed + 1 (highway-env and numpy take 32-bit seeds)."""


@dataclass(frozen=True)
class SeedRange:
    """Half-open range of scenario seeds `[start, stop)` with the job it is reserved for."""

    name: str
    start: int
    stop: int
    purpose: str

    def __contains__(self, seed: object) -> bool:
        return isinstance(seed, int) and self.start <= seed < self.stop

    def holds(self, first: int, last: int) -> bool:
        """Whether every seed of `[first, last]` (inclusive) lies in this range."""
        return self.start <= first <= last < self.stop

    def as_list(self) -> list[int]:
        """`[start, stop)` as a JSON-able pair."""
        return [self.start, self.stop]


DEVELOPMENT = SeedRange("development", 0, 500_000,
                        "tests, demo, tuning, checkpoint selection, development evaluations")
HELD_OUT = SeedRange("held_out", 500_000, 1_000_000,
                     "final evaluations only: no training, tuning or checkpoint selection")
TRAINING = SeedRange("training", 1_000_000, SEED_LIMIT, "training episodes only")
RANGES = (DEVELOPMENT, HELD_OUT, TRAINING)


def require_training_seeds(first: int, last: int, field: str) -> None:
    """Refuse training episodes whose seeds `[first, last]` leave `TRAINING`.

    Raises:
        ConfigError: naming `field`, the offending seeds and the allowed range.
    """
    if not TRAINING.holds(int(first), int(last)):
        raise ConfigError(field, [int(first), int(last)],
                          f"training seeds must lie in [{TRAINING.start:,}, {TRAINING.stop:,}) "
                          f"(development [{DEVELOPMENT.start:,}, {DEVELOPMENT.stop:,}) and "
                          f"held-out [{HELD_OUT.start:,}, {HELD_OUT.stop:,}) are sealed); "
                          "choose a smaller data seed")


def require_evaluation_seeds(first: int, last: int, field: str, *,
                             held_out: bool) -> None:
    """Refuse an evaluation whose seeds `[first, last]` leave its range: `HELD_OUT` for a
    final (`held_out=True`) evaluation, `DEVELOPMENT` otherwise.

    Raises:
        ConfigError: naming `field` and the allowed range.
    """
    allowed = HELD_OUT if held_out else DEVELOPMENT
    if not allowed.holds(int(first), int(last)):
        raise ConfigError(field, [int(first), int(last)],
                          f"{allowed.name} seeds lie in [{allowed.start:,}, {allowed.stop:,})")


def training_meta(read: list[list[int]]) -> dict:
    """What a checkpoint records about seeds: the inclusive `[first, last]` ranges its
    training read, and the sealed ranges it did not."""
    return {"read": [[int(a), int(b)] for a, b in read],
            "sealed": {r.name: r.as_list() for r in (DEVELOPMENT, HELD_OUT)}}
