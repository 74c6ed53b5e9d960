"""`make demo`: build a busybox bundle from Debian's busybox-static and run it with
bosun-runtime. Also the one place that knows how to build that rootfs (tests and benchmarks
use it too)."""

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


def main() -> int:
    bundle = make_bundle(os.path.join(CACHE, "demo-bundle"),
                         ["sh", "-c", "echo \"hello from $(hostname), pid $$ in its own pid "
                                      "namespace, as $(id -un)\"; uname -sr; ls /"])
    runtime = os.path.join(os.path.dirname(sys.executable), "bosun-runtime")
    print(f"$ bosun-runtime run --bundle {bundle} demo", flush=True)
    return subprocess.call([runtime, "run", "--bundle", bundle, f"demo-{os.getpid()}"])


if __name__ == "__main__":
    sys.exit(main())
