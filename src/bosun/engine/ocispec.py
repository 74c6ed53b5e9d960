"""A stored container (Docker's inspect shape) → the OCI runtime config.json that bosun-runtime
runs: what `docker run` gives, field by field.

The sources are moby's: the base spec of oci/defaults.go, then daemon/oci_linux.go's spec options
(WithCommonOptions, WithCgroups, WithResources, WithSysctls, WithDevices, WithRlimits,
WithNamespaces, WithCapabilities, WithSeccomp, WithMounts, WithOOMScore), with the helpers of
daemon/daemon_unix.go, oci/caps, oci/devices_linux.go and profiles/seccomp. Everything the
caller knows better (the rootfs, the user, the network files, namespaces of other containers,
volume directories) comes in as arguments, so this stays a pure function of its inputs plus
a few stat() calls of host device nodes. The HostConfig is expected to have been through
createconfig.normalize_host_config.
"""

from __future__ import annotations

import copy
import json
import os
import re
import resource
import stat

from bosun.engine.createconfig import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    DEFAULT_SHM_SIZE,
    clean_path,
    known_capabilities,
    merge_tmpfs_options,
    normalize_capabilities,
    parse_bind,
    parse_security_opts,
    tmpfs_data,
)
from bosun.engine.errors import Conflict, InvalidParameter
from bosun.runtime.spec import OCI_VERSION
from bosun.security import seccomp_default

INIT_PATH = "/sbin/docker-init"
DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
# What dockerd under systemd (LimitNOFILE=infinity, i.e. fs.nr_open) hands its containers.
DEFAULT_NOFILE = 1048576
RLIM_INFINITY = 2**64 - 1  # OCI rlimits are uint64

# oci/defaults.go: the base mounts, in Docker's order.
BASE_MOUNTS = (
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["ro", "nosuid", "noexec", "nodev"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777"]},
)
# Mounts a read-only rootfs leaves writable (WithMounts).
_RO_EXEMPT = ("/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev")

# oci/defaults.go's device cgroup rules: deny everything, allow zero, null, urandom, random,
# tty and console, deny fuse. After a deny-all the runtime adds runc's own allowed defaults
# (mknod of anything, full, pts, ptmx), as runc does.
BASE_DEVICE_RULES = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
)

# uname -m → the architecture names Docker's seccomp profiles use in includes/excludes and
# archMap (profiles/seccomp: goToNative, nativeToSeccomp).
_NATIVE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i386": "x86", "i686": "x86",
                "armv7l": "arm", "armv8l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
                "riscv64": "riscv64"}
_SECCOMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64",
                 "x86": "SCMP_ARCH_X86", "arm": "SCMP_ARCH_ARM", "ppc64le": "SCMP_ARCH_PPC64LE",
                 "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64"}


