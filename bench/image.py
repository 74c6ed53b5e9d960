"""Image pull: bosun's ImageStore vs `docker pull` vs `skopeo copy`, interleaved.

The image is Debian bookworm (debootstrap --variant=minbase) in three gzip layers, about 60 MB
compressed, pushed to Debian's docker-registry started here on 127.0.0.1 with a random port.
Each contender pulls it cold N times, all taking turns (the order rotates each round),
after one warm-up pull each that is not counted:

  bosun   a fresh ImageStore in a new temporary root (`bench/bosun_pull.py`, a process of
          its own as `docker pull` is); the root is unmounted and deleted after each run
  bosund  `docker pull` against a private bosun daemon (the engine path: warm, as dockerd
          is); after each run, rmi + image prune must leave no layer and no blob
  docker  `docker pull` against a private dockerd (Debian's docker.io) with its own data-root,
          exec-root and socket; the image is removed (rmi + image prune) after each run
  skopeo  `skopeo copy docker://… dir:…` into a new directory: download only, no unpacking

Prints the median, min and max wall time of each and its ratio to docker's median. The
target (issue #4) is bosun ≤ 0.7 × docker. The rootfs and the image built from it are
cached under .cache/ (BOSUN_CACHE), so only the first run pays for debootstrap. Everything
started or mounted is stopped and removed at exit, also on ^C or SIGTERM.

Everything the run writes lives on a fresh journaled ext4 mounted for it (see fresh_ext4 for
why; `--fs host` uses the host's /tmp instead).

    make bench-image      # or: .venv/bin/python bench/image.py [-n RUNS] [--only bosun,docker]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import importlib.util
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))
from daemons import Dockerd, Registry, remove_tree

from bosun.demo import CACHE
from bosun.testing.debian import apt_mirror, build_rootfs

SUITE = "bookworm"
REPOSITORY = "bench/debian"
TAG = SUITE
TARGET = 0.7  # issue #4: bosun pulls in at most 0.7 × docker's time
RECIPE = 1  # bump when the image recipe below changes: the cached image is rebuilt
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CHUNK = 1 << 20


def log(msg: str) -> None:
    print(f"bench/image: {msg}", file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------------
# The image: three gzip layers and a config in an OCI layout, pushed as Docker schema 2
#
# skopeo 1.9 reads from an OCI layout only the manifests whose index entry has an OCI media
# type, so the layout holds an OCI manifest and `skopeo copy --format v2s2` converts it on the
# way to the registry: same config and layer blobs, a Docker schema 2 manifest (what Docker
# Hub serves for most images). The image ID (the config's digest) is the same either way.

def _walk(root: Path, rel: str = "") -> Iterator[str]:
    """Every path below root, relative, sorted, each directory before its content."""
    with os.scandir(root / rel if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        path = f"{rel}/{e.name}" if rel else e.name
        yield path
        if e.is_dir(follow_symlinks=False):
            yield from _walk(root, path)


def _is_apt_list(path: str) -> bool:
    """An index file that `apt-get update` wrote (not the lists dir, its lock or partial/)."""
    return path.startswith("var/lib/apt/lists/") and \
        path not in ("var/lib/apt/lists/lock", "var/lib/apt/lists/partial") and \
        not path.startswith("var/lib/apt/lists/partial/")


def _in_base(path: str) -> bool:
    if path.startswith(("dev/", "proc/", "sys/")):  # a runtime provides these
        return False
    if path in ("etc/hostname", "etc/resolv.conf"):  # the build host's, copied by debootstrap
        return False
    if path.startswith("var/cache/apt/archives/") and path.endswith(".deb"):
        return False
    return not _is_apt_list(path)


class _HashingWriter(io.RawIOBase):
    """Writes through to f, hashing and counting the bytes."""

    def __init__(self, f) -> None:
        self.f, self.hash, self.size = f, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.f.write(b)
        self.hash.update(b)
        self.size += len(b)
        return len(b)


class _Blobs:
    """blobs/sha256/ of an OCI layout being built."""

    def __init__(self, layout: Path) -> None:
        self.dir = layout / "blobs" / "sha256"
        self.dir.mkdir(parents=True)

    def add(self, data: bytes) -> dict:
        hexd = hashlib.sha256(data).hexdigest()
        (self.dir / hexd).write_bytes(data)
        return {"digest": f"sha256:{hexd}", "size": len(data)}

    def add_layer(self, chunks: Iterator[bytes]) -> dict:
        """Gzip a layer tarball given as chunks; its descriptor plus diff_id and tar_size."""
        tmp = self.dir / f".layer-{os.getpid()}"
        diff = hashlib.sha256()
        tar_size = 0
        with open(tmp, "wb") as f:
            w = _HashingWriter(f)
            with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=w, mtime=0) as gz:
                for chunk in chunks:
                    diff.update(chunk)
                    tar_size += len(chunk)
                    gz.write(chunk)
        hexd = w.hash.hexdigest()
        os.rename(tmp, self.dir / hexd)
        return {"digest": f"sha256:{hexd}", "size": w.size,
                "diff_id": f"sha256:{diff.hexdigest()}", "tar_size": tar_size}


def _gnu_tar(root: Path, paths: list[str]) -> Iterator[bytes]:
    """GNU tar of exactly these paths (relative to root, in this order), numeric owners."""
    with tempfile.NamedTemporaryFile(prefix="bench-tar-list-") as lst:
        lst.write(b"".join(os.fsencode(p) + b"\0" for p in paths))
        lst.flush()
        proc = subprocess.Popen(["tar", "--create", "--file=-", f"--directory={root}",
                                 "--numeric-owner", "--no-recursion", "--null",
                                 f"--files-from={lst.name}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            while chunk := proc.stdout.read(CHUNK):
                yield chunk
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace")
            proc.stderr.close()
            if proc.wait() != 0:
                raise SystemExit(f"tar failed: {err.strip()}")


def _small_layer(root: Path) -> Iterator[bytes]:
    """A last layer as a Dockerfile `RUN` would leave: one file added, one deleted (an
    AUFS-style whiteout), with the parent directories' own entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        def add_dir(rel: str) -> None:
            ti = tar.gettarinfo(str(root / rel), arcname=rel)
            ti.uname = ti.gname = ""
            tar.addfile(ti)

        def add_file(rel: str, data: bytes, mode: int, mtime: float) -> None:
            ti = tarfile.TarInfo(rel)
            ti.size, ti.mode, ti.mtime = len(data), mode, int(mtime)
            tar.addfile(ti, io.BytesIO(data))

        mtime = (root / "etc").stat().st_mtime
        add_dir("etc")
        add_file("etc/bosun-bench", f"bosun image benchmark: Debian {SUITE} minbase\n".encode(),
                 0o644, mtime)
        if (root / "var/log/bootstrap.log").exists():
            add_dir("var")
            add_dir("var/log")
            add_file("var/log/.wh.bootstrap.log", b"", 0o644, mtime)
    yield buf.getvalue()


