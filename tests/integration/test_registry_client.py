"""The registry client against a real registry (Debian's docker-registry, distribution 2.8):
push and pull, chunked and monolithic uploads, mounts, tags, deletes, errors, the three
kinds of authentication, resumed downloads through a connection-dropping proxy, corrupt
blobs, and skopeo reading what we push and writing what we pull."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bosun.registry.auth import Credentials, TokenCache, load_credentials, store_credentials
from bosun.registry.client import (
    DOCKER_MANIFEST, OCI_MANIFEST, Progress, RegistryClient,
)
from bosun.registry.errors import (
    BlobUnknownError, DigestMismatchError, ManifestUnknownError, NameUnknownError,
    NotFoundError, UnauthorizedError,
)

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------
# Images made here

@dataclass
class Image:
    layer: bytes
    config: bytes
    manifest: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    def blobs(self) -> list[bytes]:
        return [self.config, self.layer]


def make_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip'd tar layer (deterministic) and its diff ID."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            tar.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), sha256(raw)


def make_image(text: str, docker: bool = False) -> Image:
    layer, diff_id = make_layer({"hello.txt": text.encode(), "etc/motd": b"bosun\n"})
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/cat", "/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True).encode()
    if docker:
        mt, cfg_mt = DOCKER_MANIFEST, "application/vnd.docker.container.image.v1+json"
        layer_mt = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    else:
        mt, cfg_mt = OCI_MANIFEST, "application/vnd.oci.image.config.v1+json"
        layer_mt = "application/vnd.oci.image.layer.v1.tar+gzip"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": cfg_mt, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer_mt, "digest": sha256(layer), "size": len(layer)}],
    }, indent=2).encode()
    return Image(layer, config, manifest, mt)


def push_image(client: RegistryClient, repo_name: str, tag: str, img: Image,
               chunk_size: int | None = None) -> str:
    for blob in img.blobs():
        client.push_blob(repo_name, sha256(blob), len(blob), io.BytesIO(blob),
                         chunk_size=chunk_size)
    return client.put_manifest(repo_name, tag, img.manifest, img.media_type)


def pull_blob(client: RegistryClient, repo_name: str, digest: str, **kw) -> bytes:
    sink = io.BytesIO()
    n = client.fetch_blob(repo_name, digest, sink, **kw)
    assert n == len(sink.getvalue())
    return sink.getvalue()


class Recorder(httpx.BaseTransport):
    """An httpx transport that records what the client sends."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path, dict(request.headers)))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def count(self, method: str, path_part: str = "") -> int:
        return sum(1 for m, p, _ in self.requests if m == method and path_part in p)


def client_for(reg, **kw) -> RegistryClient:
    kw.setdefault("backoff", 0.01)
    return RegistryClient(reg.host, **kw)


def skopeo(*args: str) -> subprocess.CompletedProcess:
    p = subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, text=True,
                       timeout=60, check=False)
    if p.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {p.stderr}")
    return p


# ---------------------------------------------------------------------------------------
# Open registry

def test_push_and_pull_roundtrip(open_registry, repo_name):
    img = make_image("roundtrip")
    with client_for(open_registry) as c:
        assert c.ping() == f"http://{open_registry.host}"
        assert push_image(c, repo_name, "v1", img) == img.digest

        data, mt, digest = c.get_manifest(repo_name, "v1")
        assert (data, mt, digest) == (img.manifest, OCI_MANIFEST, img.digest)
        assert c.get_manifest(repo_name, img.digest) == (img.manifest, OCI_MANIFEST, img.digest)

        info = c.head_manifest(repo_name, "v1")
        assert (info.digest, info.media_type, info.size) == \
            (img.digest, OCI_MANIFEST, len(img.manifest))

        events: list[Progress] = []
        for blob in img.blobs():
            assert c.blob_exists(repo_name, sha256(blob))
            assert pull_blob(c, repo_name, sha256(blob), progress=events.append) == blob
        assert events[-1] == Progress(sha256(img.layer), len(img.layer), len(img.layer))
        assert c.list_tags(repo_name) == ["v1"]


def test_docker_schema2_manifest(open_registry, repo_name):
    img = make_image("docker", docker=True)
    with client_for(open_registry) as c:
        push_image(c, repo_name, "latest", img)
        assert c.get_manifest(repo_name, "latest") == \
            (img.manifest, DOCKER_MANIFEST, img.digest)


