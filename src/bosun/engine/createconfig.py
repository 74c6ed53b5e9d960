"""What `docker create` does to a request before it stores a container: the image's defaults
merged into Config, HostConfig validated and given Docker's defaults (so inspect shows what
Docker shows), and — at start — the user resolved inside the container's root filesystem.

Everything here but `resolve_user` is pure. The rules and the error wording are Docker's
(moby: daemon/commit.go `merge`, daemon/create.go `mergeAndVerifyConfig`, daemon/container.go
`validateHostConfig`, daemon/daemon_unix.go `verifyPlatformContainerResources` and
`adaptContainerSettings`, volume/mounts/linux_parser.go, daemon/volumes.go, oci/caps), and for
sysctls runc's, which is where Docker's users meet them.
"""

from __future__ import annotations

import copy
import json
import os
import posixpath
import re
import signal
import stat
from collections.abc import Callable

from bosun import kernel as K
from bosun.engine.errors import InvalidParameter, NotFound, SystemErr
from bosun.kernel import caps as capnames

DEFAULT_SHM_SIZE = 64 << 20
MIN_MEMORY = 6 << 20  # Docker's floor, for start-up overhead
MIN_DURATION_NS = 1_000_000  # Healthcheck durations are nanoseconds; Docker's minimum is 1ms
MAX_ID = 2**31 - 1

DEFAULT_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger")

# go-units' names for --ulimit ("as" is left out there too: it breaks container start-up)
ULIMIT_NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
LOG_DRIVERS = {"json-file": ("max-file", "max-size", "compress", "labels", "labels-regex",
                             "env", "env-regex", "tag"),
               "local": ("max-file", "max-size", "compress"),
               "none": None}
# HostConfig fields Docker's inspect always shows (no omitempty in its Go struct), with the
# zero value a request that leaves them out gets: clients index them without a check.
HOST_CONFIG_ZERO = {
    "Binds": None, "ContainerIDFile": "", "PortBindings": {}, "AutoRemove": False,
    "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None, "CapDrop": None, "Dns": None,
    "DnsOptions": None, "DnsSearch": None, "ExtraHosts": None, "GroupAdd": None, "Cgroup": "",
    "Links": None, "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False,
    "SecurityOpt": None, "UsernsMode": "", "Isolation": "", "CpuShares": 0, "Memory": 0,
    "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": None,
    "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None,
    "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": None,
    "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0,
    "MemorySwap": 0, "MemorySwappiness": None, "PidsLimit": None, "Ulimits": None,
    "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    "MaskedPaths": None, "ReadonlyPaths": None,
}
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def _q(s: str) -> str:
    """Go's %q, near enough for error messages."""
    return json.dumps(s)


# -- Config: the image's defaults --------------------------------------------------------------

def merge_image_config(config: dict | None, image_config: dict | None) -> dict:
    """A new Config: the request's, with the image's defaults where the request left them out."""
    out = copy.deepcopy(config or {})
    img = copy.deepcopy(image_config or {})
    _validate_config(out)
    if not out.get("User"):
        out["User"] = img.get("User") or ""
    out["ExposedPorts"] = _union(out.get("ExposedPorts"), img.get("ExposedPorts"))
    out["Env"] = _merge_env(out.get("Env"), img.get("Env"))
    out["Labels"] = {**(img.get("Labels") or {}), **(out.get("Labels") or {})}
    # A request that names an entrypoint owns the command line: the image's Cmd goes with it.
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = img.get("Cmd")
        if out.get("Entrypoint") is None:  # [] (not null) keeps the image's entrypoint out
            out["Entrypoint"] = img.get("Entrypoint")
    if img.get("Healthcheck"):
        out["Healthcheck"] = _merge_healthcheck(out.get("Healthcheck"), img["Healthcheck"])
    if not out.get("WorkingDir"):
        out["WorkingDir"] = img.get("WorkingDir") or ""
    out["Volumes"] = _union(out.get("Volumes"), img.get("Volumes"), image_wins=True)
    if not out.get("StopSignal") and img.get("StopSignal"):
        out["StopSignal"] = img["StopSignal"]
    # --entrypoint "" clears the entrypoint
    if out.get("Entrypoint") == [""]:
        out["Entrypoint"] = None
    if not out.get("Entrypoint") and not out.get("Cmd"):
        raise InvalidParameter("no command specified")
    return out


def _union(mine: dict | None, image: dict | None, image_wins: bool = False) -> dict | None:
    """Both sets of keys (ExposedPorts, Volumes); None when neither has any."""
    if not mine and not image:
        return mine if mine is not None else image
    first, last = (mine, image) if image_wins else (image, mine)
    return {**(first or {}), **(last or {})}


