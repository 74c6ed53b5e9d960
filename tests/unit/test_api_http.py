"""bosun.api.http: the API's wire layer, served on a unix socket (and TCP with mutual TLS) and
spoken to with httpx and raw sockets."""

from __future__ import annotations

import email.utils
import grp
import json
import logging
import os
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import h11
import httpx
import pytest

from bosun.api.http import (
    BadRequest, Headers, Hijack, PayloadTooLarge, Request, Response, Router, Server, Stream,
    error_response, status_for, version_key,
)
from bosun.engine import errors

TIMEOUT = 5.0


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def sock_dir():
    # Short on purpose: a unix socket path must fit in 108 bytes.
    d = tempfile.mkdtemp(prefix="bapi-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def serve(sock_dir):
    """serve(router, **kw) → a running Server on sock_dir/api.sock (or TCP with kw)."""
    running = []

    def start(router: Router, **kw) -> Server:
        if "tcp" not in kw:
            kw.setdefault("unix_path", str(sock_dir / "api.sock"))
        srv = Server(router, **kw)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        running.append((srv, t))
        return srv

    yield start
    for srv, t in running:
        srv.shutdown()
        t.join(TIMEOUT)
        assert not t.is_alive()


def client_for(srv: Server) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=srv.address),
                        base_url="http://docker", timeout=TIMEOUT)


def connect(srv: Server) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(srv.address)
    return s


