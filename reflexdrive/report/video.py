"""MP4 videos of episodes on the clock: what the stack saw, believed and did, at real speed.

`record_episode` drives one episode of a stack on the **highway backend** (highway-env's
own world, so highway-env's own pygame renderer draws it; the batched backend gives the
same episode for the same seed, a parity the project's tests pin) and writes one frame per
**substep**, at the simulation rate (50 Hz by default), so motion plays at real speed.
highway-env renders intermediate frames of its own envs through an
`automatic_rendering_callback` inside `AbstractEnv._simulate`; reflexdrive's world is not
an `AbstractEnv`, so the same thing is done one level down: `FilmedEnv` is a `DrivingEnv`
whose backend calls back after every substep it integrates (`DrivingEnv.run_window` runs
the clock's window substep by substep), and the callback renders the world as it is then.
Nothing in the simulation changes: the episode's metrics equal `reflexdrive run`'s on the
highway backend for the same settings (`tests/report/test_video.py` checks it).

Each frame (`VideoConfig`):

- the top-down scene (highway-env's `RoadGraphics` on a `WorldSurface` that follows the
  ego as in `envs.rendering`), the ego drawn green, the hazard vehicle ringed from its
  onset;
- the staged stack's detections (thin cyan boxes), confirmed tracks (orange boxes with id
  and a 1 s velocity arrow, the planner's lead in magenta) and planned path (green, a dot
  per second), placed with the ego pose of the observation they came from
  (`reflexdrive.report.overlays`);
- below the scene, the clock: time, tick and substep, the decision's latency against the
  budget (a cursor runs while the agent computes; red beyond the budget), per-stage
  latencies, the applied command, a red border flashing during an overrun (from the
  budget's deadline until the late command lands), and a timeline of the episode with the
  hazard onset, the brake onset and the overruns marked;
- on the right of the clock, for an end-to-end policy, its `bev` input (turned to match
  the scene) under its saliency (`cnn`, `gru`, `lstm`: `|d action / d bev|`, the
  gradient of both action components, scaled to [-1, 1] by their bounds, with respect to
  the raster, max over channels; computed after the timed forward pass, from the same
  input and recurrent state) or attention (`transformer`: the last layer's `cls`
  attention over the bev patches, `agent.explain`); for the staged stack, a legend and
  the plan's numbers.

Files are written with imageio and its bundled ffmpeg (libx264, yuv420p) to a temporary
name beside the target and renamed when complete: a file named `*.mp4` is always a whole
video. `record_videos` records the first K episodes of a run's settings
(`reflexdrive.run.runner.RunConfig`), named `<stack>_<scenario>_<mode>_seed<N>.mp4`
(`..._<mode>_extra<MS>ms_seed<N>.mp4` with an extra delay), and skips those already on
disk; `record_compare_videos` does it for every cell of a compare at extra latency 0,
into `OUT/videos/`, where the report links them.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np

from reflexdrive.agents.base import Agent, Decision
from reflexdrive.common.files import atomic_path
from reflexdrive.common.validation import (
    ConfigError,
    boolean,
    check_count,
    count,
    integer,
    real,
    string,
    validate_fields,
)
from reflexdrive.envs.clock.wrapper import ClockWrapper
from reflexdrive.envs.latency import base_spec, split_extra
from reflexdrive.envs.registration import make_env
from reflexdrive.envs.scenarios import SCENARIOS
from reflexdrive.report import overlays
from reflexdrive.report.filming import Belief, Recorder, combined_latency, make_filmed_env
from reflexdrive.run.metrics import (
    CRITICALITY_KEYS,
    EpisodeMetrics,
    ReactionConfig,
)
from reflexdrive.run.rollout import Rollout, info_at

FFMPEG_REQUIREMENTS = ("imageio>=2.31", "imageio-ffmpeg>=0.4.9")
"""What writing videos needs (imageio with its bundled ffmpeg binary)."""

VIDEO_DIR = "videos"
"""Folder of a compare's videos (`record_compare_videos`), which the report links."""


