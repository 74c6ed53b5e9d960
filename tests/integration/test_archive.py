"""docker import / save / load with the real image store (layers unpacked by the
snapshotter), checked against skopeo (docker-archive: and oci: transports) and a real
dockerd (the private one of bosun.testing.dockerd): `docker save` → our load, our save →
`docker load` → `docker run`. Hostile archives are refused with nothing stored and nothing
written outside. Every store lives in a temporary directory removed at teardown, after
checking that nothing is left mounted under it."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest
import zstandard

from bosun.image import archive as A
from bosun.image.store import ImageStore

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")

CHANGES = [
    'CMD ["-c", "echo hi"]',
    'ENV A=1 B="two words"',
    "ENV C=${A}-x",
    "EXPOSE 80 53/udp",
    'LABEL org.example.name="bosun test"',
    "USER 1000:1000",
    "WORKDIR /srv",
    "WORKDIR app",
    "VOLUME /data",
    "STOPSIGNAL SIGUSR1",
    "ONBUILD RUN echo child",
    "HEALTHCHECK --interval=5s --retries=2 CMD true",
    'ENTRYPOINT ["/bin/sh"]',
]


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f
                if line.split()[4] == str(path) or line.split()[4].startswith(prefix)]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _run(*args, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                       check=False, **kw)
    assert p.returncode == 0, f"{args}: {p.stderr}"
    return p


@pytest.fixture(scope="module")
def rootfs_tar(busybox_rootfs) -> Path:
    d = Path(tempfile.mkdtemp(prefix="bosun-archive-rootfs-"))
    path = d / "busybox.tar"
    _run("tar", "--numeric-owner", "-C", busybox_rootfs, "-cf", path, ".")
    yield path
    shutil.rmtree(d)


@pytest.fixture
def work() -> Path:
    d = Path(tempfile.mkdtemp(prefix="bosun-archive-"))
    yield d
    left = _mounts_under(d)
    shutil.rmtree(d, ignore_errors=True)
    assert not left, f"mounts left under {d}: {left}"
    assert not d.exists()


@pytest.fixture
def new_store(work):
    stores: list[ImageStore] = []

    def make(name: str = "store") -> ImageStore:
        s = ImageStore(str(work / name))
        stores.append(s)
        return s

    yield make
    for s in stores:
        s.close()


def _imported(store: ImageStore, rootfs_tar: Path, ref: str = "bosun-test/imported:1") -> str:
    return A.import_rootfs(store, str(rootfs_tar), ref=ref, changes=CHANGES)


def _check_config(config: dict, oci_only: bool = False) -> None:
    """The config CHANGES make; `oci_only`: what an OCI image config can hold (skopeo
    converts to that, dropping OnBuild and Healthcheck)."""
    assert config["Cmd"] == ["-c", "echo hi"]
    assert config["Entrypoint"] == ["/bin/sh"]
    assert config["Env"] == ["A=1", "B=two words", "C=1-x"]
    assert config["ExposedPorts"] == {"53/udp": {}, "80/tcp": {}}
    assert config["Labels"] == {"org.example.name": "bosun test"}
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/srv/app"
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGUSR1"
    if oci_only:
        return
    assert config["OnBuild"] == ["RUN echo child"]
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000,
                                     "Retries": 2}


# -- import ------------------------------------------------------------------------------------

def test_import_with_changes(new_store, rootfs_tar):
    store = new_store()
    image_id = _imported(store, rootfs_tar)
    info = store.inspect("bosun-test/imported:1")
    assert info["Id"] == image_id
    assert info["RepoTags"] == ["bosun-test/imported:1"]
    _check_config(info["Config"])
    assert info["Comment"] == "Imported from -"
    assert info["RootFS"] == {"Type": "layers", "Layers": [_sha256_file(rootfs_tar)]}
    assert [h["Comment"] for h in store.history(image_id)] == ["Imported from -"]
    # the layer is unpacked: the snapshot holds busybox
    (chain,) = store.layer_chain(image_id)
    assert os.path.isfile(os.path.join(store.snapshots.layer_dir(chain), "bin", "busybox"))
    with pytest.raises(A.ChangeError, match="^RUN is not a valid change command$"):
        A.import_rootfs(store, str(rootfs_tar), changes=["RUN true"])


def test_import_from_url_and_compressed(new_store, rootfs_tar, work):
    store = new_store()
    data = rootfs_tar.read_bytes()
    (work / "www").mkdir()
    (work / "www/busybox.tar.gz").write_bytes(gzip.compress(data, 1))
    (work / "www/busybox.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(data))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(work / "www"), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/busybox.tar.gz"
        events = []
        image_id = A.import_rootfs(store, url, ref="bosun-test/url:1", progress=events.append)
        assert events[0] == {"status": f"Downloading from {url}"}
        assert events[-1] == {"status": image_id}
        assert store.history(image_id)[0]["Comment"] == f"Imported from {url}"
        assert store.inspect(image_id)["RootFS"]["Layers"] == [_sha256_file(rootfs_tar)]
        with pytest.raises(A.ArchiveError, match=r"failed to GET .*/nope with status 404"):
            A.import_rootfs(store, url.replace("busybox.tar.gz", "nope"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    with open(work / "www/busybox.tar.zst", "rb") as f:
        zid = A.import_rootfs(store, f, ref="bosun-test/zstd:1", message="from zstd")
    assert store.inspect(zid)["RootFS"]["Layers"] == [_sha256_file(rootfs_tar)]
    assert store.inspect(zid)["Comment"] == "from zstd"


# -- save / load with skopeo -------------------------------------------------------------------

@needs_skopeo
def test_save_roundtrips_through_skopeo(new_store, rootfs_tar, work):
    store = new_store()
    image_id = _imported(store, rootfs_tar)
    diff_ids = store.inspect(image_id)["RootFS"]["Layers"]
    ours = work / "ours.tar"
    with open(ours, "wb") as f:
        assert A.save(store, ["bosun-test/imported:1"], f) == [image_id]
    again = io.BytesIO()
    A.save(store, ["bosun-test/imported:1"], again)
    assert again.getvalue() == ours.read_bytes()  # deterministic

    # skopeo reads it: same layers, same config
    info = json.loads(_run(SKOPEO, "inspect", f"docker-archive:{ours}").stdout)
    assert info["Layers"] == diff_ids
    config = json.loads(_run(SKOPEO, "inspect", "--config", f"docker-archive:{ours}").stdout)
    assert config["rootfs"]["diff_ids"] == diff_ids
    _check_config(config["config"], oci_only=True)

    # docker-archive → oci: → docker-archive (skopeo writes the legacy format) → our load
    _run(SKOPEO, "copy", "-q", f"docker-archive:{ours}", f"oci:{work / 'oci'}:imported")
    index = json.loads((work / "oci/index.json").read_text())
    (desc,) = index["manifests"]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "imported"
    manifest = json.loads((work / "oci/blobs/sha256" / desc["digest"][7:]).read_text())
    oci_config = json.loads((work / "oci/blobs/sha256" /
                             manifest["config"]["digest"][7:]).read_text())
    assert oci_config["rootfs"]["diff_ids"] == diff_ids  # (skopeo gzips the layers)
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip"]
    theirs = work / "theirs.tar"
    _run(SKOPEO, "copy", "-q", f"oci:{work / 'oci'}:imported",
         f"docker-archive:{theirs}:bosun-test/skopeo:1")
    other = new_store("other")
    with open(theirs, "rb") as f:
        assert A.load(other, f) == ["Loaded image: bosun-test/skopeo:1"]
    loaded = other.inspect("bosun-test/skopeo:1")
    assert loaded["RootFS"]["Layers"] == diff_ids
    _check_config(loaded["Config"], oci_only=True)  # skopeo rewrote it as OCI: another ID

    # straight docker-archive → docker-archive keeps the config bytes: the same ID
    direct = work / "direct.tar"
    _run(SKOPEO, "copy", "-q", f"docker-archive:{ours}",
         f"docker-archive:{direct}:bosun-test/direct:1")
    with open(direct, "rb") as f:
        assert A.load(other, f) == ["Loaded image: bosun-test/direct:1"]
    assert other.resolve("bosun-test/direct:1") == image_id

    # skopeo's OCI layout directory, loaded as such
    assert A.load_oci_layout(other, str(work / "oci"), "imported",
                             name="bosun-test/from-oci:1") == loaded["Id"]
    assert other.content.ingests() == []


@needs_skopeo
def test_oci_layout_directory_with_skopeo(new_store, rootfs_tar, work):
    store = new_store()
    image_id = _imported(store, rootfs_tar)
    digest = A.save_oci_layout(store, "bosun-test/imported:1", str(work / "lay"))
    info = json.loads(_run(SKOPEO, "inspect", f"oci:{work / 'lay'}:1").stdout)
    assert info["Digest"] == digest
    assert info["Layers"] == store.inspect(image_id)["RootFS"]["Layers"]
    other = new_store("other")
    assert A.load_oci_layout(other, str(work / "lay"), "1") == image_id
    assert other.inspect("bosun-test/imported:1")["Id"] == image_id


def _legacy_archive(rootfs_tar: Path, work: Path) -> tuple[Path, str, str]:
    """An archive as Docker <= 24 wrote it: <v1 id>/{VERSION,json,layer.tar} per layer,
    <config>.json, manifest.json, repositories; a second image reuses the base layer
    through a symlinked layer.tar. Gzip-compressed as a whole."""
    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w") as t:
        ti = tarfile.TarInfo("etc/legacy")
        data = b"from a legacy archive\n"
        ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
        t.addfile(ti, io.BytesIO(data))
    layers = [rootfs_tar.read_bytes(), extra.getvalue()]
    diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]

    def config(ids, cmd):
        return json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": cmd},
                           "created": "2023-05-06T07:08:09.123456789Z",
                           "rootfs": {"type": "layers", "diff_ids": ids}}).encode()

    out = work / "legacy.tar.gz"
    with gzip.open(out, "wb") as gz, tarfile.open(fileobj=gz, mode="w") as t:
        def add(name, data=None, link=None):
            ti = tarfile.TarInfo(name)
            if link is not None:
                ti.type, ti.linkname = tarfile.SYMTYPE, link
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))

        paths = []
        for i, data in enumerate(layers):
            v1 = hashlib.sha256(f"legacy-{i}".encode()).hexdigest()
            add(f"{v1}/VERSION", b"1.0")
            add(f"{v1}/json", json.dumps({"id": v1}).encode())
            add(f"{v1}/layer.tar", data)
            paths.append(f"{v1}/layer.tar")
        c1, c2 = config(diff_ids, ["sh"]), config(diff_ids[:1], ["true"])
        id1 = "sha256:" + hashlib.sha256(c1).hexdigest()
        id2 = "sha256:" + hashlib.sha256(c2).hexdigest()
        add(f"{id1[7:]}.json", c1)
        add(f"{id2[7:]}.json", c2)
        dup = hashlib.sha256(b"dup").hexdigest()
        add(f"{dup}/layer.tar", link=f"../{paths[0]}")
        add("manifest.json", json.dumps([
            {"Config": f"{id1[7:]}.json", "RepoTags": ["bosun-test/legacy:1"], "Layers": paths},
            {"Config": f"{id2[7:]}.json", "RepoTags": ["bosun-test/legacy:base"],
             "Layers": [f"{dup}/layer.tar"]}]).encode())
        add("repositories", json.dumps({"bosun-test/legacy": {"1": "x"}}).encode())
    return out, id1, id2


def test_load_legacy_archive(new_store, rootfs_tar, work):
    store = new_store()
    path, id1, id2 = _legacy_archive(rootfs_tar, work)
    with open(path, "rb") as f:
        assert A.load(store, f) == ["Loaded image: bosun-test/legacy:1",
                                    "Loaded image: bosun-test/legacy:base"]
    assert store.resolve("bosun-test/legacy:1") == id1
    assert store.resolve("bosun-test/legacy:base") == id2
    assert store.inspect(id1)["Created"] == "2023-05-06T07:08:09.123456789Z"
    base, top = store.layer_chain(id1)
    assert store.layer_chain(id2) == [base]
    with open(os.path.join(store.snapshots.layer_dir(top), "etc", "legacy"), "rb") as f:
        assert f.read() == b"from a legacy archive\n"
    # saved again in the new format, it loads elsewhere as the same images
    out = io.BytesIO()
    A.save(store, ["bosun-test/legacy"], out)
    other = new_store("other")
    assert A.load(other, io.BytesIO(out.getvalue())) == [
        "Loaded image: bosun-test/legacy:1", "Loaded image: bosun-test/legacy:base"]
    assert other.resolve("bosun-test/legacy:1") == id1


# -- hostile archives --------------------------------------------------------------------------

def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, kind, value in entries:
            ti = tarfile.TarInfo(name)
            if kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, value
                t.addfile(ti)
            else:
                ti.size = len(value)
                t.addfile(ti, io.BytesIO(value))
    return buf.getvalue()


def _hostile(work: Path, rootfs_tar: Path) -> dict[str, tuple[bytes, str]]:
    layer = rootfs_tar.read_bytes()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    victim = work / "outside" / "victim"

    def legacy(config_path="c.json", layer_path="l/layer.tar", extra=(), layer_data=layer):
        return _tar([("c.json", "file", config), ("l/layer.tar", "file", layer_data), *extra,
                     ("manifest.json", "file", json.dumps(
                         [{"Config": config_path, "RepoTags": ["bosun-test/evil:1"],
                           "Layers": [layer_path]}]).encode())])

    blob = f"blobs/sha256/{diff_id[7:]}"
    return {
        "config ../": (legacy(config_path="../../etc/passwd"), "escapes the archive"),
        "absolute path": (legacy(layer_path=str(victim)), "is absolute"),
        "symlink blob out": (legacy(layer_path=blob, extra=[
            (blob, "symlink", str(victim))]), "points outside the archive"),
        "relative symlink out": (legacy(layer_path=blob, extra=[
            (blob, "symlink", "../../../../../../../" + str(victim))]), "escapes the archive"),
        "digest mismatch": (legacy(layer_data=layer[:-1024] + b"\x01" + layer[-1023:]),
                            "invalid diffID for layer 0"),
        "huge manifest.json": (_tar([("manifest.json", "file", b"[" + b" " * (9 << 20) + b"]")]),
                               "manifest.json is .* bytes, more than the .* allowed"),
    }


def test_hostile_archives_store_nothing(new_store, rootfs_tar, work):
    store = new_store()
    (work / "outside").mkdir()
    for name, (data, match) in _hostile(work, rootfs_tar).items():
        with pytest.raises(A.ArchiveError, match=match):
            A.load(store, io.BytesIO(data))
        assert store.db.list_images() == [], name
        assert list(store.content.list()) == [], name
        assert store.content.ingests() == [], name
        assert store.db.unreferenced_layers() == [], name
        assert not [n for n in os.listdir(store.snapshots.home) if n.startswith("sha256")], name
        assert os.listdir(work / "outside") == [], name


# -- a real dockerd ----------------------------------------------------------------------------

def _dockerd_missing() -> str | None:
    """Why the private dockerd can't run here, or None."""
    from bosun.testing.dockerd import BIN, DOCKER, DOCKERD, SBIN_PATH

    if DOCKERD is None or DOCKER is None:
        return "dockerd and the docker CLI are needed"
    if shutil.which("containerd", path=SBIN_PATH) is None:
        return "containerd is needed by dockerd"
    if not BIN.exists():
        return f"{BIN} is missing"
    return None


