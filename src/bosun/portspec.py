"""go-connections' nat.ParsePortSpec: docker's `ip:hostPort:containerPort/proto` syntax, as
`-p` (the CLI) and EXPOSE (commit/import changes) both use it. A leaf module: no imports
from the rest of bosun."""

from __future__ import annotations

PROTOCOLS = ("tcp", "udp", "sctp")


class PortSpecError(ValueError):
    """A spec docker refuses; str() is docker's wording."""


def port_range(text: str) -> tuple[int, int]:
    """nat.ParsePortRange: "80" or "8000-8010" → (first, last); ValueError if bad."""
    if text == "":
        raise ValueError("empty")
    start_s, dash, end_s = text.partition("-")
    if dash and "-" in end_s:
        end_s = end_s.split("-")[0]
    start = _number(start_s)
    end = _number(end_s) if dash else start
    if end < start:
        raise ValueError("range")
    return start, end


def _number(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(text)
    value = int(text)
    if value > 0xFFFF:
        raise ValueError(text)
    return value


def parse(raw: str) -> list[tuple[str, str, str]]:
    """(container port "80/tcp", host IP, host port) for each port of the spec; the host port
    is "" when not given, and a range ("8000-8010") when one container port may take any
    port of a host range."""
    import ipaddress

    parts = raw.split(":")
    container = parts[-1]
    ip = host = ""
    if len(parts) == 2:
        host = parts[0]
    elif len(parts) >= 3:  # an IPv6 address has colons of its own
        ip, host = ":".join(parts[:-2]), parts[-2]
    proto_parts = container.split("/")
    if not container or not proto_parts[0]:
        proto, container = "", ""
    elif len(proto_parts) == 1:
        proto = "tcp"
    elif not proto_parts[1]:
        proto, container = "tcp", proto_parts[0]
    else:
        proto, container = proto_parts[1], proto_parts[0]
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise PortSpecError(f"invalid IP address: {ip}") from None
    if not container:
        raise PortSpecError(f"no port specified: {raw}<empty>")
    try:
        start, end = port_range(container)
    except ValueError:
        raise PortSpecError(f"invalid containerPort: {container}") from None
    hstart = hend = 0
    if host:
        try:
            hstart, hend = port_range(host)
        except ValueError:
            raise PortSpecError(f"invalid hostPort: {host}") from None
        if end - start != hend - hstart and end != start:
            raise PortSpecError(f"invalid ranges specified for container and host Ports: "
                                f"{container} and {host}")
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise PortSpecError(f"invalid proto: {proto}")
    out = []
    for i in range(end - start + 1):
        host_port = str(hstart + i) if host else ""
        if host and start == end and hstart != hend:
            host_port = f"{hstart}-{hend}"
        out.append((f"{start + i}/{proto}", ip, host_port))
    return out
