"""Container endpoints: thin handlers over the engine's container verbs."""

from __future__ import annotations

import threading

from bosun.api.hijack import plain
from bosun.api.http import Hijack, Response, Stream
from bosun.engine.errors import InvalidParameter


def register(router, engine) -> None:
    def create(req):
        body = req.json()
        if body is None:
            raise InvalidParameter("Config cannot be empty in order to create a container")
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: the body must be an object")
        return Response(201, engine.create_container(body, req.q("name") or None,
                                                     req.q("platform") or None))

    def list_(req):
        from bosun.engine.views import parse_filters

        return Response(200, engine.list_containers(
            all=req.q_bool("all"), limit=req.q_int("limit", -1), size=req.q_bool("size"),
            filters=parse_filters(req.q("filters"))))

    def inspect(req):
        return Response(200, engine.inspect_container(req.path_params["id"],
                                                      req.q_bool("size")))

    def top(req):
        return Response(200, engine.top(req.path_params["id"], req.q("ps_args")))

    def logs(req):
        from bosun.engine.logs import parse_time

        stop = threading.Event()
        tail = req.q("tail", "all")
        if tail in ("all", ""):
            n = -1
        else:
            try:
                n = int(tail)
            except ValueError:
                n = -1  # Docker treats a non-number as "all"
        chunks, tty = engine.logs(
            req.path_params["id"], stdout=req.q_bool("stdout"), stderr=req.q_bool("stderr"),
            follow=req.q_bool("follow"), since=parse_time(req.q("since")) if req.q("since") else 0,
            until=parse_time(req.q("until")) if req.q("until") else 0,
            timestamps=req.q_bool("timestamps"), tail=n, stop=stop)

        def gen():
            try:
                yield from chunks
            finally:
                stop.set()
        return Stream(gen(), content_type="application/vnd.docker.raw-stream" if tty
                      else "application/vnd.docker.multiplexed-stream")

    def start(req):
        from bosun.engine.errors import NotModified

        try:
            engine.start_container(req.path_params["id"], req.q("detachKeys"))
        except NotModified:
            return Response(304)
        return Response(204)

    def stop(req):
        from bosun.engine.errors import NotModified

        t = req.q("t")
        try:
            engine.stop_container(req.path_params["id"], _timeout(t), req.q("signal") or None)
        except NotModified:
            return Response(304)
        return Response(204)

    def restart(req):
        engine.restart_container(req.path_params["id"], _timeout(req.q("t")),
                                 req.q("signal") or None)
        return Response(204)

    def kill(req):
        engine.kill_container(req.path_params["id"], req.q("signal") or None)
        return Response(204)

    def pause(req):
        engine.pause_container(req.path_params["id"])
        return Response(204)

    def unpause(req):
        engine.unpause_container(req.path_params["id"])
        return Response(204)

    def rename(req):
        engine.rename_container(req.path_params["id"], req.q("name") or "")
        return Response(204)

    def resize(req):
        engine.resize_container(req.path_params["id"], req.q_int("h"), req.q_int("w"))
        return Response(200)

    def attach(req):
        ref = req.path_params["id"]
        c = engine.get(ref)  # 404 before the connection is taken over
        opts = dict(stdin=req.q_bool("stdin"), stdout=req.q_bool("stdout"),
                    stderr=req.q_bool("stderr"), logs=req.q_bool("logs"),
                    stream=req.q_bool("stream"), detach_keys=req.q("detachKeys") or None)
        tty = bool(c.doc["Config"].get("Tty"))

        def take(sock, leftover):
            try:
                engine.attach_container(c.id, plain(sock, leftover), **opts)
            except Exception:  # noqa: BLE001  (the engine closed the socket; nothing to say)
                pass
        return Hijack(take, multiplexed=not tty)

    def wait(req):
        # Docker sends the head at once and the body at exit: `docker run` posts this before
        # start and waits for the head. Empty chunks let the server notice a client gone.
        from bosun.api.http import json_bytes
        from bosun.engine.containers.wait import Waiter

        waiter = Waiter(engine.get(req.path_params["id"]), req.q("condition") or "not-running")

        def gen():
            while True:
                result = waiter.wait(1.0)
                if result is not None:
                    yield json_bytes(result)
                    return
                yield b""
        return Stream(gen(), content_type="application/json")

    def remove(req):
        engine.remove_container(req.path_params["id"], force=req.q_bool("force"),
                                volumes=req.q_bool("v"))
        return Response(204)

    def prune(req):
        from bosun.engine.views import parse_filters

        return Response(200, engine.prune_containers(parse_filters(req.q("filters"))))

    def changes(req):
        return Response(200, engine.container_changes(req.path_params["id"]))

    router.add("POST", "/containers/create", create)
    router.add("GET", "/containers/json", list_)
    router.add("POST", "/containers/prune", prune)
    router.add("GET", "/containers/{id}/json", inspect)
    router.add("GET", "/containers/{id}/top", top)
    router.add("GET", "/containers/{id}/logs", logs)
    router.add("GET", "/containers/{id}/changes", changes)
    router.add("POST", "/containers/{id}/start", start)
    router.add("POST", "/containers/{id}/stop", stop)
    router.add("POST", "/containers/{id}/restart", restart)
    router.add("POST", "/containers/{id}/kill", kill)
    router.add("POST", "/containers/{id}/pause", pause)
    router.add("POST", "/containers/{id}/unpause", unpause)
    router.add("POST", "/containers/{id}/rename", rename)
    router.add("POST", "/containers/{id}/resize", resize)
    router.add("POST", "/containers/{id}/attach", attach)
    router.add("POST", "/containers/{id}/wait", wait)
    router.add("DELETE", "/containers/{id}", remove)

    # exec
    def exec_create(req):
        body = req.json()
        if not isinstance(body, dict):
            raise InvalidParameter("exec config must be a JSON object")
        return Response(201, {"Id": engine.exec_create(req.path_params["id"], body)})

    def exec_start(req):
        from bosun.engine.containers.exec import check_startable

        exec_id = req.path_params["id"]
        body = req.json() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("exec start config must be a JSON object")
        e, _ = check_startable(engine, exec_id)  # 404/409 before the hijack
        if body.get("Detach"):
            engine.exec_start(exec_id, None, detach=True)
            return Response(200)

        def take(sock, leftover):
            try:
                engine.exec_start(exec_id, plain(sock, leftover))
            except Exception:  # noqa: BLE001  (reported on the stream, recorded in inspect)
                pass
        return Hijack(take, multiplexed=not e["ProcessConfig"]["tty"])

    def exec_inspect(req):
        return Response(200, engine.exec_inspect(req.path_params["id"]))

    def exec_resize(req):
        engine.exec_resize(req.path_params["id"], req.q_int("h"), req.q_int("w"))
        return Response(200)

    router.add("POST", "/containers/{id}/exec", exec_create)
    router.add("POST", "/exec/{id}/start", exec_start)
    router.add("GET", "/exec/{id}/json", exec_inspect)
    router.add("POST", "/exec/{id}/resize", exec_resize)


def _timeout(t: str | None) -> int | None:
    if t is None or t == "":
        return None
    try:
        return int(t)
    except ValueError:
        raise InvalidParameter(f"invalid value for t: {t!r}") from None
