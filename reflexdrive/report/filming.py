"""Filming an episode: the highway-backend world that calls back per substep (`FilmedEnv`)
and the `Recorder` that draws each substep's frame (scene, the stack's products, the clock
panel, the policy inset) into an open video writer. `reflexdrive.report.video` drives it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from reflexdrive.agents.base import Decision
from reflexdrive.common.validation import check_real
from reflexdrive.envs.backends.highway import HighwayBackend
from reflexdrive.envs.clock import TIME_EPS_S, TickRecord, Window
from reflexdrive.envs.clock.wrapper import ClockWrapper
from reflexdrive.envs.config import ClockConfig
from reflexdrive.envs.gym.single import DrivingEnv
from reflexdrive.envs.hazards import HazardTracker
from reflexdrive.envs.latency import split_extra, with_extra
from reflexdrive.envs.rendering import CENTERING
from reflexdrive.report import overlays
from reflexdrive.run.metrics import ReactionConfig, brake_onset

if TYPE_CHECKING:
    from reflexdrive.report.video import VideoConfig


# ----------------------------------------------------------------------------- the env


class _FilmedBackend(HighwayBackend):
    """The highway backend, calling `on_substep()` after each substep it integrates."""

    def __init__(self, simulation_frequency: int):
        super().__init__(simulation_frequency)
        self.on_substep = None

    def substep(self, pieces) -> None:
        super().substep(pieces)
        if self.on_substep is not None:
            self.on_substep()


class FilmedEnv(DrivingEnv):
    """A `DrivingEnv` (highway backend) that a recorder can watch substep by substep.

    Attributes:
        on_window: called with each clock `Window` before it is integrated (None: off).
        backend.on_substep: called after each substep (None: off).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.backend = _FilmedBackend(self.timing.simulation_frequency)
        self.on_window = None

    def run_window(self, window: Window):
        if self.on_window is not None:
            self.on_window(window)
        return super().run_window(window)


def make_filmed_env(scenario: str, *, mode: str = "realtime", latency: str = "fixed:0",
                    budget: float | None = None, stage_budgets: Mapping[str, float] | None = None,
                    on_overrun: str = "record", simulation_frequency: int = 50,
                    policy_frequency: int = 10, sensors: Any = None,
                    scenario_config: Any = None, latency_base_dir: str | None = None,
                    extra_latency_s: float = 0.0, execution: str = "sequential"
                    ) -> ClockWrapper:
    """`envs.registration.make_env` on a `FilmedEnv`; `extra_latency_s` is added to the
    latency spec as its `+SECONDS` suffix (`envs.latency.ShiftedLatency`), on top of any
    suffix the spec already has; `execution` as `ClockConfig.execution`."""
    latency = combined_latency(latency, extra_latency_s)
    clock = ClockConfig(simulation_frequency=simulation_frequency,
                        policy_frequency=policy_frequency, mode=mode, budget_s=budget,
                        stage_budgets_s=dict(stage_budgets or {}), on_overrun=on_overrun,
                        latency=latency, execution=execution)
    world = FilmedEnv(scenario, scenario_config=scenario_config, sensors=sensors,
                      simulation_frequency=simulation_frequency,
                      policy_frequency=policy_frequency, render_mode="rgb_array")
    return ClockWrapper(world, clock, latency_base_dir=latency_base_dir)


def combined_latency(latency: str, extra_latency_s: float = 0.0) -> str:
    """`latency` with `extra_latency_s` [s] added to its `+SECONDS` suffix (or as one)."""
    check_real("extra_latency_s", extra_latency_s, 0.0, 60.0)
    base, extra = split_extra(latency)
    return with_extra(base, (extra or 0.0) + float(extra_latency_s))


# ----------------------------------------------------------------------------- recorder


@dataclass
class Belief:
    """The decision in force: what the stack produced and the ego pose it observed from."""

    decision: Decision | None = None
    pose: overlays.Pose | None = None
    heat: np.ndarray | None = None
    heat_label: str = ""
    bev: np.ndarray | None = None
    ego_speed_mps: float = 0.0


@dataclass
class Progress:
    """What the recorder knows of the episode so far: tick records, overrun ticks [s], the
    window being integrated, the hazard onset [s] and the brake onset [s] once found (the
    threshold measure `reflexdrive.run.metrics.brake_onset`: what the timeline marks)."""

    records: list[TickRecord] = field(default_factory=list)
    overrun_ticks_s: list[float] = field(default_factory=list)
    window: Window | None = None
    window_start: int = 0
    onset_s: float | None = None
    brake_onset_s: float | None = None
    brake_onset_lands_s: float = math.inf


