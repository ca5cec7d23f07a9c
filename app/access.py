"""Who is calling and what they may do: the caller every API route is given.

With accounts off (no user in the home's account database) the one caller is
the local user, who may do everything; the server then refuses to listen on
anything but a loopback address (``server.run``). With accounts on, a caller is
a user (by an API key or a session token, ``app.accounts``) with a role and
per-collection grants, narrowed by the key's own collections when it has any.

A collection a caller may not read is answered exactly like one that does not
exist (404, same message), so collection names do not leak.

``check_bind`` is the one rule for listening on a network: ``kb serve`` and
``kb ui`` both refuse a non-loopback address while accounts are off.

Deliberately not here: checking passwords or keys (``app.accounts``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from core.errors import KbError

if TYPE_CHECKING:  # the accounts store imports this module
    from app.accounts import Accounts

Access = Literal["read", "write"]


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool
    grants: Mapping[str, Access] = field(default_factory=dict)  # collection -> access (admins need none)
    key_collections: frozenset[str] | None = None  # an API key limited to these collections
    key_id: str | None = None  # the API key used, if any (the audit log names it)

    def _in_key_scope(self, collection: str) -> bool:
        return self.key_collections is None or collection in self.key_collections

    def may_read(self, collection: str) -> bool:
        return self._in_key_scope(collection) and (self.admin or collection in self.grants)

    def may_write(self, collection: str) -> bool:
        return self._in_key_scope(collection) and (self.admin or self.grants.get(collection) == "write")

    @property
    def requester(self) -> str:
        """Whose turn it is in the generator's fair queue: the user, whichever key or session they use."""
        return f"user:{self.name}"


LOCAL_CALLER = Caller(name="local", admin=True)


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


def check_bind(host: str, accounts: Accounts, setting: str = "KB_SERVE_HOST") -> None:
    """Refuse a non-loopback address while accounts are off (nobody would need to log in)."""
    if not is_loopback(host) and not accounts.enabled():
        raise UnsafeBindError(
            f"refusing to listen on {host}: accounts are off, so anybody who can reach this address could read and "
            "change every collection. Add an admin first (`kb users add <name> --admin`), then grant others "
            f"access (`kb users grant`), or keep {setting}=127.0.0.1 behind a proxy that authenticates.")
