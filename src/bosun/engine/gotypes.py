"""Go's json.Unmarshal type rules for request bodies, with its error wording.

dockerd decodes a body into Go structs, so a value of the wrong JSON type is refused up front
("json: cannot unmarshal string into Go struct field ContainerConfigWrapper.Env of type
[]string", an invalid-parameter error) and the code after it only ever sees well-typed values.
`check(body, SCHEMA, "Wrapper")` does the same here: it raises InvalidParameter for the first
misfit and returns the body with Docker's lenient types normalized (a StrSlice given as one
string becomes a list). null is a Go zero value and passes; unknown keys are ignored, as Go
does.

A schema is a Go type name ("string", "bool", "int64", "uint16", ...), `List(elem)`,
`Map(elem)`, `STRSLICE`, `ANY`, or a `Struct` of field name → schema.
"""

from __future__ import annotations

from typing import Any

from bosun.engine.errors import InvalidParameter

_INT_RANGES = {
    "int": (-(1 << 63), (1 << 63) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1), "uint": (0, (1 << 64) - 1),
    "uint64": (0, (1 << 64) - 1), "uint32": (0, (1 << 32) - 1), "uint16": (0, (1 << 16) - 1),
}


class List:
    __slots__ = ("elem", "go")

    def __init__(self, elem: Any, go: str | None = None):
        self.elem, self.go = elem, go or f"[]{_go_name(elem)}"


class Map:
    __slots__ = ("elem", "go")

    def __init__(self, elem: Any, go: str | None = None):
        self.elem, self.go = elem, go or f"map[string]{_go_name(elem)}"


class Struct:
    __slots__ = ("fields", "go")

    def __init__(self, go: str, fields: dict[str, Any]):
        self.go, self.fields = go, fields


STRSLICE = "strslice.StrSlice"  # a string or a list of strings
ANY = "interface {}"
EMPTY = Struct("struct {}", {})


def _go_name(schema: Any) -> str:
    return schema if isinstance(schema, str) else schema.go


