"""Safe checkpoints: plain dicts of tensors plus JSON-able metadata, never pickled objects.

A checkpoint file is `torch.save` of one dict (`FORMAT`, version 1)::

    {
        "format": "reflexdrive-checkpoint", "format_version": 1,
        "kind": "detector",            # what it is for: "detector", "policy", ...
        "name": "centernet",           # the model builder's name within that kind
        "config": {...},               # JSON-able constructor arguments of the model
        "state_dict": {str: Tensor},   # the weights
        "spec": {...},                 # JSON-able: the observations it was trained on
        "meta": {...},                 # JSON-able: command line, metrics, versions, ...
        "checksum": "sha256:...",      # over the state_dict's names, dtypes, shapes, bytes
    }

It is read back ONLY with `torch.load(weights_only=True)`, which unpickles tensors and
plain containers and refuses anything else without running it, so a checkpoint from an
untrusted source cannot execute code. Every failure is a `CheckpointError` naming the file
and what is wrong: missing, truncated or corrupt (including a checksum mismatch: torch
does not check the bytes of tensor storages), a pickle payload that `weights_only` refuses,
not a reflexdrive checkpoint, the wrong kind or model, an observation spec that does not
match the env's.

Writes are atomic: the file is written to a temporary file in the same directory, flushed
to disk and moved into place atomically (`reflexdrive.common.files.atomic_write`), so
readers never see half a checkpoint.

This module is generic (issue 6 stores end-to-end policies with it): model-specific
loading (building the module from `config`, loading `state_dict`) lives with the model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from reflexdrive.common.files import atomic_write

FORMAT = "reflexdrive-checkpoint"
FORMAT_VERSION = 1
_KEYS = ("format", "format_version", "kind", "name", "config", "state_dict", "spec", "meta",
         "checksum")


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        where = "checkpoint" if path is None else f"checkpoint {self.path}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Checkpoint:
    """The contents of a checkpoint file.

    Attributes:
        kind: what the model is for, e.g. "detector" or "policy".
        name: the model's builder name within its kind, e.g. "centernet".
        config: JSON-able constructor arguments of the model.
        state_dict: parameter and buffer tensors by name (on the CPU after loading).
        spec: JSON-able description of the observations the model was trained on (see
            `observation_spec`), compared with an env's by `check_spec`.
        meta: JSON-able free-form metadata: the training command line, metrics, versions.
        path: the file it was loaded from (None for one built in memory).
    """

    kind: str
    name: str
    config: Mapping[str, Any]
    state_dict: Mapping[str, torch.Tensor]
    spec: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None

    def __post_init__(self) -> None:
        for attribute in ("kind", "name"):
            value = getattr(self, attribute)
            if not isinstance(value, str) or not value:
                raise CheckpointError(self.path, f"{attribute} must be a non-empty string, "
                                                 f"got {value!r}")
        for attribute in ("config", "spec", "meta"):
            value = getattr(self, attribute)
            if not isinstance(value, Mapping):
                raise CheckpointError(self.path, f"{attribute} must be a dict, got "
                                                 f"{type(value).__name__}")
            object.__setattr__(self, attribute, _plain(value, attribute, self.path))
        if not isinstance(self.state_dict, Mapping):
            raise CheckpointError(self.path, "state_dict must be a dict of tensors")
        for key, value in self.state_dict.items():
            if not isinstance(key, str) or not isinstance(value, torch.Tensor):
                raise CheckpointError(self.path, f"state_dict entry {key!r} is not a "
                                                 "str -> Tensor pair")


def _plain(value: Any, what: str, path: str | None) -> Any:
    """`value` as plain JSON types (dicts, lists, str, int, float, bool, None).

    Tuples become lists; non-finite floats are kept (torch stores them), anything that
    JSON cannot express raises `CheckpointError`.
    """
    try:
        text = json.dumps(value, allow_nan=True, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise CheckpointError(path, f"{what} is not JSON-able: {error}") from None
    return json.loads(text)


def checksum(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of `state_dict`'s tensors, in
    sorted name order: "sha256:<hex>"."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of python, torch and numpy (stored in every checkpoint's meta)."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__}


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write `checkpoint` to `path` atomically (temp file in the same folder + os.replace).

    The tensors are moved to the CPU and made contiguous (so the file loads anywhere);
    `meta["versions"]` is filled with `library_versions()` unless present. Parent folders
    are created. Returns the path written.

    Raises:
        CheckpointError: the folder cannot be created or the file cannot be written.
    """
    path = Path(path)
    state = {key: value.detach().cpu().contiguous().clone()
             for key, value in checkpoint.state_dict.items()}
    meta = dict(checkpoint.meta)
    meta.setdefault("versions", library_versions())
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": checkpoint.kind,
        "name": checkpoint.name,
        "config": _plain(checkpoint.config, "config", str(path)),
        "state_dict": state,
        "spec": _plain(checkpoint.spec, "spec", str(path)),
        "meta": _plain(meta, "meta", str(path)),
        "checksum": checksum(state),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda stream: torch.save(payload, stream), mode="wb")
    except OSError as error:
        raise CheckpointError(path, f"cannot write: {error.strerror or error}") from None
    return path


