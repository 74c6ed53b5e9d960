"""Dockerfile instructions applied to an image config: what `docker import --change` and
`docker commit --change` do, with Docker's parsing, variable expansion and error messages.

The changes are joined with newlines and parsed as a Dockerfile (comments, line
continuations, the `# escape=` directive), as Docker's BuildFromConfig does; then every
instruction must be one of CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME, WORKDIR ("RUN is not a valid change command" otherwise, spelled as
written). Each is then checked and applied in order:

- CMD / ENTRYPOINT: a JSON array of strings (exec form) or anything else as one string run
  by the image's SHELL (default ["/bin/sh", "-c"]). No variable expansion. ENTRYPOINT
  clears CMD unless a CMD came earlier in the same changes.
- ENV / LABEL: `key=value ...` (quotes and escapes processed) or the legacy `key value`;
  keys and values are expanded with the environment as it was before the instruction.
- EXPOSE: ports, ranges and protocols (`80`, `53/udp`, `8000-8010`), each word expanded and
  split into words; USER, WORKDIR (relative to the previous one), VOLUME (JSON or words),
  STOPSIGNAL (name or number, checked): expanded.
- HEALTHCHECK [--interval/--timeout/--start-period/--start-interval/--retries] CMD ... | NONE.
- ONBUILD <instruction>: kept as written.

Expansion is the Dockerfile shell lexer: '...' literal, "..." with $ expansion and \\ only
before " $ \\, $VAR, ${VAR}, ${VAR:-w} ${VAR-w} ${VAR:+w} ${VAR+w} ${VAR:?w} ${VAR?w},
${VAR#p} ${VAR##p} ${VAR%p} ${VAR%%p} (shell patterns with * and ?), ${VAR/p/r} ${VAR//p/r}.
Unset variables expand to "".
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "VALID_CHANGE_COMMANDS",
    "ChangeError",
    "Instruction",
    "Lexer",
    "apply_changes",
    "go_quote",
    "parse_changes",
    "parse_go_duration",
]

# What `--change` accepts (Docker's validCommitCommands), lowercase.
VALID_CHANGE_COMMANDS = frozenset({
    "cmd", "entrypoint", "env", "expose", "healthcheck", "label", "onbuild", "stopsignal",
    "user", "volume", "workdir"})
DEFAULT_SHELL = ["/bin/sh", "-c"]
MINIMUM_DURATION_NS = 1_000_000  # Docker's container.MinimumDuration (1ms)
_MAX_CHANGES_SIZE = 1 << 20  # a --change list is a few lines; refuse megabytes of them


class ChangeError(ValueError):
    """A change Docker would refuse; str() is Docker's message."""


# -- Go-compatible formatting ------------------------------------------------------------------

def go_quote(s: str) -> str:
    from bosun.gosyntax import go_quote as quote

    return quote(s)


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds ("1h30m", "1.5s", "300ms", "-2s", "0")."""
    from bosun.gosyntax import GoSyntaxError, parse_duration

    try:
        return parse_duration(text)
    except GoSyntaxError as e:
        raise ChangeError(str(e)) from None


def _format_go_duration(ns: int) -> str:
    """Go's Duration.String() for the few values messages print (1ms)."""
    if ns % 1_000_000_000 == 0:
        return f"{ns // 1_000_000_000}s"
    if ns % 1_000_000 == 0 and ns < 1_000_000_000:
        return f"{ns // 1_000_000}ms"
    return f"{ns}ns"


# -- the shell lexer (variable expansion) ------------------------------------------------------

_SPECIAL_PARAMS = frozenset("@*#?-$!0")


def _is_space(ch: str) -> bool:
    return ch.isspace()


class _Words:
    """Splits expansion output into words, as the lexer's ProcessWords does."""

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if _is_space(ch):
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word, self.in_word = "", False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word, self.in_word = "", False
        return self.words


class _LexError(Exception):
    pass


