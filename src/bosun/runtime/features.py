"""features: what this runtime supports, in the shape of `runc features`."""

from __future__ import annotations

import os

from bosun.kernel import caps
from bosun.runtime import spec
from bosun.runtime.rootfs import _FLAGS, _RECURSIVE, PROPAGATION


def _seccomp() -> dict:
    from bosun.runtime import seccomp_filter as sf

    try:
        sf._bindings()
    except Exception:  # noqa: BLE001 - bindings missing: say so
        return {"enabled": False}
    return {
        "enabled": True,
        "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
        "operators": sorted(sf._OPS),
        "archs": sorted(sf._ARCHES),
        "knownFlags": sorted(sf._FLAGS),
        "supportedFlags": sorted(sf._FLAGS),
    }


def features() -> dict:
    from bosun.runtime import cgroups

    hier = cgroups.hierarchies()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": spec.OCI_VERSION,
        "hooks": list(spec.HOOK_KINDS),
        "mountOptions": sorted(set(_FLAGS) | set(PROPAGATION) | set(_RECURSIVE)),
        "linux": {
            "namespaces": list(spec.NAMESPACES),
            "capabilities": list(caps.NAMES),
            "cgroup": {"v1": any(k != cgroups.UNIFIED for k in hier),
                       "v2": cgroups.UNIFIED in hier, "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": _seccomp(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.bosun.runtime.python": ".".join(map(str, os.sys.version_info[:3])),
        },
    }
