"""The OpenAI chat-completions wire format: requests in, our answers out, with citations in an extra field.

``model`` names the collection. The last message is the question (it must be the
user's); earlier user/assistant pairs are the conversation, so a follow-up
("and its weight?") is understood as in the UI. System messages are accepted and
not used: the prompt is ours, built around the numbered passages.

Every response carries the checked answer in the extra field ``kb`` (documented
in the OpenAPI schema as ``KbAnswer``)::

    {"id": "chatcmpl-…", "object": "chat.completion", "model": "handbook",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "… 8501 [1]."}, "finish_reason": "stop"}],
     "kb": {"text": "… 8501 [1].", "abstained": false, "supported": true,
            "citations": [{"number": 1, "source": "guide.md", "page": null, "section": "Setup",
                           "location": "guide.md › Setup", "passage": "…", "supported_spans": [[0, 42]], …}],
            "sentences": [{"text": "… 8501 [1].", "citations": [1], "supported": true, …}], …}}

Streamed, the text comes as ``delta.content`` pieces; chunks with an empty delta
and ``kb.queue_position`` tell a waiting client how many questions are ahead of
it; the last chunk (``finish_reason: "stop"``) carries the whole ``kb`` field.
The streamed text is the draft: citation checking may change it or withdraw it,
so a client shows ``kb.text`` once the stream ends.

Deliberately not here: routing, authentication, running the pipeline (``server.app``).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.pages import page_spans
from app.pipeline import Answer, AskTimings, Citation, Turn
from server.routes_documents import page_url

MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id could not be looked up


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    """OpenAI's request; fields we do not use (temperature, n, tools …) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(description="The collection to answer from (GET /v1/models lists them).")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation; the last one is the question.")
    stream: bool = False
    user: str | None = Field(None, description="Who asks, for the fair queue when accounts are off.")
    documents: list[str] | None = Field(None, description="kbqa extension: search only these documents (sources as listed).")
    conversation: Annotated[int, Field(ge=1, le=MAX_ID)] | Literal["new"] | None = Field(
        None, description="kbqa extension: save the question and its checked answer as a turn of this saved "
        "conversation of yours (in this collection), or of a new one titled with the question ('new'); "
        "kb.conversation_id and kb.turn_id then say where. The messages still carry the conversation's history.")


class SupportedSentence(BaseModel):
    text: str
    start_char: int
    end_char: int
    citations: list[int]
    supported: bool
    score: float
    checked: bool


class WithdrawnSentence(BaseModel):
    text: str
    because: str = Field(description="Why it was removed: the facts it states that no passage holds, or the other period "
                                     "its passage is about.")
    missing: list[str] = Field(description="The figures, dates, names it states that no passage holds, as written.")


class CitedPassage(BaseModel):
    number: int
    source: str
    page: int | None
    section: str | None = Field(description="The Markdown headings above the passage, outermost first, joined by ' › '.")
    location: str = Field(description="File and page or section, as the UI shows it.")
    document: str = Field(description="What the document is: title, organisation, period.")
    passage: str
    supported_spans: list[tuple[int, int]] = Field(description="Character spans of the passage that support the answer.")
    ocr: bool
    score: float
    start_char: int = Field(0, description="Where the passage starts in its page's text (PDF) or its file's text.")
    end_char: int = Field(0, description="Where it ends.")
    page_spans: list[tuple[int, int]] = Field(default_factory=list, description="The supported spans as offsets into "
                                              "the page's text, as the page route takes them.")
    page_url: str | None = Field(None, description="The cited PDF page drawn with the supporting words highlighted "
                                                   "(GET, same credentials); null for text documents.")