def _merge_env(mine: list[str] | None, image: list[str] | None) -> list[str] | None:
    """The request's variables, then the image's whose names the request does not set."""
    if not mine:
        return image
    keys = {e.split("=", 1)[0] for e in mine}
    return list(mine) + [e for e in image or () if e.split("=", 1)[0] not in keys]


def _merge_healthcheck(mine: dict | None, image: dict) -> dict:
    if not mine:
        return image
    out = dict(mine)
    for key in ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
        if not out.get(key) and image.get(key):
            out[key] = image[key]
    return out


def clean_path(p: str) -> str:
    """Go's path.Clean for absolute and relative paths."""
    if not p:
        return "."
    c = posixpath.normpath(p)
    return "/" + c.lstrip("/") if c.startswith("//") else c


def _validate_config(config: dict) -> None:
    wd = config.get("WorkingDir")
    if wd:
        if not wd.startswith("/"):
            raise InvalidParameter(
                f"the working directory '{wd}' is invalid, it needs to be an absolute path")
        config["WorkingDir"] = clean_path(wd)
    for e in config.get("Env") or ():
        if not isinstance(e, str) or not e.split("=", 1)[0]:
            raise InvalidParameter(f"invalid environment variable: {e}")
    for dest in config.get("Volumes") or {}:
        # else a container is made that no start can mount
        if not dest.startswith("/") or "\0" in dest:
            raise InvalidParameter(f"invalid mount path: '{dest}' mount path must be absolute")
    if config.get("StopSignal"):
        parse_signal(config["StopSignal"])
    hc = config.get("Healthcheck") or {}
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = hc.get(key) or 0
        if v and v < MIN_DURATION_NS:
            raise InvalidParameter(f"{key} in Healthcheck cannot be less than 1ms")
    if (hc.get("Retries") or 0) < 0:
        raise InvalidParameter("Retries in Healthcheck cannot be negative")


def parse_signal(sig: str | int) -> int:
    """Docker's signal.ParseSignal: a number, or a name with or without SIG."""
    s = str(sig)
    if s.isdigit():
        if int(s) == 0:
            raise InvalidParameter(f"Invalid signal: {s}")
        return int(s)
    name = s.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    m = re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name)
    if m:
        base = signal.SIGRTMIN if m.group(1) == "IN" else signal.SIGRTMAX
        n = base + int(m.group(2) or 0)
        if signal.SIGRTMIN <= n <= signal.SIGRTMAX:
            return n
    elif name in signal.Signals.__members__ and not name.startswith("SIG_"):
        return int(signal.Signals[name])
    raise InvalidParameter(f"Invalid signal: {s}")


# -- HostConfig --------------------------------------------------------------------------------

