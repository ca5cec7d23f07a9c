"""``kb serve``: the team service. FastAPI on uvicorn, over the same pipeline the CLI uses; the web UI is its client.

Routes: the OpenAI-compatible ones (``server.routes_chat``), collections,
documents, jobs and search (``server.routes_collections``), saved conversations
(``server.routes_conversations``), and login/logout for
session tokens here. The schema at ``/openapi.json`` (no /docs page: it loads scripts from a CDN).

Safe by default:
- binds 127.0.0.1 unless ``KB_SERVE_HOST`` says otherwise, and refuses a
  non-loopback address while accounts are off (no user exists), saying how to
  add one;
- every error is JSON in OpenAI's shape, ``{"error": {"message", "type", "code"}}``,
  with a 4xx status for anything the request got wrong (malformed JSON, an
  unknown model, empty messages, an unknown route, a wrong method), never a traceback;
- a login counts against the address the connection comes from; an
  ``X-Forwarded-For`` header only when the connection comes from a proxy that
  ``KB_TRUSTED_PROXIES`` names (``team.throttle.client_address``). uvicorn's own
  reading of that header is off: it believed any loopback client;
- an upload larger than ``KB_MAX_UPLOAD_MB`` is refused with 413 before its
  body is read (a chunked upload without a length gets 411).

Deliberately not here: TLS (put the reverse proxy your team already runs in
front), several worker processes (one generator per process; the fair queue
is per process).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from team.collections import CollectionExistsError, InvalidCollectionNameError, Library, UnknownCollectionError
from app.indexing import UnsafeFileNameError
from team.conversations import ConversationNotFoundError, Conversations
from team.jobs import IngestJobs
from app.pipeline import Pipeline
from app.settings import Settings
from app.turns import QueueFullError
from core.errors import KbError
from llm.generator import GenerationError
from llm.models import ModelError
from retrieval.store import CollectionLockedError, StoreError
from app.pages import OriginalUnavailableError, UnknownDocumentError
from server import routes_chat, routes_collections, routes_conversations, routes_documents
from team.binding import check_bind
from team.permissions import CollectionHiddenError, ForbiddenError
from team.accounts import AccountError, Accounts, AuthenticationError, LoginThrottledError
from team.front_key import ensure_front_key, forwarded_client
from team.throttle import client_address
from server.deps import CallerDep, Service, ServiceDep

log = logging.getLogger("kbqa.server")


class Login(BaseModel):
    username: str
    password: str


class Session(BaseModel):
    token: str
    user: str
    admin: bool


class Me(BaseModel):
    user: str
    admin: bool
    accounts: bool


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                        headers=headers)


# Our exceptions and the status each answers with (first match wins: subclasses before their bases).
_STATUS_OF: tuple[tuple[type[Exception], int, str], ...] = (
    (UnknownCollectionError, 404, "not_found"),
    (UnknownDocumentError, 404, "not_found"),
    (ConversationNotFoundError, 404, "not_found"),  # someone else's: the same answer as none at all
    (OriginalUnavailableError, 409, "original_unavailable"),
    (CollectionHiddenError, 404, "not_found"),  # the same answer as a collection that does not exist
    (ForbiddenError, 403, "forbidden"),
    (LoginThrottledError, 429, "rate_limited"),
    (QueueFullError, 429, "rate_limited"),
    (AuthenticationError, 401, "unauthorized"),
    (CollectionExistsError, 409, "conflict"),
    (CollectionLockedError, 409, "busy"),
    (InvalidCollectionNameError, 400, "invalid_request"),
    (UnsafeFileNameError, 400, "invalid_request"),
    (AccountError, 400, "invalid_request"),
    (StoreError, 409, "index_unusable"),
    (GenerationError, 503, "generator_unavailable"),
    (ModelError, 503, "generator_unavailable"),
    (ValueError, 400, "invalid_request"),
    (KbError, 400, "invalid_request"),
)


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="kbqa", version="1",
        # Swagger UI and ReDoc load their scripts from a public CDN: nothing may be fetched from outside the
        # server (air-gapped sites). The schema itself stays at /openapi.json.
        docs_url=None, redoc_url=None,
        summary="Answers from your documents with checkable citations; OpenAI-compatible chat.",
        description="`model` names a collection. Answers carry their citations in the extra field `kb`. "
                    "With accounts on, send `Authorization: Bearer <API key or session token>`.",
    )
    app.state.service = service
    app.include_router(routes_chat.router)
    app.include_router(routes_collections.router)
    app.include_router(routes_documents.router)
    app.include_router(routes_conversations.router)
    upload_limit = service.settings.max_upload_mb * 1024 * 1024

    @app.middleware("http")
    async def limit_upload_size(request: Request, call_next):
        if request.method == "POST" and request.url.path.endswith("/documents"):
            length = request.headers.get("content-length")
            if length is None:
                return _error(411, "send the upload with a Content-Length", "length_required")
            if not length.isdigit() or int(length) > upload_limit:
                return _error(413, f"the upload is larger than the limit of {service.settings.max_upload_mb} MB "
                                   "(KB_MAX_UPLOAD_MB)", "too_large")
        return await call_next(request)

    # Starlette's class, not FastAPI's subclass: unknown routes (404) and wrong methods (405) raise it too.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
                413: "too_large"}
        return _error(exc.status_code, str(exc.detail), kind.get(exc.status_code, "invalid_request"),
                      getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()) if part != 'body') or 'body'}: {error.get('msg')}"
            for error in exc.errors()[:5])
        return _error(400, f"invalid request: {problems}", "invalid_request")

    @app.exception_handler(KbError)
    @app.exception_handler(ValueError)
    async def known_error(request: Request, exc: Exception) -> JSONResponse:
        for kind, status, label in _STATUS_OF:
            if isinstance(exc, kind):
                headers = {"Retry-After": f"{exc.retry_after:.0f}"} if isinstance(exc, LoginThrottledError) else None
                return _error(status, str(exc), label, headers)
        return _error(400, str(exc), "invalid_request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details", "internal_error")

    @app.get("/healthz", tags=["service"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/auth/login", response_model=Session, tags=["accounts"],
              summary="A session token for a user name and password (rate-limited)")
    def login(body: Login, request: Request, service: ServiceDep) -> Session:
        if not service.accounts.enabled():
            raise HTTPException(404, "accounts are off: no login needed on this server")
        # The web UI names the browser it forwards for, with the front key; anyone else counts as its connection.
        client = forwarded_client(request.headers.get("x-kb-front-key"), request.headers.get("x-kb-client"),
                                  service.front_key) or \
            client_address(request.client.host if request.client else None,
                           request.headers.getlist("x-forwarded-for"), service.settings.trusted_proxies)
        caller, token = service.accounts.login(body.username, body.password, client=client)
        return Session(token=token, user=caller.name, admin=caller.admin)

    @app.post("/v1/auth/logout", status_code=204, tags=["accounts"])
    def logout(request: Request, service: ServiceDep, caller: CallerDep) -> None:
        token = request.headers.get("authorization", "")[7:].strip()
        if token.startswith("kbs_"):
            service.accounts.logout(token)

    @app.get("/v1/auth/me", response_model=Me, tags=["accounts"])
    def me(service: ServiceDep, caller: CallerDep) -> Me:
        return Me(user=caller.name, admin=caller.admin, accounts=service.accounts.enabled())

    return app


def build_service(settings: Settings, pipeline: Pipeline | None = None) -> Service:
    pipeline = pipeline or Pipeline.from_settings(settings)
    library = Library(pipeline)
    # Stored in the home: a restart runs again the jobs that were queued or running (team.jobs).
    jobs = IngestJobs(run=library.run_job, store=settings.home / JOBS_FILE)
    return Service(settings=settings, library=library, jobs=jobs,
                   accounts=Accounts(settings.home, audit_questions=settings.audit_questions),
                   conversations=Conversations(settings.home),
                   front_key=ensure_front_key(settings.home))


JOBS_FILE = "jobs.sqlite3"
KEEP_ALIVE_S = 75  # longer than the idle timeout of common load balancers (60 s), as servers behind them need


def serve(settings: Settings) -> None:
    """Run the service until interrupted (``kb serve``)."""
    import uvicorn

    accounts = Accounts(settings.home, audit_questions=settings.audit_questions)
    check_bind(settings.serve_host, accounts.enabled())  # before loading any model
    service = build_service(settings)
    service.library.base.warm_up()
    # proxy_headers off: uvicorn would take X-Forwarded-For from any loopback client as the client's address;
    # the login route reads it itself, from the proxies KB_TRUSTED_PROXIES names only.
    # timeout_keep_alive: uvicorn closes an idle keep-alive connection after 5 s, and a client polling a job
    # every few seconds on a busy machine then sends its next request into a connection the server is closing
    # ("Connection reset by peer"). Proxies and clients keep connections for a minute or more; so does this.
    uvicorn.run(create_app(service), host=settings.serve_host, port=settings.serve_port, log_level="info",
                timeout_graceful_shutdown=5, timeout_keep_alive=KEEP_ALIVE_S, proxy_headers=False)