def build_spec(container: dict, *, rootfs: str, user: tuple[int, int, list[int]],
               hostname_path: str | None, hosts_path: str | None, resolv_path: str | None,
               init_path: str | None, cgroup_parent: str = "bosun", cgroups_v2: bool = False,
               netns_path: str | None = None, ns_paths: dict[str, str] | None = None,
               volume_mounts: list[dict] | None = None,
               shm_path: str | None = None, host_caps: list[str] | None = None) -> dict:
    """The config.json for `container`.

    user: (uid, gid, additional gids), from createconfig.resolve_user.
    *_path: the container's /etc files on the host, bind-mounted when given.
    init_path: docker-init (tini) on the host, used when HostConfig.Init is set.
    netns_path: the network namespace the engine prepared (bridge/none); None → a new one.
    ns_paths: {"pid"|"ipc"|"network": path} for container:<id> modes, resolved by the caller.
    volume_mounts: the volume mounts the engine resolved (named and anonymous volumes of
        Binds and Mounts, the image's VOLUMEs, --volumes-from): {"Destination", "Source"
        (the host path to bind), "RW", "Propagation"}; every volume the request names must
        be among them.
    shm_path: the shared /dev/shm of a shareable or container:<id> IPC mode.
    host_caps: the capabilities the daemon holds (createconfig.held_capabilities), which
        --privileged and --cap-add ALL give; None → every capability the kernel knows.
    """
    cfg = container.get("Config") or {}
    hc = container.get("HostConfig") or {}
    security = parse_security_opts(hc.get("SecurityOpt"))
    caps = capabilities(hc, host_caps)
    hostname = cfg.get("Hostname") or (container.get("Id") or "")[:12]
    use_init = bool(hc.get("Init")) and init_path is not None and not hc.get("PidMode")
    spec = {
        "ociVersion": OCI_VERSION,
        "process": _process(container, hc, user, caps, security, hostname, use_init),
        "root": {"path": rootfs, "readonly": bool(hc.get("ReadonlyRootfs"))},
        "mounts": _mounts(cfg, hc, init_path if use_init else None,
                          {"/etc/resolv.conf": resolv_path, "/etc/hostname": hostname_path,
                           "/etc/hosts": hosts_path}, volume_mounts or [], shm_path),
        "linux": _linux(container, hc, caps, security, cgroups_v2, cgroup_parent, netns_path,
                        ns_paths or {}),
    }
    if hc.get("UTSMode") != "host":
        spec["hostname"] = hostname
        if cfg.get("Domainname"):
            # Docker sets the sysctl kernel.domainname; the OCI field does the same.
            spec["domainname"] = cfg["Domainname"]
    if hc.get("Annotations"):
        spec["annotations"] = dict(hc["Annotations"])
    return spec


# -- process -----------------------------------------------------------------------------------

def _process(container: dict, hc: dict, user, caps: list[str], security: dict, hostname: str,
             use_init: bool) -> dict:
    cfg = container.get("Config") or {}
    if not container.get("Path"):
        raise InvalidParameter("no command specified")
    args = [container["Path"], *(container.get("Args") or [])]
    if use_init:
        args = [INIT_PATH, "--", *args]
    uid, gid, gids = user
    process = {
        "terminal": bool(cfg.get("Tty")),
        "user": {"uid": uid, "gid": gid, **({"additionalGids": list(gids)} if gids else {})},
        "args": args,
        "env": container_env(cfg, hostname),
        "cwd": cfg.get("WorkingDir") or "/",
        # Docker fills these three; inheritable and ambient stay empty (CVE-2022-24769).
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "rlimits": rlimits(hc),
        "noNewPrivileges": security["no_new_privileges"],
        "oomScoreAdj": hc.get("OomScoreAdj") or 0,
    }
    height, width = (list(hc.get("ConsoleSize") or [0, 0]) + [0, 0])[:2]
    if cfg.get("Tty") and (height or width):
        process["consoleSize"] = {"height": height, "width": width}
    return process


def container_env(cfg: dict, hostname: str) -> list[str]:
    """Docker's CreateDaemonEnvironment: PATH, HOSTNAME and (with a tty) TERM, then Config.Env
    replacing a default of the same name, appended otherwise, and "NAME" alone unsetting it."""
    env = [f"PATH={DEFAULT_PATH_ENV}", f"HOSTNAME={hostname}"]
    if cfg.get("Tty"):
        env.append("TERM=xterm")
    index = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for value in cfg.get("Env") or ():
        name, eq, _ = value.partition("=")
        if not eq:
            if name in index:
                env[index[name]] = None
        elif name in index:
            env[index[name]] = value
        else:
            index[name] = len(env)
            env.append(value)
    return [e for e in env if e is not None]


def capabilities(hc: dict, host_caps: list[str] | None = None) -> list[str]:
    """Docker's TweakCapabilities: the default 14 ± CapAdd/CapDrop, "ALL" on either side; all
    of `host_caps` (default: the kernel's) when privileged."""
    every = known_capabilities() if host_caps is None else list(host_caps)
    if hc.get("Privileged"):
        return every
    add = normalize_capabilities(hc.get("CapAdd"))
    drop = normalize_capabilities(hc.get("CapDrop"))
    if "ALL" in add:
        caps = [c for c in every if c not in drop]
    elif "ALL" in drop:
        caps = list(add)
    else:
        caps = [c for c in DEFAULT_CAPS if c not in drop] + add
    return list(dict.fromkeys(caps))


