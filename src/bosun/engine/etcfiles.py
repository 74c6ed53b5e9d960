"""The /etc/hostname, /etc/hosts and /etc/resolv.conf the engine bind-mounts into a container,
generated as Docker generates them."""

from __future__ import annotations

import os

from bosun.runtime.state import atomic_write

_HOSTS_BASE = ("127.0.0.1\tlocalhost\n"
               "::1\tlocalhost ip6-localhost ip6-loopback\n"
               "fe00::0\tip6-localnet\n"
               "ff00::0\tip6-mcastprefix\n"
               "ff02::1\tip6-allnodes\n"
               "ff02::2\tip6-allrouters\n")
_DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


HOST_GATEWAY = "host-gateway"  # --add-host NAME:host-gateway: the host, as seen from bridges


def hosts(host_config: dict, extra_lines: list[str] = (), host_gateway: str | None = None
          ) -> str:
    if host_config.get("NetworkMode") == "host":
        text = _read("/etc/hosts") or _HOSTS_BASE
    else:
        text = _HOSTS_BASE + "".join(f"{line}\n" for line in extra_lines)
    for entry in host_config.get("ExtraHosts") or ():
        name, sep, addr = entry.partition(":")
        if not sep:  # API 1.44+ clients may send NAME=ADDR
            name, sep, addr = entry.partition("=")
        if addr == HOST_GATEWAY:
            if not host_gateway:
                raise ValueError("unable to derive the IP value for host-gateway")
            addr = host_gateway
        if sep and addr:
            text += f"{addr}\t{name}\n"
    return text


def _host_resolv() -> tuple[list[str], list[str], list[str]]:
    """The host's nameservers, search domains and options."""
    servers, search, options = [], [], []
    for line in _read("/etc/resolv.conf").splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options = words[1:]
    return servers, search, options


def nameservers(host_config: dict) -> list[str]:
    """The embedded DNS's upstreams: --dns, else all the host's (it forwards from the host's
    namespace, where loopback resolvers are reachable)."""
    return list(host_config.get("Dns") or _host_resolv()[0])


def resolv_conf(host_config: dict, internal_dns: bool = False) -> str:
    """The host's resolv.conf with loopback nameservers dropped (unreachable from a network
    namespace), Docker's public defaults if none is left, and the container's --dns* flags.
    `internal_dns`: the embedded DNS's 127.0.0.11 instead, the real servers in a comment
    (Docker's "ExtServers"), and ndots:0 unless set (Docker's, so that single-label
    container names are not first tried with each search domain)."""
    servers, search, options = _host_resolv()
    if host_config.get("NetworkMode") != "host" and not internal_dns:
        servers = [s for s in servers if not (s.startswith("127.") or s == "::1")]
        if not servers:
            servers = list(_DEFAULT_DNS)
    if host_config.get("Dns"):
        servers = list(host_config["Dns"])
    if host_config.get("DnsSearch"):
        search = list(host_config["DnsSearch"])
    if host_config.get("DnsOptions"):
        options = list(host_config["DnsOptions"])
    if internal_dns:
        upstream = servers
        servers = ["127.0.0.11"]
        if not any(o.startswith("ndots:") for o in options):
            options = [*options, "ndots:0"]
    out = [f"nameserver {s}" for s in servers]
    if search and search != ["."]:
        out.append("search " + " ".join(search))
    if options:
        out.append("options " + " ".join(options))
    if internal_dns:
        out += ["", f"# ExtServers: [{' '.join(upstream)}]"]
    return "\n".join(out) + "\n"


def rewrite(path: str, text: str) -> None:
    """Replace a file a running container has bind-mounted: in place (same inode), as an
    atomic rename would leave the container looking at the old file."""
    with open(path, "r+") as f:
        f.truncate(0)
        f.write(text)


def paths(directory: str) -> dict[str, str]:
    """The three files' paths in a container's `directory`, by inspect key."""
    return {"HostnamePath": os.path.join(directory, "hostname"),
            "HostsPath": os.path.join(directory, "hosts"),
            "ResolvConfPath": os.path.join(directory, "resolv.conf")}


def write_all(directory: str, hostname: str, host_config: dict,
              own_lines: list[str] = (), internal_dns: bool = False,
              host_gateway: str | None = None) -> dict[str, str]:
    """Write the three files into `directory` (at each start, as Docker rebuilds them then:
    edits made inside a container last until it restarts); return their paths. `own_lines`
    are the container's own addresses ("<ip>\t<hostname>") on its networks; host_gateway
    the address `host-gateway` stands for (the default bridge's gateway, as Docker's).

    Atomic but not fsync'd: they are derived from the container's record and rewritten by
    the next start, so a crash cannot lose anything that start would not rebuild."""
    out = paths(directory)
    atomic_write(out["HostnamePath"], f"{hostname}\n".encode(), 0o644, durable=False)
    atomic_write(out["HostsPath"], hosts(host_config, own_lines, host_gateway).encode(), 0o644,
                 durable=False)
    atomic_write(out["ResolvConfPath"], resolv_conf(host_config, internal_dns).encode(), 0o644,
                 durable=False)
    return out