def test_chunked_and_monolithic_uploads(open_registry, repo_name):
    rec = Recorder()
    big = os.urandom(300_000)
    small = os.urandom(70_000)
    with client_for(open_registry, transport=rec) as c:
        events: list[Progress] = []
        assert c.push_blob(repo_name, sha256(big), len(big), io.BytesIO(big),
                           chunk_size=64 * 1024, progress=events.append) == "uploaded"
        assert rec.count("PATCH", "/blobs/uploads/") == 5  # ceil(300000 / 65536)
        assert [e.done for e in events] == [65536, 131072, 196608, 262144, 300_000]
        assert rec.count("PUT", "/blobs/uploads/") == 1

        assert c.push_blob(repo_name, sha256(small), len(small), small) == "uploaded"
        assert rec.count("PATCH", "/blobs/uploads/") == 5  # monolithic: one PUT, no PATCH
        assert rec.count("PUT", "/blobs/uploads/") == 2

        assert pull_blob(c, repo_name, sha256(big)) == big
        assert pull_blob(c, repo_name, sha256(small)) == small
        # Already there: a HEAD, nothing sent.
        puts = rec.count("PUT")
        assert c.push_blob(repo_name, sha256(small), len(small), io.BytesIO(small)) == "exists"
        assert rec.count("PUT") == puts


def test_upload_refuses_content_not_matching_digest(open_registry, repo_name):
    data = b"the real content"
    with client_for(open_registry) as c:
        with pytest.raises(DigestMismatchError, match="source has digest"):
            c.push_blob(repo_name, sha256(b"something else"), len(data), io.BytesIO(data))
        with pytest.raises(DigestMismatchError):
            c.push_blob(repo_name, sha256(b"something else"), len(data), io.BytesIO(data),
                        chunk_size=4)
        assert not c.blob_exists(repo_name, sha256(data))


def test_cross_repository_mount(open_registry, repo_name):
    rec = Recorder()
    blob = os.urandom(50_000)
    with client_for(open_registry, transport=rec) as c:
        c.push_blob(f"{repo_name}-a", sha256(blob), len(blob), blob)
        puts = rec.count("PUT")
        assert c.push_blob(f"{repo_name}-b", sha256(blob), len(blob), io.BytesIO(blob),
                           mount_from=f"{repo_name}-a") == "mounted"
        assert rec.count("PUT") == puts
        assert c.blob_exists(f"{repo_name}-b", sha256(blob))
        # Mounting from a repository without the blob falls back to an upload.
        other = os.urandom(1000)
        assert c.push_blob(f"{repo_name}-b", sha256(other), len(other), io.BytesIO(other),
                           mount_from=f"{repo_name}-a") == "uploaded"


def test_tags_and_delete(open_registry, repo_name):
    img = make_image("tags")
    with client_for(open_registry) as c:
        push_image(c, repo_name, "t0", img)
        for i in range(1, 5):
            c.put_manifest(repo_name, f"t{i}", img.manifest, img.media_type)
        assert sorted(c.list_tags(repo_name)) == [f"t{i}" for i in range(5)]
        assert sorted(c.list_tags(repo_name, page_size=2)) == [f"t{i}" for i in range(5)]

        c.delete_manifest(repo_name, img.digest)
        with pytest.raises(ManifestUnknownError, match="MANIFEST_UNKNOWN"):
            c.get_manifest(repo_name, img.digest)


def test_not_found_errors_are_clear(open_registry, repo_name):
    img = make_image("notfound")
    missing = sha256(b"nothing here")
    with client_for(open_registry) as c:
        with pytest.raises(NotFoundError) as e:
            c.get_manifest(f"{repo_name}-nope", "latest")
        assert "NAME_UNKNOWN" in str(e.value) or "MANIFEST_UNKNOWN" in str(e.value)
        assert f"{open_registry.host}/{repo_name}-nope:latest" in str(e.value)
        with pytest.raises(NameUnknownError, match="NAME_UNKNOWN"):
            c.list_tags(f"{repo_name}-nope")

        push_image(c, repo_name, "v1", img)
        with pytest.raises(ManifestUnknownError, match="MANIFEST_UNKNOWN"):
            c.get_manifest(repo_name, "v2")
        with pytest.raises(ManifestUnknownError):
            c.head_manifest(repo_name, "v2")
        with pytest.raises(BlobUnknownError, match="BLOB_UNKNOWN"):
            pull_blob(c, repo_name, missing)
        assert not c.blob_exists(repo_name, missing)


def test_fetch_resumes_after_dropped_connection(open_registry, fault_proxy, repo_name):
    data = os.urandom(2_000_000)
    digest = sha256(data)
    with client_for(open_registry) as direct:
        direct.push_blob(repo_name, digest, len(data), data)

    fault_proxy.cut_once(f"/blobs/{digest}", after=300_000)
    events: list[Progress] = []
    with RegistryClient(fault_proxy.host, backoff=0.01) as c:
        assert pull_blob(c, repo_name, digest, progress=events.append, size=len(data)) == data
    assert fault_proxy.cuts == 1
    ranged = [h for h in fault_proxy.heads
              if f"/blobs/{digest}" in h and "range: bytes=" in h.lower()]
    assert len(ranged) == 1
    start = int(ranged[0].lower().split("range: bytes=")[1].split("-")[0])
    assert 0 < start < len(data)
    assert events[-1].done == len(data)


