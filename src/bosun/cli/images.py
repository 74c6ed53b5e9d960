"""Image commands: images, pull (rich progress bars on a terminal; push shares them), tag,
rmi."""

from __future__ import annotations

import sys
import time

from bosun.cli import StatusError
from bosun.cli.flags import BOOL, LIST, STR, Flag, command
from bosun.cli.format import choose, human_duration, human_size, render

COMMANDS: dict = {}

IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGE_TITLES = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                "Containers": "CONTAINERS"}


def split_ref(ref: str) -> tuple[str, str, str]:
    """(repository, tag, digest) of an image reference; tag and digest may be ""."""
    name, _, digest = ref.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:], digest
    return name, "", digest


def full_name(ref: str) -> str:
    """docker.io/library/busybox:latest for busybox (what `docker pull` prints last)."""
    repo, tag, digest = split_ref(ref)
    first, slash, _ = repo.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        repo = "docker.io/" + (repo if slash else "library/" + repo)
    if digest:
        return f"{repo}{':' + tag if tag else ''}@{digest}"
    return f"{repo}:{tag or 'latest'}"


class PullError(Exception):
    """An error the daemon reported inside the progress stream (printed as it is)."""


def pull_image(cli, ref: str, quiet: bool, out) -> None:
    """Pull ref, showing progress on out (rich bars if it is a terminal), with the
    credentials `login` stored for its registry."""
    from bosun.cli.registry import auth_header

    repo, tag, digest = split_ref(ref)
    params = {"fromImage": repo, "tag": digest or tag or "latest"}
    r = cli.client.stream("POST", "/images/create", params, headers=auth_header(cli, ref))
    show_progress(r.json_stream(), quiet, out)


def show_progress(messages, quiet: bool, out) -> None:
    """A pull or push progress stream: nothing if quiet, bars on a terminal, else a line
    per status (docker shows no progress lines without a terminal)."""
    if quiet:
        for m in messages:
            if m.get("error"):
                raise PullError(m["error"])
        return
    if out.isatty():
        _pull_bars(messages, out)
        return
    for m in messages:
        if m.get("error"):
            raise PullError(m["error"])
        if m.get("progress") or (m.get("progressDetail") or {}).get("total"):
            continue
        if "status" not in m and "stream" not in m:
            continue  # aux (the pushed digest) is for programs
        line = f"{m['id']}: " if m.get("id") else ""
        out.write(f"{line}{m.get('status', m.get('stream', ''))}\n")
        out.flush()


def _pull_bars(messages, out) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    console = Console(file=out)
    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  console=console, transient=False) as bars:
        for m in messages:
            if m.get("error"):
                raise PullError(m["error"])
            status, layer = m.get("status", ""), m.get("id")
            if "status" not in m:
                continue
            if not layer or status.startswith(("Pulling from", "The push refers")) or \
                    status.startswith(f"{layer}: digest:"):
                bars.console.print(f"{layer + ': ' if layer else ''}{status}", highlight=False)
                continue
            detail = m.get("progressDetail") or {}
            if layer not in tasks:
                tasks[layer] = bars.add_task(f"{layer}: {status}", total=None)
            task = tasks[layer]
            update: dict = {"description": f"{layer}: {status}"}
            if detail.get("total"):
                update["total"] = detail["total"]
                update["completed"] = detail.get("current", 0)
            if status in ("Pull complete", "Already exists", "Download complete", "Pushed",
                          "Layer already exists") or status.startswith("Mounted from"):
                total = bars.tasks[task].total or 1
                update.update(total=total, completed=total)
            bars.update(task, **update)


@command(COMMANDS, "pull", "[OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry", [
    Flag("all-tags", "a", BOOL, "Download all tagged images in the repository"),
    Flag("platform", None, STR, "Set platform if server is multi-platform capable"),
    Flag("quiet", "q", BOOL, "Suppress verbose output")], nargs=(1, 1))
def pull(cli, opts, args) -> int:
    ref = args[0]
    if opts["all-tags"]:
        raise StatusError(1, "bosun pull: --all-tags is not supported yet")
    try:
        pull_image(cli, ref, opts["quiet"], sys.stdout)
    except PullError as e:
        raise StatusError(1, str(e)) from None
    cli.out(full_name(ref) + "\n")
    return 0


