"""Harness shared by bosun's integration tests and benchmarks: a private docker-registry
(Debian's distribution 2.8) on 127.0.0.1 with a random port and its own storage.

Not used by bosun itself; it lives in the package so that tests and benchmarks share one
copy (benchmarks do not import test modules)."""

from __future__ import annotations

import ctypes
import http.client
import json
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

_prctl = ctypes.CDLL(None).prctl  # looked up before any fork: the child only calls it
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the daemon gets SIGTERM when the test or bench process dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _registry_bin() -> str:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    return binary


class Registry:
    """A running docker-registry. host is "127.0.0.1:PORT"; storage its filesystem root."""

    def __init__(self, workdir: Path, auth: dict | None = None, name: str = "registry"):
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.storage.mkdir(parents=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.username: str | None = None
        self.password: str | None = None
        self.token_server = None  # set by a test that runs a token server for it
        config = {
            "version": "0.1",
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }
        if auth:
            config["auth"] = auth
        # JSON is YAML: no YAML writer needed.
        cfg = workdir / f"{name}.yml"
        cfg.write_text(json.dumps(config))
        self.log = workdir / f"{name}.log"
        with open(self.log, "wb") as log:
            # Its own session, so a terminal's ^C reaches pytest (which stops it) and not it
            # first; a parent death signal, so even a killed pytest leaves no registry.
            self.proc = subprocess.Popen([_registry_bin(), "serve", str(cfg)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True, preexec_fn=die_with_parent)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/v2/")
                c.getresponse().read()
                c.close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry not answering on {self.host}")

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes."""
        algo, hexd = digest.split(":", 1)
        return self.storage / "docker/registry/v2/blobs" / algo / hexd[:2] / hexd / "data"

    def manifest(self, repo: str, tag: str, accept: str) -> tuple[str | None, str | None, bytes]:
        """(media type, digest, body) of a manifest; (None, None, b"") if there is none."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": accept})
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                return None, None, b""
            return r.getheader("Content-Type"), r.getheader("Docker-Content-Digest"), body
        finally:
            c.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
