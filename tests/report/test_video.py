"""Videos: one frame per substep, readable MP4s, the episode unchanged by filming, the
overlays placed where the ego frame says, saliency equal to per-component gradients."""

from __future__ import annotations

import dataclasses
import math

import imageio.v2 as imageio
import numpy as np
import pygame
import pytest
import torch
from highway_env.road.graphics import WorldSurface
from reflexdrive.agents.end_to_end import build_end_to_end, policy_spec
from reflexdrive.agents.registry import make_agent
from reflexdrive.agents.staged.types import Detections, Plan
from reflexdrive.envs.scenarios import SCENARIOS
from reflexdrive.envs.sensors import to_ego_frame
from reflexdrive.policies.registry import build, save_policy

from reflexdrive.common.validation import ConfigError
from reflexdrive.compare.config import CompareConfig
from reflexdrive.report import overlays
from reflexdrive.report.video import (
    VideoConfig,
    record_compare_videos,
    record_episode,
    record_videos,
    saliency_map,
    video_frames,
    video_name,
)
from reflexdrive.run.runner import RunConfig, run

SHORT = {"duration_s": 4.0, "onset_s": (1.0, 1.5)}
"""A 4 s lead-brake episode (200 substeps at 50 Hz) whose lead brakes early."""
SMALL_VIDEO = VideoConfig(scene_size=(480, 192), panel_height=160, scaling_px_per_m=6.0)


def test_video_name():
    assert (video_name("staged", "lead-brake", "realtime", 3)
            == "staged_lead-brake_realtime_seed3.mp4")
    assert (video_name("cnn", "cut-in", "lockstep", 0, extra_latency_s=0.1)
            == "cnn_cut-in_lockstep_extra100ms_seed0.mp4")
    assert (video_name("staged", "cut-in", "realtime", 1, 0.1, execution="pipelined")
            == "staged_cut-in_realtime_pipelined_extra100ms_seed1.mp4")


def test_ego_to_world_inverts_the_sensors_ego_frame():
    pose = overlays.Pose(np.array([100.0, 8.0]), math.pi / 2)    # heading +y (down on screen)
    # 10 m ahead is +10 m in world y; 2 m to the ego's +y side is -2 m in world x
    np.testing.assert_allclose(overlays.ego_to_world(np.array([[10.0, 0.0], [0.0, 2.0]]), pose),
                               [[100.0, 18.0], [98.0, 8.0]], atol=1e-12)
    rng = np.random.default_rng(0)
    pose = overlays.Pose(rng.normal(size=2) * 50, 0.3)
    points = rng.normal(size=(5, 2)) * 20
    back = to_ego_frame(overlays.ego_to_world(points, pose)[None], pose.position[None],
                        np.array([pose.heading]))[0]
    np.testing.assert_allclose(back, points, atol=1e-9)


def test_box_corners_by_hand():
    corners = overlays.box_corners(np.array([[1.0, 2.0]]), np.array([[4.0, 2.0]]),
                                   np.array([math.pi / 2]))[0]
    np.testing.assert_allclose(corners, [[0.0, 4.0], [2.0, 4.0], [2.0, 0.0], [0.0, 0.0]],
                               atol=1e-12)


def test_plan_is_drawn_at_the_pixels_of_its_world_points():
    pygame.init()
    surface = WorldSurface((200, 100), 0, pygame.Surface((200, 100)))
    surface.scaling = 5.0
    surface.move_display_window_to(np.array([50.0, 0.0]))        # origin (30, -10) m
    path = np.stack([np.linspace(0, 20, 21), np.zeros(21)], -1)[None]   # 20 m straight ahead
    plan = Plan(acceleration=np.zeros(1), target_speed=np.zeros(1), path=path,
                path_speed=np.zeros((1, 21)), lateral_target=np.zeros(1),
                lane_change=np.zeros(1, int), emergency=np.zeros(1, bool),
                lead_track=-np.ones(1, int), lead_gap=np.full(1, np.inf))
    overlays.draw_plan(surface, plan, 0, overlays.Pose(np.array([40.0, 2.0]), 0.0))
    # world (40..60, 2) -> pixels x = 5 * (40 - 30) = 50 ... 150, y = 5 * (2 + 10) = 60
    assert tuple(surface.get_at((100, 60)))[:3] == overlays.PLAN_COLOR
    assert tuple(surface.get_at((100, 40)))[:3] != overlays.PLAN_COLOR


