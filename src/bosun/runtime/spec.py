"""OCI runtime config.json: loading, validation and runc's default spec.

The config stays a plain dict (as parsed) after validation: the runtime reads a handful of
fields once, and building objects for all of it would only cost start-up time.
"""

from __future__ import annotations

import os

from bosun import quickjson
from bosun.kernel import caps
from bosun.runtime.errors import ConfigError

OCI_VERSION = "1.2.0"

NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")
CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def load(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError(f"bundle {bundle!r} has no config.json") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        config = quickjson.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"config.json is not valid JSON: {e}") from None
    validate(config, bundle)
    return config


def _want(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _obj(d: dict, key: str, kind: type, what: str):
    v = d.get(key)
    if v is not None and not isinstance(v, kind):
        raise ConfigError(f"{what}{key} must be {kind.__name__ if kind is not tuple else 'an array'}")
    return v


def validate(config, bundle: str) -> None:
    """Check the parts of the config the runtime acts on; resolve root.path to absolute."""
    _want(isinstance(config, dict), "config.json must be a JSON object")
    _want(isinstance(config.get("ociVersion"), str), "config.json: ociVersion is required")
    root = _obj(config, "root", dict, "")
    _want(root is not None and isinstance(root.get("path"), str) and root["path"],
          "config.json: root.path is required")
    rootfs = os.path.join(os.path.abspath(bundle), root["path"])
    _want(os.path.isdir(rootfs), f"rootfs {rootfs!r} does not exist or is not a directory")
    root["path"] = os.path.realpath(rootfs)

    process = _obj(config, "process", dict, "")
    if process is not None:
        validate_process(process)
    from bosun.runtime.process import check_scheduling

    check_scheduling(config)

    linux = _obj(config, "linux", dict, "") or {}
    seen = set()
    for ns in _obj(linux, "namespaces", list, "linux.") or ():
        _want(isinstance(ns, dict) and isinstance(ns.get("type"), str),
              "linux.namespaces entries need a type")
        _want(ns["type"] in NAMESPACES, f"unknown namespace type {ns['type']!r}")
        _want(ns["type"] not in seen, f"namespace {ns['type']!r} listed twice")
        seen.add(ns["type"])
        if ns.get("path") is not None:
            _want(isinstance(ns["path"], str) and os.path.isabs(ns["path"]),
                  f"namespace {ns['type']} path must be absolute")
    if linux.get("uidMappings") or linux.get("gidMappings"):
        _want("user" in seen, "uid/gid mappings need a user namespace")
    if "user" in seen and not _ns_path(linux, "user"):
        _want(linux.get("uidMappings") and linux.get("gidMappings"),
              "a new user namespace needs uidMappings and gidMappings")
    for key in ("uidMappings", "gidMappings"):
        for m in _obj(linux, key, list, "linux.") or ():
            _want(isinstance(m, dict) and all(isinstance(m.get(k), int) and m[k] >= 0
                                              for k in ("containerID", "hostID", "size")),
                  f"linux.{key} entries need non-negative containerID, hostID and size")
    for key in ("hostname", "domainname"):
        _want(isinstance(config.get(key) or "", str), f"{key} must be a string")
    if config.get("hostname"):
        _want("uts" in seen and not _ns_path(linux, "uts"),
              "setting the hostname needs a new uts namespace")
    if config.get("domainname"):
        _want("uts" in seen and not _ns_path(linux, "uts"),
              "setting the domainname needs a new uts namespace")
    for key, value in (_obj(linux, "sysctl", dict, "linux.") or {}).items():
        _want(isinstance(value, (str, int)), f"sysctl {key} value must be a string")
        check_sysctl(key, seen, linux)
    for key in ("maskedPaths", "readonlyPaths"):
        for path in _obj(linux, key, list, "linux.") or ():
            _want(isinstance(path, str) and os.path.isabs(path),
                  f"linux.{key} entries must be absolute paths")
    for d in _obj(linux, "devices", list, "linux.") or ():
        _want(isinstance(d, dict) and isinstance(d.get("path"), str)
              and all(d.get(k) is None or isinstance(d[k], int)
                      for k in ("major", "minor", "fileMode", "uid", "gid")),
              "linux.devices entries need a path and integer major, minor, fileMode, uid, gid")
    for clock, off in (_obj(linux, "timeOffsets", dict, "linux.") or {}).items():
        _want(isinstance(off, dict) and all(isinstance(off.get(k, 0), int)
                                            for k in ("secs", "nanosecs")),
              f"linux.timeOffsets.{clock} needs integer secs and nanosecs")
    if linux.get("timeOffsets"):
        _want("time" in seen and not _ns_path(linux, "time"),
              "timeOffsets need a new time namespace")
    cg = linux.get("cgroupsPath")
    if cg is not None:
        _want(isinstance(cg, str), "linux.cgroupsPath must be a string")
    propagation = linux.get("rootfsPropagation")
    if propagation:
        _want(propagation in ("private", "rprivate", "slave", "rslave", "shared", "rshared",
                              "unbindable", "runbindable"),
              f"invalid rootfsPropagation {propagation!r}")

    for m in _obj(config, "mounts", list, "") or ():
        _want(isinstance(m, dict) and isinstance(m.get("destination"), str) and m["destination"],
              "every mount needs a destination")
        _want(os.path.isabs(m["destination"]),
              f"mount destination {m['destination']!r} must be an absolute path")
        _want(isinstance(m.get("options") or [], list)
              and all(isinstance(o, str) for o in m.get("options") or []),
              "mount options must be an array of strings")
        _want(all(isinstance(m.get(k) or "", str) for k in ("type", "source")),
              f"mount {m['destination']}: type and source must be strings")

    hooks = _obj(config, "hooks", dict, "") or {}
    for kind, entries in hooks.items():
        _want(kind in HOOK_KINDS, f"unknown hook kind {kind!r}")
        for h in entries or ():
            _want(isinstance(h, dict) and isinstance(h.get("path"), str)
                  and os.path.isabs(h["path"]), f"{kind} hook needs an absolute path")
            if h.get("timeout") is not None:
                _want(isinstance(h["timeout"], int) and h["timeout"] > 0,
                      f"{kind} hook timeout must be a positive integer")


def validate_process(process) -> None:
    _want(isinstance(process, dict), "process must be an object")
    args = process.get("args")
    _want(isinstance(args, list) and args and all(isinstance(a, str) for a in args),
          "process.args must be a non-empty array of strings")
    cwd = process.get("cwd", "/")
    _want(isinstance(cwd, str) and os.path.isabs(cwd), "process.cwd must be an absolute path")
    env = process.get("env") or []
    _want(isinstance(env, list) and all(isinstance(e, str) for e in env),
          "process.env must be an array of strings")
    user = process.get("user") or {}
    _want(isinstance(user, dict), "process.user must be an object")
    for k in ("uid", "gid"):
        _want(isinstance(user.get(k, 0), int) and user.get(k, 0) >= 0,
              f"process.user.{k} must be a non-negative integer")
    _want(isinstance(user.get("additionalGids") or [], list)
          and all(isinstance(g, int) for g in user.get("additionalGids") or []),
          "process.user.additionalGids must be an array of integers")
    _want(isinstance(process.get("capabilities") or {}, dict),
          "process.capabilities must be an object")
    for c in (process.get("capabilities") or {}).items():
        _want(c[0] in CAP_SETS, f"unknown capability set {c[0]!r}")
        _want(isinstance(c[1] or [], list) and all(isinstance(n, str) for n in c[1] or []),
              f"process.capabilities.{c[0]} must be an array of strings")
        try:
            caps.to_mask(c[1])
        except ValueError as e:
            raise ConfigError(str(e)) from None
    for rl in process.get("rlimits") or ():
        _want(isinstance(rl, dict) and rl.get("type") in RLIMITS,
              f"unknown rlimit {rl.get('type') if isinstance(rl, dict) else rl!r}")
        _want(isinstance(rl.get("hard"), int) and isinstance(rl.get("soft"), int),
              f"{rl['type']} needs integer soft and hard values")
        _want(rl["soft"] <= rl["hard"], f"{rl['type']}: soft limit exceeds hard limit")
    oom = process.get("oomScoreAdj")
    if oom is not None:
        _want(isinstance(oom, int) and -1000 <= oom <= 1000, "oomScoreAdj must be -1000..1000")


def _ns_path(linux: dict, kind: str):
    for ns in linux.get("namespaces") or ():
        if ns.get("type") == kind:
            return ns.get("path")
    return None


def namespace_types(linux: dict) -> set[str]:
    return {ns["type"] for ns in linux.get("namespaces") or ()}


_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def check_sysctl(key: str, namespaces: set, linux: dict) -> None:
    """A sysctl may only be set when it is namespaced by a namespace the container owns."""
    def own(kind: str) -> bool:
        return kind in namespaces and not _ns_path(linux, kind)

    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        _want(own("ipc"), f"sysctl {key} needs a new ipc namespace")
    elif key.startswith("net."):
        _want(own("network"), f"sysctl {key} needs a new network namespace")
    elif key in ("kernel.hostname", "kernel.domainname"):
        _want(own("uts"), f"sysctl {key} needs a new uts namespace")
    else:
        raise ConfigError(f"sysctl {key} is not namespaced and cannot be set in a container")


def default_spec(rootless: bool = False) -> dict:
    """A config.json like `runc spec` writes: busybox-friendly `sh` on a terminal."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
    base_caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    spec = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(base_caps) for k in ("bounding", "effective", "permitted")},
            # Clamped to the current hard limit: raising a hard limit needs CAP_SYS_RESOURCE.
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "bosun",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                 "cgroup")],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    }
    if rootless:
        linux = spec["linux"]
        linux["namespaces"] = [ns for ns in linux["namespaces"]
                               if ns["type"] not in ("network", "cgroup")]
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
        linux.pop("resources")
        mounts = []
        for m in spec["mounts"]:
            if m["destination"] == "/sys":
                # sysfs can't be mounted without a network namespace owned by the user namespace
                m = {"destination": "/sys", "type": "none", "source": "/sys",
                     "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
            elif m["destination"] == "/sys/fs/cgroup":
                continue
            elif m["type"] == "devpts":
                m["options"] = [o for o in m["options"] if o != "gid=5"]
            mounts.append(m)
        spec["mounts"] = mounts
    return spec
