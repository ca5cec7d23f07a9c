"""Within the documents a question names, prefer the passage whose table has the row the question asks for.

A question about one filing ("What was Intel's net revenue in Q1 2023?") is
searched in that filing alone (``retrieval.scope``), but there the management
discussion ("Revenue was $11.7 billion, down 36 % …") outranks the statement
table whose row says ``| Net revenue | $ 11,715 | $ 18,353 |``: prose shares
more words with a question than a row of figures does. Measured on the 10-Q
question set, the gold figure stood in one of the five passages for only 26 of
45 single-figure questions, although the right filing was found for 44.

So each candidate gets ``weight`` x how well its best table row names what the
question asks. A row counts when its label shares keywords with the question's
ordinary words (names and numbers left out: they say *whose* figure, not
*which* figure; "TiDB" matching a row labelled "TiDB" is no measure) and a cell
holds a number. Row match = share of the label's keywords the question has x
matched / (matched + 1), so a label of two matched words ("Research and
development") beats one of one ("Total")::

    question "How much did Apple spend on research and development in Q1 2023?"
    | Research and development | 7,709 | 6,306 |   -> 2/2 x 2/3 = 0.67
    | Total operating expenses | 14,316 | 13,355 | -> 0 (no word of the question)
    a passage of prose                           -> 0

An acronym of the question counts as the words that spell it out: "R&D" meets
"Research and development", "EPS" meets "Diluted earnings per share".

Only for scoped questions: across a whole collection a matching row label is
too weak a signal (measured: the right document dropped out of the sources on
the Chinese set without scoping). Weight 1.0 chosen on the even-numbered
questions of both labelled sets, reported on the odd ones (docs/benchmarks.md).

Deliberately not here: which column (period) holds the figure (the prompt shows
the columns the question names, ``llm.prompt.linearise_tables``), checking the
answer's figure against the row (``llm.figures``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

from core.types import Hit, Question
from text.table_format import body_rows
from text.keywords import NUMBER, content_keywords, spelled_out_terms


@lru_cache(maxsize=8192)  # the same passages come back question after question
def row_labels(text: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """Each body row's label (its first cell) and its keywords, for rows of Markdown tables that hold a number."""
    labels = []
    for label, cells in body_rows(text):
        if not any(NUMBER.search(cell) for cell in cells):
            continue
        terms = frozenset(term for term in content_keywords(label) if not NUMBER.fullmatch(term))
        if terms:
            labels.append((label, terms))
    return tuple(labels)


def measure_words(question: Question) -> frozenset[str]:
    """The question's ordinary keywords: a measure is named by them, not by a name or a number."""
    return frozenset(question.keywords) - question.specific_items


def row_match(asked: frozenset[str], text: str, acronyms: frozenset[str] = frozenset()) -> float:
    """How well the best table row of ``text`` names the measure ``asked`` (``measure_words``; 0: no such row).

    ``acronyms``: the question's ("eps"), which a label matches by spelling them out ("Diluted earnings per share").
    """
    best = 0.0
    for label, terms in row_labels(text):
        matched = len(terms & (asked | spelled_out_terms(acronyms, label) if acronyms else asked))
        if matched:
            best = max(best, matched / len(terms) * matched / (matched + 1))
    return best


def prefer_asked_rows(question: Question, hits: Sequence[Hit], weight: float) -> list[Hit]:
    """``hits`` re-scored by ``score + weight x row_match`` and re-sorted (ties: first-stage order)."""
    if weight <= 0:
        return list(hits)
    asked = measure_words(question)  # once per question, not per candidate
    rescored = [replace(hit, rerank_score=hit.score + weight * row_match(asked, hit.chunk.text, question.acronyms))
                for hit in hits]
    return sorted(rescored, key=lambda hit: (-hit.rerank_score, hit.first_stage_rank))
