"""Parity of the intersection's right-of-way rules: the batched `NetworkBackend` (the numba
kernel's `regulation`) against the highway backend (highway-env's own
`RegulatedRoad.enforce_road_rules`, `envs.backends.regulation`).

Several seeds of intersection and of intersection-cross-traffic (with their twins) run on
both backends with the same varied ego commands (so the ego's constant-steering prediction
varies) for 10 s: at every substep every vehicle's yield flag and target speed are the same,
its position within 1e-3 m and speed within 1e-3 m/s (the network parity tolerances), and
yields do happen.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from network_backend_pairs import network_backend_pair
from reflexdrive.envs.scenarios import generate, make_config, without_hazard
from reflexdrive.envs.types import Command, Piece

F = 50
DT = 1.0 / F
SUBSTEPS = 10 * F
POSITION_TOL_M = 1e-3
SPEED_TOL_MPS = 1e-3


def ego_commands(worlds: int, substeps: int) -> np.ndarray:
    """`(substeps, worlds, 2)` `[m/s^2, rad]`: accelerations in [-1, 1], steering in +-0.02
    (as `test_network_parity`)."""
    rng = np.random.default_rng(7)
    return np.stack([rng.uniform(-1.0, 1.0, (substeps, worlds)),
                     rng.uniform(-0.02, 0.02, (substeps, worlds))], axis=-1)


def run_regulated(inits, commands) -> dict:
    """Both backends on `inits` with `commands`; the worst errors, the substeps whose yield
    flags or target speeds differ, and the count of (substep, vehicle) yields."""
    assert {init.road.kind for init in inits} == {"intersection"}
    batched, singles = network_backend_pair(inits, F)
    result = dict(position_error=0.0, speed_error=0.0, mismatches=[], yields=0)
    for k, command in enumerate(commands):
        command = torch.as_tensor(command, dtype=torch.float64)
        batched.substep(torch.full((len(inits),), DT, dtype=torch.float64), command, command)
        state = batched.state
        for b, single in enumerate(singles):
            single.substep([Piece(DT, Command(float(command[b, 0]), float(command[b, 1])))])
            vehicles = single.road.vehicles
            slots = [j for j in range(state.valid.shape[1]) if bool(state.valid[b, j])
                     and j < len(inits[b].vehicles)]
            assert len(slots) == len(vehicles)
            position = np.array([v.position for v in vehicles])
            speed = np.array([v.speed for v in vehicles])
            flags = [bool(getattr(v, "is_yielding", False)) for v in vehicles]
            targets = [float(getattr(v, "target_speed", 0.0)) for v in vehicles]
            result["position_error"] = max(result["position_error"], float(
                np.abs(state.position[b, slots].numpy() - position).max()))
            result["speed_error"] = max(result["speed_error"], float(
                np.abs(state.speed[b, slots].numpy() - speed).max()))
            if state.is_yielding[b, slots].tolist() != flags or not np.array_equal(
                    state.target_speed[b, slots].numpy(), targets):
                result["mismatches"].append((k, b))
            result["yields"] += sum(flags)
    return result


@pytest.mark.parametrize("name,seeds", [("intersection", (1, 3, 4, 5)),
                                        ("intersection-cross-traffic", (0, 5))])
def test_regulation_matches_highway_backend(name, seeds):
    """(In intersection-cross-traffic only the oncoming traffic may yield, and its paths
    seldom cross another's: seed 5's does, to the ego.)"""
    inits = [generate(name, make_config(name), seed, F) for seed in seeds]
    if name == "intersection-cross-traffic":
        inits += [without_hazard(init) for init in inits]
    result = run_regulated(inits, ego_commands(len(inits), SUBSTEPS))
    assert result["mismatches"] == []
    assert result["yields"] >= 2 * 25              # at least two periods of yielding
    assert result["position_error"] < POSITION_TOL_M
    assert result["speed_error"] < SPEED_TOL_MPS


def test_rectangle_test_is_highway_envs():
    """The kernel's `rectangles_intersect` against `utils.rotated_rectangles_intersect` on
    random rectangles (any heading, centres within 10 m), both outcomes well represented."""
    from highway_env.utils import rotated_rectangles_intersect
    from reflexdrive.envs.backends.batched.numba.regulation import rectangles_intersect_many

    rng = np.random.default_rng(0)
    m = 4000
    a = np.column_stack([rng.uniform(-5, 5, (m, 2)), rng.uniform(-np.pi, np.pi, m)])
    b = np.column_stack([rng.uniform(-5, 5, (m, 2)), rng.uniform(-np.pi, np.pi, m)])
    size_a = np.column_stack([rng.uniform(3, 9, m), rng.uniform(1.5, 2.5, m)])
    size_b = np.column_stack([rng.uniform(3, 9, m), rng.uniform(1.5, 2.5, m)])
    got = rectangles_intersect_many(a, size_a, b, size_b)
    expected = np.array([rotated_rectangles_intersect((a[i, :2], *size_a[i], a[i, 2]),
                                                      (b[i, :2], *size_b[i], b[i, 2]))
                         for i in range(m)])
    assert 0.2 < expected.mean() < 0.8
    np.testing.assert_array_equal(got, expected)
