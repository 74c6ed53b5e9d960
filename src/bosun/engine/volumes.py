"""Volumes in the engine: the /volumes verbs over bosun.volume (with their events), and a
container's mounts — resolved at create (named volumes made if missing, anonymous ones for
`-v /path`, a Mount without Source and the image's VOLUMEs, --volumes-from), acquired at start
(driver mounts, copy-up, subpaths), released when it stops, dropped when it is removed.

A container's resolved mounts are kept in meta["mounts"], one dict per mount point in
Docker's MountPoint terms (Type, Name, Source, Destination, Driver, Mode, RW, Propagation)
plus what only the engine needs (Anonymous, NoCopy, Subpath, From); inspect's Mounts is
their public part."""

from __future__ import annotations

import errno
import logging
import os
import shutil

from bosun.engine.errors import Conflict, InvalidParameter, NotFound, SystemErr

log = logging.getLogger("bosun.engine")
_PUBLIC = ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation")


def engine_error(e: Exception) -> Exception:
    """The volume layer's errors as the engine's kinds (same names, one to one)."""
    from bosun.volume import errors as v

    for src, dst in ((v.InvalidParameter, InvalidParameter), (v.NotFound, NotFound),
                     (v.Conflict, Conflict)):
        if isinstance(e, src):
            return dst(str(e))
    if isinstance(e, (v.VolumeError, OSError)):
        return SystemErr(str(e))
    return e


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        raise engine_error(e) from None


def _emit(engine, action: str, name: str, **attrs: str) -> None:
    engine.events.emit("volume", action, name, {"driver": "local", **attrs})


# -- the /volumes verbs ------------------------------------------------------------------------

def create(engine, body: dict) -> dict:
    from bosun.engine import gotypes

    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: the body must be an object")
    body = gotypes.check(body, gotypes.VOLUME_CREATE, "CreateOptions")
    v, made = _call(engine.volumes.create, body.get("Name") or None,
                    driver=body.get("Driver") or None, options=body.get("DriverOpts"),
                    labels=body.get("Labels"))
    if made:
        _emit(engine, "create", v["Name"])
    return v


def inspect(engine, name: str) -> dict:
    return _call(engine.volumes.inspect, name)


def list_volumes(engine, filters: dict) -> dict:
    return {"Volumes": _call(engine.volumes.list, filters), "Warnings": []}


def remove(engine, name: str, force: bool = False) -> None:
    if _call(engine.volumes.remove, name, force):
        _emit(engine, "destroy", name)


def prune(engine, filters: dict) -> dict:
    out = _call(engine.volumes.prune, filters)
    for name in out["VolumesDeleted"]:
        _emit(engine, "destroy", name)
    return out


def usage(engine) -> list[dict]:
    return _call(engine.volumes.usage)


# -- a container's mounts: create ------------------------------------------------------------

def _bind_mode(raw: str) -> str:
    parts = raw.split(":", 3)
    return parts[2] if len(parts) > 2 else ""


def _requested(hc: dict) -> list[dict]:
    """Binds and Mounts as mount points (volumes not resolved yet), in request order."""
    from bosun.engine.createconfig import clean_path, parse_bind

    out = []
    for raw in hc.get("Binds") or ():
        b = parse_bind(raw)
        mode = _bind_mode(raw)
        opts = mode.split(",") if mode else []
        if b["Type"] == "bind":
            out.append({"Type": "bind", "Source": b["Source"], "Destination": b["Destination"],
                        "Mode": mode, "RW": b["RW"], "Propagation": b["Propagation"]})
        else:
            out.append({"Type": "volume", "Name": b["Source"], "Destination": b["Destination"],
                        "Mode": mode or ("z" if b["Source"] else ""), "RW": b["RW"],
                        "Propagation": "", "NoCopy": "nocopy" in opts})
    for m in hc.get("Mounts") or ():
        typ, dest = m.get("Type"), clean_path(m["Target"])
        rw = not m.get("ReadOnly")
        if typ == "bind":
            prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
            out.append({"Type": "bind", "Source": clean_path(m["Source"]), "Destination": dest,
                        "Mode": "", "RW": rw, "Propagation": prop})
        elif typ == "volume":
            vo = m.get("VolumeOptions") or {}
            dc = vo.get("DriverConfig") or {}
            # Mode "z" for a named one, as dockerd shows it
            out.append({"Type": "volume", "Name": m.get("Source") or "", "Destination": dest,
                        "Mode": "z" if m.get("Source") else "", "RW": rw,
                        "Propagation": "", "NoCopy": bool(vo.get("NoCopy")),
                        "Subpath": vo.get("Subpath") or "", "Labels": vo.get("Labels"),
                        "DriverName": dc.get("Name") or "", "Options": dc.get("Options")})
        else:
            out.append({"Type": "tmpfs", "Source": "", "Destination": dest, "Mode": "",
                        "RW": rw, "Propagation": ""})
    return out


