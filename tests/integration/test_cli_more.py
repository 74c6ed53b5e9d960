"""The second set of `bosun` client commands (files, images, disk, monitoring, registry),
checked by output and effect and against the real docker CLI on the same daemon."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import tarfile

import pytest

from bosun.testing.cli import BOSUN, bosun, err, out
from bosun.testing.dockerd import DOCKER

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_containers_after"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(DOCKER is None, reason="no docker CLI")]


def test_cp_both_ways_and_errors_match_docker(daemon, tmp_path):
    bosun(daemon, "run", "-d", "--name", "files", "busybox", "sleep", "300")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("alpha\n")
    (tmp_path / "link").symlink_to(tmp_path / "src" / "a.txt")
    bosun(daemon, "cp", str(tmp_path / "src"), "files:/tmp/")           # dir into a dir
    bosun(daemon, "cp", str(tmp_path / "src") + "/.", "files:/tmp/new")  # contents, new name
    bosun(daemon, "cp", "-L", str(tmp_path / "link"), "files:/tmp/followed")
    r = bosun(daemon, "exec", "files", "sh", "-c",
              "cat /tmp/src/a.txt /tmp/new/a.txt /tmp/followed; test -L /tmp/followed || echo f")
    assert out(r) == "alpha\nalpha\nalpha\nf\n"
    bosun(daemon, "cp", "files:/etc/hostname", str(tmp_path / "h"))
    assert (tmp_path / "h").read_text() == out(bosun(daemon, "exec", "files", "cat",
                                                    "/etc/hostname"))
    bosun(daemon, "cp", "files:/tmp/src", str(tmp_path / "back"))
    assert (tmp_path / "back" / "a.txt").read_text() == "alpha\n"
    tar = bosun(daemon, "cp", "files:/tmp/src", "-").stdout  # a tar stream on stdout
    assert sorted(tarfile.open(fileobj=io.BytesIO(tar)).getnames()) == \
        ["src", "src/a.txt"]
    bosun(daemon, "cp", "-", "files:/root", input=tar)  # and from stdin
    assert out(bosun(daemon, "exec", "files", "cat", "/root/src/a.txt")) == "alpha\n"
    for args in (["files:/nonexist", str(tmp_path / "x")], ["a", "b"], ["files:/a", "files:/b"],
                 ["files:/etc/hosts", str(tmp_path / "nodir") + "/"],
                 ["files:/etc", str(tmp_path / "h")], [str(tmp_path / "src"), "files:/etc/hosts"],
                 ["-", "files:/etc/hosts"]):
        ours, theirs = bosun(daemon, "cp", *args, check=False, input=b""), \
            daemon.docker("cp", *args, check=False, input=b"")
        # docker's also logs its tar writer's complaints (as logrus lines) first
        assert (ours.returncode, err(ours)) == \
            (theirs.returncode, err(theirs).splitlines(True)[-1]), args


def test_diff_export_commit_history(daemon, tmp_path):
    bosun(daemon, "run", "--name", "changed", "busybox", "sh", "-c", "echo x > /new; rm /bin/ls")
    assert out(bosun(daemon, "diff", "changed")) == out(daemon.docker("diff", "changed"))
    assert "A /new\n" in out(bosun(daemon, "diff", "changed"))
    bosun(daemon, "export", "-o", str(tmp_path / "e.tar"), "changed")
    names = tarfile.open(tmp_path / "e.tar").getnames()
    assert "new" in names and "bin/ls" not in names
    r = bosun(daemon, "commit", "-a", "me", "-m", "msg", "-c", "ENV A=1", "-c", "CMD [\"ls\"]",
              "changed", "committed:v1")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out(r))
    fmt = "{{.Author}}|{{.Comment}}|{{.Config.Env}}|{{.Config.Cmd}}"
    assert out(bosun(daemon, "image", "inspect", "-f", fmt, "committed:v1")) == \
        "me|msg|[A=1]|[ls]\n"
    for flags in ([], ["--no-trunc"], ["-q"], ["--format", "{{.ID}} {{.Comment}}"]):
        assert out(bosun(daemon, "history", *flags, "committed:v1")) == \
            out(daemon.docker("history", *flags, "committed:v1")), flags
    assert out(bosun(daemon, "rmi", "committed:v1")).startswith("Untagged: committed:v1\n")


def test_save_load_import(daemon, tmp_path):
    bosun(daemon, "tag", "busybox", "saved:v1")
    bosun(daemon, "save", "-o", str(tmp_path / "s.tar"), "saved:v1")
    assert "manifest.json" in tarfile.open(tmp_path / "s.tar").getnames()
    piped = bosun(daemon, "save", "saved:v1").stdout
    assert tarfile.open(fileobj=io.BytesIO(piped)).getnames()
    bosun(daemon, "rmi", "saved:v1")
    assert out(bosun(daemon, "load", "-i", str(tmp_path / "s.tar"))) == \
        "Loaded image: saved:v1\n"
    assert out(bosun(daemon, "load", "-q", input=piped)) == "Loaded image: saved:v1\n"
    r = bosun(daemon, "load", "-i", str(tmp_path / "missing.tar"), check=False)
    assert r.returncode == 1
    bosun(daemon, "run", "--name", "exp", "busybox", "true")
    tar = bosun(daemon, "export", "exp").stdout
    r = bosun(daemon, "import", "-c", 'CMD ["echo", "imported"]', "-m", "from stdin", "-",
              "imported:v1", input=tar)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out(r))
    assert out(bosun(daemon, "run", "--rm", "imported:v1")) == "imported\n"
    assert out(bosun(daemon, "history", "--format", "{{.Comment}}", "imported:v1")) == \
        "from stdin\n"
    (tmp_path / "e.tar").write_bytes(tar)
    assert out(bosun(daemon, "import", str(tmp_path / "e.tar"))).startswith("sha256:")
    bosun(daemon, "rmi", "saved:v1", "imported:v1")


def test_prune_and_df_match_docker(daemon):
    assert out(bosun(daemon, "system", "df")) == out(daemon.docker("system", "df"))
    bosun(daemon, "run", "--name", "stopped", "busybox", "true")
    r = bosun(daemon, "container", "prune", input=b"n\n")
    assert out(r) == "WARNING! This will remove all stopped containers.\n" \
                     "Are you sure you want to continue? [y/N] "
    assert out(bosun(daemon, "ps", "-aq")) != ""
    cid = out(bosun(daemon, "inspect", "-f", "{{.Id}}", "stopped")).strip()
    assert out(bosun(daemon, "container", "prune", "-f")) == \
        f"Deleted Containers:\n{cid}\n\nTotal reclaimed space: 0B\n"
    pruned = out(bosun(daemon, "image", "prune", "-f"))  # what earlier tests left dangling
    assert re.fullmatch(r"(Deleted Images:\n(deleted: sha256:[0-9a-f]{64}\n)+\n)?"
                        r"Total reclaimed space: [\d.]+k?M?B\n", pruned), pruned
    assert out(bosun(daemon, "image", "prune", "-f")) == \
        out(daemon.docker("image", "prune", "-f")) == "Total reclaimed space: 0B\n"
    assert out(bosun(daemon, "system", "prune", "-f", "--volumes")).endswith(
        "Total reclaimed space: 0B\n")
    r = bosun(daemon, "system", "prune", "-a", input=b"\n")
    assert "  - all images without at least one container associated to them\n" in out(r)
    assert "Total reclaimed" not in out(r)
    assert out(bosun(daemon, "system", "info", "-f", "{{.Images}}")) == \
        out(daemon.docker("info", "-f", "{{.Images}}"))


def test_update_port_stats_events(daemon):
    bosun(daemon, "run", "-d", "--name", "tuned", "busybox", "sleep", "300")
    daemon.docker("run", "-d", "--name", "other2", "busybox", "sleep", "300")
    flags = ["--cpus", "0.5", "-m", "64m", "--memory-swap", "128m", "--cpu-shares", "512",
             "--pids-limit", "40", "--restart", "on-failure:2", "--cpuset-cpus", "0"]
    assert out(bosun(daemon, "update", *flags, "tuned")) == "tuned\n"
    daemon.docker("update", *flags, "other2")
    fmt = "{{json .HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} " \
          "{{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy}} " \
          "{{.HostConfig.CpusetCpus}}"
    assert out(bosun(daemon, "inspect", "-f", fmt, "tuned")) == \
        out(daemon.docker("inspect", "-f", fmt, "other2"))
    for args in (["update", "tuned"], ["port", "tuned"], ["port", "tuned", "80"],
                 ["stats", "--no-stream", "nosuch"]):
        ours, theirs = bosun(daemon, *args, check=False), daemon.docker(*args, check=False)
        assert (ours.returncode, out(ours), err(ours)) == \
            (theirs.returncode, out(theirs), err(theirs)), args
    table = out(bosun(daemon, "stats", "--no-stream")).splitlines()
    # The same columns; their widths follow the figures, which move between two samples.
    header = out(daemon.docker("stats", "--no-stream")).splitlines()[0]
    assert re.split(r"\s{2,}", table[0]) == re.split(r"\s{2,}", header)
    assert sorted(line.split()[1] for line in table[1:]) == ["other2", "tuned"]
    row = json.loads(out(bosun(daemon, "stats", "--no-stream", "--format", "json", "tuned")))
    assert row["Name"] == "tuned" and row["PIDs"] == "1" and row["MemUsage"].endswith("64MiB")
    # streaming: redrawn tables until interrupted
    p = subprocess.Popen([*BOSUN, "-H", daemon.host, "stats", "--format", "{{.Name}}",
                          "tuned"], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"tuned\n" and p.stdout.readline() == b"tuned\n"
    finally:
        p.kill()
        p.wait()
    ev = ["--since", "5m", "--until", "0s", "-f", "container=tuned"]
    assert out(bosun(daemon, "events", *ev)) == out(daemon.docker("events", *ev))
    assert "container update" in out(bosun(daemon, "events", *ev))
    assert out(bosun(daemon, "events", *ev, "-f", "event=start", "--format",
                     "{{.Action}} {{.Actor.Attributes.name}}")) == "start tuned\n"


def test_login_push_logout(daemon, basic_registry, repo_name, tmp_path):
    """Against an htpasswd registry: credentials land in docker's config file, the daemon
    gets them as X-Registry-Auth for push and pull, and docker's CLI reads them too."""
    cfg = tmp_path / "cfg"
    env = dict(os.environ, DOCKER_CONFIG=str(cfg))
    host, user, pw = basic_registry.host, basic_registry.username, basic_registry.password
    ref = f"{host}/{repo_name}:v1"
    bosun(daemon, "tag", "busybox", ref)
    r = bosun(daemon, "push", ref, env=env, check=False)
    assert r.returncode == 1 and "no basic auth credentials" in err(r).lower() + out(r).lower() \
        or "unauthorized" in (err(r) + out(r)).lower()
    r = bosun(daemon, "login", "-u", user, "-p", "wrong", host, env=env, check=False)
    assert r.returncode == 1 and not (cfg / "config.json").exists()
    r = bosun(daemon, "login", "-u", user, "--password-stdin", host, env=env,
              input=pw.encode() + b"\n")
    assert out(r) == "Login Succeeded\n"
    auths = json.loads((cfg / "config.json").read_text())["auths"]
    assert base64.b64decode(auths[host]["auth"]).decode() == f"{user}:{pw}"
    r = bosun(daemon, "push", ref, env=env)
    lines = out(r).splitlines()
    assert lines[0] == f"The push refers to repository [{host}/{repo_name}]"
    assert re.fullmatch(r"v1: digest: sha256:[0-9a-f]{64} size: \d+", lines[-1])
    assert out(bosun(daemon, "push", "-q", ref, env=env)) == f"{ref}\n"
    bosun(daemon, "rmi", ref)
    assert out(bosun(daemon, "pull", "-q", ref, env=env)) == f"{ref}\n"
    bosun(daemon, "rmi", ref)
    # the same file serves docker's CLI: it pulls with our stored login
    daemon.docker("--config", str(cfg), "pull", "-q", ref)
    daemon.docker("rmi", ref)
    assert out(bosun(daemon, "logout", host, env=env)) == \
        f"Removing login credentials for {host}\n"
    assert out(bosun(daemon, "logout", host, env=env)) == f"Not logged in to {host}\n"
    assert host not in json.loads((cfg / "config.json").read_text()).get("auths", {})
    r = bosun(daemon, "pull", ref, env=env, check=False)
    assert r.returncode == 1
