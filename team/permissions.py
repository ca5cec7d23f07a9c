"""Who may do what to which collection: the one module that decides.

A caller asks ``caller.may(Action.WRITE, "handbook")`` or, where a refusal must
reach the user, ``check(caller, Action.WRITE, "handbook")``, which raises the
refusal to show. The server, the UI and the CLI ask here; none of them spells a
rule of its own.

The rules:

- ``Action.READ`` (list it, ask, search, see its documents and jobs): an admin,
  or a member with a read or write grant on the collection.
- ``Action.WRITE`` (upload, delete a document, read one again): an admin, or a
  member with a write grant.
- ``Action.ADMINISTER`` (create or delete the collection): admins only.
- An API key limited to some collections narrows all three to those.
- A collection the caller may not read is refused exactly like one that does not
  exist (``CollectionHiddenError``, "no collection named …"), so names do not leak;
  a collection the caller may read but not change is refused as forbidden
  (``ForbiddenError``), since its existence is no secret to them.

With accounts off the one caller is ``LOCAL_CALLER``, an admin.

Worked example: bob has a read grant on "handbook" and nothing else::

    bob.may(Action.READ, "handbook") -> True     check(bob, Action.WRITE, "handbook") -> ForbiddenError
    bob.may(Action.READ, "secret")   -> False    check(bob, Action.READ, "secret")    -> CollectionHiddenError

Deliberately not here: who the caller is (``team.accounts`` checks passwords and
keys), whether the collection exists (``team.collections``), HTTP status codes
(``server.app``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from core.errors import KbError

Grant = Literal["read", "write"]
GRANTS: tuple[Grant, ...] = ("read", "write")


class Action(Enum):
    """What a caller does to a collection."""

    READ = "read"
    WRITE = "write"
    ADMINISTER = "administer"


class RefusedError(KbError):
    """Base of the refusals."""


class CollectionHiddenError(RefusedError):
    """The caller may not read the collection: answered like a collection that does not exist."""


class ForbiddenError(RefusedError):
    """The caller may read the collection but not do this to it."""


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool
    grants: Mapping[str, Grant] = field(default_factory=dict)  # collection -> grant (admins need none)
    key_collections: frozenset[str] | None = None  # an API key limited to these collections
    key_id: str | None = None  # the API key used, if any (the audit log names it)

    def may(self, action: Action, collection: str) -> bool:
        if self.key_collections is not None and collection not in self.key_collections:
            return False
        if self.admin:
            return True
        grant = self.grants.get(collection)
        if action is Action.READ:
            return grant is not None
        if action is Action.WRITE:
            return grant == "write"
        return False

    def grant_on(self, collection: str) -> Grant | None:
        """What the caller holds on ``collection`` as a grant would say it: "write", "read" or None."""
        if self.may(Action.WRITE, collection):
            return "write"
        return "read" if self.may(Action.READ, collection) else None

    @property
    def requester(self) -> str:
        """Whose turn it is in the generator's fair queue: the user, whichever key or session they use."""
        return f"user:{self.name}"


LOCAL_CALLER = Caller(name="local", admin=True)


def hidden(collection: str) -> str:
    """The message for a collection that does not exist, or that the caller may not read: the same words."""
    return f"no collection named {collection!r}"


def check(caller: Caller, action: Action, collection: str) -> None:
    """Nothing when ``caller`` may do ``action`` to ``collection``; else the refusal to show."""
    if not caller.may(Action.READ, collection):
        raise CollectionHiddenError(hidden(collection))
    if caller.may(action, collection):
        return
    if action is Action.WRITE:
        raise ForbiddenError(f"your access to {collection!r} is read-only")
    raise ForbiddenError("only admins delete collections")


def check_create(caller: Caller, collection: str) -> None:
    """Nothing when ``caller`` may create ``collection`` (it does not exist yet, so hiding it would say nothing)."""
    if not caller.may(Action.ADMINISTER, collection):
        raise ForbiddenError("only admins create collections")
