"""changes (`docker diff`): what the container's writable layer adds, modifies and deletes.
On overlay that is the snapshot's upper dir read against the image's layers; the vfs driver
keeps a full copy of the image instead, which is compared with the image's top layer."""

from __future__ import annotations

import os
import stat

from bosun.image.diff import CHANGE_ADD as ADDED
from bosun.image.diff import CHANGE_DELETE as DELETED
from bosun.image.diff import CHANGE_MODIFY as MODIFIED

_WH = ".wh."


def changes(engine, c) -> list[dict]:
    return snapshot_changes(engine.images.snapshots, c.id, c.meta.get("chain") or [])


def snapshot_changes(snaps, key: str, chain: list[str]) -> list[dict]:
    """The changes of container snapshot `key` on image layers `chain` (base first)."""
    from bosun.image.diff import tree_changes

    upper = snaps.upper_dir(key)
    full_lowers = snaps.diff_lower_dirs(key)
    if full_lowers is not None:  # vfs
        return [{"Path": p, "Kind": k} for p, k in tree_changes(upper, full_lowers)]
    lowers = [snaps.layer_dir(ch) for ch in reversed(chain)]

    def in_lower(rel: str) -> bool:
        return any(os.path.lexists(os.path.join(d, rel)) for d in lowers)

    out: list[dict] = []
    for dirpath, dirs, files in os.walk(upper):
        rel_dir = os.path.relpath(dirpath, upper)
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in sorted(dirs + files):
            rel = os.path.join(rel_dir, name)
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # overlay's whiteout
                out.append({"Path": "/" + rel, "Kind": DELETED})
            elif name.startswith(_WH):
                out.append({"Path": "/" + os.path.join(rel_dir, name[len(_WH):]),
                            "Kind": DELETED})
            else:
                out.append({"Path": "/" + rel, "Kind": MODIFIED if in_lower(rel) else ADDED})
    out.sort(key=lambda ch: ch["Path"])
    return out
