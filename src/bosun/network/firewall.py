"""nftables rules for bosun's bridges, in one table (`ip bosun` by default) that bosun alone
owns, and while any network has IPv6 its twin `ip6 bosun`: no other table is ever read,
flushed or changed.

The table is rendered whole from the store's state (`render`, pure) and swapped in as one nft
transaction (`apply`): add-if-missing, delete, re-create. A reader never sees it half-built,
and a crash between two changes cannot leave a rule behind that the state no longer
explains. The nft binary takes the script on stdin (Debian's python3-nftables binds the
system interpreter only, not a venv).

Chains (one hook each):
  prerouting / output (nat)  published ports: DNAT to the container for local destination
                             addresses, containers' traffic included (hairpin); output
                             covers connections made on the host itself,
                             127.0.0.1 included (the bridge has route_localnet=1).
  postrouting (nat)          masquerade a non-internal network's traffic leaving through any
                             other interface; and loopback-sourced traffic entering a bridge
                             (127.0.0.1:port → container), which the container could not
                             answer otherwise; and hairpin traffic (a container to a
                             published port through a host address) back into its bridge.
  forward (filter)           isolation between bosun bridges; internal networks stay on
                             their bridge; replies and DNATed (published) connections in;
                             anything else into a bridge dropped, as Docker ≥ 28 does.
Our accepts cannot override a drop in another table's forward chain (nftables runs every
base chain on a hook): a host firewall with a DROP policy must let bosun's bridges through.

The ip6 table has the same forward chain (isolation is by interface, so every bridge is in
it) and masquerades the IPv6 networks' outbound traffic (Docker's NAT66 for ULA subnets);
published ports are IPv4 only, so it has no DNAT.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from bosun.network.errors import InvalidParameter, NetworkError

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


@dataclass(frozen=True)
class BridgeRules:
    bridge: str
    subnet: IPv4Network
    internal: bool
    masquerade: bool
    icc: bool
    subnet6: IPv6Network | None = None


@dataclass(frozen=True)
class PortRule:
    bridge: str
    proto: str
    host_ip: IPv4Address
    host_port: int
    container_ip: IPv4Address
    container_port: int


def check_table(table: str) -> str:
    if not _TABLE_NAME.match(table):
        raise InvalidParameter(f"invalid nftables table name {table!r}")
    return table


def _q(ifname: str) -> str:
    if not _IFNAME.match(ifname):
        raise InvalidParameter(f"invalid interface name {ifname!r}")
    return f'"{ifname}"'


def render(table: str, bridges: Sequence[BridgeRules], ports: Sequence[PortRule]) -> str:
    """The nft script that replaces `table ip <table>` (and `table ip6 <table>`, made while
    a network has IPv6, else deleted) with the rules for this state."""
    t = check_table(table)
    pre, out, post, self_hairpin = [], [], [], []
    for p in ports:
        dst = "" if p.host_ip == IPv4Address("0.0.0.0") else f"ip daddr {p.host_ip} "
        match = f"{dst}meta l4proto {p.proto} th dport {p.host_port}"
        to = f"dnat to {p.container_ip}:{p.container_port}"
        # From containers too (hairpin: a container reaching its own, or a neighbour's,
        # published port through a host address), as Docker without its userland proxy.
        pre.append(f"{match} {to}")
        out.append(f"{match} {to}")
        # A container reaching itself so: as the host, or it would answer itself directly
        # (Docker's rule; with br_netfilter such frames are bridged, where no interface
        # names are known, hence addresses only).
        self_hairpin.append(f"ip saddr {p.container_ip} ip daddr {p.container_ip} "
                            f"meta l4proto {p.proto} th dport {p.container_port} masquerade")
    for b in bridges:
        br = _q(b.bridge)
        if b.masquerade:
            post.append(f"ip saddr {b.subnet} oifname != {br} masquerade")
        post.append(f"oifname {br} ip saddr 127.0.0.0/8 masquerade")
        # Hairpin, routed (no br_netfilter): DNATed back into the bridge it came from, the
        # target would answer its neighbour directly, bypassing the reverse NAT.
        post.append(f"iifname {br} oifname {br} ct status dnat masquerade")
    fwd = _forward(bridges)
    script = (
        _replace("ip", t)
        + _chain("prerouting", "type nat hook prerouting priority -100",
                 ["fib daddr type local jump publish_pre"] if pre else [])
        + _chain("output", "type nat hook output priority -100",
                 ["fib daddr type local jump publish_out"] if out else [])
        + "".join(f"\tchain {name} {{\n" + "".join(f"\t\t{r}\n" for r in rules) + "\t}\n"
                  for name, rules in (("publish_pre", pre), ("publish_out", out)) if rules)
        + _chain("postrouting", "type nat hook postrouting priority 100", self_hairpin + post)
        + _chain("forward", "type filter hook forward priority 0", fwd)
        + "}\n"
    )
    if not any(b.subnet6 is not None for b in bridges):
        return script + _drop("ip6", t)
    post6 = [f"ip6 saddr {b.subnet6} oifname != {_q(b.bridge)} masquerade"
             for b in bridges if b.subnet6 is not None and b.masquerade]
    return (script + _replace("ip6", t)
            + _chain("postrouting", "type nat hook postrouting priority 100", post6)
            + _chain("forward", "type filter hook forward priority 0", fwd)
            + "}\n")


def _chain(name: str, hook: str, rules: list[str]) -> str:
    body = "".join(f"\t\t{r}\n" for r in rules)
    return f"\tchain {name} {{\n\t\t{hook}; policy accept;\n{body}\t}}\n"


def _drop(family: str, t: str) -> str:
    # Declaring the table first makes the delete succeed when it does not exist yet; the
    # whole script is one transaction.
    return f"table {family} {t}\ndelete table {family} {t}\n"


def _replace(family: str, t: str) -> str:
    return _drop(family, t) + f"table {family} {t} {{\n"


def _forward(bridges: Sequence[BridgeRules]) -> list[str]:
    """The forward chain, the same in both families (it matches interfaces only)."""
    fwd = []
    names = [b.bridge for b in bridges]
    for b in bridges:
        br = _q(b.bridge)
        others = [_q(n) for n in names if n != b.bridge]
        if others:
            fwd.append(f"iifname {br} oifname {{ {', '.join(others)} }} drop")
        if b.internal:
            fwd.append(f"iifname {br} oifname != {br} drop")
            fwd.append(f"oifname {br} iifname != {br} drop")
        # Only seen with br_netfilter loaded: frames between ports of one bridge.
        fwd.append(f"iifname {br} oifname {br} {'accept' if b.icc else 'drop'}")
    for b in bridges:
        br = _q(b.bridge)
        fwd.append(f"oifname {br} ct state established,related accept")
        fwd.append(f"oifname {br} ct status dnat accept")
        fwd.append(f"iifname {br} accept")
        fwd.append(f"oifname {br} drop")
    return fwd


def _nft() -> str:
    path = shutil.which("nft") or "/usr/sbin/nft"
    return path


def _run(args: list[str], script: str | None = None) -> str:
    try:
        proc = subprocess.run([_nft(), *args], input=script, capture_output=True, text=True, check=False,
                              timeout=30)
    except FileNotFoundError:
        raise NetworkError("nft (nftables) is not installed") from None
    if proc.returncode != 0:
        raise NetworkError(f"nft {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def apply(script: str) -> None:
    _run(["-f", "-"], script)


def delete_table(table: str) -> None:
    """Remove bosun's tables, if there (tests, and a host that stops using bosun)."""
    t = check_table(table)
    _run(["-f", "-"], _drop("ip", t) + _drop("ip6", t))


def table_rules(table: str, family: str = "ip") -> list[dict] | None:
    """The table's rules as nft's JSON objects, or None when the table does not exist."""
    t = check_table(table)
    if family not in ("ip", "ip6"):
        raise InvalidParameter(f"invalid nftables family {family!r}")
    listing = json.loads(_run(["-j", "list", "tables", family]) or "{}")
    if not any(o.get("table", {}).get("name") == t for o in listing.get("nftables", [])):
        return None
    objs = json.loads(_run(["-j", "list", "table", family, t]))["nftables"]
    return [o["rule"] for o in objs if "rule" in o]
