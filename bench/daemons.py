"""Daemons the benchmarks start and always stop — the tests' own harness:
bosun.testing.registry (Debian's docker-registry) and bosun.testing.dockerd (a private
dockerd) — plus the clean-up helpers the benchmarks use."""

from __future__ import annotations

import os
import shutil

from bosun.testing.dockerd import Dockerd, mountpoints_under, unmount_under  # noqa: F401
from bosun.testing.registry import Registry  # noqa: F401  (re-exported)


def remove_tree(path: str | os.PathLike) -> None:
    """Unmount whatever is mounted below path, then delete it. Refuses (raises) while
    anything is still mounted there: rmtree would walk into the mount."""
    if not os.path.lexists(path):
        return
    left = unmount_under(path)
    if left:
        raise RuntimeError(f"{path}: still mounted, not removed: {left}")
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        raise RuntimeError(f"{path} could not be removed")
