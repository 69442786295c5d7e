"""Top-down RGB frames with highway-env's own pygame graphics (for `render()` and videos)."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

FRAME_SIZE = (600, 300)
"""Default frame size (width, height) [px]."""
SCALING_PX_PER_M = 5.5
CENTERING = (0.3, 0.5)
"""Where the ego sits in the frame, as fractions of width and height."""


def render_top_down(backend, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """An RGB frame `uint8 (H, W, 3)` of the highway backend's world, centred on the ego."""
    import pygame
    from highway_env.road.graphics import RoadGraphics, WorldSurface

    if not pygame.get_init():
        pygame.init()
    width, height = size
    surface = WorldSurface((width, height), 0, pygame.Surface((width, height)))
    surface.scaling = SCALING_PX_PER_M
    surface.centering_position = list(CENTERING)
    surface.move_display_window_to(backend.ego.position)
    RoadGraphics.display(backend.road, surface)
    RoadGraphics.display_traffic(backend.road, surface, offscreen=True)
    return np.ascontiguousarray(np.transpose(pygame.surfarray.array3d(surface), (1, 0, 2)))