def _from_others(engine, hc: dict, taken: set[str]) -> list[dict]:
    """HostConfig.VolumesFrom: "container[:ro|:rw]" — the other's volumes and binds, at the
    same destinations, read-only or read-write as asked (else as they are there)."""
    out = []
    for spec in hc.get("VolumesFrom") or ():
        ref, _, mode = spec.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidParameter(f"invalid mode: {mode}")
        other = engine.get(ref)
        for m in other.meta.get("mounts") or []:
            if m["Type"] == "tmpfs" or m["Destination"] in taken:
                continue
            m = dict(m, From=other.id, Anonymous=False, NoCopy=True)
            if mode:
                m["RW"] = mode == "rw"
                m["Mode"] = mode
            taken.add(m["Destination"])
            out.append(m)
    return out


def resolve(engine, cid: str, config: dict, hc: dict) -> tuple[list[dict], list[str]]:
    """Every mount point of a new container, its volumes made (if missing) and referenced by
    `cid`. Returns (the mount points, the names of the volumes this call made). On failure
    nothing is left: no reference, no volume it made."""
    from bosun.engine.createconfig import clean_path

    mounts = _requested(hc)
    taken = {m["Destination"] for m in mounts} | {clean_path(d) for d in hc.get("Tmpfs") or {}}
    mounts += _from_others(engine, hc, taken)
    for dest in (config.get("Volumes") or {}):
        dest = clean_path(dest)
        if dest not in taken and dest != "/":  # the request's mounts win over the image's
            taken.add(dest)
            mounts.append({"Type": "volume", "Name": "", "Destination": dest, "Mode": "",
                           "RW": True, "Propagation": ""})
    made: list[str] = []
    try:
        for m in mounts:
            if m["Type"] != "volume":
                continue
            if m.get("From"):
                _call(engine.volumes.add_ref, m["Name"], cid)
                continue
            m["Anonymous"] = not m["Name"]
            v, new = _call(engine.volumes.create, m["Name"] or None,
                           driver=m.pop("DriverName", "") or None,
                           options=m.pop("Options", None), labels=m.pop("Labels", None),
                           anonymous=m["Anonymous"], ref=cid)
            if new:
                made.append(v["Name"])
                _emit(engine, "create", v["Name"])
            m.update(Name=v["Name"], Source=v["Mountpoint"], Driver=v["Driver"])
    except BaseException:
        unresolve(engine, cid, made)
        raise
    return mounts, made


def unresolve(engine, cid: str, made: list[str]) -> None:
    """Undo resolve: drop cid's references and remove the volumes it made."""
    try:
        engine.volumes.drop_refs(cid)
        for name in made:
            if engine.volumes.remove(name, force=True):
                _emit(engine, "destroy", name)
    except Exception as e:  # noqa: BLE001
        log.warning("undoing the volumes of %s: %s", cid[:12], e)


def public(mounts: list[dict]) -> list[dict]:
    """inspect's Mounts: Docker's MountPoint fields, Name and Driver for volumes only."""
    return [{k: m[k] for k in _PUBLIC if k in m and (m["Type"] == "volume" or
                                                     k not in ("Name", "Driver"))}
            for m in mounts]


# -- start / stop / remove ----------------------------------------------------------------------

class Acquired:
    """What a start holds: the volume mounts for the spec and the staging binds of their
    subpaths, needed until the runtime has mounted them into the container."""

    def __init__(self, staging: str) -> None:
        self.mounts: list[dict] = []
        self.staging = staging
        self.staged: list[str] = []

    def stage(self, fd: int) -> str:
        """Bind the subpath opened as `fd` on a staging path of the host's mount namespace
        (the runtime, in the container's new one, cannot bind from an fd of ours): what is
        mounted is what was opened beneath the volume, whatever the path became since."""
        from bosun import kernel as K

        os.makedirs(self.staging, 0o700, exist_ok=True)
        path = os.path.join(self.staging, str(len(self.staged)))
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.mkdir(path, 0o700)
        else:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        K.LINUX.mount(f"/proc/self/fd/{fd}", path, None, K.MS_BIND, None)
        self.staged.append(path)
        K.LINUX.mount(None, path, None, K.MS_PRIVATE, None)  # no propagation either way
        return path

    def close(self) -> None:
        """The container has its own copies of the staged binds: drop ours."""
        from bosun import kernel as K

        for path in self.staged:
            try:
                K.LINUX.umount2(path, K.MNT_DETACH)
            except OSError as e:
                log.warning("unmounting %s: %s", path, e)
        self.staged = []
        shutil.rmtree(self.staging, ignore_errors=True)


