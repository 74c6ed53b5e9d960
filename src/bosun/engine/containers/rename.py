"""rename: a new unique name, in the index and the record at once."""

from __future__ import annotations

from bosun.engine import names
from bosun.engine.errors import Conflict, InvalidParameter


def rename(engine, c, new_name: str) -> None:
    if not new_name:
        raise InvalidParameter("Neither old nor new names may be empty")
    new = names.check(new_name)
    with engine.lock, c.lock:
        old = c.name
        if new == old:
            raise InvalidParameter("Renaming a container with the same name as its current "
                                   "name")
        holder = engine.names.get(new)
        if holder is not None:
            raise Conflict(f'Conflict. The container name "/{new}" is already in use by '
                           f'container "{holder}". You have to remove (or rename) that '
                           "container to be able to reuse that name.")
        c.doc["Name"] = "/" + new
        try:
            engine.save(c)
        except BaseException:
            c.doc["Name"] = "/" + old
            raise
        del engine.names[old]
        engine.names[new] = c.id
        if c.running and c.doc["NetworkSettings"].get("SandboxKey"):
            from bosun.engine import netdns

            netdns.register(engine, c)  # answers to its new name, no longer the old
            engine.save(c)  # its DNSNames
    engine.emit(c, "rename", oldName="/" + old)
