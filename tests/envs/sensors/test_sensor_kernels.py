"""The numba CPU kernels (`envs/sensors/kernels/`) against the torch cores they mirror.

On the CPU the sensors' entry points run numba kernels; the torch cores stay the reference
(and the CUDA path). Tolerances: the bev raster and the lidar are compared bit for bit
(the kernels repeat the cores' float32 / float64 arithmetic and take torch's own cos and
sin); the ground-truth object list against the numpy implementation within
`2^-22` relative (two float32 ulps) plus `1e-9` absolute (libm's and numpy's float64 cos,
sin, hypot may differ by an ulp before the cast to float32); validity masks exactly.

Worlds: random ones (straight roads of 2-5 lanes at any angle, near and past their ends,
a few bent roads and egos turned past 60 degrees for the generic road path, vehicles at
and across the raster's edges, padding slots) and highway scenes of the batched backend.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pytest
import reflexdrive.envs.sensors as sensors
import torch
from reflexdrive.envs.backends.batched import BatchedBackend
from reflexdrive.envs.backends.batched.torch.road import straight_road_geometry
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.scenarios import generate, make_config
from reflexdrive.envs.sensors import (
    cast_lidar,
    constants,
    ground_truth_objects,
    observe,
    render_bev,
)
from reflexdrive.envs.types import RoadGeometry, WorldSnapshot

TRUTH = SensorConfig(lidar_range_noise_m=0.0, lidar_range_rate_noise_mps=0.0)
NOISY = SensorConfig(bev_position_noise_m=0.7, bev_dropout_prob=0.2, lidar_range_noise_m=0.4,
                     lidar_range_rate_noise_mps=0.3, lidar_dropout_prob=0.15)
CONFIGS = {
    "truth": TRUTH,
    "no-occlusion": replace(TRUTH, bev_occlusion=False),
    "noisy": NOISY,
}
ODD = {   # other raster geometries: half-metre pixels, one word per row not a multiple of
    # 8 pixels (byte path), several words per row
    "half-metre": SensorConfig(range_m=24.0, bev_behind_m=8.0, bev_half_width_m=16.0,
                               bev_m_per_px=0.5, lidar_beams=90),
    "70-px": replace(TRUTH, bev_half_width_m=35.0, range_m=40.0, bev_behind_m=9.0),
    "136-px": replace(NOISY, bev_half_width_m=68.0, lidar_beams=7),
}
GT_RTOL, GT_ATOL = 2.0 ** -22, 1e-9


# ----------------------------------------------------------------------------- worlds


def _rotate(points, angle, shift):
    """`points (..., 2)` turned by `angle` [rad] and moved by `shift`; quarter turns exact."""
    quarter = angle / (0.5 * math.pi)
    if quarter == round(quarter):
        c, s = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][round(quarter) % 4]
    else:
        c, s = math.cos(angle), math.sin(angle)
    x, y = points[..., 0], points[..., 1]
    return np.stack([x * c - y * s + shift[0], x * s + y * c + shift[1]], -1)


@functools.lru_cache(maxsize=None)
def _random_worlds(seed: int, batch: int, slots: int = 14) -> tuple[WorldSnapshot,
                                                                      RoadGeometry]:
    """`batch` random worlds, each on its own road (see the module docstring); shared by
    the tests (do not write into them)."""
    rng = np.random.default_rng(seed)
    roads, position = [], np.zeros((batch, slots, 2))
    heading = np.zeros((batch, slots))
    length = rng.uniform(3.0, 12.0, (batch, slots))
    width = rng.uniform(1.5, 2.6, (batch, slots))
    valid = rng.random((batch, slots)) < 0.85
    valid[:, 0] = True
    for b in range(batch):
        lanes = int(rng.integers(2, 6))
        road_length = float(rng.choice([150.0, 600.0, 2000.0]))
        segments, half, marks = straight_road_geometry(lanes, road_length, 4.0, 3.0, 7.33)
        # Quarter turns, or any angle (then `prepare_road` may find its stripes uneven
        # to rounding, and send it down the generic path).
        angle = float(rng.choice([0.0, 0.5 * math.pi, -math.pi, rng.uniform(-math.pi, math.pi)],
                                 p=[0.5, 0.2, 0.2, 0.1]))
        shift = rng.uniform(-5000.0, 5000.0, 2)
        if b % 29 == 5:                                   # a bent road: the generic path
            segments = np.concatenate([segments, segments + [road_length, 0.0]])
            segments[lanes:, 1, 1] += 12.0
            half = np.concatenate([half, half])
        roads.append((_rotate(segments, angle, shift), half, _rotate(marks, angle, shift)))
        # The ego: along the road (also near and past its ends), turned off its heading.
        s = float(rng.choice([rng.uniform(0.0, road_length), rng.uniform(-40.0, 40.0),
                              road_length + rng.uniform(-40.0, 40.0)]))
        t = rng.uniform(-2.0, 4.0 * lanes - 2.0)
        turn = float(rng.choice([0.0, 1e-9, rng.uniform(-0.5, 0.5), 1.2 * rng.choice([-1, 1])],
                                p=[0.2, 0.1, 0.65, 0.05]))
        ego = _rotate(np.array([s, t]), angle, shift)
        ego_heading = angle + turn
        # Others: ego-frame offsets over and past the raster, some right on its edges.
        local = np.stack([rng.uniform(-25.0, 60.0, slots), rng.uniform(-40.0, 40.0, slots)], -1)
        local[1:4] = [(48.0 + rng.uniform(-3, 3), rng.uniform(-30, 30)),
                      (rng.uniform(-16, 48), 32.0 * rng.choice([-1, 1]) + rng.uniform(-1, 1)),
                      (-16.0 + rng.uniform(-2, 2), rng.uniform(-30, 30))]
        local[4:6] = rng.uniform(-1.0, 1.0, (2, 2)) * [[8.0, 3.0]]    # near the ego
        local[0] = 0.0
        position[b] = ego + _rotate(local, ego_heading, (0.0, 0.0))
        relative = np.where(rng.random(slots) < 0.7, rng.normal(0.0, 0.1, slots),
                            rng.uniform(-math.pi, math.pi, slots))
        heading[b] = ego_heading + relative * (np.arange(slots) > 0)
    s_max = max(len(r[0]) for r in roads)
    k_max = max(len(r[2]) for r in roads)
    road = RoadGeometry(np.zeros((batch, s_max, 2, 2)), np.zeros((batch, s_max)),
                        np.zeros((batch, s_max), bool), np.zeros((batch, k_max, 2, 2)),
                        np.zeros((batch, k_max), bool))
    for b, (segments, half, marks) in enumerate(roads):
        road.lane_segments[b, :len(segments)] = segments
        road.lane_half_width[b, :len(segments)] = half
        road.lane_valid[b, :len(segments)] = True
        road.marking_segments[b, :len(marks)] = marks
        road.marking_valid[b, :len(marks)] = True
    zeros = np.zeros(batch)
    snap = WorldSnapshot(
        time_s=zeros, position=position, heading=heading,
        speed=rng.uniform(-2.0, 35.0, (batch, slots)), acceleration=np.zeros((batch, slots)),
        length=length, width=width,
        vehicle_id=np.where(valid, np.arange(slots) + 100 * np.arange(batch)[:, None], -1),
        valid=valid, ego_steering=zeros, ego_lane_offset=zeros, ego_heading_error=zeros,
        ego_lane_index=zeros.astype(np.int64), ego_lane_count=zeros.astype(np.int64) + 3,
        ego_on_road=zeros > -1, crashed=zeros > 1, ego_on_route_exit=zeros > -1)
    snap.validate()
    return snap, road


@functools.lru_cache(maxsize=None)
def _highway_scenes(batch: int = 48) -> tuple[WorldSnapshot, RoadGeometry]:
    """Batched-backend highway scenes (3 and 4 lanes), each moved along its road (some near
    the ends), traffic pulled towards the ego (occlusions), egos turned a little."""
    rng = np.random.default_rng(11)
    backend = BatchedBackend(batch)
    backend.reset([generate("highway", make_config("highway", {"lanes": 3 + b % 2}), b, 50)
                   for b in range(batch)])
    snap, road = backend.snapshot(), backend.road_geometry()
    position = snap.position.copy()
    position = position[:, :1] + (position - position[:, :1]) * [0.5, 1.0]
    position[..., 0] += rng.choice([0.0, 1.0], batch)[:, None] * rng.uniform(-60, 2000, batch)[
        :, None]
    heading = snap.heading.copy()
    heading[:, 0] += np.linspace(-0.3, 0.3, batch)
    heading[:, 1::3] += rng.normal(0.0, 0.05, heading[:, 1::3].shape)
    return replace(snap, position=position, heading=heading), road


def _both(function, *args, seed=None, **kwargs):
    """`function` by the numba kernel and by the torch core (the same seeded rng), and the
    two generators afterwards."""
    results, rngs = [], []
    for kernel in ("numba", "torch"):
        rng = None if seed is None else np.random.default_rng(seed)
        extra = {} if rng is None else {"rng": rng}
        results.append(function(*args, kernel=kernel, **extra, **kwargs))
        rngs.append(rng)
    return results, rngs


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The torch references on one thread: the same results (element-wise ops), and no
    OpenMP wake-ups that stall for milliseconds on a busy host."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- bev


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_bev_matches_the_torch_core_on_random_worlds(seed, name):
    snap, road = _random_worlds(seed, 64)
    config = CONFIGS[name]
    (fast, core), (rng_a, rng_b) = _both(render_bev, snap, road, config,
                                         seed=None if name != "noisy" else seed + 10)
    np.testing.assert_array_equal(fast, core)
    assert fast[:, sensors.BEV_VEHICLES].any((1, 2)).mean() > 0.5
    assert fast[:, sensors.BEV_MARKINGS].any((1, 2)).mean() > 0.8
    if rng_a is not None:                                  # the same draws, no more
        assert rng_a.bit_generator.state == rng_b.bit_generator.state


def test_random_worlds_cover_both_road_paths():
    snap, road = _random_worlds(0, 64)
    plan = sensors.prepare_road(road.lane_segments, road.lane_half_width, road.lane_valid,
                                road.marking_segments, road.marking_valid)
    straight = plan.straight.numpy()[plan.variant.numpy()]
    turn = np.abs(np.angle(np.exp(1j * (snap.heading[:, 0] - np.arctan2(
        *(road.lane_segments[:, 0, 1] - road.lane_segments[:, 0, 0]).T[::-1])))))
    fast = straight & (np.cos(turn) >= constants.MIN_COS)
    assert 0.6 < fast.mean() < 0.95                        # most fast, some generic


@pytest.mark.parametrize("name", list(ODD))
def test_bev_matches_the_torch_core_on_other_rasters(name):
    snap, road = _random_worlds(5, 50)
    (fast, core), _ = _both(render_bev, snap, road, ODD[name], seed=3)
    assert fast.shape[1:] == ODD[name].bev_shape
    np.testing.assert_array_equal(fast, core)


def test_bev_matches_the_torch_core_on_highway_scenes():
    snap, road = _highway_scenes()
    for config, seed in ((TRUTH, None), (NOISY, 4)):
        (fast, core), _ = _both(render_bev, snap, road, config, seed=seed)
        np.testing.assert_array_equal(fast, core)
        assert fast[:, sensors.BEV_ROAD].any((1, 2)).mean() > 0.9


@pytest.mark.parametrize("name", ["merge", "roundabout", "intersection"])
def test_bev_matches_the_torch_core_on_road_networks(name):
    # Curved lanes: every world on the generic road path's kernel.
    from reflexdrive.envs.backends.batched.network_backend import NetworkBackend

    worlds = 300                                   # >= 256: numba's threads too
    backend = NetworkBackend(worlds, name, 50)
    backend.reset([generate(name, make_config(name), seed, 50) for seed in range(worlds)])
    command = torch.zeros((worlds, 2), dtype=torch.float64)
    command[:, 1] = torch.linspace(-0.1, 0.1, worlds, dtype=torch.float64)   # turned egos
    for _ in range(40):
        backend.substep(torch.full((worlds,), 0.02, dtype=torch.float64), command, command)
    snap, road = backend.snapshot(), backend.road_geometry()
    for config, seed in ((TRUTH, None), (ODD["half-metre"], 2)):
        (fast, core), _ = _both(render_bev, snap, road, config, seed=seed)
        np.testing.assert_array_equal(fast, core)
        assert fast[:, sensors.BEV_ROAD].any((1, 2)).all()
        assert fast[:, sensors.BEV_MARKINGS].any((1, 2)).mean() > 0.9


def test_bev_draws_into_the_given_buffer_every_byte():
    snap, road = _random_worlds(5, 50)
    out = np.full((50,) + TRUTH.bev_shape, 7, dtype=np.uint8)
    assert render_bev(snap, road, TRUTH, out=out) is out
    np.testing.assert_array_equal(out, render_bev(snap, road, TRUTH, kernel="torch"))


# ----------------------------------------------------------------------------- lidar, truth


@pytest.mark.parametrize("seed", [0, 1])
def test_lidar_matches_the_torch_core(seed):
    snap, _ = _random_worlds(seed, 64)
    scenes, _ = _highway_scenes()
    for worlds in (snap, scenes):
        for config, rng_seed in ((TRUTH, None), (NOISY, seed), (ODD["136-px"], seed)):
            (fast, core), rngs = _both(cast_lidar, worlds, config, seed=rng_seed)
            np.testing.assert_array_equal(fast, core)
            assert (fast[..., 0] < config.range_m).mean() > 0.05
            if rngs[0] is not None:
                assert rngs[0].bit_generator.state == rngs[1].bit_generator.state


def test_ground_truth_matches_numpy():
    for snap in (_random_worlds(0, 64)[0], _highway_scenes()[0]):
        for config in (TRUTH, replace(TRUTH, max_objects=5)):
            (objects, valid), (ref_objects, ref_valid) = (
                ground_truth_objects(snap, config, kernel=k) for k in ("numba", "numpy"))
            np.testing.assert_array_equal(valid, ref_valid)
            np.testing.assert_allclose(objects, ref_objects, rtol=GT_RTOL, atol=GT_ATOL)
            assert valid.any(1).all()


# ----------------------------------------------------------------------------- plumbing


def test_observe_is_render_bev_then_cast_lidar():
    snap, road = _random_worlds(5, 50)
    a, b = np.random.default_rng(8), np.random.default_rng(8)
    bev, scan = observe(snap, road, NOISY, a)
    np.testing.assert_array_equal(bev, render_bev(snap, road, NOISY, b, kernel="torch"))
    np.testing.assert_array_equal(scan, cast_lidar(snap, NOISY, b, kernel="torch"))
    assert a.random() == b.random()
    truth = observe(snap, road, TRUTH)
    np.testing.assert_array_equal(truth[0], render_bev(snap, road, TRUTH))
    np.testing.assert_array_equal(truth[1], cast_lidar(snap, TRUTH))


def test_torch_trig_does_not_depend_on_cuts_or_threads():
    # The kernels take cos and sin from torch in one call; the cores compute them on other
    # tensors (other shapes, strides, thread counts). Exactness relies on this.
    values = np.random.default_rng(0).uniform(-7.0, 7.0, 50_001)
    threads = torch.get_num_threads()
    try:
        for dtype in (torch.float64, torch.float32):
            tensor = torch.from_numpy(values).to(dtype)
            for function in (torch.cos, torch.sin):
                torch.set_num_threads(max(2, threads))
                whole = function(tensor)
                strided = function(tensor.view(-1, 1).expand(-1, 3)[:, 1])
                torch.set_num_threads(1)
                pieces = torch.cat([function(p) for p in tensor.split(777)])
                assert torch.equal(whole, pieces) and torch.equal(whole, strided)
    finally:
        torch.set_num_threads(threads)


def test_kernel_argument():
    snap, road = _random_worlds(5, 50)
    with pytest.raises(ValueError, match="kernel"):
        render_bev(snap, road, TRUTH, kernel="fortran")
    with pytest.raises(ValueError, match="numba"):
        cast_lidar(snap, TRUTH, device="meta", kernel="numba")
    with pytest.raises(ValueError, match="kernel"):
        ground_truth_objects(snap, TRUTH, kernel="torch")


def test_counter_based_noise_is_standard_and_addressed_by_world_key_and_index():
    """The noise of world `b`, slot or beam `k` depends on the world's keys and `k` only (so
    a kernel can draw just the numbers it uses, and a world's noise does not depend on its
    index or batch), and has the right distribution: 200 000 normals with mean 0 and
    variance 1 within 5 standard errors, uncorrelated pairs, uniforms in (0, 1) with mean
    1/2; a call takes the same randomness from `rng` whatever the shapes."""
    from reflexdrive.envs.sensors import call_noise_keys, noise_arrays, world_noise_keys

    call_keys = np.array([12345, 2**63 + 7], dtype=np.uint64)
    keys = world_noise_keys(call_keys, 1000)
    assert keys.shape == (1000, 2) and keys.dtype == np.uint64 and keys.flags.c_contiguous
    assert len(np.unique(keys)) == keys.size                # distinct keys per world, stream
    uniform, normal = noise_arrays(keys, 100)
    small_u, small_n = noise_arrays(keys[:10], 100)
    np.testing.assert_array_equal(small_n, normal[:10])
    np.testing.assert_array_equal(small_u, uniform[:10])
    np.testing.assert_array_equal(world_noise_keys(call_keys, 10), keys[:10])
    # a world alone, or among others in another order: its own numbers
    pick = np.array([7, 3, 999])
    alone_u, alone_n = noise_arrays(keys[pick], 100)
    np.testing.assert_array_equal(alone_n, normal[pick])
    np.testing.assert_array_equal(alone_u, uniform[pick])
    few_u, few_n = noise_arrays(keys, 30)                   # fewer slots: a prefix
    np.testing.assert_array_equal(few_n, normal[:, :30])
    np.testing.assert_array_equal(few_u, uniform[:, :30])
    z = normal.reshape(-1)
    se = 1.0 / math.sqrt(z.size)
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2.0) * se
    correlation = np.corrcoef(normal[..., 0].ravel(), normal[..., 1].ravel())[0, 1]
    assert abs(correlation) < 5 / math.sqrt(1e5)
    assert 0.0 < uniform.min() and uniform.max() < 1.0
    assert abs(uniform.mean() - 0.5) < 5 * math.sqrt(1 / 12 / uniform.size)
    # across worlds too: world means of a slot's normals are N(0, 1 / B)
    assert abs(normal[:, 0, 0].mean()) < 5 / math.sqrt(1000)
    assert abs(np.corrcoef(normal[:-1, :, 0].ravel(), normal[1:, :, 0].ravel())[0, 1]) < 5e-2
    other_u, other_n = noise_arrays(world_noise_keys(
        np.array([12346, 2**63 + 7], dtype=np.uint64), 10), 100)
    assert not np.any(other_n == small_n)                   # another key, other normals
    # episode keys: per (seed, tick), whatever the world's place; distinct otherwise
    episode = sensors.episode_noise_keys([4, 9, 4, 4], [0, 0, 0, 1])
    for field in ("bev", "lidar"):
        keys = getattr(episode, field)
        assert keys.shape == (4, 2) and keys.dtype == np.uint64 and keys.flags.c_contiguous
        np.testing.assert_array_equal(keys[0], keys[2])
        np.testing.assert_array_equal(keys[2], getattr(sensors.episode_noise_keys(
            np.array([4]), np.array([0])), field)[0])
    every = np.concatenate([episode.bev[[0, 1, 3]], episode.lidar[[0, 1, 3]]])
    assert len(np.unique(every)) == every.size
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    sensors.draw_lidar_noise(a, SensorConfig(lidar_beams=8), 2)
    sensors.draw_lidar_noise(b, SensorConfig(lidar_beams=64), 50)
    np.testing.assert_array_equal(call_noise_keys(a), call_noise_keys(b))


def test_numpy_splitmix_equals_the_kernels_hash():
    """`sensors.splitmix64` (vectorised numpy, which derives the world keys) is the kernels'
    `splitmix64_at` bit for bit, wrapping included (keys near 2**64, negative counters), and so are
    `world_noise_keys` and `episode_noise_keys` (their own vectorised arithmetic)."""
    from reflexdrive.envs.sensors.kernels.noise import splitmix64_at

    rng = np.random.default_rng(21)
    keys = np.concatenate([rng.integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True),
                           np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)])
    counters = np.concatenate([rng.integers(-2**40, 2**62, 500),
                               np.array([0, -1, 2**63 - 1, -2**63])])
    ours = sensors.splitmix64(keys, counters)
    assert ours.dtype == np.uint64 and ours.shape == keys.shape
    np.testing.assert_array_equal(
        ours, np.array([splitmix64_at(k, c) for k, c in zip(keys, counters)], dtype=np.uint64))
    # broadcasting, as `world_noise_keys` uses it; and 0-d operands
    grid = sensors.splitmix64(keys[:3, None], np.arange(4)[None, :])
    np.testing.assert_array_equal(grid[2, 3], splitmix64_at(keys[2], 3))
    assert sensors.splitmix64(keys[1], 7) == splitmix64_at(keys[1], 7)
    call = keys[:2]
    np.testing.assert_array_equal(sensors.world_noise_keys(call, 5)[4],
                                  [splitmix64_at(call[0], 4), splitmix64_at(call[1], 4)])
    # episode keys: splitmix64(splitmix64(K, seed), 4 tick + stream), streams bev 0, 1,
    # lidar 2, 3
    seeds, ticks = np.array([0, 7, 2**31 - 2, 7]), np.array([0, 3, 900, 4])
    episode = sensors.episode_noise_keys(seeds, ticks)
    for b in range(len(seeds)):
        # (`splitmix64_at` returns a python int: back to uint64, or numba would type it int64)
        start = np.uint64(splitmix64_at(sensors.EPISODE_KEY, seeds[b]))
        np.testing.assert_array_equal(
            np.concatenate([episode.bev[b], episode.lidar[b]]),
            [splitmix64_at(start, 4 * ticks[b] + stream) for stream in range(4)])


def test_episode_noise_matches_the_torch_core_and_is_checked():
    """An `EpisodeNoise` as `rng`: numba and torch agree bit for bit (bev and lidar), a
    world's observation depends on its own keys only, and wrong shapes are refused."""
    snap, road = _random_worlds(2, 40)
    seeds, ticks = np.arange(100, 140), np.arange(40) % 3
    noise = sensors.episode_noise_keys(seeds, ticks)
    truth = render_bev(snap, road, NOISY)                   # rng None: no noise
    bev = [render_bev(snap, road, NOISY, noise, kernel=k) for k in ("numba", "torch")]
    np.testing.assert_array_equal(bev[0], bev[1])
    assert not np.array_equal(bev[0], truth)                # the noise is on
    lidar = [cast_lidar(snap, NOISY, noise, kernel=k) for k in ("numba", "torch")]
    np.testing.assert_array_equal(lidar[0], lidar[1])
    both = observe(snap, road, NOISY, noise)
    np.testing.assert_array_equal(both[0], bev[0])
    np.testing.assert_array_equal(both[1], lidar[0])
    # worlds 5 .. 9 alone, with their own keys: the same rows
    rows = slice(5, 10)
    part = replace(snap, **{k: getattr(snap, k)[rows] for k in WorldSnapshot.__dataclass_fields__
                            if isinstance(getattr(snap, k), np.ndarray)
                            and getattr(snap, k).shape[:1] == (40,)})
    part_road = replace(road, **{k: getattr(road, k)[rows]
                                 for k in RoadGeometry.__dataclass_fields__
                                 if isinstance(getattr(road, k), np.ndarray)
                                 and getattr(road, k).shape[:1] == (40,)})
    alone = observe(part, part_road, NOISY, sensors.episode_noise_keys(seeds[rows], ticks[rows]))
    np.testing.assert_array_equal(alone[0], bev[0][rows])
    np.testing.assert_array_equal(alone[1], lidar[0][rows])
    with pytest.raises(ValueError, match=r"EpisodeNoise.bev must be a \(40, 2\) uint64"):
        render_bev(snap, road, NOISY, sensors.episode_noise_keys(seeds[:3], ticks[:3]))
    with pytest.raises(ValueError, match=r"EpisodeNoise.lidar"):
        cast_lidar(snap, NOISY, noise._replace(lidar=noise.lidar.astype(np.int64)))
    with pytest.raises(TypeError, match="rng must be"):
        cast_lidar(snap, NOISY, 7)
    with pytest.raises(ValueError, match="seeds and ticks"):
        sensors.episode_noise_keys(seeds, ticks[:3])