@dataclass(frozen=True)
class VideoConfig:
    """How videos look.

    Attributes:
        scene_size: `(width, height)` of the top-down scene [px]; even numbers.
        panel_height: height of the clock panel below the scene [px]; even.
        scaling_px_per_m: scene zoom [px/m] (highway-env's default is 5.5; at 8 the
            default scene shows 24 m behind the ego and 56 m ahead, the sensors' 48 m).
        fps: frames per second of the file; None: the simulation rate (one frame per
            substep plays at real speed).
        crf: libx264 quality (0 lossless ... 51 worst; 23 is ffmpeg's default).
        preset: libx264 speed preset ("ultrafast" ... "veryslow").
        inset_scale: pixels per bev pixel in the policy inset.
        draw_products: draw the staged stack's detections, tracks and plan.
        explain: show an end-to-end policy's saliency or attention inset.
    """

    scene_size: tuple[int, int] = (640, 256)
    panel_height: int = count(160, low=96, even=True, unit="px",
                              help="height of the clock panel [px]")
    scaling_px_per_m: float = real(8.0, low=0.5, high=50.0, help="scene zoom [px/m]")
    fps: int | None = integer(None, low=1, high=1000, optional=True,
                              help="frames per second (None: the simulation rate)")
    crf: int = integer(23, low=0, high=51, help="libx264 quality (0 lossless ... 51 worst)")
    preset: str = string("veryfast", help="libx264 speed preset")
    inset_scale: int = integer(2, low=1, high=8, help="pixels per bev pixel in the inset")
    draw_products: bool = boolean(True, help="draw the staged stack's products")
    explain: bool = boolean(True, help="show a policy's saliency or attention inset")

    def __post_init__(self) -> None:
        # scene_size's two sides have their own bounds: checked here, in the same words
        width, height = self.scene_size
        check_count("video.scene_size[0]", width, 160, even=True, unit="px")
        check_count("video.scene_size[1]", height, 64, even=True, unit="px")
        validate_fields(self, "video.")

    @property
    def frame_size(self) -> tuple[int, int]:
        """`(width, height)` of a whole frame [px]."""
        return self.scene_size[0], self.scene_size[1] + self.panel_height


@dataclass(frozen=True)
class EpisodeVideo:
    """One recorded episode.

    Attributes:
        path: the MP4 file.
        frames: frames written (one per substep simulated).
        fps: frames per second of the file.
        frame_size: `(width, height)` [px].
        simulated_s: simulated time [s] (`frames / simulation_frequency`).
        wall_s: wall-clock time the recording took, episode and encoding together [s].
        metrics: the episode's metrics (as in `episodes.csv`).
    """

    path: Path
    frames: int
    fps: int
    frame_size: tuple[int, int]
    simulated_s: float
    wall_s: float
    metrics: EpisodeMetrics

    @property
    def wall_per_simulated_s(self) -> float:
        """Seconds of wall time per simulated second."""
        return self.wall_s / self.simulated_s if self.simulated_s > 0 else math.nan


def video_name(stack: str, scenario: str, mode: str, seed: int,
               extra_latency_s: float = 0.0, execution: str = "sequential") -> str:
    """`<stack>_<scenario>_<mode>_seed<N>.mp4`; `_pipelined` after the mode when pipelined;
    with extra latency, `..._extra<MS>ms_seed<N>.mp4` (so a sweep's videos differ)."""
    extra = f"_extra{extra_latency_s * 1e3:g}ms" if extra_latency_s > 0 else ""
    pipelined = "" if execution == "sequential" else f"_{execution}"
    return f"{stack}_{scenario}_{mode}{pipelined}{extra}_seed{int(seed)}.mp4"


# ----------------------------------------------------------------------------- saliency


