"""Training and evaluation of the `learned` perception's bev detector (`train_detector`,
`evaluate_detector`); the labelled frames come from `reflexdrive.train.detector_data`."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from reflexdrive.agents.staged.learned_perception import (
    LearnedPerception,
    detector_spec,
    raster_geometry,
)
from reflexdrive.common.devices import DEVICES, resolve_device
from reflexdrive.common.seed_ranges import training_meta
from reflexdrive.common.validation import (
    ConfigError,
    choice,
    integer,
    real,
    validate_fields,
)
from reflexdrive.policies.checkpoint import save_checkpoint
from reflexdrive.policies.detector import (
    BOX_FIELDS,
    CenterNetDetector,
    DetectorConfig,
    decode,
    detector_checkpoint,
    detector_loss,
    encode_targets,
)
from reflexdrive.run.results import prepare_out_dir
from reflexdrive.train.detector_data import (
    EVAL_SCENARIOS,
    SEED_STRIDE,
    TRAIN_SEED_BASE,
    data_sensors,
    evaluation_frames,
    training_frames,
)
from reflexdrive.train.versions import checkpoint_versions


@dataclass(frozen=True)
class DetectorTrainingConfig:
    """Settings of `train_detector` (validated; errors name the CLI field).

    Attributes:
        samples: training frames.
        epochs: passes over the training frames.
        batch_size: frames per Adam step.
        lr: Adam's initial learning rate (cosine-annealed to 5% of it).
        seed: seeds the data (scenario seeds, driver), the weights and the batch order.
        device: "cpu" (default), "cuda" or "auto" for training and evaluation.
        eval_episodes: held-out episodes per evaluation scenario (seeds 0..n-1).
        envs: envs simulated side by side while generating frames.
        every_ticks: keep one frame every this many ticks of each episode.
        threads: torch CPU threads.
        channels: detector trunk width.
        blocks: detector residual blocks.
    """

    samples: int = integer(4000, low=1, high=10_000_000, help="training frames")
    epochs: int = integer(8, low=1, high=10_000, help="passes over the training frames")
    batch_size: int = integer(64, low=1, high=65_536, help="frames per Adam step")
    lr: float = real(3e-3, low=0.0, high=1.0, low_inclusive=False,
                     help="Adam's initial learning rate")
    seed: int = integer(0, low=0, high=2**31 - 1, help="seeds the data, weights and batches")
    device: str = choice("cpu", choices=DEVICES, help="torch device: cpu, cuda, auto")
    eval_episodes: int = integer(24, low=0, high=100_000,
                                 help="held-out episodes per scenario, seeds 0..N-1")
    envs: int = integer(128, low=1, high=65_536, help="envs simulated side by side")
    every_ticks: int = integer(5, low=1, high=10_000, help="keep one frame every N ticks")
    threads: int = integer(1, low=1, high=1024, help="torch CPU threads")
    channels: int = integer(24, low=1, high=1024, help="detector trunk width")
    blocks: int = integer(3, low=0, high=64, help="detector residual blocks")

    def __post_init__(self) -> None:
        validate_fields(self)


# ----------------------------------------------------------------------------- metrics


def match_detections(det_position: np.ndarray, det_valid: np.ndarray,
                     label_position: np.ndarray, label_valid: np.ndarray, *,
                     range_m: float = 40.0, gate_m: float = 2.0) -> dict[str, float]:
    """Precision, recall and centre error of detections against labels (see module doc).

    Args:
        det_position: `(F, K, 2)` detected centres [m]; det_valid `(F, K)` bool.
        label_position: `(F, L, 2)` label centres [m]; label_valid `(F, L)` bool.
        range_m: only objects whose centre is this close to the ego count [m].
        gate_m: a detection and a label farther apart than this never match [m].

    Returns:
        {"precision", "recall", "mean_center_error_m", "true_positives",
         "false_positives", "false_negatives", "detections", "labels", "frames"}
        (precision / recall are 1.0 when there is nothing to count).
    """
    tp = fp = fn = 0
    errors: list[float] = []
    for f in range(len(det_valid)):
        det = det_position[f][det_valid[f]]
        lab = label_position[f][label_valid[f]]
        det_matched = np.zeros(len(det), dtype=bool)
        lab_error = np.full(len(lab), np.nan)
        if len(det) and len(lab):
            distance = np.linalg.norm(det[:, None, :] - lab[None, :, :], axis=-1)
            rows, cols = linear_sum_assignment(np.where(distance <= gate_m, distance, 1e6))
            ok = distance[rows, cols] <= gate_m
            det_matched[rows[ok]] = True
            lab_error[cols[ok]] = distance[rows[ok], cols[ok]]
        det_in = np.hypot(det[:, 0], det[:, 1]) <= range_m if len(det) else np.zeros(0, bool)
        lab_in = np.hypot(lab[:, 0], lab[:, 1]) <= range_m if len(lab) else np.zeros(0, bool)
        tp += int((det_matched & det_in).sum())
        fp += int((~det_matched & det_in).sum())
        found = ~np.isnan(lab_error)
        fn += int((~found & lab_in).sum())
        errors.extend(lab_error[found & lab_in].tolist())
    detections, labels = tp + fp, len(errors) + fn
    return {"precision": tp / detections if detections else 1.0,
            "recall": len(errors) / labels if labels else 1.0,
            "mean_center_error_m": float(np.mean(errors)) if errors else float("nan"),
            "true_positives": tp, "false_positives": fp, "false_negatives": fn,
            "detections": detections, "labels": labels, "frames": int(len(det_valid))}


def _pooled(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Totals over scenarios (precision and recall recomputed from the pooled counts)."""
    tp = sum(r["true_positives"] for r in results.values())
    fp = sum(r["false_positives"] for r in results.values())
    fn = sum(r["false_negatives"] for r in results.values())
    matched = sum(r["labels"] - r["false_negatives"] for r in results.values())
    error = sum(r["mean_center_error_m"] * (r["labels"] - r["false_negatives"])
                for r in results.values() if r["labels"] > r["false_negatives"])
    return {"precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": matched / (matched + fn) if matched + fn else 1.0,
            "mean_center_error_m": error / matched if matched else float("nan"),
            "true_positives": tp, "false_positives": fp, "false_negatives": fn,
            "detections": tp + fp, "labels": matched + fn,
            "frames": sum(r["frames"] for r in results.values())}


