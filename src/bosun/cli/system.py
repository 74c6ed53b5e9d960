"""`bosun version` and `bosun info`."""

from __future__ import annotations

import sys

from bosun.cli.flags import STR, Flag, command

COMMANDS: dict = {}
API_VERSION = "1.47"  # what this client speaks (its requests are unversioned: the daemon's)


def client_version() -> dict:
    import os

    from bosun import __version__

    machine = os.uname().machine
    return {"Platform": {"Name": ""}, "Version": __version__, "ApiVersion": API_VERSION,
            "DefaultAPIVersion": API_VERSION, "GitCommit": "",
            "GoVersion": "python" + sys.version.split()[0], "Os": "linux",
            "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
            "BuildTime": "", "Context": "default"}


@command(COMMANDS, "version", "[OPTIONS]", "Show the bosun version information", [
    Flag("format", "f", STR, "Format output using a custom template")], nargs=(0, 0))
def version(cli, opts, args) -> int:
    from bosun.cli.format import tabwrite

    client = client_version()
    if opts["format"]:
        from bosun.cli.format import Template, prepare

        doc = {"Client": client, "Server": cli.client.call("GET", "/version")}
        cli.out(Template(prepare(opts["format"])[1]).render(doc) + "\n")
        return 0
    c = client
    cli.out(tabwrite(
        f"Client:\n Version:\t{c['Version']}\n API version:\t{c['ApiVersion']}\n"
        f" Go version:\t{c['GoVersion']}\n Git commit:\t{c['GitCommit']}\n"
        f" Built:\t{c['BuildTime']}\n OS/Arch:\t{c['Os']}/{c['Arch']}\n"
        f" Context:\t{c['Context']}\n", 20, 1))
    sys.stdout.flush()  # docker shows the client half even when the daemon is not there
    s = cli.client.call("GET", "/version")
    name = (s.get("Platform") or {}).get("Name", "")
    lines = [f"\nServer:{' ' + name if name else ''}"]
    for comp in s.get("Components") or []:
        d = comp.get("Details") or {}
        lines.append(f" {comp.get('Name')}:")
        if comp.get("Name") == "Engine":
            lines += [f"  Version:\t{comp.get('Version', '')}",
                      (f"  API version:\t{d.get('ApiVersion', '')} (minimum version "
                       f"{d.get('MinAPIVersion', '')})"),
                      f"  Go version:\t{d.get('GoVersion', '')}",
                      f"  Git commit:\t{d.get('GitCommit', '')}",
                      f"  Built:\t{d.get('BuildTime', '')}",
                      f"  OS/Arch:\t{d.get('Os', '')}/{d.get('Arch', '')}",
                      f"  Experimental:\t{d.get('Experimental', '')}"]
        else:
            lines.append(f"  Version:\t{comp.get('Version', '')}")
            lines += [f"  {k}:\t{v}" for k, v in sorted(d.items())]
    cli.out(tabwrite("\n".join(lines) + "\n", 20, 1))
    return 0


@command(COMMANDS, "info", "[OPTIONS]", "Display system-wide information", [
    Flag("format", "f", STR, "Format output using a custom template")], nargs=(0, 0))
def info(cli, opts, args) -> int:
    from bosun import __version__
    from bosun.cli.format import bytes_size

    i = cli.client.call("GET", "/info")
    if opts["format"]:
        from bosun.cli.format import Template, prepare

        i["ClientInfo"] = {"Debug": cli.debug, "Version": __version__, "Context": "default"}
        cli.out(Template(prepare(opts["format"])[1]).render(i) + "\n")
        return 0
    g = i.get
    out = ["Client:", f" Version:    {__version__}", " Context:    default",
           f" Debug Mode: {'true' if cli.debug else 'false'}", "", "Server:",
           f" Containers: {g('Containers', 0)}", f"  Running: {g('ContainersRunning', 0)}",
           f"  Paused: {g('ContainersPaused', 0)}", f"  Stopped: {g('ContainersStopped', 0)}",
           f" Images: {g('Images', 0)}", f" Server Version: {g('ServerVersion', '')}",
           f" Storage Driver: {g('Driver', '')}"]
    out += [f"  {k}: {v}" for k, v in g("DriverStatus") or []]
    out += [f" Logging Driver: {g('LoggingDriver', '')}",
            f" Cgroup Driver: {g('CgroupDriver', '')}",
            f" Cgroup Version: {g('CgroupVersion', '')}",
            f" Runtimes: {' '.join(sorted(g('Runtimes') or {}))}",
            f" Default Runtime: {g('DefaultRuntime', '')}",
            f" Init Binary: {g('InitBinary', '')}"]
    if g("SecurityOptions"):
        out.append(" Security Options:")
        for opt in g("SecurityOptions"):
            fields = dict(kv.partition("=")[::2] for kv in opt.split(","))
            out.append(f"  {fields.pop('name', opt)}")
            out += [f"   {k.capitalize()}: {v}" for k, v in fields.items()]
    out += [f" Kernel Version: {g('KernelVersion', '')}",
            f" Operating System: {g('OperatingSystem', '')}", f" OSType: {g('OSType', '')}",
            f" Architecture: {g('Architecture', '')}", f" CPUs: {g('NCPU', 0)}",
            f" Total Memory: {bytes_size(g('MemTotal') or 0)}", f" Name: {g('Name', '')}",
            f" ID: {g('ID', '')}", f" Docker Root Dir: {g('DockerRootDir', '')}",
            f" Debug Mode: {'true' if g('Debug') else 'false'}",
            f" Experimental: {'true' if g('ExperimentalBuild') else 'false'}"]
    cidrs = (g("RegistryConfig") or {}).get("InsecureRegistryCIDRs") or []
    if cidrs:
        out += [" Insecure Registries:"] + [f"  {c}" for c in cidrs]
    out.append(f" Live Restore Enabled: {'true' if g('LiveRestoreEnabled') else 'false'}")
    cli.out("\n".join(out) + "\n\n")
    for w in g("Warnings") or []:
        cli.err(f"{w}\n")
    return 0
