"""What the videos draw on top of highway-env's top-down scene, with pygame and numpy.

Three kinds of overlay, each a plain function of what the episode recorded:

- the staged stack's products (`agents.staged.types`: `Detections`, `Tracks`, `Plan`), drawn
  in the scene. They are in the ego frame *of the observation they came from* (x forward,
  y towards the ego's +heading side, metres); `ego_to_world` puts them in highway-env's
  world frame with the ego pose at that observation, and the surface's own `vec2pix` in
  pixels. They therefore stay where the stack believed things were while the world moves
  on: the lag between a box and its car is the stack's latency made visible;
- the clock (`draw_clock`): tick counter, the decision's latency against the budget (with a
  cursor that runs while the agent computes), an overrun flash, and a timeline of the
  episode with the hazard onset, the brake onset and the overruns marked;
- an end-to-end policy's view (`bev_rgb`, `heat_overlay`): its `bev` input as colours with
  a saliency or attention map blended on top, turned so that the ego drives to the right
  as in the scene.

Colours are RGB tuples; nothing here touches the simulation.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402  (after the SDL settings: no window, no sound device)

DETECTION_COLOR = (0, 200, 255)
TRACK_COLOR = (255, 150, 0)
LEAD_COLOR = (235, 0, 235)
PLAN_COLOR = (0, 210, 90)
HAZARD_COLOR = (255, 70, 0)
BRAKE_ONSET_COLOR = (0, 200, 255)
OVERRUN_COLOR = (230, 30, 30)
OK_COLOR = (60, 190, 80)
TEXT_COLOR = (235, 235, 235)
DIM_COLOR = (150, 150, 150)
PANEL_COLOR = (28, 28, 32)
BAR_BACKGROUND = (60, 60, 66)

BEV_COLORS = ((85, 85, 85), (225, 225, 225), (80, 140, 255), (60, 200, 60))
"""Colours of the bev channels road, markings, vehicles, ego (later channels on top)."""
BEV_BACKGROUND = (20, 20, 20)

_FONTS: dict[int, "pygame.font.Font"] = {}


def font(size: int) -> "pygame.font.Font":
    """pygame's default font at `size` px (cached; initialises pygame's font module)."""
    if size not in _FONTS:
        if not pygame.font.get_init():
            pygame.font.init()
        _FONTS[size] = pygame.font.Font(None, size)
    return _FONTS[size]


def text(surface: "pygame.Surface", position: tuple[int, int], message: str, size: int = 18,
         color: tuple[int, int, int] = TEXT_COLOR) -> int:
    """Draw `message` with its top-left corner at `position`; returns its width [px]."""
    rendered = font(size).render(message, True, color)
    surface.blit(rendered, position)
    return rendered.get_width()


# ----------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Pose:
    """The ego's pose in highway-env's world frame when an observation was taken.

    Attributes:
        position: `(2,)` ego centre [m].
        heading: ego yaw [rad] (from +x towards +y).
    """

    position: np.ndarray
    heading: float


def ego_to_world(points: np.ndarray, pose: Pose) -> np.ndarray:
    """Ego-frame points `(..., 2)` [m] to world-frame points `(..., 2)` [m].

    The inverse of `envs.sensors.to_ego_frame`: `world = position + R(heading) @ ego`.
    """
    points = np.asarray(points, dtype=np.float64)
    cos, sin = math.cos(pose.heading), math.sin(pose.heading)
    x, y = points[..., 0], points[..., 1]
    return np.stack([pose.position[0] + x * cos - y * sin,
                     pose.position[1] + x * sin + y * cos], axis=-1)


def box_corners(centre: np.ndarray, size: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Corners `(K, 4, 2)` of boxes with centres `(K, 2)`, `(length, width)` `(K, 2)` and
    headings `(K,)` [rad] (NaN headings are taken as 0), in the frame of the centres."""
    heading = np.nan_to_num(np.asarray(heading, dtype=np.float64), nan=0.0)
    half = 0.5 * np.asarray(size, dtype=np.float64)
    unit = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]])
    local = unit[None] * half[:, None, :]                                    # (K, 4, 2)
    cos, sin = np.cos(heading)[:, None], np.sin(heading)[:, None]
    x, y = local[..., 0], local[..., 1]
    return np.stack([x * cos - y * sin, x * sin + y * cos], -1) + np.asarray(centre)[:, None, :]


