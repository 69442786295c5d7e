"""Sensor noise keys: where the randomness of an observation comes from.

The kernels take `(B, 2)` uint64 keys, one pair per world (normals, uniforms); the noise of
world `b`, slot or beam `k` is `kernels.noise.normal_pair_at(keys[b, 0], k)` and
`uniform_at(keys[b, 1], k)` (a counter-based generator: SplitMix64 and Box-Muller). The
keys come from a `NoiseSource`:
- an `EpisodeNoise` (`episode_noise_keys`, what both envs pass) holds each world's keys as
  SplitMix64 of (episode seed, tick within the episode, stream), so a world's noise
  depends on its episode and tick only, never on its index, its batch or the other worlds
  (runs do not depend on `--envs` or chunking);
- a `np.random.Generator` gives each call two keys (the bev's, then the lidar's), and world
  `b`'s keys are SplitMix64 of (call key, `b`). A call consumes the same randomness from a
  Generator whatever the shapes and the scene, so a seeded stream stays aligned whatever
  the traffic does.
The numba kernels compute the noise where they use it; the torch cores take the same
numbers as arrays (`noise_arrays`, through `bev.draw_bev_noise`, `lidar.draw_lidar_noise`),
so the same keys give the same observation on every device and path. SplitMix64 itself is
written once, in `kernels.noise` (`splitmix64_at`, and its ufunc for arrays).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from reflexdrive.envs.sensors.kernels.noise import noise_kernel, splitmix64_ufunc


class EpisodeNoise(NamedTuple):
    """Per-world noise keys of one observation (`episode_noise_keys`): `bev` and `lidar`,
    each `(B, 2)` C-contiguous uint64 (the key of the normals, then of the uniforms)."""

    bev: np.ndarray
    lidar: np.ndarray


NoiseSource = np.random.Generator | EpisodeNoise
"""What the sensors' `rng` argument takes (besides None: no noise)."""

EPISODE_KEY = np.uint64(0x7265666C65786472)
"""SplitMix64 key `episode_noise_keys` hashes the episode seed with ("reflexdr")."""

_STREAMS = np.array([[0, 1], [2, 3]], dtype=np.uint64)
"""`episode_noise_keys`' streams in its `(2, B, 2)` layout: `[sensor, :, kind]` (bev
normals 0, bev uniforms 1, lidar normals 2, lidar uniforms 3)."""


def _counters(counter) -> np.ndarray:
    """Integers as uint64 counters, modulo 2**64 (as the kernels' `np.uint64(counter)`)."""
    counter = np.asarray(counter)
    return counter if counter.dtype == np.uint64 else counter.astype(np.int64).astype(np.uint64)


def splitmix64(key, counter) -> np.ndarray:
    """`kernels.noise.splitmix64_at` elementwise, with numpy broadcasting: SplitMix64's
    output function of `key + (counter + 1) * golden` (uint64, wrapping).

    Args:
        key: uint64 array (or scalar). counter: integer array (or scalar), taken modulo
            2**64 as the kernel's `np.uint64(counter)`.

    Returns:
        uint64 array of the broadcast shape (a numpy scalar for scalar operands):
        `splitmix64_at(key, counter)` element by element.
    """
    return splitmix64_ufunc(np.asarray(key, dtype=np.uint64), _counters(counter))


def world_noise_keys(call_keys: np.ndarray, batch: int) -> np.ndarray:
    """`(B, 2)` uint64 keys of worlds `0 .. B - 1` from one call's `(2,)` keys
    (`call_noise_keys`): world `b`'s are `splitmix64(call_keys, b)`, so a world's noise
    depends on the call key and its index only."""
    keys = np.empty((batch, 2), dtype=np.uint64)
    splitmix64_ufunc(np.asarray(call_keys, dtype=np.uint64)[None, :],
                     np.arange(batch, dtype=np.uint64)[:, None], out=keys)
    return keys


