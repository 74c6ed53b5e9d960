"""Fixtures for registry tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with
a random port and a temporary storage directory, in three configurations — open, htpasswd
Basic auth, and token auth against a token server run here — plus a TCP proxy that injects
faults. Everything is stopped and removed at teardown, even when a test fails.

Token auth: the registry trusts tokens whose JWT header carries an `x5c` chain ending at a
certificate of its `rootcertbundle`; distribution 2.8 also accepts a `kid` naming a root key
by its libtrust fingerprint, but the chain needs no fingerprint code. Tokens are RS256,
signed with `openssl dgst`.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bosun.testing.registry import Registry

REGISTRY_BIN = shutil.which("docker-registry")
SERVICE = "bosun-test-registry"
ISSUER = "bosun-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------------------------------
# docker-registry

# ---------------------------------------------------------------------------------------
# Token server

@dataclass
class TokenRequest:
    """One request the token server saw."""

    user: str | None          # authenticated account, None for anonymous
    service: str | None
    scopes: list[str]
    method: str


@dataclass
class TokenServer:
    """Docker's token protocol on 127.0.0.1: GET /token?service=&scope=… with optional Basic
    credentials, and POST /token (OAuth2 refresh_token grant) for identity tokens. Known
    users get the actions they ask for; anonymous callers get pull on "public/…" only."""

    key: Path
    cert_der: bytes
    users: dict[str, str] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # token → user
    expires_in: int | None = 300
    token_field: str = "token"
    requests: list[TokenRequest] = field(default_factory=list)

    def start(self) -> None:
        handler = _token_handler(self)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def reset(self) -> None:
        self.requests.clear()
        self.expires_in = 300
        self.token_field = "token"

    def grant(self, user: str | None, scopes: list[str]) -> list[dict]:
        access = []
        for scope in scopes:
            for one in scope.split(" "):
                parts = one.split(":")
                if len(parts) < 3 or parts[0] != "repository":
                    continue
                name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
                if user is None:
                    actions = [a for a in actions if a == "pull" and name.startswith("public/")]
                if actions:
                    access.append({"type": "repository", "name": name, "actions": actions})
        return access

    def issue(self, user: str | None, access: list[dict]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256",
                  "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": now + 600,
                  "nbf": now - 5, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode())).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input, capture_output=True, check=True).stdout
        return signing_input.decode() + "." + _b64url(sig)


def _token_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _reply(self, status: int, doc: dict, headers: dict | None = None) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _basic_user(self) -> tuple[bool, str | None]:
            """(ok, user): no header is anonymous, a wrong password is not ok."""
            h = self.headers.get("Authorization")
            if not h:
                return True, None
            if not h.startswith("Basic "):
                return False, None
            user, _, pw = base64.b64decode(h[6:]).decode().partition(":")
            return server.users.get(user) == pw, user

        def _answer(self, user: str | None, service: str | None, scopes: list[str]) -> None:
            token = server.issue(user, server.grant(user, scopes))
            doc: dict = {server.token_field: token}
            if server.expires_in is not None:
                doc["expires_in"] = server.expires_in
            self._reply(200, doc)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(url.query)
            ok, user = self._basic_user()
            scopes = q.get("scope", [])
            service = (q.get("service") or [None])[0]
            server.requests.append(TokenRequest(user, service, scopes, "GET"))
            if not ok:
                self._reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                              "message": "invalid username or password"}]},
                            {"WWW-Authenticate": 'Basic realm="token"'})
                return
            self._answer(user, service, scopes)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            rt = (form.get("refresh_token") or [""])[0]
            user = server.refresh_tokens.get(rt)
            scopes = (form.get("scope") or [""])[0].split()
            service = (form.get("service") or [None])[0]
            server.requests.append(TokenRequest(user, service, scopes, "POST"))
            if (form.get("grant_type") or [""])[0] != "refresh_token" or user is None:
                self._reply(401, {"error": "invalid_grant"})
                return
            self._answer(user, service, scopes)

    return Handler


def _make_signing_cert(d: Path) -> tuple[Path, Path, bytes]:
    key, cert = d / "token.key", d / "token.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj",
                    "/CN=bosun test token signer"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return key, cert, der


# ---------------------------------------------------------------------------------------
# Fault-injecting proxy

class FaultProxy:
    """A TCP proxy on 127.0.0.1 to target_port. Requests pass through untouched; while
    `cut_once(needle, after)` is armed, the response to the next request whose head
    contains needle is cut after `after` bytes (both sockets closed), once. `heads` keeps
    every request head seen."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.heads: list[str] = []
        self._armed: tuple[bytes, int] | None = None
        self.cuts = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def cut_once(self, needle: str, after: int) -> None:
        with self._lock:
            self._armed = (needle.encode(), after)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if self._stopped:
                client.close()
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._conns += [client, upstream]
            state = {"cut_at": None, "sent": 0}
            threading.Thread(target=self._up, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, state), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, state: dict) -> None:
        try:
            while data := client.recv(65536):
                head = data.split(b"\r\n\r\n", 1)[0]
                if head[:8].split(b" ")[0] in (b"GET", b"HEAD", b"PUT", b"POST", b"PATCH",
                                               b"DELETE"):
                    self.heads.append(head.decode("latin-1"))
                    with self._lock:
                        if self._armed and self._armed[0] in head:
                            # Set before the request goes on: its response is what we cut.
                            state["cut_at"] = state["sent"] + self._armed[1]
                            self._armed = None
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _down(self, upstream: socket.socket, client: socket.socket, state: dict) -> None:
        try:
            while data := upstream.recv(65536):
                cut_at = state["cut_at"]
                if cut_at is not None and state["sent"] + len(data) >= cut_at:
                    client.sendall(data[:cut_at - state["sent"]])
                    self.cuts += 1
                    break
                state["sent"] += len(data)  # counted first: the client may answer at once
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def stop(self) -> None:
        self._stopped = True
        _close(self._sock)  # shutdown() wakes the thread blocked in accept()
        with self._lock:
            _close(*self._conns)
        self._thread.join(5)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


