"""Bridge networking as a library: IPAM in SQLite (store.py, ipam.py), links and namespaces
over netlink (netlink.py), nftables rules (firewall.py), and `Networks` (manager.py), the
object the engine calls. Importing this package loads pyroute2 only when `Networks` or
`netlink` is used."""

from bosun.network.errors import (
    AddressExhausted,
    Conflict,
    Forbidden,
    InvalidParameter,
    NetworkError,
    NotFound,
)
from bosun.network.store import Endpoint, Network, NetworkStore, PortBinding

__all__ = ["AddressExhausted", "Conflict", "Endpoint", "Forbidden", "InvalidParameter",
           "Network", "NetworkError", "NetworkStore", "Networks", "NotFound", "PortBinding"]


def __getattr__(name: str):
    if name == "Networks":
        from bosun.network.manager import Networks
        return Networks
    raise AttributeError(name)
