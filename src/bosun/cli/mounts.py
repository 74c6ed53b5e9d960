"""docker's --mount (cli/opts/mount.go), --ulimit and --health-* flags as create-body fields.
Each parser raises ValueError with docker's reason; the caller words it as a flag error."""

from __future__ import annotations

# getrlimit names docker's units.ParseUlimit knows
ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
           "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
_TRUE, _FALSE = ("1", "t", "true"), ("0", "f", "false")  # Go's strconv.ParseBool
# --mount keys taken as they are: key → (which options object, "" for the mount, its field)
_STRINGS = {"source": ("", "Source"), "src": ("", "Source"), "target": ("", "Target"),
            "dst": ("", "Target"), "destination": ("", "Target"),
            "consistency": ("", "Consistency"), "bind-propagation": ("bind", "Propagation"),
            "volume-subpath": ("volume", "Subpath")}
_BOOLS = {"readonly": ("", "ReadOnly"), "ro": ("", "ReadOnly"),
          "bind-nonrecursive": ("bind", "NonRecursive"), "volume-nocopy": ("volume", "NoCopy")}
_RECURSIVE = {"enabled": None, "disabled": "NonRecursive", "writable": "ReadOnlyNonRecursive",
              "readonly": "ReadOnlyForceRecursive"}


def _bool(key: str, value: str | None) -> bool:
    if value is None:  # a bare `readonly` or `volume-nocopy`
        return True
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def parse_mount(spec: str) -> dict:
    """One --mount value as a HostConfig.Mounts entry."""
    import csv

    from bosun.gosyntax import ram_in_bytes

    fields = next(csv.reader([spec]), [])
    m: dict = {"Type": "volume"}
    bind: dict = {}
    volume: dict = {}
    tmpfs: dict = {}
    parts = {"": m, "bind": bind, "volume": volume}
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        val = value if eq else None
        if not eq and key not in _BOOLS:
            raise ValueError(f"invalid field '{field}' must be a key=value pair")
        simple = _STRINGS.get(key)
        flag = _BOOLS.get(key)
        if key == "type":
            m["Type"] = value.lower()
        elif simple:
            if key in ("source", "src") and (value == "." or value.startswith("./")):
                import os

                value = os.path.abspath(value)  # docker's CLI resolves ./x against $PWD
            parts[simple[0]][simple[1]] = value
        elif flag:
            parts[flag[0]][flag[1]] = _bool(key, val)
        elif key == "bind-recursive":
            if value not in _RECURSIVE:
                raise ValueError(f"invalid value for {key}: {value} (must be \"enabled\", "
                                 "\"disabled\", \"writable\", or \"readonly\")")
            if _RECURSIVE[value]:
                bind[_RECURSIVE[value]] = True
        elif key == "volume-label":
            k, _, v = value.partition("=")
            volume.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, eq2, v = value.partition("=")
            if not eq2:
                raise ValueError(f"invalid value for {key}: {value}")
            volume.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "tmpfs-size":
            try:
                tmpfs["SizeBytes"] = ram_in_bytes(value)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {value}") from None
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(value, 8)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {value}") from None
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    typ = m["Type"]
    if bind.get("ReadOnlyForceRecursive") and bind.get("Propagation") != "rprivate":
        raise ValueError("option 'bind-recursive=readonly' requires 'bind-propagation=rprivate'"
                         " to be specified in conjunction")
    if not m.get("Target"):
        raise ValueError("target is required")
    for opts, kind, name in ((bind, "bind", "bind"), (volume, "volume", "volume"),
                             (tmpfs, "tmpfs", "tmpfs")):
        if opts and typ != kind:
            raise ValueError(f"cannot mix '{name}-*' options with mount type '{typ}'")
    if bind:
        m["BindOptions"] = bind
    if volume:
        m["VolumeOptions"] = volume
    if tmpfs:
        m["TmpfsOptions"] = tmpfs
    return m


def parse_ulimit(spec: str) -> dict:
    """name=soft[:hard] (units.ParseUlimit)."""
    name, eq, limits = spec.partition("=")
    if not eq:
        raise ValueError(f"invalid ulimit argument: {spec}")
    if name not in ULIMITS:
        raise ValueError(f"invalid ulimit type: {name}")
    soft_s, colon, hard_s = limits.partition(":")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if colon else soft
    except ValueError:
        raise ValueError(f"invalid ulimit argument: {spec}") from None
    if soft > hard:
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: "
                         f"{soft} > {hard}")
    return {"Name": name, "Soft": soft, "Hard": hard}


HEALTH_DURATIONS = (("health-interval", "Interval"), ("health-timeout", "Timeout"),
                    ("health-start-period", "StartPeriod"),
                    ("health-start-interval", "StartInterval"))


def healthcheck(opts: dict) -> dict | None:
    """Config.Healthcheck from --health-cmd, --health-* and --no-healthcheck; None if none
    is given (the image's stays)."""
    from bosun.gosyntax import GoSyntaxError, parse_duration

    given = {field: opts[flag] for flag, field in HEALTH_DURATIONS if opts[flag] is not None}
    if opts["no-healthcheck"]:
        if opts["health-cmd"] or given or opts["health-retries"]:
            raise ValueError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not (opts["health-cmd"] or given or opts["health-retries"]):
        return None
    check: dict = {}
    if opts["health-cmd"]:
        check["Test"] = ["CMD-SHELL", opts["health-cmd"]]
    for flag, field in HEALTH_DURATIONS:
        text = opts[flag]
        if text is None:
            continue
        try:
            ns = parse_duration(text)
        except GoSyntaxError as e:
            from bosun.cli.flags import FlagValue

            raise FlagValue(f"--{flag}", text, str(e)) from None
        if ns < 0:
            raise ValueError(f"--{flag} cannot be negative")
        check[field] = ns
    if opts["health-retries"]:
        if opts["health-retries"] < 0:
            raise ValueError("--health-retries cannot be negative")
        check["Retries"] = opts["health-retries"]
    return check
