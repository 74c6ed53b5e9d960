"""Shared fixtures: a busybox rootfs built once, bundles, and a runtime root that is torn
down (containers force-deleted, cgroups removed) even when a test fails."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BOSUN_TEST_CACHE", REPO / ".cache"))
RUNTIME = [sys.executable, "-m", "bosun.runtime"]
BIN = Path(sys.executable).parent / "bosun-runtime"


@pytest.fixture(scope="session")
def busybox_rootfs() -> Path:
    from bosun.demo import build_busybox_rootfs

    return Path(build_busybox_rootfs(str(CACHE / "rootfs" / "busybox")))


def base_config() -> dict:
    from bosun.runtime.spec import default_spec

    c = default_spec()
    c["process"]["terminal"] = False
    c["root"]["readonly"] = False
    return c


class Bundles:
    def __init__(self, tmp: Path, rootfs: Path):
        self.tmp, self.rootfs = tmp, rootfs

    def make(self, args=None, edit=None, name=None, readonly_rootfs=False) -> Path:
        b = self.tmp / (name or f"bundle-{uuid.uuid4().hex[:8]}")
        b.mkdir()
        if readonly_rootfs:  # share the cached rootfs, mounted read-only
            root_path = str(self.rootfs)
        else:
            shutil.copytree(self.rootfs, b / "rootfs", symlinks=True)
            root_path = "rootfs"
        c = copy.deepcopy(base_config())
        c["root"]["path"] = root_path
        if readonly_rootfs:
            c["root"]["readonly"] = True
        if args:
            c["process"]["args"] = list(args)
        if edit:
            edit(c)
        (b / "config.json").write_text(json.dumps(c, indent=1))
        return b


@pytest.fixture
def bundles(tmp_path, busybox_rootfs) -> Bundles:
    return Bundles(tmp_path, busybox_rootfs)


class Runtime:
    """Runs bosun-runtime as a user would, with a private --root."""

    def __init__(self, root: Path):
        self.root = root

    def cmd(self, *args) -> list[str]:
        return [str(BIN), "--root", str(self.root), *map(str, args)]

    def __call__(self, *args, check=True, timeout=60, **kw) -> subprocess.CompletedProcess:
        # Files, not pipes: a created container's init holds our stdio open, as runc's does.
        import tempfile

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            kw.setdefault("stdin", subprocess.DEVNULL)
            rc = subprocess.run(self.cmd(*args), timeout=timeout, stdout=out, stderr=err,
                                **kw).returncode
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(args, rc, out.read().decode(errors="replace"),
                                            err.read().decode(errors="replace"))
        if check and p.returncode != 0:
            raise AssertionError(f"bosun-runtime {' '.join(map(str, args))} exited "
                                 f"{p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state(cid)["status"] == want:
                return
            time.sleep(0.02)
        raise AssertionError(f"{cid} never reached {want}: {self.state(cid)}")

    @staticmethod
    def wait_gone(pid: int, timeout: float = 5) -> bool:
        """True once pid has exited (gone, or a zombie awaiting its reaper)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(") ", 1)[1][0] in "ZX":
                        return True
            except FileNotFoundError:
                return True
            time.sleep(0.02)
        return False

    def cleanup(self) -> None:
        if not self.root.exists():
            return
        from bosun.runtime.state import Container

        for cid in Container.dirs(str(self.root)):
            subprocess.run(self.cmd("delete", "--force", cid), capture_output=True, timeout=60)


@pytest.fixture
def rt(tmp_path):
    r = Runtime(tmp_path / "state")
    yield r
    r.cleanup()
    from bosun.runtime.state import Container

    left = Container.dirs(str(r.root))
    assert not left, f"containers left behind: {left}"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="integration tests need root and a real kernel")
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture
def cid(request) -> str:
    """A container id unique across concurrently running tests (cgroups default to /<id>)."""
    return f"t{uuid.uuid4().hex[:10]}"
