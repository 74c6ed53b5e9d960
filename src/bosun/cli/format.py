"""Output as the docker CLI writes it: Go text/template `--format` strings, `table` headers
aligned by Go's text/tabwriter, and go-units' human durations and sizes.

The template language is the subset people put in `--format`: fields (`.State.Running`,
`$.Name`, `.Label "k"`), pipelines, parentheses, `if`/`else`/`range`/`with`/`end`,
variables from `range $k, $v := …`, and docker's functions (json, join, split, upper, lower,
title, pad, truncate, println) plus Go's (index, len, slice, print, printf, not, and, or,
eq, ne, lt, le, gt, ge). Values print as Go's %v does.
"""

from __future__ import annotations


class TemplateError(Exception):
    pass


class _Missing:
    """A map key that is not there: Go prints "<no value>"."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


# -- values --------------------------------------------------------------------------------

def go_float(v: float) -> str:
    """%v of a float64: the shortest digits, in exponent form when the exponent is below -4
    or from 6 on (strconv's 'g' with shortest precision)."""
    import math

    if math.isnan(v):
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    digits = repr(abs(v))
    if "e" in digits:
        m, _, e = digits.partition("e")
        digits, e10 = m.replace(".", "").lstrip("0") or "0", int(e)
    else:
        whole, _, frac = digits.partition(".")
        frac = frac.rstrip("0")
        if whole != "0":
            e10 = len(whole) - 1
            digits = (whole + frac).rstrip("0") or "0"
        else:
            stripped = frac.lstrip("0")
            e10 = -(len(frac) - len(stripped)) - 1
            digits = stripped or "0"
    sign = "-" if v < 0 else ""
    if digits == "0":
        return sign + "0"
    if e10 < -4 or e10 >= 6:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    if e10 < 0:
        return f"{sign}0.{'0' * (-e10 - 1)}{digits}"
    whole = digits[:e10 + 1].ljust(e10 + 1, "0")
    frac = digits[e10 + 1:]
    return sign + whole + ("." + frac if frac else "")


def go_str(v) -> str:
    if isinstance(v, str):
        return v
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "<nil>"
    if v is MISSING:
        return "<no value>"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, dict):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    return str(v)


def truthy(v) -> bool:
    if v is MISSING or v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True


def to_json(v) -> str:
    import json

    def default(o):
        if o is MISSING:
            return None
        if hasattr(o, "as_json"):
            return o.as_json()
        raise TypeError(f"cannot encode {type(o).__name__}")
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=default)


# -- functions -----------------------------------------------------------------------------

def _index(v, *keys):
    """Go's index; a missing key is the zero value of docker's typed maps: ""."""
    for k in keys:
        if v is None or v is MISSING:
            return ""
        if isinstance(v, dict):
            v = v.get(k, "")
        elif isinstance(v, (list, tuple, str)):
            v = v[int(k)]
        else:
            raise TemplateError(f"can't index item of type {type(v).__name__}")
    return v


def _printf(fmt: str, *args) -> str:
    out, i, n = [], 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%" or i + 1 == len(fmt):
            out.append(c)
            i += 1
            continue
        verb = fmt[i + 1]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        arg = args[n] if n < len(args) else MISSING
        n += 1
        if verb == "q":
            out.append(to_json(go_str(arg)))
        elif verb == "d" and isinstance(arg, (int, float)):
            out.append(str(int(arg)))
        else:
            out.append(go_str(arg))
    return "".join(out)


def _print(*args) -> str:
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_str(a))
    return "".join(out)