@pytest.fixture(scope="module")
def dockerd(rootfs_tar):
    why = _dockerd_missing()
    if why:
        pytest.skip(why)
    from bosun.testing.dockerd import Dockerd

    tmp = Path(tempfile.mkdtemp(prefix="bdk-", dir="/tmp"))  # unix sockets need short paths
    d = Dockerd(tmp)
    try:
        d.start()
        d.docker("import", "--change", 'CMD ["sh"]', "-", "busybox:latest",
                 input=rootfs_tar.read_bytes(), check=True)
        yield d
    finally:
        d.teardown()


def test_docker_save_loads_here(dockerd, new_store):
    store = new_store()
    p = dockerd.docker("save", "busybox:latest", raw=True, check=True)
    assert A.load(store, io.BytesIO(p.stdout)) == ["Loaded image: busybox:latest"]
    theirs, ours = dockerd.inspect("busybox:latest"), store.inspect("busybox:latest")
    assert ours["Id"] == theirs["Id"]
    assert ours["RootFS"] == theirs["RootFS"]
    assert ours["Config"] == theirs["Config"]
    assert ours["Comment"] == theirs["Comment"] == "Imported from -"


def test_our_save_runs_in_docker(dockerd, new_store, rootfs_tar):
    store = new_store()
    image_id = _imported(store, rootfs_tar, "bosun-test/saved:1")
    out = io.BytesIO()
    A.save(store, ["bosun-test/saved:1"], out)
    p = dockerd.docker("load", input=out.getvalue(), check=True)
    assert p.stdout == b"Loaded image: bosun-test/saved:1\n"
    info = dockerd.inspect("bosun-test/saved:1")
    assert info["Id"] == image_id
    _check_config(info["Config"])
    # the default runtime (runc); the image's user, workdir and entrypoint apply
    p = dockerd.docker("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "",
                       "bosun-test/saved:1", "echo", "hi")
    assert (p.returncode, p.stdout) == (0, "hi\n"), p.stderr
    p = dockerd.docker("run", "--rm", "--network", "none", "bosun-test/saved:1")
    assert (p.returncode, p.stdout) == (0, "hi\n"), p.stderr
    dockerd.docker("rmi", "bosun-test/saved:1", check=True)
