"""Saved conversations over HTTP: list, read, rename, delete, rate a turn, export.

The store is ``team.conversations`` (one per home, every call keyed by the
user), so a client of the service, the web UI included, sees exactly the
conversations the UI saved itself. A chat completion saves its turn through
``TurnSaver`` when its request names a ``conversation`` (``server.routes_chat``).

Nobody sees another's conversation, and nobody keeps one whose collection they
may no longer read: both answer 404 with the words an unknown id gets, so an id
tells nothing about whether it exists (``ConversationNotFoundError``, mapped in
``server.app``).

Deliberately not here: starting a conversation without a question (one is made
by asking into ``"new"``), the conversation's history for the model (the chat
request's messages carry it, as for any OpenAI client), ratings of all users
(``kb feedback export``), the audit log (one's own conversations are no team event).
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field, StringConstraints

from app.pipeline import Answer
from server.deps import CallerDep, Service, ServiceDep
from server.openai_compat import MAX_ID, KbAnswer, kb_answer
from team.conversations import ConversationNotFoundError, ConversationSummary, Conversations, SavedTurn
from team.permissions import Action, Caller

router = APIRouter(prefix="/v1", tags=["conversations"])

# Bounded: a larger number could not even be looked up (SQLite integers), and must be a 4xx, not a crash.
ConversationId = Annotated[int, Path(ge=1, le=MAX_ID, description="The conversation's id.")]
TurnId = Annotated[int, Path(ge=1, le=MAX_ID, description="The turn's id (kb.turn_id when it was saved).")]


class ConversationOut(BaseModel):
    id: int
    collection: str
    title: str
    created: float = Field(description="Unix time.")
    updated: float = Field(description="Unix time of the last turn (or of creation).")


class TurnOut(BaseModel):
    id: int
    question: str
    answer: KbAnswer = Field(description="The checked answer as it was shown, citations included.")
    rating: int | None = Field(description="+1 thumbs up, -1 thumbs down, null unrated.")
    note: str
    created: float


class ConversationDetail(ConversationOut):
    turns: list[TurnOut] = Field(description="Oldest first.")


class Rename(BaseModel):
    # Stripped first: a title of spaces only is no title. The store keeps the first 120 characters.
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Rating(BaseModel):
    rating: Literal[1, -1] | None = Field(description="+1 thumbs up, -1 thumbs down, null to take the rating back.")
    note: str = Field("", max_length=2000, description="What was right or wrong (a later regression set reads it).")


def _summary(service: Service, caller: Caller, conversation: int) -> ConversationSummary:
    """The caller's conversation, if they may still read its collection; else the words an unknown id gets."""
    summary = service.conversations.get(caller.name, conversation)
    if not caller.may(Action.READ, summary.collection):  # a grant revoked since: the conversation goes with it
        raise ConversationNotFoundError(f"no conversation {conversation}")
    return summary


def _out(summary: ConversationSummary) -> ConversationOut:
    return ConversationOut(id=summary.id, collection=summary.collection, title=summary.title,
                           created=summary.created, updated=summary.updated)


def _turn_out(turn: SavedTurn, summary: ConversationSummary) -> TurnOut:
    answer = kb_answer(turn.answer, None, 0, summary.collection)
    answer.conversation_id, answer.turn_id = summary.id, turn.id
    return TurnOut(id=turn.id, question=turn.question, answer=answer, rating=turn.rating, note=turn.note,
                   created=turn.created)


@router.get("/conversations", response_model=list[ConversationOut],
            summary="Your saved conversations, the most recently continued first")
def list_conversations(service: ServiceDep, caller: CallerDep,
                       collection: Annotated[str | None, Query(description="Only this collection's.")] = None,
                       ) -> list[ConversationOut]:
    # A collection the caller may not read lists nothing, exactly like one without conversations.
    return [_out(summary) for summary in service.conversations.list(caller.name, collection)
            if caller.may(Action.READ, summary.collection)]


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail,
            summary="A saved conversation with its turns")
def get_conversation(conversation_id: ConversationId, service: ServiceDep, caller: CallerDep) -> ConversationDetail:
    summary = _summary(service, caller, conversation_id)
    turns = [_turn_out(turn, summary) for turn in service.conversations.turns(caller.name, conversation_id)]
    return ConversationDetail(**_out(summary).model_dump(), turns=turns)


