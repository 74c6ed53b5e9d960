"""Container endpoints: thin handlers over the engine's container verbs."""

from __future__ import annotations

import threading

from bosun.api.hijack import plain
from bosun.api.http import Hijack, Response, Stream, version_key
from bosun.engine.errors import Conflict, InvalidParameter


def register(router, engine) -> None:
    def create(req):
        body = req.json()
        if body is None:
            raise InvalidParameter("Config cannot be empty in order to create a container")
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: the body must be an object")
        hc = body.get("Healthcheck")
        if req.version is not None and version_key(req.version) < version_key("1.44"):
            if isinstance(hc, dict):
                hc.pop("StartInterval", None)  # an API 1.44 field: older clients' is ignored
            eps = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") \
                if isinstance(body.get("NetworkingConfig"), dict) else None
            if isinstance(eps, dict) and len(eps) > 1:  # several networks at create: 1.44
                raise InvalidParameter("Container cannot be connected to network endpoints: "
                                       + ", ".join(eps))
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

    def attachable(req):
        """The container, or the HTTP error dockerd gives before it takes the connection."""
        from bosun import detachkeys
        from bosun.engine.container import PAUSED, RESTARTING

        c = engine.get(req.path_params["id"])
        detach_keys = req.q("detachKeys") or None
        try:
            detachkeys.parse(detach_keys)  # the syntax module, not the engine's shim
        except ValueError:
            raise InvalidParameter(f"Invalid detach keys ({detach_keys}) provided") from None
        if c.status == PAUSED:
            raise Conflict(f"container {c.id} is paused, unpause the container before attach")
        if c.status == RESTARTING:
            raise Conflict(f"container {c.id} is restarting, wait until the container is "
                           "running")
        return c, detach_keys

    def attach(req):
        c, detach_keys = attachable(req)
        opts = dict(stdin=req.q_bool("stdin"), stdout=req.q_bool("stdout"),
                    stderr=req.q_bool("stderr"), logs=req.q_bool("logs"),
                    stream=req.q_bool("stream"), detach_keys=detach_keys)
        tty = bool(c.doc["Config"].get("Tty"))

        def take(sock, leftover, respond):
            try:
                engine.attach_container(c.id, plain(sock, leftover), ready=respond, **opts)
            except Exception:  # noqa: BLE001  (the engine closed the socket; nothing to say)
                pass
        # the 101 only once the engine holds the stream: `docker run` starts the container as
        # soon as it has the answer, and its first output must not miss the client
        return Hijack(take, multiplexed=not tty, deferred=True)

    def attach_ws(req):
        # As dockerd's wsContainersAttach: errors it finds before the upgrade are HTTP
        # errors; before API 1.42 the stdin/stdout/stderr parameters are ignored (all
        # attached); from 1.28 output goes in binary frames, before it in text frames.
        import socket

        from bosun.api.websocket import WebSocketUpgrade, relay

        c, detach_keys = attachable(req)
        version = version_key(req.version or router.max_version)
        streams = {name: version < (1, 42) or req.q_bool(name)
                   for name in ("stdin", "stdout", "stderr")}
        tty = bool(c.doc["Config"].get("Tty"))
        stdin = streams["stdin"] and bool(c.doc["Config"].get("OpenStdin"))
        logs = req.q_bool("logs")

        def attach() -> None:  # the engine's end of the relay's socket pair
            try:
                engine.attach_container(c.id, theirs, logs=logs, stream=req.q_bool("stream"),
                                        detach_keys=detach_keys, **streams)
            except BaseException:
                theirs.close()
                raise

        def take(sock, leftover):
            relay(sock, leftover, ours, multiplexed=not tty, binary=version >= (1, 28),
                  stdin=stdin)
            if logs:
                try:
                    attach()
                except Exception:  # noqa: BLE001  (the relay sees the end, closes the websocket)
                    pass

        upgrade = WebSocketUpgrade(req, take, abandon=lambda: ours.close())  # 400 if not one
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Attached before the 101, a client that attaches and then starts the container
        # misses nothing. Not with logs: the replay is written to the socket as it is read,
        # so the relay must be running.
        if not logs:
            try:
                attach()
            except BaseException:
                ours.close()
                raise
        return upgrade

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
    router.add("GET", "/containers/{id}/attach/ws", attach_ws)
    router.add("POST", "/containers/{id}/wait", wait)
    router.add("DELETE", "/containers/{id}", remove)

    # exec
    def exec_create(req):
        body = req.json()
        if not isinstance(body, dict):
            raise InvalidParameter("exec config must be a JSON object")
        return Response(201, {"Id": engine.exec_create(req.path_params["id"], body)})

    def exec_start(req):
        from bosun.engine import gotypes
        from bosun.engine.containers.exec import check_startable

        exec_id = req.path_params["id"]
        body = req.json() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("exec start config must be a JSON object")
        body = gotypes.check(body, gotypes.EXEC_START, "ExecStartCheck")
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
