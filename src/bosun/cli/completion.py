"""`bosun completion bash|zsh|fish`: a completion script generated from the command table,
so it knows every command, management subcommand and flag; container and image names come
from the daemon when completing (`bosun ps -a --format …`, `bosun images --format …`)."""

from __future__ import annotations

from bosun.cli import StatusError
from bosun.cli.flags import Flag, command

COMMANDS: dict = {}
SHELLS = ("bash", "zsh", "fish")
# which arguments name containers or images (the rest complete as files)
CONTAINER_ARGS = {"attach", "commit", "cp", "diff", "exec", "export", "inspect", "kill", "logs",
                  "pause", "port", "rename", "restart", "rm", "start", "stats", "stop", "top",
                  "unpause", "update", "wait"}
IMAGE_ARGS = {"create", "run", "history", "image inspect", "push", "rmi", "save", "tag"}
LIST_CONTAINERS = "bosun ps -a --format '{{.Names}}' 2>/dev/null"
LIST_IMAGES = "bosun images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -v '<none>'"


def table() -> dict:
    """Every command by the words that reach it ("ps", "image prune") → its Command."""
    from bosun.cli import COMMANDS as MODULES
    from bosun.cli import GROUPS

    out = {}
    for name, module in MODULES.items():
        mod = __import__(f"bosun.cli.{module}", fromlist=["COMMANDS"])
        if " " not in name:
            out[name] = mod.COMMANDS[name]
    for group, subs in GROUPS.items():
        for sub, target in subs.items():
            mod = __import__(f"bosun.cli.{MODULES[target]}", fromlist=["COMMANDS"])
            out[f"{group} {sub}"] = mod.COMMANDS[target]
    return out


def spellings(flags: list[Flag]) -> list[str]:
    return [s for f in flags for s in ([f"--{f.name}"] + ([f"-{f.short}"] if f.short else []))]


def kind(words: str, cmd) -> str:
    if words in CONTAINER_ARGS or cmd.path in CONTAINER_ARGS:
        return "containers"
    if words in IMAGE_ARGS or cmd.path in IMAGE_ARGS:
        return "images"
    return "files"


def bash_script(cmds: dict) -> str:
    from bosun.cli import GLOBAL, GROUPS

    top = sorted({w.split()[0] for w in cmds} | {"daemon", "help"})
    lines = ["# bash completion for bosun (bosun completion bash)", "_bosun() {",
             "  local cur=${COMP_WORDS[COMP_CWORD]} i w words='' n=0",
             "  for ((i = 1; i < COMP_CWORD; i++)); do",
             "    w=${COMP_WORDS[i]}",
             "    [[ $w == -* ]] && continue",
             "    if [[ -z $words ]]; then words=$w; n=1",
             f"    elif [[ $n == 1 && \" {' '.join(GROUPS)} \" == *\" $words \"* ]]; then "
             "words=\"$words $w\"; n=2; fi",
             "  done",
             "  local flags='' args=files",
             "  case $words in"]
    lines.append(f"    '') flags='{' '.join(spellings(GLOBAL.flags))}'; "
                 f"COMPREPLY=($(compgen -W \"$flags {' '.join(top)}\" -- \"$cur\")); return;;")
    for group, subs in GROUPS.items():
        lines.append(f"    {group}) COMPREPLY=($(compgen -W '{' '.join(sorted(subs))}' -- "
                     "\"$cur\")); return;;")
    for words, cmd in sorted(cmds.items()):
        lines.append(f"    '{words}') flags='{' '.join(spellings(cmd.flags))}'; "
                     f"args={kind(words, cmd)};;")
    lines += ["  esac",
              "  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W \"$flags\" -- \"$cur\"));",
              f"  elif [[ $args == containers ]]; then COMPREPLY=($(compgen -W \"$({LIST_CONTAINERS})\" -- \"$cur\"));",
              f"  elif [[ $args == images ]]; then COMPREPLY=($(compgen -W \"$({LIST_IMAGES})\" -- \"$cur\"));",
              "  else COMPREPLY=($(compgen -f -- \"$cur\")); fi",
              "}", "complete -F _bosun bosun", ""]
    return "\n".join(lines)


def zsh_script(cmds: dict) -> str:
    # zsh runs bash completion functions through bashcompinit: one generator, two shells
    return ("#compdef bosun\n# zsh completion for bosun (bosun completion zsh)\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(cmds))


def fish_script(cmds: dict) -> str:
    from bosun.cli import GROUPS

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("'", "\\'").split("\n")[0]

    out = ["# fish completion for bosun (bosun completion fish)",
           "complete -c bosun -f",
           f"function __bosun_containers; {LIST_CONTAINERS}; end",
           f"function __bosun_images; {LIST_IMAGES}; end"]
    top = sorted({w.split()[0] for w in cmds})
    for name in top:
        cmd = cmds.get(name)
        desc = esc(cmd.help) if cmd else f"Manage {name}s"
        out.append(f"complete -c bosun -n __fish_use_subcommand -a {name} -d '{desc}'")
    for group, subs in GROUPS.items():
        for sub in sorted(subs):
            out.append(f"complete -c bosun -n '__fish_seen_subcommand_from {group}; and not "
                       f"__fish_seen_subcommand_from {' '.join(sorted(subs))}' -a {sub}")
    for words, cmd in sorted(cmds.items()):
        first, _, second = words.partition(" ")
        cond = f"__fish_seen_subcommand_from {first}" + (
            f"; and __fish_seen_subcommand_from {second}" if second else "")
        for f in cmd.flags:
            short = f" -s {f.short}" if f.short else ""
            takes = "" if f.kind == "bool" else " -r"
            out.append(f"complete -c bosun -n '{cond}' -l {f.name}{short}{takes} "
                       f"-d '{esc(f.help)}'")
        what = kind(words, cmd)
        if what != "files":
            out.append(f"complete -c bosun -n '{cond}' -a '(__bosun_{what})'")
        else:
            out.append(f"complete -c bosun -n '{cond}' -F")
    return "\n".join(out) + "\n"


@command(COMMANDS, "completion", "bash|zsh|fish", "Generate the autocompletion script for the "
         "specified shell", nargs=(1, 1))
def completion(cli, opts, args) -> int:
    shell = args[0]
    if shell not in SHELLS:
        raise StatusError(1, f'unsupported shell "{shell}": use one of bash, zsh, fish')
    make = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[shell]
    cli.out(make(table()))
    return 0
