"""network create/ls/inspect/rm/connect/disconnect/prune, as docker's `network` commands."""

from __future__ import annotations

from bosun.cli import StatusError
from bosun.cli.flags import BOOL, LIST, STR, Flag, command, key_values

COMMANDS: dict = {}

NETWORK_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
NETWORK_TITLES = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                  "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
                  "CreatedAt": "CREATED AT"}


def ipam_config(subnets: list[str], gateways: list[str], ranges: list[str]) -> list[dict]:
    """--subnet/--gateway/--ip-range as IPAM pools: each gateway and range goes with the
    subnet that contains it (docker's consolidateIpam)."""
    import ipaddress

    def net(text: str, what: str):
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise StatusError(125, f"invalid {what}: {text}") from None

    pools = [{"Subnet": s} for s in subnets]
    nets = [net(s, "subnet") for s in subnets]
    for kind, values, flag in (("Gateway", gateways, "gateway"),
                               ("IPRange", ranges, "ip-range")):
        for v in values:
            try:
                inside = ipaddress.ip_address(v) if kind == "Gateway" else net(v, flag)
            except ValueError:
                raise StatusError(125, f"invalid {flag}: {v}") from None
            for pool, n in zip(pools, nets):
                fits = inside in n if kind == "Gateway" else \
                    inside.version == n.version and inside.subnet_of(n)
                if fits:
                    if kind in pool:
                        raise StatusError(125, f"cannot configure multiple {flag}s for "
                                          f"{pool['Subnet']}")
                    pool[kind] = v
                    break
            else:
                raise StatusError(125, f"no matching subnet for {flag} {v}")
    return pools


def endpoint_config(aliases: list[str], ip: str | None, mac: str | None = None,
                    links: list[str] | None = None, ip6: str | None = None) -> dict:
    """An EndpointSettings body from --alias/--network-alias, --ip, --ip6, --mac-address,
    --link."""
    endpoint: dict = {}
    if aliases:
        endpoint["Aliases"] = aliases
    ipam = {k: v for k, v in (("IPv4Address", ip), ("IPv6Address", ip6)) if v}
    if ipam:
        endpoint["IPAMConfig"] = ipam
    if mac:
        endpoint["MacAddress"] = mac
    if links:
        endpoint["Links"] = links
    return endpoint


@command(COMMANDS, "network create", "[OPTIONS] NETWORK", "Create a network", [
    Flag("attachable", None, BOOL, "Enable manual container attachment"),
    Flag("driver", "d", STR, "Driver to manage the Network", "bridge"),
    Flag("gateway", None, LIST, "IPv4 or IPv6 Gateway for the master subnet"),
    Flag("internal", None, BOOL, "Restrict external access to the network"),
    Flag("ip-range", None, LIST, "Allocate container ip from a sub-range"),
    Flag("ipv6", None, BOOL, "Enable or disable IPv6 networking"),
    Flag("label", None, LIST, "Set metadata on a network"),
    Flag("opt", "o", LIST, "Set driver specific options", metavar="map"),
    Flag("subnet", None, LIST, "Subnet in CIDR format that represents a network segment")],
    nargs=(1, 1))
def network_create(cli, opts, args) -> int:
    body = {"Name": args[0], "Driver": opts["driver"], "Internal": opts["internal"],
            "Attachable": opts["attachable"], "Labels": key_values(opts["label"]),
            "Options": key_values(opts["opt"]),
            "IPAM": {"Driver": "default", "Options": {},
                     "Config": ipam_config(opts["subnet"], opts["gateway"], opts["ip-range"])}}
    if opts["ipv6"]:
        body["EnableIPv6"] = True
    created = cli.client.call("POST", "/networks/create", None, body)
    cli.out(created["Id"] + "\n")
    return 0


class NetworkRow:
    def __init__(self, doc: dict, trunc: bool) -> None:
        self.doc, self.trunc = doc, trunc

    ID = property(lambda self: self.doc["Id"][:12] if self.trunc else self.doc["Id"])
    Name = property(lambda self: self.doc["Name"])
    Driver = property(lambda self: self.doc["Driver"])
    Scope = property(lambda self: self.doc["Scope"])
    IPv6 = property(lambda self: str(bool(self.doc.get("EnableIPv6"))).lower())
    Internal = property(lambda self: str(bool(self.doc.get("Internal"))).lower())
    Labels = property(lambda self: ",".join(f"{k}={v}" for k, v in
                                            (self.doc.get("Labels") or {}).items()))
    CreatedAt = property(lambda self: self.doc.get("Created", ""))

    def Label(self, name: str) -> str:
        return (self.doc.get("Labels") or {}).get(name, "")

    def as_json(self) -> dict:
        return {k: getattr(self, k) for k in ("CreatedAt", "Driver", "ID", "IPv6", "Internal",
                                             "Labels", "Name", "Scope")}


