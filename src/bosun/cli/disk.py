"""Disk space: history, image inspect, image/container/system prune, system df."""

from __future__ import annotations

import sys
import time

from bosun.cli.flags import BOOL, LIST, STR, Flag, command
from bosun.cli.format import choose, ellipsis, human_duration, human_size

COMMANDS: dict = {}


def units_size(n: float) -> str:
    """go-units HumanSize (four significant digits): docker's prune and df totals."""
    return human_size(n, 4)


# -- history, image inspect ---------------------------------------------------------------------

HISTORY_TABLE = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_TITLES = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                  "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}


class HistoryRow:
    type_name = "*formatter.historyContext"

    def __init__(self, h: dict, trunc: bool, human: bool, now: float) -> None:
        self.h, self.trunc, self.human, self.now = h, trunc, human, now

    @property
    def ID(self) -> str:
        i = self.h.get("Id") or "<missing>"
        return i.removeprefix("sha256:")[:12] if self.trunc and i != "<missing>" else i

    @property
    def CreatedSince(self) -> str:
        if not self.human:
            return self.CreatedAt
        return human_duration(self.now - (self.h.get("Created") or 0)) + " ago"

    @property
    def CreatedAt(self) -> str:
        t = time.localtime(self.h.get("Created") or 0)
        off = time.strftime("%z", t)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + (
            "Z" if off == "+0000" else f"{off[:3]}:{off[3:]}")

    @property
    def CreatedBy(self) -> str:
        by = (self.h.get("CreatedBy") or "").replace("\t", " ")
        return ellipsis(by, 45) if self.trunc else by

    @property
    def Size(self) -> str:
        size = self.h.get("Size") or 0
        return human_size(size) if self.human else str(size)

    @property
    def Comment(self) -> str:
        return self.h.get("Comment") or ""

    def as_json(self) -> dict:
        return {k: getattr(self, k) for k in ("Comment", "CreatedAt", "CreatedBy",
                                             "CreatedSince", "ID", "Size")}


@command(COMMANDS, "history", "[OPTIONS] IMAGE", "Show the history of an image", [
    Flag("format", None, STR, "Format output using a custom template"),
    Flag("human", "H", BOOL, "Print sizes and dates in human readable format", True),
    Flag("no-trunc", None, BOOL, "Don't truncate output"),
    Flag("platform", None, STR, "Show history for the given platform"),
    Flag("quiet", "q", BOOL, "Only show image IDs")], nargs=(1, 1))
def history(cli, opts, args) -> int:
    from bosun.cli.format import print_rows
    from bosun.cli.http import path_of

    entries = cli.client.call("GET", f"/images/{path_of(args[0])}/history") or []
    now, trunc = time.time(), not opts["no-trunc"]
    rows = [HistoryRow(h, trunc, opts["human"], now) for h in entries]
    print_rows(cli, rows, opts["quiet"], opts["format"], HISTORY_TABLE, HISTORY_TITLES)
    return 0


@command(COMMANDS, "image inspect", "[OPTIONS] IMAGE [IMAGE...]", "Display detailed "
         "information on one or more images", [
             Flag("format", "f", STR, "Format output using a custom template"),
             Flag("platform", None, STR, "Inspect a specific platform of the multi-platform "
                  "image")], nargs=(1, None))
def image_inspect(cli, opts, args) -> int:
    from bosun.cli.http import path_of

    return inspect_each(cli, opts["format"], [f"/images/{path_of(n)}/json" for n in args])


def inspect_each(cli, fmt: str | None, paths: list[str], params: dict | None = None) -> int:
    """GET each path; print the documents as a JSON array or through the template, and the
    daemon's words for those it does not have."""
    from bosun.cli.http import APIError

    found, errors = [], []
    for path in paths:
        try:
            found.append(cli.client.call("GET", path, params))
        except APIError as e:
            if e.status != 404:
                raise
            errors.append(str(e))  # docker shows the daemon's words here, unlike `inspect`
    from bosun.cli.format import print_inspect

    print_inspect(cli, found, fmt)
    for e in errors:
        cli.err(f"Error response from daemon: {e}\n")
    return 1 if errors else 0


# -- prune --------------------------------------------------------------------------------------

