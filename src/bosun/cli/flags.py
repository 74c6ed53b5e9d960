"""Docker's command-line syntax (spf13/pflag as the docker CLI configures it), by table.

Not click: importing click alone takes ~45 ms here, twice the whole budget of `bosun ps`
(docker's Go CLI answers in ~25 ms). The syntax is small: `--name value`, `--name=value`,
`-abc` (bools bundled, the last may take a value: `-it`, `-dp 80`), `-e=X`, `--bool=false`,
`--` ends the flags; `run`/`create`/`exec` stop at the first argument (the container's
command follows), other commands take flags anywhere.
"""

from __future__ import annotations

BOOL, STR, INT, FLOAT, LIST = "bool", "string", "int", "float", "list"

PROG = "bosun"


class Usage(Exception):
    """A command-line error. Flag errors exit 125 and argument-count errors 1, as docker's;
    both print the command's usage line and where to get help."""

    def __init__(self, message: str, command: Command | None, code: int = 125,
                 prefixed: bool = False) -> None:
        super().__init__(message)
        self.command = command
        self.code = code
        self.prefixed = prefixed  # docker writes "docker: …" before argument-count errors

    def render(self) -> str:
        path = f"{PROG} {self.command.path}" if self.command and self.command.path else PROG
        usage = self.command.usage if self.command else "[OPTIONS] COMMAND [ARG...]"
        # docker says "See" only after "requires at least N arguments"
        more = "See" if self.prefixed and " at least " in str(self) else "Run"
        msg = f"{PROG}: {self}" if self.prefixed else str(self)
        return (f"{msg}\n\nUsage:  {path} {usage}\n\n"
                f"{more} '{path} --help' for more information\n")


def key_values(items: list[str]) -> dict[str, str]:
    """Repeated KEY=VALUE flags (--label, --opt) as a map; a bare KEY has an empty value."""
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


class FlagValue(ValueError):
    """A flag's value docker's CLI refuses while parsing (a size, a mount, a duration): main()
    shows it as a Usage error of the command being run."""

    def __init__(self, flag: str, value: str, reason: str) -> None:
        super().__init__(f'invalid argument "{value}" for "{flag}" flag: {reason}')


class Flag:
    __slots__ = ("default", "help", "kind", "metavar", "name", "short")

    def __init__(self, name: str, short: str | None, kind: str, help: str, default=None,
                 metavar: str = "") -> None:
        self.name, self.short, self.kind, self.help = name, short, kind, help
        self.default = default if default is not None else ([] if kind == LIST else
                                                            False if kind == BOOL else None)
        self.metavar = metavar or {STR: "string", INT: "int", FLOAT: "decimal",
                                   LIST: "list"}.get(kind, "")

    def spelled(self) -> str:
        return f"-{self.short}, --{self.name}" if self.short else f"--{self.name}"


HELP = Flag("help", None, BOOL, "Print usage")


class Command:
    def __init__(self, path: str, usage: str, help: str, flags: list[Flag],
                 nargs: tuple[int, int | None] = (0, None), interspersed: bool = True,
                 func=None) -> None:
        self.path, self.usage, self.help = path, usage, help
        self.flags = flags + [HELP]
        self.nargs = nargs
        self.interspersed = interspersed
        self.func = func
        self.long = {f.name: f for f in self.flags}
        self.short = {f.short: f for f in self.flags if f.short}

    def help_text(self) -> str:
        cols = [(f"-{f.short}, " if f.short else "    ") + f"--{f.name}" +
                (f" {f.metavar}" if f.kind != BOOL else "") for f in self.flags]
        width = max(map(len, cols)) + 3
        body = "\n".join(f"  {c:<{width}}{f.help}" for c, f in zip(cols, self.flags))
        return f"\nUsage:  {PROG} {self.path} {self.usage}\n\n{self.help}\n\nOptions:\n{body}\n"


