"""The numba kernel's argument tuples: its parameters are `Params`' own fields, its disk
cache covers every file of the kernel package."""

from __future__ import annotations

import dataclasses

import pytest
from reflexdrive.envs.backends.batched import numba as numba_kernel
from reflexdrive.envs.backends.batched.numba import jit, layout
from reflexdrive.envs.backends.batched.state import BatchedState, Params

from reflexdrive.common.numba_cache import sources_digest

PARAMS = Params.from_highway_env(50)


def test_kernel_params_are_every_params_field_in_order_then_the_derived_ones():
    names = tuple(f.name for f in dataclasses.fields(Params))
    assert layout.KernelParams._fields == names + layout.DERIVED_PARAMS
    p = layout.kernel_params(PARAMS)
    for name in names:
        assert getattr(p, name) == getattr(PARAMS, name), name
    assert p.two_sqrt_ab == 2 * (-PARAMS.comfort_acc_max * PARAMS.comfort_acc_min) ** 0.5
    assert p.member_half_width == PARAMS.lane_width / 2 + PARAMS.neighbour_margin
    assert p.reach == PARAMS.reachable_lanes * PARAMS.lane_width


def test_a_params_field_cannot_be_left_out_or_misplaced():
    """The tuple is built by name: a missing or unknown field is a TypeError, never a
    shifted constant."""
    values = {f.name: getattr(PARAMS, f.name) for f in dataclasses.fields(Params)}
    derived = dict.fromkeys(layout.DERIVED_PARAMS, 0.0)
    del values["delta"]
    with pytest.raises(TypeError, match="delta"):
        layout.KernelParams(**values, **derived)
    with pytest.raises(TypeError, match="bogus"):
        layout.KernelParams(**values, delta=4.0, bogus=1.0, **derived)


def test_vehicle_arrays_are_batched_state_fields():
    names = {f.name for f in dataclasses.fields(BatchedState)}
    assert set(layout.VehicleArrays._fields) <= names
    assert set(layout.WRITTEN_FIELDS) <= set(layout.VehicleArrays._fields)
    assert set(layout.ON_HAZARD) <= set(layout.WRITTEN_FIELDS)


def test_the_disk_cache_covers_every_kernel_file():
    package = {p.name for p in jit.KERNEL_SOURCES}
    assert {"jit.py", "layout.py", "scalars.py", "vehicle.py", "neighbours.py", "traffic.py",
            "collision.py", "world.py", "step.py", "__init__.py"} <= package
    if not numba_kernel.AVAILABLE:
        pytest.skip("needs numba")
    from reflexdrive.envs.backends.batched.numba.world import substep_worlds

    stamp = substep_worlds._cache._cache_file._source_stamp
    assert isinstance(stamp, tuple) and stamp[1] == sources_digest(jit.KERNEL_SOURCES)
