"""The admin API's address (`admin_listen`): a TCP ``HOST:PORT`` only (no unix socket).

* `check_admin_listen`: the setting's check, a ValueError saying what is wrong;
* `split_host_port`: ``HOST:PORT`` / ``[V6]:PORT`` -> (host, port);
* `is_loopback`: whether a host is reachable from this machine only.
"""

from __future__ import annotations

import ipaddress

__all__ = ["check_admin_listen", "is_loopback", "split_host_port"]

_MAX_PORT = 65535


def split_host_port(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port) (`check_admin_listen` first)."""
    host, _, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def check_admin_listen(value: str) -> None:
    """ValueError unless `value` is ``HOST:PORT`` with a port 0-65535 (0: any free one)."""
    if value.startswith("unix:"):
        raise ValueError("the admin API listens on TCP only: give HOST:PORT")
    host, colon, port = value.rpartition(":")
    if not colon or not host:
        raise ValueError(f"expected HOST:PORT (the admin API is TCP only), got {value[:80]!r}")
    if not (port.isascii() and port.isdigit()):
        raise ValueError(f"the port {port[:20]!r} is not a number (expected HOST:PORT)")
    if int(port) > _MAX_PORT:
        raise ValueError(f"the port {int(port)} is out of range (0-{_MAX_PORT})")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"unbalanced brackets in the host {host[:80]!r} (use [V6]:PORT)")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