def _go_arch() -> tuple[str, str | None]:
    deb = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return {"amd64": ("amd64", None), "arm64": ("arm64", "v8"), "armhf": ("arm", "v7"),
            "armel": ("arm", "v5"), "i386": ("386", None), "ppc64el": ("ppc64le", None),
            "s390x": ("s390x", None), "riscv64": ("riscv64", None)}.get(deb, (deb, None))


def build_image(rootfs: Path, dest: Path, mirror: str) -> dict:
    """The image in an OCI layout at dest/oci (tag TAG), built once; returns its summary
    (also cached, in dest/summary.json): config digest, layers, sizes."""
    summary_file = dest / "summary.json"
    if summary_file.exists():
        return json.loads(summary_file.read_text())
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    remove_tree(tmp)
    log(f"building the image from {rootfs} (once; cached in {dest})")
    try:
        layout = tmp / "oci"
        blobs = _Blobs(layout)
        paths = list(_walk(rootfs))
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lists_parents = ["var", "var/lib", "var/lib/apt", "var/lib/apt/lists"]
        layers = [
            (f"debootstrap --variant=minbase {SUITE} / {mirror}",
             lambda: _gnu_tar(rootfs, [p for p in paths if _in_base(p)])),
            ("apt-get update",
             lambda: _gnu_tar(rootfs, lists_parents + [p for p in paths if _is_apt_list(p)])),
            ("echo … > /etc/bosun-bench && rm /var/log/bootstrap.log",
             lambda: _small_layer(rootfs)),
        ]
        descs = []
        for _, chunks in layers:
            descs.append(blobs.add_layer(chunks()))
        arch, variant = _go_arch()
        config = {
            "architecture": arch, "os": "linux", "created": now,
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": ["bash"]},
            "rootfs": {"type": "layers", "diff_ids": [d["diff_id"] for d in descs]},
            "history": [{"created": now, "created_by": by} for by, _ in layers],
        }
        if variant:
            config["variant"] = variant
        config_desc = blobs.add(json.dumps(config, separators=(",", ":")).encode())
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **config_desc},
            "layers": [{"mediaType": OCI_LAYER, "size": d["size"], "digest": d["digest"]}
                       for d in descs],
        }
        manifest_desc = blobs.add(json.dumps(manifest, indent=3).encode())
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (layout / "index.json").write_text(json.dumps({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, **manifest_desc,
                           "annotations": {"org.opencontainers.image.ref.name": TAG}}],
        }))
        summary = {
            "recipe": RECIPE, "config": config_desc["digest"],
            "layers": [{k: d[k] for k in ("digest", "size", "tar_size")} for d in descs],
            "compressed": sum(d["size"] for d in descs),
            "unpacked": sum(d["tar_size"] for d in descs),
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1))
        remove_tree(dest)
        os.rename(tmp, dest)
    finally:
        remove_tree(tmp)
    return summary


