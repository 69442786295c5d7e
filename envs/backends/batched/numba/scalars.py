"""Scalar helpers of the kernel: `sin` ... `asin` with a shortcut for tiny arguments, `clip`,
highway-env's `not_zero`, and `wrap_to_pi` as torch's floored `remainder` computes it."""

from __future__ import annotations

import math

from reflexdrive.envs.backends.batched.numba.jit import jit

TWO_PI = 2 * math.pi
TINY = 2.0 ** -27
"""Below this magnitude `sin x`, `tan x`, `atan x`, `asin x` round to `x` and `cos x` to 1
(the terms after the first are under half an ulp)."""


@jit()
def sin(x):
    """`sin(x)`; `x` itself for `|x| < 2^-27`, where that is the correctly rounded value
    (and what the C library returns) without the call."""
    return x if abs(x) < TINY else math.sin(x)


@jit()
def cos(x):
    """`cos(x)`; 1 for `|x| < 2^-27` (the correctly rounded value)."""
    return 1.0 if abs(x) < TINY else math.cos(x)


@jit()
def tan(x):
    """`tan(x)`; `x` for `|x| < 2^-27` (the correctly rounded value)."""
    return x if abs(x) < TINY else math.tan(x)


@jit()
def atan(x):
    """`atan(x)`; `x` for `|x| < 2^-27` (the correctly rounded value)."""
    return x if abs(x) < TINY else math.atan(x)


@jit()
def asin(x):
    """`asin(x)`; `x` for `|x| < 2^-27` (the correctly rounded value)."""
    return x if abs(x) < TINY else math.asin(x)


@jit()
def clip(x, low, high):
    """`min(max(x, low), high)`."""
    return min(max(x, low), high)


@jit()
def not_zero(x, eps):
    """highway-env's `utils.not_zero`: `max(x, eps)` for `x >= 0`, else `min(x, -eps)`."""
    return max(x, eps) if x >= 0.0 else min(x, -eps)


@jit()
def wrap_to_pi(x):
    """`((x + pi) mod 2 pi) - pi` [rad], the floored modulo of torch's `remainder`."""
    a = x + math.pi
    if not (0.0 <= a < TWO_PI):        # else `a mod 2 pi = a` exactly
        a = a % TWO_PI
    return a - math.pi

