"""run, create, start, attach and exec: container configuration from docker's flags, and
the attach / start / wait dance that makes `bosun run` exit with the container's code."""

from __future__ import annotations

import os
import sys

from bosun.cli import StatusError
from bosun.cli.flags import BOOL, FLOAT, INT, LIST, STR, Flag, FlagValue, command, key_values

COMMANDS: dict = {}

CREATE_FLAGS = [
    Flag("attach", "a", LIST, "Attach to STDIN, STDOUT or STDERR"),
    Flag("cap-add", None, LIST, "Add Linux capabilities"),
    Flag("cap-drop", None, LIST, "Drop Linux capabilities"),
    Flag("add-host", None, LIST, "Add a custom host-to-IP mapping (host:ip)"),
    Flag("cpus", None, FLOAT, "Number of CPUs"),
    Flag("cpu-shares", "c", INT, "CPU shares (relative weight)"),
    Flag("cpuset-cpus", None, STR, "CPUs in which to allow execution (0-3, 0,1)"),
    Flag("dns", None, LIST, "Set custom DNS servers"),
    Flag("dns-option", None, LIST, "Set DNS options"),
    Flag("dns-search", None, LIST, "Set custom DNS search domains"),
    Flag("entrypoint", None, STR, "Overwrite the default ENTRYPOINT of the image"),
    Flag("env", "e", LIST, "Set environment variables"),
    Flag("env-file", None, LIST, "Read in a file of environment variables"),
    Flag("expose", None, LIST, "Expose a port or a range of ports"),
    Flag("group-add", None, LIST, "Add additional groups to join"),
    Flag("hostname", "h", STR, "Container host name"),
    Flag("init", None, BOOL, "Run an init inside the container that forwards signals and "
         "reaps processes"),
    Flag("ip", None, STR, "IPv4 address (e.g., 172.30.100.104)"),
    Flag("ip6", None, STR, "IPv6 address (e.g., 2001:db8::33)"),
    Flag("interactive", "i", BOOL, "Keep STDIN open even if not attached"),
    Flag("label", "l", LIST, "Set meta data on a container"),
    Flag("mac-address", None, STR, "Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    Flag("health-cmd", None, STR, "Command to run to check health"),
    Flag("health-interval", None, STR, "Time between running the check (ms|s|m|h) (default 0s)",
         metavar="duration"),
    Flag("health-retries", None, INT, "Consecutive failures needed to report unhealthy"),
    Flag("health-start-interval", None, STR, "Time between running the check during the start "
         "period (ms|s|m|h) (default 0s)", metavar="duration"),
    Flag("health-start-period", None, STR, "Start period for the container to initialize "
         "before starting health-retries countdown (ms|s|m|h) (default 0s)", metavar="duration"),
    Flag("health-timeout", None, STR, "Maximum time to allow one check to run (ms|s|m|h) "
         "(default 0s)", metavar="duration"),
    Flag("memory", "m", STR, "Memory limit", metavar="bytes"),
    Flag("memory-swap", None, STR, "Swap limit equal to memory plus swap: '-1' to enable "
         "unlimited swap", metavar="bytes"),
    Flag("mount", None, LIST, "Attach a filesystem mount to the container", metavar="mount"),
    Flag("name", None, STR, "Assign a name to the container"),
    Flag("network", None, STR, "Connect a container to a network"),
    Flag("net", None, STR, "Connect a container to a network"),
    Flag("network-alias", None, LIST, "Add network-scoped alias for the container"),
    Flag("no-healthcheck", None, BOOL, "Disable any container-specified HEALTHCHECK"),
    Flag("pids-limit", None, INT, "Tune container pids limit (set -1 for unlimited)"),
    Flag("platform", None, STR, "Set platform if server is multi-platform capable"),
    Flag("publish", "p", LIST, "Publish a container's port(s) to the host"),
    Flag("publish-all", "P", BOOL, "Publish all exposed ports to random ports"),
    Flag("privileged", None, BOOL, "Give extended privileges to this container"),
    Flag("pull", None, STR, 'Pull image before running ("always", "missing", "never")',
         "missing"),
    Flag("quiet", "q", BOOL, "Suppress the pull output"),
    Flag("read-only", None, BOOL, "Mount the container's root filesystem as read only"),
    Flag("restart", None, STR, "Restart policy to apply when a container exits", "no"),
    Flag("rm", None, BOOL, "Automatically remove the container and its associated anonymous "
         "volumes when it exits"),
    Flag("security-opt", None, LIST, "Security Options"),
    Flag("stop-signal", None, STR, "Signal to stop the container"),
    Flag("stop-timeout", None, INT, "Timeout (in seconds) to stop a container"),
    Flag("tmpfs", None, LIST, "Mount a tmpfs directory"),
    Flag("tty", "t", BOOL, "Allocate a pseudo-TTY"),
    Flag("ulimit", None, LIST, "Ulimit options", metavar="ulimit"),
    Flag("user", "u", STR, "Username or UID (format: <name|uid>[:<group|gid>])"),
    Flag("volume", "v", LIST, "Bind mount a volume"),
    Flag("volumes-from", None, LIST, "Mount volumes from the specified container(s)"),
    Flag("workdir", "w", STR, "Working directory inside the container"),
]
RUN_FLAGS = CREATE_FLAGS + [
    Flag("detach", "d", BOOL, "Run container in background and print container ID"),
    Flag("detach-keys", None, STR, "Override the key sequence for detaching a container"),
    Flag("sig-proxy", None, BOOL, "Proxy received signals to the process", True),
]


def ram_in_bytes(value: str, flag: str) -> int:
    """A size flag's value (go-units RAMInBytes: 512m, 1.5GiB, 100000)."""
    from bosun.gosyntax import GoSyntaxError, ram_in_bytes as parse

    try:
        return parse(value)
    except GoSyntaxError as e:
        raise FlagValue(flag, value, str(e)) from None


def read_env_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise StatusError(125, f"open {path}: {(e.strerror or str(e)).lower()}") from None
    out = []
    for line in lines:
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        name, eq, _ = line.partition("=")
        if not eq:
            if name in os.environ:
                out.append(f"{name}={os.environ[name]}")
        elif not name:
            raise StatusError(125, f"invalid environment variable: {line}")
        else:
            out.append(line)
    return out


def restart_policy(value: str) -> dict:
    name, _, count = value.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure", ""):
        raise StatusError(125, f"invalid restart policy '{value}'")
    policy = {"Name": name if name != "no" else "", "MaximumRetryCount": 0}
    if count:
        if name != "on-failure":
            raise StatusError(125, f"invalid restart policy '{value}': maximum retry count can"
                              " only be used with 'on-failure'")
        try:
            policy["MaximumRetryCount"] = int(count)
        except ValueError:
            raise StatusError(125, f"invalid restart policy '{value}'") from None
    return policy


def normalize_caps(caps: list[str]) -> list[str] | None:
    """As docker's CLI: upper case, CAP_ prefixed, except ALL."""
    out = []
    for c in caps:
        c = c.strip().upper()
        out.append(c if c == "ALL" or c.startswith("CAP_") else "CAP_" + c)
    return out or None


def env_list(opts: dict) -> list[str]:
    """--env-file entries, then -e ones; -e NAME takes our value, or is left out."""
    env = []
    for path in opts["env-file"]:
        env += read_env_file(path)
    for e in opts["env"]:
        name, eq, _ = e.partition("=")
        if eq:
            env.append(e)
        elif name in os.environ:
            env.append(f"{name}={os.environ[name]}")
    return env


def container_config(opts: dict, args: list[str], detach: bool) -> dict:
    """The /containers/create body for these flags (as docker's CLI builds it)."""
    image, cmd = args[0], args[1:]
    env = env_list(opts)
    streams = [s.lower() for s in opts["attach"]]
    bad = [s for s in streams if s not in ("stdin", "stdout", "stderr")]
    if bad:
        raise StatusError(125, f"invalid argument \"{bad[0]}\" for \"-a, --attach\" flag: "
                          "valid streams are STDIN, STDOUT and STDERR")
    if streams and detach:
        raise StatusError(125, "conflicting options: cannot specify both --attach and "
                          "--detach")
    if not streams and not detach:
        streams = ["stdout", "stderr"] + (["stdin"] if opts["interactive"] else [])
    labels = key_values(opts["label"])
    binds, volumes = [], {}
    for v in opts["volume"]:
        if ":" in v:
            host, _, rest = v.partition(":")
            if host.startswith("."):  # as docker's CLI: ./data is a bind of $PWD/data
                v = os.path.abspath(host) + ":" + rest
            binds.append(v)
        else:
            volumes[v] = {}
    tmpfs = {}
    for t in opts["tmpfs"]:
        path, _, o = t.partition(":")
        tmpfs[path] = o
    if opts["rm"] and opts["restart"] not in ("no", ""):
        raise StatusError(125, "Conflicting options: --restart and --rm")
    network = opts["network"] or opts["net"] or "default"
    from bosun.cli.ports import parse_expose, parse_publish

    exposed, bindings = {}, {}
    parse_publish(opts["publish"], exposed, bindings)
    parse_expose(opts["expose"], exposed)
    from bosun.cli.network import endpoint_config

    endpoint = endpoint_config(opts["network-alias"], opts["ip"], opts["mac-address"],
                               ip6=opts["ip6"])
    host = {
        "Binds": binds or None, "AutoRemove": opts["rm"],
        "RestartPolicy": restart_policy(opts["restart"]), "NetworkMode": network,
        "CapAdd": normalize_caps(opts["cap-add"]), "CapDrop": normalize_caps(opts["cap-drop"]),
        "Privileged": opts["privileged"], "ReadonlyRootfs": opts["read-only"],
        "SecurityOpt": opts["security-opt"] or None, "GroupAdd": opts["group-add"] or None,
        "Tmpfs": tmpfs or None, "PortBindings": bindings,
        "PublishAllPorts": opts["publish-all"],
        "ExtraHosts": opts["add-host"] or None, "Dns": opts["dns"],
        "DnsOptions": opts["dns-option"], "DnsSearch": opts["dns-search"],
        "VolumesFrom": opts["volumes-from"] or None,
    }
    from bosun.cli.mounts import healthcheck, parse_mount, parse_ulimit

    for flag, values, parse, field in (("--mount", opts["mount"], parse_mount, "Mounts"),
                                       ("--ulimit", opts["ulimit"], parse_ulimit, "Ulimits")):
        for v in values:
            try:
                host.setdefault(field, []).append(parse(v))
            except ValueError as e:
                raise FlagValue(flag, v, str(e)) from None
    if opts["init"]:
        host["Init"] = True
    if opts["memory"]:
        host["Memory"] = ram_in_bytes(opts["memory"], "-m, --memory")
    if opts["memory-swap"]:
        host["MemorySwap"] = -1 if opts["memory-swap"] == "-1" else \
            ram_in_bytes(opts["memory-swap"], "--memory-swap")
    if opts["cpus"] is not None:
        host["NanoCpus"] = int(round(opts["cpus"] * 1e9))
    if opts["cpu-shares"] is not None:
        host["CpuShares"] = opts["cpu-shares"]
    if opts["cpuset-cpus"]:
        host["CpusetCpus"] = opts["cpuset-cpus"]
    if opts["pids-limit"] is not None:
        host["PidsLimit"] = opts["pids-limit"]
    config = {
        "Hostname": opts["hostname"] or "", "User": opts["user"] or "",
        "AttachStdin": "stdin" in streams, "AttachStdout": "stdout" in streams,
        "AttachStderr": "stderr" in streams, "Tty": opts["tty"],
        "OpenStdin": opts["interactive"],
        # attached stdin is closed when the client goes (docker's StdinOnce)
        "StdinOnce": opts["interactive"] and "stdin" in streams,
        "Env": env, "Cmd": cmd or None, "Image": image, "Volumes": volumes or None,
        "WorkingDir": opts["workdir"] or "", "Labels": labels,
        "ExposedPorts": exposed or None, "HostConfig": host,
        "NetworkingConfig": {"EndpointsConfig": {network: endpoint} if endpoint else {}},
    }
    check = healthcheck(opts)
    if check is not None:
        config["Healthcheck"] = check
    if opts["entrypoint"] is not None:
        config["Entrypoint"] = [opts["entrypoint"]] if opts["entrypoint"] else [""]
    if opts["stop-signal"]:
        config["StopSignal"] = opts["stop-signal"]
    if opts["stop-timeout"] is not None:
        config["StopTimeout"] = opts["stop-timeout"]
    return config


def run_error(message: str, cmd: str = "run") -> StatusError:
    """docker's runStartContainerErr: 127 for a command not found, 126 for one that cannot
    be run, 125 for anything else the daemon refused."""
    code = 125
    if "executable file not found" in message or "no such file or directory" in message:
        code = 127
    elif "permission denied" in message or "is a directory" in message:
        code = 126
    return StatusError(code, f"bosun: Error response from daemon: {message}\n\n"
                       f"Run 'bosun {cmd} --help' for more information")


def create_container(cli, opts: dict, args: list[str], detach: bool, cmd: str) -> str:
    """Create (pulling the image if it is missing, as --pull says); the new container's id."""
    from bosun.cli.http import APIError
    from bosun.cli.images import PullError, pull_image

    if opts["pull"] not in ("missing", "always", "never"):
        raise StatusError(125, f'invalid pull option: \'{opts["pull"]}\': must be one of '
                          '"always", "missing" or "never"')
    try:
        config = container_config(opts, args, detach)
    except FlagValue:
        raise  # main() shows it with the command's usage
    except ValueError as e:  # a -p/--expose spec, a healthcheck conflict: docker's plain error
        raise StatusError(125, f"bosun: {e}\n\nRun 'bosun {cmd} --help' for more "
                          "information") from None
    params = {"name": opts["name"], "platform": opts["platform"]}
    image = args[0]

    def pull() -> None:
        try:
            pull_image(cli, image, opts["quiet"], sys.stderr)
        except PullError as e:
            raise StatusError(125, f"bosun: {e}\n\nRun 'bosun {cmd} --help' for more "
                              "information") from None
        except APIError as e:
            raise run_error(str(e), cmd) from None

    if opts["pull"] == "always":
        pull()
    try:
        try:
            created = cli.client.call("POST", "/containers/create", params, config)
        except APIError as e:
            if e.status != 404 or "image" not in str(e).lower() or opts["pull"] == "never":
                raise
            from bosun.cli.images import split_ref

            shown = image if split_ref(image)[1] or split_ref(image)[2] else image + ":latest"
            cli.err(f"Unable to find image '{shown}' locally\n")
            pull()
            created = cli.client.call("POST", "/containers/create", params, config)
    except APIError as e:
        raise run_error(str(e), cmd) from None
    for w in created.get("Warnings") or []:
        cli.err(f"WARNING: {w}\n")
    return created["Id"]


@command(COMMANDS, "create", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new container",
         CREATE_FLAGS, nargs=(1, None), interspersed=False)
def create(cli, opts, args) -> int:
    cli.out(create_container(cli, opts, args, True, "create") + "\n")
    return 0


def check_tty(opts: dict, attach_stdin: bool) -> None:
    if attach_stdin and opts["tty"] and not os.isatty(0):
        raise StatusError(1, "the input device is not a TTY")


def attached(cli, cid: str, *, tty: bool, stdin: bool, stdout: bool = True,
             stderr: bool = True, sig_proxy: bool, detach_keys: str | None,
             condition: str, start: bool, cmd: str) -> int:
    """Attach to cid, (start it,) copy its streams, and return its exit code."""
    from bosun.cli.http import APIError
    from bosun.cli.stream import attach_io

    path = f"/containers/{cid}"
    sock, leftover = cli.client.hijack("POST", path + "/attach", {
        "stream": True, "stdin": stdin, "stdout": stdout, "stderr": stderr,
        "detachKeys": detach_keys})
    # asked before start, answered at exit: even a container removed at once (--rm) is seen
    waiter = cli.client.send("POST", path + "/wait", {"condition": condition})
    if waiter.status >= 400:
        sock.close()
        raise waiter.error()

    def do_start() -> None:
        try:
            cli.client.call("POST", path + "/start")
        except APIError as e:
            sock.close()
            waiter.close()
            if cmd == "run":
                raise run_error(str(e), cmd) from None
            raise

    detached = attach_io(cli, sock, leftover, tty=tty, stdin=stdin,
                         resize_path=path + "/resize", container=cid, sig_proxy=sig_proxy,
                         detach_keys=detach_keys, after_start=do_start if start else None)
    if detached:
        waiter.close()
        return 0
    try:
        result = waiter.json() or {}
    except APIError as e:
        raise StatusError(125, f"Error waiting for container: {e}") from None
    if (result.get("Error") or {}).get("Message"):
        cli.err(f"Error waiting for container: {result['Error']['Message']}\n")
        return 125
    return int(result.get("StatusCode", 0))


@command(COMMANDS, "run", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create and run a new "
         "container from an image", RUN_FLAGS, nargs=(1, None), interspersed=False)
def run(cli, opts, args) -> int:
    detach = opts["detach"]
    if not detach:
        check_tty(opts, opts["interactive"] and (not opts["attach"] or
                                                 "stdin" in [a.lower() for a in opts["attach"]]))
    if opts["detach-keys"]:
        from bosun.cli.stream import detach_sequence

        try:
            detach_sequence(opts["detach-keys"])
        except ValueError as e:
            raise StatusError(125, str(e)) from None
    cid = create_container(cli, opts, args, detach, "run")
    if detach:
        from bosun.cli.http import APIError

        try:
            cli.client.call("POST", f"/containers/{cid}/start")
        except APIError as e:
            raise run_error(str(e)) from None
        cli.out(cid + "\n")
        return 0
    streams = [a.lower() for a in opts["attach"]] or \
        ["stdout", "stderr"] + (["stdin"] if opts["interactive"] else [])
    return attached(cli, cid, tty=opts["tty"], stdin="stdin" in streams,
                    stdout="stdout" in streams, stderr="stderr" in streams,
                    sig_proxy=opts["sig-proxy"], detach_keys=opts["detach-keys"],
                    condition="removed" if opts["rm"] else "next-exit", start=True, cmd="run")


@command(COMMANDS, "start", "[OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped "
         "containers", [
             Flag("attach", "a", BOOL, "Attach STDOUT/STDERR and forward signals"),
             Flag("detach-keys", None, STR, "Override the key sequence for detaching a "
                  "container"),
             Flag("interactive", "i", BOOL, "Attach container's STDIN")], nargs=(1, None))
def start(cli, opts, args) -> int:
    from bosun.cli.containers import cpath, for_each

    if not (opts["attach"] or opts["interactive"]):
        return for_each(cli, args, lambda n: cli.client.call("POST", cpath(n, "/start")) or n)
    if len(args) > 1:
        raise StatusError(1, "you cannot start and attach multiple containers at once")
    c = cli.client.call("GET", cpath(args[0], "/json"))
    config = c.get("Config") or {}
    stdin = opts["interactive"] and bool(config.get("OpenStdin"))
    tty = bool(config.get("Tty"))
    if stdin and tty and not os.isatty(0):
        raise StatusError(1, "the input device is not a TTY")
    auto_remove = bool((c.get("HostConfig") or {}).get("AutoRemove"))
    return attached(cli, c["Id"], tty=tty, stdin=stdin, sig_proxy=True,
                    detach_keys=opts["detach-keys"],
                    condition="removed" if auto_remove else "next-exit", start=True,
                    cmd="start")


@command(COMMANDS, "attach", "[OPTIONS] CONTAINER", "Attach local standard input, output, and "
         "error streams to a running container", [
             Flag("detach-keys", None, STR, "Override the key sequence for detaching a "
                  "container"),
             Flag("no-stdin", None, BOOL, "Do not attach STDIN"),
             Flag("sig-proxy", None, BOOL, "Proxy all received signals to the process", True)],
         nargs=(1, 1))
def attach(cli, opts, args) -> int:
    from bosun.cli.containers import cpath

    c = cli.client.call("GET", cpath(args[0], "/json"))
    state = c.get("State") or {}
    if not state.get("Running"):
        raise StatusError(1, "You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise StatusError(1, "You cannot attach to a paused container, unpause it first")
    config = c.get("Config") or {}
    tty = bool(config.get("Tty"))
    stdin = bool(config.get("OpenStdin")) and not opts["no-stdin"]
    if stdin and tty and not os.isatty(0):
        raise StatusError(1, "the input device is not a TTY")
    return attached(cli, c["Id"], tty=tty, stdin=stdin, sig_proxy=opts["sig-proxy"],
                    detach_keys=opts["detach-keys"], condition="next-exit", start=False,
                    cmd="attach")


@command(COMMANDS, "exec", "[OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command in a "
         "running container", [
             Flag("detach", "d", BOOL, "Detached mode: run command in the background"),
             Flag("detach-keys", None, STR, "Override the key sequence for detaching a "
                  "container"),
             Flag("env", "e", LIST, "Set environment variables"),
             Flag("env-file", None, LIST, "Read in a file of environment variables"),
             Flag("interactive", "i", BOOL, "Keep STDIN open even if not attached"),
             Flag("privileged", None, BOOL, "Give extended privileges to the command"),
             Flag("tty", "t", BOOL, "Allocate a pseudo-TTY"),
             Flag("user", "u", STR, "Username or UID (format: \"<name|uid>[:<group|gid>]\")"),
             Flag("workdir", "w", STR, "Working directory inside the container")],
         nargs=(2, None), interspersed=False)
def exec_(cli, opts, args) -> int:
    from bosun.cli.containers import cpath
    from bosun.cli.stream import attach_io

    detach = opts["detach"]
    if not detach:
        check_tty(opts, opts["interactive"])
    env = env_list(opts)
    body = {"User": opts["user"] or "", "Privileged": opts["privileged"], "Tty": opts["tty"],
            "AttachStdin": opts["interactive"] and not detach, "AttachStdout": not detach,
            "AttachStderr": not detach, "Detach": detach, "Env": env or None,
            "WorkingDir": opts["workdir"] or "", "Cmd": args[1:]}
    if opts["detach-keys"]:
        body["DetachKeys"] = opts["detach-keys"]
    eid = cli.client.call("POST", cpath(args[0], "/exec"), None, body)["Id"]
    if detach:
        cli.client.call("POST", f"/exec/{eid}/start", None, {"Detach": True,
                                                             "Tty": opts["tty"]})
        return 0
    sock, leftover = cli.client.hijack("POST", f"/exec/{eid}/start", None,
                                       {"Detach": False, "Tty": opts["tty"]})
    detached = attach_io(cli, sock, leftover, tty=opts["tty"],
                         stdin=opts["interactive"], resize_path=f"/exec/{eid}/resize",
                         container=None, sig_proxy=False, detach_keys=opts["detach-keys"])
    if detached:
        return 0
    info = cli.client.call("GET", f"/exec/{eid}/json") or {}
    return int(info.get("ExitCode") or 0)

