"""The learned perception: detector model, decode/encode, safe checkpoints, training, CLI."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PicklePayload
from reflexdrive.agents.staged.learned_perception import (
    LearnedPerception,
    detector_spec,
    raster_geometry,
)
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.gym.vector import BatchedDrivingEnv
from reflexdrive.envs.sensors import BEV_VEHICLES
from reflexdrive.policies.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_spec,
    load_checkpoint,
    save_checkpoint,
)
from reflexdrive.policies.detector import (
    SHIPPED_CHECKPOINT,
    CenterNetDetector,
    DetectorConfig,
    DetectorOutput,
    LossWeights,
    RasterGeometry,
    decode,
    detector_checkpoint,
    encode_targets,
    load_detector,
)

from reflexdrive.cli import main
from reflexdrive.common.validation import ConfigError
from reflexdrive.train.detector import DetectorTrainingConfig, fit_detector, match_detections
from reflexdrive.train.detector_data import (
    data_sensors,
    generate_frames,
    label_boxes,
    visible_objects,
)

GEOMETRY = RasterGeometry()          # the default SensorConfig's raster: 64 x 64 px, 1 m/px


def small_config(**changes) -> DetectorConfig:
    return DetectorConfig(**{"channels": 8, "blocks": 1, **changes})


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_output_shapes(stride):
    model = CenterNetDetector(small_config(stride=stride)).eval()
    bev = torch.zeros(3, 4, 64, 64, dtype=torch.uint8)
    out = model(bev)
    h = 64 // stride
    assert out.heatmap.shape == (3, 1, h, h)
    assert out.offset.shape == out.size.shape == out.heading.shape == (3, 2, h, h)
    boxes = decode(out, model.config)
    k = model.config.max_detections
    assert boxes.score.shape == boxes.heading.shape == boxes.valid.shape == (3, k)
    assert boxes.position.shape == boxes.size.shape == (3, k, 2)
    with pytest.raises(ValueError, match="bev must be"):
        model(torch.zeros(3, 4, 32, 64, dtype=torch.uint8))


@pytest.mark.parametrize("cls, kwargs, message", [
    (DetectorConfig, {"stride": True}, "stride=True is invalid: allowed values are 1, 2, 4"),
    (DetectorConfig, {"stride": 2.0}, "stride=2.0 is invalid: allowed values are 1, 2, 4"),
    (DetectorConfig, {"channels": "3"}, "channels='3' is invalid: must be an integer >= 1"),
    (DetectorConfig, {"blocks": 3.0}, "blocks=3.0 is invalid: must be an integer >= 0"),
    (DetectorConfig, {"score_threshold": True}, "score_threshold=True is invalid: must be a "
                                                "number"),
    (DetectorConfig, {"score_threshold": 1.0}, "score_threshold=1.0 is invalid: must lie in "
                                               "(0, 1)"),
    (DetectorConfig, {"stride": 4, "geometry": {"range_m": 46.0}},
     "stride=4 is invalid: must divide the raster's 62 x 64 px"),
    (RasterGeometry, {"m_per_px": "1"}, "geometry.m_per_px='1' is invalid: must be a number"),
    (RasterGeometry, {"range_m": 48.5},
     "geometry.range_m=48.5 is invalid: must be a whole number of 1.0 m pixels"),
    (LossWeights, {"size": True}, "loss_weights.size=True is invalid: must be a number"),
])
def test_configs_reject_bools_strings_and_bad_values(cls, kwargs, message):
    with pytest.raises(ConfigError) as error:
        cls(**kwargs)
    assert str(error.value) == message


def test_default_detector_is_small():
    model = CenterNetDetector()
    size_mb = sum(p.numel() * p.element_size() for p in model.state_dict().values()) / 1e6
    assert size_mb < 1.0


def _output(h: int, w: int, cells: dict[tuple[int, int], tuple]) -> DetectorOutput:
    """Maps with heatmap logits -20 except at `cells`: {(i, j): (score, du, dv)}."""
    heat = torch.full((1, 1, h, w), -20.0)
    offset = torch.zeros(1, 2, h, w)
    size = torch.zeros(1, 2, h, w)
    heading = torch.zeros(1, 2, h, w)
    heading[:, 1] = 1.0                                             # cos = 1: heading 0
    for (i, j), (score, du, dv) in cells.items():
        heat[0, 0, i, j] = math.log(score / (1 - score))
        offset[0, :, i, j] = torch.tensor([du, dv])
        size[0, :, i, j] = torch.tensor([5.0, 2.0])
    return DetectorOutput(heat, offset, size, heading)


def test_decode_gives_the_exact_metric_centre():
    config = DetectorConfig(stride=2)
    out = _output(32, 32, {(5, 20): (0.9, 0.3, -0.7)})
    boxes = decode(out, config)
    assert int(boxes.valid.sum()) == 1
    # u = (5 + 0.5) * 2 + 0.3 = 11.3 px -> x = 48 - 11.3; v = 20.5 * 2 - 0.7 = 40.3 -> y.
    assert boxes.position[0, 0].tolist() == pytest.approx([48.0 - 11.3, -32.0 + 40.3], abs=1e-5)
    assert boxes.size[0, 0].tolist() == pytest.approx([5.0, 2.0])
    assert float(boxes.heading[0, 0]) == pytest.approx(0.0)
    # Stride 1, zero offset: exactly the pixel centre of the raster conventions.
    config1 = DetectorConfig(stride=1)
    for r, c in [(0, 0), (63, 63), (47, 30)]:
        boxes = decode(_output(64, 64, {(r, c): (0.8, 0.0, 0.0)}), config1)
        assert boxes.position[0, 0].tolist() == pytest.approx(
            [48.0 - (r + 0.5), -32.0 + (c + 0.5)], abs=1e-5)


def test_decode_peaks_threshold_and_top_k():
    config = DetectorConfig(stride=2, score_threshold=0.3)
    cells = {(10, 10): (0.9, 0, 0), (10, 11): (0.8, 0, 0),     # neighbours: one peak
             (10, 13): (0.7, 0, 0), (20, 5): (0.6, 0, 0),      # two cells away: its own
             (25, 25): (0.2, 0, 0)}                            # below the threshold
    boxes = decode(_output(32, 32, cells), config)
    scores = boxes.score[0][boxes.valid[0]].tolist()
    assert scores == pytest.approx([0.9, 0.7, 0.6], abs=1e-5)
    boxes = decode(_output(32, 32, cells), config, max_detections=2)
    assert boxes.valid.shape == (1, 2) and boxes.score[0].tolist() == pytest.approx([0.9, 0.7])
    boxes = decode(_output(2, 2, {(0, 0): (0.9, 0, 0)}), config)   # K > cells: padded
    assert boxes.valid.shape == (1, config.max_detections) and int(boxes.valid.sum()) == 1
    assert not boxes.position[0, 1:].any()


def test_encode_decode_round_trip():
    config = DetectorConfig(stride=2)
    boxes = torch.tensor([[
        [30.2, -6.1, 5.0, 2.0, 0.05],
        [4.7, 2.3, 4.5, 1.8, -0.2],
        [-12.9, -1.6, 5.0, 2.0, 3.0],
        [-17.6, 6.0, 5.0, 2.0, 0.0],        # centre behind the raster (x < -16): clamped cell
        [0.0, 0.0, 0.0, 0.0, 0.0],          # padding
    ]])
    valid = torch.tensor([[True, True, True, True, False]])
    targets = encode_targets(boxes, valid, config)
    assert targets.heatmap.shape == (1, 1, 32, 32)
    assert float(targets.heatmap.max()) == 1.0
    h, w = config.output_shape
    flat = targets.heatmap.reshape(-1)
    assert flat[targets.index[0, :4]].tolist() == [1.0] * 4
    assert int(targets.index[0, 3]) // w == h - 1                  # the last row of cells

    heat = torch.logit(targets.heatmap.clamp(1e-6, 1 - 1e-6))
    maps = {name: torch.zeros(1, 2, h * w) for name in ("offset", "size", "heading")}
    for name in maps:
        maps[name][0][:, targets.index[0, :4]] = getattr(targets, name)[0, :4].T
    out = DetectorOutput(heat, *(maps[name].reshape(1, 2, h, w)
                                 for name in ("offset", "size", "heading")))
    decoded = decode(out, config, score_threshold=0.99)
    assert int(decoded.valid.sum()) == 4
    found = decoded.position[0, :4]
    for box in boxes[0, :4]:
        k = int(torch.argmin((found - box[:2]).norm(dim=-1)))
        assert found[k].tolist() == pytest.approx(box[:2].tolist(), abs=1e-4)
        assert decoded.size[0, k].tolist() == pytest.approx(box[2:4].tolist(), abs=1e-5)
        assert math.remainder(float(decoded.heading[0, k]) - float(box[4]), 2 * math.pi) \
            == pytest.approx(0.0, abs=1e-5)


# ----------------------------------------------------------------------------- checkpoints


def _checkpoint(path: Path, **changes) -> Path:
    torch.manual_seed(0)
    model = CenterNetDetector(small_config())
    spec = detector_spec(SensorConfig())
    checkpoint = detector_checkpoint(model, spec, {"command": "reflexdrive train -x",
                                                   "metrics": {"precision": 0.97}})
    if changes:
        checkpoint = Checkpoint(**{**checkpoint.__dict__, **changes})
    return save_checkpoint(path, checkpoint)


def test_checkpoint_round_trip(tmp_path):
    path = _checkpoint(tmp_path / "sub" / "detector.pt")
    assert not [p for p in path.parent.iterdir() if p.name != "detector.pt"]   # no temp left
    model, checkpoint = load_detector(path)
    assert checkpoint.kind == "detector" and checkpoint.name == "centernet"
    assert checkpoint.meta["command"] == "reflexdrive train -x"
    assert checkpoint.meta["metrics"] == {"precision": 0.97}
    assert "torch" in checkpoint.meta["versions"]
    assert checkpoint.spec == detector_spec(SensorConfig())
    torch.manual_seed(0)
    original = CenterNetDetector(small_config()).eval()
    bev = (torch.rand(2, 4, 64, 64) > 0.9).to(torch.uint8) * 255
    with torch.inference_mode():
        for a, b in zip(model(bev), original(bev)):
            assert torch.equal(a, b)
    assert not model.training
    check_spec(checkpoint, detector_spec(SensorConfig(max_objects=5, bev_occlusion=False)))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such file") as error:
        load_detector(tmp_path / "nope.pt")
    assert str(tmp_path / "nope.pt") in str(error.value)


@pytest.mark.parametrize("keep", [0, 10, 0.5, -20])
def test_truncated_checkpoint(tmp_path, keep):
    path = _checkpoint(tmp_path / "d.pt")
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_corrupt_weights_fail_the_checksum(tmp_path):
    path = _checkpoint(tmp_path / "d.pt")
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["heads.bias"][0] += 1.0          # bytes changed, checksum kept
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="checksum"):
        load_detector(path)


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pt"
    torch.save({"format": "reflexdrive-checkpoint", "state_dict": {},
                "meta": PicklePayload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="weights_only") as error:
        load_detector(path)
    assert str(path) in str(error.value) and "nothing was run" in str(error.value)
    assert not marker.exists()


def test_foreign_file_kind_and_model_are_rejected(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a reflexdrive checkpoint"):
        load_detector(plain)
    policy = _checkpoint(tmp_path / "policy.pt", kind="policy")
    with pytest.raises(CheckpointError, match="holds a 'policy' model .* expected a 'detector'"):
        load_detector(policy)
    other = _checkpoint(tmp_path / "other.pt", name="yolo")
    with pytest.raises(CheckpointError, match="model 'yolo' is unknown"):
        load_detector(other)
    bad = _checkpoint(tmp_path / "bad.pt", config={**small_config().to_dict(), "stride": 3})
    with pytest.raises(CheckpointError, match="invalid detector config: stride=3"):
        load_detector(bad)
    wrong = _checkpoint(tmp_path / "wrong.pt", config=small_config(channels=16).to_dict())
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_detector(wrong)


def test_spec_mismatch_is_rejected(tmp_path):
    path = _checkpoint(tmp_path / "d.pt")
    _, checkpoint = load_detector(path)
    with pytest.raises(CheckpointError, match=r"sensors.range_m: checkpoint 48.0, env 32.0"):
        check_spec(checkpoint, detector_spec(SensorConfig(range_m=32.0)))
    with pytest.raises(CheckpointError, match=r"observation.bev.shape"):
        LearnedPerception(checkpoint=path, device="cpu",
                          sensors=SensorConfig(bev_half_width_m=16.0))
    perception = LearnedPerception(checkpoint=path, device="cpu")
    with pytest.raises(CheckpointError, match="trained on uint8 bev rasters"):
        perception({"bev": np.zeros((1, 4, 32, 64), np.uint8)}, {})


# ----------------------------------------------------------------------------- data, training


def test_visible_objects_and_labels():
    vehicles = np.zeros((1, 64, 64), np.uint8)
    objects = np.zeros((1, 3, 8), np.float32)
    objects[0, :, 5:7] = (5.0, 2.0)
    objects[0, 0, :2] = (20.0, -4.0)            # drawn below
    objects[0, 1, :2] = (30.0, 4.0)             # not drawn (occluded)
    objects[0, 2, :2] = (-18.0, 0.0)            # its front reaches the last row: drawn
    rows = np.arange(64)
    x = 48.0 - (rows + 0.5)
    y = np.arange(64) - 31.5
    inside = (np.abs(x[:, None] - 20.0) <= 2.5) & (np.abs(y[None, :] + 4.0) <= 1.0)
    vehicles[0][inside] = 255
    vehicles[0, 63, 31:33] = 255                # x = -15.5, |y| <= 0.5
    valid = np.ones((1, 3), bool)
    assert visible_objects(vehicles, objects, valid, GEOMETRY).tolist() == [[True, False, True]]
    bev = np.zeros((1, 4, 64, 64), np.uint8)
    bev[:, BEV_VEHICLES] = vehicles
    boxes, mask = label_boxes(bev, objects, valid, GEOMETRY, slots=4)
    assert mask.tolist() == [[True, True, False, False]]
    assert boxes[0, :2, :2].tolist() == [[20.0, -4.0], [-18.0, 0.0]]


def test_match_detections():
    det = np.array([[[10.0, 0.0], [30.5, 4.0], [45.0, 0.0], [0.0, 20.0]]])
    det_valid = np.array([[True, True, True, True]])
    lab = np.array([[[10.5, 0.0], [30.0, 4.0], [-5.0, 4.0]]])
    lab_valid = np.array([[True, True, True]])
    result = match_detections(det, det_valid, lab, lab_valid, range_m=40.0, gate_m=2.0)
    # Within 40 m: detections 0, 1 match, 3 does not (2 is beyond range); label 2 is missed.
    assert result["true_positives"] == 2 and result["false_positives"] == 1
    assert result["false_negatives"] == 1
    assert result["precision"] == pytest.approx(2 / 3) and result["recall"] == pytest.approx(2 / 3)
    assert result["mean_center_error_m"] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def scene():
    """Four held-out Highway episodes (seeds 11-14) one second in: env, obs, info."""
    seeds = [11, 12, 13, 14]
    env = BatchedDrivingEnv(num_envs=len(seeds), scenario="highway", sensors=data_sensors())
    obs, info = env.reset(seed=seeds)
    for _ in range(10):
        obs, *_, info = env.step(np.zeros((len(seeds), 2)))
    return env, obs, info


def test_raster_conventions_match_the_ground_truth(scene):
    env, obs, info = scene
    geometry = raster_geometry(env.sensor_config)
    boxes, valid = label_boxes(obs["bev"], info["gt_objects"], info["gt_valid"], geometry)
    checked = 0
    for n in range(len(boxes)):
        lit = obs["bev"][n, BEV_VEHICLES] > 0
        for x, y, length, width, _ in boxes[n][valid[n]]:
            if not (-13.5 < x < 45.5):
                continue                      # cut by the raster's edge
            u, v = geometry.to_raster(x, y)
            r0, c0 = int(u - length / 2), int(v - width / 2)
            window = lit[max(r0 - 1, 0):r0 + int(length) + 2, max(c0 - 1, 0):c0 + int(width) + 2]
            rows, cols = np.nonzero(window)
            cx, cy = geometry.to_metric(rows.mean() + max(r0 - 1, 0) + 0.5,
                                        cols.mean() + max(c0 - 1, 0) + 0.5)
            assert abs(cx - x) <= 0.5 and abs(cy - y) <= 0.5
            checked += 1
    assert checked >= 3


def test_tiny_training_run_reduces_the_loss():
    frames = generate_frames("highway", iter(range(1_000_000, 1_000_100)), count=32, envs=16,
                             every_ticks=2, driver_seed=0)
    assert frames["bev"].shape == (32, 4, 64, 64) and frames["valid"].any()
    torch.manual_seed(0)
    model = CenterNetDetector(small_config())
    config = DetectorTrainingConfig(samples=32, epochs=6, batch_size=16, lr=1e-2)
    history = fit_detector(model, frames, config)
    assert len(history) == 6
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["heatmap"] < history[0]["heatmap"]


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.exists(), reason="no shipped detector checkpoint")
def test_learned_perception_finds_the_vehicles(scene):
    assert SHIPPED_CHECKPOINT.stat().st_size < 5e6
    env, obs, info = scene
    perception = LearnedPerception(device="cpu", sensors=env.sensor_config)
    assert perception.name == "learned"
    detections = perception(obs, info)
    n, k = detections.valid.shape
    assert n == 4 and detections.position.shape == (n, k, 2)
    assert np.isnan(detections.velocity).all() and (detections.object_id == -1).all()
    boxes, valid = label_boxes(obs["bev"], info["gt_objects"], info["gt_valid"],
                               raster_geometry(env.sensor_config))
    labels = 0
    for i in range(n):
        found = detections.position[i][detections.valid[i]]
        truth = boxes[i][valid[i]]
        near = truth[np.hypot(truth[:, 0], truth[:, 1]) <= 40.0]
        labels += len(near)
        for x, y, *_ in near:                                   # every vehicle is found...
            assert len(found) and np.hypot(*(found - [x, y]).T).min() < 1.0, (i, x, y)
        for x, y in found[np.hypot(found[:, 0], found[:, 1]) <= 40.0]:   # ... and only those
            assert np.hypot(*(truth[:, :2] - [x, y]).T).min() < 2.0, (i, x, y)
        sizes = detections.size[i][detections.valid[i]]
        assert np.allclose(sizes, [5.0, 2.0], atol=0.5)
    assert labels >= 4


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("extra, needle", [
    (["--target", "nope"], "target='nope' is invalid: allowed values are detector"),
    (["--epochs", "0"], "epochs=0 is invalid"),
    (["--samples", "many"], "samples='many' is invalid: must be a number"),
    (["--device", "tpu"], "device='tpu' is invalid: allowed values are auto, cpu, cuda"),
    (["--lr", "-1"], "lr=-1.0 is invalid"),
])
def test_train_cli_bad_values(capsys, tmp_path, extra, needle):
    code = main(["train", "--out", str(tmp_path / "x"), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("reflexdrive: error: ") and err.count("\n") == 1, err
    assert needle in err and "Traceback" not in err


def test_train_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for needle in ("--target", "detector", "--samples", "--epochs", "--seed", "--device",
                   "--out", "--checkpoint", "held-out"):
        assert needle in out


def test_shipped_checkpoint_records_how_it_was_made():
    if not SHIPPED_CHECKPOINT.exists():
        pytest.skip("no shipped detector checkpoint")
    checkpoint = load_checkpoint(SHIPPED_CHECKPOINT, kind="detector")
    command = checkpoint.meta["command"]
    assert command.startswith("reflexdrive train --target detector")
    assert "--checkpoint policies/checkpoints/detector.pt" in command
    metrics = checkpoint.meta["metrics"]
    assert metrics["precision"] >= 0.95 and metrics["recall"] >= 0.95
    assert os.path.getsize(SHIPPED_CHECKPOINT) < 5e6
