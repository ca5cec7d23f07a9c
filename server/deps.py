"""What every route is given: the service (collections, jobs, accounts, conversations) and the caller, checked.

``readable``/``writable``/``permitted`` turn a collection name into its pipeline
only when the caller may use it (``team.permissions`` decides); a collection the
caller may not read raises the very message a missing collection raises, so a
404 never tells whether a collection exists.

Deliberately not here: the routes, error formatting (``server.app``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from team.collections import Library, UnknownCollectionError
from team.jobs import IngestJobs
from app.pipeline import Pipeline
from app.settings import Settings
from team.permissions import LOCAL_CALLER, Action, Caller, check, hidden
from team.accounts import Accounts, AuthenticationError
from team.conversations import Conversations


@dataclass
class Service:
    settings: Settings
    library: Library
    jobs: IngestJobs
    accounts: Accounts
    conversations: Conversations  # saved conversations, per user (server.routes_conversations)
    front_key: str | None = None  # what a front end (the web UI) shows to name the browser (team.front_key)

    def audit(self, caller: Caller, action: str, collection: str | None = None, detail: str = "") -> None:
        self.accounts.audit(caller.name, action, collection, detail, key_id=caller.key_id)


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_caller(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <API key or session token> (accounts on).")] = None,
) -> Caller:
    service: Service = request.app.state.service
    if not service.accounts.enabled():
        return LOCAL_CALLER
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(401, "an API key is required: Authorization: Bearer <key>",
                            headers={"WWW-Authenticate": "Bearer"})
    try:
        return service.accounts.caller_for_token(authorization[7:].strip())
    except AuthenticationError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


ServiceDep = Annotated[Service, Depends(get_service)]
CallerDep = Annotated[Caller, Depends(get_caller)]


def permitted(service: Service, caller: Caller, action: Action, name: str) -> Pipeline:
    """The collection's pipeline when the caller may do ``action`` to it (``team.permissions``) and it exists."""
    check(caller, action, name)
    if not service.library.exists(name):
        raise UnknownCollectionError(hidden(name))
    return service.library.pipeline(name)


def readable(service: Service, caller: Caller, name: str) -> Pipeline:
    return permitted(service, caller, Action.READ, name)


def writable(service: Service, caller: Caller, name: str) -> Pipeline:
    return permitted(service, caller, Action.WRITE, name)
