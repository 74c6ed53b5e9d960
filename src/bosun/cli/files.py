"""Commands that move tar streams and filesystem changes: cp, diff, export, save, load,
import, commit."""

from __future__ import annotations

import os
import sys

from bosun.cli import StatusError
from bosun.cli.containers import cpath, write_all
from bosun.cli.flags import BOOL, LIST, STR, Flag, command

COMMANDS: dict = {}
REFUSE = "cowardly refusing to save to a terminal. Use the -o flag or redirect"


def read_file(f, size: int = 1 << 16):
    """A file's bytes, piece by piece (a request body sent chunked)."""
    while True:
        piece = f.read(size)
        if not piece:
            return
        yield piece


def save_stream(chunks, output: str | None) -> None:
    """Write a tar the daemon streams to -o FILE (replaced only once complete, as docker's
    AtomicWriteFile) or to stdout, which must not be a terminal."""
    if not output:
        if os.isatty(1):
            raise StatusError(1, REFUSE)
        sys.stdout.flush()
        for piece in chunks:
            write_all(1, piece)
        return
    tmp = f"{output}.bosun-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            for piece in chunks:
                f.write(piece)
        os.replace(tmp, output)
    except OSError as e:
        raise StatusError(1, f"failed to save: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def refuse_terminal(output: str | None) -> None:
    if not output and os.isatty(1):
        raise StatusError(1, REFUSE)


def print_messages(r, out=None) -> None:
    """A JSON message stream (load, import) as docker's jsonmessage shows it without a
    terminal: `stream` text as it is, `status` lines, errors as failures."""
    out = out or sys.stdout
    if not r.content_type.startswith("application/json"):
        out.write(r.read().decode("utf-8", "replace"))
        return
    for m in r.json_stream():
        if m.get("error"):
            raise StatusError(1, m["error"])
        if "stream" in m:
            out.write(m["stream"])
        elif m.get("status"):
            out.write((f"{m['id']}: " if m.get("id") else "") + m["status"] + "\n")
        out.flush()


# -- images ------------------------------------------------------------------------------------

@command(COMMANDS, "save", "[OPTIONS] IMAGE [IMAGE...]", "Save one or more images to a tar "
         "archive (streamed to STDOUT by default)", [
             Flag("output", "o", STR, "Write to a file, instead of STDOUT"),
             Flag("platform", None, STR, "Save only the given platform variant")],
         nargs=(1, None))
def save(cli, opts, args) -> int:
    refuse_terminal(opts["output"])
    r = cli.client.stream("GET", "/images/get", {"names": list(args),
                                                 "platform": opts["platform"]})
    save_stream(r.chunks(), opts["output"])
    return 0


@command(COMMANDS, "load", "[OPTIONS]", "Load an image from a tar archive or STDIN", [
    Flag("input", "i", STR, "Read from tar archive file, instead of STDIN"),
    Flag("platform", None, STR, "Load only the given platform variant"),
    Flag("quiet", "q", BOOL, "Suppress the load output")], nargs=(0, 0))
def load(cli, opts, args) -> int:
    if opts["input"]:
        try:
            f = open(opts["input"], "rb")
        except OSError as e:
            raise StatusError(1, f"open {opts['input']}: {(e.strerror or str(e)).lower()}") \
                from None
    elif os.isatty(0):
        raise StatusError(1, "requested load from stdin, but stdin is empty")
    else:
        f = open(0, "rb", closefd=False)
    with f:
        # docker asks for quiet output whenever stdout is not a terminal
        r = cli.client.stream("POST", "/images/load", {"quiet": True,
                                                       "platform": opts["platform"]},
                              body=read_file(f))
        print_messages(r)
    return 0


@command(COMMANDS, "import", "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]", "Import the contents "
         "from a tarball to create a filesystem image", [
             Flag("change", "c", LIST, "Apply Dockerfile instruction to the created image"),
             Flag("message", "m", STR, "Set commit message for imported image"),
             Flag("platform", None, STR, "Set platform if server is multi-platform capable")],
         nargs=(1, 2))
def import_(cli, opts, args) -> int:
    from bosun.cli.images import split_ref

    src = args[0]
    repo, tag, _ = split_ref(args[1]) if len(args) > 1 else ("", "", "")
    params = {"fromSrc": src if "://" in src else "-", "repo": repo, "tag": tag,
              "message": opts["message"], "changes": opts["change"] or None,
              "platform": opts["platform"]}
    if "://" in src:  # the daemon fetches URLs itself
        r = cli.client.stream("POST", "/images/create", params)
    else:
        try:
            f = open(0, "rb", closefd=False) if src == "-" else open(src, "rb")
        except OSError as e:
            raise StatusError(1, f"open {src}: {(e.strerror or str(e)).lower()}") from None
        with f:
            r = cli.client.stream("POST", "/images/create", params, body=read_file(f))
            print_messages(r)
            return 0
    print_messages(r)
    return 0


@command(COMMANDS, "commit", "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]", "Create a new image "
         "from a container's changes", [
             Flag("author", "a", STR, 'Author (e.g., "John Hannibal Smith '
                  '<hannibal@a-team.com>")'),
             Flag("change", "c", LIST, "Apply Dockerfile instruction to the created image"),
             Flag("message", "m", STR, "Commit message"),
             Flag("pause", "p", BOOL, "Pause container during commit", True)], nargs=(1, 2))
def commit(cli, opts, args) -> int:
    from bosun.cli.images import split_ref

    repo, tag, _ = split_ref(args[1]) if len(args) > 1 else ("", "", "")
    r = cli.client.call("POST", "/commit", {
        "container": args[0], "repo": repo, "tag": tag, "comment": opts["message"],
        "author": opts["author"], "changes": opts["change"] or None,
        "pause": "1" if opts["pause"] else "0"})
    cli.out(f"{r['Id']}\n")
    return 0


# -- containers --------------------------------------------------------------------------------

@command(COMMANDS, "export", "[OPTIONS] CONTAINER", "Export a container's filesystem as a tar "
         "archive", [Flag("output", "o", STR, "Write to a file, instead of STDOUT")],
         nargs=(1, 1))
def export(cli, opts, args) -> int:
    refuse_terminal(opts["output"])
    save_stream(cli.client.stream("GET", cpath(args[0], "/export")).chunks(), opts["output"])
    return 0


@command(COMMANDS, "diff", "CONTAINER", "Inspect changes to files or directories on a "
         "container's filesystem", nargs=(1, 1))
def diff(cli, opts, args) -> int:
    changes = cli.client.call("GET", cpath(args[0], "/changes")) or []
    cli.out("".join(f"{'CAD'[c.get('Kind', 0)]} {c.get('Path', '')}\n" for c in changes))
    return 0


def split_cp(arg: str) -> tuple[str, str]:
    """("container", "path") for CONTAINER:PATH; ("", arg) for a local path (one that starts
    with / or . may hold a colon, as docker's splitCpArg)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return "", arg
    name, _, path = arg.partition(":")
    return name, path


def decode_stat(header: str) -> dict:
    import base64

    from bosun import quickjson

    try:
        return quickjson.loads(base64.b64decode(header)) or {}
    except ValueError:
        return {}


S_IFDIR, S_IFLNK = 0o20000000000, 0o1000000000  # Go's os.ModeDir, os.ModeSymlink


def human_bytes(n: int) -> str:
    from bosun.cli.format import human_size

    return human_size(n)


@command(COMMANDS, "cp", "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tbosun cp [OPTIONS] "
         "SRC_PATH|- CONTAINER:DEST_PATH", "Copy files/folders between a container and the "
         "local filesystem", [
             Flag("archive", "a", BOOL, "Archive mode (copy all uid/gid information)"),
             Flag("follow-link", "L", BOOL, "Always follow symbol link in SRC_PATH"),
             Flag("quiet", "q", BOOL, "Suppress progress output during copy. Progress output "
                  "is automatically suppressed if no terminal is attached")], nargs=(2, 2))
def cp(cli, opts, args) -> int:
    (scont, spath), (dcont, dpath) = split_cp(args[0]), split_cp(args[1])
    if scont and dcont:
        raise StatusError(1, "copying between containers is not supported")
    if not scont and not dcont:
        raise StatusError(1, "must specify at least one container source")
    if (scont and not spath) or (dcont and not dpath):
        raise StatusError(1, "filepath can not be empty")
    quiet = opts["quiet"] or not os.isatty(2)
    if scont:
        n = copy_from(cli, scont, spath, dpath, opts["follow-link"])
        shown = dpath if dpath == "-" else os.path.abspath(dpath) + ("/" if dpath.endswith("/")
                                                                     else "")
    else:
        n = copy_to(cli, spath, dcont, dpath, opts["follow-link"], opts["archive"])
        shown = args[1]
    if not quiet and dpath != "-":
        cli.err(f"Successfully copied {human_bytes(n)} to {shown}\n")
    return 0


class Counter:
    """A file-like reader over the response's chunks that counts the bytes (for tarfile)."""

    def __init__(self, chunks) -> None:
        self.chunks, self.buf, self.n = iter(chunks), b"", 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buf) < size:
            piece = next(self.chunks, None)
            if piece is None:
                break
            self.n += len(piece)
            self.buf += piece
        if size < 0:
            size = len(self.buf)
        out, self.buf = self.buf[:size], self.buf[size:]
        return out