def _json_kind(value: Any) -> str:
    """What Go calls the JSON value in its error (numbers with their text)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def check(value: Any, schema: Any, struct: str, path: str = "") -> Any:
    """`value` checked against `schema`; the normalized value. `struct` and `path` name the
    field in the error as Go does ("ContainerConfigWrapper" + "HostConfig.Memory")."""
    if value is None or schema == ANY:
        return value

    def misfit() -> InvalidParameter:
        where = f"Go struct field {struct}.{path} of type" if path else "Go value of type"
        return InvalidParameter(f"json: cannot unmarshal {_json_kind(value)} into {where} "
                                f"{_go_name(schema)}")

    if isinstance(schema, Struct):
        if not isinstance(value, dict):
            raise misfit()
        out = dict(value)
        for key, sub in schema.fields.items():
            if key in value:
                out[key] = check(value[key], sub, struct, f"{path}.{key}" if path else key)
        return out
    if isinstance(schema, List):
        if not isinstance(value, list):
            raise misfit()
        return [_element(v, schema.elem, struct, path) for v in value]
    if isinstance(schema, Map):
        if not isinstance(value, dict):
            raise misfit()
        return {k: _element(v, schema.elem, struct, path) for k, v in value.items()}
    if schema == STRSLICE:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise misfit()
        return value
    if schema == "string":
        if not isinstance(value, str):
            raise misfit()
        return value
    if schema == "bool":
        if not isinstance(value, bool):
            raise misfit()
        return value
    lo, hi = _INT_RANGES[schema]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise misfit()
    return value


def _element(value: Any, schema: Any, struct: str, path: str) -> Any:
    """A list or map element: null is the element type's zero value there (Go's "" or 0; an
    empty struct or list, where Go would have a nil pointer the code after it trips on)."""
    if value is None and schema != ANY:
        if isinstance(schema, Struct | Map):
            return {}
        if isinstance(schema, List) or schema == STRSLICE:
            return []
        return {"string": "", "bool": False}.get(schema, 0)
    return check(value, schema, struct, path)


# --- Docker's types (API 1.47) ----------------------------------------------------------------

_STRS = List("string")
_STR_MAP = Map("string")

HEALTHCHECK = Struct("container.HealthConfig", {
    "Test": _STRS, "Interval": "int64", "Timeout": "int64", "StartPeriod": "int64",
    "StartInterval": "int64", "Retries": "int"})

CONFIG_FIELDS: dict[str, Any] = {
    "Hostname": "string", "Domainname": "string", "User": "string", "AttachStdin": "bool",
    "AttachStdout": "bool", "AttachStderr": "bool", "ExposedPorts": Map(EMPTY, "nat.PortSet"),
    "Tty": "bool", "OpenStdin": "bool", "StdinOnce": "bool", "Env": _STRS, "Cmd": STRSLICE,
    "Healthcheck": HEALTHCHECK, "ArgsEscaped": "bool", "Image": "string",
    "Volumes": Map(EMPTY), "WorkingDir": "string", "Entrypoint": STRSLICE,
    "NetworkDisabled": "bool", "MacAddress": "string", "OnBuild": _STRS, "Labels": _STR_MAP,
    "StopSignal": "string", "StopTimeout": "int", "Shell": STRSLICE,
}

_THROTTLE = List(Struct("blkiodev.ThrottleDevice", {"Path": "string", "Rate": "uint64"}),
                 "[]*blkiodev.ThrottleDevice")

RESOURCES_FIELDS: dict[str, Any] = {
    "CpuShares": "int64", "Memory": "int64", "NanoCpus": "int64", "CgroupParent": "string",
    "BlkioWeight": "uint16",
    "BlkioWeightDevice": List(Struct("blkiodev.WeightDevice",
                                     {"Path": "string", "Weight": "uint16"}),
                              "[]*blkiodev.WeightDevice"),
    "BlkioDeviceReadBps": _THROTTLE, "BlkioDeviceWriteBps": _THROTTLE,
    "BlkioDeviceReadIOps": _THROTTLE, "BlkioDeviceWriteIOps": _THROTTLE,
    "CpuPeriod": "int64", "CpuQuota": "int64", "CpuRealtimePeriod": "int64",
    "CpuRealtimeRuntime": "int64", "CpusetCpus": "string", "CpusetMems": "string",
    "Devices": List(Struct("container.DeviceMapping", {
        "PathOnHost": "string", "PathInContainer": "string", "CgroupPermissions": "string"})),
    "DeviceCgroupRules": _STRS,
    "DeviceRequests": List(Struct("container.DeviceRequest", {
        "Driver": "string", "Count": "int", "DeviceIDs": _STRS,
        "Capabilities": List(_STRS), "Options": _STR_MAP})),
    "KernelMemory": "int64", "KernelMemoryTCP": "int64", "MemoryReservation": "int64",
    "MemorySwap": "int64", "MemorySwappiness": "int64", "OomKillDisable": "bool",
    "PidsLimit": "int64",
    "Ulimits": List(Struct("units.Ulimit", {"Name": "string", "Hard": "int64",
                                            "Soft": "int64"}), "[]*units.Ulimit"),
    "CpuCount": "int64", "CpuPercent": "int64", "IOMaximumIOps": "uint64",
    "IOMaximumBandwidth": "uint64",
}

MOUNT = Struct("mount.Mount", {
    "Type": "string", "Source": "string", "Target": "string", "ReadOnly": "bool",
    "Consistency": "string",
    "BindOptions": Struct("mount.BindOptions", {
        "Propagation": "string", "NonRecursive": "bool", "CreateMountpoint": "bool",
        "ReadOnlyNonRecursive": "bool", "ReadOnlyForceRecursive": "bool"}),
    "VolumeOptions": Struct("mount.VolumeOptions", {
        "NoCopy": "bool", "Labels": _STR_MAP, "Subpath": "string",
        "DriverConfig": Struct("mount.Driver", {"Name": "string", "Options": _STR_MAP})}),
    "TmpfsOptions": Struct("mount.TmpfsOptions", {
        "SizeBytes": "int64", "Mode": "uint32", "Options": List(_STRS)}),
})

_RESTART_POLICY = Struct("container.RestartPolicy", {"Name": "string",
                                                     "MaximumRetryCount": "int"})

HOST_CONFIG = Struct("container.HostConfig", {
    **RESOURCES_FIELDS,
    "Binds": _STRS, "ContainerIDFile": "string",
    "LogConfig": Struct("container.LogConfig", {"Type": "string", "Config": _STR_MAP}),
    "NetworkMode": "string",
    "PortBindings": Map(List(Struct("nat.PortBinding", {"HostIp": "string",
                                                        "HostPort": "string"})), "nat.PortMap"),
    "RestartPolicy": _RESTART_POLICY,
    "AutoRemove": "bool", "VolumeDriver": "string", "VolumesFrom": _STRS,
    "ConsoleSize": List("uint", "[2]uint"), "Annotations": _STR_MAP, "CapAdd": STRSLICE,
    "CapDrop": STRSLICE, "CgroupnsMode": "string", "Dns": _STRS, "DnsOptions": _STRS,
    "DnsSearch": _STRS, "ExtraHosts": _STRS, "GroupAdd": _STRS, "IpcMode": "string",
    "Cgroup": "string", "Links": _STRS, "OomScoreAdj": "int", "PidMode": "string",
    "Privileged": "bool", "PublishAllPorts": "bool", "ReadonlyRootfs": "bool",
    "SecurityOpt": _STRS, "StorageOpt": _STR_MAP, "Tmpfs": _STR_MAP, "UTSMode": "string",
    "UsernsMode": "string", "ShmSize": "int64", "Sysctls": _STR_MAP, "Runtime": "string",
    "Isolation": "string", "Mounts": List(MOUNT), "MaskedPaths": _STRS,
    "ReadonlyPaths": _STRS, "Init": "bool",
})

ENDPOINT_SETTINGS = Struct("network.EndpointSettings", {
    "IPAMConfig": Struct("network.EndpointIPAMConfig", {
        "IPv4Address": "string", "IPv6Address": "string", "LinkLocalIPs": _STRS}),
    "Links": _STRS, "Aliases": _STRS, "MacAddress": "string", "DriverOpts": _STR_MAP,
    "NetworkID": "string", "EndpointID": "string", "Gateway": "string",
    "IPAddress": "string", "IPPrefixLen": "int", "IPv6Gateway": "string",
    "GlobalIPv6Address": "string", "GlobalIPv6PrefixLen": "int", "DNSNames": _STRS,
})

UPDATE_CONFIG = Struct("container.UpdateConfig", {**RESOURCES_FIELDS,
                                                  "RestartPolicy": _RESTART_POLICY})

CONTAINER_CREATE = Struct("ContainerConfigWrapper", {
    **CONFIG_FIELDS,
    "HostConfig": HOST_CONFIG,
    "NetworkingConfig": Struct("network.NetworkingConfig", {
        "EndpointsConfig": Map(ENDPOINT_SETTINGS, "map[string]*network.EndpointSettings")}),
})

NETWORK_CREATE = Struct("network.CreateRequest", {
    "Name": "string", "CheckDuplicate": "bool", "Driver": "string", "Scope": "string",
    "EnableIPv4": "bool", "EnableIPv6": "bool",
    "IPAM": Struct("network.IPAM", {
        "Driver": "string", "Options": _STR_MAP,
        "Config": List(Struct("network.IPAMConfig", {
            "Subnet": "string", "IPRange": "string", "Gateway": "string",
            "AuxiliaryAddresses": _STR_MAP}))}),
    "Internal": "bool", "Attachable": "bool", "Ingress": "bool", "ConfigOnly": "bool",
    "ConfigFrom": Struct("network.ConfigReference", {"Network": "string"}),
    "Options": _STR_MAP, "Labels": _STR_MAP,
})

NETWORK_CONNECT = Struct("network.ConnectOptions", {
    "Container": "string", "EndpointConfig": ENDPOINT_SETTINGS})

NETWORK_DISCONNECT = Struct("network.DisconnectOptions", {"Container": "string",
                                                          "Force": "bool"})

VOLUME_CREATE = Struct("volume.CreateOptions", {
    "Name": "string", "Driver": "string", "DriverOpts": _STR_MAP, "Labels": _STR_MAP,
})

AUTH_CONFIG = Struct("registry.AuthConfig", {
    key: "string" for key in ("username", "password", "auth", "email", "serveraddress",
                              "identitytoken", "registrytoken")})

EXEC_CREATE = Struct("ExecConfig", {
    "User": "string", "Privileged": "bool", "Tty": "bool", "ConsoleSize": List("uint", "*[2]uint"),
    "AttachStdin": "bool", "AttachStderr": "bool", "AttachStdout": "bool",
    "DetachKeys": "string", "Env": _STRS, "WorkingDir": "string", "Cmd": STRSLICE,
})

EXEC_START = Struct("ExecStartCheck", {
    "Detach": "bool", "Tty": "bool", "ConsoleSize": List("uint", "*[2]uint"),
})