# ---------------------------------------------------------------------------------------
# Fixtures

@pytest.fixture(scope="session")
def registry_workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="bosun-registry-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def registry_factory(registry_workdir: Path) -> Iterator[Callable[..., Registry]]:
    """make(auth=None, name=...) -> a started Registry, stopped at the end of the session."""
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry is not installed (Debian: docker-registry)")
    started: list[Registry] = []

    def make(auth: dict | None = None, name: str = "registry") -> Registry:
        d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=registry_workdir))
        r = Registry(d, auth, name)
        started.append(r)
        return r

    try:
        yield make
    finally:
        for r in started:
            r.stop()


@pytest.fixture(scope="session")
def open_registry(registry_factory) -> Registry:
    """docker-registry without authentication."""
    return registry_factory(name="open")


@pytest.fixture(scope="session")
def basic_registry(registry_factory, registry_workdir: Path) -> Registry:
    """docker-registry with htpasswd (bcrypt) Basic auth; user/password on the object."""
    user, password = "alice", "s3cret-pw"
    line = subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                          capture_output=True, text=True).stdout.strip()
    htpasswd = registry_workdir / "htpasswd"
    htpasswd.write_text(line + "\n")
    r = registry_factory({"htpasswd": {"realm": "bosun-test", "path": str(htpasswd)}},
                         name="basic")
    r.username, r.password = user, password
    return r


@pytest.fixture(scope="session")
def _token_server(registry_workdir: Path) -> Iterator[TokenServer]:
    key, _cert, der = _make_signing_cert(registry_workdir)
    ts = TokenServer(key, der, users={"bob": "hunter2-pw"},
                     refresh_tokens={"identity-token-of-bob": "bob"})
    ts.start()
    try:
        yield ts
    finally:
        ts.stop()


@pytest.fixture(scope="session")
def _token_registry(registry_factory, _token_server: TokenServer,
                    registry_workdir: Path) -> Registry:
    r = registry_factory({"token": {"realm": _token_server.realm, "service": SERVICE,
                                    "issuer": ISSUER,
                                    "rootcertbundle": str(registry_workdir / "token.crt")}},
                         name="token")
    r.username, r.password = "bob", "hunter2-pw"
    r.token_server = _token_server
    return r


@pytest.fixture
def token_registry(_token_registry: Registry) -> Iterator[Registry]:
    """docker-registry with token auth; .token_server counts and shapes token requests
    (reset for each test)."""
    _token_registry.token_server.reset()
    yield _token_registry
    _token_registry.token_server.reset()


@pytest.fixture
def fault_proxy(open_registry: Registry) -> Iterator[FaultProxy]:
    """A FaultProxy in front of open_registry."""
    p = FaultProxy(open_registry.port)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def repo_name(request) -> str:
    """A repository name unique to the test (the registries are shared by the session)."""
    base = request.node.name.lower().replace("[", "-").replace("]", "")
    base = "".join(c if c.isalnum() else "-" for c in base).strip("-")[:40].strip("-")
    return f"t/{base}-{secrets.token_hex(3)}"



@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A private `bosun daemon` with a busybox image, one per test module; teardown asserts
    nothing (process, mount, runtime state) was left behind."""
    from bosun.testing.daemon import BosunDaemon, import_busybox

    d = BosunDaemon(str(tmp_path_factory.mktemp("bosund")))
    d.data_root.mkdir(parents=True, exist_ok=True)
    import_busybox(str(d.data_root))
    d.start()
    yield d
    problems = d.teardown()
    assert not problems, problems


@pytest.fixture(scope="module")
def client(daemon):
    """A docker SDK (docker-py) client of the module's daemon."""
    c = daemon.client()
    yield c
    c.close()


@pytest.fixture
def no_containers_after(daemon):
    """Use (autouse in a module) so each test leaves no container behind for the next."""
    yield
    ids = daemon.docker("ps", "-aq").stdout.decode().split()
    if ids:
        daemon.docker("rm", "-f", *ids)


@pytest.fixture
def user_networks(daemon):
    """create(*args): `docker network create *args` (the name last), the name returned; each
    network made so is removed after the test, with the containers still using it."""
    made = []

    def create(*args: str) -> str:
        daemon.docker("network", "create", *args)
        made.append(args[-1])
        return args[-1]

    yield create
    ids = daemon.docker("ps", "-aq").stdout.decode().split()
    if ids:
        daemon.docker("rm", "-f", *ids)
    for name in made:
        daemon.docker("network", "rm", name, check=False)
