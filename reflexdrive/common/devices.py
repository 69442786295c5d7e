"""The torch device a stack's networks or the batched backend run on."""

from __future__ import annotations

import torch

from reflexdrive.common.validation import ConfigError, check_choice

DEVICES = ("auto", "cpu", "cuda")
"""Device names accepted at the boundary: "auto" takes CUDA when there is a GPU."""


def resolve_device(device: str, field: str = "device") -> torch.device:
    """"auto" (CUDA when available, else CPU), "cpu" or "cuda"; a ConfigError naming `field`
    for anything else, or for "cuda" on a machine without CUDA."""
    check_choice(field, device, DEVICES)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(field, device, "CUDA is not available here; use cpu or auto")
    return torch.device(device)
