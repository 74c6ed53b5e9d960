"""Volumes: volume create, ls, inspect, rm, prune (docker's words and formats)."""

from __future__ import annotations

import sys

from bosun.cli import StatusError
from bosun.cli.flags import BOOL, LIST, STR, Flag, command, key_values

COMMANDS: dict = {}
LS_TABLE = "table {{.Driver}}\t{{.Name}}"
LS_TITLES = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Scope": "SCOPE",
             "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE"}


def vpath(name: str) -> str:
    from bosun.cli.http import quote

    return f"/volumes/{quote(name)}"


def _opts(items: list[str]) -> dict[str, str]:
    for item in items:
        if "=" not in item:
            raise StatusError(125, f'invalid argument "{item}" for "-o, --opt" flag: invalid '
                                   "key value pair format")
    return key_values(items)


@command(COMMANDS, "volume create", "[OPTIONS] [VOLUME]", "Create a volume", [
    Flag("driver", "d", STR, "Specify volume driver name", "local"),
    Flag("label", None, LIST, "Set metadata for a volume"),
    Flag("name", None, STR, "Specify volume name"),
    Flag("opt", "o", LIST, "Set driver specific options", metavar="map")], nargs=(0, 1))
def create(cli, opts, args) -> int:
    if args and opts["name"] and args[0] != opts["name"]:
        raise StatusError(1, "conflicting options: cannot specify a volume-name through both "
                             "--name and as a positional arg")
    body = {"Name": args[0] if args else opts["name"] or "", "Driver": opts["driver"],
            "DriverOpts": _opts(opts["opt"]), "Labels": key_values(opts["label"])}
    v = cli.client.call("POST", "/volumes/create", body=body)
    cli.out(v["Name"] + "\n")
    return 0


class VolumeRow:
    type_name = "*formatter.volumeContext"

    def __init__(self, v: dict) -> None:
        self.v = v
        self.Name, self.Driver = v.get("Name", ""), v.get("Driver", "")
        self.Scope, self.Mountpoint = v.get("Scope", ""), v.get("Mountpoint", "")
        usage = v.get("UsageData") or {}
        self.Links = "N/A" if not usage else str(usage.get("RefCount", 0))
        self.Size = "N/A" if not usage else str(usage.get("Size", 0))

    @property
    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted((self.v.get("Labels") or {}).items()))

    def Label(self, name: str) -> str:
        return (self.v.get("Labels") or {}).get(name, "")

    def as_json(self) -> dict:
        return {"Availability": "N/A", "Driver": self.Driver, "Group": "N/A",
                "Labels": self.Labels, "Links": self.Links, "Mountpoint": self.Mountpoint,
                "Name": self.Name, "Scope": self.Scope, "Size": self.Size, "Status": "N/A"}


@command(COMMANDS, "volume ls", "[OPTIONS]", "List volumes", [
    Flag("filter", "f", LIST, "Provide filter values (e.g. \"dangling=true\")",
         metavar="filter"),
    Flag("format", None, STR, "Format output using a custom template"),
    Flag("quiet", "q", BOOL, "Only display volume names")], nargs=(0, 0))
def ls(cli, opts, args) -> int:
    from bosun.cli.disk import prune_filters
    from bosun.cli.format import choose, render

    r = cli.client.call("GET", "/volumes", {"filters": prune_filters(opts["filter"])}) or {}
    vols = sorted(r.get("Volumes") or [], key=lambda v: v.get("Name", ""))
    for w in r.get("Warnings") or []:
        cli.err(f"WARNING: {w}\n")
    if opts["quiet"] and not opts["format"]:
        cli.out("".join(v["Name"] + "\n" for v in vols))
        return 0
    render(choose(opts["format"], LS_TABLE), [VolumeRow(v) for v in vols], LS_TITLES,
           sys.stdout)
    return 0


@command(COMMANDS, "volume inspect", "[OPTIONS] VOLUME [VOLUME...]", "Display detailed "
         "information on one or more volumes", [
             Flag("format", "f", STR, "Format output using a custom template")],
         nargs=(1, None))
def inspect(cli, opts, args) -> int:
    from bosun.cli.disk import inspect_each

    return inspect_each(cli, opts["format"], [vpath(n) for n in args])


@command(COMMANDS, "volume rm", "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes. "
         "You cannot remove a volume that is in use by a container.", [
             Flag("force", "f", BOOL, "Force the removal of one or more volumes")],
         nargs=(1, None))
def rm(cli, opts, args) -> int:
    from bosun.cli.containers import for_each

    params = {"force": "1"} if opts["force"] else None
    return for_each(cli, args, lambda n: cli.client.call("DELETE", vpath(n), params) or n)


def prune_volumes(cli, filters: list[str], all_: bool) -> tuple[int, str]:
    from bosun.cli.disk import prune_filters

    f = prune_filters(filters, {"all": "true"} if all_ else None)
    r = cli.client.call("POST", "/volumes/prune", {"filters": f}) or {}
    gone = r.get("VolumesDeleted") or []
    return r.get("SpaceReclaimed") or 0, ("Deleted Volumes:\n" + "".join(
        f"{n}\n" for n in gone) if gone else "")


@command(COMMANDS, "volume prune", "[OPTIONS]", "Remove unused local volumes", [
    Flag("all", "a", BOOL, "Remove all unused volumes, not just anonymous ones"),
    Flag("filter", None, LIST, 'Provide filter values (e.g. "label=<label>")',
         metavar="filter"),
    Flag("force", "f", BOOL, "Do not prompt for confirmation")], nargs=(0, 0))
def prune(cli, opts, args) -> int:
    from bosun.cli.disk import confirm, report

    warning = ("WARNING! This will remove all local volumes not used by at least one "
               "container." if opts["all"] else "WARNING! This will remove anonymous local "
               "volumes not used by at least one container.")
    if not opts["force"] and not confirm(cli, warning):
        return 0
    report(cli, [prune_volumes(cli, opts["filter"], opts["all"])])
    return 0