def test_clock_timeline_labels_its_marker_brake_onset(monkeypatch):
    """The marker is `brake_onset` (the threshold measure), so its label says so."""
    pygame.init()
    said = []
    draw_text = overlays.text
    monkeypatch.setattr(overlays, "text",
                        lambda surface, position, message, *args: said.append(message)
                        or draw_text(surface, position, message, *args))
    view = overlays.ClockView(
        time_s=2.0, duration_s=4.0, substep=100, tick=20, mode="realtime", observed=True,
        decision_t_s=2.0, latency_s=0.02, stage_latency_s={}, lands_s=2.02, budget_s=0.1,
        overrun=False, dropped=0, accel_mps2=-3.0, steer_rad=0.0, speed_mps=20.0,
        onset_s=1.0, brake_onset_s=0.25)
    surface = pygame.Surface((640, 200))
    overlays.draw_clock(surface, pygame.Rect(0, 0, 640, 200), view)
    assert "brake onset +250 ms" in said
    assert not any("react" in message for message in said)
    said.clear()
    overlays.draw_clock(surface, pygame.Rect(0, 0, 640, 200),
                        overlays.ClockView(**{**view.__dict__, "brake_onset_s": None}))
    assert not any("brake onset" in message for message in said)


def test_saliency_is_the_sum_of_per_component_gradients():
    torch.manual_seed(0)
    spec = policy_spec()
    policy = build("gru", spec["observation"], hidden_size=16,
                   encoder={"channels": [8, 8, 8], "bev_features": 32, "features": 32}).eval()
    rng = np.random.default_rng(1)
    bev = (rng.random((1, 4, 64, 64)) > 0.7).astype(np.uint8) * 255
    ego = np.array([[22, 0, 0, 0.3, 0, 1, 4, 1]], np.float32)
    lidar = np.stack([rng.uniform(2, 48, (1, 64)), rng.normal(0, 8, (1, 64))],
                     axis=-1).astype(np.float32)
    state = (torch.randn(1, 1, 16),)
    heat = saliency_map(policy, bev, ego, state, lidar)
    x = torch.tensor(bev, dtype=torch.float32) / 255.0
    x.requires_grad_(True)
    unit = policy.head.to_unit(policy({"bev": x, "ego": torch.tensor(ego),
                                       "lidar": torch.tensor(lidar)}, state)[0])
    grads = [torch.autograd.grad(unit[0, i], x, retain_graph=True)[0] for i in range(2)]
    expected = (grads[0].abs() + grads[1].abs())[0].amax(0).numpy()
    assert heat.shape == (64, 64) and heat.max() == pytest.approx(1.0)
    np.testing.assert_allclose(heat, expected / expected.max(), atol=1e-5)


def test_saliency_of_a_timing_reading_policy_holds_the_timing_fixed():
    torch.manual_seed(0)
    policy = build("cnn", policy_spec()["observation"],
                   encoder={"channels": [8, 8], "bev_features": 16, "features": 16,
                            "timing_hidden": 8}).eval()
    rng = np.random.default_rng(1)
    bev = (rng.random((1, 4, 64, 64)) > 0.7).astype(np.uint8) * 255
    ego = np.array([[22, 0, 0, 0.3, 0, 1, 4, 1]], np.float32)
    lidar = np.stack([rng.uniform(2, 48, (1, 64)), rng.normal(0, 8, (1, 64))],
                     axis=-1).astype(np.float32)
    timing = np.array([[0.25, -4.0, 0.01, 0.15]], np.float32)
    heat = saliency_map(policy, bev, ego, None, lidar, timing=timing)
    assert heat.shape == (64, 64) and heat.max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="observation 'timing' is missing"):
        saliency_map(policy, bev, ego, None, lidar)


