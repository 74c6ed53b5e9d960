"""bosun.registry.client against registries faked with httpx's MockTransport (no network):
redirects and where Authorization goes, mirrors, the insecure-host scheme probe, retries,
resumes, digest checks, upload locations, tag pagination, input validation."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from bosun.registry.auth import Credentials
from bosun.registry.client import (
    MANIFEST_ACCEPT, OCI_MANIFEST, RegistryClient, is_loopback, parse_digest,
)
from bosun.registry.errors import (
    DigestMismatchError, ManifestUnknownError, ProtocolError, RegistryConnectionError,
    RegistryError, TooManyRequestsError, UnauthorizedError,
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode()
BLOB = bytes(range(256)) * 400  # 102400 bytes


class Fake:
    """A MockTransport whose handler is a function; every request is recorded."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]):
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def client(self, host: str = "reg.example", **kw) -> RegistryClient:
        c = RegistryClient(host, transport=httpx.MockTransport(self), **kw)
        c._sleep = lambda s: None
        return c


def manifest_response(data: bytes = MANIFEST, **headers: str) -> httpx.Response:
    return httpx.Response(200, content=data, headers={
        "Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256(data), **headers})


def body(data: bytes, status: int = 200, **headers: str) -> httpx.Response:
    """A streamed response (httpx reads content= bodies at once, as no server does)."""
    return httpx.Response(status, stream=httpx.ByteStream(data),
                          headers={"Content-Length": str(len(data)), **headers})


def error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers,
                          json={"errors": [{"code": code, "message": message}]})


# ---------------------------------------------------------------------------------------
# Manifests

def test_get_manifest_accept_and_digest():
    fake = Fake(lambda r: manifest_response())
    c = fake.client()
    assert c.get_manifest("library/busybox", "latest") == (MANIFEST, OCI_MANIFEST, sha256(MANIFEST))
    req = fake.requests[0]
    assert str(req.url) == "https://reg.example/v2/library/busybox/manifests/latest"
    accept = req.headers["Accept"]
    assert accept == MANIFEST_ACCEPT
    assert accept.index("manifest.v1+prettyjws") > accept.index("manifest.list.v2+json")


def test_manifest_digest_checks():
    other = MANIFEST + b" "
    c = Fake(lambda r: manifest_response(other)).client()
    with pytest.raises(DigestMismatchError, match="content has digest"):
        c.get_manifest("a/b", sha256(MANIFEST))
    c = Fake(lambda r: manifest_response(
        MANIFEST, **{"Docker-Content-Digest": sha256(other)})).client()
    with pytest.raises(DigestMismatchError, match="the registry says"):
        c.get_manifest("a/b", "latest")


def test_generic_content_type_falls_back_to_the_documents_media_type():
    c = Fake(lambda r: httpx.Response(200, content=MANIFEST,
                                      headers={"Content-Type": "application/json"})).client()
    assert c.get_manifest("a/b", "v1")[1] == OCI_MANIFEST
    schema1 = json.dumps({"schemaVersion": 1, "signatures": []}).encode()
    c = Fake(lambda r: httpx.Response(200, content=schema1, headers={
        "Content-Type": "application/json", "Docker-Content-Digest": sha256(b"payload")})).client()
    # Signed schema 1: reported (to be refused by the caller), its digest not compared.
    assert c.get_manifest("a/b", "v1")[1] == \
        "application/vnd.docker.distribution.manifest.v1+prettyjws"


def test_oversized_manifest_refused():
    c = Fake(lambda r: manifest_response(b"x" * (4 * 1024 * 1024 + 1))).client()
    with pytest.raises(ProtocolError, match="larger than"):
        c.get_manifest("a/b", "v1")


def test_invalid_names_never_reach_the_network():
    fake = Fake(lambda r: pytest.fail("no request expected"))
    c = fake.client()
    for repo, ref in [("A/b", "v1"), ("a/../b", "v1"), ("a/b", "bad tag"),
                      ("a/b", "sha256:abc"), ("a/b", "md5:" + "0" * 32), ("a/b", "-x")]:
        with pytest.raises(RegistryError):
            c.get_manifest(repo, ref)
    with pytest.raises(RegistryError):
        c.fetch_blob("a/b", "sha256:" + "G" * 64, io.BytesIO())
    assert parse_digest("sha512:" + "a" * 128) == ("sha512", "a" * 128)
    with pytest.raises(RegistryError):
        RegistryClient("bad/host")


# ---------------------------------------------------------------------------------------
# Redirects and authorization

def test_authorization_does_not_follow_cross_origin_redirects():
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.host == "storage.example":
            return body(BLOB)
        if "Authorization" not in r.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        if r.url.path.endswith("/same"):
            return body(BLOB)
        if r.url.path.startswith("/v2/a/b/blobs/"):
            return httpx.Response(307, headers={"Location": "/same"})
        return httpx.Response(307, headers={"Location": "https://storage.example/x?sig=1"})

    fake = Fake(handler)
    c = fake.client(credentials=Credentials("alice", "pw"))
    sink = io.BytesIO()
    assert c.fetch_blob("a/b", sha256(BLOB), sink) == len(BLOB)
    same = fake.requests[-1]
    assert same.url.path == "/same" and same.headers["Authorization"].startswith("Basic ")

    c.fetch_blob("a/c", sha256(BLOB), io.BytesIO())
    storage = fake.requests[-1]
    assert storage.url.host == "storage.example" and "Authorization" not in storage.headers
    assert storage.url.params["sig"] == "1"


def test_no_downgrade_from_https_redirects():
    c = Fake(lambda r: httpx.Response(302, headers={"Location": "http://evil.example/b"})).client()
    with pytest.raises(ProtocolError, match="refusing redirect"):
        c.fetch_blob("a/b", sha256(BLOB), io.BytesIO())


def test_second_401_is_reported_with_a_hint():
    fake = Fake(lambda r: error(401, "UNAUTHORIZED", "authentication required",
                                **{"WWW-Authenticate": 'Basic realm="r"'}))
    with pytest.raises(UnauthorizedError, match="credentials for reg.example were refused"):
        fake.client(credentials=Credentials("a", "b")).get_manifest("a/b", "v1")
    assert len(fake.requests) == 2
    with pytest.raises(UnauthorizedError, match="log in to reg.example"):
        fake.client().get_manifest("a/b", "v1")


# ---------------------------------------------------------------------------------------
# Endpoints: docker.io, mirrors, insecure hosts

def test_docker_io_and_mirrors():
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.host == "mirror1.example":
            raise httpx.ConnectError("refused")
        if r.url.host == "mirror2.example":
            return error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        return manifest_response()

    fake = Fake(handler)
    c = fake.client("docker.io", mirrors=["https://mirror1.example", "https://mirror2.example/"],
                    retries=0, credentials=Credentials("hub", "pw"))
    assert c.get_manifest("library/busybox", "latest")[0] == MANIFEST
    assert [r.url.host for r in fake.requests] == \
        ["mirror1.example", "mirror2.example", "registry-1.docker.io"]
    # Pushes and tag lists go to the origin only.
    fake.requests.clear()
    fake.handler = lambda r: httpx.Response(200, json={"tags": ["a"]})
    assert c.list_tags("library/busybox") == ["a"]
    assert [r.url.host for r in fake.requests] == ["registry-1.docker.io"]


def test_mirror_serving_bad_content_is_an_error_not_a_fallback():
    fake = Fake(lambda r: manifest_response(b"{}" if r.url.host == "m.example" else MANIFEST,
                                            **{"Docker-Content-Digest": sha256(MANIFEST)}))
    c = fake.client("docker.io", mirrors=["https://m.example"])
    with pytest.raises(DigestMismatchError):
        c.get_manifest("library/busybox", "latest")


def test_mirrors_only_for_docker_io():
    fake = Fake(lambda r: manifest_response())
    fake.client("quay.io", mirrors=["https://m.example"]).get_manifest("a/b", "v1")
    assert [r.url.host for r in fake.requests] == ["quay.io"]


def test_insecure_hosts_fall_back_to_plain_http():
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number")
        return manifest_response()

    fake = Fake(handler)
    c = fake.client("localhost:5000")
    c.get_manifest("a/b", "v1")
    c.get_manifest("a/b", "v2")
    assert [str(r.url) for r in fake.requests] == [
        "https://localhost:5000/v2/",  # the probe, once
        "http://localhost:5000/v2/a/b/manifests/v1",
        "http://localhost:5000/v2/a/b/manifests/v2"]

    fake = Fake(handler)
    with pytest.raises(RegistryConnectionError):
        fake.client("reg.example", retries=0).get_manifest("a/b", "v1")
    assert {r.url.scheme for r in fake.requests} == {"https"}  # secure hosts: never http
    fake.requests.clear()
    fake.client("reg.example", insecure=True).get_manifest("a/b", "v1")
    assert fake.requests[-1].url.scheme == "http"


@pytest.mark.parametrize("host,loop", [("localhost", True), ("127.0.0.1", True),
                                       ("127.5.6.7", True), ("::1", True), ("[::1]", True),
                                       ("10.0.0.1", False), ("localhost.example", False)])
def test_loopback(host, loop):
    assert is_loopback(host) is loop


# ---------------------------------------------------------------------------------------
# Retries and errors

def test_retries_5xx_then_succeeds():
    answers = iter([httpx.Response(503), httpx.Response(502), manifest_response()])
    fake = Fake(lambda r: next(answers))
    assert fake.client().get_manifest("a/b", "v1")[0] == MANIFEST
    assert len(fake.requests) == 3


def test_gives_up_after_retries():
    fake = Fake(lambda r: httpx.Response(500, text="database on fire"))
    with pytest.raises(RegistryError, match="HTTP 500 Internal Server Error: database on fire"):
        fake.client(retries=2).get_manifest("a/b", "v1")
    assert len(fake.requests) == 3

    fake = Fake(lambda r: error(429, "TOOMANYREQUESTS", "pull rate limit", **{"Retry-After": "1"}))
    c = fake.client(retries=1)
    slept: list[float] = []
    c._sleep = slept.append
    with pytest.raises(TooManyRequestsError, match="TOOMANYREQUESTS: pull rate limit"):
        c.get_manifest("a/b", "v1")
    assert slept and slept[0] >= 1.0  # Retry-After honoured

    def broken(r: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer")

    fake = Fake(broken)
    with pytest.raises(RegistryConnectionError, match="connection reset by peer"):
        fake.client(retries=3).ping()
    assert len(fake.requests) == 4


def test_error_body_surfaced():
    c = Fake(lambda r: error(404, "MANIFEST_UNKNOWN", "manifest unknown")).client()
    with pytest.raises(ManifestUnknownError) as e:
        c.get_manifest("a/b", "v1")
    assert str(e.value) == "manifest reg.example/a/b:v1: MANIFEST_UNKNOWN: manifest unknown"
    assert (e.value.code, e.value.status) == ("MANIFEST_UNKNOWN", 404)


# ---------------------------------------------------------------------------------------
# Blob download: resume

class Dropping(httpx.SyncByteStream):
    """A body that breaks after `upto` bytes, like a dropped connection."""

    def __init__(self, data: bytes, upto: int):
        self.data, self.upto = data, upto

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[:self.upto]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete "
                                        "message body")


@pytest.mark.parametrize("honour_range", [True, False])
def test_fetch_resumes(honour_range):
    def handler(r: httpx.Request) -> httpx.Response:
        rng = r.headers.get("Range")
        if rng is None:
            return httpx.Response(200, headers={"Content-Length": str(len(BLOB))},
                                  stream=Dropping(BLOB, 30_000))
        start = int(rng.split("=")[1].rstrip("-"))
        if not honour_range:  # a server ignoring Range sends it all again
            return body(BLOB)
        return body(BLOB[start:], 206,
                    **{"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"})

    fake = Fake(handler)
    sink = io.BytesIO()
    events = []
    assert fake.client().fetch_blob("a/b", sha256(BLOB), sink, progress=events.append) == len(BLOB)
    assert sink.getvalue() == BLOB
    assert fake.requests[1].headers["Range"] == "bytes=30000-"
    assert events[-1].done == events[-1].total == len(BLOB)


def test_fetch_gives_up_after_repeated_drops_and_checks_size():
    fake = Fake(lambda r: httpx.Response(200, headers={"Content-Length": str(len(BLOB))},
                                         stream=Dropping(BLOB, 10)))
    with pytest.raises(RegistryConnectionError, match="kept failing"):
        fake.client(retries=2).fetch_blob("a/b", sha256(BLOB), io.BytesIO())
    assert len(fake.requests) == 3

    c = Fake(lambda r: body(BLOB + b"extra")).client()
    with pytest.raises(DigestMismatchError, match="says 102405 bytes, expected 102400"):
        c.fetch_blob("a/b", sha256(BLOB), io.BytesIO(), size=len(BLOB))
    # Without a Content-Length, the size is enforced while reading.
    c = Fake(lambda r: httpx.Response(200, stream=httpx.ByteStream(BLOB + b"extra"))).client()
    with pytest.raises(DigestMismatchError, match="more than its 102400 bytes"):
        c.fetch_blob("a/b", sha256(BLOB), io.BytesIO(), size=len(BLOB))


def test_fetch_with_offset_and_hasher():
    fake = Fake(lambda r: body(BLOB[1000:], 206, **{
        "Content-Range": f"bytes 1000-{len(BLOB) - 1}/{len(BLOB)}"}))
    h = hashlib.sha256(BLOB[:1000])
    sink = io.BytesIO()
    assert fake.client().fetch_blob("a/b", sha256(BLOB), sink, offset=1000, hasher=h) == len(BLOB)
    assert sink.getvalue() == BLOB[1000:]
    assert fake.requests[0].headers["Range"] == "bytes=1000-"
    with pytest.raises(DigestMismatchError):  # a wrong prefix hash is caught
        fake.client().fetch_blob("a/b", sha256(BLOB), io.BytesIO(), offset=1000,
                                 hasher=hashlib.sha256(b"x" * 1000))


# ---------------------------------------------------------------------------------------
# Uploads

def test_upload_follows_locations_and_keeps_their_query():
    seen: list[tuple[str, str]] = []

    def handler(r: httpx.Request) -> httpx.Response:
        seen.append((r.method, str(r.url)))
        if r.method == "HEAD":
            return httpx.Response(404)
        if r.method == "POST":
            return httpx.Response(202, headers={
                "Location": "https://upload.reg.example/up/1?_state=s1"})
        if r.method == "PATCH":
            n = int(r.url.params["_state"][1:])
            start, end = map(int, r.headers["Content-Range"].split("-"))
            assert end - start + 1 == len(r.content)
            return httpx.Response(202, headers={"Location": f"/up/1?_state=s{n + 1}",
                                                "Range": f"0-{end}"})
        assert r.method == "PUT"
        return httpx.Response(201, headers={"Docker-Content-Digest": r.url.params["digest"]})

    c = Fake(handler).client()
    assert c.push_blob("a/b", sha256(BLOB), len(BLOB), io.BytesIO(BLOB),
                       chunk_size=40_000) == "uploaded"
    assert [m for m, _ in seen] == ["HEAD", "POST", "PATCH", "PATCH", "PATCH", "PUT"]
    assert seen[2][1] == "https://upload.reg.example/up/1?_state=s1"
    assert seen[3][1] == "https://upload.reg.example/up/1?_state=s2"
    quoted = sha256(BLOB).replace(":", "%3A")
    assert seen[-1][1] == f"https://upload.reg.example/up/1?_state=s4&digest={quoted}"


def test_upload_restarts_a_seekable_source_after_a_broken_put():
    puts = []

    def handler(r: httpx.Request) -> httpx.Response:
        if r.method == "HEAD":
            return httpx.Response(404)
        if r.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/a/b/blobs/uploads/u"})
        if r.method == "DELETE":
            return httpx.Response(204)
        body = r.read()
        puts.append(body)
        if len(puts) == 1:
            return httpx.Response(503)
        return httpx.Response(201)

    fake = Fake(handler)
    assert fake.client().push_blob("a/b", sha256(BLOB), len(BLOB), io.BytesIO(BLOB)) == "uploaded"
    assert puts == [BLOB, BLOB]
    assert [r.method for r in fake.requests] == ["HEAD", "POST", "PUT", "DELETE", "POST", "PUT"]


def test_malformed_location_is_a_registry_error():
    fake = Fake(lambda r: httpx.Response(404) if r.method == "HEAD" else
                httpx.Response(202, headers={"Location": "https://[bad/u"}))
    with pytest.raises(ProtocolError):
        fake.client().push_blob("a/b", sha256(b"x"), 1, b"x")


def test_upload_source_shorter_than_size():
    fake = Fake(lambda r: httpx.Response(404) if r.method == "HEAD" else
                httpx.Response(202, headers={"Location": "/u"}))
    with pytest.raises(RegistryError, match="source ended after 10 of 20 bytes"):
        fake.client().push_blob("a/b", sha256(b"x" * 20), 20, io.BytesIO(b"x" * 10),
                                chunk_size=5)


def test_put_manifest_checks_digests():
    fake = Fake(lambda r: httpx.Response(201, headers={"Docker-Content-Digest": sha256(MANIFEST)}))
    c = fake.client()
    assert c.put_manifest("a/b", "v1", MANIFEST, OCI_MANIFEST) == sha256(MANIFEST)
    assert fake.requests[0].headers["Content-Type"] == OCI_MANIFEST
    with pytest.raises(DigestMismatchError):
        c.put_manifest("a/b", sha256(b"other"), MANIFEST, OCI_MANIFEST)
    fake.handler = lambda r: httpx.Response(201, headers={"Docker-Content-Digest": sha256(b"?")})
    with pytest.raises(DigestMismatchError, match="stored"):
        c.put_manifest("a/b", "v1", MANIFEST, OCI_MANIFEST)


# ---------------------------------------------------------------------------------------
# Tags

def test_tag_pagination_follows_link_headers():
    pages = {
        None: (["a", "b"], '</v2/x/y/tags/list?last=b&n=2>; rel="next"'),
        "b": (["c", "d"], '<https://reg.example/v2/x/y/tags/list?last=d&n=2>; rel="next"'),
        "d": (["e"], None),
    }

    def handler(r: httpx.Request) -> httpx.Response:
        tags, link = pages[r.url.params.get("last")]
        return httpx.Response(200, json={"name": "x/y", "tags": tags},
                              headers={"Link": link} if link else {})

    fake = Fake(handler)
    assert fake.client().list_tags("x/y", page_size=2) == ["a", "b", "c", "d", "e"]
    assert fake.requests[0].url.params["n"] == "2"
    assert len(fake.requests) == 3


def test_tag_pagination_loop_detected():
    fake = Fake(lambda r: httpx.Response(200, json={"tags": ["a"]}, headers={
        "Link": '</v2/x/y/tags/list?last=a>; rel="next"'}))
    with pytest.raises(ProtocolError, match="loops"):
        fake.client().list_tags("x/y")