def _detect(detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], bev: np.ndarray,
            batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    positions, valids = [], []
    for start in range(0, len(bev), batch):
        position, valid = detect(bev[start:start + batch])
        positions.append(position)
        valids.append(valid)
    if not positions:
        return np.zeros((0, 0, 2)), np.zeros((0, 0), bool)
    return np.concatenate(positions), np.concatenate(valids)


def _evaluate_frames(detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                     frames: dict[str, dict[str, np.ndarray]], range_m: float,
                     gate_m: float) -> dict[str, Any]:
    per_scenario = {}
    for scenario, data in frames.items():
        position, valid = _detect(detect, data["bev"])
        per_scenario[scenario] = match_detections(
            position, valid, data["boxes"][..., :2], data["valid"], range_m=range_m,
            gate_m=gate_m)
    return {**_pooled(per_scenario), "scenarios": per_scenario, "range_m": range_m,
            "gate_m": gate_m}


def evaluate_detector(checkpoint_path: str | Path | None, seeds: Sequence[int], *,
                      scenarios: Sequence[str] = EVAL_SCENARIOS, device: str = "auto",
                      score_threshold: float | None = None, range_m: float = 40.0,
                      gate_m: float = 2.0, every_ticks: int = 5, cache: Path | None = None,
                      progress: bool = False) -> dict[str, Any]:
    """Precision / recall of a detector checkpoint on held-out episodes.

    Runs `LearnedPerception` (the staged stack's `learned` stage) on frames of one episode
    per seed and scenario (`evaluation_frames`) and matches its detections to the visible
    vehicles (see the module docstring for the rule).

    Args:
        checkpoint_path: detector checkpoint (None: the shipped one).
        seeds: held-out scenario seeds (below `TRAIN_SEED_BASE`).
        scenarios: straight-road scenarios, default configs.
        device: "auto", "cpu" or "cuda".
        score_threshold: detection threshold (None: the checkpoint's).
        range_m: count vehicles within this distance of the ego [m].
        gate_m: matching gate on centre distance [m].
        every_ticks: frame spacing within an episode [ticks].
        cache: folder to cache the generated frames in.

    Returns:
        {"precision", "recall", "mean_center_error_m", counts..., "scenarios": {name: {...}},
         "range_m", "gate_m", "seeds", "checkpoint", "score_threshold"}.
    """
    for seed in seeds:
        if int(seed) >= TRAIN_SEED_BASE:
            raise ConfigError("seeds", int(seed), f"held-out seeds must be < {TRAIN_SEED_BASE} "
                                                  "(training uses the seeds above)")
    perception = LearnedPerception(checkpoint=checkpoint_path, device=device,
                                   score_threshold=score_threshold, sensors=data_sensors())

    def detect(bev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        detections = perception({"bev": bev}, {})
        return detections.position, detections.valid

    frames = evaluation_frames(seeds, scenarios, every_ticks=every_ticks, cache=cache,
                               progress=progress)
    result = _evaluate_frames(detect, frames, range_m, gate_m)
    threshold = perception.score_threshold or perception.config.score_threshold
    return {**result, "seeds": [int(s) for s in seeds], "score_threshold": threshold,
            "checkpoint": perception.checkpoint_data.path}


# ----------------------------------------------------------------------------- training


def _batches(order: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(order), size):
        yield order[start:start + size]


def train_detector(config: DetectorTrainingConfig, out: str | Path,
                   checkpoint: str | Path | None = None, *, command: str = "",
                   progress: bool = True,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Generate (or reuse) the data, train the detector, evaluate it, save the checkpoint.

    Args:
        config: the settings.
        out: working folder (data cache; default checkpoint location).
        checkpoint: where to write the checkpoint (default `out/detector.pt`).
        command: the command line that ran this (stored in the checkpoint).
        progress: show progress bars.
        log: where to print one-line summaries.

    Returns:
        {"checkpoint": path, "metrics": held-out metrics, "train_seconds", "data_seconds",
         "losses": per-epoch mean losses}.
    """
    started = time.perf_counter()
    out = prepare_out_dir(out)
    path = Path(checkpoint) if checkpoint is not None else out / "detector.pt"
    device = resolve_device(config.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        frames, data = training_frames(config, out, progress=progress)
        heldout_seeds = list(range(config.eval_episodes))
        heldout = evaluation_frames(heldout_seeds, every_ticks=config.every_ticks,
                                    cache=out / "data", progress=progress)
        data_seconds = time.perf_counter() - started
        log(f"data: {len(frames['bev'])} training frames ({int(frames['valid'].sum())} "
            f"vehicles), {sum(len(f['bev']) for f in heldout.values())} held-out frames, "
            f"{data_seconds:.0f} s")

        torch.manual_seed(config.seed)
        sensors = data_sensors()
        model_config = DetectorConfig(channels=config.channels, blocks=config.blocks,
                                      geometry=raster_geometry(sensors))
        model = CenterNetDetector(model_config).to(device)
        losses = fit_detector(model, frames, config, device, progress=progress, log=log)
        train_seconds = time.perf_counter() - started - data_seconds

        model.eval()

        def detect(bev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                boxes = decode(model(torch.from_numpy(bev).to(device)), model_config)
            return boxes.position.cpu().numpy(), boxes.valid.cpu().numpy()

        metrics = _evaluate_frames(detect, heldout, range_m=40.0, gate_m=2.0)
        metrics["seeds"] = heldout_seeds
        log(f"held-out ({metrics['frames']} frames, seeds 0..{config.eval_episodes - 1}, "
            f"vehicles within 40 m): precision {metrics['precision']:.4f}, recall "
            f"{metrics['recall']:.4f}, centre error {metrics['mean_center_error_m']:.3f} m")
        meta = {
            "command": command,
            "training": asdict(config),
            "data": data,
            "seed_ranges": training_meta([[TRAIN_SEED_BASE + config.seed * SEED_STRIDE,
                                           TRAIN_SEED_BASE + (config.seed + 1) * SEED_STRIDE
                                           - 1]]),
            "metrics": metrics,
            "losses": losses,
            "seconds": {"data": round(data_seconds, 1), "train": round(train_seconds, 1),
                        "total": round(time.perf_counter() - started, 1)},
            "device": str(device),
            "versions": checkpoint_versions(),
            "created_unix_s": round(time.time()),
        }
        save_checkpoint(path, detector_checkpoint(model.cpu(), detector_spec(sensors), meta))
        log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return {"checkpoint": str(path), "metrics": metrics, "losses": losses,
                "data_seconds": data_seconds, "train_seconds": train_seconds}
    finally:
        torch.set_num_threads(threads)


def fit_detector(model: CenterNetDetector, frames: dict[str, np.ndarray],
                 config: DetectorTrainingConfig, device: str | torch.device = "cpu", *,
                 progress: bool = False,
                 log: Callable[[str], None] | None = None) -> list[dict[str, float]]:
    """Train `model` in place on labelled frames (`generate_frames`' arrays).

    Adam (`config.lr`, cosine-annealed to 5% over all steps), batches of
    `config.batch_size` in a seeded order (`config.seed`), each frame mirrored left-right
    with probability 1/2 (columns flipped, y and heading negated: the raster is symmetric
    about y = 0). Uses the torch threads as set by the caller.

    Returns:
        Per epoch, the frame-weighted mean of the total loss and of each term.
    """
    bev = torch.from_numpy(frames["bev"])
    boxes = torch.from_numpy(frames["boxes"]).float()
    valid = torch.from_numpy(frames["valid"])
    generator = torch.Generator().manual_seed(config.seed)
    steps = config.epochs * math.ceil(len(bev) / config.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, steps)
                                                                    / steps)))
    y_column = BOX_FIELDS.index("y_m")
    heading_column = BOX_FIELDS.index("heading_rad")
    mirror_sign = torch.ones(len(BOX_FIELDS))
    mirror_sign[[y_column, heading_column]] = -1.0
    history = []
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(bev), generator=generator)
        mirror = torch.rand(len(bev), generator=generator) < 0.5
        sums: dict[str, float] = {}
        count = 0
        bar = tqdm(total=len(bev), desc=f"epoch {epoch + 1}/{config.epochs}", unit="frame",
                   disable=not progress, leave=False)
        for index in _batches(order, config.batch_size):
            x = bev[index]
            b = boxes[index]
            flip = mirror[index]
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            b = torch.where(flip[:, None, None], b * mirror_sign, b)
            targets = encode_targets(b.to(device), valid[index].to(device), model.config)
            loss, parts = detector_loss(model(x.to(device)), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            n = len(index)
            count += n
            for key, value in {"loss": float(loss.detach()), **parts}.items():
                sums[key] = sums.get(key, 0.0) + value * n
            bar.update(n)
            bar.set_postfix(loss=f"{sums['loss'] / count:.3f}")
        bar.close()
        means = {key: round(value / count, 5) for key, value in sums.items()}
        history.append(means)
        if log is not None:
            log(f"epoch {epoch + 1}/{config.epochs}: " + ", ".join(
                f"{key} {value:.4f}" for key, value in means.items()))
    return history
