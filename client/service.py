"""A client of the service (``kb serve``) over HTTP: log in, list, upload, ask (streamed), page through sources.

The web UI is this client's one user today: it runs no model and keeps no index
of its own, so one process holds the models and one queue serves the UI and the
API alike (``app.turns``), and the service's audit log records what is done in
the UI. Every call returns a type of ``client.types``; every error the service
answers is a ``ServiceError`` with its message, status and kind.

Behaves as a robust client: a request that could not be sent (the connection was
refused or reset before the service read it) is tried again a few times, and so
is a read (GET) whose connection dropped; nothing that may have been done (a
question, an upload, a delete) is sent twice.

Worked example::

    service = ServiceClient("http://127.0.0.1:8000")
    session = service.login("carol", "…", client="203.0.113.7")
    carol = service.as_user(session.token)
    for event in carol.ask("handbook", "Which port does the UI use?", conversation="new"):
        ...  # QueueUpdate while waiting, str pieces of the draft, then the CheckedAnswer

Deliberately not here: the API's routes and checks (``server``), drawing (``ui``), admin routes (users, keys,
collections other than creating one), the OpenAI client's full surface.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal
from urllib.parse import quote

import httpx

from client.types import (CheckedAnswer, CollectionAccess, CollectionInfo, Conversation, ConversationSummary,
                          DocumentInfo, DocumentPassage, JobState, Me, NotLoggedInError, PageImage, QueueUpdate,
                          Section, ServiceError, ServiceUnavailableError, Session, checked_answer, conversation_summary,
                          job_state, saved_turn)

CONNECT_TRIES = 4  # a request that never reached the service, tried again after 0.5, 1, 2 s
ANSWER_WAIT_S = 1800.0  # longest silence while a question waits its turn or is generated (a busy CPU service)
CALL_TIMEOUT = httpx.Timeout(120.0, connect=10.0)  # uploads, pages; the service answers these without the model

AskEvent = QueueUpdate | str | CheckedAnswer


class ServiceClient:
    """One service, one caller (a session token, or none when the service has no accounts)."""

    def __init__(self, base_url: str, token: str | None = None, *, front_key: str | None = None,
                 http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._front_key = front_key
        self._http = http or httpx.Client(timeout=CALL_TIMEOUT)

    def as_user(self, token: str | None) -> ServiceClient:
        """The same service and connections, as the user of ``token``."""
        return ServiceClient(self.base_url, token, front_key=self._front_key, http=self._http)

    # ----- the service and who is calling ----------------------------------------------------------
    def healthy(self) -> bool:
        try:
            return self._http.get(f"{self.base_url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def login(self, user: str, password: str, client: str | None = None) -> Session:
        """A session token; ``client`` names the browser the login comes from, believed by the service only with
        its front key (``team.front_key``), so a user's failures elsewhere never slow their own browser."""
        headers = {}
        if client and self._front_key:
            headers = {"X-KB-Front-Key": self._front_key, "X-KB-Client": client}
        body = self._json("POST", "/v1/auth/login", json={"username": user, "password": password}, headers=headers)
        return Session(token=body["token"], user=body["user"], admin=bool(body["admin"]))

    def logout(self) -> None:
        if self.token:
            self._call("POST", "/v1/auth/logout")

    def me(self) -> Me:
        body = self._json("GET", "/v1/auth/me")
        return Me(user=body["user"], admin=bool(body["admin"]), accounts=bool(body["accounts"]))

    # ----- collections and documents --------------------------------------------------------------
    def collections(self) -> list[CollectionAccess]:
        return [CollectionAccess(row["name"], row["access"]) for row in self._json("GET", "/v1/collections")]

    def create_collection(self, name: str) -> None:
        self._call("POST", "/v1/collections", json={"name": name})

    def collection(self, name: str) -> CollectionInfo:
        row = self._json("GET", f"/v1/collections/{_part(name)}")
        return CollectionInfo(
            name=row["name"], access=row["access"], documents=row["documents"], chunks=row["chunks"],
            embedder=row["embedder"], embedder_runs_on=row.get("embedder_runs_on", ""),
            reranker=row.get("reranker", ""), generator=row.get("generator", ""),
            generator_runs_on=row.get("generator_runs_on", ""), generator_notice=row.get("generator_notice"),
            accepts=tuple(row.get("accepts") or ()))

    def documents(self, name: str) -> list[DocumentInfo]:
        return [DocumentInfo(**{key: row.get(key, "") for key in DocumentInfo.__dataclass_fields__})
                for row in self._json("GET", f"/v1/collections/{_part(name)}/documents")]

    def upload(self, name: str, files: Sequence[tuple[str, bytes]]) -> JobState:
        """Saves the files in the collection and returns the job indexing them (``job`` follows it)."""
        body = self._json("POST", f"/v1/collections/{_part(name)}/documents",
                          files=[("files", (file_name, data)) for file_name, data in files])
        return job_state(body)

    def job(self, job_id: str) -> JobState:
        return job_state(self._json("GET", f"/v1/jobs/{_part(job_id)}"))

    def delete_document(self, name: str, source: str) -> None:
        self._call("DELETE", f"/v1/collections/{_part(name)}/documents/{_path(source)}")

    # ----- questions --------------------------------------------------------------------------------
    def ask(self, collection: str, question: str, history: Sequence[tuple[str, str]] = (),
            documents: Sequence[str] = (), *, conversation: int | Literal["new"] | None = None,
            user: str | None = None) -> Iterator[AskEvent]:
        """The answer as it comes: ``QueueUpdate`` while the question waits, the draft's text pieces, then the
        checked answer (saved in ``conversation`` when given: an id of the caller's, or "new")."""
        messages: list[dict[str, str]] = []
        for asked, answered in history:
            messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
        messages.append({"role": "user", "content": question})
        body: dict[str, Any] = {"model": collection, "messages": messages, "stream": True}
        if documents:
            body["documents"] = list(documents)
        if conversation is not None:
            body["conversation"] = conversation
        if user:
            body["user"] = user
        timeout = httpx.Timeout(CALL_TIMEOUT.connect, read=ANSWER_WAIT_S, write=60.0, pool=60.0)
        request = self._http.build_request("POST", self._url("/v1/chat/completions"), json=body,
                                           headers=self._headers(), timeout=timeout)
        response = self._send(lambda: self._http.send(request, stream=True))
        try:
            if response.status_code >= 400:
                response.read()
                raise _error_of(response)
            ahead = int(response.headers.get("x-kb-queue-position") or 0)
            if ahead:
                yield QueueUpdate(ahead)
            try:
                yield from _events(response.iter_lines())
            except httpx.HTTPError as exc:  # the service went away mid-answer
                raise ServiceUnavailableError(f"the service stopped answering: {exc}", 503, "unavailable") from None
        finally:
            response.close()  # also when the reader stops early: the service then gives the turn to the next question

    # ----- conversations ----------------------------------------------------------------------------
    def conversations(self, collection: str) -> list[ConversationSummary]:
        return [conversation_summary(row) for row in
                self._json("GET", "/v1/conversations", params={"collection": collection})]

    def conversation(self, conversation_id: int) -> Conversation:
        row = self._json("GET", f"/v1/conversations/{conversation_id}")
        return Conversation(conversation_summary(row), tuple(saved_turn(turn) for turn in row.get("turns") or ()))

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self._call("PATCH", f"/v1/conversations/{conversation_id}", json={"title": title})

    def delete_conversation(self, conversation_id: int) -> None:
        self._call("DELETE", f"/v1/conversations/{conversation_id}")

    def rate(self, conversation_id: int, turn_id: int, rating: int | None, note: str = "") -> None:
        self._call("PUT", f"/v1/conversations/{conversation_id}/turns/{turn_id}/rating",
                   json={"rating": rating, "note": note})

    def export_conversation(self, conversation_id: int, form: Literal["markdown", "json"]) -> bytes:
        return self._call("GET", f"/v1/conversations/{conversation_id}/export", params={"format": form}).content

    # ----- what a citation points at ----------------------------------------------------------------
    def page(self, collection: str, source: str, page: int, *, spans: Sequence[tuple[int, int]] = (),
             passage: tuple[int, int] | None = None, width: int = 1000) -> PageImage:
        params: dict[str, Any] = {"width": width}
        if spans:
            params["spans"] = ",".join(f"{start}-{end}" for start, end in spans)
        if passage is not None and passage[1] > passage[0]:
            params["passage"] = f"{passage[0]}-{passage[1]}"
        response = self._call("GET", f"/v1/collections/{_part(collection)}/documents/{_path(source)}/pages/{page}",
                              params=params)
        return PageImage(png=response.content, page_count=int(response.headers.get("x-page-count") or page),
                         highlighted=_strong_boxes(response.headers.get("x-highlighted")) > 0,
                         note=response.headers.get("x-highlight-note", ""))

    def section(self, collection: str, source: str, start: int, end: int) -> Section:
        row = self._json("GET", f"/v1/collections/{_part(collection)}/documents/{_path(source)}/section",
                         params={"start": start, "end": end})
        return Section(source=row["source"], heading_path=tuple(row["heading_path"]), text=row["text"],
                       passage_start=row["passage_start"], passage_end=row["passage_end"])

    def passages(self, collection: str, source: str) -> list[DocumentPassage]:
        return [DocumentPassage(page=row["page"], heading_path=tuple(row["heading_path"]), text=row["text"],
                                ocr=bool(row["ocr"]), boxes=len(row.get("boxes") or ()))
                for row in self._json("GET", f"/v1/collections/{_part(collection)}/documents/{_path(source)}/passages")]

    def original(self, collection: str, source: str) -> bytes:
        """The original file as it was indexed (the download is recorded in the audit log)."""
        return self._call("GET", f"/v1/collections/{_part(collection)}/documents/{_path(source)}/file").content

    # ----- HTTP -----------------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return self.base_url + path

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _json(self, method: str, path: str, **options: Any) -> Any:
        return self._call(method, path, **options).json()

    def _call(self, method: str, path: str, *, headers: dict[str, str] | None = None, **options: Any) -> httpx.Response:
        response = self._send(lambda: self._http.request(method, self._url(path),
                                                         headers={**self._headers(), **(headers or {})}, **options),
                              read_only=method == "GET")
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    def _send(self, request, read_only: bool = False):
        """``request()``, tried again while the service could not have received it (or, for a read, whenever the
        connection failed); ServiceUnavailableError when it never answers."""
        for attempt in range(CONNECT_TRIES):
            try:
                return request()
            except httpx.ConnectError as exc:
                failure: Exception = exc
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if not read_only:
                    raise ServiceUnavailableError(f"the connection to the service broke: {exc}", 503,
                                                  "unavailable") from None
                failure = exc
            except httpx.TimeoutException as exc:
                raise ServiceUnavailableError(f"the service did not answer in time: {exc}", 504, "timeout") from None
            if attempt + 1 < CONNECT_TRIES:
                time.sleep(0.5 * 2 ** attempt)
        raise ServiceUnavailableError(f"the service at {self.base_url} does not answer ({failure})", 503, "unavailable")