def rlimits(hc: dict) -> list[dict]:
    """HostConfig.Ulimits, plus bosun's daemon default for nofile when they leave it out: what
    dockerd under systemd gives, clamped to our own hard limit (raising a hard limit needs
    CAP_SYS_RESOURCE, which a containerised host may not have)."""
    out = [{"type": "RLIMIT_" + ul["Name"].upper(), "soft": _rlim(ul.get("Soft", 0)),
            "hard": _rlim(ul.get("Hard", 0))} for ul in hc.get("Ulimits") or ()]
    if not any(r["type"] == "RLIMIT_NOFILE" for r in out):
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        n = DEFAULT_NOFILE if hard == resource.RLIM_INFINITY else min(DEFAULT_NOFILE, hard)
        out.append({"type": "RLIMIT_NOFILE", "soft": n, "hard": n})
    return out


def _rlim(v: int) -> int:
    return RLIM_INFINITY if v < 0 else v


# -- mounts ------------------------------------------------------------------------------------

def _depth(m: dict) -> int:
    return len(clean_path(m["destination"]).split("/"))


def _bind(dest: str, source: str, writable: bool, propagation: str = "",
          recursive: bool = True, rro: bool = False) -> dict:
    """WithMounts' bind: [r]bind, ro when read-only (rro: the submounts too), then the
    propagation if any."""
    opts = ["rbind" if recursive else "bind"] + ([] if writable else ["ro"])
    if rro and not writable:
        opts.append("rro")
    return {"destination": dest, "type": "bind", "source": source,
            "options": opts + ([propagation] if propagation else [])}


def _tmpfs(dest: str, data: str) -> dict:
    """A --tmpfs mount: noexec,nosuid,nodev,rprivate unless the data says otherwise."""
    opts = ["noexec", "nosuid", "nodev", "rprivate"] + (data.split(",") if data else [])
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs",
            "options": merge_tmpfs_options(opts)}


def _mount_points(hc: dict, volumes: list[dict]) -> tuple[list[dict], list[dict]]:
    """Binds, Mounts and Tmpfs → (bind mounts, tmpfs mounts); the volumes come resolved."""
    binds = [_bind(clean_path(v["Destination"]), v["Source"], v.get("RW", True),
                   v.get("Propagation") or "") for v in volumes]
    have = {m["destination"] for m in binds}
    tmpfs = []

    def need_volume(name: str, dest: str) -> None:
        if dest not in have:
            raise InvalidParameter(f"no such volume: {name}" if name else
                                   f"anonymous volume for {dest} is not available")

    for raw in hc.get("Binds") or ():
        b = parse_bind(raw)
        if b["Type"] == "volume":
            need_volume(b["Source"], b["Destination"])
        else:
            binds.append(_bind(b["Destination"], b["Source"], b["RW"], b["Propagation"]))
    for m in hc.get("Mounts") or ():
        dest, typ = clean_path(m["Target"]), m.get("Type")
        if typ == "tmpfs":
            tmpfs.append(_tmpfs(dest, tmpfs_data(m.get("TmpfsOptions"), bool(m.get("ReadOnly")))))
        elif typ == "volume":
            need_volume(m.get("Source") or "", dest)
        else:
            opts = m.get("BindOptions") or {}
            binds.append(_bind(dest, clean_path(m["Source"]), not m.get("ReadOnly"),
                               opts.get("Propagation") or "rprivate",
                               recursive=not opts.get("NonRecursive"),
                               rro=bool(opts.get("ReadOnlyForceRecursive"))))
    for dest, data in (hc.get("Tmpfs") or {}).items():
        tmpfs.append(_tmpfs(clean_path(dest), data or ""))
    return binds, tmpfs


