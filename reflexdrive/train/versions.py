"""The versions a trained checkpoint records in its meta (`meta["versions"]`): python, torch
and numpy (`policies.checkpoint.library_versions`) plus reflexdrive's own."""

from __future__ import annotations

from reflexdrive.policies.checkpoint import library_versions


def reflexdrive_version() -> str:
    """The installed package's version; the source tree's `__version__` when it is not
    installed."""
    try:
        from importlib.metadata import version
        return version("reflexdrive")
    except Exception:                                   # not installed: the source tree
        import reflexdrive
        return reflexdrive.__version__


def checkpoint_versions() -> dict[str, str]:
    """`library_versions()` and `"reflexdrive"`: what a training run writes as its
    checkpoint's `meta["versions"]`."""
    return {**library_versions(), "reflexdrive": reflexdrive_version()}
