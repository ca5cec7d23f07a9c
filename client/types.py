"""What the service's client returns: small frozen dataclasses, built from the API's JSON in one place.

The web UI draws these; it never sees JSON or HTTP. They mirror the API's
wire models (``server.openai_compat``, ``server.routes_*``) field for field
where the UI needs the field, and leave out the rest (timings, per-hit scores).

Deliberately not here: HTTP (``client.service``), drawing (``ui``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import KbError


class ServiceError(KbError):
    """The service answered with an error: its message, HTTP status and kind (``{"error": {...}}``)."""

    def __init__(self, message: str, status: int = 0, kind: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class ServiceUnavailableError(ServiceError):
    """Nothing answers at the service's address (not started, or restarting)."""


class NotLoggedInError(ServiceError):
    """The service wants a login (401): no session, or it ended or was revoked."""


@dataclass(frozen=True)
class Session:
    token: str
    user: str
    admin: bool


@dataclass(frozen=True)
class Me:
    user: str
    admin: bool
    accounts: bool  # False: the service has no accounts; the one local user may do everything


@dataclass(frozen=True)
class CollectionAccess:
    name: str
    access: str  # "read" or "write"

    @property
    def writable(self) -> bool:
        return self.access == "write"


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    access: str
    documents: int
    chunks: int
    embedder: str
    embedder_runs_on: str
    reranker: str
    generator: str
    generator_runs_on: str
    generator_notice: str | None
    accepts: tuple[str, ...]  # file types an upload may hold: (".pdf", ".md", …)
    exists: bool = True  # False: the configured collection before its first document


@dataclass(frozen=True)
class DocumentInfo:
    source: str
    title: str
    description: str
    pages: int
    chunks: int
    ocr_pages: int
    failure: str | None  # set: its last ingest could not use it, and why
    organisation: str = ""
    period: str = ""


@dataclass(frozen=True)
class FileProblem:
    source: str
    reason: str


@dataclass(frozen=True)
class JobState:
    id: str
    collection: str
    status: str  # queued, running, done, failed, cancelled
    files_done: int
    files_total: int
    current: str | None
    failures: tuple[FileProblem, ...]
    error: str | None
    summary: str | None
    added: tuple[str, ...] = ()  # done: files indexed for the first time
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    collection_chunks: int | None = None  # done: what the collection holds now
    warnings: tuple[FileProblem, ...] = ()  # done: files indexed with a problem (pages OCR could not read)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")


@dataclass(frozen=True)
class CitedPassage:
    number: int
    source: str
    page: int | None
    section: str | None
    location: str
    document: str
    passage: str
    supported_spans: tuple[tuple[int, int], ...]  # offsets into ``passage``
    ocr: bool
    score: float
    start_char: int  # where the passage lies in its page's text (PDF) or its file's text
    end_char: int
    page_spans: tuple[tuple[int, int], ...]  # the supported spans as offsets into the page's text

    @property
    def label(self) -> str:
        """The location and, when known, what the document is: "q2.pdf, page 4 (Apple Inc. · …)"."""
        return f"{self.location} ({self.document})" if self.document else self.location


@dataclass(frozen=True)
class CheckedSentence:
    text: str
    start_char: int  # offsets into the answer's text
    end_char: int
    citations: tuple[int, ...]
    supported: bool
    checked: bool

    @property
    def flagged(self) -> bool:
        """A claim no passage was found to support."""
        return self.checked and not self.supported


@dataclass(frozen=True)
class WithdrawnSentence:
    text: str
    because: str


@dataclass(frozen=True)
class CheckedAnswer:
    """The answer as the service checked it: what is shown once the stream has ended."""

    text: str
    abstained: bool
    supported: bool
    citations: tuple[CitedPassage, ...]
    closest_passages: tuple[CitedPassage, ...]  # when abstained or citing nothing
    sentences: tuple[CheckedSentence, ...]
    withdrawn_draft: str | None
    withdrawn: tuple[WithdrawnSentence, ...]
    queue_position: int = 0
    conversation_id: int | None = None  # where the service saved it, when asked to
    turn_id: int | None = None

    @property
    def unsupported_sentences(self) -> tuple[CheckedSentence, ...]:
        return tuple(s for s in self.sentences if s.flagged)

    def supported_spans(self, number: int) -> tuple[tuple[int, int], ...]:
        cited = next((c for c in self.citations if c.number == number), None)
        return cited.supported_spans if cited else ()


