"""`bosun`: Docker's command line over bosun's API; `bosun daemon` runs the daemon.

Start-up time is a feature: `bosun ps` must answer about as fast as docker's Go CLI, so this
package imports only what a command needs, when it needs it (no click, no requests, no
`json`/`re`; rich only for pull's progress bars). Commands live in one module per group and
are found through COMMANDS without importing the others.
"""

from __future__ import annotations

import os
import sys

from bosun.cli.flags import BOOL, LIST, PROG, STR, Command, Flag, FlagValue, Usage, parse

# command -> module that defines it (in its COMMANDS)
COMMANDS = {
    "version": "system", "info": "system",
    "ps": "containers", "inspect": "containers", "logs": "containers", "stop": "containers",
    "restart": "containers", "kill": "containers", "rm": "containers", "wait": "containers",
    "rename": "containers", "pause": "containers", "unpause": "containers", "top": "containers",
    "run": "run", "create": "run", "start": "run", "exec": "run", "attach": "run",
    "images": "images", "pull": "images", "tag": "images", "rmi": "images",
    "push": "registry", "login": "registry", "logout": "registry",
    "save": "files", "load": "files", "import": "files", "commit": "files", "cp": "files",
    "diff": "files", "export": "files",
    "history": "disk", "image inspect": "disk", "image prune": "disk",
    "container prune": "disk", "system df": "disk", "system prune": "disk",
    "port": "monitor", "update": "monitor", "stats": "monitor", "events": "monitor",
    "completion": "completion",
    **{f"network {v}": "network" for v in ("create", "ls", "inspect", "rm", "connect",
                                           "disconnect", "prune")},
    "volume create": "volumes", "volume ls": "volumes", "volume inspect": "volumes",
    "volume rm": "volumes", "volume prune": "volumes",
}
CONTAINER_COMMANDS = ("attach", "commit", "cp", "create", "diff", "exec", "export", "inspect",
                      "kill", "logs", "pause", "port", "rename", "restart", "rm", "run", "start",
                      "stats", "stop", "top", "unpause", "update", "wait")
# docker's management commands: `bosun container ls` is `bosun ps`
GROUPS = {
    "container": {"ls": "ps", "list": "ps", "ps": "ps", "remove": "rm",
                  "prune": "container prune", **{c: c for c in CONTAINER_COMMANDS}},
    "image": {"ls": "images", "list": "images", "pull": "pull", "push": "push", "tag": "tag",
              "rm": "rmi", "remove": "rmi", "inspect": "image inspect", "prune": "image prune",
              "history": "history", "save": "save", "load": "load", "import": "import"},
    "network": {**{v: f"network {v}" for v in ("create", "ls", "inspect", "rm", "connect",
                                                "disconnect", "prune")},
                "list": "network ls", "remove": "network rm"},
    "system": {"info": "info", "df": "system df", "prune": "system prune", "events": "events"},
    "volume": {"create": "volume create", "ls": "volume ls", "list": "volume ls",
               "inspect": "volume inspect", "rm": "volume rm", "remove": "volume rm",
               "prune": "volume prune"},
}

GLOBAL = Command("", "[OPTIONS] COMMAND [ARG...]", "A self-sufficient runtime for containers", [
    Flag("host", "H", LIST, "Daemon socket to connect to"),
    Flag("debug", "D", BOOL, "Enable debug mode"),
    Flag("log-level", "l", STR, 'Set the logging level ("debug", "info", "warn", "error", '
         '"fatal")'),
    Flag("config", None, STR, "Location of client config files"),
    Flag("context", "c", STR, "Name of the context to use to connect to the daemon"),
    Flag("tls", None, BOOL, "Use TLS; implied by --tlsverify"),
    Flag("tlsverify", None, BOOL, "Use TLS and verify the remote"),
    Flag("version", "v", BOOL, "Print version information and quit"),
], interspersed=False)

