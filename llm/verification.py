"""After the citation check: sentences that state what no passage holds are withdrawn, and why.

``llm.grounding`` tells, for each sentence, whether its cited passage says it: a lexical
judgement, often wrong about wording. Two things are surer, and this module checks them on
every claim of the answer:

- **an invented fact**: the sentence states a figure, date, name, identifier or place that no
  passage the model was shown holds (``llm.facts``). The 1.5B model invents exactly these when the
  passages lack the answer ("a repair cost of $100,000", "an overall response rate of 75.0%").
- **another period**: the question names a year ("2019年……优秀率") and the passage the sentence
  rests on speaks of another one (the 2021 page's rate). A figure from the wrong year's page is a
  fact the named year's documents do not state. A passage holds the year when the sentences the
  answer rests on name it, else its document's header (title, period, date), else the passage
  elsewhere; a passage naming no year at all is not judged. Documents the question was scoped to by
  its period (``retrieval.scope``: a filing's fiscal quarter) hold it already.

Each such sentence keeps its text and gets ``withdrawn_because``; ``without_withdrawn`` then
removes them from the answer text (a whole line when the sentence was one, as a list item is).

Worked example, the question "What was the 2019 pass rate?" and the passages [1] (2021 page)
"在2021年……通过率达93%" and [2] "Fees are 5,000 yuan."::

    "The rate was 93% [1]. Fees were 6,000 yuan [2]."
    -> "The rate was 93% [1]."      withdrawn: rests on a passage about 2021, not 2019
       "Fees were 6,000 yuan [2]."  withdrawn: states 6,000, which no passage holds

Deliberately not here: deciding to decline the whole answer (``llm.answer``), whether a passage
says what a sentence says in words (``llm.grounding``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from core.types import Question, SentenceSupport
from llm.claims import bare
from llm.facts import ShownFacts, facts
from text.periods import year_mentions


def check_facts(question: Question, sentences: Sequence[SentenceSupport], claims: Sequence[bool],
                shown: ShownFacts) -> tuple[SentenceSupport, ...]:
    """Each claim with facts no shown passage holds gets ``missing`` and is no longer supported."""
    given = question.stated_numbers | question.specific_items
    checked = []
    for sentence, claim in zip(sentences, claims):
        if claim:
            text = bare(sentence.text)
            absent = shown.missing(text, facts(text, given), sentence.citations)
            if absent:
                written = tuple(dict.fromkeys(fact.written for fact in absent))
                sentence = replace(sentence, supported=False, evidence=(), checked=True, missing=written,
                                   withdrawn_because="states " + ", ".join(written) + ", which no passage holds")
        checked.append(sentence)
    return tuple(checked)


def check_periods(question: Question, sentences: Sequence[SentenceSupport], passages: Mapping[int, str],
                  headers: Mapping[int, str], sources: Mapping[int, str], scoped: Collection[str] = ()
                  ) -> tuple[SentenceSupport, ...]:
    """Each supported sentence resting only on passages about other years than the question names is withdrawn.

    ``passages``: number -> the text shown (header included, as the evidence offsets count);
    ``headers``: number -> that header; ``sources``: number -> the document; ``scoped``: documents the
    question was scoped to by its period.
    """
    asked = set(year_mentions(question.text))
    if not asked:
        return tuple(sentences)
    checked = []
    for sentence in sentences:
        if sentence.supported and sentence.evidence:
            verdicts = [_year_held(asked, passages[e.source_number][e.start_char:e.end_char],
                                   headers.get(e.source_number, ""), passages[e.source_number])
                        for e in sentence.evidence if sources.get(e.source_number) not in scoped]
            if verdicts and all(years is not None for years in verdicts):
                other = sorted({year for years in verdicts for year in years})
                sentence = replace(sentence, supported=False, evidence=(),
                                   withdrawn_because=f"rests on a passage about {', '.join(map(str, other))}, not "
                                                     f"{', '.join(map(str, sorted(asked)))}")
        checked.append(sentence)
    return tuple(checked)


def _year_held(asked: set[int], window: str, header: str, passage: str) -> set[int] | None:
    """None when the passage holds an asked year (or names none); else the years it speaks of instead."""
    window_years, header_years = set(year_mentions(window)), set(year_mentions(header))
    if asked & (window_years | header_years):
        return None
    if window_years:
        return window_years
    passage_years = set(year_mentions(passage))
    if asked & passage_years:
        return None
    return (passage_years | header_years) or None


def without_withdrawn(text: str, sentences: Sequence[SentenceSupport]) -> tuple[str, tuple[SentenceSupport, ...]]:
    """``text`` without the withdrawn sentences, and the kept sentences with their offsets in it."""
    kept_text = text
    for sentence in sorted((s for s in sentences if s.withdrawn_because), key=lambda s: -s.start_char):
        start, end = sentence.start_char, sentence.end_char
        line_start = kept_text.rfind("\n", 0, start) + 1
        line_end = kept_text.find("\n", end)
        line_end = len(kept_text) if line_end < 0 else line_end
        if not re.sub(r"^\s*(?:[-*+•]|\d{1,3}[.)、])?\s*", "", kept_text[line_start:start]).strip() and \
                not kept_text[end:line_end].strip():
            start, end = line_start, min(line_end + 1, len(kept_text))  # the sentence was the line
        else:
            while end < len(kept_text) and kept_text[end] in " \t":
                end += 1
        kept_text = kept_text[:start] + kept_text[end:]
    kept_text = kept_text.strip()
    kept = []
    position = 0
    for sentence in sentences:
        if sentence.withdrawn_because:
            continue
        found = kept_text.find(sentence.text, position)
        if found < 0:
            found = position
        kept.append(replace(sentence, start_char=found, end_char=found + len(sentence.text)))
        position = found + len(sentence.text)
    return kept_text, tuple(kept)