def push(layout: Path, registry: Registry, summary: dict) -> str:
    """skopeo copy the OCI layout to the registry as Docker schema 2; check that the
    registry serves that manifest, with our config and layers."""
    ref = f"{registry.host}/{REPOSITORY}:{TAG}"
    p = subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", "--format", "v2s2",
                        "--dest-tls-verify=false", f"oci:{layout}:{TAG}", f"docker://{ref}"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
                       check=False)
    if p.returncode != 0:
        raise SystemExit(f"skopeo copy to the registry failed: {p.stderr.strip()}")
    media_type, digest, body = registry.manifest(REPOSITORY, TAG, DOCKER_MANIFEST)
    doc = json.loads(body or b"{}")
    if media_type != DOCKER_MANIFEST or doc.get("mediaType") != DOCKER_MANIFEST \
            or doc.get("config", {}).get("digest") != summary["config"] \
            or [d.get("digest") for d in doc.get("layers", [])] != \
            [d["digest"] for d in summary["layers"]]:
        raise SystemExit(f"the registry does not serve the expected schema 2 manifest: "
                         f"{media_type} {body[:500]!r}")
    summary["manifest"] = digest
    return ref


# -------------------------------------------------------------------------------------------
# Contenders

class Failed(Exception):
    pass


class Unavailable(Exception):
    """bosun's ImageStore is not there (yet)."""


def _run(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       check=False, **kw)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise Failed(f"{' '.join(cmd[:3])}… exited {p.returncode}: "
                     f"{(p.stderr or p.stdout).strip()[-3000:]}")
    return dt, p


class Contender:
    name = ""
    label = ""

    def prepare(self, i: int) -> object:
        """Untimed: what run() needs for round i."""

    def run(self, ctx: object) -> float:
        raise NotImplementedError

    def cleanup(self, ctx: object) -> None:
        """Untimed: leave nothing of this round behind."""