TOP_HELP = """
Usage:  bosun [OPTIONS] COMMAND

A Docker-compatible container engine

Common Commands:
  run         Create and run a new container from an image
  exec        Execute a command in a running container
  ps          List containers
  images      List images
  pull        Download an image from a registry
  version     Show the bosun version information
  info        Display system-wide information
  daemon      Run the bosun daemon

  login       Authenticate to a registry
  logout      Log out from a registry
  push        Upload an image to a registry

Management Commands:
  container   Manage containers (ls, prune, and the commands below)
  image       Manage images (ls, inspect, prune, and the commands below)
  network     Manage networks (create, ls, inspect, rm, connect, disconnect, prune)
  system      Manage bosun (df, events, info, prune)
  volume      Manage volumes (create, inspect, ls, prune, rm)
  completion  Generate the shell completion script (bash, zsh, fish)

Container Commands:
  attach, commit, cp, create, diff, events, export, inspect, kill, logs, pause, port,
  rename, restart, rm, start, stats, stop, top, unpause, update, wait

Image Commands:
  history, import, load, rmi, save, tag

Global Options:
  -H, --host list     Daemon socket to connect to (default unix:///run/bosun/bosun.sock,
                      or $BOSUN_HOST, or $DOCKER_HOST)
  -D, --debug         Enable debug mode (tracebacks on internal errors)
  -v, --version       Print version information and quit

Run 'bosun COMMAND --help' for more information on a command.
"""


class StatusError(Exception):
    """Leave with this exit code, after printing the message (if any) on stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code


class Cli:
    """What a command gets: where the daemon is, its client, and the standard streams."""

    def __init__(self, host: str, debug: bool = False, config_dir: str | None = None) -> None:
        self.host = host
        self.debug = debug
        self.config_dir = config_dir  # --config: where login keeps credentials
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from bosun.cli.http import Client

            self._client = Client(self.host)
        return self._client

    @staticmethod
    def out(text: str) -> None:
        sys.stdout.write(text)

    @staticmethod
    def err(text: str) -> None:
        sys.stderr.write(text)


def resolve_host(flags: list[str]) -> str:
    from bosun.cli.http import DEFAULT_HOST

    host = (flags[-1] if flags else None) or os.environ.get("BOSUN_HOST") or \
        os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    if host.startswith("/"):
        host = "unix://" + host
    return host


def find(args: list[str]) -> tuple[Command | None, list[str], str]:
    """(the command, its arguments, the word the user typed)."""
    if not args:
        return None, [], ""
    name, rest = args[0], args[1:]
    if name in GROUPS and rest and rest[0] in GROUPS[name]:
        name, rest = GROUPS[name][rest[0]], rest[1:]
    module = COMMANDS.get(name)
    if module is None:
        return None, rest, args[0]
    mod = __import__(f"bosun.cli.{module}", fromlist=["COMMANDS"])
    return mod.COMMANDS[name], rest, name


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "daemon":
        from bosun.daemon import main as daemon_main

        return daemon_main(args[1:])
    debug = bool(os.environ.get("BOSUN_DEBUG"))
    cmd = None
    try:
        gopts, rest = parse(GLOBAL, args)
        debug = debug or gopts["debug"]
        if gopts["version"]:
            from bosun import __version__

            print(f"{PROG} version {__version__}")
            return 0
        if gopts["help"] or not rest or rest[0] == "help":
            print(TOP_HELP, end="")
            return 0
        cli = Cli(resolve_host(gopts["host"]), debug, gopts["config"])
        cmd, rest, typed = find(rest)
        if cmd is None:
            sys.stderr.write(f"{PROG}: unknown command: {PROG} {typed}\n\n"
                             f"Run '{PROG} --help' for more information\n")
            return 1
        opts, cargs = parse(cmd, rest)
        if opts["help"]:
            print(cmd.help_text(), end="")
            return 0
        return cmd.func(cli, opts, cargs) or 0
    except Usage as e:
        sys.stderr.write(e.render())
        return e.code
    except FlagValue as e:
        u = Usage(str(e), cmd)
        sys.stderr.write(u.render())
        return u.code
    except StatusError as e:
        if str(e):
            sys.stderr.write(f"{e}\n")
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`bosun ps | head`): quiet, as a Go program killed by SIGPIPE
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 141
    except Exception as e:  # noqa: BLE001  (a user sees one line, never a traceback)
        from bosun.cli.http import APIError, Unreachable

        code = 125 if cmd is not None and cmd.path in ("run", "create") else 1
        if isinstance(e, Unreachable):
            sys.stderr.write(f"Cannot connect to the bosun daemon at {e.host}. Is the bosun "
                             "daemon running? (start it with: bosun daemon)\n")
            return code
        if isinstance(e, APIError):
            sys.stderr.write(f"Error response from daemon: {e}\n")
            return code
        if debug:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"{PROG}: {type(e).__name__}: {e}\n")
        return code
