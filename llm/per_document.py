"""Questions across documents ("how have net sales changed over the quarters?"), asked one document at a time.

Given one passage per period in a single prompt, the default 1.5B model summed
them up ("net sales have increased over time [1][2][3]") without one figure.
Asked about one document at a time, with that document named, it copies the
figure. So ``per_document_answer`` asks the model once per source, in the
sources' order (the pipeline orders them by date), and assembles a list::

    - quarter ended December 31, 2022: Apple's total net sales were $117,154 million [1].
    - quarter ended April 1, 2023: Apple's total net sales were $94,836 million [2].

Each line's [1] is renumbered to the source's number in the whole answer, so the
citation check (``llm.answer.make_answer``) sees one answer over all sources.
It costs one prompt per document (measured in docs/benchmarks.md); the lines
stream as each is finished.

A question asking which documents say something ("Which filings mention the stock split?",
``retrieval.scope.Scope.lists``) is asked the same way, with a prompt that lets the model say "Not
stated"; the pipeline keeps the lines of the documents that state it (``app.answering``). The
small model says "Not stated" of documents that do name the thing asked about (8 of the 21
documents missing from the lists of docs/benchmarks.md, Lists); ``quoted_line`` then quotes the
passage's sentence that names it, so the reader judges from the document's own words::

    "哪些教程页面讲到了用 UploadFile 接收上传的文件？", the model: "没有提到 [1]。"
    -> "可以使用 `UploadFile` 接收上传的文件…… [1]"   (the passage's sentence naming UploadFile)

Deliberately not here: choosing the documents and their order (``retrieval.scope``
and the pipeline), a closing summary sentence (the model's "it increased" is
what the list replaces; the reader sees the trend in the figures).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from core.types import Question, Source
from llm.generator import Generator
from llm.prompt import PromptBuilder
from llm.sentences import MARKER, split_sentences
from text.keywords import NUMBER, missing_items


@dataclass(frozen=True)
class DocumentLine:
    """One document's part of the answer, as streamed."""

    number: int  # the source's number in the whole answer
    label: str  # "quarter ended April 1, 2023"
    text: str  # the model's sentence, its markers renumbered
    prompt_tokens: int


def _renumber(text: str, number: int) -> str:
    """Every marker of a one-source answer points at that source's number in the whole answer."""
    text = MARKER.sub(f"[{number}]", text.strip())
    if text and f"[{number}]" not in text:
        text = f"{text[:-1]} [{number}]{text[-1]}" if re.search(r"[.。!！?？]$", text) else f"{text} [{number}]"
    return text


# How a line of a list answer says its document does not answer (the list prompt asks for "Not stated").
_NOT_STATED = re.compile(
    r"^\W*(?:not\s+stated|no\b|none\b|n/a\b|(?:it|this|the\s+(?:source|document|filing|page))\s+"
    r"(?:does\s+not|doesn't|do\s+not)|does\s+not|doesn't)|没有提到|未提到|没有提及|未提及|并未|^\W*(?:没有|无|不)",
    re.IGNORECASE)


def not_stated(text: str) -> bool:
    """Whether a line of a list answer says its document does not hold what was asked."""
    return _NOT_STATED.search(MARKER.sub(" ", text)) is not None


def per_document_answer(
    generator: Generator, builder: PromptBuilder, question: Question, sources: Sequence[Source],
    labels: Sequence[str], max_tokens: int, temperature: float, listing: bool = False,
) -> Iterator[DocumentLine]:
    """Ask ``question`` of each source alone (``labels[i]`` names its document); one line per source, in order.

    ``listing``: a question asking which documents say something; each line says what its document states,
    or that it does not (``not_stated`` tells those lines apart)."""
    for source, label in zip(sources, labels):
        prompt = builder.build(question, [source.hit], focus=label, listing=listing)
        text = "".join(generator.stream_chat(prompt.messages, max_tokens, temperature))
        # Only the first line: the model sometimes adds a second, general sentence about the other periods.
        first = next((line for line in text.strip().splitlines() if line.strip()), "")
        yield DocumentLine(source.number, label, _renumber(first, source.number), prompt.prompt_tokens)


def quoted_line(question: Question, source: Source, label: str) -> str | None:
    """The sentence of ``source`` that names every name or identifier of ``question``, cited, or None.

    Only the question's items that are not numbers (a "$20 billion" threshold is a judgement, not a
    name to find) and that the document's label and header do not hold (the company every filing is
    about names no document in particular). None when there is no such item, or the passage lacks one of them.
    """
    items = {item for item in question.specific_items if not NUMBER.fullmatch(item)}
    naming = f"{label}\n{source.hit.chunk.header}"  # the document's own name and record: "Intel" of Intel's filings
    items -= set(items) - set(missing_items(items, naming))
    text = source.text
    if not items or missing_items(items, text):
        return None
    spans = split_sentences(text) or [(0, len(text))]
    best = min(spans, key=lambda span: (len(missing_items(items, text[span[0]:span[1]])), span[0]))
    sentence = " ".join(text[best[0]:best[1]].split())
    if len(sentence) > 300:  # a table or a run-on line: the start of it, not a screenful
        sentence = sentence[:300].rsplit(" ", 1)[0] + " …"
    return f"{sentence} [{source.number}]"
