"""Volumes as a library: Docker's `local` driver (directories under <root>/<name>/_data,
or a file system mounted there from driver options), metadata and references in SQLite
(store.py), the driver and its mount reference counts (local.py), copy-up of image content
into a new volume (copyup.py). Nothing here knows about containers beyond their ids."""

from bosun.volume.errors import Conflict, InvalidParameter, NotFound, VolumeError

__all__ = ["Conflict", "InvalidParameter", "NotFound", "VolumeError", "Volumes"]


def __getattr__(name: str):
    if name == "Volumes":
        from bosun.volume.local import Volumes
        return Volumes
    raise AttributeError(name)
