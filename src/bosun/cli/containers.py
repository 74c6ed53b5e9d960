"""Container commands that are one request each (or one per argument): ps, inspect, logs,
stop, restart, kill, rm, wait, rename, pause, unpause, top."""

from __future__ import annotations

import sys
import time

from bosun.cli import StatusError
from bosun.cli.flags import BOOL, INT, LIST, STR, Flag, command
from bosun.cli.format import choose, ellipsis, human_duration, human_size

COMMANDS: dict = {}

PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t" \
    "{{.Names}}"
PS_TITLES = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
             "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
             "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
             "Labels": "LABELS", "Label": "LABEL", "Mounts": "MOUNTS", "Networks": "NETWORKS",
             "LocalVolumes": "LOCAL VOLUMES"}


def go_quote(s: str) -> str:
    """strconv.Quote for the text docker quotes (commands)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def go_time(ts: float) -> str:
    """time.Time.String() in local time: 2006-01-02 15:04:05 -0700 MST."""
    t = time.localtime(ts)
    return time.strftime("%Y-%m-%d %H:%M:%S %z ", t) + (t.tm_zone or "")


def display_ports(ports: list) -> str:
    out = []
    for p in sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""))):
        proto = f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}"
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            out.append(f"{host}:{p['PublicPort']}->{proto}")
        else:
            out.append(proto)
    return ", ".join(out)


class PsRow:
    """docker's ContainerContext: one container as `ps --format` sees it."""

    type_name = "*formatter.ContainerContext"

    def __init__(self, c: dict, trunc: bool, now: float) -> None:
        self.c, self.trunc, self.now = c, trunc, now

    @property
    def ID(self) -> str:
        return self.c["Id"][:12] if self.trunc else self.c["Id"]

    @property
    def Image(self) -> str:
        image = self.c.get("Image") or "<no image>"
        if self.trunc:
            if image.startswith("sha256:"):
                image = image[7:19]
            elif "@sha256:" in image:
                image = image.split("@", 1)[0]
        return image

    @property
    def Command(self) -> str:
        cmd = self.c.get("Command", "")
        return go_quote(ellipsis(cmd, 20) if self.trunc else cmd)

    @property
    def CreatedAt(self) -> str:
        return go_time(self.c.get("Created", 0))

    @property
    def RunningFor(self) -> str:
        return human_duration(self.now - self.c.get("Created", 0)) + " ago"

    @property
    def Ports(self) -> str:
        return display_ports(self.c.get("Ports"))

    @property
    def State(self) -> str:
        return self.c.get("State", "")

    @property
    def Status(self) -> str:
        return self.c.get("Status", "")

    @property
    def Size(self) -> str:
        srw, sv = self.c.get("SizeRw") or 0, self.c.get("SizeRootFs") or 0
        if not srw and not sv and "SizeRw" not in self.c:
            return "0B"
        return human_size(srw) + (f" (virtual {human_size(sv)})" if sv > 0 else "")

    @property
    def Names(self) -> str:
        names = [n.removeprefix("/") for n in self.c.get("Names") or []]
        if self.trunc:  # links ("/other/alias") only with --no-trunc
            names = [n for n in names if "/" not in n][:1] or names[:1]
        return ",".join(names)

    @property
    def Labels(self) -> str:
        labels = self.c.get("Labels") or {}
        return ",".join(f"{k}={labels[k]}" for k in sorted(labels))

    def Label(self, name: str) -> str:
        return (self.c.get("Labels") or {}).get(name, "")

    @property
    def Mounts(self) -> str:
        out = []
        for m in self.c.get("Mounts") or []:
            name = m.get("Name") or m.get("Source", "")
            out.append(ellipsis(name, 15) if self.trunc else name)
        return ",".join(out)

    @property
    def Networks(self) -> str:
        return ",".join(sorted((self.c.get("NetworkSettings") or {}).get("Networks") or {}))

    @property
    def LocalVolumes(self) -> str:
        return str(sum(1 for m in self.c.get("Mounts") or [] if m.get("Driver") == "local"))

    def as_json(self) -> dict:
        return {k: getattr(self, k) for k in (
            "Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts", "Names",
            "Networks", "Ports", "RunningFor", "Size", "State", "Status")}


def parse_filters(items: list[str], cmd: str | None = None, extra: dict | None = None
                  ) -> str | None:
    """-f key=value … (and `extra` filters the command adds) as the API's JSON filter map
    ({"key": {"value": true}}); None when there are none. `cmd` names the command in the
    error's hint (docker's prune commands give none)."""
    out: dict = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            hint = f"\nSee '{cmd} --help'." if cmd else ""
            raise StatusError(125, f"bad format of filter (expected name=value){hint}")
        out.setdefault(key.strip().lower(), {})[value] = True
    for k, v in (extra or {}).items():
        out.setdefault(k, {})[v] = True
    if not out:
        return None
    from bosun import quickjson

    return quickjson.dumps(out)


