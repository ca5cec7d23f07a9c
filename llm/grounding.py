"""Per-sentence grounding: which numbered passage, if any, says what each answer sentence says.

Worked example, with source [1] "The web interface listens on port 8501." and
source [2] "Apples are red."::

    "The web interface listens on port 8501 [2]. It also serves HTTPS on 8443."
    -> "The web interface listens on port 8501 [1]."   supported; evidence: [1] chars 0-39
       "It also serves HTTPS on 8443."                 flagged: 8443 is in no passage

A sentence is compared with the one or two sentences of a passage that hold
most of it (``WINDOW_SENTENCES``; not the whole passage, where the words of
almost any sentence on the topic occur somewhere). Three measurable checks:

- keywords: the share of the sentence's content keywords
  (``text.keywords.content_keywords``: stemmed English words, jieba words,
  without lone Chinese characters, which are mostly particles) found there. A
  Chinese word counts as found when it is a substring, so a different jieba
  segmentation of the same phrase still matches. This share is the ``score``.
- numbers: every number written with digits in the sentence (``8501``,
  ``3.11``, ``127.0.0.1``) must occur, in digits or spelled out ("five", "五").
  Invented details are most often numbers. Identifiers with underscores
  (``KB_UI_PORT``, ``chunk_tokens``) are held to the same rule, case aside:
  the model invents setting names ("set KB_PORT") whose parts the passage has.
- negation: each clause of the sentence must be negated ("not", "不", "没有")
  exactly when the passage clause holding most of it is; otherwise the passage
  says the opposite with the same words ("使用 pickle" against "不使用 pickle").

A passage supports a sentence when the numbers and negations agree and the
score is at least ``SUPPORT_MIN``. The cited passages are checked together (a
sentence may join two sources); a co-cited passage holding under
``CONTRIBUTION_MIN`` of the sentence and none of its numbers loses its marker.
If the cited passages do not support the sentence and another passage does, the
marker moves there; a supported sentence without a marker gets one (the 1.5B
model often forgets them, or cites once at the end of a paragraph). If no
passage supports it, the sentence is flagged and keeps the model's markers so
the user can look. Evidence is the supporting passage sentences, as character
offsets into the passage text (the cited chunk's text, or a prefix of it).

The thresholds (``SUPPORT_MIN``, ``CONTRIBUTION_MIN``) were chosen on 79 hand-labelled
answer sentences; how, and what the check still gets wrong: docs/benchmarks.md, Answers,
"2026-11-23 (69a415d): the citation check's thresholds".

Across languages (a Chinese sentence and an English passage, or the other way
round) only language-neutral items can be compared: numbers, and Latin words
(names, commands): all of them in a Chinese sentence, and in an English sentence
the ones written like names (a capital after the first word, a digit or ``_``,
or in backticks). Such a passage supports only with two items found or a
number of two digits or more, and a passage in the sentence's own language is
preferred. A sentence whose cited passages are all in the other language and share
fewer than two items with it is left unchecked (``checked=False``), not flagged. This is a lexical check, not entailment: a
sentence that reuses a passage's words and numbers in a wrong relation passes.

Deliberately not here: cutting the answer into sentences and rewriting its markers
(``llm.sentences``), dropping markers that name no source (``llm.answer``),
model-based entailment, the answer-level check abstention runs
(``llm.answer_support``), deciding to abstain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from core.types import EvidenceSpan, SentenceSupport
from llm.claims import Items, Passage, Piece, bare, comparable_items, term_in
from llm.sentences import cited_numbers, rewrite_markers, segments
from text.keywords import NUMBER as _NUMBER
from text.keywords import text_language

SUPPORT_MIN = 0.55  # share of the sentence's keywords and numbers the passage sentences must hold
CONTRIBUTION_MIN = 0.25  # a co-cited passage holding less (and none of the numbers) loses its marker
MIN_CLAIM_ITEMS = 2  # fewer keywords + numbers than this: not a checkable claim ("Yes.", "Steps")
WINDOW_SENTENCES = 2  # a claim is compared with at most this many sentences of each passage

# A sentence saying the sources lack something is not a claim about their content.
ABSTENTION = re.compile(
    r"(?:documents?|sources?|passages?|context)\s+(?:do|does|did)\s+not\s+(?:contain|mention|say|provide|include|specify)"
    r"|not\s+(?:found|mentioned|provided|specified|stated)\s+in\s+the\s+(?:documents?|sources?|passages?)"
    r"|(?:资料|文档|来源|段落)[^。！？]{0,8}(?:没有|未|并未)(?:提到|提及|包含|说明|给出|找到)"
    r"|没有找到",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class GroundedText:
    """The answer text with moved and added markers, sentence by sentence."""

    text: str
    sentences: tuple[SentenceSupport, ...]


def ground(text: str, passages: Mapping[int, str], given: frozenset[str] = frozenset()) -> GroundedText:
    """Check each sentence of ``text`` against the numbered passages; move, add or flag its markers.

    ``text``'s markers must already be in the form [n] (``llm.answer`` does this). ``given``: the numbers
    and identifiers the question itself states ("TiDB 8.4", "KB_UI_PORT"): an answer that repeats them
    claims nothing by them, so a passage need not hold them (it may name the version only in its title).
    """
    sources = {number: Passage(passage) for number, passage in passages.items()}
    pieces: list[str] = []
    sentences: list[SentenceSupport] = []
    position = 0
    length = 0
    for segment in segments(text):
        gap = text[position : segment.start]
        original = text[segment.start : segment.end]
        cited = cited_numbers(original, sources)
        if segment.claim:
            decision = _ground_sentence(original, cited, sources, given)
        else:
            decision = _Decision(cited, False, 0.0, (), checked=False)
        rewritten = rewrite_markers(original, cited, decision.citations) if decision.citations != cited else original
        length += len(gap)
        sentences.append(
            SentenceSupport(
                text=rewritten,
                start_char=length,
                end_char=length + len(rewritten),
                citations=decision.citations,
                supported=decision.supported,
                score=round(decision.score, 3),
                evidence=decision.evidence,
                checked=decision.checked,
            )
        )
        pieces += [gap, rewritten]
        length += len(rewritten)
        position = segment.end
    pieces.append(text[position:])
    return GroundedText(text="".join(pieces), sentences=tuple(sentences))


def support_score(sentence: str, passage: str) -> float:
    """Share of ``sentence``'s keywords and numbers held by ``passage``'s best sentences (0..1).

    0 when the passage cannot support the sentence whatever its words: a number
    is missing, or the passage says the opposite (a negation on one side only).
    """
    source = Passage(passage)
    items = comparable_items(bare(sentence), source.language)
    if not items.count:
        return 0.0
    match = _match(items, (source,))
    return match.score if match.numbers_ok and match.polarity_ok else 0.0


@dataclass(frozen=True)
class _Match:
    score: float  # share of the items found
    numbers_ok: bool  # every number of the sentence occurs
    polarity_ok: bool  # each clause is negated exactly when its best-matching passage clause is
    found: frozenset[str]
    cross_language: bool

    @property
    def supports(self) -> bool:
        if not (self.numbers_ok and self.polarity_ok and self.score >= SUPPORT_MIN):
            return False
        # Across languages one shared word ("run") or digit ("5") is too little: two items, or
        # a number of two digits or more ("8501").
        return (
            not self.cross_language
            or len(self.found) >= MIN_CLAIM_ITEMS
            or any(_NUMBER.fullmatch(item) and sum(map(str.isdigit, item)) >= 2 for item in self.found)
        )


# ----- deciding ---------------------------------------------------------------


@dataclass(frozen=True)
class _Decision:
    citations: tuple[int, ...]
    supported: bool
    score: float
    evidence: tuple[EvidenceSpan, ...]
    checked: bool = True


def _ground_sentence(
    sentence: str, cited: tuple[int, ...], sources: Mapping[int, Passage], given: frozenset[str] = frozenset()
) -> _Decision:
    claim = bare(sentence)
    unchecked = _Decision(cited, False, 0.0, (), checked=False)
    if ABSTENTION.search(claim):
        return unchecked
    language = text_language(claim)
    items_for = {lang: comparable_items(claim, lang, given) for lang in {language, *(p.language for p in sources.values())}}
    if items_for[language].count < MIN_CLAIM_ITEMS:
        return unchecked  # "Yes.", "Steps": not a claim

    def match(numbers: Sequence[int]) -> _Match | None:
        """The passages together, on the items their languages allow; None when too few to judge."""
        group = [sources[n] for n in numbers]
        # With a passage in the sentence's own language all items count, else only the neutral ones.
        items = items_for[language if any(p.language == language for p in group) else group[0].language]
        if items.count < MIN_CLAIM_ITEMS and not items.numbers:
            return None
        return _match(items, group)

    def evidence(numbers: Sequence[int]) -> tuple[EvidenceSpan, ...]:
        return tuple(
            EvidenceSpan(n, s.start, s.end)
            for n in numbers
            for s in _best_sentences(items_for[sources[n].language], sources[n])
        )

    together = match(cited) if cited else None
    if together is not None and together.supports:
        keep = _contributing(cited, match)
        return _Decision(keep, True, together.score, evidence(keep))
    alone = {number: m for number in sources if (m := match((number,))) is not None}
    # A passage in the sentence's language was compared on all its words: it goes first.
    supporters = sorted(
        (n for n, m in alone.items() if m.supports), key=lambda n: (alone[n].cross_language, -alone[n].score, n)
    )
    if supporters:
        best = supporters[0]
        return _Decision((best,), True, alone[best].score, evidence((best,)))
    # Flag only what could be looked for: the cited passages, or (no marker) at least one
    # passage, could be compared. Passages in the other language sharing too few names
    # and numbers with the sentence cannot tell; the sentence is left unchecked.
    if (cited and together is None) or (not cited and not alone):
        return unchecked
    score = together.score if together is not None else max(m.score for m in alone.values())
    return _Decision(cited, False, score, ())


def _contributing(cited: tuple[int, ...], match: Callable[[Sequence[int]], _Match | None]) -> tuple[int, ...]:
    """The cited passages worth keeping: each holds a fair share of the sentence, or one of its numbers."""
    keep = tuple(
        number
        for number in cited
        if (alone := match((number,))) is not None
        and (alone.score >= CONTRIBUTION_MIN or any(map(_NUMBER.fullmatch, alone.found)))
    )
    together = match(keep) if keep else None
    return keep if together is not None and together.supports else cited  # else they support only all together


def _match(items: Items, group: Sequence[Passage]) -> _Match:
    """How much of the sentence the passages' best sentences hold, and whether numbers and negations agree."""
    windows = [w for p in group for w in _best_sentences(items, p)]
    found = frozenset(t for t in items.terms if any(term_in(t, w) for w in windows))
    numbers_found = frozenset(n for n in items.numbers if any(n in w.numbers for w in windows))
    # A passage saying the opposite shares all the words: each clause of the sentence must be
    # negated exactly when the passage clause holding most of it is.
    clauses = [c for p in group for c in p.clauses if any(w.start <= c.start and c.end <= w.end for w in windows)]
    polarity_ok = True
    for clause in items.clauses:
        clause_items = Items(clause.terms & items.terms, clause.numbers & items.numbers)
        if clause_items.count < MIN_CLAIM_ITEMS:
            continue  # "3", "and 130": too little to find the passage clause it restates
        best = _best_piece(clause_items, clauses)
        polarity_ok &= best is None or best.negated == clause.negated
    return _Match(
        score=(len(found) + len(numbers_found)) / items.count if items.count else 0.0,
        numbers_ok=numbers_found == items.numbers,
        polarity_ok=polarity_ok,
        found=found | numbers_found,
        cross_language=items.cross_language,
    )


def _best_sentences(items: Items, passage: Passage) -> list[Piece]:
    """Greedily, the passage sentence holding most of the items, then the one adding most (in text order).

    A claim may join two statements of a passage ("5 minutes and 4 GB of disk")
    that are not neighbours.
    """
    chosen: list[Piece] = []
    remaining = items
    for _ in range(WINDOW_SENTENCES):
        best = _best_piece(remaining, [s for s in passage.sentences if s not in chosen])
        if best is None:
            break
        chosen.append(best)
        remaining = Items(
            frozenset(t for t in remaining.terms if not term_in(t, best)),
            frozenset(n for n in remaining.numbers if n not in best.numbers),
        )
    return sorted(chosen, key=lambda s: s.start)


def _best_piece(items: Items, pieces: Sequence[Piece]) -> Piece | None:
    """The piece holding most of the items (the shorter, then the first, on ties); None if none holds any."""
    best: tuple[int, int, Piece] | None = None
    for piece in pieces:
        held = sum(1 for t in items.terms if term_in(t, piece)) + len(items.numbers & piece.numbers)
        if held and (best is None or (held, best[1]) > (best[0], piece.end - piece.start)):
            best = (held, piece.end - piece.start, piece)
    return best[2] if best else None
