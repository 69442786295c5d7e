"""Files written atomically, with the permissions the user's umask allows.

A file is written to a temporary name beside its target, flushed to disk, then renamed over
it (`os.replace` is atomic on POSIX): a run killed at any instant leaves the old file or the
whole new one, never half of one. `tempfile.mkstemp` creates files with mode 0600; the
temporary file is given `0666 & ~umask` before the rename, as `open()` would have.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (same folder, hidden name, same suffix) for a writer
    that takes a file name (video encoders, `torch.save`). When the block ends normally the
    file gets the umask's mode and replaces `path`; when it raises, the file is removed.
    The folder must exist."""
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                    dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None],
                 mode: str = "w") -> None:
    """Write `path` atomically: `write(stream)` fills a temporary file (opened with `mode`,
    "w" for text, "wb" for bytes; text is UTF-8) that is synced and renamed over `path`."""
    encoding = None if "b" in mode else "utf-8"
    with atomic_path(path) as temporary:
        with open(temporary, mode, encoding=encoding) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write` of a whole text (UTF-8)."""
    atomic_write(path, lambda stream: stream.write(text))