def test_fetch_detects_corrupt_blob(open_registry, repo_name):
    data = os.urandom(100_000)
    digest = sha256(data)
    with client_for(open_registry) as c:
        c.push_blob(repo_name, digest, len(data), data)
        path = open_registry.blob_path(digest)
        stored = bytearray(path.read_bytes())
        stored[5000] ^= 0xFF  # same size, one byte different
        path.write_bytes(bytes(stored))
        with pytest.raises(DigestMismatchError, match=f"{digest}: content has digest"):
            pull_blob(c, repo_name, digest)


# ---------------------------------------------------------------------------------------
# Basic auth

def test_basic_auth(basic_registry, repo_name):
    good = Credentials(basic_registry.username, basic_registry.password)
    img = make_image("basic")
    with client_for(basic_registry, credentials=good) as c:
        c.ping()
        push_image(c, repo_name, "v1", img)
        assert c.get_manifest(repo_name, "v1")[2] == img.digest
        assert pull_blob(c, repo_name, sha256(img.layer)) == img.layer

    bad = Credentials(basic_registry.username, "wrong")
    with client_for(basic_registry, credentials=bad) as c:
        with pytest.raises(UnauthorizedError, match="UNAUTHORIZED") as e:
            c.get_manifest(repo_name, "v1")
        assert e.value.code == "UNAUTHORIZED" and e.value.status == 401
        with pytest.raises(UnauthorizedError):
            c.ping()
    with client_for(basic_registry) as anonymous, pytest.raises(UnauthorizedError):
        anonymous.get_manifest(repo_name, "v1")


# ---------------------------------------------------------------------------------------
# Token auth

def scopes_requested(ts) -> list[list[str]]:
    return [r.scopes for r in ts.requests]


def test_token_auth_push_pull_and_caching(token_registry, repo_name):
    ts = token_registry.token_server
    creds = Credentials(token_registry.username, token_registry.password)
    img = make_image("token")
    with client_for(token_registry, credentials=creds) as c:
        push_image(c, repo_name, "v1", img)
        # One token for the whole push (HEADs, uploads, manifest).
        assert scopes_requested(ts) == [[f"repository:{repo_name}:pull,push"]]
        assert ts.requests[0].user == "bob" and ts.requests[0].service == "bosun-test-registry"

        for _ in range(3):
            assert c.get_manifest(repo_name, "v1")[2] == img.digest
            assert pull_blob(c, repo_name, sha256(img.layer)) == img.layer
        # Pulls need another scope: one more token, then the cache serves.
        assert scopes_requested(ts)[1:] == [[f"repository:{repo_name}:pull"]]


def test_token_expiry_and_refresh(token_registry, repo_name):
    ts = token_registry.token_server
    creds = Credentials(token_registry.username, token_registry.password)
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    ts.expires_in = 120
    ts.token_field = "access_token"  # the OAuth2 spelling is accepted too
    with client_for(token_registry, credentials=creds, token_cache=cache) as c:
        push_image(c, repo_name, "v1", make_image("expiry"))
        c.get_manifest(repo_name, "v1")
        assert len(ts.requests) == 2
        now[0] += 100
        c.get_manifest(repo_name, "v1")
        assert len(ts.requests) == 2  # still valid
        now[0] += 20
        c.get_manifest(repo_name, "v1")
        assert len(ts.requests) == 3  # expired (less a margin): fetched again

        # A token the registry refuses is dropped and replaced, once.
        cache.put(c.origin.name, (f"repository:{repo_name}:pull",), "not-a-jwt", 300)
        c.get_manifest(repo_name, "v1")
        assert len(ts.requests) == 4

        ts.expires_in = None  # no expires_in: 60 s
        now[0] += 1000
        c.get_manifest(repo_name, "v1")
        now[0] += 50
        c.get_manifest(repo_name, "v1")
        assert len(ts.requests) == 5
        now[0] += 11
        c.get_manifest(repo_name, "v1")
        assert len(ts.requests) == 6