def _events(lines: Iterator[str]) -> Iterator[AskEvent]:
    """The chat stream's server-sent events as our events (``server.openai_compat`` says what each chunk holds)."""
    for line in lines:
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            return
        chunk = json.loads(data)
        if "error" in chunk:
            problem = chunk["error"]
            raise ServiceError(problem.get("message", "the service could not answer"), int(problem.get("code") or 500),
                               problem.get("type", ""))
        kb = chunk.get("kb") or {}
        if "queue_position" in kb and "text" not in kb:
            yield QueueUpdate(int(kb["queue_position"]))
        for choice in chunk.get("choices") or ():
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                yield piece
        if "text" in kb:
            yield checked_answer(kb)


def _error_of(response: httpx.Response) -> ServiceError:
    try:
        problem = response.json()["error"]
        message, kind = str(problem["message"]), str(problem.get("type", ""))
    except (ValueError, KeyError, TypeError):
        message, kind = response.text[:300] or response.reason_phrase, ""
    error = NotLoggedInError if response.status_code == 401 else ServiceError
    return error(message, response.status_code, kind)


def _strong_boxes(header: str | None) -> int:
    """``X-Highlighted``: how many boxes were drawn strongly (the supporting words)."""
    return int(header) if header and header.isdigit() else 0


def _part(name: str) -> str:
    return quote(name, safe="")


def _path(source: str) -> str:
    """A document's source as the routes take it: folders kept as path segments, everything else quoted."""
    return quote(source, safe="/")