def _refusal(error: Exception) -> str:
    """The useful line of torch's weights_only refusal (which global it would not load)."""
    match = re.search(r"(?im)^\s*((?:trying to load|unsupported)[^\n]*)$", str(error))
    return match.group(1).strip() if match else str(error).splitlines()[0][:200]


def load_checkpoint(path: str | os.PathLike, *, kind: str | None = None,
                    names: tuple[str, ...] | None = None) -> Checkpoint:
    """Read a checkpoint with `torch.load(weights_only=True)` onto the CPU and validate it.

    Args:
        path: the file.
        kind: the kind expected (e.g. "detector"); None accepts any.
        names: model names accepted within that kind; None accepts any.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, holds pickled objects
            that `weights_only` refuses (they are never run), is not a reflexdrive
            checkpoint of a version this code reads, or is of another kind or model.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such file")
    if not path.is_file():
        raise CheckpointError(path, "not a file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error).lower():
            raise CheckpointError(path, "refused by torch.load(weights_only=True), nothing was "
                                        "run: it holds pickled objects other than tensors "
                                        f"and plain containers ({_refusal(error)})") from None
        raise CheckpointError(path, f"corrupt or truncated file ({error})") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError,
            AttributeError, TypeError) as error:
        detail = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise CheckpointError(path, f"corrupt or truncated file ({detail})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, f"not a reflexdrive checkpoint (no format={FORMAT!r} "
                                    "entry); save checkpoints with save_checkpoint")
    version = payload.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(path, f"format_version {version!r} is not supported (this code "
                                    f"reads 1..{FORMAT_VERSION})")
    missing = [key for key in _KEYS if key not in payload]
    if missing:
        raise CheckpointError(path, "incomplete checkpoint, missing " + ", ".join(missing))
    checkpoint = Checkpoint(kind=payload["kind"], name=payload["name"], config=payload["config"],
                            state_dict=payload["state_dict"], spec=payload["spec"],
                            meta=payload["meta"], path=str(path))
    if checksum(checkpoint.state_dict) != payload["checksum"]:
        raise CheckpointError(path, "corrupt file: the weights do not match their checksum")
    if kind is not None and checkpoint.kind != kind:
        raise CheckpointError(path, f"holds a {checkpoint.kind!r} model ({checkpoint.name}), "
                                    f"expected a {kind!r}")
    if names is not None and checkpoint.name not in names:
        raise CheckpointError(path, f"model {checkpoint.name!r} is unknown; known {kind or ''} "
                                    "models: " + ", ".join(names))
    return checkpoint


def observation_spec(observations: Mapping[str, Any],
                     keys: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    """`{key: {"shape": [...], "dtype": "uint8"}}` for one env's observations.

    Args:
        observations: anything with `.shape` and `.dtype` by key: a Gymnasium `Dict`
            space's `spaces` (use the single-env space, not the batched one), or one env's
            arrays.
        keys: the keys the model reads (default: all, sorted).
    """
    keys = tuple(sorted(observations)) if keys is None else keys
    spec = {}
    for key in keys:
        if key not in observations:
            raise KeyError(f"observation {key!r} is missing (have {', '.join(observations)})")
        item = observations[key]
        spec[key] = {"shape": [int(n) for n in item.shape], "dtype": str(np.dtype(item.dtype))}
    return spec


def spec_mismatches(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Where `actual` differs from `expected`: every entry of `expected` must be in
    `actual` with an equal value (numbers within 1e-9 relative); extra entries of `actual`
    are ignored. Returns lines like `sensors.range_m: checkpoint 48.0, env 64.0`."""
    expected, actual = _plain(expected, "spec", None), _plain(actual, "spec", None)
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where or 'spec'}: checkpoint {expected!r}, env {actual!r}"]
        problems = []
        for key, value in expected.items():
            name = f"{where}.{key}" if where else str(key)
            if key not in actual:
                problems.append(f"{name}: checkpoint {value!r}, env has none")
            else:
                problems.extend(spec_mismatches(value, actual[key], name))
        return problems
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [line for i, (a, b) in enumerate(zip(expected, actual))
                for line in spec_mismatches(a, b, f"{where}[{i}]")]
    numbers = (int, float)
    if (isinstance(expected, numbers) and isinstance(actual, numbers)
            and not isinstance(expected, bool) and not isinstance(actual, bool)):
        if math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12):
            return []
    elif expected == actual:
        return []
    return [f"{where or 'spec'}: checkpoint {expected!r}, env {actual!r}"]


def check_spec(checkpoint: Checkpoint, actual: Mapping[str, Any]) -> None:
    """Raise `CheckpointError` listing every field where the env's spec `actual` differs
    from the one the checkpoint was trained on (see `spec_mismatches`)."""
    problems = spec_mismatches(dict(checkpoint.spec), dict(actual))
    if problems:
        raise CheckpointError(checkpoint.path, "trained on other observations than this "
                                               "env's: " + "; ".join(problems))
