"""Counter-based sensor noise: SplitMix64 (written once, here) and Box-Muller.

Sensor noise is a pure function of a per-world key and the slot or beam it applies to. A
kernel draws only the numbers it uses (the lidar's on beams that hit, the bev's when its
noise is on), in parallel, and any path (the torch cores take the same numbers as arrays
from `noise_kernel`) gets the same values whatever the thread count. The keys (`(B, 2)`:
each world's normals' and uniforms') come from `envs.sensors.noise` (`world_noise_keys`,
`episode_noise_keys`, which hash with `splitmix64_ufunc`, the numpy form of
`splitmix64_at`), so a world's noise does not depend on its index in the batch or on the
other worlds.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from reflexdrive.envs.sensors.kernels.common import HELPER, JIT, njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
"""SplitMix64's increment (the golden ratio in 64-bit fixed point)."""

MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_2 = np.uint64(0x94D049BB133111EB)
"""SplitMix64's output-function multipliers."""

TWO_POW_M53 = 2.0 ** -53
"""One unit of a 53-bit uniform."""


@njit(**HELPER)
def splitmix64_at(key, counter):
    """SplitMix64's output function of `key + (counter + 1) * golden` (uint64, wrapping):
    the `counter`-th number of SplitMix64's stream from seed `key` (Steele et al. 2014).
    `counter` is taken modulo 2**64 (`np.uint64(counter)`)."""
    z = key + (np.uint64(counter) + np.uint64(1)) * GOLDEN
    z = (z ^ (z >> np.uint64(30))) * MIX_1
    z = (z ^ (z >> np.uint64(27))) * MIX_2
    return z ^ (z >> np.uint64(31))


@numba.vectorize(cache=True)
def splitmix64_ufunc(key, counter):
    """`splitmix64_at` as a numpy ufunc (broadcasting, `out=`); compiled on first use for
    the operand types (`sensors.noise.splitmix64` passes uint64 arrays)."""
    return splitmix64_at(key, counter)


@njit(**HELPER)
def uniform_at(key, counter):
    """A uniform float64 in `(0, 1)` (53 random bits, never 0 or 1)."""
    return (float(splitmix64_at(key, counter) >> np.uint64(11)) + 0.5) * TWO_POW_M53


@njit(**HELPER)
def normal_pair_at(key, counter):
    """Two independent standard normal float64 (Box-Muller from uniforms `2 counter`,
    `2 counter + 1`)."""
    radius = math.sqrt(-2.0 * math.log(uniform_at(key, 2 * counter)))
    angle = 2.0 * math.pi * uniform_at(key, 2 * counter + 1)
    return radius * math.cos(angle), radius * math.sin(angle)


@njit(**JIT)
def noise_kernel(keys, count, normal, uniform):
    """The noise of `B` worlds as arrays: `normal (B, K, 2)` standard normals (pair `k` of
    world `b` is `normal_pair_at(keys[b, 0], k)`) and `uniform (B, K)` uniforms in `(0, 1)`
    (`uniform_at(keys[b, 1], k)`), `K = count` (vehicle slots or lidar beams), `keys (B, 2)`
    uint64. What the bev and lidar kernels draw for the same keys, element by element."""
    for b in numba.prange(keys.shape[0]):
        for k in range(count):
            normal[b, k, 0], normal[b, k, 1] = normal_pair_at(keys[b, 0], k)
            uniform[b, k] = uniform_at(keys[b, 1], k)