def read_head(s: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """Status line, headers (lower-cased names) and whatever followed the blank line."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, f"connection closed mid-head: {buf!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def read_exactly(s: socket.socket, n: int, buf: bytes = b"") -> bytes:
    while len(buf) < n:
        chunk = s.recv(4096)
        assert chunk, f"closed early after {buf!r}"
        buf += chunk
    return buf


def read_to_eof(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    return out


def h11_exchange(s: socket.socket, client: h11.Connection, method: str, target: str,
                 headers: list | None = None, body: bytes | None = None
                 ) -> tuple[h11.Response, bytes]:
    """One request/response on a raw socket through a client-side h11 connection."""
    hdrs = [("Host", "docker"), *(headers or [])]
    if body is not None and not any(k.lower() == "transfer-encoding" for k, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    out = client.send(h11.Request(method=method, target=target, headers=hdrs))
    if body:
        out += client.send(h11.Data(data=body))
    out += client.send(h11.EndOfMessage())
    s.sendall(out)
    resp, data = None, b""
    while True:
        ev = client.next_event()
        if ev is h11.NEED_DATA:
            client.receive_data(s.recv(65536))
        elif isinstance(ev, h11.Response):
            resp = ev
        elif isinstance(ev, h11.Data):
            data += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            client.start_next_cycle()
            return resp, data
        else:
            raise AssertionError(f"unexpected {ev!r}")


def app() -> Router:
    r = Router()
    r.add("GET", "/_ping", lambda req: Response(200, "OK"))
    r.add("GET", "/containers/{id}/json",
          lambda req: Response(200, {"Id": req.path_params["id"], "version": req.version,
                                     "path": req.path}))
    r.add("GET", "/images/json", lambda req: Response(200, ["list"]))
    r.add("GET", "/images/{name:path}/json",
          lambda req: Response(200, {"name": req.path_params["name"]}))
    r.add("DELETE", "/images/{name:path}",
          lambda req: Response(200, [{"Deleted": req.path_params["name"]}]))
    r.add("GET", "/query", lambda req: Response(200, {
        "all": req.q_bool("all"), "limit": req.q_int("limit", -1),
        "filters": req.q_json("filters", {}), "name": req.q("name"),
        "multi": req.query.get("m", [])}))
    r.add("POST", "/json", lambda req: Response(200, {"got": req.json()}))
    r.add("POST", "/echo", lambda req: Response(200, req.body(limit=1 << 20),
                                                content_type="application/octet-stream"))
    r.add("POST", "/count", lambda req: Response(
        200, {"bytes": sum(len(c) for c in req.stream())}))
    r.add("POST", "/ignore", lambda req: Response(204))
    r.add("GET", "/conn", lambda req: Response(200, {"thread": threading.get_ident()}))
    return r


# --- routing, versions, headers --------------------------------------------------------------

def test_routing_path_params_and_static_routes(serve):
    srv = serve(app())
    with client_for(srv) as c:
        assert c.get("/containers/abc/json").json()["Id"] == "abc"
        # a :path parameter keeps its slashes, encoded or not
        assert c.get("/images/localhost:5000/a/b/json").json() == {
            "name": "localhost:5000/a/b"}
        assert c.get("/v1.47/images/localhost%3A5000%2Fa%2Fb/json").json() == {
            "name": "localhost:5000/a/b"}
        assert c.get("/images/json").json() == ["list"]
        assert c.delete("/images/busybox:latest").json() == [{"Deleted": "busybox:latest"}]
        # a single-segment parameter does not swallow slashes
        r = c.get("/containers/a/b/json")
        assert r.status_code == 404


def test_unknown_path_and_wrong_method_are_page_not_found(serve):
    srv = serve(app())
    with client_for(srv) as c:
        for r in (c.get("/nope"), c.post("/containers/abc/json"), c.get("/v1.47/nope"),
                  c.put("/_ping")):
            assert r.status_code == 404
            assert r.headers["content-type"] == "application/json"
            assert r.json() == {"message": "page not found"}


def test_version_prefix_and_range(serve):
    srv = serve(app())
    with client_for(srv) as c:
        assert c.get("/v1.40/containers/x/json").json() == {
            "Id": "x", "version": "1.40", "path": "/containers/x/json"}
        assert c.get("/containers/x/json").json()["version"] is None
        r = c.get("/v1.99/containers/x/json")
        assert r.status_code == 400
        assert r.json() == {"message": "client version 1.99 is too new. Maximum supported "
                                       "API version is 1.47"}
        r = c.get("/v1.12/_ping")
        assert r.status_code == 400
        assert r.json()["message"].startswith(
            "client version 1.12 is too old. Minimum supported API version is 1.24")


def test_router_version_bounds_are_parameters():
    r = Router(min_version="1.30", max_version="1.41")
    r.add("GET", "/x", lambda req: Response(204))
    assert r.dispatch(Request("GET", "/v1.41/x")).status == 204
    assert r.dispatch(Request("GET", "/v1.30.0/x")).status == 204
    with pytest.raises(BadRequest, match="too new. Maximum supported API version is 1.41"):
        r.dispatch(Request("GET", "/v1.42/x"))
    with pytest.raises(BadRequest, match="too old. Minimum supported API version is 1.30"):
        r.dispatch(Request("GET", "/v1.29/x"))
    assert version_key("1.9") < version_key("1.24") < version_key("1.100")


def test_every_response_carries_docker_headers(serve):
    srv = serve(app())
    with client_for(srv) as c:
        for r in (c.get("/_ping"), c.get("/nope")):
            assert r.headers["api-version"] == "1.47"
            assert r.headers["docker-experimental"] == "false"
            assert r.headers["ostype"] == "linux"
            assert r.headers["server"].startswith("bosun/")
            date = email.utils.parsedate_to_datetime(r.headers["date"])
            assert abs(date.timestamp() - time.time()) < 60
        assert c.get("/_ping").text == "OK"


def test_head_on_get_route_sends_headers_only(serve):
    srv = serve(app())
    with client_for(srv) as c:
        body = c.get("/containers/abc/json").content
        r = c.head("/containers/abc/json")
        assert r.status_code == 200
        assert r.headers["content-length"] == str(len(body))
        assert r.content == b""
    s = connect(srv)
    s.sendall(b"HEAD /containers/abc/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    data = read_to_eof(s)
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\n")  # no body bytes


# --- query and bodies ------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("1", True), ("true", True), ("True", True), ("yes", True),
    ("0", False), ("false", False), ("False", False), ("", False), ("no", False),
    ("none", False)])
def test_q_bool_reads_values_as_docker_does(value, expected):
    assert Request("GET", f"/x?all={value}").q_bool("all") is expected


def test_query_helpers():
    filters = "%7B%22label%22%3A%5B%22k%3Dv%22%5D%7D"  # {"label":["k=v"]}
    req = Request("GET", f"/v1.47/x?a=1&m=x&m=y&s=a+b%2Fc&n=&filters={filters}")
    assert req.q("a") == "1" and req.q("missing", "d") == "d"
    assert req.query["m"] == ["x", "y"] and req.q("m") == "x"
    assert req.q("s") == "a b/c"
    assert req.q_bool("missing") is False and req.q_bool("missing", True) is True
    assert req.q_int("a") == 1 and req.q_int("n", 7) == 7 and req.q_int("missing", 3) == 3
    assert req.q_json("filters") == {"label": ["k=v"]}
    assert req.q_json("missing", {}) == {}
    with pytest.raises(BadRequest, match="invalid value for s"):
        req.q_int("s")
    bad = Request("GET", "/x?filters=%7Bnot-json")
    with pytest.raises(BadRequest, match="invalid filter"):
        bad.q_json("filters")
    assert isinstance(BadRequest("x"), errors.InvalidParameter)


def test_query_errors_over_the_wire(serve):
    srv = serve(app())
    with client_for(srv) as c:
        r = c.get("/query", params={"all": "1", "limit": "5", "name": "n", "m": ["1", "2"],
                                    "filters": json.dumps({"status": ["running"]})})
        assert r.json() == {"all": True, "limit": 5, "filters": {"status": ["running"]},
                            "name": "n", "multi": ["1", "2"]}
        r = c.get("/query", params={"filters": "{oops"})
        assert r.status_code == 400 and r.json()["message"].startswith("invalid filter")
        assert c.get("/query", params={"limit": "x"}).status_code == 400


def test_request_headers_are_case_insensitive():
    h = Headers.from_pairs([("X-Registry-Auth", "abc"), ("Accept", "a"), ("accept", "b")])
    req = Request("GET", "/x", headers=h)
    assert req.headers["x-registry-auth"] == "abc" and req.headers.get("X-REGISTRY-AUTH") == "abc"
    assert "X-Registry-Auth" in req.headers and "nope" not in req.headers
    assert req.headers["Accept"] == "a, b"


def test_json_bodies(serve):
    srv = serve(app())
    with client_for(srv) as c:
        assert c.post("/json", json={"Image": "busybox"}).json() == {
            "got": {"Image": "busybox"}}
        assert c.post("/json").json() == {"got": None}  # empty body
        r = c.post("/json", content=b'{"Image": ', headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["message"].startswith("invalid JSON: ")
        r = c.post("/json", content=b'{"a": 1} {"b": 2}')
        assert r.status_code == 400
        assert r.json() == {"message": "unexpected content after JSON"}
        r = c.post("/json", content=b'"\xff"')
        assert r.status_code == 400 and r.json()["message"].startswith("invalid JSON: ")
        r = c.post("/json", content=b"[" * 100000)  # deeper than the parser's stack
        assert r.status_code == 400
        assert r.json() == {"message": "invalid JSON: exceeded max depth"}


def test_chunked_request_bodies(serve):
    srv = serve(app())

    def chunks(n: int, size: int):
        for i in range(n):
            yield bytes([65 + i % 26]) * size

    with client_for(srv) as c:
        r = c.post("/echo", content=chunks(5, 3))  # a generator → Transfer-Encoding: chunked
        assert r.status_code == 200 and r.content == b"AAABBBCCCDDDEEE"
        r = c.post("/json", content=(p for p in [b'{"Cmd":', b' ["true"]}']))
        assert r.json() == {"got": {"Cmd": ["true"]}}
        # a large upload streamed through Request.stream(), never held whole
        r = c.post("/count", content=chunks(64, 64 << 10))
        assert r.json() == {"bytes": 64 * (64 << 10)}
        # over the handler's cap: 413, and the connection still works afterwards
        r = c.post("/echo", content=chunks(3, 1 << 20))
        assert r.status_code == 413
        assert r.json()["message"] == "request body is larger than 1048576 bytes"
        assert c.get("/_ping").text == "OK"


def test_request_standalone_body_forms():
    req = Request("POST", "/x", body=[b'{"a"', b": 1}"])
    assert req.json() == {"a": 1} and req.body() == b'{"a": 1}'
    assert list(req.stream()) == [b'{"a": 1}']
    streamed = Request("POST", "/x", body=iter([b"a", b"b"]))
    assert list(streamed.stream()) == [b"a", b"b"]
    with pytest.raises(RuntimeError):
        streamed.body()
    with pytest.raises(PayloadTooLarge):
        Request("POST", "/x", body=b"x" * 11).body(limit=10)


# --- keep-alive ------------------------------------------------------------------------------

def test_keep_alive_serves_many_requests_on_one_connection(serve):
    srv = serve(app())
    s = connect(srv)
    client = h11.Connection(h11.CLIENT)
    threads = set()
    for _ in range(3):
        resp, body = h11_exchange(s, client, "GET", "/conn")
        assert resp.status_code == 200
        threads.add(json.loads(body)["thread"])
    # a body the handler never read is drained; a chunked one too
    resp, _ = h11_exchange(s, client, "POST", "/ignore", body=b"x" * 100_000)
    assert resp.status_code == 204
    resp, body = h11_exchange(s, client, "POST", "/echo",
                              headers=[("Transfer-Encoding", "chunked")], body=b"chunky")
    assert body == b"chunky"
    resp, body = h11_exchange(s, client, "GET", "/conn")
    threads.add(json.loads(body)["thread"])
    assert len(threads) == 1  # one connection, one thread
    s.close()
    with client_for(srv) as c:  # httpx reuses its connection too
        seen = {c.get("/conn").json()["thread"] for _ in range(3)}
        assert len(seen) == 1


def test_pipelined_requests_are_answered_in_order(serve):
    srv = serve(app())
    s = connect(srv)
    s.sendall(b"GET /containers/one/json HTTP/1.1\r\nHost: d\r\n\r\n"
              b"GET /containers/two/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    data = read_to_eof(s)
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.index(b'"Id":"one"') < data.index(b'"Id":"two"')


def test_expect_100_continue(serve):
    srv = serve(app())
    s = connect(srv)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\n"
              b"Expect: 100-continue\r\n\r\n")
    status, _, rest = read_head(s)
    assert status == "HTTP/1.1 100 Continue" and rest == b""
    s.sendall(b"hello")
    status, headers, rest = read_head(s)
    assert status == "HTTP/1.1 200 OK"
    assert read_exactly(s, int(headers["content-length"]), rest) == b"hello"


def test_malformed_request_gets_400(serve):
    srv = serve(app())
    s = connect(srv)
    s.sendall(b"this is not http\r\n\r\n")
    data = read_to_eof(s)
    assert data.startswith(b"HTTP/1.1 400 ")
    # the server is unharmed
    with client_for(srv) as c:
        assert c.get("/_ping").text == "OK"


# --- streams -------------------------------------------------------------------------------

def test_stream_chunks_arrive_before_the_iterator_finishes(serve):
    release, closed = threading.Event(), threading.Event()

    def produce():
        try:
            yield b'{"status":"first"}\n'
            release.wait(TIMEOUT)
            yield '{"status":"second"}\n'  # str chunks are encoded
        finally:
            closed.set()

    r = app()
    r.add("POST", "/images/create", lambda req: Stream(produce()))
    srv = serve(r)
    with client_for(srv) as c, c.stream("POST", "/images/create") as resp:
        assert resp.status_code == 200
        assert resp.headers["transfer-encoding"] == "chunked"
        assert resp.headers["content-type"] == "application/json"
        raw = resp.iter_raw()
        t0 = time.monotonic()
        assert next(raw) == b'{"status":"first"}\n'
        assert time.monotonic() - t0 < TIMEOUT / 2  # not held back until the iterator ends
        assert not release.is_set()
        release.set()
        assert b"".join(raw) == b'{"status":"second"}\n'
    assert closed.wait(TIMEOUT)


def _disconnect_mid_stream(serve, chunk: bytes, parting: bytes = b""):
    closed = threading.Event()

    def produce():
        try:
            yield b"hello\n"
            while True:
                time.sleep(0.01)
                yield chunk
        finally:
            closed.set()

    r = app()
    r.add("GET", "/events", lambda req: Stream(produce()))
    srv = serve(r)
    s = connect(srv)
    s.sendall(b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n")
    status, _, rest = read_head(s)
    assert status == "HTTP/1.1 200 OK"
    read_exactly(s, 5, rest)
    s.sendall(parting)
    s.close()
    assert closed.wait(TIMEOUT), "the producer was not closed when the client left"
    with client_for(srv) as c:
        assert c.get("/_ping").text == "OK"


def test_client_leaving_mid_stream_closes_the_producer(serve):
    _disconnect_mid_stream(serve, b"x" * 4096)


def test_client_leaving_is_noticed_on_empty_heartbeat_chunks(serve):
    _disconnect_mid_stream(serve, b"")


def test_client_leaving_after_a_parting_message_is_noticed_too(serve):
    # as a TLS client's close_notify would: unread bytes must not make it look alive
    _disconnect_mid_stream(serve, b"", parting=b"bye")


def test_head_on_stream_route_closes_the_producer(serve):
    closed, pulled = threading.Event(), []

    class Producer:
        def __iter__(self):
            return self

        def __next__(self):
            pulled.append(1)
            raise StopIteration

        def close(self):
            closed.set()

    r = app()
    r.add("GET", "/logs", lambda req: Stream(Producer(), content_type="text/plain"))
    srv = serve(r)
    with client_for(srv) as c:
        resp = c.head("/logs")
        assert resp.status_code == 200 and resp.content == b""
        assert resp.headers["content-type"] == "text/plain"
    assert closed.wait(TIMEOUT) and not pulled


def test_stream_error_after_headers_cuts_the_stream(serve, caplog):
    def produce():
        yield b"part"
        raise RuntimeError("disk on fire")

    r = app()
    r.add("GET", "/bad-stream", lambda req: Stream(produce()))
    srv = serve(r)
    with caplog.at_level(logging.ERROR, logger="bosun.api"), client_for(srv) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.get("/bad-stream")
        assert c.get("/_ping").text == "OK"
    assert any("disk on fire" in (rec.exc_text or "") for rec in caplog.records)


# --- hijack --------------------------------------------------------------------------------

def echo(sock: socket.socket, leftover: bytes) -> None:
    """A hijack callback: report the leftover bytes, then echo until EOF."""
    try:
        sock.sendall(b"leftover=" + leftover + b";")
        while data := sock.recv(4096):
            sock.sendall(data)
    finally:
        sock.close()


def test_hijack_with_upgrade_answers_101_and_hands_over_the_socket(serve):
    r = app()
    r.add("POST", "/containers/{id}/attach", lambda req: Hijack(echo))
    srv = serve(r)
    s = connect(srv)
    # bytes sent right behind the request must reach the callback, not be lost in h11
    s.sendall(b"POST /v1.47/containers/c1/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: d\r\n"
              b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\nearly")
    status, headers, rest = read_head(s)
    assert status == "HTTP/1.1 101 UPGRADED"
    assert headers["content-type"] == "application/vnd.docker.raw-stream"
    assert headers["connection"] == "Upgrade" and headers["upgrade"] == "tcp"
    assert headers["api-version"] == "1.47"
    assert "content-length" not in headers and "transfer-encoding" not in headers
    assert read_exactly(s, len(b"leftover=early;"), rest) == b"leftover=early;"
    s.sendall(b"ping")
    assert read_exactly(s, 4) == b"ping"
    s.shutdown(socket.SHUT_WR)
    assert read_to_eof(s) == b""


def test_hijack_without_upgrade_answers_200_with_no_length(serve):
    def start(req: Request) -> Hijack:
        cfg = req.json()  # exec start reads its JSON body first

        def cb(sock: socket.socket, leftover: bytes) -> None:
            sock.sendall(json.dumps(cfg).encode() + b"|")
            echo(sock, leftover)

        return Hijack(cb, multiplexed=True)

    r = app()
    r.add("POST", "/exec/{id}/start", start)
    srv = serve(r)
    s = connect(srv)
    body = b'{"Detach":false,"Tty":false}'
    s.sendall(b"POST /exec/e1/start HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%sstdin" % (len(body), body))
    status, headers, rest = read_head(s)
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    assert "content-length" not in headers and "transfer-encoding" not in headers
    expected = b'{"Detach": false, "Tty": false}|leftover=stdin;'
    assert read_exactly(s, len(expected), rest) == expected
    s.sendall(b"more")
    assert read_exactly(s, 4) == b"more"
    s.close()


def test_hijack_handler_errors_are_normal_responses(serve):
    def attach(req: Request) -> Hijack:
        raise errors.NotFound(f"No such container: {req.path_params['id']}")

    r = app()
    r.add("POST", "/containers/{id}/attach", attach)
    srv = serve(r)
    with client_for(srv) as c:
        resp = c.post("/containers/zz/attach",
                      headers={"Connection": "Upgrade", "Upgrade": "tcp"})
        assert resp.status_code == 404
        assert resp.json() == {"message": "No such container: zz"}
        assert c.get("/_ping").text == "OK"


# --- errors --------------------------------------------------------------------------------

KINDS = [(errors.InvalidParameter, 400), (errors.NotFound, 404), (errors.Conflict, 409),
         (errors.Forbidden, 403), (errors.Unavailable, 503), (errors.NotImplementedErr, 501),
         (errors.SystemErr, 500), (errors.EngineError, 500), (PayloadTooLarge, 413),
         (BadRequest, 400)]


def test_error_kinds_map_to_status_codes(serve):
    r = app()

    def fail(req: Request) -> Response:
        kind = {k.__name__: k for k, _ in KINDS}[req.path_params["kind"]]
        raise kind(f"failed: {kind.__name__}")

    r.add("GET", "/fail/{kind}", fail)
    r.add("GET", "/not-modified", lambda req: (_ for _ in ()).throw(
        errors.NotModified("container already started")))
    srv = serve(r)
    with client_for(srv) as c:
        for kind, status in KINDS:
            resp = c.get(f"/fail/{kind.__name__}")
            assert resp.status_code == status, kind
            assert resp.headers["content-type"] == "application/json"
            assert resp.json() == {"message": f"failed: {kind.__name__}"}
        resp = c.get("/not-modified")
        assert resp.status_code == 304 and resp.content == b""
        assert "content-type" not in resp.headers


def test_subclass_of_a_kind_keeps_its_status():
    class NoSuchImage(errors.NotFound):
        pass

    assert status_for(NoSuchImage("x")) == 404
    assert status_for(KeyError("x")) == 500


def test_unexpected_exception_is_500_with_logged_traceback(serve, caplog):
    r = app()

    def boom(req: Request) -> Response:
        raise RuntimeError("boom")

    r.add("GET", "/boom", boom)
    r.add("GET", "/wrong-type", lambda req: {"not": "a Response"})
    srv = serve(r)
    with caplog.at_level(logging.ERROR, logger="bosun.api"), client_for(srv) as c:
        resp = c.get("/boom")
        assert resp.status_code == 500 and resp.json() == {"message": "boom"}
        resp = c.get("/wrong-type")
        assert resp.status_code == 500 and "not a Response" in resp.json()["message"]
    boom_logs = [rec for rec in caplog.records if rec.name == "bosun.api" and rec.exc_info
                 and "boom" in rec.getMessage()]
    assert boom_logs and "RuntimeError: boom" in boom_logs[0].exc_text


def test_engine_errors_are_not_logged_with_traceback(caplog):
    with caplog.at_level(logging.DEBUG, logger="bosun.api"):
        resp = error_response(errors.Conflict("name in use"))
    assert resp.status == 409 and json.loads(resp.body) == {"message": "name in use"}
    assert not [rec for rec in caplog.records if rec.exc_info]


# --- the unix socket -----------------------------------------------------------------------

def test_socket_mode_and_stale_socket_replaced(serve, sock_dir):
    path = sock_dir / "api.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a dead daemon's socket file
    srv = serve(app(), unix_mode=0o600)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert os.listdir(sock_dir) == ["api.sock"]  # no temporary name left behind
    with client_for(srv) as c:
        assert c.get("/_ping").text == "OK"


def test_default_socket_mode_and_group(sock_dir):
    other = _another_group()
    path = str(sock_dir / "a.sock")
    srv = Server(app(), unix_path=path, unix_group=other.gr_name if other else None)
    try:
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o660
        if other:
            assert st.st_gid == other.gr_gid
    finally:
        srv.shutdown()
    assert not os.path.exists(path)  # shutdown removes it
    # a group that does not exist is skipped silently
    srv = Server(app(), unix_path=path, unix_group="no-such-group-bosun")
    try:
        assert os.stat(path).st_gid == os.getegid()
    finally:
        srv.shutdown()
    if not other:
        pytest.skip("no second group to chown the socket to")


def _another_group() -> grp.struct_group | None:
    """A group the socket can be given that differs from our own."""
    candidates = ([g.gr_gid for g in grp.getgrall()] if os.geteuid() == 0
                  else os.getgroups())
    for gid in candidates:
        if gid != os.getegid():
            try:
                return grp.getgrgid(gid)
            except KeyError:
                continue
    return None


def test_shutdown_stops_accepting_and_spares_a_successors_socket(sock_dir):
    path = str(sock_dir / "api.sock")
    srv = Server(app(), unix_path=path)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    successor = Server(app(), unix_path=path)  # renamed over ours
    srv.shutdown()
    t.join(TIMEOUT)
    assert not t.is_alive()
    assert os.path.exists(path)  # the successor's socket was not removed
    successor.shutdown()
    assert not os.path.exists(path)
    with pytest.raises(OSError):
        socket.socket(socket.AF_UNIX).connect(path)


def test_tcp_without_tls_is_refused():
    with pytest.raises(ValueError, match="without TLS"):
        Server(app(), tcp=("127.0.0.1", 0))
    with pytest.raises(ValueError):
        Server(app())


# --- mutual TLS ----------------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(d: Path, name: str, ca: str, usage: str, san: str | None = None) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text(f"extendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if san else ""))
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext.name, cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN={ca}", cwd=d)
    _issue(d, "server", "ca", "serverAuth", "IP:127.0.0.1,DNS:localhost")
    _issue(d, "client", "ca", "clientAuth")
    _issue(d, "rogue", "rogue-ca", "clientAuth")
    return d


def test_mutual_tls(serve, pki):
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    server_ctx.load_verify_locations(pki / "ca.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    srv = serve(app(), tcp=("127.0.0.1", 0), ssl_context=server_ctx)
    _, port = srv.address
    url = f"https://127.0.0.1:{port}"

    def client(cert: str | None) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        if cert:
            ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
        return httpx.Client(verify=ctx, timeout=TIMEOUT)

    with client("client") as c:
        assert c.get(f"{url}/_ping").text == "OK"
        assert c.get(f"{url}/v1.47/containers/x/json").json()["Id"] == "x"
    for cert in (None, "rogue"):
        with client(cert) as c, pytest.raises(httpx.TransportError):
            c.get(f"{url}/_ping")
    with client("client") as c:  # refusals did not hurt the server
        assert c.get(f"{url}/_ping").text == "OK"


def test_mutual_tls_hijack_gets_the_tls_socket(serve, pki):
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    server_ctx.load_verify_locations(pki / "ca.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    r = app()
    r.add("POST", "/containers/{id}/attach", lambda req: Hijack(echo))
    srv = serve(r, tcp=("127.0.0.1", 0), ssl_context=server_ctx)
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    ctx.load_cert_chain(pki / "client.pem", pki / "client.key")
    raw = socket.create_connection(srv.address, timeout=TIMEOUT)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"POST /containers/c/attach HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\n"
                  b"Upgrade: tcp\r\n\r\nhi")
        status, _, rest = read_head(s)
        assert status == "HTTP/1.1 101 UPGRADED"
        assert read_exactly(s, len(b"leftover=hi;"), rest) == b"leftover=hi;"
        s.sendall(b"over tls")
        assert read_exactly(s, 8) == b"over tls"


def test_server_both_unix_and_tcp_addresses(sock_dir, pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    srv = Server(app(), unix_path=str(sock_dir / "api.sock"), tcp=("127.0.0.1", 0),
                 ssl_context=ctx)
    try:
        unix, tcp = srv.addresses
        assert srv.address == unix == str(sock_dir / "api.sock")
        assert tcp[0] == "127.0.0.1" and tcp[1] > 0
    finally:
        srv.shutdown()


def test_route_decorator_and_pattern_validation():
    r = Router()

    @r.route("get", "/volumes/{name}")
    def inspect(req: Request) -> Response:
        return Response(200, {"Name": req.path_params["name"]})

    assert json.loads(r.dispatch(Request("GET", "/volumes/v1")).body) == {"Name": "v1"}
    with pytest.raises(ValueError):
        r.add("GET", "volumes", inspect)
    with pytest.raises(errors.NotFound, match="page not found"):
        r.dispatch(Request("GET", "/volumes/a/b"))