def _pixels(surface, world_points: np.ndarray) -> list[tuple[int, int]]:
    return [surface.vec2pix(p) for p in world_points]


def _finite_rows(*arrays: np.ndarray) -> np.ndarray:
    """`(n,)` bool: the rows (first axis) finite in every array; `n` may be 0 (a tick with
    no valid detection: `reshape(0, -1)` is ambiguous, so reduce over the trailing axes)."""
    keep = np.ones(arrays[0].shape[0], dtype=bool)
    for array in arrays:
        keep &= np.isfinite(array).all(axis=tuple(range(1, array.ndim)))
    return keep


# ----------------------------------------------------------------------------- staged stack


def draw_detections(surface, detections, row: int, pose: Pose,
                    color: tuple[int, int, int] = DETECTION_COLOR) -> int:
    """Outline the detections of env `row` (thin boxes); returns how many were drawn."""
    valid = np.asarray(detections.valid[row], dtype=bool)
    position = np.asarray(detections.position[row], dtype=np.float64)[valid]
    size = np.asarray(detections.size[row], dtype=np.float64)[valid]
    heading = np.asarray(detections.heading[row], dtype=np.float64)[valid]
    keep = _finite_rows(position, size)
    corners = ego_to_world(box_corners(position[keep], size[keep], heading[keep]), pose)
    for box in corners:
        pygame.draw.polygon(surface, color, _pixels(surface, box), 1)
    return int(keep.sum())


def draw_tracks(surface, tracks, row: int, pose: Pose, lead: int = -1,
                ego_speed_mps: float = 0.0, color: tuple[int, int, int] = TRACK_COLOR,
                lead_color: tuple[int, int, int] = LEAD_COLOR) -> int:
    """Draw the confirmed tracks of env `row`: box, id, and an arrow of 1 s of velocity
    relative to the ego (`velocity - (ego_speed_mps, 0)`: a braking lead points back at
    the ego); a coasting track (missed this tick) dimmed; the planner's lead track in
    `lead_color`. Returns how many were drawn."""
    valid = np.asarray(tracks.valid[row], dtype=bool)
    drawn = 0
    heading = (np.zeros(valid.shape) if tracks.heading is None
               else np.asarray(tracks.heading[row], dtype=np.float64))
    misses = None if tracks.misses is None else np.asarray(tracks.misses[row])
    for k in np.flatnonzero(valid):
        centre = np.asarray(tracks.position[row, k], dtype=np.float64)
        size = np.asarray(tracks.size[row, k], dtype=np.float64)
        if not (np.isfinite(centre).all() and np.isfinite(size).all()):
            continue
        is_lead = int(k) == int(lead)
        shade = lead_color if is_lead else color
        if misses is not None and misses[k] > 0:
            shade = tuple(int(0.55 * c) for c in shade)
        box = ego_to_world(box_corners(centre[None], size[None], heading[k:k + 1])[0], pose)
        pygame.draw.polygon(surface, shade, _pixels(surface, box), 3 if is_lead else 2)
        velocity = np.asarray(tracks.velocity[row, k], dtype=np.float64) - [ego_speed_mps, 0.0]
        start = ego_to_world(centre, pose)
        if np.isfinite(velocity).all():
            end = ego_to_world(centre + velocity * 1.0, pose)
            a, b = surface.vec2pix(start), surface.vec2pix(end)
            if a != b:
                pygame.draw.line(surface, shade, a, b, 2)
                pygame.draw.circle(surface, shade, b, 3)
        label = f"#{int(tracks.track_id[row, k])}"
        x, y = surface.vec2pix(start + np.array([0.0, 0.0]))
        text(surface, (x - 8, y - surface.pix(size[1]) - 10), label, 15, shade)
        drawn += 1
    return drawn


