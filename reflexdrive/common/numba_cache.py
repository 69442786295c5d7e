"""numba's disk cache for kernels split over several files.

numba invalidates a cached function when the source file of that function changes, not
when a callee in another file does: a kernel cached in `bev.py` that calls a helper of
`noise.py` would keep the old helper after `noise.py` is edited. `cover_sources` stamps a
cached function with a digest of every file of its kernel package, so editing any of them
recompiles it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable


def sources_digest(paths: Iterable[str | Path]) -> str:
    """sha256 over the names and contents of `paths` (hex)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return digest.hexdigest()


def cover_sources(dispatcher, sources: Iterable[str | Path]):
    """`dispatcher` (a `cache=True` numba function) with its disk cache stamped by all of
    `sources` as well as its own file.

    numba keeps the stamp of the function's own file in its cache file object and compares
    it with the stamp stored in the cache index; the stamp here is that one paired with
    `sources_digest(sources)`. Where numba's internals differ (another version), the disk
    cache is turned off instead: slower first calls, never stale code.
    """
    import numba

    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is not None and hasattr(cache_file, "_source_stamp"):
        cache_file._source_stamp = (cache_file._source_stamp, sources_digest(sources))
    else:
        dispatcher._cache = numba.core.caching.NullCache()
    return dispatcher