def saliency_map(policy, bev: np.ndarray, ego: np.ndarray, state=None,
                 lidar: np.ndarray | None = None, route: np.ndarray | None = None,
                 timing: np.ndarray | None = None) -> np.ndarray:
    """`|d action / d bev|` of a `DrivingPolicy` for one observation, `float (H, W)` in [0, 1].

    Both action components are scaled to [-1, 1] by the action bounds
    (`policy.head.to_unit`); their gradients with respect to the bev raster (as floats in
    [0, 1]) are added in absolute value, reduced by the maximum over channels and divided
    by the map's maximum.

    Args:
        policy: the network (eval mode; left unchanged).
        bev: `uint8 (1, C, H, W)`.
        ego: `float32 (1, k)`.
        state: the recurrent state the forward pass starts from (None: zeros); cloned,
            never modified.
        lidar: `float32 (1, beams, 2)`, for policies that read it (held fixed: the map
            shows the bev's share of the decision).
        route: `float32 (1, K, 2)`, for policies that read it (held fixed likewise).
        timing: `float32 (1, 4)`, `obs["timing"]`, for policies that read it (held fixed).
    """
    import torch

    device = next(policy.parameters()).device
    components = 2
    with torch.inference_mode(False), torch.enable_grad(), \
            torch.backends.cudnn.flags(enabled=False):    # cuDNN RNNs backprop only in train
        # one copy of the input per action component: one forward and one backward pass
        # give each component's gradient (copy i only feeds component i of the sum)
        x = torch.as_tensor(np.asarray(bev[:1]), device=device).float().mul(1.0 / 255.0)
        x = x.expand(components, *x.shape[1:]).clone().requires_grad_(True)
        e = torch.as_tensor(np.asarray(ego[:1], dtype=np.float32), device=device)
        e = e.expand(components, *e.shape[1:])
        start = None if not state else tuple(
            s.detach().clone().expand(s.shape[0], components, *s.shape[2:]).contiguous()
            for s in state)
        inputs = {"bev": x, "ego": e}
        if lidar is not None:
            inputs["lidar"] = torch.as_tensor(np.asarray(lidar[:1], dtype=np.float32),
                                              device=device).expand(components, -1, -1)
        if route is not None:
            inputs["route"] = torch.as_tensor(np.asarray(route[:1], dtype=np.float32),
                                              device=device).expand(components, -1, -1)
        if timing is not None:
            inputs["timing"] = torch.as_tensor(np.asarray(timing[:1], dtype=np.float32),
                                               device=device).expand(components, -1)
        action, _ = policy(inputs, start)
        unit = policy.head.to_unit(action)
        picked = unit[torch.arange(components), torch.arange(components)].sum()
        grad, = torch.autograd.grad(picked, x)
    total = grad.abs().sum(dim=0, keepdim=True)
    heat = total[0].amax(dim=0).detach().cpu().numpy()
    return overlays.normalise_heat(heat)


def _explainer(agent: Agent):
    """`(policy, uses_attention)` for an end-to-end agent, None for other stacks."""
    policy = getattr(agent, "policy", None)
    if policy is None or not hasattr(policy, "head"):
        return None
    return policy, hasattr(policy, "attention_map")


def _open_writer(path: Path, fps: int, video: VideoConfig):
    import imageio.v2 as imageio

    return imageio.get_writer(
        path, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=None,
        pixelformat="yuv420p", macro_block_size=2,
        ffmpeg_params=["-crf", str(video.crf), "-preset", video.preset],
        ffmpeg_log_level="error")


