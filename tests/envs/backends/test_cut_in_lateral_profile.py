"""A cut-in with a lateral speed (`HazardPlan.lateral_speed_mps`) on the highway backend and
both batched kernels: the cutter's lateral position is OSC's sinusoidal lane change.

Analytic: with peak lateral speed `v` over one lane `w = 4 m`, the lane change takes
`T = pi w / (2 v)` and the cutter's centre is at `y(t) = w (1 - cos(pi t / T)) / 2` from its
lane's centre `t` after the onset (`t <= T`), moving at `v sin(pi t / T)` laterally, then on
the target lane's centre.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from reflexdrive.envs.backends.batched import BatchedBackend
from reflexdrive.envs.backends.batched import numba as numba_kernel
from reflexdrive.envs.backends.highway import HighwayBackend
from reflexdrive.envs.scenarios import (
    HazardPlan,
    RoadSpec,
    ScenarioInit,
    VehicleInit,
    without_hazard,
)
from reflexdrive.envs.types import Command, Piece

F = 50
DT = 1.0 / F
W = 4.0
ONSET = 25
SPEEDS = (0.5, 2.0, 3.0)
CUTTER_SPEED = 10.0
KERNELS = ["torch"] + (["numba"] if numba_kernel.AVAILABLE else [])


def _init(lateral_speed: float, from_lane: int = 0) -> ScenarioInit:
    """The ego far behind in lane 1 (no interaction); the cutter alone in `from_lane`."""
    ego = VehicleInit(("0", "1", 1), 100.0, CUTTER_SPEED, CUTTER_SPEED, "ego")
    cutter = VehicleInit(("0", "1", from_lane), 300.0, CUTTER_SPEED, CUTTER_SPEED, "idm",
                         lane_changes=False)
    plan = HazardPlan("cut_in", 1, ONSET, target_lane=("0", "1", 1),
                      target_speed_mps=CUTTER_SPEED, lateral_speed_mps=lateral_speed)
    return ScenarioInit("profile", 0, F, RoadSpec(lanes=3), (ego, cutter), plan, 30.0)


def _expected_offset(lateral_speed: float, substeps: int) -> float:
    """Distance moved towards the target lane after `substeps` substeps from the start [m]."""
    t, period = (substeps - ONSET) * DT, math.pi * W / (2.0 * lateral_speed)
    if t <= 0.0:
        return 0.0
    return W if t >= period else W * (1.0 - math.cos(math.pi * t / period)) / 2.0


def _run(inits, backend: str, substeps: int):
    """`(y, heading, speed, lane)` of slot 1 after each substep, `(substeps + 1, worlds)`."""
    rows = []
    if backend == "highway":
        worlds = []
        for init in inits:
            world = HighwayBackend(F)
            world.reset(init)
            worlds.append(world)
        for k in range(substeps + 1):
            cutters = [w.road.vehicles[1] for w in worlds]
            rows.append([(c.position[1], c.heading, c.speed, c.lane_index[2]) for c in cutters])
            if k < substeps:
                for w in worlds:
                    w.substep([Piece(DT, Command(0.0, 0.0))])
    else:
        world = BatchedBackend(len(inits), F, kernel=backend)
        world.reset(list(inits))
        zero = np.zeros((len(inits), 2))
        for k in range(substeps + 1):
            s = world.state
            rows.append(list(zip(s.position[:, 1, 1].tolist(), s.heading[:, 1].tolist(),
                                 s.speed[:, 1].tolist(), s.lane[:, 1].tolist())))
            if k < substeps:
                world.substep(np.full(len(inits), DT), zero, zero)
    return np.array(rows)                                   # (substeps + 1, worlds, 4)


@pytest.mark.parametrize("backend", ["highway"] + KERNELS)
def test_lateral_position_follows_the_sinusoid(backend):
    durations = [math.ceil(math.pi * W / (2.0 * v) / DT) for v in SPEEDS]   # 629, 158, 105
    substeps = ONSET + max(durations) + 20
    trace = _run([_init(v) for v in SPEEDS], backend, substeps)
    for w, v in enumerate(SPEEDS):
        y, heading, speed, lane = trace[:, w].T
        expected = np.array([_expected_offset(v, n) for n in range(substeps + 1)])
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-9)
        end = ONSET + durations[w]
        # on the target lane's centre, exactly, from the first boundary at or after T on
        assert (y[end:] == W).all() and y[end - 1] < W
        assert (heading[end:] == 0.0).all() and (lane[end:] == 1).all()
        assert (y[:ONSET + 1] == 0.0).all()
        # the velocity points along the heading: lateral v sin(pi t / T), peak v half way
        lateral = speed * np.sin(heading)
        t = (np.arange(substeps + 1) - ONSET) * DT
        phase = np.clip(2.0 * v / W * t, 0.0, math.pi)
        np.testing.assert_allclose(lateral, v * np.sin(phase), rtol=0, atol=1e-9)
        assert lateral.max() == pytest.approx(v, abs=v * (math.pi * DT * v / W) ** 2)


@pytest.mark.parametrize("backend", ["highway"] + KERNELS)
def test_from_the_other_side_and_the_twin_keeps_its_lane(backend):
    inits = [_init(2.0, from_lane=2), without_hazard(_init(2.0))]
    substeps = ONSET + 200
    trace = _run(inits, backend, substeps)
    offsets = np.array([_expected_offset(2.0, n) for n in range(substeps + 1)])
    np.testing.assert_allclose(trace[:, 0, 0], 2 * W - offsets, rtol=0, atol=1e-9)
    assert (trace[:, 1, 0] == 0.0).all() and (trace[:, 1, 3] == 0).all()


def test_backends_agree():
    """The three implementations run the same operations: equal to float rounding."""
    inits = [_init(v) for v in SPEEDS]
    runs = {backend: _run(inits, backend, ONSET + 300) for backend in ["highway"] + KERNELS}
    for backend, trace in runs.items():
        np.testing.assert_allclose(trace, runs["highway"], rtol=0, atol=1e-12, err_msg=backend)
