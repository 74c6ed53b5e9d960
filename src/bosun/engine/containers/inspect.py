"""inspect and list: the stored document, plus what only the kernel or disk knows now."""

from __future__ import annotations

import os


def inspect(engine, c, size: bool = False) -> dict:
    doc = c.view()
    execs = [e["ID"] for e in list(engine.execs.values())
             if e["ContainerID"] == c.id and e["Running"]]
    doc["ExecIDs"] = execs or None
    if size:
        doc["SizeRw"], doc["SizeRootFs"] = sizes(engine, c)
    return doc


def sizes(engine, c) -> tuple[int, int]:
    """(bytes written by the container, that plus its image's size)."""
    rw = 0
    try:
        upper = engine.images.snapshots.upper_dir(c.id)
        for dirpath, _, files in os.walk(upper):
            for f in files:
                try:
                    rw += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
    except Exception:  # noqa: BLE001
        pass
    image_size = 0
    try:
        image_size = engine.images.db.get_image(c.doc["Image"]).size
    except Exception:  # noqa: BLE001
        pass
    return rw, rw + image_size


def list_containers(engine, *, all: bool = False, limit: int = -1, size: bool = False,
                    filters: dict | None = None) -> list[dict]:  # noqa: A002
    from bosun.engine.views import filter_containers, summary

    docs = [c.list_view() for c in engine.all()]

    def image_matches(doc: dict, ref: str) -> bool:
        if doc["Config"].get("Image") == ref or doc["Image"] == ref:
            return True
        try:
            return engine.images.resolve(ref) == doc["Image"]
        except Exception:  # noqa: BLE001
            return doc["Image"].removeprefix("sha256:").startswith(ref.removeprefix("sha256:"))

    docs = filter_containers(docs, filters, all=all, limit=limit, image_matches=image_matches)
    out = []
    for d in docs:
        item = summary(d)
        if size:
            c = engine.containers.get(d["Id"])
            if c is not None:
                item["SizeRw"], item["SizeRootFs"] = sizes(engine, c)
        out.append(item)
    return out
