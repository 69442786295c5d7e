"""Imitation learning of the end-to-end policies from the staged stack: BC, then DAgger.

    config = ImitationConfig(policy="gru", method="dagger", episodes=1000, dagger_rounds=2)
    result = train_imitation(config, "runs/train-gru", command="reflexdrive train ...")

Pipeline (`train_imitation`), every step resumable:

1. Data (`reflexdrive.train.expert_data`): the staged stack (oracle perception) drives a
   seeded mixture of episodes on the batched backend (`expert_data.MIX_ENTRIES`: highway,
   the straight hazards, merge, roundabout, intersection, and the hazards at the protocol
   grids' ranges); every tick is recorded (bev, ego, lidar, route, expert action, episode
   starts) in shards under `OUT/data/`.
2. Behaviour cloning (phase "bc", `epochs` passes): minimise the (weighted) MSE or Huber
   loss between the policy's action and the expert's, both mapped to `[-1, 1]` per
   dimension by the policy head's bounds (`ActionHead.to_unit`), each dimension's term
   weighted (`action_weights`: steering far more, the expert steers very little). Adam,
   gradient-norm clipping, cosine learning rate per phase.
   Feed-forward policies (`cnn`, `transformer`) learn from shuffled frames; recurrent
   ones (`gru`, `lstm`) from windows of `sequence_length` consecutive ticks of one stream
   of episodes (truncated BPTT), each preceded by up to `burn_in` ticks of the same
   episode that warm the state up without counting in the loss; the state is reset
   wherever an episode starts (`episode_start`), exactly as at inference. Two guards
   against what the expert's data teaches wrongly: the ego's last command (an input)
   is shuffled across the minibatch while learning, or the policy learns to copy it
   (`command_inputs`), and steering counts only above `steer_min_speed_mps`, below
   which the expert's steering chatters between its bounds.
3. DAgger (`method="dagger"`, rounds 1..`dagger_rounds`): the policy drives
   `dagger_episodes` episodes (the expert's action instead with probability
   `beta_r = dagger_beta * dagger_beta_decay ** (r - 1)` per env and tick), the expert
   labels every visited state, the frames join the dataset, and the policy is fine-tuned
   on everything for `dagger_epochs` passes (phase "dagger-r").

Validation: whole episodes, chosen by a hash of (seed, episode id), `val_fraction` of them;
the loss on (at most `val_samples` of) them is logged every `eval_every` updates.

Logs go to TensorBoard (`OUT/tensorboard`). Every `checkpoint_every` updates and at the
end of each phase, the training state is written atomically: `OUT/state/train_state.pt`
(weights, Adam's state, the torch RNG, the position in the phase, the history; plain
tensors and containers, read back with `torch.load(weights_only=True)`) and
`OUT/state/last.pt` (a policy checkpoint of the current weights). A killed training
started again with `resume=True` (`--resume`) continues from the last one: batches are
drawn in an order that is a function of (seed, phase, epoch) only, so the result is the
one an uninterrupted run gives (bit for bit on the CPU). The final policy checkpoint holds
the command line, the config, the data's description, the metrics and the loss history.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from reflexdrive.agents.end_to_end import EndToEndAgent, policy_spec
from reflexdrive.common.devices import resolve_device
from reflexdrive.common.files import atomic_write
from reflexdrive.common.seed_ranges import training_meta
from reflexdrive.common.validation import ConfigError
from reflexdrive.policies.checkpoint import (
    CheckpointError,
    checksum,
    load_checkpoint,
)
from reflexdrive.policies.networks import DrivingPolicy
from reflexdrive.policies.registry import (
    POLICIES,
    build,
    load_policy,
    recurrent_from_cnn,
    save_policy,
)
from reflexdrive.run.results import prepare_out_dir, write_json
from reflexdrive.train.behaviour_cloning import (
    BehaviourCloning,
    Killed,
    Samples,
    cosine_lr,
    frame_samples,
    load_train_state,
    split_episodes,
    window_samples,
)
from reflexdrive.train.expert_data import (
    CollectionConfig,
    ExpertDataset,
    MissingShardError,
    collect_round,
)
from reflexdrive.train.imitation_config import ImitationConfig
from reflexdrive.train.versions import checkpoint_versions

# ----------------------------------------------------------------------------- pipeline


@dataclass
class _Run:
    """What a running `train_imitation` writes to."""

    out: Path
    config: ImitationConfig
    trainer: BehaviourCloning
    writer: Any
    command: str
    log: Callable[[str], None]
    progress: bool
    kill_after: int | None
    updates: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def state_path(self) -> Path:
        return self.out / "state" / "train_state.pt"

    def save(self) -> None:
        """Write the training state and `last.pt` (both atomically)."""
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        state = self.trainer.state_dict()
        atomic_write(self.state_path, lambda stream: torch.save(state, stream), mode="wb")
        save_policy(self.out / "state" / "last.pt", self.trainer.policy, policy_spec(),
                    {"command": self.command, "phase": self.trainer.phase,
                     "phase_step": self.trainer.phase_step,
                     "global_step": self.trainer.global_step, "metrics": self.metrics})


def _validation_sets(data: ExpertDataset, val_rows: np.ndarray, config: ImitationConfig,
                     recurrent: bool) -> dict[str, Samples]:
    """Validation samples of the expert's data ("expert") and of DAgger rounds
    ("dagger"), each at most `config.val_samples` (a seeded subset)."""
    sets = {}
    for name, rows in (("expert", val_rows[data.round[val_rows] == 0]),
                       ("dagger", val_rows[data.round[val_rows] > 0])):
        if not len(rows):
            continue
        samples = (window_samples(data, rows, config.sequence_length, config.burn_in)
                   if recurrent else frame_samples(rows))
        if len(samples) > config.val_samples:
            keep = np.sort(np.random.default_rng([config.seed, 3]).permutation(
                len(samples))[:config.val_samples])
            samples = Samples(samples.rows[keep],
                              None if samples.counts is None else samples.counts[keep])
        sets[name] = samples
    return sets


def _run_phase(run: _Run, index: int, name: str, epochs: int, data: ExpertDataset) -> None:
    """Train phase `index` from where the trainer stands to its end."""
    config, trainer = run.config, run.trainer
    recurrent = trainer.policy.is_recurrent
    train_rows, val_rows = split_episodes(data, config.val_fraction, config.seed)
    samples = (window_samples(data, train_rows, config.sequence_length, config.burn_in)
               if recurrent else frame_samples(train_rows))
    validation = _validation_sets(data, val_rows, config, recurrent)
    size = config.sequence_batch if recurrent else config.batch_size
    per_epoch = math.ceil(len(samples) / size)
    total = epochs * per_epoch
    eval_batch = max(1, 256 // config.sequence_length) if recurrent else 256
    if trainer.phase_step == 0:
        run.log(f"phase {name}: {len(train_rows)} training frames "
                f"({len(samples)} {'windows' if recurrent else 'frames'}), {len(val_rows)} "
                f"validation frames, {epochs} epochs of {per_epoch} updates")
    run.writer.add_scalar(f"data/frames_{name}", len(data), trainer.global_step)

    def validate() -> dict[str, float]:
        results = {}
        for part, part_samples in validation.items():
            result = trainer.evaluate(data, part_samples, eval_batch)
            for key, value in result.items():
                run.writer.add_scalar(f"val_{part}/{key}", value, trainer.global_step)
            results[part] = result
        return results

    bar = tqdm(total=total, initial=trainer.phase_step, desc=f"{name}", unit="update",
               disable=not run.progress, leave=False)
    order: np.ndarray | None = None
    order_epoch = -1
    try:
        while trainer.phase_step < total:
            epoch, k = divmod(trainer.phase_step, per_epoch)
            if epoch != order_epoch:
                order = np.random.default_rng([config.seed, index, epoch, 5]).permutation(
                    len(samples))
                order_epoch = epoch
            lr = cosine_lr(trainer.phase_step, total, config.lr, config.lr_final)
            losses = trainer.update(data, samples, order[k * size:(k + 1) * size], lr)
            trainer.phase_step += 1
            trainer.global_step += 1
            run.updates += 1
            sums = trainer.epoch_sums
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            sums["updates"] = sums.get("updates", 0.0) + 1
            step = trainer.global_step
            for key, value in losses.items():
                run.writer.add_scalar(f"train/{key}", value, step)
            run.writer.add_scalar("train/lr", lr, step)
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / sums['updates']:.4f}")
            if trainer.phase_step % per_epoch == 0 or trainer.phase_step == total:
                val = validate()
                entry = {"phase": name, "epoch": epoch + 1, "step": step,
                         **{f"train_{key}": round(value / sums["updates"], 6)
                            for key, value in sums.items() if key != "updates"},
                         **{f"val_{part}_{key}": round(value, 6)
                            for part, result in val.items() for key, value in result.items()}}
                trainer.history.append(entry)
                trainer.epoch_sums = {}
                run.metrics = {"phase": name, "epoch": epoch + 1, "step": step, "val": val}
                run.log(f"{name} epoch {epoch + 1}/{epochs}: train loss "
                        f"{entry.get('train_loss', float('nan')):.5f}" + "".join(
                            f", val {part} loss {result['loss']:.5f} (accel rmse "
                            f"{result['accel_rmse_mps2']:.3f} m/s^2, steer rmse "
                            f"{result['steer_rmse_rad']:.4f} rad)"
                            for part, result in val.items()))
            elif step % config.eval_every == 0:
                validate()
            if step % config.checkpoint_every == 0:
                run.save()
            if run.kill_after is not None and run.updates >= run.kill_after:
                raise Killed
    finally:
        bar.close()
    run.writer.flush()


def train_imitation(config: ImitationConfig, out: str | Path,
                    checkpoint: str | Path | None = None, *, command: str = "",
                    resume: bool = False, progress: bool = True,
                    log: Callable[[str], None] = print, max_shards: int | None = None,
                    kill_after_updates: int | None = None) -> dict[str, Any]:
    """Collect (or reuse) the expert's data, clone it, run the DAgger rounds, save the
    policy.

    Args:
        config: the settings.
        out: working folder: `data/` (shards, reused by any run with the same data
            settings), `tensorboard/`, `state/` (resumable training state and `last.pt`),
            `config.json`, and the default checkpoint location.
        checkpoint: where to write the final policy (default `OUT/<policy>.pt`).
        command: the command line that ran this (stored in the checkpoints).
        resume: continue the training whose state is in `OUT/state/` (it must have been
            started with the same settings). Without it, a folder holding a training
            state is refused.
        progress: show progress bars.
        log: where to print one-line summaries.
        max_shards: tests: collect at most this many new shards per round, then stop
            (as a killed collection would).
        kill_after_updates: tests: stop after this many updates, as if killed (nothing is
            saved beyond the periodic checkpoints).

    Returns:
        {"checkpoint": path or None when stopped early, "stopped": bool, "metrics",
         "history", "data": per-round descriptions, "seconds": {...}, "global_step"}.

    Raises:
        ConfigError: the folder holds another run's state (or one without `resume`), a
            bad `init` checkpoint.
    """
    started = time.perf_counter()
    out = prepare_out_dir(out)
    final_path = Path(checkpoint) if checkpoint is not None else out / f"{config.policy}.pt"
    state_path = out / "state" / "train_state.pt"
    state = None
    if state_path.exists():
        if not resume:
            raise ConfigError("--out", str(out), "holds a training state (state/train_state.pt)"
                              "; pass --resume to continue it, or use a new --out")
        state = load_train_state(state_path)
        if json.loads(state["identity"]) != json.loads(json.dumps(config.identity(),
                                                                  sort_keys=True)):
            raise ConfigError("--out", str(out), "holds a training run with different "
                              "settings (see its config.json); use a new --out")
    write_json(out / "config.json", {"config": asdict(config), "command": command})
    device = resolve_device(config.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    from torch.utils.tensorboard import SummaryWriter

    writer = None
    try:
        torch.manual_seed(config.seed)
        policy = _initial_policy(config)
        trainer = BehaviourCloning(policy, config, device)
        if state is not None:
            trainer.load_state_dict(state)
            log(f"resuming at phase {trainer.phase}, update {trainer.global_step}")
        writer = SummaryWriter(str(out / "tensorboard"),
                               purge_step=trainer.global_step if state is not None else None)
        run = _Run(out, config, trainer, writer, command, log, progress, kill_after_updates)
        collection = config.collection()
        data_root = out / "data"
        rounds: list[ExpertDataset] = []
        descriptions: list[dict[str, Any]] = []
        data_seconds = 0.0
        phases = config.phases()
        for index, (name, epochs) in enumerate(phases):
            clock = time.perf_counter()
            if index == 0:
                data, description = collect_round(0, config.expert_episodes, collection,
                                                  data_root, progress=progress,
                                                  max_shards=max_shards)
            else:
                data, description = _dagger_round(run, index, collection, data_root,
                                                  max_shards)
            data_seconds += time.perf_counter() - clock
            descriptions.append(description)
            if not description["complete"]:
                log(f"stopped: round {index} has {description['shards_on_disk']} of "
                    f"{description['shards']} shards; run again to resume")
                return _stopped(run, descriptions, started, data_seconds)
            if index == 0 or trainer.phase == index:
                log(f"data round {index}: {description['frames']} frames, "
                    f"{description['episodes']} episodes ({description['collect_seconds']} s "
                    f"collecting) in {description['folder']}")
            rounds.append(data)
            if trainer.phase > index:
                continue                                   # done before a resume
            if epochs > 0:
                try:
                    _run_phase(run, index, name, epochs, ExpertDataset.concat(rounds))
                except Killed:
                    return _stopped(run, descriptions, started, data_seconds)
            trainer.phase, trainer.phase_step = index + 1, 0
            run.save()
        seconds = {"data": round(data_seconds, 1),
                   "total": round(time.perf_counter() - started, 1)}
        seconds["train"] = round(seconds["total"] - seconds["data"], 1)
        meta = {"command": command, "init": _lineage(config.init),
                "training": json.loads(json.dumps(asdict(config))),
                "data": descriptions, "metrics": run.metrics or _last_metrics(trainer),
                "seed_ranges": training_meta([d["seed_range"] for d in descriptions]),
                "history": trainer.history, "global_step": trainer.global_step,
                "seconds": seconds, "device": str(device),
                "versions": checkpoint_versions(),
                "created_unix_s": round(time.time())}
        save_policy(final_path, trainer.policy, policy_spec(), meta)
        log(f"wrote {final_path} ({final_path.stat().st_size / 1e6:.2f} MB)")
        return {"checkpoint": str(final_path), "stopped": False, "metrics": meta["metrics"],
                "history": trainer.history, "data": descriptions, "seconds": seconds,
                "global_step": trainer.global_step}
    finally:
        if writer is not None:
            writer.close()
        torch.set_num_threads(threads)


def _lineage(init: str | None) -> dict[str, Any] | None:
    """How the `init` checkpoint was made: `{"path", "weights" (`checksum` of its
    weights), "command", "init", "seed_ranges"}`, its own
    `init` nested the same way, so a fine-tuned checkpoint records every command that led
    to it (None without `init`; `"missing": True` when the file is gone by now)."""
    if init is None:
        return None
    try:
        parent = load_checkpoint(init, kind="policy")
    except CheckpointError:
        return {"path": str(init), "missing": True}
    return {"path": str(init), "weights": checksum(parent.state_dict),
            "command": parent.meta.get("command"), "init": parent.meta.get("init"),
            "seed_ranges": parent.meta.get("seed_ranges")}


def _initial_policy(config: ImitationConfig) -> DrivingPolicy:
    spec = policy_spec()
    if config.init is None:
        return build(config.policy, spec["observation"], **config.policy_config)
    try:
        policy, checkpoint = load_policy(config.init, spec=spec)
    except CheckpointError as error:
        raise ConfigError("init", config.init, error.problem) from None
    if policy.name == "cnn" and POLICIES[config.policy].is_recurrent:
        return recurrent_from_cnn(config.policy, policy).train()     # warm start
    if policy.name != config.policy:
        raise ConfigError("init", config.init, f"holds a {policy.name!r} policy, not a "
                                               f"{config.policy!r} one")
    return policy.train()


def _dagger_round(run: _Run, round_: int, collection: CollectionConfig, root: Path,
                  max_shards: int | None) -> tuple[ExpertDataset, dict[str, Any]]:
    """Round `round_`'s data: recorded earlier (its learner's checksum is in the state), or
    collected now with the current weights as the learner."""
    trainer, config = run.trainer, run.config
    record = trainer.rounds.get(str(round_))
    current = checksum(trainer.policy.state_dict())
    if record is None:
        if trainer.phase != round_ or trainer.phase_step != 0:
            raise ConfigError("--out", str(run.out), f"the training state is past DAgger round "
                              f"{round_} but does not record its data; use a new --out")
        record = {"learner": current, "beta": config.beta(round_)}
        trainer.rounds[str(round_)] = record
    learner = None
    if trainer.phase == round_ and trainer.phase_step == 0 and record["learner"] == current:
        learner = EndToEndAgent(copy.deepcopy(trainer.policy), device=str(trainer.device))
    try:
        return collect_round(round_, config.dagger_episodes, collection, root, learner=learner,
                             learner_checksum=record["learner"], beta=record["beta"],
                             progress=run.progress, max_shards=max_shards)
    except MissingShardError:
        raise ConfigError("--out", str(run.out), f"the data of DAgger round {round_} is "
                          f"incomplete under {root} and the weights that collected it are "
                          "gone; use a new --out") from None


def _stopped(run: _Run, descriptions: list, started: float, data_seconds: float
             ) -> dict[str, Any]:
    seconds = {"data": round(data_seconds, 1), "total": round(time.perf_counter() - started, 1)}
    return {"checkpoint": None, "stopped": True, "metrics": run.metrics,
            "history": run.trainer.history, "data": descriptions, "seconds": seconds,
            "global_step": run.trainer.global_step}


def _last_metrics(trainer: BehaviourCloning) -> dict[str, Any]:
    return dict(trainer.history[-1]) if trainer.history else {}
