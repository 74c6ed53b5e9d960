"""`bosun-runtime`: runc's command line, so containerd's shim, dockerd and podman can drive us.

A small table-driven parser instead of argparse/click: this is the hot path of every
container start, and runc's flag syntax (-flag and --flag, value or =value) is simple.
"""

from __future__ import annotations

import os
import sys

from bosun import __version__
from bosun.runtime.errors import RuntimeErr

USAGE = """usage: bosun-runtime [global options] COMMAND [options] [args]

An OCI container runtime with runc's command line.

Commands:
  spec      write a default config.json        create  create a container
  start     start a created container           run     create and start a container
  state     print a container's state           list    list containers
  kill      signal a container's processes      delete  delete a container
  exec      run a process in a container        ps      list a container's processes
  pause     freeze a container's processes      resume  thaw them
  update    change resource limits              events  resource stats and OOM events
  features  print supported features

Global options:
  --root DIR            state directory (default /run/bosun-runtime)
  --log FILE            log file (default stderr)
  --log-format FORMAT   text or json
  --debug               log debug messages
  --systemd-cgroup      (not supported)
  --version, -v         print the version
"""

# name -> kind: "b" bool, "s" string, "i" int, "l" repeatable string
GLOBAL = {"root": "s", "log": "s", "log-format": "s", "debug": "b", "systemd-cgroup": "b",
          "rootless": "s", "criu": "s", "version": "b", "help": "b"}
GLOBAL_SHORT = {"v": "version", "h": "help"}

COMMANDS = {
    "spec": ({"bundle": "s", "rootless": "b"}, {"b": "bundle"}),
    "create": ({"bundle": "s", "console-socket": "s", "pid-file": "s", "no-pivot": "b",
                "no-new-keyring": "b", "preserve-fds": "i"}, {"b": "bundle"}),
    "run": ({"bundle": "s", "console-socket": "s", "pid-file": "s", "no-pivot": "b",
             "no-new-keyring": "b", "preserve-fds": "i", "detach": "b", "keep": "b"},
            {"b": "bundle", "d": "detach"}),
    "start": ({}, {}),
    "state": ({}, {}),
    "list": ({"format": "s", "quiet": "b"}, {"f": "format", "q": "quiet"}),
    "kill": ({"all": "b"}, {"a": "all"}),
    "delete": ({"force": "b"}, {"f": "force"}),
    "exec": ({"process": "s", "tty": "b", "detach": "b", "pid-file": "s", "env": "l",
              "cwd": "s", "user": "s", "additional-gids": "l", "cap": "l",
              "no-new-privs": "b", "console-socket": "s", "preserve-fds": "i",
              "process-label": "s", "apparmor": "s", "cgroup": "l", "ignore-paused": "b"},
             {"p": "process", "t": "tty", "d": "detach", "e": "env", "u": "user",
              "g": "additional-gids", "c": "cap"}),
    "ps": ({"format": "s"}, {"f": "format"}),
    "pause": ({}, {}),
    "resume": ({}, {}),
    "events": ({"stats": "b", "interval": "s"}, {}),
    "update": ({"resources": "s", "memory": "s", "memory-reservation": "s", "memory-swap": "s",
                "kernel-memory": "s", "kernel-memory-tcp": "s", "cpu-shares": "i",
                "cpu-quota": "i", "cpu-period": "i", "cpu-rt-period": "i",
                "cpu-rt-runtime": "i", "cpuset-cpus": "s", "cpuset-mems": "s",
                "pids-limit": "i", "blkio-weight": "i", "l3-cache-schema": "s",
                "mem-bw-schema": "s"}, {"r": "resources"}),
    "features": ({}, {}),
}


class Usage(Exception):
    pass


def parse_flags(argv: list[str], table: dict, short: dict, stop_at_positional: bool = True):
    """Parse leading flags; return (options, rest). `--` ends the flags."""
    opts: dict = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                break
            i += 1
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        name = short.get(name, name)
        kind = table.get(name)
        if kind is None:
            raise Usage(f"flag provided but not defined: {arg.split('=')[0]}")
        if kind == "b":
            opts[name] = value.lower() not in ("false", "0", "no") if eq else True
        else:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise Usage(f"flag needs an argument: {arg}")
                value = argv[i]
            if kind == "i":
                try:
                    value = int(value)
                except ValueError:
                    raise Usage(f"invalid value {value!r} for {arg}") from None
            if kind == "l":
                opts.setdefault(name, []).append(value)
            else:
                opts[name] = value
        i += 1
    return opts, argv[i:]