class Bosun(Contender):
    name = "bosun"
    label = "bosun (ImageStore)"
    UNAVAILABLE = 3  # bosun_pull.py's exit status when the store is missing

    def __init__(self, work: Path, ref: str, config_digest: str) -> None:
        self.work, self.ref, self.config = work, ref, config_digest
        self.inner: list[float] = []  # pull_s as measured inside the process, timed runs
        self.last_inner = 0.0
        self.warned = False

    def prepare(self, i: int) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"bosun-{i}-", dir=self.work))

    def run(self, root: Path) -> float:
        cmd = [sys.executable, str(HERE / "bosun_pull.py"), str(root), self.ref]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           check=False)
        dt = time.perf_counter() - t0
        if p.returncode == self.UNAVAILABLE:
            raise Unavailable(p.stderr.strip())
        if p.returncode != 0:
            raise Failed(f"bench/bosun_pull.py exited {p.returncode}:\n{p.stderr.strip()[-4000:]}")
        out = json.loads(p.stdout.strip().splitlines()[-1])
        self.last_inner = out["pull_s"]
        if out["id"].removeprefix("sha256:") != self.config.removeprefix("sha256:") \
                and not self.warned:
            log(f"warning: bosun's image id {out['id']} is not the config digest {self.config}")
            self.warned = True
        return dt

    def cleanup(self, root: Path) -> None:
        remove_tree(root)


class Docker(Contender):
    name = "docker"

    def __init__(self, dockerd: Dockerd, ref: str, config_digest: str) -> None:
        self.d, self.ref, self.config = dockerd, ref, config_digest
        self.label = f"docker pull ({dockerd.version}, {dockerd.driver})"

    def run(self, ctx: object) -> float:
        return _run([self.d.cli, "pull", self.ref], env=self.d.cli_env, timeout=600)[0]

    def cleanup(self, ctx: object) -> None:
        got = self.d.docker("image", "inspect", "--format", "{{.Id}}", self.ref,
                            check=False).stdout.strip()
        if got and got != self.config:
            log(f"warning: docker's image id {got} is not the config digest {self.config}")
        self.d.docker("rmi", self.ref, check=False)
        self.d.docker("image", "prune", "--force", check=True)
        left = self.d.docker("images", "--all", "--quiet", check=True).stdout.split()
        if left:
            raise Failed(f"images left in dockerd after rmi + prune: {left}")


class BosunDaemonPull(Contender):
    """`docker pull` through bosun's daemon: the same CLI as the docker contender, and a
    daemon already running, as dockerd is."""

    name = "bosund"
    label = "docker pull via bosun's daemon"

    def __init__(self, daemon, ref: str, config_digest: str) -> None:
        self.d, self.ref, self.config = daemon, ref, config_digest

    def run(self, ctx: object) -> float:
        return _run(["docker", "pull", self.ref], env=self.d.env, timeout=600)[0]

    def cleanup(self, ctx: object) -> None:
        got = self.d.docker("image", "inspect", "--format", "{{.Id}}", self.ref,
                            check=False).stdout.decode().strip()
        if got and got != self.config:
            log(f"warning: bosun's image id {got} is not the config digest {self.config}")
        self.d.docker("rmi", self.ref, check=False)
        self.d.docker("image", "prune", "--force")
        # Nothing of the image may stay for the next round: no layer, no blob.
        image = self.d.data_root / "image"
        home = image / "snapshots" / "overlay"
        layers = [p.name for p in home.iterdir()
                  if p.name not in ("l", "containers", "empty")] if home.is_dir() else []
        blobs = [p.name for p in (image / "content").rglob("*") if p.is_file()
                 and p.stat().st_size > 1_000_000]
        if layers or blobs:
            raise Failed(f"left in bosun after rmi + prune: layers {layers}, blobs {blobs}")