def _user_mounts(cfg: dict, hc: dict, net_files: dict[str, str | None],
                 volumes: list[dict], shm_path: str | None) -> list[dict]:
    """Everything Docker's WithMounts calls the container's own mounts, sorted so that a parent
    comes before its children (by path depth, in a stable order)."""
    binds, tmpfs = _mount_points(hc, volumes)
    binds.sort(key=_depth)
    taken = {m["destination"] for m in binds + tmpfs}
    writable = not hc.get("ReadonlyRootfs")
    # A mount of the user's own on one of these files wins over ours.
    net = [_bind(dest, src, writable, "rprivate") for dest, src in net_files.items()
           if src and dest not in taken]
    shm = _shared_shm(hc.get("IpcMode") or "private", shm_path)
    ipc = [_bind("/dev/shm", shm, True, "rprivate")] if shm and "/dev/shm" not in taken else []
    return sorted(binds + net + ipc + tmpfs, key=_depth)


def _shared_shm(ipc_mode: str, shm_path: str | None) -> str | None:
    """The /dev/shm to bind (Docker's IpcMounts): the host's, or the one of a shareable IPC
    namespace. Without one the container gets its own tmpfs, as Docker does then."""
    if ipc_mode == "host":
        return "/dev/shm"
    if ipc_mode == "shareable" or ipc_mode.startswith("container:"):
        return shm_path
    return None


def _mounts(cfg: dict, hc: dict, init_path: str | None, net_files: dict[str, str | None],
            volumes: list[dict], shm_path: str | None) -> list[dict]:
    user = _user_mounts(cfg, hc, net_files, volumes, shm_path)
    taken = {m["destination"] for m in user}
    base = [copy.deepcopy(m) for m in BASE_MOUNTS]
    if init_path:
        base.append({"destination": INIT_PATH, "type": "bind", "source": init_path,
                     "options": ["bind", "ro"]})
    defaults = []
    for m in base:
        dest = m["destination"]
        if dest in taken or ("/dev" in taken and dest.startswith("/dev/")):
            continue
        if dest == "/dev/shm":
            if hc.get("IpcMode") == "none":
                continue
            m["options"].append(f"size={hc.get('ShmSize') or DEFAULT_SHM_SIZE}")
        if hc.get("ReadonlyRootfs") and dest not in _RO_EXEMPT and "ro" not in m["options"]:
            m["options"].append("ro")
        if hc.get("Privileged") and (dest == "/sys" or m["type"] == "cgroup"):
            m["options"] = [o for o in m["options"] if o != "ro"]
        defaults.append(m)
    return defaults + user


# -- linux -------------------------------------------------------------------------------------

def _linux(container: dict, hc: dict, caps: list[str], security: dict, cgroups_v2: bool,
           cgroup_parent: str, netns_path: str | None, ns_paths: dict[str, str]) -> dict:
    privileged = bool(hc.get("Privileged"))
    devices, rules = device_nodes_and_rules(hc)
    parent = (hc.get("CgroupParent") or cgroup_parent).rstrip("/")
    linux = {
        "namespaces": namespaces(hc, cgroups_v2, netns_path, ns_paths),
        "resources": resources(hc, cgroups_v2, rules),
        "cgroupsPath": f"{parent}/{container['Id']}",
        "sysctl": sysctls(hc, netns_path),
        "devices": devices,
    }
    if not privileged:
        masked, ro = hc.get("MaskedPaths"), hc.get("ReadonlyPaths")
        linux["maskedPaths"] = list(DEFAULT_MASKED_PATHS if masked is None else masked)
        linux["readonlyPaths"] = list(DEFAULT_READONLY_PATHS if ro is None else ro)
    profile = seccomp(hc, security, caps)
    if profile is not None:
        linux["seccomp"] = profile
    return linux


def _joined(kind: str, mode: str, ns_paths: dict[str, str], what: str) -> dict:
    ref = mode.split(":", 1)[1]
    if not ns_paths.get(kind):
        raise Conflict(f"cannot join {what} of a non running container: {ref}")
    return {"type": kind, "path": ns_paths[kind]}


