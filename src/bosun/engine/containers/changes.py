"""changes (`docker diff`): what the container's writable layer adds, modifies and deletes,
read from the snapshot's upper dir against the image's layers."""

from __future__ import annotations

import os
import stat

MODIFIED, ADDED, DELETED = 0, 1, 2
_WH = ".wh."


def changes(engine, c) -> list[dict]:
    snaps = engine.images.snapshots
    upper = snaps.upper_dir(c.id)
    lowers = [snaps.layer_dir(ch) for ch in reversed(c.meta.get("chain") or [])]
    overlay = snaps.diff_lower_dirs(c.id) is None

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
            if overlay and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append({"Path": "/" + rel, "Kind": DELETED})
            elif name.startswith(_WH):
                out.append({"Path": "/" + os.path.join(rel_dir, name[len(_WH):]),
                            "Kind": DELETED})
            else:
                out.append({"Path": "/" + rel, "Kind": MODIFIED if in_lower(rel) else ADDED})
        if not overlay:
            break  # the vfs driver keeps a full copy: no cheap diff; report the top level
    out.sort(key=lambda ch: ch["Path"])
    return out
