"""Writing run results so that nothing is ever half-written, and reading them back.

Every file goes through `reflexdrive.common.files.atomic_write` (temporary file, fsync,
rename), so a run killed at any instant leaves either the old file or the new one, and
files get the permissions the user's umask allows.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from reflexdrive.common.files import atomic_write
from reflexdrive.common.validation import ConfigError


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Write a DataFrame as CSV atomically (no index column)."""
    atomic_write(path, lambda stream: frame.to_csv(stream, index=False))


def write_json(path: str | os.PathLike, document: Any) -> None:
    """Write a JSON document atomically, pretty-printed."""
    atomic_write(path, lambda stream: json.dump(document, stream, indent=2, sort_keys=True,
                                                 default=str))


def prepare_out_dir(out: str | os.PathLike) -> Path:
    """Create `out` if needed and check it is a writable directory.

    Raises:
        ConfigError: `out` is a file, or cannot be created or written.
    """
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError("--out", str(out), "must be a directory (a file is in the way)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe.", delete=True)
        probe.close()
    except OSError as error:
        raise ConfigError("--out", str(out),
                          f"must be a writable directory ({error.strerror or error})") from None
    return path