def namespaces(hc: dict, cgroups_v2: bool, netns_path: str | None,
               ns_paths: dict[str, str]) -> list[dict]:
    """Docker's order: mount, network, uts, pid, ipc, then cgroup. "host" leaves a namespace
    out; container:<id> joins the other container's, by the path the caller resolved."""
    out = [{"type": "mount"}]
    net = hc.get("NetworkMode") or "bridge"
    if net.startswith("container:"):
        out.append(_joined("network", net, ns_paths, "network"))
    elif net != "host":
        out.append({"type": "network", **({"path": netns_path} if netns_path else {})})
    if hc.get("UTSMode") != "host":
        out.append({"type": "uts"})
    pid = hc.get("PidMode") or ""
    if pid.startswith("container:"):
        out.append(_joined("pid", pid, ns_paths, "PID"))
    elif pid != "host":
        out.append({"type": "pid"})
    ipc = hc.get("IpcMode") or "private"
    if ipc.startswith("container:"):
        out.append(_joined("ipc", ipc, ns_paths, "IPC"))
    elif ipc != "host":
        out.append({"type": "ipc"})
    cgns = hc.get("CgroupnsMode") or ("private" if cgroups_v2 else "host")
    if cgns == "private":
        out.append({"type": "cgroup"})
    return out


def sysctls(hc: dict, netns_path: str | None) -> dict[str, str]:
    """Docker's two network defaults for a network namespace of the container's own (ICMP echo
    sockets and ports below 1024 without capabilities), then HostConfig.Sysctls over them.
    The defaults are left out when the engine prepared the namespace: bosun-runtime only sets
    net.* sysctls in a namespace it creates itself."""
    out: dict[str, str] = {}
    net = hc.get("NetworkMode") or "bridge"
    if net != "host" and not net.startswith("container:") and netns_path is None:
        for key, value in (("net.ipv4.ping_group_range", "0 2147483647"),
                           ("net.ipv4.ip_unprivileged_port_start", "0")):
            if os.path.exists("/proc/sys/" + key.replace(".", "/")):
                out[key] = value
    # In a namespace the engine made, it writes the net.* ones itself (see above).
    out.update({k: str(v) for k, v in (hc.get("Sysctls") or {}).items()
                if not (netns_path and k.startswith("net."))})
    return out


def resources(hc: dict, cgroups_v2: bool, device_rules: list[dict]) -> dict:
    """Docker's getMemoryResources, getCPUResources, getPidsLimit and block I/O, in OCI form.
    On cgroup v2 swappiness and the OOM-killer switch are dropped, as Docker drops them there."""
    mem: dict = {}
    for key, field in (("limit", "Memory"), ("reservation", "MemoryReservation"),
                       ("swap", "MemorySwap")):
        # MemorySwap -1 (unlimited) is left out: a new cgroup's memsw is unlimited already
        if (hc.get(field) or 0) > 0:
            mem[key] = hc[field]
    if not cgroups_v2:
        if hc.get("MemorySwappiness") is not None:
            mem["swappiness"] = hc["MemorySwappiness"]
        if hc.get("OomKillDisable"):  # false is the kernel's default: nothing to write
            mem["disableOOMKiller"] = True

    cpu: dict = {}
    if (hc.get("CpuShares") or 0) > 0:
        cpu["shares"] = hc["CpuShares"]
    for key, field in (("cpus", "CpusetCpus"), ("mems", "CpusetMems")):
        if hc.get(field):
            cpu[key] = hc[field]
    if (hc.get("NanoCpus") or 0) > 0:
        cpu["period"] = 100000  # 100ms, the kernel's default CFS period
        cpu["quota"] = hc["NanoCpus"] * 100000 // 10**9
    for key, field in (("period", "CpuPeriod"), ("quota", "CpuQuota"),
                       ("realtimePeriod", "CpuRealtimePeriod"),
                       ("realtimeRuntime", "CpuRealtimeRuntime")):
        if hc.get(field):
            cpu[key] = hc[field]

    out: dict = {"devices": device_rules}
    if mem:
        out["memory"] = mem
    if cpu:
        out["cpu"] = cpu
    if hc.get("PidsLimit") is not None:
        out["pids"] = {"limit": hc["PidsLimit"] if hc["PidsLimit"] > 0 else -1}
    bio = _block_io(hc)
    if bio:
        out["blockIO"] = bio
    return out


