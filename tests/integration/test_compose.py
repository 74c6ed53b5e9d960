"""docker-compose (v1, Debian's package, on docker-py) against a bosun daemon: a two-service
project on its own network, a named volume and a published port; services find each other
by name, and `down -v` leaves nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request

import pytest

from bosun.testing.daemon import wait_for

COMPOSE = shutil.which("docker-compose")
pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_containers_after"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(COMPOSE is None, reason="no docker-compose (make installs it)")]

PROJECT = """\
version: "3.8"
services:
  web:
    image: busybox
    command: sh -c "echo hello-compose > /www/index.html && exec httpd -f -p 80 -h /www"
    volumes: ["pages:/www"]
    ports: ["127.0.0.1::80"]
    networks:
      back:
        aliases: [frontpage]
  client:
    image: busybox
    command: sh -c "while ! wget -qO- http://web/index.html; do sleep 0.2; done;
                    wget -qO- http://frontpage/index.html; exec sleep 300"
    depends_on: [web]
    networks: [back]
volumes:
  pages: {}
networks:
  back: {}
"""


def test_compose_up_resolves_services_and_down_cleans(daemon, tmp_path):
    (tmp_path / "docker-compose.yml").write_text(PROJECT)

    def compose(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run([COMPOSE, "-p", "cmp", *args], cwd=tmp_path, env=daemon.env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"docker-compose {args}: {r.stdout}{r.stderr}\n" \
                                  f"{daemon.log_tail()}"
        return r

    compose("up", "-d")
    logs = wait_for(lambda: (lambda t: t if t.count("hello-compose") >= 2 else "")(
        compose("logs", "--no-color", "client").stdout), timeout=30)
    assert logs.count("hello-compose") == 2  # by service name, then by alias
    port = compose("port", "web", "80").stdout.strip().rsplit(":", 1)[1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as r:
        assert r.read() == b"hello-compose\n"
    vol = json.loads(daemon.docker("volume", "inspect", "cmp_pages").stdout)[0]
    assert vol["Labels"]["com.docker.compose.project"] == "cmp"
    compose("down", "-v")
    assert daemon.docker("ps", "-aq").stdout == b""
    assert b"cmp_back" not in daemon.docker("network", "ls").stdout
    assert b"cmp_pages" not in daemon.docker("volume", "ls", "-q").stdout
