"""docker's -p/--publish and --expose (go-connections' nat syntax, bosun.portspec) into the
create body's ExposedPorts and HostConfig.PortBindings."""

from __future__ import annotations

from bosun.portspec import PROTOCOLS, PortSpecError, parse, port_range


class PortError(PortSpecError):
    """A -p or --expose value docker's CLI refuses; the command adds its usage hint."""


def parse_publish(specs: list[str], exposed: dict, bindings: dict) -> None:
    """Add each -p spec's ports to exposed ({"80/tcp": {}}) and bindings
    ({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}), as docker's CLI does."""
    for spec in specs:
        try:
            ports = parse(spec)
        except PortSpecError as e:
            raise PortError(str(e)) from None
        for key, ip, host_port in ports:
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": host_port})


def parse_expose(specs: list[str], exposed: dict) -> None:
    """--expose 80, 7000-7010/udp."""
    for spec in specs:
        port, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in PROTOCOLS:
            raise PortError(f"invalid proto: {proto}")
        try:
            lo, hi = port_range(port)
        except ValueError:  # docker quotes Go's parse error here
            raise PortError(f"invalid range format for --expose: {spec}, error: "
                            f'strconv.ParseUint: parsing "{port}": invalid syntax') from None
        for c in range(lo, hi + 1):
            exposed[f"{c}/{proto}"] = {}
