"""Shared test setup."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test on one torch thread: tiny tensors run fastest on one, the suite stays
    deterministic and kind to a shared 2-core machine. Restored after each test."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class PicklePayload:
    """Pickles to a call of `mark_code_ran`: loading it with plain pickle would run code
    (the checkpoint tests check that loading refuses it and the marker file never appears)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (mark_code_ran, (self.marker,))


def mark_code_ran(marker: str) -> None:
    Path(marker).write_text("code ran")