def _cmp(op):
    def f(a, *bs):
        if op == "eq":
            return any(a == b for b in bs)
        b = bs[0]
        return {"ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
    return f


def _and(*args):
    for a in args:
        if not truthy(a):
            return a
    return args[-1]


def _or(*args):
    for a in args:
        if truthy(a):
            return a
    return args[-1]


def _truncate(s, n) -> str:
    return go_str(s)[:int(n)]


FUNCS = {
    "json": to_json,
    "join": lambda items, sep: sep.join(go_str(x) for x in (items or [])),
    "split": lambda s, sep: go_str(s).split(sep),
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "pad": lambda s, left, right: " " * int(left) + go_str(s) + " " * int(right),
    "truncate": _truncate,
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "print": _print,
    "printf": _printf,
    "index": _index,
    "len": lambda v: len(v) if v not in (None, MISSING) else 0,
    "slice": lambda v, *ix: v[int(ix[0]) if ix else 0:int(ix[1]) if len(ix) > 1 else None],
    "not": lambda v: not truthy(v),
    "and": _and,
    "or": _or,
    **{op: _cmp(op) for op in ("eq", "ne", "lt", "le", "gt", "ge")},
}


# -- parsing -------------------------------------------------------------------------------

def _lex(src: str) -> list:
    """Tokens of one action: ("str"|"num"|"field"|"var"|"ident"|"op", value)."""
    toks, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            j, buf = i + 1, []
            while j < n and src[j] != '"':
                if src[j] == "\\" and j + 1 < n:
                    j += 1
                    buf.append({"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}.get(
                        src[j], "\\" + src[j]))
                else:
                    buf.append(src[j])
                j += 1
            if j >= n:
                raise TemplateError("unterminated quoted string")
            toks.append(("str", "".join(buf)))
            i = j + 1
        elif c == "`":
            j = src.find("`", i + 1)
            if j < 0:
                raise TemplateError("unterminated raw quoted string")
            toks.append(("str", src[i + 1:j]))
            i = j + 1
        elif c in "()|,":
            toks.append(("op", c))
            i += 1
        elif src.startswith(":=", i) or c == "=":
            toks.append(("op", ":="))
            i += 2 if c == ":" else 1
        else:
            j = i
            while j < n and src[j] not in ' \t\r\n()|,"`' and not src.startswith(":=", j):
                j += 1
            word = src[i:j]
            i = j
            if word.startswith("."):
                toks.append(("field", [p for p in word[1:].split(".") if p]))
            elif word.startswith("$"):
                name, *rest = word.split(".")
                toks.append(("var", (name, rest)))
            elif word[0].isdigit() or (word[0] in "-+" and len(word) > 1):
                try:
                    toks.append(("num", int(word)))
                except ValueError:
                    try:
                        toks.append(("num", float(word)))
                    except ValueError:
                        raise TemplateError(f"bad number syntax: {word!r}") from None
            elif word in ("true", "false"):
                toks.append(("bool", word == "true"))
            elif word == "nil":
                toks.append(("nil", None))
            elif word in FUNCS:
                toks.append(("ident", word))
            else:
                raise TemplateError(f'function "{word}" not defined')
    return toks


def _parse_pipeline(toks: list, pos: int = 0, until: str | None = None):
    """(decl, commands), next position. A command is a list of operands."""
    decl: list[str] = []
    # $x := … or $k, $v := …
    k = pos
    names = []
    while k < len(toks) and toks[k][0] == "var" and not toks[k][1][1]:
        names.append(toks[k][1][0])
        k += 1
        if k < len(toks) and toks[k] == ("op", ","):
            k += 1
            continue
        break
    if names and k < len(toks) and toks[k] == ("op", ":="):
        decl, pos = names, k + 1
    cmds: list[list] = [[]]
    while pos < len(toks):
        t = toks[pos]
        if t == ("op", ")"):
            if until == ")":
                return (decl, cmds), pos + 1
            raise TemplateError("unexpected right paren")
        if t == ("op", "|"):
            if not cmds[-1]:
                raise TemplateError("missing command before |")
            cmds.append([])
            pos += 1
        elif t == ("op", "("):
            sub, pos = _parse_pipeline(toks, pos + 1, ")")
            chain: list[str] = []
            if pos < len(toks) and toks[pos][0] == "field":  # (…).Field
                chain = toks[pos][1]
                pos += 1
            cmds[-1].append(("pipe", (sub, chain)))
        else:
            cmds[-1].append(t)
            pos += 1
    if until == ")":
        raise TemplateError("unclosed left paren")
    if not cmds[-1]:
        raise TemplateError("missing value for command")
    return (decl, cmds), pos


def _actions(src: str):
    """("text", s) and ("action", body) in order, with {{- -}} trimming applied."""
    out, i = [], 0
    while True:
        j = src.find("{{", i)
        if j < 0:
            out.append(("text", src[i:]))
            return out
        text = src[i:j]
        k = src.find("}}", j)
        if k < 0:
            raise TemplateError("unclosed action")
        body = src[j + 2:k]
        if body.startswith("- "):
            text = text.rstrip(" \t\r\n")
            body = body[2:]
        out.append(("text", text))
        i = k + 2
        if body.endswith(" -"):
            body = body[:-2]
            while i < len(src) and src[i] in " \t\r\n":
                i += 1
        out.append(("action", body.strip()))


def _tree(items: list, pos: int, closers: tuple):
    """Nodes until one of closers ("end", "else"); (nodes, stop keyword, stop body, pos)."""
    nodes: list = []
    while pos < len(items):
        kind, val = items[pos]
        pos += 1
        if kind == "text":
            if val:
                nodes.append(("text", val))
            continue
        if val.startswith("/*") or val == "":
            continue
        word, _, rest = val.partition(" ")
        if word in closers:
            return nodes, word, rest.strip(), pos
        if word in ("if", "range", "with"):
            pipe = _parse_pipeline(_lex(rest))[0]
            body, stop, _, pos = _tree(items, pos, ("end", "else"))
            other: list = []
            if stop == "else":
                other, _, _, pos = _tree(items, pos, ("end",))
            nodes.append((word, pipe, body, other))
        elif word in ("end", "else"):
            raise TemplateError(f"unexpected {{{{{word}}}}}")
        else:
            nodes.append(("action", _parse_pipeline(_lex(val))[0]))
    if closers:
        raise TemplateError("unexpected EOF")
    return nodes, None, "", pos


class Template:
    def __init__(self, src: str) -> None:
        self.src = src
        self.nodes = _tree_else_if(_actions(src))[0]

    def render(self, dot) -> str:
        out: list[str] = []
        _exec(self.nodes, dot, {"$": dot}, out)
        return "".join(out)


def _tree_else_if(items: list):
    """Parse, expanding `{{else if X}}` into `{{else}}{{if X}}` with a matching `{{end}}`."""
    expanded: list = []
    depth_stack: list[int] = []  # per open block: how many extra ends it needs
    for kind, val in items:
        if kind == "action":
            word = val.partition(" ")[0]
            if word in ("if", "range", "with"):
                depth_stack.append(0)
            elif word == "else" and val.strip() != "else":
                rest = val[4:].strip()
                expanded.append(("action", "else"))
                expanded.append(("action", rest))
                if depth_stack:
                    depth_stack[-1] += 1
                continue
            elif word == "end" and depth_stack:
                for _ in range(depth_stack.pop()):
                    expanded.append(("action", "end"))
        expanded.append((kind, val))
    return _tree(expanded, 0, ())


# -- execution -----------------------------------------------------------------------------

def _field(obj, name: str, args: list | None = None):
    if obj is MISSING or obj is None:
        raise TemplateError(f"nil pointer evaluating interface {{}}.{name}")
    if isinstance(obj, dict):
        v = obj.get(name, MISSING)
    else:
        v = getattr(obj, name, MISSING) if not name.startswith("_") else MISSING
        if v is MISSING:
            raise TemplateError(f"can't evaluate field {name} in type "
                                f"{getattr(obj, 'type_name', type(obj).__name__)}")
    if callable(v) and not isinstance(v, type):
        return v(*(args or []))
    if args and not isinstance(obj, Header):
        raise TemplateError(f"{name} is not a method but has arguments")
    return v


def _chain(obj, names: list[str], args: list | None = None):
    for i, name in enumerate(names):
        obj = _field(obj, name, args if i == len(names) - 1 else None)
    return obj


def _operand(t, dot, vars):
    kind, val = t
    if kind in ("str", "num", "bool", "nil"):
        return val
    if kind == "field":
        return _chain(dot, val)
    if kind == "var":
        name, rest = val
        if name not in vars:
            raise TemplateError(f"undefined variable: {name}")
        return _chain(vars[name], rest)
    if kind == "pipe":
        sub, chain = val
        return _chain(_pipeline(sub, dot, vars), chain)
    if kind == "ident":
        return FUNCS[val]()
    raise TemplateError(f"unexpected {val!r}")


def _pipeline(pipe, dot, vars):
    decl, cmds = pipe
    value = None
    for n, cmd in enumerate(cmds):
        head = cmd[0]
        extra = [_operand(t, dot, vars) for t in cmd[1:]]
        if n:
            extra.append(value)
        if head[0] == "ident":
            try:
                value = FUNCS[head[1]](*extra)
            except TemplateError:
                raise
            except Exception as e:  # noqa: BLE001  (a bad argument to a function)
                raise TemplateError(f"error calling {head[1]}: {e}") from None
        elif head[0] in ("field", "var") and extra:
            if head[0] == "field":
                value = _chain(dot, head[1], extra)
            else:
                name, rest = head[1]
                value = _chain(vars[name], rest, extra)
        elif extra:
            raise TemplateError(f"can't give argument to non-function {head[1]!r}")
        else:
            value = _operand(head, dot, vars)
    if decl:
        vars[decl[-1]] = value
    return value


def _exec(nodes: list, dot, vars: dict, out: list[str]) -> None:
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "action":
            value = _pipeline(node[1], dot, vars)
            if not node[1][0]:  # an assignment prints nothing
                out.append(go_str(value))
        elif kind == "if":
            _, pipe, body, other = node
            _exec(body if truthy(_pipeline(pipe, dot, dict(vars))) else other, dot, vars, out)
        elif kind == "with":
            _, pipe, body, other = node
            value = _pipeline(pipe, dot, dict(vars))
            if truthy(value):
                _exec(body, value, vars, out)
            else:
                _exec(other, dot, vars, out)
        elif kind == "range":
            _, (decl, cmds), body, other = node
            value = _pipeline(([], cmds), dot, vars)
            if isinstance(value, dict):
                pairs = [(k, value[k]) for k in sorted(value)]
            elif isinstance(value, (list, tuple)):
                pairs = list(enumerate(value))
            elif value in (None, MISSING):
                pairs = []
            elif isinstance(value, int):
                pairs = [(i, i) for i in range(value)]
            else:
                raise TemplateError(f"range can't iterate over {go_str(value)}")
            if not pairs:
                _exec(other, dot, vars, out)
            for k, v in pairs:
                inner = dict(vars)
                if len(decl) == 1:
                    inner[decl[0]] = v
                elif len(decl) == 2:
                    inner[decl[0]], inner[decl[1]] = k, v
                _exec(body, v, inner, out)


# -- docker's --format conventions ---------------------------------------------------------

def print_inspect(cli, docs: list, fmt: str | None) -> None:
    """inspect's output: the documents as an indented JSON array, or each through -f."""
    if fmt:
        from bosun.cli import StatusError

        tmpl = Template(prepare(fmt)[1])
        try:
            cli.out("".join(tmpl.render(doc) + "\n" for doc in docs))
        except TemplateError as e:
            raise StatusError(1, f"template: {e}") from None
    else:
        import json

        cli.out(json.dumps(docs, indent=4, ensure_ascii=False) + "\n")


def print_rows(cli, rows: list, quiet: bool, fmt: str | None, table: str,
               titles: dict[str, str]) -> None:
    """A listing: its rows' IDs with -q, else the rows through --format (or its table)."""
    if quiet:
        cli.out("".join(r.ID + "\n" for r in rows))
    else:
        import sys

        render(choose(fmt, table), rows, titles, sys.stdout)


def choose(fmt: str | None, table: str) -> str:
    """A listing's --format: its default table for "" or "table", one JSON object per line
    for "json", else the user's template."""
    if not fmt or fmt == "table":
        return table
    return "{{json .}}" if fmt == "json" else fmt


def prepare(fmt: str) -> tuple[bool, str]:
    """(is a table, template text): docker strips "table", trims spaces and turns the
    two-character sequences \\t and \\n into tab and newline."""
    table = fmt.startswith("table")
    if table:
        fmt = fmt[5:]
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return table, fmt


class Header(dict):
    """The header row of a table: every field is its column title."""

    def __init__(self, titles: dict[str, str]) -> None:
        super().__init__(titles)

    def get(self, key, default=None):  # an unknown field gets its upper-cased name
        return super().get(key, key.upper())


def render(fmt: str, rows: list, titles: dict[str, str], out) -> None:
    """Write rows through fmt ("table …" gets a header and aligned columns)."""
    table, text = prepare(fmt)
    tmpl = Template(text)
    lines = [tmpl.render(row) + "\n" for row in rows]
    if table:
        header = Header(titles)
        lines.insert(0, tmpl.render(header) + "\n")
        out.write(tabwrite("".join(lines)))
    else:
        out.write("".join(lines))


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter (tabwidth 1, pad with spaces): tab-terminated cells are aligned in
    columns; a column runs over consecutive lines that have a cell there."""
    lines = [line.split("\t") for line in text.split("\n")]
    widths = [[0] * (len(cells) - 1) for cells in lines]

    def column(lo: int, hi: int, col: int) -> None:
        i = lo
        while i < hi:
            if len(lines[i]) - 1 <= col:
                i += 1
                continue
            j, width = i, minwidth
            while j < hi and len(lines[j]) - 1 > col:
                width = max(width, len(lines[j][col]) + padding)
                j += 1
            for k in range(i, j):
                widths[k][col] = width
            column(i, j, col + 1)
            i = j

    column(0, len(lines), 0)
    return "\n".join("".join(c.ljust(w) for c, w in zip(cells, ws)) + cells[-1]
                     for cells, ws in zip(lines, widths))


# -- go-units ------------------------------------------------------------------------------

def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(round(seconds / 3600))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def human_size(size: float, precision: int = 3) -> str:
    """go-units HumanSize with the docker CLI's precision (3) for its tables."""
    from bosun.gosyntax import human_size as go_human_size

    return go_human_size(size, precision)


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units, two decimals (docker info's Total Memory)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{units[i]}"


def ellipsis(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n - 1] + "…"
