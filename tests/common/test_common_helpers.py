"""The helpers every layer shares: validation, atomic files, batching, devices, threads."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from reflexdrive.agents.staged.control import PIDSpeedController

from reflexdrive.common.batching import even_chunks
from reflexdrive.common.devices import resolve_device
from reflexdrive.common.files import atomic_path, atomic_write
from reflexdrive.common.threads import cpu_threads, kernel_threads, torch_threads
from reflexdrive.common.validation import (
    ConfigError,
    check_int,
    check_real,
    choice,
    field_default,
    field_help,
    integer,
    real,
    validate_fields,
)


@pytest.mark.parametrize("value", [True, False, "3", "0.5", None, [1.0]])
def test_check_real_rejects_bools_strings_and_containers(value):
    with pytest.raises(ConfigError, match=r"^gain=.* is invalid: must be a number$"):
        check_real("gain", value, 0.0, 10.0)


def test_check_real_takes_ints_and_numpy_scalars_within_bounds():
    for value in (3, 3.5, np.float32(2.0), np.int64(4)):
        check_real("gain", value, 0.0, 10.0)
    with pytest.raises(ConfigError, match=r"must lie in \(0, 10\]"):
        check_real("gain", 0.0, 0.0, 10.0, low_inclusive=False)
    with pytest.raises(ConfigError, match="not NaN"):
        check_real("gain", float("nan"))


@pytest.mark.parametrize("value", [True, "3", 3.0, np.float64(2.0)])
def test_check_int_rejects_bools_strings_and_floats(value):
    with pytest.raises(ConfigError, match=r"^episodes=.* is invalid: must be an integer$"):
        check_int("episodes", value, 1)


def test_check_int_bounds():
    check_int("episodes", np.int32(5), 1, 5)
    with pytest.raises(ConfigError, match=r"must lie in \[1, 5\]"):
        check_int("episodes", 6, 1, 5)


def test_a_string_gain_fails_at_construction_not_in_arithmetic():
    with pytest.raises(ConfigError, match="kp='3' is invalid: must be a number"):
        PIDSpeedController(kp="3")


@dataclass(frozen=True)
class _Example:
    episodes: int = integer(20, low=1, help="episodes per cell")
    budget_s: float | None = real(None, low=0.0, low_inclusive=False, optional=True,
                                  help="compute budget per tick [s]")
    mode: str = choice("realtime", choices=("realtime", "lockstep"), help="clock mode")

    def __post_init__(self) -> None:
        validate_fields(self, "example.")


def test_field_metadata_validates_every_field_and_names_it():
    _Example()
    _Example(episodes=3, budget_s=0.1, mode="lockstep")
    with pytest.raises(ConfigError, match=r"example.episodes=0 is invalid: must lie in \[1, inf\]"):
        _Example(episodes=0)
    with pytest.raises(ConfigError, match="example.budget_s=True is invalid: must be a number"):
        _Example(budget_s=True)
    with pytest.raises(ConfigError, match="example.mode='fast' is invalid: allowed values are "
                                          "realtime, lockstep"):
        _Example(mode="fast")


def test_defaults_and_help_come_from_the_dataclass():
    assert field_default(_Example, "episodes") == 20
    assert field_help(_Example, "budget_s") == "compute budget per tick [s]"


def test_atomic_write_gives_the_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.csv", lambda stream: stream.write("x\n"))
        os.umask(0o077)
        atomic_write(tmp_path / "b.bin", lambda stream: stream.write(b"\x00"), mode="wb")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.csv").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600
    assert (tmp_path / "a.csv").read_text() == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")

    def fail(stream):
        stream.write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_even_chunks():
    assert even_chunks(10, 4) == [4, 3, 3]
    assert even_chunks(8, 4) == [4, 4]
    assert even_chunks(3, 4) == [3]
    assert even_chunks(0, 4) == []
    with pytest.raises(ValueError):
        even_chunks(5, 0)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="allowed values are auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_thread_contexts_restore_torch_and_numba_counts():
    import numba

    numba_before = numba.get_num_threads()        # starts numba's OpenMP layer first
    torch.set_num_threads(1)
    torch_before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    with cpu_threads(1):
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
    with kernel_threads(1):
        assert numba.get_num_threads() == 1
    assert (torch.get_num_threads(), numba.get_num_threads()) == (torch_before, numba_before)