def confirm(cli, warning: str) -> bool:
    """docker's prompt: the answer is a line on stdin, yes only if it is y or Y."""
    cli.out(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip()
    return answer in ("y", "Y")


def prune_filters(items: list[str], extra: dict | None = None) -> str | None:
    from bosun.cli.containers import parse_filters

    return parse_filters(items, None, extra)


def prune_containers(cli, filters: list[str]) -> tuple[int, str]:
    r = cli.client.call("POST", "/containers/prune", {"filters": prune_filters(filters)}) or {}
    gone = r.get("ContainersDeleted") or []
    text = "Deleted Containers:\n" + "".join(f"{c}\n" for c in gone) if gone else ""
    return r.get("SpaceReclaimed") or 0, text


def prune_networks(cli, filters: list[str]) -> tuple[int, str]:
    r = cli.client.call("POST", "/networks/prune", {"filters": prune_filters(filters)}) or {}
    gone = r.get("NetworksDeleted") or []
    return 0, ("Deleted Networks:\n" + "".join(f"{n}\n" for n in gone) if gone else "")


def prune_images(cli, filters: list[str], all_: bool) -> tuple[int, str]:
    # without -a only dangling images go; docker says so with the filter
    f = prune_filters(filters, {"dangling": "false" if all_ else "true"})
    r = cli.client.call("POST", "/images/prune", {"filters": f}) or {}
    gone = r.get("ImagesDeleted") or []
    text = ""
    if gone:
        text = "Deleted Images:\n" + "".join(
            f"untagged: {d['Untagged']}\n" if d.get("Untagged") else
            f"deleted: {d.get('Deleted', '')}\n" for d in gone)
    return r.get("SpaceReclaimed") or 0, text


def report(cli, results: list[tuple[int, str]]) -> None:
    total = 0
    for space, text in results:
        total += space
        if text:
            cli.out(text + "\n")
    cli.out(f"Total reclaimed space: {units_size(total)}\n")


@command(COMMANDS, "container prune", "[OPTIONS]", "Remove all stopped containers", [
    Flag("filter", None, LIST, 'Provide filter values (e.g. "until=<timestamp>")',
         metavar="filter"),
    Flag("force", "f", BOOL, "Do not prompt for confirmation")], nargs=(0, 0))
def container_prune(cli, opts, args) -> int:
    if not opts["force"] and not confirm(cli, "WARNING! This will remove all stopped "
                                              "containers."):
        return 0
    report(cli, [prune_containers(cli, opts["filter"])])
    return 0


@command(COMMANDS, "image prune", "[OPTIONS]", "Remove unused images", [
    Flag("all", "a", BOOL, "Remove all unused images, not just dangling ones"),
    Flag("filter", None, LIST, 'Provide filter values (e.g. "until=<timestamp>")',
         metavar="filter"),
    Flag("force", "f", BOOL, "Do not prompt for confirmation")], nargs=(0, 0))
def image_prune(cli, opts, args) -> int:
    warning = ("WARNING! This will remove all images without at least one container "
               "associated to them." if opts["all"] else
               "WARNING! This will remove all dangling images.")
    if not opts["force"] and not confirm(cli, warning):
        return 0
    report(cli, [prune_images(cli, opts["filter"], opts["all"])])
    return 0


@command(COMMANDS, "system prune", "[OPTIONS]", "Remove unused data", [
    Flag("all", "a", BOOL, "Remove all unused images not just dangling ones"),
    Flag("filter", None, LIST, 'Provide filter values (e.g. "label=<key>=<value>")',
         metavar="filter"),
    Flag("force", "f", BOOL, "Do not prompt for confirmation"),
    Flag("volumes", None, BOOL, "Prune anonymous volumes")], nargs=(0, 0))
def system_prune(cli, opts, args) -> int:
    items = ["all stopped containers", "all networks not used by at least one container"]
    if opts["volumes"]:
        items.append("all anonymous volumes not used by at least one container")
    items += (["all images without at least one container associated to them",
               "all build cache"] if opts["all"] else ["all dangling images",
                                                       "unused build cache"])
    warning = "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items)
    if not opts["force"] and not confirm(cli, warning):
        return 0
    # bosun has no build cache yet: nothing of its to prune
    f = opts["filter"]
    results = [prune_containers(cli, f), prune_networks(cli, f)]
    if opts["volumes"]:
        from bosun.cli.volumes import prune_volumes

        results.append(prune_volumes(cli, f, False))
    report(cli, results + [prune_images(cli, f, opts["all"])])
    return 0


# -- system df ----------------------------------------------------------------------------------

DF_TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
DF_TITLES = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
             "Reclaimable": "RECLAIMABLE"}


class DfRow:
    type_name = "*formatter.diskUsageContext"

    def __init__(self, kind: str, total: int, active: int, size: int, reclaimable: int,
                 percent: bool = True) -> None:
        self.Type, self.TotalCount, self.Active = kind, str(total), str(active)
        self.Size = units_size(size)
        self.Reclaimable = units_size(reclaimable) + (
            f" ({reclaimable * 100 // size}%)" if percent and size > 0 else "")

    def as_json(self) -> dict:
        return {k: getattr(self, k) for k in ("Active", "Reclaimable", "Size", "TotalCount",
                                             "Type")}