class Skopeo(Contender):
    name = "skopeo"
    label = "skopeo copy to dir: (no unpack)"

    def __init__(self, work: Path, ref: str) -> None:
        self.work, self.ref = work, ref

    def prepare(self, i: int) -> Path:
        return self.work / f"skopeo-{i}"

    def run(self, dest: Path) -> float:
        return _run(["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                     f"docker://{self.ref}", f"dir:{dest}"], timeout=600)[0]

    def cleanup(self, dest: Path) -> None:
        remove_tree(dest)


def _round(c: Contender, i: int) -> float:
    ctx = c.prepare(i)
    try:
        os.sync()  # the previous round's dirty pages are written out before the clock starts
        return c.run(ctx)
    finally:
        c.cleanup(ctx)


# -------------------------------------------------------------------------------------------

def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                               capture_output=True, text=True, check=False).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes" if dirty else "")


def fresh_ext4(mountpoint: Path, stack: contextlib.ExitStack) -> None:
    """Mount a new ext4 (mkfs defaults: with a journal, as a Docker host's) on `mountpoint`
    for everything the run writes, unmounted and deleted at exit.

    Why: unpacking is mostly inode creation, whose cost depends on the filesystem's recent
    history. This VM's root ext4 has no journal, and without one ext4 skips every inode
    freed in the last minute (several minutes while its table block is dirty) when it
    allocates, scanning past each. After the previous contender deleted its ~7,000 files,
    a file creation costs ~1 ms instead of ~0.05 ms, for whoever runs next. `--fs host`
    measures on the host's filesystem anyway."""
    image = Path(tempfile.mkstemp(prefix="bosun-bench-fs-", suffix=".img", dir="/var/tmp")[1])
    stack.callback(image.unlink, missing_ok=True)
    os.truncate(image, 8 << 30)  # sparse
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)

    def unmount() -> None:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)

    stack.callback(unmount)