class Log:
    """runc-compatible logging: text or JSON lines to --log (containerd reads the last error)."""

    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path, self.fmt, self.debug_on = path, fmt, debug

    def write(self, level: str, msg: str) -> None:
        if level == "debug" and not self.debug_on:
            return
        from bosun.runtime.state import now_rfc3339

        if self.fmt == "json":
            import json

            line = json.dumps({"level": level, "msg": msg, "time": now_rfc3339()})
        else:
            quoted = msg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            line = f'time="{now_rfc3339()}" level={level} msg="{quoted}"'
        if self.path:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                             0o644)
            except OSError as e:
                sys.stderr.write(f"bosun-runtime: cannot open log {self.path}: {e.strerror}\n")
                self.path = None
            else:
                try:
                    os.write(fd, (line + "\n").encode())
                finally:
                    os.close(fd)
        if not self.path or level == "error":
            sys.stderr.write(f"bosun-runtime: {msg}\n" if level == "error" else line + "\n")

    def warning(self, msg: str) -> None:
        self.write("warning", msg)

    def error(self, msg: str) -> None:
        self.write("error", msg)


def _one_id(args: list[str], cmd: str) -> str:
    if len(args) != 1:
        raise Usage(f"{cmd} takes exactly one container id")
    return args[0]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    log = Log(None, "text", False)
    try:
        g, rest = parse_flags(argv, GLOBAL, GLOBAL_SHORT)
        log = Log(g.get("log"), g.get("log-format", "text"), g.get("debug", False))
        if g.get("version"):
            from bosun.runtime.spec import OCI_VERSION

            print(f"bosun-runtime version {__version__}\nspec: {OCI_VERSION}\n"
                  f"python: {sys.version.split()[0]}")
            return 0
        if g.get("help") or not rest:
            print(USAGE, end="")
            return 0 if g.get("help") else 2
        if g.get("systemd-cgroup"):
            raise RuntimeErr("--systemd-cgroup is not supported: bosun-runtime manages "
                             "cgroups through cgroupfs only")
        if g.get("log-format", "text") not in ("text", "json"):
            raise Usage(f"unknown log format {g['log-format']!r}")
        cmd, rest = rest[0], rest[1:]
        if cmd not in COMMANDS:
            raise Usage(f"unknown command {cmd!r}")
        table, short = COMMANDS[cmd]
        opts, args = parse_flags(rest, table, short)
        if g.get("root"):
            root = g["root"]
        else:
            from bosun.runtime.state import default_root

            root = default_root()
        return dispatch(cmd, root, opts, args, log)
    except Usage as e:
        log.error(str(e))  # to --log too: containerd reports the runtime's last logged error
        return 2
    except RuntimeErr as e:
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        log.error(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return 1


def dispatch(cmd: str, root: str, o: dict, args: list[str], log: Log) -> int:
    if cmd == "spec":
        import json

        from bosun.runtime.spec import default_spec

        if args:
            raise Usage("spec takes no arguments")
        path = os.path.join(o.get("bundle") or ".", "config.json")
        if os.path.exists(path):
            raise RuntimeErr(f"{path} already exists; remove it first")
        from bosun.runtime.state import atomic_write

        atomic_write(path, (json.dumps(default_spec(o.get("rootless", False)), indent=2)
                            + "\n").encode(), 0o644)
        return 0
    if cmd == "create":
        from bosun.runtime.create import create

        create(root, _one_id(args, cmd), o.get("bundle") or ".",
               console_socket=o.get("console-socket"), pid_file=o.get("pid-file"),
               no_pivot=o.get("no-pivot", False), preserve_fds=o.get("preserve-fds", 0),
               no_new_keyring=o.get("no-new-keyring", False), log=log)
        return 0
    if cmd == "run":
        from bosun.runtime.run import run

        return run(root, _one_id(args, cmd), o.get("bundle") or ".",
                   detach=o.get("detach", False), keep=o.get("keep", False),
                   console_socket=o.get("console-socket"), pid_file=o.get("pid-file"),
                   no_pivot=o.get("no-pivot", False), preserve_fds=o.get("preserve-fds", 0),
                   no_new_keyring=o.get("no-new-keyring", False), log=log)
    if cmd == "start":
        from bosun.runtime.start import start

        start(root, _one_id(args, cmd), log=log)
        return 0
    if cmd == "state":
        from bosun.runtime.query import dumps, state

        print(dumps(state(root, _one_id(args, cmd))))
        return 0
    if cmd == "list":
        return _list(root, o)
    if cmd == "kill":
        from bosun.runtime.kill import kill

        if not 1 <= len(args) <= 2:
            raise Usage("usage: kill [--all] ID [SIGNAL]")
        kill(root, args[0], args[1] if len(args) > 1 else "SIGTERM", all=o.get("all", False))
        return 0
    if cmd == "delete":
        from bosun.runtime.delete import delete

        if not args:
            raise Usage("delete takes one or more container ids")
        for cid in args:
            delete(root, cid, force=o.get("force", False), log=log)
        return 0
    if cmd == "exec":
        return _exec(root, o, args, log)
    if cmd == "ps":
        from bosun.runtime import ps

        cid = args[0] if args else None
        if cid is None:
            raise Usage("usage: ps [--format table|json] ID [ps options]")
        if o.get("format") == "json":
            import json

            print(json.dumps(ps.pids(root, cid)))
        else:
            sys.stdout.write(ps.table(root, cid, args[1:]))
        return 0
    if cmd in ("pause", "resume"):
        from bosun.runtime import pause

        getattr(pause, cmd)(root, _one_id(args, cmd))
        return 0
    if cmd == "update":
        from bosun.runtime.update import update

        update(root, _one_id(args, cmd), _update_resources(o))
        return 0
    if cmd == "events":
        from bosun.runtime.events import events, parse_interval

        events(root, _one_id(args, cmd), once=o.get("stats", False),
               interval=parse_interval(o.get("interval") or "5s"))
        return 0
    if cmd == "features":
        import json

        from bosun.runtime.features import features

        print(json.dumps(features(), indent=2))
        return 0
    raise Usage(f"unknown command {cmd!r}")


def _list(root: str, o: dict) -> int:
    from bosun.runtime.query import dumps, list_states

    states = list_states(root)
    if o.get("quiet"):
        for s in states:
            print(s["id"])
    elif o.get("format") == "json":
        print(dumps(states))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]
                  or "root") for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            print("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def _exec(root: str, o: dict, args: list[str], log: Log) -> int:
    import json

    from bosun.runtime.exec import exec_process
    from bosun.runtime.state import Container

    if not args:
        raise Usage("usage: exec [options] ID [COMMAND [ARGS...]]")
    cid, cmdline = args[0], args[1:]
    if o.get("process"):
        try:
            with open(o["process"], "rb") as f:
                process = json.loads(f.read())
        except (OSError, ValueError) as e:
            raise RuntimeErr(f"cannot read process file {o['process']}: {e}") from None
    else:
        if not cmdline:
            raise Usage("exec needs a command or --process")
        base = Container.load(root, cid).config.get("process") or {}
        process = json.loads(json.dumps(base))
        process["args"] = cmdline
        process["terminal"] = o.get("tty", False)
        process.pop("consoleSize", None)
        if o.get("env"):
            process["env"] = (process.get("env") or []) + o["env"]
        if o.get("cwd"):
            process["cwd"] = o["cwd"]
        if o.get("user"):
            uid, _, gid = o["user"].partition(":")
            try:
                process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
            except ValueError:
                raise Usage(f"--user takes uid[:gid] numbers, not {o['user']!r}") from None
        if o.get("additional-gids"):
            try:
                process.setdefault("user", {})["additionalGids"] = [
                    int(g) for g in o["additional-gids"]]
            except ValueError:
                raise Usage("--additional-gids takes numbers") from None
        if o.get("cap"):
            c = process.setdefault("capabilities", {})
            for key in ("bounding", "effective", "permitted", "ambient"):
                c[key] = sorted(set(c.get(key) or []) | set(o["cap"]))
        if o.get("no-new-privs"):
            process["noNewPrivileges"] = True
    return exec_process(root, cid, process, detach=o.get("detach", False),
                        console_socket=o.get("console-socket"), pid_file=o.get("pid-file"),
                        preserve_fds=o.get("preserve-fds", 0), log=log)


def _update_resources(o: dict) -> dict:
    """runc update's flags (or -r FILE / -r - for JSON on stdin) → an OCI resources object."""
    from bosun.runtime.update import parse_bytes

    if o.get("l3-cache-schema") or o.get("mem-bw-schema"):
        raise RuntimeErr("Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported")
    if o.get("resources"):
        from bosun import quickjson

        try:
            if o["resources"] == "-":
                raw = sys.stdin.read()
            else:
                with open(o["resources"]) as f:
                    raw = f.read()
            res = quickjson.loads(raw)
        except (OSError, ValueError) as e:
            raise RuntimeErr(f"cannot read resources {o['resources']}: {e}") from None
        if not isinstance(res, dict):
            raise RuntimeErr("resources must be a JSON object")
        return res
    res: dict = {}
    mem = {k: parse_bytes(o[f]) for k, f in (("limit", "memory"),
                                             ("reservation", "memory-reservation"),
                                             ("swap", "memory-swap"),
                                             ("kernel", "kernel-memory"),
                                             ("kernelTCP", "kernel-memory-tcp")) if o.get(f)}
    cpu = {k: o[f] for k, f in (("shares", "cpu-shares"), ("quota", "cpu-quota"),
                                ("period", "cpu-period"), ("realtimePeriod", "cpu-rt-period"),
                                ("realtimeRuntime", "cpu-rt-runtime"), ("cpus", "cpuset-cpus"),
                                ("mems", "cpuset-mems")) if o.get(f) is not None}
    if mem:
        res["memory"] = mem
    if cpu:
        res["cpu"] = cpu
    if o.get("pids-limit") is not None:
        res["pids"] = {"limit": o["pids-limit"]}
    if o.get("blkio-weight") is not None:
        res["blockIO"] = {"weight": o["blkio-weight"]}
    if not res:
        raise Usage("update needs at least one resource flag or --resources")
    return res