class KbAnswer(BaseModel):
    """The checked answer: what a client shows once the stream has ended."""

    text: str
    abstained: bool = Field(description="The documents do not cover the question; the text says so.")
    supported: bool = Field(description="True only when every checkable sentence shown is supported by a passage it cites.")
    citations: list[CitedPassage] = Field(description="The passages the text cites as [n].")
    closest_passages: list[CitedPassage] = Field(description="When abstained, or when the text cites nothing: the "
                                                             "passages that came closest.")
    sentences: list[SupportedSentence]
    withdrawn_draft: str | None = Field(None, description="A generated answer the check withdrew, for the user to judge.")
    withdrawn: list[WithdrawnSentence] = Field(default_factory=list, description="Sentences removed from the text "
                                               "because no passage holds what they state.")
    queue_position: int = Field(0, description="Most questions that were ahead of this one while it waited.")
    first_token_ms: float | None = None
    total_ms: float | None = None
    conversation_id: int | None = Field(None, description="The saved conversation this answer was added to, when the "
                                        "request asked for it ('conversation').")
    turn_id: int | None = Field(None, description="The saved turn (rate it at /v1/conversations/{id}/turns/{turn_id}/rating).")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"


class ChatCompletionResponse(BaseModel):
    """What a non-streamed request gets (documentation: the route builds the same shape in ``Completion.whole``)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: dict[str, int] | None = None
    kb: KbAnswer


def question_and_history(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """The last user message and the user/assistant pairs before it; ValueError when there is no question."""
    spoken = [message for message in messages if message.role in ("user", "assistant")]
    if not spoken or spoken[-1].role != "user":
        raise ValueError("the last message must be the user's question")
    question = spoken[-1].text.strip()
    if not question:
        raise ValueError("the question (the last user message) is empty")
    history, pending = [], None
    for message in spoken[:-1]:
        if message.role == "user":
            pending = message.text
        elif pending is not None:
            history.append(Turn(pending, message.text))
            pending = None
    return question, history


def cited_passage(answer: Answer, citation: Citation, collection: str) -> CitedPassage:
    spans = list(answer.supported_spans(citation.number))
    on_page = list(page_spans(citation, spans))
    return CitedPassage(
        number=citation.number, source=citation.source, page=citation.page,
        section=" › ".join(citation.heading_path) or None, location=citation.location, document=citation.document,
        passage=citation.passage, supported_spans=spans, ocr=citation.ocr,
        score=round(citation.score, 4), start_char=citation.start_char, end_char=citation.end_char,
        page_spans=on_page, page_url=page_url(collection, citation, on_page),
    )


def kb_answer(answer: Answer, timings: AskTimings | None, queue_position: int, collection: str) -> KbAnswer:
    return KbAnswer(
        text=answer.text, abstained=answer.abstained, supported=answer.supported,
        citations=[cited_passage(answer, citation, collection) for citation in answer.citations],
        closest_passages=[cited_passage(answer, citation, collection) for citation in answer.sources]
        if answer.abstained or not answer.citations else [],
        sentences=[SupportedSentence(text=s.text, start_char=s.start_char, end_char=s.end_char,
                                     citations=list(s.citations), supported=s.supported, score=round(s.score, 4),
                                     checked=s.checked) for s in answer.sentences],
        withdrawn_draft=answer.withdrawn_draft, queue_position=queue_position,
        withdrawn=[WithdrawnSentence(text=s.text, because=s.withdrawn_because, missing=list(s.missing))
                   for s in answer.withdrawn],
        first_token_ms=round(timings.first_token_ms, 1) if timings else None,
        total_ms=round(timings.total_ms, 1) if timings else None,
    )


class Completion:
    """The ids and timestamps one completion's chunks share."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def whole(self, answer: KbAnswer, timings: AskTimings | None) -> dict[str, Any]:
        usage = {"prompt_tokens": timings.prompt_tokens, "completion_tokens": timings.generated_pieces,
                 "total_tokens": timings.prompt_tokens + timings.generated_pieces} if timings else None
        return {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}],
            "usage": usage, "kb": answer.model_dump(),
        }

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None,
              kb: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        if kb is not None:
            body["kb"] = kb
        return body