@command(COMMANDS, "ps", "[OPTIONS]", "List containers", [
    Flag("all", "a", BOOL, "Show all containers (default shows just running)"),
    Flag("filter", "f", LIST, "Filter output based on conditions provided", metavar="filter"),
    Flag("format", None, STR, "Format output using a custom template"),
    Flag("last", "n", INT, "Show n last created containers (includes all states)", -1),
    Flag("latest", "l", BOOL, "Show the latest created container (includes all states)"),
    Flag("no-trunc", None, BOOL, "Don't truncate output"),
    Flag("quiet", "q", BOOL, "Only display container IDs"),
    Flag("size", "s", BOOL, "Display total file sizes")], nargs=(0, 0))
def ps(cli, opts, args) -> int:
    fmt = opts["format"] or ""
    if opts["quiet"] and fmt:
        cli.err("WARNING: Ignoring custom format, because both --format and --quiet are set.\n")
        fmt = ""
    fmt = choose(fmt, PS_TABLE + ("\t{{.Size}}" if opts["size"] else ""))
    size = opts["size"] or (".Size" in fmt and not opts["quiet"])
    limit = 1 if opts["latest"] else opts["last"]
    params = {"all": opts["all"], "size": size,
              "filters": parse_filters(opts["filter"], "bosun ps")}
    if limit is not None and limit > 0:
        params["limit"] = limit
    containers = cli.client.call("GET", "/containers/json", params) or []
    trunc = not opts["no-trunc"]
    if opts["quiet"]:
        cli.out("".join((c["Id"][:12] if trunc else c["Id"]) + "\n" for c in containers))
        return 0
    from bosun.cli.format import render

    now = time.time()
    render(fmt, [PsRow(c, trunc, now) for c in containers], PS_TITLES, sys.stdout)
    return 0


def for_each(cli, names: list[str], act) -> int:
    """Run act(name) for every argument, printing what it returns; docker goes on after a
    failure and exits 1 at the end."""
    from bosun.cli.http import APIError

    failed = False
    for name in names:
        try:
            line = act(name)
        except APIError as e:
            cli.err(f"Error response from daemon: {e}\n")
            failed = True
            continue
        if line is not None:
            cli.out(f"{line}\n")
            sys.stdout.flush()
    return 1 if failed else 0


def cpath(name: str, suffix: str = "") -> str:
    from bosun.cli.http import quote

    return f"/containers/{quote(name)}{suffix}"


@command(COMMANDS, "stop", "[OPTIONS] CONTAINER [CONTAINER...]", "Stop one or more running "
         "containers", [
             Flag("signal", "s", STR, "Signal to send to the container"),
             Flag("time", "t", INT, "Seconds to wait before killing the container")],
         nargs=(1, None))
def stop(cli, opts, args) -> int:
    params = {"t": opts["time"], "signal": opts["signal"]}
    return for_each(cli, args, lambda n: cli.client.call("POST", cpath(n, "/stop"), params) or n)


@command(COMMANDS, "restart", "[OPTIONS] CONTAINER [CONTAINER...]", "Restart one or more "
         "containers", [
             Flag("signal", "s", STR, "Signal to send to the container"),
             Flag("time", "t", INT, "Seconds to wait before killing the container")],
         nargs=(1, None))
def restart(cli, opts, args) -> int:
    params = {"t": opts["time"], "signal": opts["signal"]}
    return for_each(cli, args, lambda n: cli.client.call("POST", cpath(n, "/restart"), params)
                    or n)


@command(COMMANDS, "kill", "[OPTIONS] CONTAINER [CONTAINER...]", "Kill one or more running "
         "containers", [Flag("signal", "s", STR, "Signal to send to the container")],
         nargs=(1, None))
def kill(cli, opts, args) -> int:
    params = {"signal": opts["signal"]}
    return for_each(cli, args, lambda n: cli.client.call("POST", cpath(n, "/kill"), params) or n)


@command(COMMANDS, "rm", "[OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more "
         "containers", [
             Flag("force", "f", BOOL, "Force the removal of a running container (uses SIGKILL)"),
             Flag("link", "l", BOOL, "Remove the specified link"),
             Flag("volumes", "v", BOOL, "Remove anonymous volumes associated with the container")],
         nargs=(1, None))
def rm(cli, opts, args) -> int:
    params = {"force": opts["force"], "v": opts["volumes"], "link": opts["link"]}
    return for_each(cli, args, lambda n: cli.client.call("DELETE", cpath(n), params) or n)


@command(COMMANDS, "pause", "CONTAINER [CONTAINER...]", "Pause all processes within one or "
         "more containers", nargs=(1, None))
def pause(cli, opts, args) -> int:
    return for_each(cli, args, lambda n: cli.client.call("POST", cpath(n, "/pause")) or n)


@command(COMMANDS, "unpause", "CONTAINER [CONTAINER...]", "Unpause all processes within one "
         "or more containers", nargs=(1, None))
def unpause(cli, opts, args) -> int:
    return for_each(cli, args, lambda n: cli.client.call("POST", cpath(n, "/unpause")) or n)


