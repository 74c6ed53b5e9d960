"""Daemons the benchmarks start and always stop — the tests' own harness:
bosun.testing.registry (Debian's docker-registry), bosun.testing.dockerd (a private
dockerd) and bosun.testing.daemon (a private bosun daemon), paired as the docker CLI's two
contenders — plus the clean-up helpers the benchmarks use."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from bosun.testing.dockerd import Dockerd, mountpoints_under, unmount_under  # noqa: F401
from bosun.testing.registry import Registry  # noqa: F401  (re-exported)


def remove_tree(path: str | os.PathLike) -> None:
    """Unmount whatever is mounted below path, then delete it. Refuses (raises) while
    anything is still mounted there: rmtree would walk into the mount."""
    if not os.path.lexists(path):
        return
    left = unmount_under(path)
    if left:
        raise RuntimeError(f"{path}: still mounted, not removed: {left}")
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        raise RuntimeError(f"{path} could not be removed")


def start_bosun(d) -> None:
    """Give a BosunDaemon (bosun.testing.daemon) its busybox image and start it."""
    from bosun.testing.daemon import import_busybox

    d.data_root.mkdir(parents=True, exist_ok=True)
    import_busybox(str(d.data_root))
    d.start()


@contextmanager
def private_bosun(prefix: str):
    """A started bosun daemon of its own, with busybox; everything removed afterwards."""
    import sys
    import tempfile

    from bosun.testing.daemon import BosunDaemon

    d = BosunDaemon(tempfile.mkdtemp(prefix=prefix))
    try:
        start_bosun(d)
        yield d
    finally:
        problems = d.teardown()
        shutil.rmtree(d.workdir, ignore_errors=True)
        if problems:
            print(f"bosun teardown: {problems}", file=sys.stderr)


class Contender:
    """A daemon and the docker CLI pointed at it."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.env = name, env

    def docker(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        p = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check and p.returncode:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def timed(self, *args: str) -> float:
        t0 = time.perf_counter()
        self.docker(*args)
        return time.perf_counter() - t0

    def remove_all(self) -> None:
        ids = self.docker("ps", "-aq").split()
        for i in range(0, len(ids), 50):
            self.docker("rm", "-f", *ids[i:i + 50])


class Pair:
    """A private bosun daemon and a private dockerd (its containers on a bridge too, as
    bosun's), both with busybox, as the docker CLI's two contenders; `with` stops both."""

    def __init__(self, tmp: Path) -> None:
        from bosun.testing.daemon import BosunDaemon

        self.tmp = tmp
        self.bosun = BosunDaemon(str(tmp / "bosun"))
        self.dockerd = Dockerd(tmp / "dockerd", bridge="bsnbenchdk0 10.213.0.1/24")

    def __enter__(self) -> list[Contender]:
        from bosun.demo import CACHE, busybox_tar

        try:
            (self.tmp / "dockerd").mkdir()
            start_bosun(self.bosun)
            self.dockerd.start()
            os.makedirs(CACHE, exist_ok=True)
            with open(busybox_tar(CACHE), "rb") as f:
                self.dockerd.docker("import", "--change", 'CMD ["sh"]', "-", "busybox:latest",
                                    input=f.read(), check=True, timeout=120)
        except BaseException:
            self.__exit__()  # `with` does not call it when entering fails
            raise
        return [Contender("bosun", self.bosun.env), Contender("dockerd", self.dockerd.cli_env)]

    def __exit__(self, *exc) -> None:
        import sys

        for name, fn in (("bosun", self.bosun.teardown), ("dockerd", self.dockerd.teardown)):
            try:
                left = fn()
                if left:
                    print(f"{name} teardown: {left}", file=sys.stderr)
            except Exception as e:  # noqa: BLE001
                print(f"{name} teardown failed: {e}", file=sys.stderr)
        remove_tree(self.tmp)
