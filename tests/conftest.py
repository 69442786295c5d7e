"""Shared test setup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from reflexdrive.envs.types import Command


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test on one torch thread: tiny tensors run fastest on one, the suite stays
    deterministic and kind to a shared 2-core machine. Restored after each test."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class PicklePayload:
    """Pickles to a call of `mark_code_ran`: loading it with plain pickle would run code
    (the checkpoint tests check that loading refuses it and the marker file never appears)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (mark_code_ran, (self.marker,))


def mark_code_ran(marker: str) -> None:
    Path(marker).write_text("code ran")


_USER_MODULES = iter(range(1_000_000))


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """`write(source) -> module name`: a module of a user's code in `tmp_path`, put on
    `sys.path` (undone after the test), under a name no other test uses (so no stale
    `sys.modules` entry answers for it)."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))

    def write(source: str) -> str:
        name = f"user_code_{next(_USER_MODULES)}"
        (folder / f"{name}.py").write_text(source)
        return name

    return write


def pure_pursuit(route: np.ndarray, speed: float, target_mps: float) -> Command:
    """Follow the map's route (ego frame, `info["map"]["route"]`, a point every 2 m from
    the ego's projection on its lane): steer along the arc through its point 2 m ahead
    (highway-env's 5 m kinematic bicycle: curvature `2 y / d^2`, steering `atan(L k)`),
    plus 0.2 rad/m towards the lane's centre; accelerate towards `target_mps`."""
    point = route[1].astype(np.float64)
    curvature = 2.0 * point[1] / float(point @ point)
    steering = np.arctan(5.0 * curvature) + 0.2 * float(route[0, 1])
    return Command(float(np.clip(0.8 * (target_mps - speed), -3.0, 3.0)),
                   float(np.clip(steering, -0.5, 0.5)))
