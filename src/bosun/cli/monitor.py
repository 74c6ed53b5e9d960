"""Watching and tuning containers: stats, events, update, port."""

from __future__ import annotations

import os
import sys
import time

from bosun.cli import StatusError
from bosun.cli.containers import cpath, for_each, parse_filters
from bosun.cli.flags import BOOL, FLOAT, INT, LIST, STR, Flag, command

COMMANDS: dict = {}

STATS_TABLE = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t" \
    "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
STATS_TITLES = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME",
                "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
                "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


class StatsRow:
    """docker's statsContext: one container's sample as `stats --format` sees it. A missing
    sample (a stopped container, an error) shows as docker's "--" or zeros."""

    type_name = "*formatter.statsContext"

    def __init__(self, container: str, doc: dict | None, trunc: bool = True) -> None:
        self.container, self.doc, self.trunc = container, doc or {}, trunc

    @property
    def Container(self) -> str:
        return self.container

    @property
    def ID(self) -> str:
        cid = self.doc.get("id") or self.container
        return cid[:12] if self.trunc else cid

    @property
    def Name(self) -> str:
        name = self.doc.get("name") or ""
        return name[1:] if name.startswith("/") else name or "--"

    def _cpu(self) -> float:
        cpu, pre = self.doc.get("cpu_stats") or {}, self.doc.get("precpu_stats") or {}
        delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - \
            (pre.get("cpu_usage") or {}).get("total_usage", 0)
        system = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
        online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get(
            "percpu_usage") or []) or 1
        return delta / system * online * 100.0 if system > 0 and delta > 0 else 0.0

    def _mem(self) -> tuple[float, float]:
        m = self.doc.get("memory_stats") or {}
        usage, st = m.get("usage") or 0, m.get("stats") or {}
        # docker's calculateMemUsageUnixNoCache: the page cache is not the container's
        for key in ("total_inactive_file", "inactive_file"):
            if key in st and st[key] < usage:
                usage -= st[key]
                break
        return float(usage), float(m.get("limit") or 0)

    @property
    def CPUPerc(self) -> str:
        return f"{self._cpu():.2f}%" if self.doc else "--"

    @property
    def MemUsage(self) -> str:
        from bosun.cli.format import bytes_size

        if not self.doc:
            return "-- / --"
        usage, limit = self._mem()
        return f"{bytes_size(usage)} / {bytes_size(limit)}"

    @property
    def MemPerc(self) -> str:
        if not self.doc:
            return "--"
        usage, limit = self._mem()
        return f"{usage / limit * 100 if limit else 0.0:.2f}%"

    @property
    def NetIO(self) -> str:
        from bosun.cli.format import human_size

        if not self.doc:
            return "--"
        nets = (self.doc.get("networks") or {}).values()
        rx, tx = sum(n.get("rx_bytes", 0) for n in nets), sum(n.get("tx_bytes", 0) for n in nets)
        return f"{human_size(rx)} / {human_size(tx)}"

    @property
    def BlockIO(self) -> str:
        from bosun.cli.format import human_size

        if not self.doc:
            return "--"
        read = write = 0
        for e in (self.doc.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
            op = (e.get("op") or "").lower()
            if op == "read":
                read += e.get("value", 0)
            elif op == "write":
                write += e.get("value", 0)
        return f"{human_size(read)} / {human_size(write)}"

    @property
    def PIDs(self) -> str:
        return str((self.doc.get("pids_stats") or {}).get("current", 0)) if self.doc else "--"

    def as_json(self) -> dict:
        return {k: getattr(self, k) for k in ("BlockIO", "CPUPerc", "Container", "ID",
                                             "MemPerc", "MemUsage", "Name", "NetIO", "PIDs")}


def render_stats(fmt: str, rows: list[StatsRow]) -> str:
    import io

    from bosun.cli.format import render

    buf = io.StringIO()
    render(fmt, rows, STATS_TITLES, buf)
    return buf.getvalue()


def redraw(text: str) -> str:
    """A frame that replaces the previous one in place: home, each line cleared to its end,
    then the rest of the screen (what docker's stats writes on a terminal)."""
    return "\033[H" + "".join(line + "\033[K\n" for line in text.splitlines()) + "\033[J"


class Collector:
    """A thread per container reading its stats stream, keeping the latest sample."""

    def __init__(self, cli, name: str) -> None:
        import threading

        self.cli, self.name = cli, name
        self.doc: dict | None = None
        self.done = False
        self.response = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            self.response = self.cli.client.stream("GET", cpath(self.name, "/stats"),
                                                   {"stream": True})
            for doc in self.response.json_stream():
                self.doc = doc
        except Exception:  # noqa: BLE001  (the container went away: its row goes too)
            pass
        self.done = True


@command(COMMANDS, "stats", "[OPTIONS] [CONTAINER...]", "Display a live stream of container(s) "
         "resource usage statistics", [
             Flag("all", "a", BOOL, "Show all containers (default shows just running)"),
             Flag("format", None, STR, "Format output using a custom template"),
             Flag("no-stream", None, BOOL, "Disable streaming stats and only pull the first "
                  "result"),
             Flag("no-trunc", None, BOOL, "Do not truncate output")])
def stats(cli, opts, args) -> int:
    from bosun.cli.format import choose

    fmt = choose(opts["format"], STATS_TABLE)
    trunc = not opts["no-trunc"]

    def listed() -> list[str]:
        if args:
            return list(args)
        return [c["Id"] for c in cli.client.call("GET", "/containers/json",
                                                 {"all": opts["all"]}) or []]
    if opts["no-stream"]:
        from bosun.cli.http import APIError

        rows, missing = [], []
        for name in listed():
            try:
                doc = cli.client.call("GET", cpath(name, "/stats"), {"stream": "0"})
            except APIError as e:
                if not args or e.status != 404:
                    continue
                missing.append(str(e))
                continue
            rows.append(StatsRow(name, doc, trunc))
        if missing:
            raise StatusError(1, "Error response from daemon: " + missing[0])
        cli.out(render_stats(fmt, rows))
        return 0
    if args:  # docker checks named containers exist before it starts drawing
        for name in args:
            cli.client.call("GET", cpath(name, "/json"))
    tty = os.isatty(1)
    collectors: dict[str, Collector] = {}
    if tty:
        cli.out("\033[2J")
    while True:
        names = listed()
        for name in names:
            if name not in collectors or (collectors[name].done and not args):
                collectors[name] = Collector(cli, name)
        for name in list(collectors):
            if name not in names:
                del collectors[name]
        time.sleep(0.5 if any(c.doc is None and not c.done for c in collectors.values())
                   else 1.0)
        rows = [StatsRow(n, c.doc, trunc) for n, c in collectors.items()
                if c.doc is not None or (args and c.done)]
        text = render_stats(fmt, rows)
        cli.out(redraw(text) if tty else text)
        sys.stdout.flush()


@command(COMMANDS, "events", "[OPTIONS]", "Get real time events from the server", [
    Flag("filter", "f", LIST, "Filter output based on conditions provided", metavar="filter"),
    Flag("format", None, STR, "Format output using a custom template"),
    Flag("since", None, STR, "Show all events created since timestamp"),
    Flag("until", None, STR, "Stream events until this timestamp")], nargs=(0, 0))
def events(cli, opts, args) -> int:
    from bosun.cli.containers import duration_or_time

    params = {"since": duration_or_time(opts["since"]), "until": duration_or_time(opts["until"]),
              "filters": parse_filters(opts["filter"], "bosun events")}
    fmt = opts["format"] or ""
    tmpl = None
    if fmt == "json":
        fmt = "{{json .}}"
    if fmt:
        from bosun.cli.format import Template, prepare

        tmpl = Template(prepare(fmt)[1])
    r = cli.client.stream("GET", "/events", params)
    for ev in r.json_stream():
        cli.out(tmpl.render(ev) + "\n" if tmpl else event_line(ev))
        sys.stdout.flush()
    return 0


def event_line(ev: dict) -> str:
    """docker's default: local RFC 3339 time with nine fractional digits, type, action, actor
    and its attributes sorted."""
    nano = ev.get("timeNano") or int(ev.get("time", 0)) * 10**9
    secs, frac = divmod(nano, 10**9)
    t = time.localtime(secs)
    off = time.strftime("%z", t)
    zone = "Z" if off in ("+0000", "-0000") else f"{off[:3]}:{off[3:]}"
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    line = (f"{time.strftime('%Y-%m-%dT%H:%M:%S', t)}.{frac:09d}{zone} {ev.get('Type', '')} "
            f"{ev.get('Action', '')} {actor.get('ID', '')}")
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line + "\n"


@command(COMMANDS, "update", "[OPTIONS] CONTAINER [CONTAINER...]", "Update configuration of one "
         "or more containers", [
             Flag("cpu-shares", "c", INT, "CPU shares (relative weight)"),
             Flag("cpus", None, FLOAT, "Number of CPUs"),
             Flag("cpuset-cpus", None, STR, "CPUs in which to allow execution (0-3, 0,1)"),
             Flag("memory", "m", STR, "Memory limit", metavar="bytes"),
             Flag("memory-swap", None, STR, "Swap limit equal to memory plus swap: -1 to enable "
                  "unlimited swap", metavar="bytes"),
             Flag("pids-limit", None, INT, "Tune container pids limit (set -1 for unlimited)"),
             Flag("restart", None, STR, "Restart policy to apply when a container exits")],
         nargs=(1, None))
def update(cli, opts, args) -> int:
    from bosun.cli.run import ram_in_bytes, restart_policy

    body: dict = {}
    if opts["cpu-shares"] is not None:
        body["CpuShares"] = opts["cpu-shares"]
    if opts["cpus"] is not None:
        body["NanoCpus"] = int(round(opts["cpus"] * 1e9))
    if opts["cpuset-cpus"] is not None:
        body["CpusetCpus"] = opts["cpuset-cpus"]
    if opts["memory"] is not None:
        body["Memory"] = ram_in_bytes(opts["memory"], "--memory")
    if opts["memory-swap"] is not None:
        body["MemorySwap"] = -1 if opts["memory-swap"].strip() == "-1" else \
            ram_in_bytes(opts["memory-swap"], "--memory-swap")
    if opts["pids-limit"] is not None:
        body["PidsLimit"] = opts["pids-limit"]
    if opts["restart"] is not None:
        body["RestartPolicy"] = restart_policy(opts["restart"])
    if not body:
        raise StatusError(1, "you must provide one or more flags when using this command")

    def one(name: str) -> str:
        r = cli.client.call("POST", cpath(name, "/update"), body=body) or {}
        for w in r.get("Warnings") or []:
            cli.err(f"{w}\n")
        return name
    return for_each(cli, args, one)


@command(COMMANDS, "port", "CONTAINER [PRIVATE_PORT[/PROTO]]", "List port mappings or a "
         "specific mapping for the container", nargs=(1, 2))
def port(cli, opts, args) -> int:
    c = cli.client.call("GET", cpath(args[0], "/json"))
    ports = (c.get("NetworkSettings") or {}).get("Ports") or {}

    def addr(b: dict) -> str:
        ip = b.get("HostIp") or "0.0.0.0"
        return f"{'[' + ip + ']' if ':' in ip else ip}:{b.get('HostPort', '')}"
    if len(args) == 2:
        want = args[1] if "/" in args[1] else args[1] + "/tcp"
        bindings = ports.get(want) or []
        if not bindings:
            raise StatusError(1, f"Error: No public port '{args[1]}' published for {args[0]}")
        cli.out("".join(addr(b) + "\n" for b in bindings))
        return 0

    def key(p: str) -> tuple:
        num, _, proto = p.partition("/")
        return (int(num) if num.isdigit() else 0, proto)
    cli.out("".join(f"{p} -> {addr(b)}\n" for p in sorted(ports, key=key)
                    for b in ports[p] or []))
    return 0