@command(COMMANDS, "wait", "CONTAINER [CONTAINER...]", "Block until one or more containers "
         "stop, then print their exit codes", nargs=(1, None))
def wait(cli, opts, args) -> int:
    return for_each(cli, args, lambda n: (cli.client.call("POST", cpath(n, "/wait")) or {})
                    .get("StatusCode"))


@command(COMMANDS, "rename", "CONTAINER NEW_NAME", "Rename a container", nargs=(2, 2))
def rename(cli, opts, args) -> int:
    old, new = args
    if not new.strip():
        raise StatusError(1, "Error: neither old nor new names may be empty")
    cli.client.call("POST", cpath(old, "/rename"), {"name": new})
    return 0


@command(COMMANDS, "top", "CONTAINER [ps OPTIONS]", "Display the running processes of a "
         "container", nargs=(1, None), interspersed=False)
def top(cli, opts, args) -> int:
    from bosun.cli.format import tabwrite

    params = {"ps_args": " ".join(args[1:])} if len(args) > 1 else {}
    t = cli.client.call("GET", cpath(args[0], "/top"), params) or {}
    lines = ["\t".join(t.get("Titles") or [])] + ["\t".join(p) for p in t.get("Processes") or []]
    cli.out(tabwrite("\n".join(lines) + "\n", 20, 3))
    return 0


@command(COMMANDS, "inspect", "[OPTIONS] NAME|ID [NAME|ID...]", "Return low-level information "
         "on Docker objects", [
             Flag("format", "f", STR, "Format output using a custom template"),
             Flag("size", "s", BOOL, "Display total file sizes if the type is container"),
             Flag("type", None, STR, "Return JSON for specified type")], nargs=(1, None))
def inspect(cli, opts, args) -> int:
    from bosun.cli.http import APIError, path_of

    kind = opts["type"]
    if kind not in (None, "", "container", "image"):
        raise StatusError(1, f'"{kind}" is not a valid value for --type')
    found, missing = [], []
    for name in args:
        doc = None
        for k in ("container", "image"):
            if kind and kind != k:
                continue
            try:
                doc = cli.client.call("GET", cpath(name, "/json") if k == "container" else
                                      f"/images/{path_of(name)}/json",
                                      {"size": opts["size"]} if k == "container" else None)
                break
            except APIError as e:
                if e.status != 404:
                    raise
        if doc is None:
            missing.append(name)
        else:
            found.append(doc)
    from bosun.cli.format import print_inspect

    print_inspect(cli, found, opts["format"])
    for name in missing:
        what = {"container": "container", "image": "image"}.get(kind or "", "object")
        cli.err(f"Error: No such {what}: {name}\n")
    return 1 if missing else 0


def duration_or_time(value: str | None) -> str | None:
    """--since/--until as unix seconds, computed here as docker's CLI does."""
    if not value:
        return None
    from bosun.gosyntax import GoSyntaxError, parse_timestamp

    try:
        t = parse_timestamp(value)
    except GoSyntaxError as e:
        raise StatusError(1, f"{e}") from None
    return f"{t:.9f}".rstrip("0").rstrip(".")


@command(COMMANDS, "logs", "[OPTIONS] CONTAINER", "Fetch the logs of a container", [
    Flag("details", None, BOOL, "Show extra details provided to logs"),
    Flag("follow", "f", BOOL, "Follow log output"),
    Flag("since", None, STR, "Show logs since timestamp (e.g. \"2013-01-02T13:23:37Z\") or "
         "relative (e.g. \"42m\" for 42 minutes)"),
    Flag("tail", "n", STR, 'Number of lines to show from the end of the logs', "all"),
    Flag("timestamps", "t", BOOL, "Show timestamps"),
    Flag("until", None, STR, "Show logs before a timestamp (e.g. \"2013-01-02T13:23:37Z\") or "
         "relative (e.g. \"42m\" for 42 minutes)")], nargs=(1, 1))
def logs(cli, opts, args) -> int:
    c = cli.client.call("GET", cpath(args[0], "/json"))
    params = {"stdout": True, "stderr": True, "follow": opts["follow"], "tail": opts["tail"],
              "timestamps": opts["timestamps"], "details": opts["details"],
              "since": duration_or_time(opts["since"]),
              "until": duration_or_time(opts["until"])}
    r = cli.client.stream("GET", cpath(c["Id"], "/logs"), params)
    copy_output(r.chunks(), bool((c.get("Config") or {}).get("Tty")))
    return 0


def copy_output(chunks, tty: bool) -> None:
    """Raw (tty) or demultiplexed output to our stdout and stderr, as it comes."""
    from bosun.cli.http import Demuxer

    sys.stdout.flush()
    if tty:
        for data in chunks:
            write_all(1, data)
        return
    demux = Demuxer()
    for data in chunks:
        for stream, payload in demux.feed(data):
            if stream == 3:
                raise StatusError(1, f"Error from daemon in stream: {payload.decode()}")
            write_all(2 if stream == 2 else 1, payload)


def write_all(fd: int, data: bytes) -> None:
    import os

    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]