def copy_from(cli, container: str, src: str, dest: str, follow: bool) -> int:
    import posixpath
    import tarfile

    from bosun.cli.http import APIError

    try:
        r = cli.client.stream("GET", cpath(container, "/archive"), {"path": src})
    except APIError as e:
        raise StatusError(1, f"Error response from daemon: {e}") from None
    stat = decode_stat(r.headers.get("x-docker-container-path-stat", ""))
    if follow and stat.get("mode", 0) & S_IFLNK and stat.get("linkTarget"):
        r.close()  # -L: copy what the link points to, under the link's name
        target = stat["linkTarget"]
        r = cli.client.stream("GET", cpath(container, "/archive"), {"path": target})
        base = posixpath.basename(target.rstrip("/")) or "/"
        stat = dict(decode_stat(r.headers.get("x-docker-container-path-stat", "")),
                    name=stat.get("name"))
    else:
        base = stat.get("name") or posixpath.basename(src.rstrip("/"))
    if dest == "-":
        sys.stdout.flush()
        n = 0
        for piece in r.chunks():
            n += len(piece)
            write_all(1, piece)
        return n
    src_dir = bool(stat.get("mode", 0) & S_IFDIR)
    # docker's CopyTo rules: into an existing directory keep the name (or, for SRC/., only
    # the contents); otherwise the copy takes DEST's name in DEST's parent
    if os.path.isdir(dest):
        parent, name = dest, (None if src_dir and src.endswith("/.") else base)
    else:
        if dest.endswith("/"):
            r.close()
            raise StatusError(1, "no such directory" if not src_dir else
                              f'destination "{dest}" does not exist')
        if os.path.exists(dest) and src_dir:
            r.close()
            raise StatusError(1, "cannot copy directory")
        parent, name = os.path.dirname(dest) or ".", os.path.basename(dest)
        if not os.path.isdir(parent):
            r.close()
            raise StatusError(1, f'destination directory "{parent}" does not exist')
    reader = Counter(r.chunks())
    uid, gid = os.getuid(), os.getgid()
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for m in tar:
            path = m.name.lstrip("/")
            head, _, rest = path.partition("/")
            if head == base or (base == "/" and head):
                path = rest if name is None else posixpath.join(name, rest) if rest else name
            if not path:
                continue
            if ".." in path.split("/"):
                raise StatusError(1, f"refusing to extract {m.name!r}: outside the destination")
            if m.islnk():  # hard links name other members, renamed the same way
                lh, _, lrest = m.linkname.lstrip("/").partition("/")
                if lh == base:
                    m.linkname = lrest if name is None else posixpath.join(name, lrest)
            m.name = path
            # as docker's NoLchown: the files are ours, not the container's users'
            m.uid, m.gid, m.uname, m.gname = uid, gid, "", ""
            tar.extract(m, parent, set_attrs=True, numeric_owner=True)
    r.close()
    return reader.n