def test_token_auth_failures(token_registry, repo_name):
    ts = token_registry.token_server
    bad = Credentials(token_registry.username, "wrong")
    with client_for(token_registry, credentials=bad) as c:
        with pytest.raises(UnauthorizedError, match="invalid username or password") as e:
            c.get_manifest(repo_name, "v1")
        assert "UNAUTHORIZED" in str(e.value) and "token server" in str(e.value)
        with pytest.raises(UnauthorizedError):
            c.ping()

    # Anonymous: pull of public/… only.
    public = f"public/{repo_name.split('/', 1)[1]}"
    img = make_image("public")
    good = Credentials(token_registry.username, token_registry.password)
    with client_for(token_registry, credentials=good) as c:
        push_image(c, public, "v1", img)
    ts.requests.clear()
    with client_for(token_registry) as anon:
        assert anon.get_manifest(public, "v1")[2] == img.digest
        assert ts.requests[-1].user is None
        with pytest.raises(UnauthorizedError, match="UNAUTHORIZED"):
            anon.push_blob(public, sha256(b"x"), 1, b"x")
        with pytest.raises(UnauthorizedError):
            anon.get_manifest(repo_name, "v1")


def test_token_mount_and_identity_token(token_registry, repo_name):
    ts = token_registry.token_server
    blob = os.urandom(10_000)
    creds = Credentials(identity_token="identity-token-of-bob")
    with client_for(token_registry, credentials=creds) as c:
        c.push_blob(f"{repo_name}-a", sha256(blob), len(blob), blob)
        assert ts.requests[0].method == "POST" and ts.requests[0].user == "bob"
        assert c.push_blob(f"{repo_name}-b", sha256(blob), len(blob), blob,
                           mount_from=f"{repo_name}-a") == "mounted"
        assert ts.requests[-1].scopes == [f"repository:{repo_name}-b:pull,push",
                                          f"repository:{repo_name}-a:pull"]


# ---------------------------------------------------------------------------------------
# skopeo cross-checks

def write_oci_layout(d: Path, img: Image, tag: str) -> None:
    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (*img.blobs(), img.manifest):
        (blobs / sha256(blob).split(":")[1]).write_bytes(blob)
    (d / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": img.media_type, "digest": img.digest, "size": len(img.manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))


@needs_skopeo
def test_skopeo_pushes_client_pulls(open_registry, repo_name, tmp_path):
    img = make_image("from skopeo")
    write_oci_layout(tmp_path / "layout", img, "v1")
    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false",
           f"oci:{tmp_path / 'layout'}:v1", f"docker://{open_registry.host}/{repo_name}:v1")
    with client_for(open_registry) as c:
        data, mt, digest = c.get_manifest(repo_name, "v1")
        assert (digest, mt) == (img.digest, OCI_MANIFEST)
        for desc in (json.loads(data)["config"], *json.loads(data)["layers"]):
            blob = pull_blob(c, repo_name, desc["digest"])
            assert sha256(blob) == desc["digest"] and len(blob) == desc["size"]
        assert pull_blob(c, repo_name, sha256(img.layer)) == img.layer


@needs_skopeo
@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker"])
def test_client_pushes_skopeo_reads(open_registry, repo_name, tmp_path, docker):
    img = make_image("for skopeo", docker=docker)
    with client_for(open_registry) as c:
        push_image(c, repo_name, "v1", img, chunk_size=1024)
    ref = f"docker://{open_registry.host}/{repo_name}:v1"
    info = json.loads(skopeo("inspect", "--tls-verify=false", ref).stdout)
    assert info["Digest"] == img.digest
    assert info["Os"] == "linux" and info["Architecture"] == "amd64"
    assert skopeo("inspect", "--raw", "--tls-verify=false", ref).stdout.encode() == img.manifest

    out = tmp_path / "dir"
    skopeo("copy", "--src-tls-verify=false", ref, f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == img.manifest
    for blob in img.blobs():
        assert (out / sha256(blob).split(":")[1]).read_bytes() == blob


@needs_skopeo
def test_credentials_shared_with_skopeo(basic_registry, repo_name, tmp_path):
    """config.json written by us is read by skopeo, and the other way round."""
    ours, theirs = tmp_path / "ours" / "config.json", tmp_path / "theirs.json"
    store_credentials(basic_registry.host, basic_registry.username, basic_registry.password,
                      path=ours)
    creds = load_credentials(basic_registry.host, path=ours)
    img = make_image("shared creds")
    with client_for(basic_registry, credentials=creds) as c:
        push_image(c, repo_name, "v1", img)
    info = json.loads(skopeo("inspect", "--tls-verify=false", "--authfile", str(ours),
                             f"docker://{basic_registry.host}/{repo_name}:v1").stdout)
    assert info["Digest"] == img.digest

    skopeo("login", "--tls-verify=false", "--authfile", str(theirs), "-u",
           basic_registry.username, "-p", basic_registry.password, basic_registry.host)
    assert load_credentials(basic_registry.host, path=theirs) == \
        Credentials(basic_registry.username, basic_registry.password)