class Recorder:
    """Renders the frames of one episode into an open imageio writer."""

    def __init__(self, env: ClockWrapper, writer, video: VideoConfig, title: str,
                 reaction_config: ReactionConfig):
        import pygame
        from highway_env.road.graphics import WorldSurface
        from highway_env.vehicle.graphics import VehicleGraphics

        self.env = env
        self.world: FilmedEnv = env.unwrapped
        self.writer = writer
        self.video = video
        self.title = title
        self.reaction_config = reaction_config
        self.frames = 0
        width, height = video.scene_size
        self.scene = WorldSurface((width, height), 0, pygame.Surface((width, height)))
        self.scene.scaling = video.scaling_px_per_m
        self.scene.centering_position = list(CENTERING)
        self.frame = pygame.Surface(video.frame_size)
        self.ego_color = VehicleGraphics.EGO_COLOR
        self.belief = Belief()
        self.progress = Progress()
        self.hazard: HazardTracker | None = None
        timing = self.world.timing
        self.substep_s = timing.substep_s
        self.substeps_per_tick = timing.substeps_per_tick
        self.clock_config: ClockConfig = env.clock_config

    # -- hooks -------------------------------------------------------------------------

    def start(self) -> None:
        """After reset: the world's hazard plan and the ego's colour."""
        world = self.world
        self.hazard = HazardTracker(world.init.hazard, world.timing.simulation_frequency)
        self.progress = Progress()
        self.belief = Belief()
        world.backend.ego.color = self.ego_color            # a drawing attribute only
        world.on_window = self.on_window
        world.backend.on_substep = self.on_substep

    def stop(self) -> None:
        self.world.on_window = None
        self.world.backend.on_substep = None

    def observe(self, belief: Belief) -> None:
        self.belief = belief

    def on_window(self, window: Window) -> None:
        progress = self.progress
        progress.window = window
        progress.window_start = self.world.backend.substep_index
        first = window.records[0]
        if first.overrun:
            progress.overrun_ticks_s.append(first.t_s)
        if progress.onset_s is not None and progress.brake_onset_s is None:
            found = brake_onset(progress.records + list(window.records), progress.onset_s,
                                math.inf, self.reaction_config)
            if found is not None:
                progress.brake_onset_s = found.total_s
                progress.brake_onset_lands_s = progress.onset_s + found.total_s

    def on_substep(self) -> None:
        import pygame
        from highway_env.road.graphics import RoadGraphics

        backend = self.world.backend
        index = backend.substep_index
        snapshot = backend.snapshot()
        state = self.hazard.update(snapshot, index)
        progress = self.progress
        if state.onset_s is not None and index * self.substep_s >= state.onset_s - TIME_EPS_S:
            progress.onset_s = state.onset_s
        scene = self.scene
        scene.move_display_window_to(backend.ego.position)
        RoadGraphics.display(backend.road, scene)
        RoadGraphics.display_traffic(backend.road, scene, offscreen=True)
        self._draw_products(scene)
        if progress.onset_s is not None:
            slot = np.flatnonzero(snapshot.vehicle_id[0] == state.vehicle_id)
            if slot.size and state.vehicle_id > 0:
                overlays.draw_ring(scene, snapshot.position[0, slot[0]], 4.0,
                                   overlays.HAZARD_COLOR)
        frame = self.frame
        frame.blit(scene, (0, 0))
        view = self._clock_view(index)
        width, height = self.video.scene_size
        right = self._right_panel_width()
        overlays.draw_clock(frame, pygame.Rect(0, height, width - right, self.video.panel_height),
                            view)
        self._draw_right_panel(frame, pygame.Rect(width - right, height, right,
                                                  self.video.panel_height))
        if view.flashing:
            overlays.flash_border(frame, pygame.Rect(0, 0, width, height))
            overlays.text(frame, (width // 2 - 40, 8), "OVERRUN", 28, overlays.OVERRUN_COLOR)
        if progress.onset_s is not None and 0 <= view.time_s - progress.onset_s < 1.0:
            overlays.text(frame, (8, 8), "HAZARD", 28, overlays.HAZARD_COLOR)
        title_width = overlays.font(16).size(self.title)[0]
        overlays.text(frame, (width - title_width - 10, 10), self.title, 16)
        pixels = pygame.surfarray.pixels3d(frame)
        self.writer.append_data(np.ascontiguousarray(pixels.transpose(1, 0, 2)))
        del pixels                                          # unlock the surface
        self.frames += 1

    # -- drawing -----------------------------------------------------------------------

    def _draw_products(self, scene) -> None:
        belief = self.belief
        if not self.video.draw_products or belief.decision is None or belief.pose is None:
            return
        products = belief.decision.products
        plan = products.get("plan")
        lead = int(plan.lead_track[0]) if plan is not None else -1
        if plan is not None:
            overlays.draw_plan(scene, plan, 0, belief.pose)
        if products.get("detections") is not None:
            overlays.draw_detections(scene, products["detections"], 0, belief.pose)
        if products.get("tracks") is not None:
            overlays.draw_tracks(scene, products["tracks"], 0, belief.pose, lead=lead,
                                 ego_speed_mps=belief.ego_speed_mps)

    def _right_panel_width(self) -> int:
        return 64 * self.video.inset_scale + 24

    def _draw_right_panel(self, frame, rect) -> None:
        frame.fill(overlays.PANEL_COLOR, rect)
        belief = self.belief
        x, y = rect.x + 6, rect.y + 4
        if belief.heat is not None and belief.bev is not None:
            overlays.text(frame, (x, y), belief.heat_label, 14, overlays.DIM_COLOR)
            image = overlays.heat_overlay(overlays.bev_rgb(belief.bev), belief.heat)
            image = overlays.scene_oriented(image)
            scale = max(1, min(self.video.inset_scale,
                               (rect.h - 22) // image.shape[0], (rect.w - 12) // image.shape[1]))
            overlays.blit_array(frame, image, (x, y + 16), scale)
            return
        products = belief.decision.products if belief.decision is not None else {}
        if "plan" not in products:
            return
        detections, tracks = products.get("detections"), products.get("tracks")
        plan = products["plan"]
        rows = [("detections", overlays.DETECTION_COLOR,
                 int(np.asarray(detections.valid[0]).sum()) if detections is not None else 0),
                ("tracks", overlays.TRACK_COLOR,
                 int(np.asarray(tracks.valid[0]).sum()) if tracks is not None else 0),
                ("lead", overlays.LEAD_COLOR, None), ("plan", overlays.PLAN_COLOR, None)]
        for name, color, count in rows:
            import pygame

            pygame.draw.line(frame, color, (x, y + 7), (x + 16, y + 7), 3)
            overlays.text(frame, (x + 22, y), name if count is None else f"{name} {count}", 16)
            y += 17
        gap = float(plan.lead_gap[0])
        overlays.text(frame, (x, y + 2), f"target {float(plan.target_speed[0]):.1f} m/s", 15,
                      overlays.DIM_COLOR)
        overlays.text(frame, (x, y + 17), "lead gap " + (f"{gap:.1f} m" if math.isfinite(gap)
                                                         else "-"), 15, overlays.DIM_COLOR)
        if bool(plan.emergency[0]):
            overlays.text(frame, (x, y + 33), "EMERGENCY", 16, overlays.OVERRUN_COLOR)

    def _clock_view(self, index: int) -> overlays.ClockView:
        progress = self.progress
        window = progress.window
        dt = self.substep_s
        time_s = index * dt
        offset = max(0, index - progress.window_start - 1)
        tick_in_window = min(offset // self.substeps_per_tick, len(window.records) - 1)
        record = window.records[tick_in_window]
        decision = window.records[0]
        applied = record.applied_at(time_s - 0.5 * dt)
        ego = self.world.backend.ego
        brake_onset_s = (progress.brake_onset_s
                         if time_s >= progress.brake_onset_lands_s - TIME_EPS_S else None)
        return overlays.ClockView(
            time_s=time_s, duration_s=self.world.init.duration_substeps * dt, substep=index,
            tick=record.tick, mode=self.clock_config.mode, observed=record.observed,
            decision_t_s=decision.t_s, latency_s=decision.latency_s,
            stage_latency_s=dict(decision.stage_latency_s), lands_s=decision.lands_s,
            budget_s=self.clock_config.budget, overrun=decision.overrun,
            dropped=decision.dropped_after, accel_mps2=applied.acceleration,
            steer_rad=applied.steering, speed_mps=float(ego.speed),
            onset_s=progress.onset_s, brake_onset_s=brake_onset_s,
            overrun_ticks_s=tuple(progress.overrun_ticks_s), crashed=bool(ego.crashed),
            execution=self.clock_config.execution,
)