def draw_plan(surface, plan, row: int, pose: Pose,
              color: tuple[int, int, int] = PLAN_COLOR) -> None:
    """The planned path of env `row` as a polyline, a dot every second of travel."""
    path = np.asarray(plan.path[row], dtype=np.float64)
    path = path[np.isfinite(path).all(axis=1)]
    if len(path) < 2:
        return
    pixels = _pixels(surface, ego_to_world(path, pose))
    pygame.draw.lines(surface, color, False, pixels, 3)
    for point in pixels[::10]:
        pygame.draw.circle(surface, color, point, 4)


def draw_ring(surface, world_position: np.ndarray, radius_m: float,
              color: tuple[int, int, int], width: int = 2) -> None:
    """A circle around a world position (the hazard vehicle)."""
    pygame.draw.circle(surface, color, surface.vec2pix(world_position),
                       max(4, surface.pix(radius_m)), width)


# ----------------------------------------------------------------------------- clock


@dataclass(frozen=True)
class ClockView:
    """What the clock panel shows at one frame (the end of a substep).

    Attributes:
        time_s: simulated time at the end of the substep [s].
        duration_s: episode length [s] (the timeline's span).
        substep: substeps elapsed.
        tick: index of the tick the frame lies in.
        mode: "realtime" or "lockstep".
        observed: the agent observed at this tick (False: a frame dropped, agent busy).
        decision_t_s: when the decision in force was observed [s].
        latency_s: that decision's total latency [s].
        stage_latency_s: its per-stage latencies [s].
        lands_s: when its command lands [s].
        budget_s: the compute budget per tick [s].
        overrun: that decision overran its budget.
        dropped: frames it made the agent drop.
        accel_mps2, steer_rad: the command applied during the substep.
        speed_mps: ego speed [m/s].
        onset_s: hazard onset once it happened, else None [s].
        brake_onset_s: the brake onset (`reflexdrive.run.metrics.brake_onset`, the
            threshold measure, not the counterfactual reaction time) once the braking
            command has landed, else None [s].
        overrun_ticks_s: start times of the overrunning decisions so far [s].
        crashed: the ego has collided.
    """

    time_s: float
    duration_s: float
    substep: int
    tick: int
    mode: str
    observed: bool
    decision_t_s: float
    latency_s: float
    stage_latency_s: dict
    lands_s: float
    budget_s: float
    overrun: bool
    dropped: int
    accel_mps2: float
    steer_rad: float
    speed_mps: float
    onset_s: float | None = None
    brake_onset_s: float | None = None
    overrun_ticks_s: Sequence[float] = field(default_factory=tuple)
    crashed: bool = False

    @property
    def computing(self) -> bool:
        """The world is moving on while the agent computes (realtime, not landed yet)."""
        return self.mode == "realtime" and self.time_s < self.lands_s - 1e-9

    @property
    def flashing(self) -> bool:
        """Inside an overrun: realtime, from the budget's deadline until the command lands
        (lockstep: the decision's tick). Blinks at ~6 Hz (on 4 substeps, off 4 at 50 Hz)."""
        if not self.overrun:
            return False
        if self.mode == "realtime":
            inside = self.decision_t_s + self.budget_s - 1e-9 <= self.time_s <= self.lands_s + 1e-9
        else:
            inside = True
        return inside and (self.substep // 4) % 2 == 0


def _ms(seconds: float) -> str:
    return "-" if not math.isfinite(seconds) else f"{seconds * 1e3:.1f} ms"


def brake_onset_label(brake_onset_s: float) -> str:
    """The timeline's label of the moment it marks: the brake onset after the hazard [ms]."""
    return f"brake onset +{brake_onset_s * 1e3:.0f} ms"


def draw_clock(surface: "pygame.Surface", rect: "pygame.Rect", view: ClockView) -> None:
    """The clock panel inside `rect`: tick line, latency bar, command line, timeline."""
    surface.fill(PANEL_COLOR, rect)
    x0, y = rect.x + 8, rect.y + 6
    width = rect.w - 16
    status = "" if view.observed else "  (frame dropped: agent busy)"
    text(surface, (x0, y), f"t {view.time_s:6.2f} s   tick {view.tick:3d}   substep "
                           f"{view.substep:4d}   {view.mode}{status}", 18)
    y += 20

    # latency bar: scale 0 .. 2 x budget (or the latency when larger)
    label_w = text(surface, (x0, y + 1), "latency", 16, DIM_COLOR) + 8
    bar = pygame.Rect(x0 + label_w, y, int(width * 0.42), 14)
    scale = max(2.0 * view.budget_s, view.latency_s * 1.05) if math.isfinite(
        view.latency_s) else 2.0 * view.budget_s
    pygame.draw.rect(surface, BAR_BACKGROUND, bar)
    if math.isfinite(view.latency_s):
        fill = int(bar.w * min(view.latency_s, scale) / scale)
        color = OVERRUN_COLOR if view.latency_s > view.budget_s + 1e-9 else OK_COLOR
        pygame.draw.rect(surface, color, (bar.x, bar.y, fill, bar.h))
        if view.computing:
            elapsed = min(view.time_s - view.decision_t_s, view.latency_s)
            cursor = bar.x + int(bar.w * elapsed / scale)
            pygame.draw.line(surface, TEXT_COLOR, (cursor, bar.y - 2), (cursor, bar.bottom + 1), 2)
    budget_x = bar.x + int(bar.w * view.budget_s / scale)
    pygame.draw.line(surface, (255, 220, 0), (budget_x, bar.y - 3), (budget_x, bar.bottom + 2), 2)
    stages = " ".join(f"{name[:4]} {seconds * 1e3:.1f}" for name, seconds in
                      view.stage_latency_s.items()) if len(view.stage_latency_s) > 1 else ""
    info = f"{_ms(view.latency_s)} / budget {_ms(view.budget_s)}"
    if view.computing:
        info += "  computing"
    text(surface, (bar.right + 8, y + 1), info, 16)
    if stages:
        text(surface, (bar.x, y + 16), f"stages [ms]: {stages}", 14, DIM_COLOR)
    if view.overrun:
        text(surface, (bar.right + 8, y + 16), f"OVERRUN  dropped {view.dropped} frame"
                                               f"{'' if view.dropped == 1 else 's'}", 15,
             OVERRUN_COLOR)
    y += 32

    braking = view.accel_mps2 <= -2.0
    line = (f"applied: accel {view.accel_mps2:+5.2f} m/s^2  steer {view.steer_rad:+.3f} rad"
            f"   speed {view.speed_mps:5.2f} m/s")
    w = text(surface, (x0, y), line, 16)
    if braking:
        text(surface, (x0 + w + 10, y), "BRAKING", 16, OVERRUN_COLOR)
    if view.crashed:
        text(surface, (x0 + w + 80, y), "COLLISION", 16, OVERRUN_COLOR)
    y += 20

    # timeline: 0 .. duration, cursor, hazard onset, brake onset, overruns
    line_rect = pygame.Rect(x0, y + 8, width, 6)
    pygame.draw.rect(surface, BAR_BACKGROUND, line_rect)

    def at(seconds: float) -> int:
        return line_rect.x + int(line_rect.w * min(max(seconds / view.duration_s, 0.0), 1.0))

    for second in range(int(view.duration_s) + 1):
        pygame.draw.line(surface, DIM_COLOR, (at(second), line_rect.bottom),
                         (at(second), line_rect.bottom + 3), 1)
    pygame.draw.rect(surface, (110, 110, 120),
                     (line_rect.x, line_rect.y, at(view.time_s) - line_rect.x, line_rect.h))
    for start in view.overrun_ticks_s:
        pygame.draw.line(surface, OVERRUN_COLOR, (at(start), line_rect.y - 2),
                         (at(start), line_rect.bottom + 1), 2)
    if view.onset_s is not None:
        ox = at(view.onset_s)
        pygame.draw.polygon(surface, HAZARD_COLOR, [(ox, line_rect.y), (ox - 6, line_rect.y - 9),
                                                    (ox + 6, line_rect.y - 9)])
        text(surface, (ox + 8, line_rect.y - 12), f"hazard {view.onset_s:.2f} s", 14, HAZARD_COLOR)
        if view.brake_onset_s is not None:
            rx = at(view.onset_s + view.brake_onset_s)
            pygame.draw.polygon(surface, BRAKE_ONSET_COLOR,
                                [(rx, line_rect.bottom), (rx - 6, line_rect.bottom + 9),
                                 (rx + 6, line_rect.bottom + 9)])
            text(surface, (rx + 8, line_rect.bottom), brake_onset_label(view.brake_onset_s),
                 14, BRAKE_ONSET_COLOR)
    pygame.draw.line(surface, TEXT_COLOR, (at(view.time_s), line_rect.y - 4),
                     (at(view.time_s), line_rect.bottom + 4), 2)


def flash_border(surface: "pygame.Surface", rect: "pygame.Rect", width: int = 6,
                 color: tuple[int, int, int] = OVERRUN_COLOR) -> None:
    """A thick border inside `rect` (the overrun flash)."""
    pygame.draw.rect(surface, color, rect, width)


# ----------------------------------------------------------------------------- policy view


def bev_rgb(bev: np.ndarray) -> np.ndarray:
    """A `bev` raster `uint8 (C, H, W)` as colours `uint8 (H, W, 3)` (heading up)."""
    bev = np.asarray(bev)
    image = np.empty(bev.shape[1:] + (3,), dtype=np.uint8)
    image[:] = BEV_BACKGROUND
    for channel, color in enumerate(BEV_COLORS[:bev.shape[0]]):
        image[bev[channel] > 0] = color
    return image


def heat_colors(heat: np.ndarray) -> np.ndarray:
    """Values in [0, 1] `(H, W)` to a red-orange-yellow ramp `float (H, W, 3)` in [0, 1]."""
    heat = np.clip(np.asarray(heat, dtype=np.float64), 0.0, 1.0)
    return np.stack([np.ones_like(heat), heat, 0.2 * heat], axis=-1)


def heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """Blend a heat map `(h, w)` in [0, 1] over `image` `uint8 (H, W, 3)`; the map is
    scaled to the image by nearest neighbour (`H / h`, `W / w` whole numbers), and each
    pixel's opacity is `alpha * heat`."""
    heat = np.asarray(heat, dtype=np.float64)
    rows, cols = image.shape[0] // heat.shape[0], image.shape[1] // heat.shape[1]
    heat = np.repeat(np.repeat(heat, rows, axis=0), cols, axis=1)
    weight = (alpha * heat)[..., None]
    blended = (1.0 - weight) * image.astype(np.float64) + weight * 255.0 * heat_colors(heat)
    return np.clip(blended, 0, 255).astype(np.uint8)


def normalise_heat(heat: np.ndarray) -> np.ndarray:
    """`heat / max(heat)` (zeros stay zeros); NaNs become 0."""
    heat = np.nan_to_num(np.abs(np.asarray(heat, dtype=np.float64)))
    peak = heat.max() if heat.size else 0.0
    return heat / peak if peak > 0 else heat


def scene_oriented(image: np.ndarray) -> np.ndarray:
    """A heading-up bev image turned 90 degrees clockwise: the ego drives to the right and
    its +y side (driver's right) is down, as in highway-env's top-down view."""
    return np.ascontiguousarray(np.rot90(image, k=-1))


def blit_array(surface: "pygame.Surface", image: np.ndarray, position: tuple[int, int],
               scale: int = 1) -> "pygame.Rect":
    """Draw an `uint8 (H, W, 3)` image at `position`, each pixel `scale` x `scale`."""
    if scale > 1:
        image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    patch = pygame.surfarray.make_surface(np.ascontiguousarray(np.transpose(image, (1, 0, 2))))
    return surface.blit(patch, position)
