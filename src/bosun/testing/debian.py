"""Debian root filesystems made with debootstrap, for tests and benchmarks that need a real
distribution (a database, a big image): the mirror apt already uses, and a build cached by
its destination (an interrupted build leaves nothing)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bosun.testing.dockerd import unmount_under


def log(msg: str) -> None:
    print(f"bosun.testing.debian: {msg}", file=sys.stderr, flush=True)


def apt_mirror(suite: str = "bookworm") -> str:
    """The Debian archive apt uses for `suite`, from /etc/apt/sources.list(.d);
    RuntimeError when there is none."""
    files = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        files += sorted(d.iterdir())
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":  # deb822 stanzas
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
                if "deb" in fields.get("types", "").split() and \
                        suite in fields.get("suites", "").split():
                    for uri in fields.get("uris", "").split():
                        if uri.startswith(("http://", "https://")):
                            return uri
        else:  # one-line format: deb [options] URI suite components...
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite \
                        and words[1].startswith(("http://", "https://")):
                    return words[1]
    raise RuntimeError(f"no Debian mirror for {suite} in /etc/apt/sources.list*: use --mirror")


def ensure_debootstrap() -> str:
    found = shutil.which("debootstrap", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found:
        return found
    log("apt-get install debootstrap")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    found = shutil.which("debootstrap", path="/usr/sbin:/sbin:/usr/bin")
    if not found:
        raise RuntimeError("debootstrap is still missing after apt-get install")
    return found


def _remove(path: Path) -> None:
    if os.path.lexists(path):
        if unmount_under(path):
            raise RuntimeError(f"{path}: still mounted, not removed")
        shutil.rmtree(path, ignore_errors=True)


def build_rootfs(dest: Path, mirror: str, suite: str = "bookworm",
                 include: tuple[str, ...] = ()) -> Path:
    """A minbase `suite` rootfs (plus the packages of `include`) at dest, built once:
    debootstrap into a temporary directory renamed into place on success."""
    if dest.is_dir():
        return dest
    debootstrap = ensure_debootstrap()
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    extra = [f"--include={','.join(include)}"] if include else []
    log(f"debootstrap --variant=minbase {' '.join(extra)} {suite} {tmp} {mirror} (once; "
        f"cached in {dest})")
    try:
        p = subprocess.run([debootstrap, "--variant=minbase", *extra, suite, str(tmp), mirror],
                           stdin=subprocess.DEVNULL, stdout=sys.stderr, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"debootstrap failed with status {p.returncode}")
        left = unmount_under(tmp)  # it unmounts /proc and /sys itself; be sure
        if left:
            raise RuntimeError(f"debootstrap left mounts behind: {left}")
        os.rename(tmp, dest)
    finally:
        _remove(tmp)
    return dest