@router.patch("/conversations/{conversation_id}", response_model=ConversationOut, summary="Rename a conversation")
def rename_conversation(conversation_id: ConversationId, body: Rename, service: ServiceDep,
                        caller: CallerDep) -> ConversationOut:
    _summary(service, caller, conversation_id)
    service.conversations.rename(caller.name, conversation_id, body.title)
    return _out(service.conversations.get(caller.name, conversation_id))


@router.delete("/conversations/{conversation_id}", status_code=204, summary="Delete a conversation and its turns")
def delete_conversation(conversation_id: ConversationId, service: ServiceDep, caller: CallerDep) -> Response:
    _summary(service, caller, conversation_id)
    service.conversations.delete(caller.name, conversation_id)
    return Response(status_code=204)


@router.put("/conversations/{conversation_id}/turns/{turn_id}/rating", response_model=TurnOut,
            summary="Rate an answer: thumbs up or down, with an optional note")
def rate_turn(conversation_id: ConversationId, turn_id: TurnId, body: Rating, service: ServiceDep,
              caller: CallerDep) -> TurnOut:
    summary = _summary(service, caller, conversation_id)
    # The path names a conversation: the turn must be one of its (the store checks, as it rates).
    service.conversations.rate(caller.name, turn_id, body.rating, body.note, conversation=conversation_id)
    rated = next(turn for turn in service.conversations.turns(caller.name, conversation_id) if turn.id == turn_id)
    return _turn_out(rated, summary)


_EXPORTS = {"markdown": ("md", "text/markdown"), "json": ("json", "application/json")}


@router.get("/conversations/{conversation_id}/export", summary="A conversation as a Markdown or JSON file",
            responses={200: {"content": {"text/markdown": {}, "application/json": {}}}})
def export_conversation(conversation_id: ConversationId, service: ServiceDep, caller: CallerDep,
                        kind: Annotated[Literal["markdown", "json"], Query(alias="format")] = "markdown") -> Response:
    summary = _summary(service, caller, conversation_id)
    store = service.conversations
    text = store.export_markdown(caller.name, conversation_id) if kind == "markdown" else \
        store.export_json(caller.name, conversation_id)
    extension, media_type = _EXPORTS[kind]
    return Response(text, media_type=media_type,
                    headers={"Content-Disposition": _attachment(summary.title, summary.id, extension)})


def _attachment(title: str, conversation: int, extension: str) -> str:
    """A download name made of the title's letters and digits only: no quote, slash or line break can get through.

    ``filename`` is the ASCII fallback every client reads; ``filename*`` (RFC 6266) keeps a Chinese title readable.
    """
    def stem(keep) -> str:
        cleaned = "".join(ch if keep(ch) else "-" for ch in title)
        return "-".join(part for part in cleaned.split("-") if part)[:60] or f"conversation-{conversation}"

    plain = stem(lambda ch: ch.isascii() and (ch.isalnum() or ch == "_"))
    wide = stem(lambda ch: ch.isalnum() or ch == "_")
    return f'attachment; filename="{plain}.{extension}"; filename*=UTF-8\'\'{quote(wide)}.{extension}'


class TurnSaver:
    """Where a chat completion's turn is saved (its request's ``conversation``), checked before answering.

    An id must name one of the caller's conversations in the collection asked, else 404 before any work is
    done; ``"new"`` makes the conversation only once there is an answer to save, so a client that leaves
    mid-stream leaves nothing behind.
    """

    def __init__(self, store: Conversations, caller: Caller, collection: str,
                 conversation: int | Literal["new"]) -> None:
        self.store, self.user, self.collection, self.conversation = store, caller.name, collection, conversation
        if conversation != "new" and store.get(self.user, conversation).collection != collection:
            raise ConversationNotFoundError(f"no conversation {conversation} in collection {collection!r}")

    def save(self, question: str, answer: Answer) -> tuple[int, int]:
        """(conversation id, turn id) of the turn saved."""
        conversation = self.store.create(self.user, self.collection, question) if self.conversation == "new" \
            else self.conversation
        return conversation, self.store.add_turn(self.user, conversation, question, answer)


def turn_saver(service: Service, caller: Caller, collection: str,
               conversation: int | Literal["new"] | None) -> TurnSaver | None:
    return None if conversation is None else TurnSaver(service.conversations, caller, collection, conversation)
