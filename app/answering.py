"""Answer streams the pipeline builds besides the one generated from a single prompt.

- ``fixed_answer``: an answer the pipeline gives itself (the index is empty,
  nothing was found, the documents do not cover the question), without generating.
- ``answer_per_document``: a question across periods, each document asked alone
  (``llm.per_document``), the lines assembled into one answer; it waits for the
  generator's turn like any generation (``app.turns``).

``app.pipeline`` decides which one a question gets; nothing else calls these.

Deliberately not here: retrieval, abstention decisions, the single-prompt answer
(``Pipeline.ask_stream``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence

from app.results import AnswerStream, AskTimings, QueuePosition, Retrieval, RetrievalTimings
from app.settings import Settings
from app.turns import GenerationTurns
from core.types import Answer, Question, Source
from text.documents import DocumentRecord
from llm.answer import citation_from_source, make_answer
from llm.generator import Generator
from llm.per_document import per_document_answer
from llm.prompt import PromptBuilder

PER_DOCUMENT_TOKENS = 96  # one sentence with a figure per document; the model's extras are cut anyway


def fixed_answer(
    stream: AnswerStream, question: Question, message: str, shown: Sequence[Source], started: float
) -> AnswerStream:
    """``stream`` answered with ``message`` and the passages ``shown`` as the closest ones."""
    stream.answer = Answer(question=question.text, text=message, citations=(),
                           sources=tuple(citation_from_source(source) for source in shown), supported=False,
                           abstained=True)
    stream._pieces = iter([message])
    retrieval_timings = stream.retrieval.timings if stream.retrieval else RetrievalTimings(0.0, 0.0, 0.0)
    elapsed = (time.perf_counter() - started) * 1e3
    stream.timings = AskTimings(retrieval_timings, 0.0, elapsed, elapsed, 0, 0)
    return stream


def answer_per_document(
    stream: AnswerStream, question: Question, retrieval: Retrieval, builder: PromptBuilder, started: float, *,
    generator: Generator, records: Mapping[str, DocumentRecord], settings: Settings, turns: GenerationTurns,
    requester: str,
) -> AnswerStream:
    """One line per document of ``retrieval.context``, labelled by its period (or title), and by its
    organisation when the documents are of several ("Amazon.com, Inc. · quarter ended September 30, 2023")."""
    sources = tuple(Source(number, hit, hit.chunk.text) for number, hit in enumerate(retrieval.context, start=1))
    shown = [records.get(source.hit.chunk.source) for source in sources]
    several = len({record.organisation for record in shown if record and record.organisation}) > 1
    labels = []
    for source, record in zip(sources, shown):
        label = (record.period_label or record.title) if record else source.hit.chunk.source
        # "Amazon.com, Inc" without its final ".": a sentence end inside the label would split the line.
        labels.append(f"{record.organisation.rstrip('.')} · {label}" if several and record and record.organisation
                      else label)

    def pieces() -> Iterator[str | QueuePosition]:
        first_line_at = None
        lines: list[str] = []
        prompt_tokens = 0
        ticket = turns.join(requester)
        try:
            yield from (QueuePosition(ahead) for ahead in turns.positions_until_turn(ticket))
            asked = retrieval.per_document or question
            for line in per_document_answer(generator, builder, asked, sources, labels,
                                            min(settings.max_answer_tokens, PER_DOCUMENT_TOKENS), settings.temperature):
                first_line_at = first_line_at or time.perf_counter()
                prompt_tokens += line.prompt_tokens
                text = f"- {line.label}: {line.text}"
                lines.append(text)
                yield ("\n" if len(lines) > 1 else "") + text
        finally:
            turns.leave(ticket)
        finished = time.perf_counter()
        stream.answer = make_answer(question, "\n".join(lines), sources)
        stream.timings = AskTimings(
            retrieval=retrieval.timings, prompt_ms=0.0,
            first_token_ms=((first_line_at or finished) - started) * 1e3, total_ms=(finished - started) * 1e3,
            generated_pieces=len(lines), prompt_tokens=prompt_tokens,
        )

    stream._pieces = pieces()
    return stream
