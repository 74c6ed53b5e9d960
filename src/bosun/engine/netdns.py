"""The engine's side of the embedded DNS (bosun.network.dns): what a container's names are on
each network, and when its listener on 127.0.0.11 opens and closes.

A container uses the resolver when it starts (or is connected, running) on a user-defined
network; `c.meta["dns"]` records that, so that a daemon restarted with live-restore reopens
its listener, and its resolv.conf keeps pointing at 127.0.0.11 until it stops. The default
`bridge` network has no DNS, as Docker's. Callers hold the container's lock.
"""

from __future__ import annotations

import logging

from bosun.engine.netattach import DEFAULT_NETWORK, NetworkSetupFailed, hosts_lines, uses_bridge

log = logging.getLogger("bosun.engine")


def dns_names(c, aliases) -> list[str]:
    """The names the container answers to on a user network (Docker's DNSNames)."""
    return list(dict.fromkeys([c.name, *aliases, c.id[:12]]))


def wants_resolver(c) -> bool:
    return uses_bridge(c.doc["HostConfig"]) and any(
        name != DEFAULT_NETWORK for name in c.doc["NetworkSettings"].get("Networks") or {})


def shares_resolver(engine, c) -> bool:
    """Whether a container:<id> container joins the namespace of one using the resolver
    (its queries to 127.0.0.11 reach that one's listener, so it gets the same resolv.conf)."""
    mode = c.doc["HostConfig"].get("NetworkMode") or ""
    if not mode.startswith("container:"):
        return False
    try:
        return bool(engine.get(mode.split(":", 1)[1]).meta.get("dns"))
    except Exception:  # noqa: BLE001  (start reports a missing container itself)
        return False


def _links(engine, c) -> dict[str, object]:
    """HostConfig.Links ("name:alias", or Docker's stored "/name:/me/alias") → alias →
    the target container."""
    out = {}
    for link in c.doc["HostConfig"].get("Links") or ():
        name, _, alias = link.partition(":")
        try:
            target = engine.get(name.lstrip("/"))
        except Exception:  # noqa: BLE001  (a link to a container removed since)
            continue
        out[alias.rsplit("/", 1)[-1] or target.name] = target
    return out


def etc_hosts_lines(engine, c) -> list[str]:
    """/etc/hosts lines: the container's own addresses, and on the default bridge (where
    there is no DNS) Docker's lines for its links: "<ip>\t<alias> <hostname> <name>"."""
    lines = hosts_lines(c)
    if DEFAULT_NETWORK not in (c.doc["NetworkSettings"].get("Networks") or {}):
        return lines
    for alias, target in _links(engine, c).items():
        ep = (target.doc["NetworkSettings"].get("Networks") or {}).get(DEFAULT_NETWORK) or {}
        if ep.get("IPAddress"):
            names = dict.fromkeys([alias, target.doc["Config"].get("Hostname") or "",
                                   target.name])
            lines.append(f"{ep['IPAddress']}\t{' '.join(n for n in names if n)}")
    return lines


def _upstreams(engine, c) -> list[tuple[str, int]]:
    """Where names that are not containers' go: --dns, else the host's resolvers; nowhere
    from a container on internal networks only (they have no way out)."""
    from bosun.engine import etcfiles

    nets = [n for n in c.doc["NetworkSettings"].get("Networks") or {} if n != DEFAULT_NETWORK]
    try:
        internal = bool(nets) and all(engine.networks.get(n).internal for n in nets)
    except Exception:  # noqa: BLE001  (a network removed meanwhile)
        internal = False
    if internal and DEFAULT_NETWORK not in (c.doc["NetworkSettings"].get("Networks") or {}):
        return []
    return [(ip, 53) for ip in etcfiles.nameservers(c.doc["HostConfig"])]


def register(engine, c) -> None:
    """Publish the container's current endpoints and links in the name table (dropping those
    it no longer has), refresh DNSNames, and open its listener if it uses the resolver."""
    table = engine.dns.table
    current = set()
    for net_name, ep in (c.doc["NetworkSettings"].get("Networks") or {}).items():
        if net_name == DEFAULT_NETWORK or not ep or not ep.get("IPAddress"):
            continue
        ep["DNSNames"] = dns_names(c, ep.get("Aliases") or ())
        table.set_endpoint(c.id, ep["NetworkID"], net_name, ep["IPAddress"], ep["DNSNames"],
                           ep.get("GlobalIPv6Address") or None)
        current.add(ep["NetworkID"])
    for net_id in table.networks_of(c.id) - current:
        table.remove_endpoint(c.id, net_id)
    table.set_links(c.id, {alias: t.id for alias, t in _links(engine, c).items()})
    if not c.meta.get("dns"):
        return
    upstreams = _upstreams(engine, c)
    if c.id in engine.dns.listening():
        engine.dns.set_upstreams(c.id, upstreams)
    else:
        try:
            engine.dns.open(c.id, c.doc["NetworkSettings"]["SandboxKey"], upstreams)
        except OSError as e:
            raise NetworkSetupFailed(f"failed to start the embedded DNS server: {e}") from None


def refresh(engine, c) -> None:
    """A running container after connect or disconnect: its names, its listener (opened
    when it joins its first user network), its /etc/hosts (its own addresses) and, when the
    resolver is new to it, its resolv.conf, both rewritten in place as Docker does."""
    from bosun.engine import etcfiles

    newly = not c.meta.get("dns") and wants_resolver(c)
    if newly:
        c.meta["dns"] = True
    try:
        register(engine, c)
    except NetworkSetupFailed as e:  # the endpoint is there and works: not worth undoing
        log.error("%s: %s", c.id[:12], e)
    hc = c.doc["HostConfig"]
    try:
        from bosun.engine.netattach import host_gateway

        etcfiles.rewrite(c.doc["HostsPath"], etcfiles.hosts(hc, etc_hosts_lines(engine, c),
                                                            host_gateway(engine)))
        if newly:
            etcfiles.rewrite(c.doc["ResolvConfPath"], etcfiles.resolv_conf(hc, True))
    except (OSError, ValueError) as e:
        log.warning("/etc files of %s: %s", c.id[:12], e)


def unregister(engine, c) -> None:
    """Forget the container's names and close its listener (its sockets would keep the
    namespace, and so its veths, alive)."""
    if engine.has_dns:
        engine.dns.close_listener(c.id)
        engine.dns.table.remove_container(c.id)


def restore(engine, containers) -> None:
    """After a daemon restart: the names of every live container, and the listeners of
    those using the resolver (their old sockets died with the old daemon)."""
    for c in containers:
        if not c.doc["NetworkSettings"].get("SandboxKey"):
            continue
        with c.lock:
            try:
                register(engine, c)
            except Exception as e:  # noqa: BLE001  (the container runs on; names may fail)
                log.error("embedded DNS for %s: %s", c.id[:12], e)
