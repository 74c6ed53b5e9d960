"""Container endpoints for files, usage and limits: archive (docker cp), export, stats,
update. Thin handlers over bosun.engine.containers.{archive,stats,update}."""

from __future__ import annotations

import base64
import json
import threading

from bosun.api.http import Response, Stream, json_bytes
from bosun.engine.errors import InvalidParameter

PATH_STAT_HEADER = "X-Docker-Container-Path-Stat"
TAR = "application/x-tar"


def encode_path_stat(stat: dict) -> str:
    """The X-Docker-Container-Path-Stat value: base64 of the stat's JSON (as Docker)."""
    raw = json.dumps(stat, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode("ascii")


def register(router, engine) -> None:
    from bosun.engine.containers import archive
    from bosun.engine.containers import stats as stats_verb
    from bosun.engine.containers import update as update_verb

    def archive_path(req) -> str:
        path = req.q("path") or ""
        if not path:
            raise InvalidParameter("Path cannot be empty")
        return path

    def archive_head(req):
        ref = req.path_params["id"]
        c = engine.get(ref)
        stat = archive.stat_path(engine, c, archive_path(req), ref=ref)
        return Response(200, headers=[(PATH_STAT_HEADER, encode_path_stat(stat))],
                        content_type="application/json")

    def archive_get(req):
        ref = req.path_params["id"]
        c = engine.get(ref)
        stat, chunks = archive.get_archive(engine, c, archive_path(req), ref=ref)
        return Stream(chunks, content_type=TAR,
                      headers=[(PATH_STAT_HEADER, encode_path_stat(stat))])

    def archive_put(req):
        ref = req.path_params["id"]
        c = engine.get(ref)
        archive.put_archive(engine, c, archive_path(req), req.stream(),
                            no_overwrite_dir_non_dir=req.q_bool("noOverwriteDirNonDir"),
                            copy_uid_gid=req.q_bool("copyUIDGID"), ref=ref)
        return Response(200)

    def export(req):
        c = engine.get(req.path_params["id"])
        return Stream(archive.export(engine, c), content_type=TAR)

    def stats(req):
        c = engine.get(req.path_params["id"])
        stop = threading.Event()
        docs = stats_verb.stats(engine, c, stream=req.q_bool("stream", True),
                                one_shot=req.q_bool("one-shot"), stop=stop)

        def gen():
            try:
                for doc in docs:
                    yield json_bytes(doc)
            finally:
                stop.set()
                close = getattr(docs, "close", None)
                if close is not None:
                    close()
        return Stream(gen(), content_type="application/json")

    def update(req):
        c = engine.get(req.path_params["id"])
        body = req.json()
        if body is None:
            body = {}
        return Response(200, update_verb.update(engine, c, body))

    router.add("HEAD", "/containers/{id}/archive", archive_head)
    router.add("GET", "/containers/{id}/archive", archive_get)
    router.add("PUT", "/containers/{id}/archive", archive_put)
    router.add("GET", "/containers/{id}/export", export)
    router.add("GET", "/containers/{id}/stats", stats)
    router.add("POST", "/containers/{id}/update", update)