def test_staged_video_has_a_frame_per_substep_and_the_run_episode(tmp_path):
    agent = make_agent("staged")
    result = record_episode(agent, "lead-brake", 2, tmp_path / "staged.mp4",
                            latency="fixed:0.03", scenario_config=SHORT, video=SMALL_VIDEO)
    substeps = round(result.metrics.duration_s * 50)
    assert result.frames == substeps == 200                   # no collision: the whole 4 s
    assert video_frames(result.path) == substeps
    assert result.fps == 50 and result.simulated_s == pytest.approx(4.0)
    frame = imageio.get_reader(result.path).get_data(100)
    assert frame.shape == (192 + 160, 480, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["staged.mp4"]   # no temporary left
    # filming changes nothing: the same episode as `reflexdrive run` on highway-env
    episodes, _ = run(RunConfig(scenario="lead-brake", stack="staged", seed=2, episodes=1,
                                latency="fixed:0.03", backend="highway",
                                scenario_config=SHORT), progress=False)
    row = episodes.iloc[0]
    for name in ("reaction_time_s", "min_ttc_s", "progress_m", "ticks", "collided"):
        assert getattr(result.metrics, name) == pytest.approx(row[name], rel=1e-12), name


def test_end_to_end_video_with_saliency_and_overruns(tmp_path):
    spec = policy_spec()
    torch.manual_seed(0)
    checkpoint = save_policy(tmp_path / "cnn.pt", build("cnn", spec["observation"]), spec)
    agent = build_end_to_end("cnn", checkpoint=checkpoint, device="cpu")
    result = record_episode(agent, "lead-brake", 0, tmp_path / "videos" / "cnn.mp4",
                            latency="fixed:0.2", extra_latency_s=0.05,
                            scenario_config={**SHORT, "duration_s": 2.0}, video=SMALL_VIDEO)
    assert result.frames == round(result.metrics.duration_s * 50)
    assert video_frames(result.path) == result.frames
    assert result.metrics.latency_p50_s == pytest.approx(0.25)      # 0.2 s + 0.05 s extra
    assert result.metrics.overrun_rate == 1.0 and result.metrics.dropped_frames > 0
    assert agent.explain is False                             # restored after filming
    # the inset (right of the clock panel) shows the bev under the saliency map
    frame = imageio.get_reader(result.path).get_data(result.frames - 1)
    inset = frame[192 + 20:192 + 150, 480 - 140:480 - 10]
    assert inset.std() > 10


def test_record_videos_names_files_and_keeps_finished_ones(tmp_path):
    config = RunConfig(scenario="lead-brake", stack="staged", seed=5, episodes=3,
                       latency="fixed:0.02", scenario_config={**SHORT, "duration_s": 1.5})
    paths = record_videos(config, 1, tmp_path, extra_latency_s=0.05, video=SMALL_VIDEO)
    assert [p.name for p in paths] == ["staged_lead-brake_realtime_extra50ms_seed5.mp4"]
    assert video_frames(paths[0]) == 75
    stamp = paths[0].stat().st_mtime_ns
    assert record_videos(config, 1, tmp_path, extra_latency_s=0.05) == paths
    assert paths[0].stat().st_mtime_ns == stamp               # resumed: not recorded again


def test_compare_videos_are_the_cells_at_extra_zero_in_each_execution(tmp_path):
    config = CompareConfig(stacks=("staged",), scenarios=("lead-brake",), episodes=2,
                           modes=("realtime",), execution=("sequential", "pipelined"),
                           latency="fixed:0.01", extra_latency_s=(0.0, 0.1),
                           scenario_config={"duration_s": 1.0, "onset_s": (0.5, 0.8)}, video=1,
                           out=str(tmp_path))
    paths = record_compare_videos(config, video=SMALL_VIDEO)
    assert paths == [tmp_path / "videos" / "staged_lead-brake_realtime_seed0.mp4",
                     tmp_path / "videos" / "staged_lead-brake_realtime_pipelined_seed0.mp4"]
    assert [video_frames(path) for path in paths] == [50, 50]


def test_a_pipelined_video_runs_the_pipelined_clock_and_says_so(tmp_path, monkeypatch):
    """Stages of 60 and 50 ms at a 100 ms tick: sequentially every decision overruns and
    drops a frame; pipelined none does and every command is 110 ms old (the issue's
    analytic case), and the clock panel reads "pipelined" with the slowest stage."""
    said: list[str] = []
    draw_text = overlays.text
    monkeypatch.setattr(overlays, "text",
                        lambda surface, position, message, *args: said.append(message)
                        or draw_text(surface, position, message, *args))
    latency = "fixed:perception=0.06,planning=0.05"
    runs = {execution: record_episode("staged", "lead-brake", 1, tmp_path / f"{execution}.mp4",
                                      latency=latency, execution=execution,
                                      scenario_config={"duration_s": 1.0, "onset_s": (0.5, 0.8)},
                                      video=SMALL_VIDEO)
            for execution in ("sequential", "pipelined")}
    sequential, pipelined = runs["sequential"].metrics, runs["pipelined"].metrics
    assert sequential.overrun_rate == 1.0 and sequential.dropped_frames > 0
    assert pipelined.overrun_rate == 0.0 and pipelined.dropped_frames == 0
    assert pipelined.latency_p50_s == pytest.approx(0.11)
    assert any(message.endswith("realtime pipelined") for message in said)
    assert any("slowest stage 60.0 ms / 100.0 ms" in message for message in said)


@pytest.mark.parametrize("value", [True, "3", 24.0])
@pytest.mark.parametrize("name", ["panel_height", "crf", "inset_scale", "fps"])
def test_video_config_integers_reject_bools_strings_and_floats(name, value):
    with pytest.raises(ConfigError, match=rf"^video.{name}=.* is invalid: must be an "):
        VideoConfig(**{name: value})


def test_video_config_messages():
    with pytest.raises(ConfigError, match=r"^video.scene_size\[0\]=161 is invalid: must be an "
                                          r"even integer >= 160 \[px\]$"):
        VideoConfig(scene_size=(161, 64))
    with pytest.raises(ConfigError, match=r"^video.scene_size\[1\]=64.0 is invalid: must be "
                                          r"an even integer >= 64 \[px\]$"):
        VideoConfig(scene_size=(160, 64.0))
    with pytest.raises(ConfigError, match=r"^video.panel_height=98.0 is invalid: must be an "
                                          r"even integer >= 96 \[px\]$"):
        VideoConfig(panel_height=98.0)
    with pytest.raises(ConfigError, match=r"^video.crf=52 is invalid: must lie in \[0, 51\]$"):
        VideoConfig(crf=52)
    with pytest.raises(ConfigError, match=r"^video.explain=1 is invalid: must be true or "
                                          r"false$"):
        VideoConfig(explain=1)
    assert VideoConfig(fps=30, crf=0, inset_scale=8).fps == 30


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_films_a_readable_video(tmp_path, scenario):
    """One short staged episode of every registered scenario as a real MP4. The staged stack
    draws its detections: at the intersection's start none is valid (the case that crashed
    `overlays._finite_rows`)."""
    short = {"duration_s": 1.0}
    if "onset_s" in {f.name for f in dataclasses.fields(SCENARIOS[scenario].config_type)}:
        short["onset_s"] = (0.4, 0.6)                     # within the 1 s episode
    result = record_episode("staged", scenario, 0, tmp_path / f"{scenario}.mp4",
                            scenario_config=short, video=SMALL_VIDEO)
    assert result.frames == round(result.metrics.duration_s * 50) > 0
    assert video_frames(result.path) == result.frames
    frame = imageio.get_reader(result.path).get_data(result.frames - 1)
    assert frame.shape == (192 + 160, 480, 3) and frame.std() > 10


def test_detections_with_no_valid_row_draw_nothing():
    pygame.init()
    surface = WorldSurface((200, 100), 0, pygame.Surface((200, 100)))
    empty = Detections(position=np.zeros((1, 3, 2)), velocity=np.zeros((1, 3, 2)),
                       size=np.ones((1, 3, 2)), heading=np.zeros((1, 3)),
                       object_id=-np.ones((1, 3), int), valid=np.zeros((1, 3), bool))
    pose = overlays.Pose(np.zeros(2), 0.0)
    assert overlays.draw_detections(surface, empty, 0, pose) == 0
    one = Detections(**{**empty.__dict__, "valid": np.array([[False, True, False]])})
    assert overlays.draw_detections(surface, one, 0, pose) == 1