@dataclass(frozen=True)
class QueueUpdate:
    """The question waits: ``ahead`` questions will be answered before it."""

    ahead: int


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    collection: str
    title: str
    created: float
    updated: float


@dataclass(frozen=True)
class SavedTurn:
    id: int
    question: str
    answer: CheckedAnswer
    rating: int | None
    note: str


@dataclass(frozen=True)
class Conversation:
    summary: ConversationSummary
    turns: tuple[SavedTurn, ...]


@dataclass(frozen=True)
class PageImage:
    png: bytes
    page_count: int
    highlighted: bool  # the supporting words were found on the page and drawn strongly
    note: str


@dataclass(frozen=True)
class Section:
    source: str
    heading_path: tuple[str, ...]
    text: str
    passage_start: int
    passage_end: int


@dataclass(frozen=True)
class DocumentPassage:
    page: int | None
    heading_path: tuple[str, ...]
    text: str
    ocr: bool
    boxes: int  # how many boxes place it on its page (0 for text documents)


# ----- from the API's JSON -------------------------------------------------------------------------

def _spans(rows: Any) -> tuple[tuple[int, int], ...]:
    return tuple((int(start), int(end)) for start, end in rows or ())


def cited_passage(row: Mapping[str, Any]) -> CitedPassage:
    return CitedPassage(
        number=row["number"], source=row["source"], page=row.get("page"), section=row.get("section"),
        location=row.get("location") or row["source"], document=row.get("document") or "", passage=row["passage"],
        supported_spans=_spans(row.get("supported_spans")), ocr=bool(row.get("ocr")), score=float(row.get("score", 0)),
        start_char=int(row.get("start_char", 0)), end_char=int(row.get("end_char", 0)),
        page_spans=_spans(row.get("page_spans")))


def checked_answer(row: Mapping[str, Any]) -> CheckedAnswer:
    return CheckedAnswer(
        text=row["text"], abstained=bool(row["abstained"]), supported=bool(row["supported"]),
        citations=tuple(cited_passage(c) for c in row.get("citations") or ()),
        closest_passages=tuple(cited_passage(c) for c in row.get("closest_passages") or ()),
        sentences=tuple(CheckedSentence(text=s["text"], start_char=s["start_char"], end_char=s["end_char"],
                                        citations=tuple(s.get("citations") or ()), supported=bool(s["supported"]),
                                        checked=bool(s.get("checked", True))) for s in row.get("sentences") or ()),
        withdrawn_draft=row.get("withdrawn_draft"),
        withdrawn=tuple(WithdrawnSentence(w["text"], w.get("because", "")) for w in row.get("withdrawn") or ()),
        queue_position=int(row.get("queue_position") or 0), conversation_id=row.get("conversation_id"),
        turn_id=row.get("turn_id"))


def job_state(row: Mapping[str, Any]) -> JobState:
    return JobState(
        id=row["id"], collection=row["collection"], status=row["status"], files_done=row["files_done"],
        files_total=row["files_total"], current=row.get("current"),
        failures=tuple(FileProblem(f["source"], f["reason"]) for f in row.get("failures") or ()),
        error=row.get("error"), summary=row.get("summary"), added=tuple(row.get("added") or ()),
        updated=tuple(row.get("updated") or ()), unchanged=tuple(row.get("unchanged") or ()),
        collection_chunks=row.get("collection_chunks"),
        warnings=tuple(FileProblem(w["source"], w["reason"]) for w in row.get("warnings") or ()))


def conversation_summary(row: Mapping[str, Any]) -> ConversationSummary:
    return ConversationSummary(id=row["id"], collection=row["collection"], title=row["title"],
                               created=float(row["created"]), updated=float(row["updated"]))


def saved_turn(row: Mapping[str, Any]) -> SavedTurn:
    return SavedTurn(id=row["id"], question=row["question"], answer=checked_answer(row["answer"]),
                     rating=row.get("rating"), note=row.get("note") or "")