@command(COMMANDS, "network ls", "[OPTIONS]", "List networks", [
    Flag("filter", "f", LIST, 'Provide filter values (e.g. "driver=bridge")', metavar="filter"),
    Flag("format", None, STR, "Format output using a custom template"),
    Flag("no-trunc", None, BOOL, "Do not truncate the output"),
    Flag("quiet", "q", BOOL, "Only display network IDs")], nargs=(0, 0))
def network_ls(cli, opts, args) -> int:
    from bosun.cli.containers import parse_filters
    from bosun.cli.format import print_rows

    docs = cli.client.call("GET", "/networks",
                           {"filters": parse_filters(opts["filter"], "bosun network ls")})
    rows = [NetworkRow(d, not opts["no-trunc"]) for d in sorted(docs or [],
                                                                key=lambda d: d["Name"])]
    print_rows(cli, rows, opts["quiet"], opts["format"], NETWORK_TABLE, NETWORK_TITLES)
    return 0


@command(COMMANDS, "network inspect", "[OPTIONS] NETWORK [NETWORK...]", "Display detailed "
         "information on one or more networks", [
             Flag("format", "f", STR, "Format output using a custom template"),
             Flag("verbose", "v", BOOL, "Verbose output for diagnostics")], nargs=(1, None))
def network_inspect(cli, opts, args) -> int:
    from bosun.cli.disk import inspect_each
    from bosun.cli.http import path_of

    return inspect_each(cli, opts["format"], [f"/networks/{path_of(n)}" for n in args],
                        {"verbose": opts["verbose"]})


@command(COMMANDS, "network rm", "NETWORK [NETWORK...]", "Remove one or more networks", [
    Flag("force", "f", BOOL, "Do not error if the network does not exist")], nargs=(1, None))
def network_rm(cli, opts, args) -> int:
    from bosun.cli.http import APIError, path_of

    failed = False
    for name in args:
        try:
            cli.client.call("DELETE", f"/networks/{path_of(name)}")
            cli.out(name + "\n")
        except APIError as e:
            if e.status == 404 and opts["force"]:
                continue
            cli.err(f"Error response from daemon: {e}\n")
            failed = True
    return 1 if failed else 0


@command(COMMANDS, "network connect", "[OPTIONS] NETWORK CONTAINER", "Connect a container to "
         "a network", [
             Flag("alias", None, LIST, "Add network-scoped alias for the container"),
             Flag("ip", None, STR, "IPv4 address (e.g., 172.30.100.104)"),
             Flag("ip6", None, STR, "IPv6 address (e.g., 2001:db8::33)"),
             Flag("link", None, LIST, "Add link to another container")], nargs=(2, 2))
def network_connect(cli, opts, args) -> int:
    from bosun.cli.http import path_of

    endpoint = endpoint_config(opts["alias"], opts["ip"], links=opts["link"], ip6=opts["ip6"])
    cli.client.call("POST", f"/networks/{path_of(args[0])}/connect", None,
                    {"Container": args[1], "EndpointConfig": endpoint})
    return 0


@command(COMMANDS, "network disconnect", "[OPTIONS] NETWORK CONTAINER", "Disconnect a "
         "container from a network", [
             Flag("force", "f", BOOL, "Force the container to disconnect from a network")],
         nargs=(2, 2))
def network_disconnect(cli, opts, args) -> int:
    from bosun.cli.http import path_of

    cli.client.call("POST", f"/networks/{path_of(args[0])}/disconnect", None,
                    {"Container": args[1], "Force": opts["force"]})
    return 0


@command(COMMANDS, "network prune", "[OPTIONS]", "Remove all unused networks", [
    Flag("filter", None, LIST, 'Provide filter values (e.g. "until=<timestamp>")',
         metavar="filter"),
    Flag("force", "f", BOOL, "Do not prompt for confirmation")], nargs=(0, 0))
def network_prune(cli, opts, args) -> int:
    from bosun.cli.disk import confirm, prune_networks

    if not opts["force"] and not confirm(cli, "WARNING! This will remove all custom networks "
                                              "not used by at least one container."):
        return 0
    text = prune_networks(cli, opts["filter"])[1]
    if text:
        cli.out(text)
    return 0