def _raise_exit(signum: int, _frame: object) -> None:
    log(f"{signal.Signals(signum).name}: cleaning up")
    raise SystemExit(128 + signum)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=5, help="timed pulls each (default 5)")
    ap.add_argument("--only", default="bosun,bosund,docker,skopeo",
                    help="comma-separated contenders (default: bosun,bosund,docker,skopeo)")
    ap.add_argument("--mirror", help="Debian mirror for debootstrap (default: apt's)")
    ap.add_argument("--rebuild", action="store_true",
                    help="rebuild the cached image (not the rootfs) before the run")
    ap.add_argument("--fs", choices=("ext4", "host"), default="ext4",
                    help="where the pulls write: a fresh journaled ext4 made for the run "
                         "(default) or the host's own filesystem under /tmp")
    args = ap.parse_args()
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(only) - {"bosun", "bosund", "docker", "skopeo"}
    if unknown or not only or args.runs < 1:
        ap.error(f"bad --only or -n: {sorted(unknown) or only or args.runs}")
    if os.geteuid() != 0:
        raise SystemExit("bench/image.py needs root (debootstrap, dockerd, mounts)")
    for tool in ("skopeo", "tar"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    for sig in (signal.SIGTERM, signal.SIGHUP):  # cleanups run as for ^C
        signal.signal(sig, _raise_exit)

    try:
        mirror = args.mirror or apt_mirror(SUITE)
        rootfs = build_rootfs(Path(CACHE) / "rootfs" / f"debian-{SUITE}-minbase", mirror, SUITE)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    image_dir = Path(CACHE) / "images" / f"debian-{SUITE}-minbase-r{RECIPE}"
    if args.rebuild:
        remove_tree(image_dir)
    summary = build_image(rootfs, image_dir, mirror)

    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="bbi-", dir="/tmp"))  # short: dockerd's socket
        stack.callback(remove_tree, work)
        if args.fs == "ext4":
            fresh_ext4(work, stack)
        (work / "registry").mkdir()
        registry = Registry(work / "registry")
        stack.callback(registry.stop)
        ref = push(image_dir / "oci", registry, summary)

        contenders: list[Contender] = []
        bosun_note = ""
        for name in only:
            if name == "bosun":
                if importlib.util.find_spec("bosun.image.store") is None:
                    bosun_note = "n/a (ImageStore not available)"
                else:
                    contenders.append(Bosun(work, ref, summary["config"]))
            elif name == "bosund":
                from bosun.testing.daemon import BosunDaemon

                d = BosunDaemon(str(work / "bd"))
                stack.callback(lambda: d.teardown())
                d.start()
                contenders.append(BosunDaemonPull(d, ref, summary["config"]))
            elif name == "docker":
                (work / "d").mkdir()
                # Debian's CLI beside Debian's daemon, when it is there
                cli = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else None
                dockerd = Dockerd(work / "d", insecure_registries=[registry.host], cli=cli)
                stack.callback(dockerd.stop)
                dockerd.start()
                contenders.append(Docker(dockerd, ref, summary["config"]))
            else:
                contenders.append(Skopeo(work, ref))

        failures: dict[str, str] = {}
        for c in list(contenders):  # warm-up, not counted
            try:
                _round(c, -1)
            except Unavailable as e:
                bosun_note = "n/a (ImageStore not available)"
                log(str(e))
                contenders.remove(c)
            except Failed as e:
                failures[c.name] = str(e)
                log(f"{c.name} failed in the warm-up: {e}")
                contenders.remove(c)
        times: dict[str, list[float]] = {c.name: [] for c in contenders}
        for i in range(args.runs):
            k = i % len(contenders) if contenders else 0
            for c in contenders[k:] + contenders[:k]:
                if c.name in failures:
                    continue
                try:
                    times[c.name].append(_round(c, i))
                    if isinstance(c, Bosun):
                        c.inner.append(c.last_inner)
                except (Failed, Unavailable) as e:
                    failures[c.name] = str(e)
                    log(f"{c.name} failed in run {i + 1}: {e}")
            log(f"run {i + 1}/{args.runs}: " + ", ".join(
                f"{n} {t[-1]:.2f}s" for n, t in times.items() if len(t) == i + 1))

        mb = 1e6
        print(f"pull of {REPOSITORY}:{TAG} from a local docker-registry: Debian {SUITE} minbase, "
              f"{len(summary['layers'])} gzip layers, {summary['compressed'] / mb:.1f} MB "
              f"compressed, {summary['unpacked'] / mb:.0f} MB unpacked")
        print(f"{args.runs} interleaved runs each after one warm-up, {os.cpu_count()} cores, "
              f"{platform.release()}, commit {_commit()}, on "
              + ("a fresh journaled ext4" if args.fs == "ext4" else "the host's /tmp"))
        med = {n: statistics.median(t) for n, t in times.items() if t}
        docker_med = med.get("docker")
        print(f"{'contender':<40}{'median s':>9}{'min s':>8}{'max s':>8}{'/ docker':>10}")
        by_name = {c.name: c for c in contenders}
        for name in only:
            c = by_name.get(name)
            if name in failures:
                print(f"{name:<40}failed: {failures[name].splitlines()[0][:200]}")
            elif name == "bosun" and bosun_note:
                print(f"{'bosun':<40}{bosun_note}")
            elif c is not None and times.get(name):
                t = times[name]
                ratio = f"{med[name] / docker_med:>10.2f}" if docker_med else f"{'-':>10}"
                print(f"{c.label:<40}{med[name]:>9.2f}{min(t):>8.2f}{max(t):>8.2f}{ratio}")
                if isinstance(c, Bosun) and c.inner:
                    m = statistics.median(c.inner)
                    r = f"{m / docker_med:>10.2f}" if docker_med else f"{'-':>10}"
                    print(f"{'  of which ImageStore() + pull()':<40}{m:>9.2f}"
                          f"{min(c.inner):>8.2f}{max(c.inner):>8.2f}{r}")
        for name in ("bosun", "bosund"):
            if name not in only:
                continue
            if name in med and docker_med:
                ratio = med[name] / docker_med
                verdict = "met" if ratio <= TARGET else "NOT met"
                print(f"target (issue #4): {name} ≤ {TARGET} × docker — {verdict} "
                      f"({ratio:.2f} × docker)")
            else:
                print(f"target (issue #4): {name} ≤ {TARGET} × docker — not measured")
        (HERE / "image.json").write_text(json.dumps({
            "median_s": med, "min_s": {n: min(t) for n, t in times.items() if t},
            "max_s": {n: max(t) for n, t in times.items() if t}, "runs": args.runs,
            "fs": args.fs, "docker": by_name["docker"].label if "docker" in by_name else None,
            "target": TARGET}, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
