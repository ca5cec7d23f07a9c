"""The one rule for listening on a network: no network address while accounts are off.

``kb serve`` and ``kb ui`` both ask ``check_bind`` before loading anything. With
no user in the home's account database every request is the local admin
(``team.permissions.LOCAL_CALLER``), so anybody who could reach a network address
could read and change every collection.

Deliberately not here: TLS (a reverse proxy's work), who may do what once
listening (``team.permissions``).
"""

from __future__ import annotations

import ipaddress
import socket

from core.errors import KbError


class UnsafeBindError(KbError):
    """A network address without accounts: anybody who can reach it could read every collection."""


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:  # a host name: loopback only when every address it resolves to is
            addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        except OSError:
            return False
        return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_bind(host: str, accounts_enabled: bool, setting: str = "KB_SERVE_HOST") -> None:
    """Refuse a non-loopback address while accounts are off (nobody would need to log in)."""
    if not is_loopback(host) and not accounts_enabled:
        raise UnsafeBindError(
            f"refusing to listen on {host}: accounts are off, so anybody who can reach this address could read and "
            "change every collection. Add an admin first (`kb users add <name> --admin`), then grant others "
            f"access (`kb users grant`), or keep {setting}=127.0.0.1 behind a proxy that authenticates.")