def copy_to(cli, src: str, container: str, dest: str, follow: bool, archive: bool) -> int:
    import posixpath
    import tarfile
    import tempfile

    from bosun.cli.http import APIError

    def put(path: str, body) -> None:
        try:
            cli.client.call("PUT", cpath(container, "/archive"),
                            {"path": path, "copyUIDGID": archive, "noOverwriteDirNonDir": True},
                            body=body)
        except APIError as e:
            raise StatusError(1, f"Error response from daemon: {e}") from None

    r = cli.client.send("HEAD", cpath(container, "/archive"), {"path": dest})
    r.close()
    if r.status == 404:  # a HEAD has no message: is it the container or the path?
        cli.client.call("GET", cpath(container, "/json"))
    elif r.status >= 400:
        raise StatusError(1, f"Error response from daemon: HTTP {r.status} for {dest}")
    stat = decode_stat(r.headers.get("x-docker-container-path-stat", "")) \
        if r.status == 200 else None
    dest_dir = bool(stat and stat.get("mode", 0) & S_IFDIR)
    if src == "-":
        if not dest_dir:
            raise StatusError(1, f'destination "{container}:{dest}" must be a directory')
        f = open(0, "rb", closefd=False)
        n = 0

        def counted():
            nonlocal n
            for piece in read_file(f):
                n += len(piece)
                yield piece
        put(dest, counted())
        return n
    if follow:
        src = os.path.realpath(src)
    if not os.path.lexists(src):
        raise StatusError(1, f"lstat {os.path.abspath(src)}: no such file or directory")
    src_dir = os.path.isdir(src) and (follow or not os.path.islink(src))
    base = os.path.basename(src.rstrip("/")) or "/"
    if dest_dir:
        target_dir, name = dest, (None if src_dir and src.endswith("/.") else base)
    else:
        if stat is not None and src_dir:
            raise StatusError(1, "cannot copy directory")
        if stat is None and dest.endswith("/") and not src_dir:
            raise StatusError(1, "no such directory")
        target_dir, name = posixpath.dirname(dest.rstrip("/")) or "/", \
            posixpath.basename(dest.rstrip("/"))
    with tempfile.TemporaryFile() as spool:
        # spooled first: the daemon is sent a Content-Length and we report the size. GNU
        # headers (no pax record per file) and no padding to tarfile's 10 KiB records, so the
        # size shown is the one docker's Go tar writer would show
        with tarfile.open(fileobj=spool, mode="w", format=tarfile.GNU_FORMAT,
                          dereference=follow) as tar:
            if name is None:
                for entry in sorted(os.listdir(src)):
                    tar.add(os.path.join(src, entry), entry)
            else:
                tar.add(src, name)
            n = tar.offset + 2 * tarfile.BLOCKSIZE
        spool.truncate(n)
        spool.seek(0)
        put(target_dir, read_file(spool))
    return n