def record_episode(agent: Agent | str, scenario: str, seed: int, path: str | os.PathLike,
                   mode: str = "realtime", latency: str = "fixed:0", *,
                   extra_latency_s: float = 0.0, budget_s: float | None = None,
                   stage_budgets_s: Mapping[str, float] | None = None,
                   on_overrun: str = "record", simulation_frequency: int = 50,
                   policy_frequency: int = 10, scenario_config: Mapping[str, Any] | None = None,
                   sensors: Any = None, latency_base_dir: str | None = None,
                   reaction_config: ReactionConfig = ReactionConfig(),
                   video: VideoConfig = VideoConfig(),
                   stack_options: Mapping[str, Any] | None = None,
                   execution: str = "sequential") -> EpisodeVideo:
    """Drive one episode of `agent` on `scenario` with scenario seed `seed` and write it
    as an MP4 at `path` (one frame per substep; see the module docstring for what a frame
    shows).

    Args:
        agent: a driving stack (an `Agent` for one env; it is reset first) or a stack name
            (`agents.registry.STACKS`, built with `stack_options`).
        scenario: scenario name.
        seed: scenario seed (episode `i` of a run uses `run seed + i`).
        path: the MP4 to write (its folder is created; written atomically).
        mode, latency, budget_s, stage_budgets_s, on_overrun, simulation_frequency,
            policy_frequency, scenario_config, sensors: as for `reflexdrive run`
            (`envs.registration.make_env`).
        extra_latency_s: a constant delay added to every decision's latency [s], on top of
            a `+SECONDS` suffix of `latency` (the stage "extra", as in `reflexdrive compare
            --extra-latency`).
        latency_base_dir: directory that relative `profile:PATH` specs resolve against.
        reaction_config: what counts as a response (for the metrics and the marker).
        video: how the video looks.
        stack_options: options of `agents.registry.make_agent` when `agent` is a name.
        execution: "sequential" or "pipelined" (each stage on its own processor), as for
            `reflexdrive run --execution`.

    Returns:
        The `EpisodeVideo` (frames, timings, the episode's metrics).
    """
    started = time.perf_counter()
    if isinstance(agent, str):
        from reflexdrive.agents.registry import make_agent

        agent = make_agent(agent, **dict(stack_options or {}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    env_kwargs = dict(mode=mode, latency=latency, budget=budget_s,
                      stage_budgets=dict(stage_budgets_s or {}), on_overrun=on_overrun,
                      simulation_frequency=simulation_frequency,
                      policy_frequency=policy_frequency, sensors=sensors,
                      scenario_config=dict(scenario_config) if scenario_config else None,
                      latency_base_dir=latency_base_dir, extra_latency_s=extra_latency_s,
                      execution=execution)
    # a hazard episode runs beside its unfilmed hazard-removed twin (the counterfactual
    # reaction time of `metrics`), as `reflexdrive run` does
    twins = SCENARIOS[scenario].hazard != "none"
    twin_kwargs = {**env_kwargs, "latency": combined_latency(latency, extra_latency_s)}
    twin_kwargs.pop("extra_latency_s")
    factories = [lambda: make_filmed_env(scenario, **env_kwargs)] + (
        [lambda: make_env(scenario, counterfactual=True, **twin_kwargs)] if twins else [])
    vec = gym.vector.SyncVectorEnv(factories, autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    env: ClockWrapper = vec.envs[0]
    fps = int(video.fps or simulation_frequency)
    explainer = _explainer(agent) if video.explain else None
    saved_explain = getattr(agent, "explain", None)
    name = getattr(agent, "name", type(agent).__name__)
    extra = split_extra(combined_latency(latency, extra_latency_s))[1] or 0.0
    title = (f"{name}{'' if execution == 'sequential' else ' ' + execution} on {scenario}, "
             f"seed {seed}" + (f", +{extra * 1e3:g} ms" if extra else ""))
    measured = base_spec(latency) == "measured"

    def decide(obs: dict, info: dict) -> Decision:
        prior_state = getattr(agent, "state", None) if explainer is not None else None
        if prior_state:
            prior_state = tuple(s.detach().clone() for s in prior_state)
        backend = env.unwrapped.backend
        pose = overlays.Pose(np.array(backend.ego.position, dtype=np.float64),
                             float(backend.ego.heading))
        decision = agent.act(obs, info)
        belief = Belief(decision=decision, pose=pose, ego_speed_mps=float(obs["ego"][0, 0]))
        if explainer is not None:
            belief.bev = np.asarray(obs["bev"][0])
            if "attention" in decision.products:
                belief.heat = overlays.normalise_heat(decision.products["attention"][0])
                belief.heat_label = f"{name}: cls attention"
            else:
                reads = explainer[0].obs_keys
                belief.heat = saliency_map(explainer[0], obs["bev"][:1], obs["ego"][:1],
                                           prior_state or None,
                                           obs["lidar"][:1] if "lidar" in reads else None,
                                           obs["route"][:1] if "route" in reads else None,
                                           obs["timing"][:1] if "timing" in reads else None)
                belief.heat_label = f"{name}: saliency"
        recorder.observe(belief)
        return decision

    def reset(obs: dict, info: dict, mask: np.ndarray) -> None:
        recorder.start()
        recorder.progress.records = rollout.episodes[0].records   # the brake-onset marker's
        agent.reset(mask)

    with atomic_path(path) as temporary, Rollout(vec, [int(seed)], twins=twins) as rollout:
        writer = _open_writer(temporary, fps, video)
        recorder = Recorder(env, writer, video, title, reaction_config)
        try:
            if explainer is not None and explainer[1]:
                agent.explain = True
            for step in rollout.steps(decide, on_reset=reset, measured=measured):
                episode, step_info = rollout.episodes[0], step.info
            recorder.stop()
        finally:
            writer.close()
            if saved_explain is not None:
                agent.explain = saved_explain
    metrics = episode.metrics(info_at(step_info["hazard"], 0, ("onset_s", *CRITICALITY_KEYS)),
                              1.0 / simulation_frequency, reaction_config)
    return EpisodeVideo(path=path, frames=recorder.frames, fps=fps,
                        frame_size=video.frame_size,
                        simulated_s=recorder.frames / simulation_frequency,
                        wall_s=time.perf_counter() - started, metrics=metrics)


def record_videos(config, k: int, out_dir: str | os.PathLike, *,
                  extra_latency_s: float = 0.0, agent: Agent | None = None,
                  video: VideoConfig = VideoConfig(), overwrite: bool = False,
                  seeds: Sequence[int] | None = None) -> list[Path]:
    """Record the first `k` episodes of a run's settings: one MP4 per seed.

    Args:
        config: a `reflexdrive.run.runner.RunConfig` (stack, scenario, seed, mode, latency,
            budget, perception, controller, checkpoint, scenario overrides, ...). The
            videos always run on the highway backend, one env (see the module docstring).
        k: how many episodes: seeds `config.seed, ..., config.seed + k - 1` (at most
            `config.episodes`).
        out_dir: the folder for the files (created).
        extra_latency_s: a constant delay added to every decision [s], on top of a
            `+SECONDS` suffix of `config.latency` (their sum is named in the files).
        agent: the stack to drive (one env); None builds `config.stack` as `reflexdrive
            run` does. Pass a fresh one, not an agent that drives a batch elsewhere.
        video: how the videos look.
        overwrite: record again even when a file exists (default: keep it, so a resumed
            compare does not redo its videos).
        seeds: explicit seeds instead of the first `k`.

    Returns:
        The paths of the `k` videos, in seed order.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ConfigError("video", k, "must be an integer >= 0 (episodes to record per stack)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if seeds is None:
        seeds = [config.seed + i for i in range(min(k, config.episodes))]
    base, extra = split_extra(combined_latency(config.latency, extra_latency_s))
    extra = extra or 0.0
    paths = [out / video_name(config.stack, config.scenario, config.mode, seed, extra,
                              config.execution) for seed in seeds]
    todo = [(seed, path) for seed, path in zip(seeds, paths) if overwrite or not path.exists()]
    if not todo:
        return paths
    if agent is None:
        from reflexdrive.agents.registry import make_agent

        agent = make_agent(config.stack, **config.agent_options())
    kwargs = config.env_kwargs()
    for seed, path in todo:
        record_episode(agent, config.scenario, seed, path, mode=config.mode,
                       latency=base, extra_latency_s=extra,
                       budget_s=config.budget_s, stage_budgets_s=dict(config.stage_budgets_s),
                       on_overrun=config.on_overrun,
                       simulation_frequency=config.simulation_frequency,
                       policy_frequency=config.policy_frequency,
                       scenario_config=dict(config.scenario_config) or None,
                       latency_base_dir=kwargs.get("latency_base_dir"),
                       reaction_config=config.reaction, video=video,
                       execution=config.execution)
    return paths


def record_compare_videos(config, k: int | None = None, out_dir: str | os.PathLike | None = None,
                          video: VideoConfig = VideoConfig(), overwrite: bool = False
                          ) -> list[Path]:
    """The videos of a compare: the first `k` episodes of every stack x scenario x mode
    at the stacks' own latency (the cells at extra latency 0) in each execution, into
    `OUT/videos/`.

    Args:
        config: a `reflexdrive.compare.config.CompareConfig` (its `cells()` are used).
        k: episodes per cell; None: `config.video`.
        out_dir: the compare folder; None: `config.out`.
        video, overwrite: as for `record_videos` (existing files are kept by default, so a
            resumed compare does not record them again).

    Returns:
        The paths, cell by cell in the compare's grid order.
    """
    k = config.video if k is None else k
    out = Path(out_dir if out_dir is not None else config.out) / VIDEO_DIR
    paths: list[Path] = []
    if not k:
        return paths
    for cell in config.cells():
        if cell.extra_latency_s == 0 and cell.latency_scale == 1:
            paths += record_videos(cell.run, k, out, video=video, overwrite=overwrite)
    return paths


def video_frames(path: str | os.PathLike) -> int:
    """Frames in an MP4, counted by decoding it with the bundled ffmpeg."""
    import imageio_ffmpeg

    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return int(frames)