def episode_noise_keys(seeds, ticks) -> EpisodeNoise:
    """The noise keys of `B` worlds observing tick `ticks[b]` of the episode of scenario seed
    `seeds[b]`: a pure function of (seed, tick), never of the world's index or batch.

    Each key is `splitmix64(splitmix64(K, seed), 4 tick + stream)` (`K` = `EPISODE_KEY`): the
    episode's hashed seed starts a SplitMix64 stream of four keys per tick, the streams 0
    .. 3 being the bev's normals and uniforms and the lidar's normals and uniforms. The envs
    pass each world's scenario seed and the tick it observes (substeps since its reset over
    substeps per tick, rounded up: 0 at reset, and an episode that ends mid-tick gets fresh
    noise for its last observation).

    Args:
        seeds: `(B,)` integers (the scenario seeds). ticks: `(B,)` integers.

    Returns:
        `EpisodeNoise` for the `rng` argument of `render_bev`, `cast_lidar`, `observe`
        (its `bev` and `lidar` are views of one `(2, B, 2)` array).
    """
    seeds, ticks = np.asarray(seeds), np.asarray(ticks)
    if (seeds.ndim != 1 or ticks.shape != seeds.shape
            or not np.issubdtype(seeds.dtype, np.integer)
            or not np.issubdtype(ticks.dtype, np.integer)):
        raise ValueError(f"seeds and ticks must be (B,) integer arrays of one shape, got "
                         f"{seeds.dtype} {seeds.shape} and {ticks.dtype} {ticks.shape}")
    with np.errstate(over="ignore"):                   # counters wrap modulo 2**64
        start = splitmix64(EPISODE_KEY, seeds)
        counter = _counters(ticks) * np.uint64(4)
        keys = np.empty((2, seeds.shape[0], 2), dtype=np.uint64)
        splitmix64_ufunc(start[None, :, None], counter[None, :, None] + _STREAMS[:, None, :],
                         out=keys)
    return EpisodeNoise(keys[0], keys[1])


def call_noise_keys(rng: np.random.Generator) -> np.ndarray:
    """One call's `(2,)` uint64 noise keys (normals, uniforms) from `rng`."""
    return rng.integers(0, 2**64 - 1, size=2, dtype=np.uint64, endpoint=True)


def _source_keys(rng, field: str, batch: int) -> np.ndarray | None:
    """`(B, 2)` uint64 world keys of the bev (`field="bev"`) or the lidar from a noise
    source: None for None; a Generator gives two call keys (the same draws whatever the
    shapes), then `world_noise_keys`; an `EpisodeNoise` its `field` keys, checked."""
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return world_noise_keys(call_noise_keys(rng), batch)
    if isinstance(rng, EpisodeNoise):
        keys = getattr(rng, field)
        if (not isinstance(keys, np.ndarray) or keys.dtype != np.uint64
                or keys.shape != (batch, 2)):
            shape = getattr(keys, "shape", None)
            dtype = getattr(keys, "dtype", type(keys).__name__)
            raise ValueError(f"EpisodeNoise.{field} must be a ({batch}, 2) uint64 array (one "
                             f"key pair per world), got {dtype} of shape {shape}")
        return np.ascontiguousarray(keys)
    raise TypeError(f"rng must be None, a numpy Generator or an EpisodeNoise, got "
                    f"{type(rng).__name__}")


def bev_keys(rng, batch: int) -> np.ndarray | None:
    """The bev's `(B, 2)` world keys from a noise source (None: no noise)."""
    return _source_keys(rng, "bev", batch)


def lidar_keys(rng, batch: int) -> np.ndarray | None:
    """The lidar's `(B, 2)` world keys from a noise source (None: no noise)."""
    return _source_keys(rng, "lidar", batch)


def noise_arrays(keys: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The noise of `keys` (`(B, 2)` uint64 world keys) as arrays: `(uniform (B, K) float64
    in (0, 1), normal (B, K, 2) float64 standard normals)`, `K = count` slots or beams
    (`kernels.noise.noise_kernel`: the numbers the kernels compute where they need them)."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    if keys.ndim != 2 or keys.shape[1] != 2:
        raise ValueError(f"keys must be (B, 2) uint64, got shape {keys.shape}")
    normal = np.empty((keys.shape[0], count, 2))
    uniform = np.empty((keys.shape[0], count))
    noise_kernel(keys, count, normal, uniform)
    return uniform, normal