def normalize_host_config(hc: dict | None, cgroups_v2: bool = False,
                          network_name: Callable[[str], str | None] = lambda ref: None) -> dict:
    """A validated copy of HostConfig with Docker's defaults filled in. `cgroups_v2` is the
    host's cgroup mode (it decides the default cgroup namespace); `network_name` resolves a
    user-defined network (name, id or id prefix) to its name, None when there is none."""
    out = copy.deepcopy(hc or {})
    _restart_policy(out)
    _resources(out)
    _ulimits(out)
    _namespace_modes(out, cgroups_v2, network_name)
    check_mounts(out)
    _devices(out)
    _sysctls(out)
    for key in ("CapAdd", "CapDrop"):
        try:
            normalize_capabilities(out.get(key))
        except InvalidParameter as e:
            raise InvalidParameter(f"invalid {key}: {e}") from None
    parse_security_opts(out.get("SecurityOpt"))
    _log_config(out)
    oom = out["OomScoreAdj"] = out.get("OomScoreAdj") or 0
    if not -1000 <= oom <= 1000:
        raise InvalidParameter(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    shm = out.get("ShmSize") or 0
    if shm < 0:
        raise InvalidParameter("SHM size can not be less than 0")
    out["ShmSize"] = shm or DEFAULT_SHM_SIZE
    if out.get("OomKillDisable") is None:
        out["OomKillDisable"] = False
    if not out.get("Privileged"):
        for key in ("MaskedPaths", "ReadonlyPaths"):
            for p in out.get(key) or ():
                if not p.startswith("/") or "\0" in p:  # else every start fails, a 500
                    raise InvalidParameter(f"invalid {key}: '{p}' is not an absolute path")
        # An explicit [] (--security-opt systempaths=unconfined) is kept as it is.
        if out.get("MaskedPaths") is None:
            out["MaskedPaths"] = list(DEFAULT_MASKED_PATHS)
        if out.get("ReadonlyPaths") is None:
            out["ReadonlyPaths"] = list(DEFAULT_READONLY_PATHS)
    out.setdefault("ConsoleSize", [0, 0])
    for key, zero in HOST_CONFIG_ZERO.items():
        out.setdefault(key, copy.copy(zero))
    return out


def _restart_policy(hc: dict) -> None:
    rp = dict(hc.get("RestartPolicy") or {})
    name, count = rp.get("Name") or "", rp.get("MaximumRetryCount") or 0
    if name in ("no", "always", "unless-stopped"):
        if count:
            msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
            raise InvalidParameter(msg + (" and cannot be negative" if count < 0 else ""))
    elif name == "on-failure":
        if count < 0:
            raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    elif name == "":
        # Before Docker 25 an empty name was the default, with any count; it means "no".
        name, count = "no", 0
    else:
        raise InvalidParameter(f"invalid restart policy: unknown policy '{name}'; use one of "
                               "'no', 'always', 'on-failure', or 'unless-stopped'")
    if hc.get("AutoRemove") and name != "no":
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    hc["RestartPolicy"] = {"Name": name, "MaximumRetryCount": count}


def _resources(hc: dict) -> None:
    mem, swap = hc.get("Memory") or 0, hc.get("MemorySwap") or 0
    if mem and mem < MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if mem > 0 and swap > 0 and swap < mem:
        raise InvalidParameter(
            "Minimum memoryswap limit should be larger than memory limit, see usage")
    if mem == 0 and swap > 0:
        raise InvalidParameter(
            "You should always set the Memory limit when using Memoryswap limit, see usage")
    if mem > 0 and swap == 0:
        hc["MemorySwap"] = mem * 2  # Docker's default: as much swap as memory
    if hc.get("MemorySwappiness") == -1:
        hc["MemorySwappiness"] = None
    sw = hc.get("MemorySwappiness")
    if sw is not None and not 0 <= sw <= 100:
        raise InvalidParameter(f"Invalid value: {sw}, valid memory swappiness range is 0-100")
    res = hc.get("MemoryReservation") or 0
    if res > 0 and res < MIN_MEMORY:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    if mem > 0 and res > 0 and mem < res:
        raise InvalidParameter(
            "Minimum memory limit can not be less than memory reservation limit, see usage")

    nano, period, quota = (hc.get(k) or 0 for k in ("NanoCpus", "CpuPeriod", "CpuQuota"))
    if nano > 0 and period > 0:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    ncpu = len(os.sched_getaffinity(0))
    if nano < 0 or nano > ncpu * 10**9:
        raise InvalidParameter(f"Range of CPUs is from 0.01 to {ncpu}.00, "
                               f"as there are only {ncpu} CPUs available")
    if period and not 1000 <= period <= 1000000:
        raise InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) "
                               "or larger than 1s (i.e. 1000000)")
    if 0 < quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if (hc.get("CpuShares") or 0) < 0:
        raise InvalidParameter("shares: invalid argument")
    for key, what in (("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
        _check_available(hc.get(key) or "", what)
    for key in ("BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps",
                "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps"):
        for d in hc.get(key) or ():
            path = d.get("Path") or ""
            if not path.startswith("/dev/") or "\0" in path:  # the docker CLI's rule
                raise InvalidParameter(f"invalid {key}: bad format for device path: {path}")
    weight = hc.get("BlkioWeight") or 0
    if weight and not 10 <= weight <= 1000:
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")
    # Docker discards (with a warning) the weights a kernel cannot take: else the cgroup
    # write fails at start or update, a 500
    if weight and not blkio_supported("blkio.weight"):
        hc["BlkioWeight"] = 0
    if hc.get("BlkioWeightDevice") and not blkio_supported("blkio.weight_device"):
        hc["BlkioWeightDevice"] = []
    if hc.get("PidsLimit") is not None and hc["PidsLimit"] <= 0:
        hc["PidsLimit"] = None  # 0 and -1 both mean unlimited
    if hc.get("KernelMemory"):
        hc["KernelMemory"] = 0  # ignored since API 1.42


def blkio_supported(v1_file: str) -> bool:
    """Docker's sysinfo: on cgroup v1 the blkio file (blkio.weight needs the CFQ or BFQ I/O
    scheduler), on v2 the io controller."""
    from bosun.runtime.cgroups import UNIFIED, hierarchies

    try:
        mounts = hierarchies()
        if "blkio" in mounts:
            return os.path.exists(os.path.join(mounts["blkio"], v1_file))
        with open(os.path.join(mounts[UNIFIED], "cgroup.controllers")) as f:
            return "io" in f.read().split()
    except (OSError, KeyError):
        return False


def _uint_ranges(val: str) -> list[tuple[int, int]] | None:
    """Docker's ParseUintList syntax (0-3,5,7-8) as ranges; None when malformed."""
    out = []
    for part in val.split(",") if val else ():
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            return None
        out.append((int(m.group(1)), int(m.group(2) or m.group(1))))
    return out


_ONLINE = {"cpus": ("CPUs", "/sys/devices/system/cpu/online"),
           "mems": ("memory nodes", "/sys/devices/system/node/online")}


def _check_available(val: str, what: str) -> None:
    """The cpuset well-formed and on the host, as Docker checks it at create and update (else
    the cgroup write fails at start or update, a 500)."""
    wanted = _uint_ranges(val)
    if wanted is None:
        raise InvalidParameter(f"Invalid value {val} for cpuset {what}: invalid format: {val}")
    noun, path = _ONLINE[what]
    try:
        with open(path) as f:
            online = f.read().strip()
    except OSError:
        return  # not known here (no NUMA in the kernel): the cgroup will say
    have = _uint_ranges(online) or []
    for lo, hi in wanted:
        if not any(a <= lo and hi <= b for a, b in have):
            raise InvalidParameter(f"Requested {noun} are not available - requested {val}, "
                                   f"available: {online}")


def _ulimits(hc: dict) -> None:
    for ul in hc.get("Ulimits") or ():
        name = (ul or {}).get("Name")
        if name not in ULIMIT_NAMES:
            raise InvalidParameter(f"invalid ulimit type: {name}")
        soft, hard = ul.get("Soft", 0), ul.get("Hard", 0)
        if not isinstance(soft, int) or not isinstance(hard, int):
            raise InvalidParameter(f"invalid ulimit {name}: Soft and Hard must be integers")
        if _rlim(soft) > _rlim(hard):
            raise InvalidParameter(
                f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")


def _rlim(v: int) -> int:
    return 2**64 - 1 if v < 0 else v  # Docker hands -1 to the kernel as RLIM_INFINITY


# runconfig/errors.go: what a container:<id> network mode cannot be combined with
_PUBLISH = "conflicting options: port publishing and the container type network mode"
_NET_CONTAINER_CONFLICTS = (
    ("Links", ("conflicting options: container type network can't be used with links. "
               "This would result in undefined behavior")),
    ("Dns", "conflicting options: dns and the network mode"),
    ("ExtraHosts", "conflicting options: custom host-to-IP mapping and the network mode"),
    ("PortBindings", _PUBLISH),
    ("PublishAllPorts", _PUBLISH),
)
_HOST_NET_LINKS = ("conflicting options: host type networking can't be used with links. "
                   "This would result in undefined behavior")


def _container_ref(mode: str) -> str | None:
    return mode.split(":", 1)[1] if mode.startswith("container:") else None


def _namespace_modes(hc: dict, cgroups_v2: bool,
                     network_name: Callable[[str], str | None]) -> None:
    net = hc.get("NetworkMode") or ""
    if net in ("", "default"):
        net = "bridge"  # Docker >= 25 stores the daemon's default network by name
    ref = _container_ref(net)
    if ref is not None:
        if not ref:
            raise InvalidParameter(
                "Invalid network mode: invalid container format container:<name|id>")
        for key, err in _NET_CONTAINER_CONFLICTS:
            if hc.get(key):
                raise InvalidParameter(err)
    elif net == "host" and hc.get("Links"):
        raise InvalidParameter(_HOST_NET_LINKS)
    elif net not in ("bridge", "none", "host"):
        name = network_name(net)
        if name is None:
            raise NotFound(f"network {net} not found")
        net = name
    hc["NetworkMode"] = net

    ipc = hc.get("IpcMode") or "private"  # Docker's default since 20.10
    if not (ipc in ("private", "shareable", "host", "none") or _container_ref(ipc)):
        raise InvalidParameter(f"invalid IPC mode: {ipc}")
    hc["IpcMode"] = ipc
    pid = hc.get("PidMode") or ""
    if not (pid in ("", "host") or _container_ref(pid)):
        raise InvalidParameter(f"invalid PID mode: {pid}")
    hc["PidMode"] = pid
    # Docker has no container:<id> UTS mode: only the host's or the container's own.
    uts = hc.get("UTSMode") or ""
    if uts not in ("", "host"):
        raise InvalidParameter(f"invalid UTS mode: {uts}")
    hc["UTSMode"] = uts
    cgns = hc.get("CgroupnsMode") or ""
    if cgns not in ("", "private", "host"):
        raise InvalidParameter(f"invalid cgroup namespace mode: {cgns}")
    hc["CgroupnsMode"] = cgns or ("private" if cgroups_v2 else "host")


# -- mounts ------------------------------------------------------------------------------------

def _mount_error(typ: str, msg: str) -> InvalidParameter:
    return InvalidParameter(f'invalid mount config for type "{typ}": {msg}')


def _check_target(typ: str, target: str) -> None:
    if not target:
        raise _mount_error(typ, "field Target must not be empty")
    if clean_path(target) == "/":
        raise _mount_error(typ, "invalid specification: destination can't be '/'")
    if not target.startswith("/"):
        raise _mount_error(typ, f"invalid mount path: '{target}' mount path must be absolute")


def _valid_mode(mode: str) -> bool:
    """Docker's bind/volume mode string: at most one of each kind of option."""
    if not mode:
        return True
    kinds = {"rw": "rw", "ro": "rw", "z": "label", "Z": "label", "nocopy": "copy",
             "consistent": "consistency", "cached": "consistency", "delegated": "consistency",
             **{p: "propagation" for p in PROPAGATIONS}}
    seen: list[str] = []
    for o in mode.split(","):
        if o not in kinds or kinds[o] in seen:
            return False
        seen.append(kinds[o])
    return True


def parse_bind(raw: str) -> dict:
    """One HostConfig.Binds entry, "src:dst[:mode]" or "dst" (an anonymous volume), as Docker
    parses it: {"Type": bind|volume, "Source", "Destination", "RW", "Propagation"}. A relative
    source is a named volume."""
    parts = raw.split(":", 3)
    if not parts[0] or len(parts) > 3:
        raise InvalidParameter(f"invalid volume specification: '{raw}'")
    if len(parts) == 2 and _valid_mode(parts[1]):
        raise InvalidParameter(f"invalid volume specification: '{raw}'")  # "/foo:rw"
    src, dst, mode = ("", parts[0], "") if len(parts) == 1 else (parts + [""])[:3]
    if not _valid_mode(mode):
        raise InvalidParameter(f"invalid mode: {mode}")
    opts = mode.split(",") if mode else []
    typ = "bind" if src.startswith("/") else "volume"
    propagation = next((o for o in opts if o in PROPAGATIONS), "")
    try:
        _check_target(typ, dst)
        if typ == "bind" and "nocopy" in opts:
            raise _mount_error(typ, "field VolumeOptions must not be specified")
        if typ == "volume" and propagation:
            raise _mount_error(typ, "field BindOptions must not be specified")
        if typ == "volume" and not src and "ro" in opts:
            raise _mount_error(typ, "must not set ReadOnly mode when using anonymous volumes")
    except InvalidParameter as e:
        raise InvalidParameter(f"invalid volume specification: '{raw}': {e}") from None
    return {"Type": typ, "Source": clean_path(src) if typ == "bind" else src,
            "Destination": clean_path(dst), "RW": "ro" not in opts,
            "Propagation": propagation or ("rprivate" if typ == "bind" else "")}


def check_mount(m: dict) -> None:
    """One HostConfig.Mounts entry, as Docker validates it at create."""
    typ = m.get("Type") or ""
    for key, kind in (("VolumeOptions", "volume"), ("BindOptions", "bind"),
                      ("TmpfsOptions", "tmpfs")):
        if m.get(key) is not None and typ != kind:
            raise InvalidParameter(f'{key} must not be specified on mount type "{typ}"')
    _check_target(typ, m.get("Target") or "")
    src = m.get("Source") or ""
    if typ == "bind":
        if not src:
            raise _mount_error(typ, "field Source must not be empty")
        prop = (m.get("BindOptions") or {}).get("Propagation")
        if prop and prop not in PROPAGATIONS:
            raise _mount_error(typ, f"invalid propagation mode: {prop}")
        if not src.startswith("/"):
            raise _mount_error(typ, f"invalid mount path: '{src}' mount path must be absolute")
        bo = m.get("BindOptions") or {}
        for flag in ("ReadOnlyNonRecursive", "ReadOnlyForceRecursive"):
            if bo.get(flag) and not m.get("ReadOnly"):
                raise _mount_error(typ, f"option {flag} requires ReadOnly")
        if bo.get("ReadOnlyForceRecursive"):  # rro: mount_setattr(AT_RECURSIVE) in the runtime
            if bo.get("ReadOnlyNonRecursive"):
                raise _mount_error(typ, "option ReadOnlyForceRecursive conflicts with "
                                        "ReadOnlyNonRecursive")
            if bo.get("NonRecursive"):
                raise _mount_error(typ, "option ReadOnlyForceRecursive conflicts with "
                                        "NonRecursive")
            if bo.get("Propagation") not in (None, "", "rprivate"):
                raise _mount_error(typ, "option ReadOnlyForceRecursive requires Propagation "
                                        "rprivate")
        if not os.path.exists(src) and not (m.get("BindOptions") or {}).get("CreateMountpoint"):
            raise _mount_error(typ, f"bind source path does not exist: {src}")
    elif typ == "volume":
        if m.get("ReadOnly") and not src:
            raise _mount_error(typ, "must not set ReadOnly mode when using anonymous volumes")
        sub = (m.get("VolumeOptions") or {}).get("Subpath") or ""
        if sub and (sub.startswith("/") or clean_path(sub) == ".."
                    or clean_path(sub).startswith("../")):
            # Go's filepath.IsLocal: relative, and no `..` that climbs out
            raise _mount_error(typ, "subpath must be a relative path within the volume")
    elif typ == "tmpfs":
        if src:
            raise _mount_error(typ, "field Source must not be specified")
        try:
            tmpfs_data(m.get("TmpfsOptions"), bool(m.get("ReadOnly")))
        except InvalidParameter as e:
            raise _mount_error(typ, str(e)) from None
    else:
        raise _mount_error(typ, "mount type unknown")


def tmpfs_data(opts: dict | None, read_only: bool) -> str:
    """Docker's ConvertTmpfsOptions: TmpfsOptions → the data string of a --tmpfs mount."""
    out = ["ro"] if read_only else []
    opts = opts or {}
    if opts.get("Mode"):
        out.append(f"mode={opts['Mode']:o}")
    size = opts.get("SizeBytes") or 0
    if size:
        for suffix, div in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % div == 0:
                out.append(f"size={size // div}{suffix}")
                break
        else:
            out.append(f"size={size}")
    for opt in opts.get("Options") or ():
        if not isinstance(opt, list) or not 1 <= len(opt) <= 2:
            raise InvalidParameter("invalid option array length")
        if opt[0] not in ("exec", "noexec"):
            raise InvalidParameter(f"invalid option: {opt[0]}")
        out.append("=".join(opt))
    return ",".join(out)


# mount(8) flags by the key moby's MergeTmpfsOptions dedups them on (a flag and its negation
# share one); every propagation mode shares the key "propagation".
_FLAG_KEYS = {
    "ro": "rdonly", "rw": "rdonly", "suid": "nosuid", "nosuid": "nosuid", "dev": "nodev",
    "nodev": "nodev", "exec": "noexec", "noexec": "noexec", "sync": "sync", "async": "sync",
    "dirsync": "dirsync", "remount": "remount", "mand": "mand", "nomand": "mand",
    "atime": "noatime", "noatime": "noatime", "diratime": "nodiratime",
    "nodiratime": "nodiratime", "bind": "bind", "rbind": "rbind", "relatime": "relatime",
    "norelatime": "relatime", "strictatime": "strictatime", "nostrictatime": "strictatime",
    **{p: "propagation" for p in PROPAGATIONS + ("unbindable", "runbindable")},
}
_TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol")


def merge_tmpfs_options(options: list[str]) -> list[str]:
    """moby's MergeTmpfsOptions: the last of each flag (or data key) wins, in its place."""
    seen: set[str] = set()
    out: list[str] = []
    for opt in reversed(options):
        if opt == "defaults":
            continue
        key = _FLAG_KEYS.get(opt)
        if key is None:
            name, eq, _ = opt.partition("=")
            if not eq or name not in _TMPFS_DATA:
                shown = " ".join(_q(p) for p in opt.split("=", 1))
                raise InvalidParameter(f"Invalid tmpfs option [{shown}]")
            key = "=" + name
        if key not in seen:
            seen.add(key)
            out.insert(0, opt)
    return out


def check_mounts(hc: dict) -> None:
    """Binds, Mounts and Tmpfs: each valid, and no two on one destination."""
    dests: set[str] = set()

    def claim(dest: str, shown: str) -> None:
        if dest in dests:
            raise InvalidParameter(f"Duplicate mount point: {shown}")
        dests.add(dest)

    tmpfs = hc.get("Tmpfs") or {}
    for dest, data in tmpfs.items():
        if clean_path(dest) == "/":
            raise InvalidParameter("invalid specification: destination can't be '/'")
        if not dest.startswith("/"):
            raise InvalidParameter(f"invalid mount path: '{dest}' mount path must be absolute")
        merge_tmpfs_options(data.split(",") if data else [])
    for raw in hc.get("Binds") or ():
        b = parse_bind(raw)
        claim(b["Destination"], b["Destination"])
    for m in hc.get("Mounts") or ():
        check_mount(m)
        claim(clean_path(m["Target"]), m["Target"])
    for dest in tmpfs:
        claim(clean_path(dest), dest)


# -- devices, sysctls, capabilities, security options, logging ------------------------------------

_CGROUP_RULE = re.compile(r"([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})")


def _devices(hc: dict) -> None:
    devices = []
    for d in hc.get("Devices") or ():
        d = dict(d or {})
        host = d.get("PathOnHost") or ""
        if not host:
            raise InvalidParameter('error gathering device information while adding custom '
                                   'device "": no such file or directory')
        d["PathInContainer"] = d.get("PathInContainer") or host
        if not d["PathInContainer"].startswith("/"):
            raise InvalidParameter(f"{d['PathInContainer']} is not an absolute path")
        perms = d.get("CgroupPermissions") or "rwm"
        if any(c not in "rwm" for c in perms) or len(set(perms)) != len(perms):
            raise InvalidParameter(f"bad mode specified: {perms}")
        d["CgroupPermissions"] = perms
        devices.append(d)
    if hc.get("Devices") is not None:
        hc["Devices"] = devices
    for rule in hc.get("DeviceCgroupRules") or ():
        if not _CGROUP_RULE.fullmatch(rule or ""):
            raise InvalidParameter(f"invalid device cgroup format '{rule}'")


def _sysctls(hc: dict) -> None:
    """Only sysctls a namespace of the container's own scopes (runc's rules and wording)."""
    for key in hc.get("Sysctls") or {}:
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if hc["IpcMode"] == "host":
                raise InvalidParameter(
                    f"sysctl {_q(key)} is not allowed in the hosts ipc namespace")
        elif key.startswith("net."):
            if hc["NetworkMode"] == "host":
                raise InvalidParameter(f"sysctl {_q(key)} not allowed in host network namespace")
        elif key == "kernel.domainname":
            if hc["UTSMode"] == "host":
                raise InvalidParameter(f"sysctl {_q(key)} not allowed in host UTS namespace")
        else:
            raise InvalidParameter(f"sysctl {_q(key)} is not in a separate kernel namespace")


def known_capabilities() -> list[str]:
    """Every capability this kernel has, as Docker's GetAllCapabilities."""
    return list(capnames.NAMES[:K.last_cap() + 1])


def held_capabilities() -> list[str]:
    """The known capabilities this process holds (CapEff): what --privileged and --cap-add ALL
    give, as Docker (oci/caps) gives what the daemon has. A host that withheld some (a
    container host without CAP_SYS_RESOURCE) could not hand them on: capset fails. All the
    known ones when /proc cannot say."""
    known = known_capabilities()
    try:
        with open("/proc/self/status") as f:
            eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return known
    return [name for name in known if eff >> capnames.NUMBERS[name] & 1]


def normalize_capabilities(names: list[str] | None) -> list[str]:
    """CAP_-prefixed upper-case names ("ALL" kept); unknown ones are an error."""
    known = set(known_capabilities())
    out = []
    for c in names or ():
        c = c.upper()
        if c != "ALL":
            c = c if c.startswith("CAP_") else "CAP_" + c
            if c not in known:
                raise InvalidParameter(f"unknown capability: {_q(c)}")
        out.append(c)
    return out


def parse_security_opts(opts: list[str] | None) -> dict:
    """Docker's parseSecurityOpt: {"no_new_privileges": bool, "seccomp": None (default) |
    "unconfined" | a profile's JSON text}. Labels and AppArmor are accepted and ignored: this
    host has neither."""
    out = {"no_new_privileges": False, "seccomp": None}
    for opt in opts or ():
        if opt == "no-new-privileges":
            out["no_new_privileges"] = True
            continue
        if opt == "disable":
            continue
        if "=" in opt:
            key, _, value = opt.partition("=")
        elif ":" in opt:
            key, _, value = opt.partition(":")  # deprecated separator, still accepted
        else:
            raise InvalidParameter(f"invalid --security-opt 1: {_q(opt)}")
        if key in ("label", "apparmor"):
            continue
        if key == "seccomp":
            out["seccomp"] = _seccomp_opt(value)
        elif key == "no-new-privileges":
            b = _parse_bool(value)
            if b is None:
                raise InvalidParameter(f"invalid --security-opt 2: {_q(opt)}")
            out["no_new_privileges"] = b
        else:
            raise InvalidParameter(f"invalid --security-opt 2: {_q(opt)}")
    return out


def _seccomp_opt(value: str) -> str | None:
    if value in ("", "builtin"):
        return None
    if value == "unconfined":
        return value
    try:
        json.loads(value)
    except ValueError as e:
        raise InvalidParameter(f"Decoding seccomp profile failed: {e}") from None
    return value


def _parse_bool(v: str) -> bool | None:
    """Go's strconv.ParseBool."""
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _log_config(hc: dict) -> None:
    lc = dict(hc.get("LogConfig") or {})
    typ = lc.get("Type") or "json-file"
    cfg = dict(lc.get("Config") or {})
    if typ not in LOG_DRIVERS:
        raise InvalidParameter(f"logger: no log driver named '{typ}' is registered")
    mode = cfg.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise InvalidParameter(f"logger: logging mode not supported: {mode}")
    if "max-buffer-size" in cfg and mode != "non-blocking":
        raise InvalidParameter(
            "logger: max-buffer-size option is only supported with 'mode=non-blocking'")
    allowed = LOG_DRIVERS[typ]
    for key in cfg:
        if allowed is not None and key not in allowed + ("mode", "max-buffer-size"):
            raise InvalidParameter(f"unknown log opt '{key}' for {typ} log driver")
    hc["LogConfig"] = {"Type": typ, "Config": cfg}


# -- the user, resolved inside the root filesystem ------------------------------------------------

_MAX_DB = 64 << 20
_INT = re.compile(r"[+-]?\d+")


def resolve_user(rootfs: int | str, user: str | None,
                 group_add: list[str] | None = None) -> tuple[int, int, list[int]]:
    """Docker's (runc's GetExecUser) resolution of Config.User and HostConfig.GroupAdd against
    the container's /etc/passwd and /etc/group: (uid, gid, supplementary gids).

    `rootfs` is the root directory (a path or an open directory fd). The files are opened with
    openat2(RESOLVE_IN_ROOT), so a symlink in the image resolves inside the rootfs, never on the
    host; anything that is not a regular file counts as missing (as runc treats a file it cannot
    open), so a FIFO cannot block us."""
    own = isinstance(rootfs, str)
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if own else rootfs
    try:
        passwd = _read_db(rootfd, "etc/passwd")
        group = _read_db(rootfd, "etc/group")
    finally:
        if own:
            os.close(rootfd)
    uid, gid, sgids = _exec_user(user or "", passwd, group)
    if group_add:
        sgids += _additional_groups(group_add, group)
    unique: list[int] = []  # Docker may list a group twice; setgroups needs it once
    for g in sgids:
        if g not in unique:
            unique.append(g)
    return uid, gid, unique


def _read_db(rootfd: int, rel: str) -> list[list[str]] | None:
    try:
        fd = K.LINUX.openat2(rootfd, rel, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY,
                             K.RESOLVE_IN_ROOT | K.RESOLVE_NO_MAGICLINKS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_DB:
                raise SystemErr(f"/{rel} in the container is larger than {_MAX_DB >> 20} MiB")
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("utf-8", "replace")
    return [line.strip().split(":") for line in text.splitlines() if line.strip()]


def _field_int(fields: list[str], i: int) -> int:
    v = fields[i] if i < len(fields) else ""
    return int(v) if _INT.fullmatch(v) else 0  # runc: a bad number reads as 0


def _in_range(v: int) -> int:
    if not 0 <= v <= MAX_ID:
        raise SystemErr(f"uids and gids must be in range 0-{MAX_ID}")
    return v


def _exec_user(spec: str, passwd, group) -> tuple[int, int, list[int]]:
    fields = spec.split(":")
    user_arg, group_arg = fields[0], fields[1] if len(fields) > 1 else ""
    user_num = int(user_arg) if _INT.fullmatch(user_arg) else None
    uid, gid, sgids, matched = 0, 0, [], ""

    def is_user(f: list[str]) -> bool:
        if not user_arg:
            return _field_int(f, 2) == 0
        return _field_int(f, 2) == user_num if user_num is not None else f[0] == user_arg

    entry = next((f for f in passwd or () if is_user(f)), None)
    if entry is not None:
        matched, uid, gid = entry[0], _field_int(entry, 2), _field_int(entry, 3)
    elif user_arg:
        if user_num is None:
            raise SystemErr(f"unable to find user {user_arg}: no matching entries in passwd file")
        uid = _in_range(user_num)

    if group_arg:
        group_num = int(group_arg) if _INT.fullmatch(group_arg) else None
        g = next((f for f in group or ()
                  if (_field_int(f, 2) == group_num if group_num is not None
                      else f[0] == group_arg)), None)
        if g is not None:
            gid = _field_int(g, 2)
        elif group_num is None:
            raise SystemErr(
                f"unable to find group {group_arg}: no matching entries in group file")
        else:
            gid = _in_range(group_num)
    elif matched:
        # The implicit form: the user's supplementary groups from /etc/group.
        sgids = [_field_int(f, 2) for f in group or ()
                 if matched in (f[3].split(",") if len(f) > 3 else ())]
    return uid, gid, sgids


def _additional_groups(names: list[str], group) -> list[int]:
    out = []
    for name in names:
        g = next((f for f in group or () if f[0] == name or str(_field_int(f, 2)) == name),
                 None)
        if g is not None:
            out.append(_field_int(g, 2))
        elif _INT.fullmatch(name):
            out.append(_in_range(int(name)))
        else:
            raise SystemErr(f"Unable to find group {name}")
    return out