class ImageRow:
    type_name = "*formatter.imageContext"

    def __init__(self, img: dict, repo: str, tag: str, digest: str, trunc: bool,
                 now: float) -> None:
        self.img, self.repo, self.tag, self.digest = img, repo, tag, digest
        self.trunc, self.now = trunc, now

    @property
    def ID(self) -> str:
        i = self.img.get("Id", "")
        return i.removeprefix("sha256:")[:12] if self.trunc else i

    Repository = property(lambda self: self.repo)
    Tag = property(lambda self: self.tag)
    Digest = property(lambda self: self.digest)
    CreatedSince = property(lambda self: human_duration(self.now - self.img.get("Created", 0))
                            + " ago")

    @property
    def CreatedAt(self) -> str:
        from bosun.cli.containers import go_time

        return go_time(self.img.get("Created", 0))

    Size = property(lambda self: human_size(self.img.get("Size") or 0))
    Containers = property(lambda self: "N/A" if self.img.get("Containers", -1) < 0
                          else str(self.img["Containers"]))

    def as_json(self) -> dict:
        return {k: getattr(self, k) for k in ("Containers", "CreatedAt", "CreatedSince",
                                             "Digest", "ID", "Repository", "Size", "Tag")}


@command(COMMANDS, "images", "[OPTIONS] [REPOSITORY[:TAG]]", "List images", [
    Flag("all", "a", BOOL, "Show all images (default hides intermediate images)"),
    Flag("digests", None, BOOL, "Show digests"),
    Flag("filter", "f", LIST, "Filter output based on conditions provided", metavar="filter"),
    Flag("format", None, STR, "Format output using a custom template"),
    Flag("no-trunc", None, BOOL, "Don't truncate output"),
    Flag("quiet", "q", BOOL, "Only show image IDs")], nargs=(0, 1))
def images(cli, opts, args) -> int:
    from bosun.cli.containers import parse_filters

    filters = list(opts["filter"]) + ([f"reference={args[0]}"] if args else [])
    imgs = cli.client.call("GET", "/images/json", {
        "all": opts["all"], "filters": parse_filters(filters, "bosun images")}) or []
    trunc = not opts["no-trunc"]
    now = time.time()
    rows = []
    for img in imgs:
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        digests = [d for d in img.get("RepoDigests") or [] if d != "<none>@<none>"]
        digest = digests[0].partition("@")[2] if digests else "<none>"
        if not tags:
            repo = digests[0].partition("@")[0] if digests else "<none>"
            rows.append(ImageRow(img, repo, "<none>", digest, trunc, now))
        for t in tags:
            repo, _, tag = t.rpartition(":")
            rows.append(ImageRow(img, repo, tag, digest, trunc, now))
    if opts["quiet"]:
        cli.out("".join(r.ID + "\n" for r in rows))
        return 0
    table = IMAGES_TABLE
    if opts["digests"]:
        table = table.replace("{{.Tag}}\t", "{{.Tag}}\t{{.Digest}}\t")
    fmt = choose(opts["format"], table)
    render(fmt, rows, IMAGE_TITLES, sys.stdout)
    return 0


@command(COMMANDS, "tag", "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", "Create a tag "
         "TARGET_IMAGE that refers to SOURCE_IMAGE", nargs=(2, 2))
def tag(cli, opts, args) -> int:
    from bosun.cli.http import path_of

    repo, tag_, _ = split_ref(args[1])
    cli.client.call("POST", f"/images/{path_of(args[0])}/tag",
                    {"repo": repo, "tag": tag_ or "latest"})
    return 0


@command(COMMANDS, "rmi", "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images", [
    Flag("force", "f", BOOL, "Force removal of the image"),
    Flag("no-prune", None, BOOL, "Do not delete untagged parents")], nargs=(1, None))
def rmi(cli, opts, args) -> int:
    from bosun.cli.containers import for_each
    from bosun.cli.http import path_of

    def remove(name: str) -> str:
        gone = cli.client.call("DELETE", f"/images/{path_of(name)}",
                               {"force": opts["force"], "noprune": opts["no-prune"]}) or []
        return "\n".join(f"Untagged: {d['Untagged']}" if "Untagged" in d
                         else f"Deleted: {d.get('Deleted', '')}" for d in gone)
    return for_each(cli, args, remove)

