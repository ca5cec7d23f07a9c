"""What an answer sentence claims and what a passage holds, as the citation check compares them.

A sentence becomes ``Items``: its content keywords (``text.keywords.content_keywords``
without bare numbers), the numbers and identifiers it writes in digits, and its
clauses (cut at commas and colons), each negated or not. A passage becomes a
``Passage``: its sentences and clauses as ``Piece`` s, each with its terms, the
numbers it writes in digits or spells out ("five", "五", "十二") and its negation.

Worked example::

    comparable_items("It does not use pickle; it stores 3 files [1].", "en")
    -> terms {"use", "pickl", "store", "file"}, numbers {"3"},
       clauses: ("It does not use pickle", negated), ("it stores 3 files", not negated)

Across languages only language-neutral items can be compared
(``text.keywords.language_neutral_terms``): numbers, and Latin words (names,
commands); ``cross_language`` marks such items.

Deliberately not here: deciding whether a passage supports a sentence
(``llm.grounding``), cutting an answer into sentences (``llm.sentences``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from llm.sentences import MARKER, sentence_spans
from text.keywords import NUMBER as _NUMBER
from text.keywords import content_keywords, language_neutral_terms, text_language
from text.keywords import numbers_and_identifiers as _numbers

_LIST_PREFIX = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)、])\s+")
CLAUSE_END = re.compile(r"[，,;；:：]\s*")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_BACKTICKED = re.compile(r"`([^`]+)`")
_ENGLISH_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_CHINESE_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CHINESE_NUMERAL = re.compile(r"[零一二两三四五六七八九十]+")
# "no" in "--no-cache-dir" is part of a name, and 不同 (different) or 非常 (very) negate nothing.
_NEGATION = re.compile(
    r"(?<![\w\-/])(?:not|no|never|cannot|without|nothing|none|neither|nor)(?![\w\-])|n't"
    r"|不(?![同过仅但久少断])|没有|没|未(?!来)|无法|无需|并非|非(?!常)",
    re.IGNORECASE,
)

@dataclass(frozen=True)
class Piece:
    """A sentence or clause of a passage, tokenised."""

    start: int
    end: int
    terms: frozenset[str]
    lowered: str
    numbers: frozenset[str]
    negated: bool


@dataclass(frozen=True)
class ClaimClause:
    terms: frozenset[str]
    numbers: frozenset[str]
    negated: bool


@dataclass(frozen=True)
class Items:
    """What a sentence is checked by: its keywords and the numbers it states in digits."""

    terms: frozenset[str]
    numbers: frozenset[str]
    clauses: tuple[ClaimClause, ...] = ()  # the sentence cut at commas etc.: the scope of each negation
    cross_language: bool = False  # only language-neutral items, for a passage in the other language

    @property
    def count(self) -> int:
        return len(self.terms) + len(self.numbers)


class Passage:
    """A source passage, split into sentences and clauses and tokenised once."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.language = text_language(text)

    @cached_property
    def sentences(self) -> tuple[Piece, ...]:
        spans = sentence_spans(self.text, 0, len(self.text), wrapped_lines=True)
        return tuple(self._piece(start, end) for start, end in spans)

    @cached_property
    def clauses(self) -> tuple[Piece, ...]:
        clauses = []
        for sentence in self.sentences:
            start = sentence.start
            for cut in CLAUSE_END.finditer(self.text, sentence.start, sentence.end):
                clauses.append(self._piece(start, cut.start()))
                start = cut.end()
            clauses.append(self._piece(start, sentence.end))
        return tuple(clauses)

    def _piece(self, start: int, end: int) -> Piece:
        text = self.text[start:end]
        return Piece(
            start=start,
            end=end,
            terms=frozenset(terms_of(text)),
            lowered=text.lower(),
            numbers=frozenset(_numbers(text) | spelled_numbers(text)),
            negated=negated(text),
        )


def bare(sentence: str) -> str:
    """The sentence without markers and list bullets or numbers, which are not part of the claim."""
    return _LIST_PREFIX.sub("", MARKER.sub(" ", sentence))


def terms_of(text: str) -> list[str]:
    """Content keywords without digit-only tokens (those are checked as numbers)."""
    return [token for token in content_keywords(text) if not _NUMBER.fullmatch(token)]


def term_in(term: str, piece: Piece) -> bool:
    # A Chinese word may be segmented differently inside the passage: a substring is enough.
    return term in piece.terms or (_CJK.match(term) is not None and term in piece.lowered)


def comparable_items(sentence: str, passage_language: str, given: frozenset[str] = frozenset()) -> Items:
    """The sentence's items that can be looked for in a passage in ``passage_language``; ``given`` numbers left out."""
    own_language = text_language(sentence)
    terms = terms_of(sentence) if own_language == passage_language else language_neutral_terms(sentence)
    clauses = tuple(
        ClaimClause(frozenset(terms_of(clause)), frozenset(_numbers(clause) - given), negated(clause))
        for clause in CLAUSE_END.split(sentence)
    )
    return Items(
        terms=frozenset(terms),
        numbers=frozenset(_numbers(sentence) - given),
        clauses=clauses,
        cross_language=own_language != passage_language,
    )


def negated(text: str) -> bool:
    return _NEGATION.search(_BACKTICKED.sub(" ", text)) is not None  # code is not prose


def spelled_numbers(text: str) -> set[str]:
    """Numbers a passage spells out ("five", "五", "十二"), so a sentence writing them in digits still matches."""
    found = {_ENGLISH_NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in _ENGLISH_NUMBER_WORDS}
    for run in _CHINESE_NUMERAL.findall(text):
        value = chinese_number(run)
        if value is not None:
            found.add(str(value))
    return found


def chinese_number(run: str) -> int | None:
    """Values up to 99 (一, 十二, 二十五); longer runs are read digit by digit or not at all."""
    if "十" not in run:
        return int("".join(str(_CHINESE_DIGITS[ch]) for ch in run)) if run else None
    tens, _, ones = run.partition("十")
    if "十" in ones or len(tens) > 1 or len(ones) > 1:
        return None
    return (_CHINESE_DIGITS[tens] if tens else 1) * 10 + (_CHINESE_DIGITS[ones] if ones else 0)


