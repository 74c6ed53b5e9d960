"""docker's -p/--publish and --expose (go-connections' nat syntax, bosun.portspec) into the
create body's ExposedPorts and HostConfig.PortBindings."""

from __future__ import annotations

from bosun.portspec import PROTOCOLS, PortSpecError, parse, port_range


def parse_publish(specs: list[str], exposed: dict, bindings: dict) -> None:
    """Add each -p spec's ports to exposed ({"80/tcp": {}}) and bindings
    ({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}), as docker's CLI does; PortSpecError
    (a ValueError) with docker's words for a bad one."""
    for spec in specs:
        for key, ip, host_port in parse(spec):
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": host_port})


def parse_expose(specs: list[str], exposed: dict) -> None:
    """--expose 80, 7000-7010/udp."""
    for spec in specs:
        port, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in PROTOCOLS:
            raise PortSpecError(f"invalid proto: {proto}")
        try:
            lo, hi = port_range(port)
        except ValueError:  # docker quotes Go's parse error here
            raise PortSpecError(f"invalid range format for --expose: {spec}, error: "
                            f'strconv.ParseUint: parsing "{port}": invalid syntax') from None
        for c in range(lo, hi + 1):
            exposed[f"{c}/{proto}"] = {}