class Lexer:
    """The Dockerfile shell lexer: quotes, escapes and $-expansion of one word."""

    def __init__(self, escape: str = "\\") -> None:
        self.escape = escape

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return self._run(word, env)[0]

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        return self._run(word, env)[1]

    def _run(self, word: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        self._s, self._i, self._env = word, 0, env
        try:
            return self._stop_on(None, False)
        except _LexError as e:
            raise ChangeError(f"failed to process {go_quote(word)}: {e}") from None

    # scanning
    def _peek(self) -> str | None:
        return self._s[self._i] if self._i < len(self._s) else None

    def _next(self) -> str | None:
        ch = self._peek()
        if ch is not None:
            self._i += 1
        return ch

    def _stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        while (ch := self._peek()) is not None:
            if stop is not None and ch == stop:
                self._next()
                return "".join(result), words.result()
            if ch == "$":
                text = self._dollar()
                result.append(text)
                words.add_string(text)
            elif ch == "'":
                text = self._single_quote()
                result.append(text)
                words.add_raw(text)
            elif ch == '"':
                text = self._double_quote()
                result.append(text)
                words.add_raw(text)
            else:
                self._next()
                if ch == self.escape:
                    if raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self._next()
                    if ch is None:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop is not None:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def _single_quote(self) -> str:
        self._next()
        out = []
        while True:
            ch = self._next()
            if ch is None:
                raise _LexError("unexpected end of statement while looking for matching "
                                "single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double_quote(self) -> str:
        self._next()
        out = []
        while True:
            ch = self._peek()
            if ch is None:
                raise _LexError("unexpected end of statement while looking for matching "
                                "double-quote")
            if ch == '"':
                self._next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            self._next()
            if ch == self.escape:
                nxt = self._peek()
                if nxt is None:
                    continue  # an escape at the very end is dropped
                if nxt in ('"', "$", self.escape):
                    ch = self._next()
            out.append(ch)

    def _name(self) -> str:
        name = []
        while (ch := self._peek()) is not None:
            if not name and ch.isdigit():
                while (ch := self._peek()) is not None and ch.isdigit():
                    name.append(self._next())
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                return self._next()
            if not (ch.isalpha() or ch.isdigit() or ch == "_"):
                break
            name.append(self._next())
        return "".join(name)

    def _get(self, name: str) -> tuple[str, bool]:
        if name in self._env:
            return self._env[name], True
        return "", False

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            return self._get(name)[0]
        self._next()
        ch = self._peek()
        if ch is None:
            raise _LexError("syntax error: missing '}'")
        if ch in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        if ch is None:
            raise _LexError("syntax error: missing '}'")
        if ch == "}":
            return self._get(name)[0]
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self._next()
            if ch is None:
                raise _LexError("syntax error: missing '}'")
            modifier += ch
        if ch in "+-?#%":
            try:
                word, _ = self._stop_on("}", ch in "#%")
            except _LexError:
                if self._peek() is None:
                    raise _LexError("syntax error: missing '}'") from None
                raise
            value, is_set = self._get(name)
            empty = not is_set or (null_is_unset and value == "")
            if ch == "-":
                return word if empty else value
            if ch == "+":
                return "" if empty else word
            if ch == "?":
                if not is_set:
                    raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            if null_is_unset:  # ${a:#x} is no modifier
                raise _LexError(f"unsupported modifier ({modifier}) in substitution")
            greedy = word[:1] == ch
            if greedy:
                word = word[1:]
            return _trim(word, value, greedy, suffix=ch == "%")
        if ch == "/" and not null_is_unset:
            replace_all = self._peek() == "/"
            if replace_all:
                self._next()
            try:
                pattern, _ = self._stop_on("/", True)
            except _LexError:
                if self._peek() is None:
                    raise _LexError("syntax error: missing '/' in ${}") from None
                raise
            try:
                replacement, _ = self._stop_on("}", True)
            except _LexError:
                if self._peek() is None:
                    raise _LexError("syntax error: missing '}'") from None
                raise
            value, _ = self._get(name)
            regex = _pattern_regex(pattern, greedy=True, anchored=False)
            if replace_all:
                return regex.sub(lambda _m: replacement, value)
            return regex.sub(lambda _m: replacement, value, count=1)
        raise _LexError(f"unsupported modifier ({modifier}) in substitution")


def _pattern_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell pattern (* and ?, \\ escaping) as a regular expression."""
    out = ["^" if anchored else ""]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):
                continue
            if nxt not in ("*", "?", "\\"):
                raise _LexError(f"invalid pattern ({pattern}) in substitution: invalid escape "
                                f"'\\{nxt}'")
            out.append(re.escape(nxt))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _trim(pattern: str, value: str, greedy: bool, suffix: bool) -> str:
    if not suffix:
        m = _pattern_regex(pattern, greedy, anchored=True).match(value)
        return value[m.end():] if m else value
    # The shortest (or longest) suffix matching the pattern.
    regex = _pattern_regex(pattern, greedy, anchored=False)
    starts = range(len(value) + 1) if greedy else range(len(value), -1, -1)
    for start in starts:
        if regex.fullmatch(value, start):
            return value[:start]
    return value


# -- the Dockerfile parser ---------------------------------------------------------------------

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)"
                        r"[\t\n\f\r ]*")
_ONBUILD_PREFIX = re.compile(r"^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*", re.IGNORECASE)
_NOT_STRINGS = "when using JSON array syntax, arrays must be comprised of strings only"


@dataclass
class Instruction:
    """One parsed instruction: `command` as written, `args` after the line parser (quotes
    still in for ENV/LABEL values), `flags` (`--interval=5s`), `json` for the exec form,
    `original` the whole (joined) line, `pairs` the key/values of ENV and LABEL."""

    command: str
    args: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    json: bool = False
    original: str = ""
    pairs: list[tuple[str, str]] | None = None
    health: dict[str, Any] | None = None  # HEALTHCHECK, once checked


class _Directives:
    def __init__(self) -> None:
        self.escape = "\\"
        self.done = False
        self.seen: set[str] = set()
        self._set_escape("\\")

    def _set_escape(self, token: str) -> None:
        if token not in ("`", "\\"):
            raise ChangeError(f"invalid escape token '{token}' does not match ` or \\")
        self.escape = token
        e = re.escape(token)
        self.continuation = re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")

    def check(self, line: str) -> None:
        if self.done:
            return
        m = _DIRECTIVE.fullmatch(line)
        if m is None:
            self.done = True
            return
        key = m.group(1).lower()
        if key not in ("escape", "syntax"):
            self.done = True
            return
        if key in self.seen:
            raise ChangeError(f"only one {key} parser directive can be used")
        self.seen.add(key)
        if key == "escape":
            self._set_escape(m.group(2))


def _strip_comment(line: str) -> str:
    return "" if line.startswith("#") else line


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _extract_flags(line: str) -> tuple[str, list[str]]:
    """Leading `--flag[=value]` words (quotes and \\ processed), then the rest."""
    words: list[str] = []
    word = ""
    in_word = in_quote = False
    quote = ""
    blank_ok = False
    pos = 0
    n = len(line)
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if not in_word and not in_quote:
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            in_word = True
        if pos == n:
            if word != "--" and (blank_ok or word):
                words.append(word)
            break
        if in_word and not in_quote:
            if ch.isspace():
                in_word = False
                if word == "--":
                    return line[pos:], words
                if blank_ok or word:
                    words.append(word)
                word, blank_ok = "", False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok, in_quote = ch, True, True
                pos += 1
                continue
            if ch == "\\":
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            word += ch
            pos += 1
            continue
        # in a quote
        if ch == quote:
            in_quote = False
            pos += 1
            continue
        if ch == "\\":
            if pos + 1 == n:
                in_quote = False
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        word += ch
        pos += 1
    return "", words


def _parse_words(rest: str, escape: str) -> list[str]:
    """Whitespace-separated words, quotes kept (the lexer removes them later)."""
    words: list[str] = []
    buf: list[str] = []
    in_word = in_quote = False
    quote = ""
    blank_ok = False
    i, n = 0, len(rest)
    while i <= n:
        ch = rest[i] if i < n else ""
        if not in_word and not in_quote:
            if i == n:
                break
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if i == n:
            if blank_ok or buf:
                words.append("".join(buf))
            break
        if not in_quote:
            if ch.isspace():
                in_word = False
                if blank_ok or buf:
                    words.append("".join(buf))
                buf, blank_ok = [], False
                i += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok, in_quote = ch, True, True
            if ch == escape:
                if i + 1 == n:
                    i += 1
                    continue  # an escape at the end of the line is dropped
                buf.append(ch)
                i += 1
                ch = rest[i]
            buf.append(ch)
            i += 1
            continue
        if ch == quote:
            in_quote = False
        if ch == escape and quote != "'":
            if i + 1 == n:
                in_quote = False
                i += 1
                continue
            buf.append(ch)
            i += 1
            ch = rest[i]
        buf.append(ch)
        i += 1
    return words


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json_array(rest: str) -> list[str] | None:
    """The exec form, or None when `rest` is no JSON array (then it is the shell form)."""
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise ChangeError(_NOT_STRINGS)
    return value


def _maybe_json(rest: str) -> tuple[list[str], bool]:
    if rest == "":
        return [], False
    value = _parse_json_array(rest)
    if value is not None:
        return value, True
    return [rest], False


def _maybe_json_list(rest: str) -> tuple[list[str], bool]:
    value = _parse_json_array(rest)
    if value is not None:
        return value, True
    return ([] if rest == "" else _WHITESPACE.split(rest)), False


def _name_values(rest: str, key: str, escape: str) -> list[tuple[str, str]]:
    words = _parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ChangeError(f"{key} must have two arguments")
        return [(parts[0], parts[1])]
    pairs = []
    for word in words:
        if "=" not in word:
            raise ChangeError(f"Syntax error - can't find = in {go_quote(word)}. Must be of "
                              f"the form: name=value")
        k, _, v = word.partition("=")
        pairs.append((k, v))
    return pairs


def _node(line: str, d: _Directives) -> Instruction:
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    command = parts[0]
    rest, flags = ("", [])
    if len(parts) == 2:
        rest, flags = _extract_flags(parts[1])
    rest = rest.strip()
    ins = Instruction(command=command, flags=flags, original=line)
    kind = command.lower()
    if kind in ("cmd", "entrypoint", "run", "shell"):
        ins.args, ins.json = _maybe_json(rest)
    elif kind in ("add", "copy", "volume"):
        ins.args, ins.json = _maybe_json_list(rest)
    elif kind in ("env", "label"):
        ins.pairs = _name_values(rest, "ENV" if kind == "env" else "LABEL", d.escape)
        ins.args = [x for kv in ins.pairs for x in kv]
    elif kind in ("expose", "from"):
        ins.args = _WHITESPACE.split(rest) if rest else []
    elif kind in ("maintainer", "stopsignal", "user", "workdir"):
        ins.args = [rest] if rest else []
    elif kind == "arg":
        ins.args = _parse_words(rest, d.escape)
    elif kind == "healthcheck":
        m = re.match(r"(\S*)\s*", rest)
        typ = m.group(1) if m else ""
        if typ:
            cmd, ins.json = _maybe_json(rest[m.end():])
            ins.args = [typ, *cmd]
    elif kind == "onbuild" and rest:
        child = _node(rest, d)
        ins.args = [child.command, *child.args]
    # anything else: an unknown instruction, parsed with no arguments
    return ins


def parse_changes(changes: Sequence[str]) -> list[Instruction]:
    """The changes as a Dockerfile's instructions (Docker's parser.Parse), not yet checked
    against the --change whitelist."""
    return _parse(changes)[0]


def _parse(changes: Sequence[str]) -> tuple[list[Instruction], str]:
    """The instructions and the escape token in force (set by a `# escape=` directive)."""
    if isinstance(changes, str):
        changes = [changes]
    text = "\n".join(changes)
    if len(text) > _MAX_CHANGES_SIZE:
        raise ChangeError(f"changes are {len(text)} bytes, more than {_MAX_CHANGES_SIZE}")
    lines = text.split("\n")
    d = _Directives()
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        raw = lines[i].rstrip("\r\n")
        if i == 0:
            raw = raw.removeprefix("\ufeff")
        token = raw.lstrip()
        d.check(token)
        token = _strip_comment(token)
        i += 1
        line, done = _continuation(token, d)
        if done and line == "":
            continue
        while not done and i < len(lines):
            nxt = lines[i].rstrip("\r\n")
            d.check(nxt)
            part = _strip_comment(nxt)
            i += 1
            if _is_comment(nxt):
                continue
            if part.strip() == "":
                continue  # an empty continuation line (a warning in Docker)
            part, done = _continuation(part, d)
            line += part
        out.append(_node(line, d))
    if not out:
        raise ChangeError("file with no instructions")
    return out, d.escape


def _continuation(line: str, d: _Directives) -> tuple[str, bool]:
    if d.continuation.search(line):
        return d.continuation.sub(lambda m: m.group(1) or "", line), False
    return line, True


# -- checking and applying ---------------------------------------------------------------------

def _bflags(flags: list[str], allowed: Sequence[str]) -> dict[str, str]:
    """Docker's BFlags.Parse for string flags."""
    values: dict[str, str] = {}
    for arg in flags:
        if not arg.startswith("--"):
            raise ChangeError(f"Arg should start with -- : {arg}")
        if arg == "--":
            break
        name, eq, value = arg[2:].partition("=")
        if name not in allowed:
            raise ChangeError(f"Unknown flag: {name}")
        if name in values:
            raise ChangeError(f"Duplicate flag specified: {name}")
        if not eq:
            raise ChangeError(f"Missing a value on flag: {name}")
        values[name] = value
    return values


def _interval(flags: dict[str, str], name: str) -> int:
    text = flags.get(name, "")
    if text == "":
        return 0
    ns = parse_go_duration(text)
    if ns < MINIMUM_DURATION_NS:
        raise ChangeError(f"Interval {go_quote(name)} cannot be less than "
                          f"{_format_go_duration(MINIMUM_DURATION_NS)}")
    return ns


def _go_parse_int32(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text or "x"):
        raise ChangeError(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if not -(1 << 31) <= value < (1 << 31):
        raise ChangeError(f"strconv.ParseInt: parsing {go_quote(text)}: value out of range")
    return value


def _healthcheck(ins: Instruction) -> dict[str, Any]:
    if not ins.args:
        raise ChangeError("HEALTHCHECK requires at least one argument")
    typ = ins.args[0].upper()
    rest = ins.args[1:]
    if typ == "NONE":
        if rest:
            raise ChangeError("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    flags = _bflags(ins.flags, ("interval", "timeout", "start-period", "start-interval",
                                "retries"))
    if typ != "CMD":
        raise ChangeError(f"Unknown type {go_quote(typ)} in HEALTHCHECK (try CMD)")
    cmd = rest if ins.json else ([" ".join(rest)] if rest else [])
    if not cmd:
        raise ChangeError("Missing command after HEALTHCHECK CMD")
    hc: dict[str, Any] = {"Test": [typ if ins.json else "CMD-SHELL", *cmd]}
    for key, flag in (("Interval", "interval"), ("Timeout", "timeout"),
                      ("StartPeriod", "start-period"), ("StartInterval", "start-interval")):
        if ns := _interval(flags, flag):
            hc[key] = ns
    if flags.get("retries", ""):
        retries = _go_parse_int32(flags["retries"])
        if retries < 1:
            raise ChangeError(f"--retries must be at least 1 (not {retries})")
        hc["Retries"] = retries
    return hc


_SIGNAL_NAMES = frozenset({
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
    "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
    "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    "RTMIN", "RTMAX"} | {f"RTMIN+{i}" for i in range(1, 16)} | {f"RTMAX-{i}" for i in range(1, 15)})


def check_signal(text: str) -> None:
    """Docker's signal.ParseSignal on Linux: a nonzero number, or a name with or without
    SIG, any case."""
    if re.fullmatch(r"[+-]?[0-9]+", text):
        value = int(text)
        if value == 0 or not -(1 << 63) <= value < (1 << 63):
            raise ChangeError(f"Invalid signal: {text}")
        return
    name = text.upper()
    name = name.removeprefix("SIG")
    if name not in _SIGNAL_NAMES:
        raise ChangeError(f"Invalid signal: {text}")


def parse_port_spec(raw: str) -> list[str]:
    """The container ports of an EXPOSE spec ("80/tcp", a range expanded); an IP and host
    port are checked and dropped, as go-connections' ParsePortSpec."""
    from bosun.portspec import PortSpecError, parse

    try:
        return [port for port, _, _ in parse(raw)]
    except PortSpecError as e:
        raise ChangeError(str(e)) from None


def _clean(path: str) -> str:
    """Go's path.Clean (POSIX normpath keeps a leading "//", Go does not)."""
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def _normalize_workdir(current: str, requested: str) -> str:
    """Docker's normalizeWorkdir: a relative WORKDIR is joined to the previous one (and
    cleaned); an absolute one is kept as written."""
    if requested == "":
        raise ChangeError("cannot normalize nothing")
    if not requested.startswith("/"):
        return _clean("/" + "/".join(p for p in (current, requested) if p))
    return requested


def _env_map(env: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env or ():
        k, eq, v = item.partition("=")
        out[k] = v if eq else ""
    return out


def _parse_instruction(ins: Instruction) -> None:
    """The checks of Docker's instructions.ParseCommand, before anything is applied."""
    kind = ins.command.lower()
    if kind in ("env", "label"):
        _bflags(ins.flags, ())
        name = kind.upper()
        if not ins.pairs:
            raise ChangeError(f"{name} requires at least one argument")
        for k, _ in ins.pairs:
            if k == "":
                raise ChangeError(f"{name} names can not be blank")
    elif kind in ("cmd", "entrypoint"):
        _bflags(ins.flags, ())
    elif kind == "expose":
        if not ins.args:
            raise ChangeError("EXPOSE requires at least one argument")
        _bflags(ins.flags, ())
        ins.args.sort()
    elif kind in ("user", "workdir", "stopsignal"):
        if len(ins.args) != 1:
            raise ChangeError(f"{kind.upper()} requires exactly one argument")
        if kind != "stopsignal":
            _bflags(ins.flags, ())
    elif kind == "volume":
        if not ins.args:
            raise ChangeError("VOLUME requires at least one argument")
        _bflags(ins.flags, ())
        ins.args = [v.strip() for v in ins.args]
        if any(v == "" for v in ins.args):
            raise ChangeError("VOLUME specified can not be an empty string")
    elif kind == "healthcheck":
        ins.health = _healthcheck(ins)
    elif kind == "onbuild":
        if not ins.args:
            raise ChangeError("ONBUILD requires at least one argument")
        _bflags(ins.flags, ())
        trigger = ins.args[0].strip().upper()
        if trigger == "ONBUILD":
            raise ChangeError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("MAINTAINER", "FROM"):
            raise ChangeError(f"{trigger} isn't allowed as an ONBUILD trigger")


def apply_changes(changes: Sequence[str],
                  config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Apply `docker import/commit --change` instructions to a container config (Docker's
    container.Config shape: Cmd, Entrypoint, Env, ExposedPorts {"80/tcp": {}}, Healthcheck,
    Labels, OnBuild, StopSignal, User, Volumes {"/data": {}}, WorkingDir, Shell, ...) and
    return the new config (the input is not modified). ChangeError with Docker's message
    for anything Docker refuses."""
    out: dict[str, Any] = copy.deepcopy(dict(config or {}))
    if isinstance(changes, str):
        changes = [changes]
    if not changes:
        return out
    instructions, escape = _parse(changes)
    lexer = Lexer(escape)
    for ins in instructions:
        if ins.command.lower() not in VALID_CHANGE_COMMANDS:
            raise ChangeError(f"{ins.command} is not a valid change command")
    for ins in instructions:
        _parse_instruction(ins)
    cmd_set = False
    for ins in instructions:
        cmd_set = _dispatch(ins, out, lexer, cmd_set)
    return out


def _shell_cmd(ins: Instruction, config: Mapping[str, Any]) -> list[str]:
    """Docker's resolveCmdLine on Linux."""
    if not ins.args:
        return []
    if ins.json:
        return list(ins.args)
    shell = config.get("Shell") or DEFAULT_SHELL
    return [*shell, " ".join(ins.args)]


def _dispatch(ins: Instruction, c: dict[str, Any], lexer: Lexer, cmd_set: bool) -> bool:
    kind = ins.command.lower()
    env = _env_map(c.get("Env"))
    word = lambda w: lexer.process_word(w, env)
    if kind == "env":
        pairs = [(word(k), word(v)) for k, v in ins.pairs or ()]
        current = list(c.get("Env") or [])
        for k, v in pairs:
            new = f"{k}={v}"
            for i, item in enumerate(current):
                if item.split("=", 1)[0] == k:
                    current[i] = new
                    break
            else:
                current.append(new)
        c["Env"] = current
    elif kind == "label":
        pairs = [(word(k), word(v)) for k, v in ins.pairs or ()]
        labels = dict(c.get("Labels") or {})
        labels.update(pairs)
        c["Labels"] = labels
    elif kind == "cmd":
        cmd = _shell_cmd(ins, c)
        c["Cmd"] = cmd
        if cmd:
            c["ArgsEscaped"] = False
        cmd_set = cmd_set or bool(ins.args)
    elif kind == "entrypoint":
        entrypoint = _shell_cmd(ins, c)
        c["Entrypoint"] = entrypoint
        if entrypoint:
            c["ArgsEscaped"] = False
        if not cmd_set:
            c["Cmd"] = None
    elif kind == "expose":
        words: list[str] = []
        for p in ins.args:
            words.extend(lexer.process_words(p, env))
        ports = dict(c.get("ExposedPorts") or {})
        for p in words:
            for spec in parse_port_spec(p):
                ports[spec] = {}
        c["ExposedPorts"] = ports
    elif kind == "user":
        c["User"] = word(ins.args[0])
    elif kind == "workdir":
        c["WorkingDir"] = _normalize_workdir(c.get("WorkingDir") or "", word(ins.args[0]))
    elif kind == "volume":
        volumes = dict(c.get("Volumes") or {})
        for v in ins.args:
            v = word(v)
            if v == "":
                raise ChangeError("VOLUME specified can not be an empty string")
            volumes[v] = {}
        c["Volumes"] = volumes
    elif kind == "stopsignal":
        sig = word(ins.args[0])
        check_signal(sig)
        c["StopSignal"] = sig
    elif kind == "healthcheck":
        c["Healthcheck"] = dict(ins.health or {})
    elif kind == "onbuild":
        c["OnBuild"] = [*(c.get("OnBuild") or []), _ONBUILD_PREFIX.sub("", ins.original)]
    return cmd_set
