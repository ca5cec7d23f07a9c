"""The OpenAI-compatible routes: chat completions (streamed or not), models, embeddings.

Each runs the same pipeline the CLI and the UI run (``app.pipeline`` through
``team.collections``). Routes are plain functions, so FastAPI runs them on its
thread pool: retrieval and generation block, the event loop must not. A
request naming a ``conversation`` has its turn saved once the checked answer is
whole, never earlier (``server.routes_conversations.TurnSaver``).

Deliberately not here: the wire format's details (``server.openai_compat``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import anyio
import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from team.permissions import LOCAL_CALLER, Action, Caller
from app.pipeline import AnswerStream, KbError, QueuePosition
from team.conversations import ConversationNotFoundError
from server.deps import CallerDep, ServiceDep, readable
from server.routes_conversations import TurnSaver, turn_saver
from server.openai_compat import (ChatCompletionRequest, ChatCompletionResponse, Completion, KbAnswer, kb_answer,
                                  question_and_history)

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

MAX_EMBEDDING_INPUTS = 256
MAX_EMBEDDING_CHARS = 20_000


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "kbqa"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


@router.get("/models", response_model=ModelList, summary="The collections the caller may read, as models")
def list_models(service: ServiceDep, caller: CallerDep) -> ModelList:
    return ModelList(data=[Model(id=name) for name in service.library.names() if caller.may(Action.READ, name)])


def _requester(caller: Caller, request: ChatCompletionRequest, http: Request) -> str:
    if caller is not LOCAL_CALLER:  # accounts on: the user, whichever key they use
        return caller.requester
    # Without accounts everybody is "local": the request's ``user`` or the client address keeps the queue fair.
    return f"user:{request.user}" if request.user else f"client:{http.client.host if http.client else '?'}"


@router.post(
    "/chat/completions", summary="Answer from a collection (model = collection), with citations in 'kb'",
    responses={200: {"model": ChatCompletionResponse,
                     "description": "A chat.completion with the extra field 'kb' (KbAnswer); with stream=true, "
                     "server-sent chat.completion.chunk events, the last one carrying 'kb'. "
                     "Header X-KB-Queue-Position: questions ahead when this one joined the queue."}},
)
def chat_completions(body: ChatCompletionRequest, http: Request, service: ServiceDep, caller: CallerDep):
    question, history = question_and_history(body.messages)
    pipeline = readable(service, caller, body.model)
    saver = turn_saver(service, caller, body.model, body.conversation)  # a wrong conversation: 404 before any work
    requester = _requester(caller, body, http)
    ahead = pipeline.turns.waiting + (1 if pipeline.turns.busy else 0)
    detail = question if service.accounts.audit_questions else ""
    service.audit(caller, "ask", body.model, detail)
    stream = pipeline.ask_stream(question, history, body.documents or None, requester=requester)
    completion = Completion(body.model)
    headers = {"X-KB-Queue-Position": str(ahead)}
    if body.stream:
        return _ClosingStreamingResponse(_closing(_sse(stream, completion, question, saver)),
                                         media_type="text/event-stream",
                                         headers={**headers, "Cache-Control": "no-cache"})
    most_ahead = 0
    try:
        for event in stream.events():
            if isinstance(event, QueuePosition):
                most_ahead = max(most_ahead, event.ahead)
    finally:
        stream.close()
    assert stream.answer is not None
    answer = kb_answer(stream.answer, stream.timings, most_ahead, completion.model)
    if saver is not None:
        answer.conversation_id, answer.turn_id = saver.save(question, stream.answer)
    return JSONResponse(completion.whole(answer, stream.timings), headers=headers)


def _sse(stream: AnswerStream, completion: Completion, question: str, saver: TurnSaver | None) -> Iterator[str]:
    def event(payload: dict[str, Any]) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    yield event(completion.chunk({"role": "assistant", "content": ""}))
    most_ahead = 0
    try:
        for piece in stream.events():
            if isinstance(piece, QueuePosition):
                most_ahead = max(most_ahead, piece.ahead)
                yield event(completion.chunk({}, kb={"queue_position": piece.ahead}))
            elif piece:
                yield event(completion.chunk({"content": piece}))
    except KbError as exc:  # the status line is sent already: the error travels as the stream's last event
        yield event({"error": {"message": str(exc), "type": "generator_unavailable", "code": 503}})
        yield "data: [DONE]\n\n"
        return
    finally:
        stream.close()  # closed early (the client left): the generator's turn goes to the next question now
    assert stream.answer is not None
    final = kb_answer(stream.answer, stream.timings, most_ahead, completion.model)
    if saver is not None:  # only here, with the whole answer: a client that left mid-stream never gets this far
        try:
            final.conversation_id, final.turn_id = saver.save(question, stream.answer)
        except ConversationNotFoundError as exc:  # deleted while the answer was written
            yield event({"error": {"message": str(exc), "type": "not_found", "code": 404}})
            yield "data: [DONE]\n\n"
            return
    yield event(completion.chunk({}, finish_reason="stop", kb=final.model_dump()))
    yield "data: [DONE]\n\n"


class _ClosingStreamingResponse(StreamingResponse):
    """Closes its body however the response ends.

    When the client hangs up, Starlette cancels the task sending the body, which
    may be waiting in ``send`` rather than in the body's generator: the generator
    would then stay suspended, holding the generator's turn, until collected.
    """

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


async def _closing(events: Iterator[str]) -> AsyncIterator[str]:
    """The events, each produced on a worker thread; closed when the client goes away.

    Closing the generator closes the answer stream, which gives the generator's
    turn to the next question instead of leaving it held by a client that left.
    """
    done = object()
    try:
        while (item := await anyio.to_thread.run_sync(next, events, done)) is not done:
            yield item  # type: ignore[misc]
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(events.close)


class EmbeddingRequest(BaseModel):
    model: str = Field(description="The collection whose embedder to use.")
    input: str | list[str] = Field(description="One text or a list of texts.")
    input_type: Literal["query", "passage"] = Field(
        "passage", description="kbqa extension: e5 embeds questions ('query') and passages differently.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="'base64': little-endian float32 bytes, base64-encoded (what the openai client asks for).")


@router.post("/embeddings", summary="Vectors from a collection's embedder")
def embeddings(body: EmbeddingRequest, service: ServiceDep, caller: CallerDep) -> dict[str, Any]:
    pipeline = readable(service, caller, body.model)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_EMBEDDING_INPUTS:
        raise HTTPException(400, f"input must hold 1 to {MAX_EMBEDDING_INPUTS} texts")
    if any(len(text) > MAX_EMBEDDING_CHARS for text in texts):
        raise HTTPException(413, f"each input text may hold at most {MAX_EMBEDDING_CHARS} characters")
    embedder = pipeline.embedder
    if body.input_type == "query":
        vectors = [embedder.embed_query(text) for text in texts]
    else:
        vectors = list(embedder.embed_passages(texts))
    tokens = sum(embedder.count_tokens(text) for text in texts)
    return {
        "object": "list", "model": body.model,
        "data": [{"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)}
                 for i, vector in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }



def _encoded(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


__all__ = ["KbAnswer", "router"]
