"""Answer streams the pipeline builds besides the one generated from a single prompt.

- ``fixed_answer``: an answer the pipeline gives itself (the index is empty,
  nothing was found, the documents do not cover the question), without generating.
- ``answer_per_document``: a question across periods, or one asking which documents
  say something, each document asked alone (``llm.per_document``), the lines
  assembled into one answer (for a list: only the documents that state it, and how
  many were looked at); it waits for the generator's turn like any generation (``app.turns``).

``app.pipeline`` decides which one a question gets; nothing else calls these.

Deliberately not here: retrieval, abstention decisions, the single-prompt answer
(``Pipeline.ask_stream``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

from app.results import AnswerStream, AskTimings, QueuePosition, Retrieval, RetrievalTimings
from app.settings import Settings
from app.turns import GenerationTurns
from core.types import Answer, Question, Source
from text.documents import DocumentRecord
from llm.answer import citation_from_source
from llm.generator import Generator
from llm.per_document import not_stated, per_document_answer, quoted_line
from llm.prompt import PromptBuilder
from llm.refusals import NOT_IN_DOCUMENTS

PER_DOCUMENT_TOKENS = 96  # one sentence with a figure per document; the model's extras are cut anyway


def fixed_answer(
    stream: AnswerStream, question: Question, message: str, shown: Sequence[Source], started: float
) -> AnswerStream:
    """``stream`` answered with ``message`` and the passages ``shown`` as the closest ones."""
    stream.sources = tuple(shown)
    stream.answer = Answer(question=question.text, text=message, citations=(),
                           sources=tuple(citation_from_source(source) for source in shown), supported=False,
                           abstained=True)
    stream._pieces = iter([message])
    retrieval_timings = stream.retrieval.timings if stream.retrieval else RetrievalTimings(0.0, 0.0, 0.0)
    elapsed = (time.perf_counter() - started) * 1e3
    stream.timings = AskTimings(retrieval_timings, 0.0, elapsed, elapsed, 0, 0)
    return stream


NOT_IN_THIS_DOCUMENT = {
    "en": "not stated in this document.",
    "zh": "这份文档没有提到。",
}
NONE_OF_THEM = {
    "en": "(None of the {looked} documents looked at states it.)",
    "zh": "（查看的 {looked} 份文档都没有提到。）",
}
EACH_LOOKED_AT = {
    "en": "{looked} documents looked at, one line each:",
    "zh": "查看了 {looked} 份文档，每份一行：",
}
LOOKED_AT = {
    "en": "{kept} of the {looked} documents looked at state it:",
    "zh": "在查看的 {looked} 份文档中，有 {kept} 份提到：",
}


# Markdown heading attributes ("Form Models { #form-models }", as MkDocs sites write them) are no part of a title.
_HEADING_ANCHOR = re.compile(r"\s*\{\s*#[^{}]*\}\s*$")


def document_labels(sources: Sequence[Source], records: Mapping[str, DocumentRecord], dated: bool = False) -> list[str]:
    """What each source's document is called in a one-line-per-document answer: its period (or title), with its
    organisation when the documents are of several ("Amazon.com, Inc · quarter ended September 30, 2023");
    ``dated``: a title with its publication date ("招生简章 · 2018-01-02")."""
    shown = [records.get(source.hit.chunk.source) for source in sources]
    several = len({record.organisation for record in shown if record and record.organisation}) > 1
    labels = []
    for source, record in zip(sources, shown):
        if record is None:
            labels.append(source.hit.chunk.source)
            continue
        title = _HEADING_ANCHOR.sub("", record.title).strip() or record.title
        label = record.period_label or title
        if dated and not record.period_label and record.published:
            label = f"{title} · {record.published}"
        # "Amazon.com, Inc" without its final ".": a sentence end inside the label would split the line.
        labels.append(f"{record.organisation.rstrip('.')} · {label}" if several and record.organisation else label)
    return labels


def answer_per_document(
    stream: AnswerStream, question: Question, retrieval: Retrieval, builder: PromptBuilder, started: float, *,
    generator: Generator, records: Mapping[str, DocumentRecord], settings: Settings, turns: GenerationTurns,
    requester: str, check: Callable[[str, Sequence[Source]], Answer],
) -> AnswerStream:
    """One line per document of ``retrieval.context``, each labelled (``document_labels``).

    A question asking which documents say something (``Scope.lists``) keeps only the lines whose document
    states it (a supported sentence, not "not stated"), under a line saying how many documents were looked at.
    """
    listing = retrieval.scope.lists and not retrieval.scope.across
    sources = tuple(Source(number, hit, hit.chunk.text) for number, hit in enumerate(retrieval.context, start=1))
    stream.sources = sources
    labels = document_labels(sources, records, dated=listing)

    def pieces() -> Iterator[str | QueuePosition]:
        first_line_at = None
        lines: list[tuple[str, str]] = []  # each document's label and the model's sentence for it
        prompt_tokens = 0
        ticket = turns.join(requester)
        try:
            yield from (QueuePosition(ahead) for ahead in turns.positions_until_turn(ticket))
            asked = retrieval.per_document or question
            for line in per_document_answer(generator, builder, asked, sources, labels,
                                            min(settings.max_answer_tokens, PER_DOCUMENT_TOKENS), settings.temperature,
                                            listing=listing):
                first_line_at = first_line_at or time.perf_counter()
                prompt_tokens += line.prompt_tokens
                lines.append((line.label, line.text))
                yield ("\n" if len(lines) > 1 else "") + f"- {line.label}: {line.text}"
        finally:
            turns.leave(ticket)
        finished = time.perf_counter()
        stream.answer = checked_lines(question, lines, sources, check, listing)
        stream.timings = AskTimings(
            retrieval=retrieval.timings, prompt_ms=0.0,
            first_token_ms=((first_line_at or finished) - started) * 1e3, total_ms=(finished - started) * 1e3,
            generated_pieces=len(lines), prompt_tokens=prompt_tokens,
        )

    stream._pieces = pieces()
    return stream


def checked_lines(question: Question, lines: Sequence[tuple[str, str]], sources: Sequence[Source],
                  check: Callable[[str, Sequence[Source]], Answer], listing: bool) -> Answer:
    """The answer made of the model's one line per source (``lines``: label, sentence; in the sources' order).

    Each line is checked alone (the label is ours, not a claim of the model's). ``listing``: a question asking
    which documents say something; "not stated" of a document whose passage names what was asked becomes the
    passage's own sentence (``quoted_line``), and only the lines whose document states it are kept.
    Needs no model: ``benchmarks/replay_answers.py`` replays stored lines through it.
    """
    if listing:
        lines = [(label, (quoted_line(question, source, label) or text) if not_stated(text) else text)
                 for (label, text), source in zip(lines, sources)]
    checked = [(label, text, check(text, sources)) for label, text in lines]
    draft = "\n".join(f"- {label}: {text}" for label, text in lines)
    if listing:
        checked = [(label, text, answer) for label, text, answer in checked
                   if not not_stated(text) and not answer.abstained and any(s.supported for s in answer.sentences)]
    if not checked or all(answer.abstained for _, _, answer in checked):
        note = NONE_OF_THEM[question.language].format(looked=len(lines)) if listing else ""
        return Answer(question=question.text, text=f"{NOT_IN_DOCUMENTS[question.language]} {note}".strip(),
                      citations=(), sources=tuple(citation_from_source(source) for source in sources),
                      supported=False, abstained=True, withdrawn_draft=draft)
    header = (LOOKED_AT if listing else EACH_LOOKED_AT)[question.language].format(kept=len(checked), looked=len(lines))
    return one_line_each(question, header, checked, sources)


def one_line_each(question: Question, header: str | None, lines: Sequence[tuple[str, str, Answer]],
                  sources: Sequence[Source]) -> Answer:
    """The checked lines, "- label: sentence [n]" each, as one answer; a line whose sentence was declined
    says its document does not state it."""
    parts: list[str] = [header] if header else []
    sentences, withdrawn = [], []
    cited: dict[int, object] = {}
    position = len(header) + 1 if header else 0
    for label, _, answer in lines:
        prefix = f"- {label}: "
        body = NOT_IN_THIS_DOCUMENT[question.language] if answer.abstained else answer.text
        for sentence in answer.sentences if not answer.abstained else ():
            sentences.append(replace(sentence, start_char=sentence.start_char + position + len(prefix),
                                     end_char=sentence.end_char + position + len(prefix)))
        withdrawn += answer.withdrawn
        cited.update({c.number: c for c in answer.citations})
        parts.append(prefix + body)
        position += len(prefix + body) + 1
    checkable = [s for s in sentences if s.checked]
    return Answer(question=question.text, text="\n".join(parts), citations=tuple(cited[n] for n in sorted(cited)),
                  sources=tuple(citation_from_source(source) for source in sources),
                  supported=bool(cited) and bool(checkable) and all(s.supported for s in checkable),
                  sentences=tuple(sentences), withdrawn=tuple(withdrawn))