def command(table: dict, path: str, usage: str, help: str, flags: list[Flag] | tuple = (),
            nargs: tuple[int, int | None] = (0, None), interspersed: bool = True):
    """Declare the decorated function (cli, opts, args) -> exit code as a command."""
    def deco(func):
        table[path] = Command(path, usage, help, list(flags), nargs, interspersed, func)
        return func
    return deco


def _convert(flag: Flag, value: str, spelled: str, cmd: Command):
    try:
        if flag.kind == INT:
            return int(value, 0) if value.lower().startswith(("0x", "0o", "0b")) else int(value)
        if flag.kind == FLOAT:
            return float(value)
    except ValueError:
        func = "ParseInt" if flag.kind == INT else "ParseFloat"
        raise Usage(f'invalid argument "{value}" for "{flag.spelled()}" flag: strconv.{func}: '
                    f'parsing "{value}": invalid syntax', cmd) from None
    if flag.kind == BOOL:
        v = value.lower()
        if v in ("1", "t", "true"):
            return True
        if v in ("0", "f", "false"):
            return False
        raise Usage(f'invalid argument "{value}" for "{flag.spelled()}" flag: strconv.ParseBool:'
                    f' parsing "{value}": invalid syntax', cmd)
    return value


def _set(opts: dict, flag: Flag, value) -> None:
    if flag.kind == LIST:
        opts.setdefault(flag.name, []).append(value)
    else:
        opts[flag.name] = value


def parse(cmd: Command, argv: list[str]) -> tuple[dict, list[str]]:
    """(options by long name with defaults filled in, positional arguments)."""
    opts: dict = {}
    args: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            args += argv[i:]
            break
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            flag = cmd.long.get(name)
            if flag is None:
                raise Usage(f"unknown flag: --{name}", cmd)
            if eq:
                _set(opts, flag, _convert(flag, value, a, cmd))
            elif flag.kind == BOOL:
                opts[flag.name] = True
            elif i < len(argv):
                _set(opts, flag, _convert(flag, argv[i], a, cmd))
                i += 1
            else:
                raise Usage(f"flag needs an argument: --{name}", cmd)
        elif a.startswith("-") and len(a) > 1:
            shorts = a[1:]
            j = 0
            while j < len(shorts):
                c = shorts[j]
                flag = cmd.short.get(c)
                if flag is None:
                    raise Usage(f"unknown shorthand flag: '{c}' in -{shorts}", cmd)
                rest = shorts[j + 1:]
                if rest.startswith("="):  # -e=X, -d=false
                    _set(opts, flag, _convert(flag, rest[1:], a, cmd))
                    break
                if flag.kind == BOOL:
                    opts[flag.name] = True
                    j += 1
                    continue
                if rest:  # -eFOO=bar: the rest of the word is the value
                    _set(opts, flag, _convert(flag, rest, a, cmd))
                elif i < len(argv):
                    _set(opts, flag, _convert(flag, argv[i], a, cmd))
                    i += 1
                else:
                    raise Usage(f"flag needs an argument: '{c}' in -{shorts}", cmd)
                break
        else:
            args.append(a)
            if not cmd.interspersed:
                args += argv[i:]
                break
    for f in cmd.flags:
        if f.name not in opts:
            opts[f.name] = list(f.default) if f.kind == LIST else f.default
    if opts["help"]:
        return opts, args
    lo, hi = cmd.nargs
    if len(args) < lo or (hi is not None and len(args) > hi):
        raise Usage(_count_message(cmd, lo, hi), cmd, code=1, prefixed=True)
    return opts, args


def _count_message(cmd: Command, lo: int, hi: int | None) -> str:
    what = f"'{PROG} {cmd.path}'"
    if hi == 0:
        return f"{what} accepts no arguments"
    plural = "s" if lo != 1 else ""
    if lo == hi:
        return f"{what} requires {lo} argument{plural}"
    if hi is None:
        return f"{what} requires at least {lo} argument{plural}"
    return f"{what} requires at least {lo} and at most {hi} arguments"