def _rdev(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidParameter(f"stat {path}: {os.strerror(e.errno).lower()}") from None
    if not stat.S_ISBLK(st.st_mode):  # else a 0:0 rule the cgroup refuses (a 500)
        raise InvalidParameter(f"{path} is not a block device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def _block_io(hc: dict) -> dict:
    bio: dict = {}
    if hc.get("BlkioWeight"):
        bio["weight"] = hc["BlkioWeight"]
    weights = []
    for d in hc.get("BlkioWeightDevice") or ():
        major, minor = _rdev(d["Path"])
        weights.append({"major": major, "minor": minor, "weight": d["Weight"]})
    if weights:
        bio["weightDevice"] = weights
    for key, field in (("throttleReadBpsDevice", "BlkioDeviceReadBps"),
                       ("throttleWriteBpsDevice", "BlkioDeviceWriteBps"),
                       ("throttleReadIOPSDevice", "BlkioDeviceReadIOps"),
                       ("throttleWriteIOPSDevice", "BlkioDeviceWriteIOps")):
        rates = []
        for d in hc.get(field) or ():
            major, minor = _rdev(d["Path"])
            rates.append({"major": major, "minor": minor, "rate": d["Rate"]})
        if rates:
            bio[key] = rates
    return bio


# -- devices -----------------------------------------------------------------------------------

def device_nodes_and_rules(hc: dict) -> tuple[list[dict], list[dict]]:
    """linux.devices and the device cgroup rules (WithDevices).

    Privileged: every device allowed in the cgroup. Docker also creates a node for every
    device of the host's /dev; bosun does not (a container that needs one maps it with
    --device), so a privileged container's /dev holds the default nodes and its mapped ones."""
    nodes: list[dict] = []
    if hc.get("Privileged"):
        for d in hc.get("Devices") or ():
            if d["PathOnHost"] != d.get("PathInContainer", d["PathOnHost"]):
                nodes += devices_from_path(d["PathOnHost"], d["PathInContainer"], "rwm")[0]
        return nodes, [{"allow": True, "access": "rwm"}]
    rules = [dict(r) for r in BASE_DEVICE_RULES]
    for d in hc.get("Devices") or ():
        n, r = devices_from_path(d["PathOnHost"], d.get("PathInContainer") or d["PathOnHost"],
                                 d.get("CgroupPermissions") or "rwm")
        nodes += n
        rules += r
    for rule in hc.get("DeviceCgroupRules") or ():
        typ, nums, access = rule.split(" ")
        major, minor = nums.split(":")
        r = {"allow": True, "type": typ, "access": access}
        if major != "*":
            r["major"] = int(major)
        if minor != "*":
            r["minor"] = int(minor)
        rules.append(r)
    return nodes, rules


def _device_node(host: str, path: str, perms: str) -> tuple[dict, dict] | None:
    st = os.lstat(host)
    if stat.S_ISCHR(st.st_mode):
        typ = "c"
    elif stat.S_ISBLK(st.st_mode):
        typ = "b"
    else:
        return None
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    node = {"path": path, "type": typ, "major": major, "minor": minor,
            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    return node, {"allow": True, "type": typ, "major": major, "minor": minor, "access": perms}


def devices_from_path(host: str, path: str, perms: str) -> tuple[list[dict], list[dict]]:
    """Docker's DevicesFromPath: a device node (symlinks followed), or every device node under
    a directory, with the host node's type, numbers, mode and owner."""
    resolved = os.path.realpath(host) if os.path.islink(host) else host
    error = "not a device node"
    try:
        found = _device_node(resolved, path, perms)
        if found:
            return [found[0]], [found[1]]
        if os.path.isdir(resolved):
            nodes, rules = [], []
            for top, dirs, files in os.walk(resolved):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(top, name)
                    found = _device_node(full, path + full[len(resolved):], perms)
                    if found:
                        nodes.append(found[0])
                        rules.append(found[1])
            if nodes:
                return nodes, rules
    except OSError as e:
        error = os.strerror(e.errno).lower()
    raise InvalidParameter(
        f"error gathering device information while adding custom device {json.dumps(host)}: "
        f"{error}")


# -- seccomp -----------------------------------------------------------------------------------

def seccomp(hc: dict, security: dict, caps: list[str], machine: str | None = None,
            kernel: str | None = None) -> dict | None:
    """WithSeccomp: none when privileged or seccomp=unconfined; a profile given as JSON text
    specialised like Docker's own default; otherwise the default for these capabilities."""
    if hc.get("Privileged") or security["seccomp"] == "unconfined":
        return None
    if security["seccomp"] is None:
        return seccomp_default.default_profile(caps, machine)
    return profile_from_json(security["seccomp"], caps, machine, kernel)


def profile_from_json(text: str, caps: list[str], machine: str | None = None,
                      kernel: str | None = None) -> dict | None:
    """Docker's setupSeccomp: a Docker-format profile (archMap, includes/excludes by caps,
    arches and minKernel) → OCI linux.seccomp for this machine and capability set."""
    try:
        prof = json.loads(text)
    except ValueError as e:
        raise InvalidParameter(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(prof, dict):
        raise InvalidParameter("Decoding seccomp profile failed: not a JSON object")
    if not prof.get("defaultAction") and not prof.get("syscalls"):
        return None  # no default action, no rules: seccomp disabled
    if prof.get("architectures") and prof.get("archMap"):
        raise InvalidParameter("'architectures' and 'archMap' were specified in the seccomp "
                               "profile, use either 'architectures' or 'archMap'")
    native = _NATIVE_ARCH.get(machine or os.uname().machine, "")
    release = _kernel_version(kernel or os.uname().release)
    out: dict = {"defaultAction": prof.get("defaultAction") or "",
                 "architectures": list(prof.get("architectures") or [])}
    for a in prof.get("archMap") or ():
        if a.get("architecture") == _SECCOMP_ARCH.get(native):
            out["architectures"] = [a["architecture"], *(a.get("subArchitectures") or [])]
            break
    for key in ("defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"):
        if prof.get(key) is not None:
            out[key] = prof[key]
    out["syscalls"] = [_syscall_rule(call) for call in prof.get("syscalls") or ()
                       if _applies(call, native, set(caps), release)]
    return out


def _kernel_version(release: str) -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        raise InvalidParameter(f"Can't parse kernel version {release}")
    return tuple(int(x or 0) for x in m.groups())


def _applies(call: dict, arch: str, caps: set[str], kernel: tuple[int, ...]) -> bool:
    inc, exc = call.get("includes") or {}, call.get("excludes") or {}
    if arch in (exc.get("arches") or ()) or caps & set(exc.get("caps") or ()):
        return False
    if exc.get("minKernel") and kernel >= _kernel_version(exc["minKernel"]):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if not set(inc.get("caps") or ()) <= caps:
        return False
    return not (inc.get("minKernel") and kernel < _kernel_version(inc["minKernel"]))


def _syscall_rule(call: dict) -> dict:
    if call.get("name") and call.get("names"):
        raise InvalidParameter("'name' and 'names' were specified in the seccomp profile, use "
                               "either 'name' or 'names'")
    rule = {"names": [call["name"]] if call.get("name") else list(call.get("names") or []),
            "action": call.get("action") or ""}
    if call.get("errnoRet") is not None:
        rule["errnoRet"] = call["errnoRet"]
    if call.get("args"):
        rule["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                        for a in call["args"]]
    return rule
