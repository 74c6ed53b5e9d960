"""state, list and ps: read-only views of containers."""

from __future__ import annotations

import json

from bosun.runtime.state import Container


def state(root: str, cid: str) -> dict:
    return Container.load(root, cid).oci_state()


def list_states(root: str) -> list[dict]:
    out = []
    for cid in Container.ids(root):
        try:
            out.append(Container.load(root, cid).oci_state())
        except Exception:  # noqa: BLE001 - a record vanishing mid-listing is not an error
            continue
    return out


def dumps(obj) -> str:
    return json.dumps(obj, indent=2)
