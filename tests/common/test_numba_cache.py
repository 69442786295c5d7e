"""Kernels split over several files recompile when any of their files changes."""

from __future__ import annotations

from reflexdrive.envs.sensors.kernels import bev, common, ground_truth, lidar, noise

from reflexdrive.common.numba_cache import sources_digest


def test_the_sources_digest_changes_with_any_file(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    before = sources_digest([a, b])
    b.write_text("y = 3\n")
    assert sources_digest([a, b]) != before


def test_every_cached_sensor_kernel_and_helper_covers_the_whole_package():
    expected = sources_digest(common.KERNEL_SOURCES)
    assert {p.name for p in common.KERNEL_SOURCES} >= {"bev.py", "common.py", "lidar.py",
                                                        "noise.py", "ground_truth.py"}
    dispatchers = [value for module in (bev, common, ground_truth, lidar, noise)
                   for value in vars(module).values()
                   if type(value).__name__ == "CPUDispatcher"
                   and value.__module__ == module.__name__]
    assert len(dispatchers) >= 10
    for dispatcher in dispatchers:
        stamp = dispatcher._cache._cache_file._source_stamp
        assert isinstance(stamp, tuple) and stamp[1] == expected, dispatcher.__name__