def acquire(engine, c, rootfs: str) -> Acquired:
    """Mount what needs mounting (driver options, first holder), copy the image's content
    into empty volumes (copy-up), and open subpaths beneath their volume."""
    out = Acquired(os.path.join(engine.exec_root, "volumes", c.id))
    try:
        for m in c.meta.get("mounts") or []:
            if m["Type"] == "bind" and m.get("From"):
                out.mounts.append(m)
            if m["Type"] != "volume":
                continue
            path = _call(engine.volumes.acquire, m["Name"], c.id)
            _emit(engine, "mount", m["Name"], container=c.id, destination=m["Destination"],
                  propagation="", **{"read/write": str(m["RW"]).lower()})
            if not m.get("NoCopy") and not m.get("Subpath"):
                _copy_up(rootfs, m["Destination"], path)
            src = path
            if m.get("Subpath"):
                fd = _call(engine.volumes.open_subpath, m["Name"], m["Subpath"])
                try:
                    src = out.stage(fd)
                finally:
                    os.close(fd)
            out.mounts.append({"Destination": m["Destination"], "Source": src,
                               "RW": m["RW"], "Propagation": ""})
    except BaseException:
        out.close()
        release(engine, c)
        raise
    return out


def clear_staging(engine) -> None:
    """At daemon start no start is in flight: a staging bind left there by a crash mid-start
    is unmounted and its directory removed."""
    from bosun import kernel as K
    from bosun.image.snapshot import mount_points

    root = os.path.realpath(os.path.join(engine.exec_root, "volumes"))
    if not os.path.isdir(root):
        return
    for path in sorted((m for m in mount_points() if m.startswith(root + "/")), key=len,
                       reverse=True):
        try:
            K.LINUX.umount2(path, K.MNT_DETACH)
        except OSError as e:
            log.warning("unmounting %s: %s", path, e)
    shutil.rmtree(root, ignore_errors=True)


def _copy_up(rootfs: str, dest: str, volume_path: str) -> None:
    """The image's directory at dest (resolved inside the rootfs) into an empty volume."""
    from bosun import kernel as K
    from bosun.volume.copyup import copy_up

    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY)
    try:
        try:
            src = K.LINUX.openat2(root, dest.lstrip("/") or ".", os.O_PATH | os.O_DIRECTORY,
                                  K.RESOLVE_IN_ROOT | K.RESOLVE_NO_MAGICLINKS)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return  # nothing there in the image: the runtime makes the directory
            raise
        try:
            copy_up(src, volume_path)
        finally:
            os.close(src)
    finally:
        os.close(root)


def release(engine, c) -> None:
    """The container stopped: drop its mount holds (unmounting after the last holder)."""
    for m in c.meta.get("mounts") or []:
        if m["Type"] != "volume":
            continue
        try:
            if engine.volumes.release(m["Name"], c.id):
                _emit(engine, "unmount", m["Name"], container=c.id)
        except Exception as e:  # noqa: BLE001
            log.warning("releasing volume %s of %s: %s", m["Name"], c.id[:12], e)


def forget(engine, c, remove_anonymous: bool) -> None:
    """The container is removed: its uses end; with `rm -v` (or --rm) its anonymous volumes
    go too, unless another container still uses one (--volumes-from)."""
    if not any(m["Type"] == "volume" for m in c.meta.get("mounts") or []):
        return
    engine.volumes.drop_refs(c.id)
    if not remove_anonymous:
        return
    for m in c.meta.get("mounts") or []:
        if m["Type"] == "volume" and m.get("Anonymous") and not m.get("From"):
            try:
                remove(engine, m["Name"])
            except (Conflict, NotFound):
                pass
            except Exception as e:  # noqa: BLE001
                log.warning("removing volume %s of %s: %s", m["Name"], c.id[:12], e)
