"""`make demo`: start `bosun daemon`, import a busybox image built from Debian's
busybox-static, and run a container with the `bosun` CLI. Also the one place that knows how to
build that rootfs and a runtime bundle of it (tests and benchmarks use them too)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

CACHE = os.environ.get("BOSUN_CACHE") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), ".cache")


def build_busybox_rootfs(dest: str) -> str:
    """A minimal rootfs: /bin/busybox, its applet links, /etc/passwd and /etc/group."""
    if os.path.exists(os.path.join(dest, "bin", "busybox")):
        return dest
    busybox = shutil.which("busybox") or "/bin/busybox"
    tmp = f"{dest}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "bin"))
    shutil.copy2(busybox, os.path.join(tmp, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", os.path.join(tmp, "bin", a))
    for d in ("proc", "sys", "dev", "etc", "tmp", "root", "home/user"):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
    os.chmod(os.path.join(tmp, "tmp"), 0o1777)
    with open(os.path.join(tmp, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(tmp, "etc", "group"), "w") as f:
        f.write("root:x:0:\nuser:x:1000:\ntty:x:5:\n")
    if os.geteuid() == 0:
        os.chown(os.path.join(tmp, "home", "user"), 1000, 1000)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.rename(tmp, dest)
    return dest


def busybox_tar(cache_dir: str) -> str:
    """A busybox root filesystem tarball (Debian's busybox-static), built once."""
    import tarfile

    rootfs = build_busybox_rootfs(os.path.join(CACHE, "rootfs", "busybox"))
    out = os.path.join(cache_dir, "busybox-rootfs.tar")
    if not os.path.exists(out):
        tmp = out + f".tmp{os.getpid()}"
        with tarfile.open(tmp, "w") as tar:
            for name in sorted(os.listdir(rootfs)):
                tar.add(os.path.join(rootfs, name), arcname=name)
        os.replace(tmp, out)
    return out


def make_bundle(path: str, args: list[str], rootfs: str | None = None) -> str:
    """A bundle at `path` whose config is `bosun-runtime spec`'s, running `args`."""
    from bosun.runtime.spec import default_spec

    rootfs = rootfs or build_busybox_rootfs(os.path.join(CACHE, "rootfs", "busybox"))
    os.makedirs(path, exist_ok=True)
    config = default_spec()
    config["root"]["path"] = rootfs
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return path


DEMO_HOST = "unix:///run/bosun/bosun.sock"
DEMO_LOG = "/var/log/bosun/daemon.log"


def _ping(client) -> bool:
    from bosun.cli.http import APIError, Unreachable

    try:
        r = client.send("GET", "/_ping")
    except (Unreachable, APIError, OSError):
        return False
    r.close()
    return r.status == 200


def ensure_daemon(client, timeout: float = 60) -> None:
    """Start `bosun daemon` (default paths, in the background) unless one answers."""
    import time

    if _ping(client):
        return
    os.makedirs(os.path.dirname(DEMO_LOG), exist_ok=True)
    print(f"$ bosun daemon &        # log: {DEMO_LOG}", flush=True)
    with open(DEMO_LOG, "ab") as log:
        subprocess.Popen([sys.executable, "-m", "bosun.cli", "daemon"], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not _ping(client):
        if time.monotonic() > deadline:
            raise SystemExit(f"the daemon did not come up; see {DEMO_LOG}")
        time.sleep(0.1)


def ensure_busybox(client) -> None:
    """Import busybox:latest from Debian's busybox-static unless the daemon has it
    (`docker import` of a rootfs tarball, through the API)."""
    from bosun.cli.http import APIError

    try:
        client.call("GET", "/images/busybox:latest/json")
        return
    except APIError as e:
        if e.status != 404:
            raise
    print("$ bosun import busybox-rootfs.tar busybox   # from Debian's busybox-static",
          flush=True)
    os.makedirs(CACHE, exist_ok=True)
    with open(busybox_tar(CACHE), "rb") as f:
        r = client.stream("POST", "/images/create", {"fromSrc": "-", "repo": "busybox",
                                                     "tag": "latest", "changes": 'CMD ["sh"]'},
                          f.read())
    for msg in r.json_stream():
        if msg.get("error"):
            raise SystemExit(f"import failed: {msg['error']}")
    r.close()


def main() -> int:
    """`make demo`: the daemon up, a busybox image in it, and a container run by `bosun`."""
    from bosun.cli.http import Client

    client = Client(DEMO_HOST)
    ensure_daemon(client)
    ensure_busybox(client)
    cmd = ("echo \"hello from $(hostname), pid $$ in its own pid namespace, as $(id -un)\"; "
           "uname -sr")
    print(f"$ bosun run --rm busybox sh -c '{cmd}'", flush=True)
    code = subprocess.call([sys.executable, "-m", "bosun.cli", "-H", DEMO_HOST, "run", "--rm",
                            "busybox", "sh", "-c", cmd])
    print("\nThe daemon keeps running: try `bosun ps -a`, `bosun run -it --rm busybox sh`, or "
          f"the docker CLI with DOCKER_HOST={DEMO_HOST}.\n"
          "Stop it with `kill $(cat /run/bosun/bosun.pid)`.")
    return code


if __name__ == "__main__":
    sys.exit(main())
