"""Constants shared by the sensors' torch cores and their numba kernels.

Plain Python numbers (no torch, no numba), so both sides read them from this one place:
raster channels, tolerances, the layout of the straight-road line tables and the occlusion
sample points. Conventions (frames, raster rows and columns) are in `envs.sensors`.
"""

from __future__ import annotations

BEV_ROAD, BEV_MARKINGS, BEV_VEHICLES, BEV_EGO = 0, 1, 2, 3
"""Channel indices of the bev raster."""

INV_MAX = 1e12
"""Slab method: `1 / direction` is clamped to this, so axis-parallel rays need no branch."""

OCCLUSION_EPS = 1e-4
"""A ray to a sample point is blocked only by boxes it enters before `1 - eps` of the way."""

WINDOW_TOL_PX = 1e-3
"""Slack when turning a shape's bounding box into pixel rows and columns [px]."""

EDGE_TOL_M = 1e-4
"""Shapes are grown by this before drawing, so pixel centres on a boundary count as inside
whatever the float32 rounding [m]."""

FAR = 1e30
"""Stands for "no limit" in float32 arithmetic (finite, so `0 * FAR` stays 0)."""

WORD = 64
"""Columns per row-mask word (int64)."""

MIN_COS = 0.5
"""Straight-road fast path only while the ego heads within 60 degrees of the road.

Read as `constants.MIN_COS` when a raster is drawn (not bound at import), so that setting
it here (tests set it above 1 to send every world down the generic path) reaches the torch
core and the numba kernel alike."""

SQRT_FLOOR = 1e-30
"""`sqrt` arguments are clamped to this normal float, not 0: zero and subnormal arguments
take a slow path on x86 (the root moves by 1e-15 px, below float32 resolution)."""

BEAM_SLACK_RAD = 1e-3
"""Lidar: slack on a box's angular window, so rounding never drops a beam that hits it."""

SAMPLE_SIGNS = ((0.0, 0.0), (1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0))
"""Occlusion sample points of a box, in units of its half extents: centre, 4 corners."""

TINY = 2.0 ** -149
"""The smallest positive float32: `x > 0` exactly when `x - TINY >= 0`."""

EXACT_FIELDS = ("y0", "y1", "s0", "s1", "u0", "u1", "m_lo", "m_hi", "a_ref", "period",
                "length", "b_last", "q_m", "omega_lo", "omega_hi", "sigma", "kappa", "rho2")
"""Fields of the exact runs' per-(world, line) parameters (float32; `bev_roads`). Per row
`r`: the line centre's column is `y0 + y1 r` [px], its `s - s_e` is `s0 + s1 r` [m], and the
stripe nearest it is `round(u0 + u1 r)` relative to the reference stripe, clamped to
`[m_lo, m_hi]`. Then: start of the reference stripe [m], period, stripe length, last end
relative to `s_e` [m]; `q_m = rho / cos` [m]; `-+ q_m sin` [m]; sin and cos of the road's
heading in the ego frame in px per m; squared grown radius [px^2]."""

LINE_FIELDS = EXACT_FIELDS + ("band_lo", "band_end")
"""Columns of the fast path's per-(world, line) table (torch core and bev kernel alike):
the `EXACT_FIELDS`, then the band's column bounds in row 0 [px] (`band_lo` past the raster
where the band is not drawn)."""