def df_rows(du: dict) -> list[DfRow]:
    images = du.get("Images") or []
    containers = du.get("Containers") or []
    volumes = du.get("Volumes") or []
    cache = du.get("BuildCache") or []
    isize = du.get("LayersSize") or 0
    used = sum(i.get("Size", 0) - i.get("SharedSize", 0) for i in images
               if i.get("Containers") and i.get("Size", -1) != -1 and
               i.get("SharedSize", -1) != -1)
    active = [c for c in containers if c.get("State") in ("running", "paused", "restarting")]
    csize = sum(c.get("SizeRw") or 0 for c in containers)
    vsizes = [((v.get("UsageData") or {}).get("Size", -1),
               (v.get("UsageData") or {}).get("RefCount", 0)) for v in volumes]
    vsize = sum(s for s, _ in vsizes if s > 0)
    return [
        DfRow("Images", len(images), sum(1 for i in images if i.get("Containers")), isize,
              isize - used),
        DfRow("Containers", len(containers), len(active), csize,
              csize - sum(c.get("SizeRw") or 0 for c in active)),
        DfRow("Local Volumes", len(volumes), sum(1 for _, r in vsizes if r > 0), vsize,
              sum(s for s, r in vsizes if s > 0 and r == 0)),
        DfRow("Build Cache", len(cache), sum(1 for b in cache if b.get("InUse")),
              sum(b.get("Size", 0) for b in cache),
              sum(b.get("Size", 0) for b in cache if not b.get("InUse") and
                  not b.get("Shared")), percent=False),
    ]


class DfImageRow:
    def __init__(self, img: dict, repo: str, tag: str, now: float) -> None:
        self.Repository, self.Tag = repo, tag
        self.ID = img.get("Id", "").removeprefix("sha256:")[:12]
        self.CreatedSince = human_duration(now - img.get("Created", 0)) + " ago"
        self.Size = human_size(img.get("Size") or 0)
        shared = img.get("SharedSize", -1)
        self.SharedSize = "N/A" if shared == -1 else human_size(shared)
        self.UniqueSize = "N/A" if shared == -1 else human_size((img.get("Size") or 0) - shared)
        self.Containers = str(img.get("Containers", 0))


def df_verbose(cli, du: dict) -> None:
    from bosun.cli.containers import PS_TITLES, PsRow
    from bosun.cli.format import render

    now = time.time()
    out = sys.stdout
    out.write("Images space usage:\n\n")
    rows = []
    for img in du.get("Images") or []:
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"] or ["<none>:<none>"]
        rows += [DfImageRow(img, *t.rsplit(":", 1), now) for t in tags]
    render("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t"
           "{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}", rows,
           {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED",
            "Size": "SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
            "Containers": "CONTAINERS"}, out)

    class DfContainer(PsRow):
        @property
        def Size(self) -> str:  # the writable layer alone
            return human_size(self.c.get("SizeRw") or 0)

    out.write("\nContainers space usage:\n\n")
    render("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t"
           "{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
           [DfContainer(c, True, now) for c in du.get("Containers") or []], PS_TITLES, out)
    out.write("\nLocal Volumes space usage:\n\n")
    vols = [{"Name": v.get("Name", ""), "Links": str((v.get("UsageData") or {}).get(
        "RefCount", 0)), "Size": human_size((v.get("UsageData") or {}).get("Size", 0))}
        for v in du.get("Volumes") or []]
    render("table {{.Name}}\t{{.Links}}\t{{.Size}}", vols,
           {"Name": "VOLUME NAME", "Links": "LINKS", "Size": "SIZE"}, out)
    out.write(f"\nBuild cache usage: {units_size(du.get('BuilderSize') or 0)}\n\n")
    render("table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t"
           "{{.UsageCount}}\t{{.Shared}}", [], {
               "ID": "CACHE ID", "CacheType": "CACHE TYPE", "Size": "SIZE",
               "CreatedSince": "CREATED", "LastUsedSince": "LAST USED", "UsageCount": "USAGE",
               "Shared": "SHARED"}, out)


@command(COMMANDS, "system df", "[OPTIONS]", "Show docker disk usage", [
    Flag("format", None, STR, "Format output using a custom template"),
    Flag("verbose", "v", BOOL, "Show detailed information on space usage")], nargs=(0, 0))
def system_df(cli, opts, args) -> int:
    from bosun.cli.format import render

    du = cli.client.call("GET", "/system/df") or {}
    if opts["verbose"]:
        df_verbose(cli, du)
        return 0
    render(choose(opts["format"], DF_TABLE), df_rows(du), DF_TITLES, sys.stdout)
    return 0
