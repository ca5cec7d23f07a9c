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

Two checks weigh wording, which is weak evidence, so they flag a sentence as unverified rather than
withdraw it (``llm.answer`` then declines when nothing supported is left):

- **new words** (``KB_NEW_WORDS_MIN``, off: at 0.7 it declined 4 more English near-misses of 61 and
  refused "To start the web UI, run `kb ui`" because the passage says "start", not "run"): a sentence whose own words (those the question lacks)
  its evidence mostly lacks restates the question and adds an invented outcome ("Yes, Intel won its
  appeal [2]" over a passage on the appeal that says nothing of winning);
- **figure context** (``KB_FIGURE_CONTEXT_MIN``, off: it refused too many answerable questions): a
  figure standing only in passage sentences about something other than what the question asks
  ("$607 million" of severance for "how many employees").

Measured on the labelled sets in docs/benchmarks.md, "Strict checks".

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
from functools import cache

from core.types import Question, SentenceSupport
from llm.claims import bare
from llm.facts import ShownFacts, facts
from text.keywords import content_keywords
from text.periods import find_quarters, find_versions, period_end_dates, version_matches, year_mentions

_FISCAL = re.compile(r"\bfiscal\b|\bfy\s*'?\d|财年|财政年度|会计年度", re.IGNORECASE)


def check_facts(question: Question, sentences: Sequence[SentenceSupport], claims: Sequence[bool],
                shown: ShownFacts) -> tuple[SentenceSupport, ...]:
    """Each claim with facts no shown passage holds gets ``missing`` and is no longer supported."""
    # The question's own wording counts as given too: its names come back as the model writes them
    # ("Apple's R&D"), not as the stemmed items ("appl", "r&d").
    given = question.stated_numbers | question.specific_items | {question.text.lower()}
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


@cache
def _about_sources() -> frozenset[str]:
    """Words a sentence uses about the sources rather than about the subject ("The source states that ..., cited
    in [1]", "根据资料"): no claim the evidence must hold. Made at first use, not at import: its Chinese words load
    jieba's dictionary (0.8 s), which a process that checks no answer (``kb users``, ``kb status``) never needs."""
    return frozenset(content_keywords(
        "source sources states stated state says said cited cite citing mentioned mentions mention according shown "
        "document documents passage passages collection provided information given filing filings report reports "
        "资料 来源 提到 根据 提供 显示 文档 段落 所述"))


def check_new_words(question: Question, sentences: Sequence[SentenceSupport], passages: Mapping[int, str],
                    min_share: float) -> tuple[SentenceSupport, ...]:
    """Each supported sentence whose own words (those not in the question) its evidence mostly lacks is flagged.

    A sentence restating the question supports itself on the question's words: "Yes, Intel won its appeal
    against the fine [2]" scores high against a passage on the fine and the appeal, though "won" is nowhere.
    What the sentence adds to the question must be in the passage sentences it rests on: at least
    ``min_share`` of its keywords that the question lacks. Wording is weak evidence, so the sentence is
    flagged as unverified, not withdrawn. 0 switches the check off.
    """
    if min_share <= 0:
        return tuple(sentences)
    asked = set(question.content_keywords) | _about_sources()
    checked = []
    for sentence in sentences:
        if sentence.supported and sentence.evidence:
            new = {term for term in content_keywords(bare(sentence.text)) if term not in asked and not term.isdigit()}
            if new:
                window = "\n".join(passages[e.source_number][e.start_char:e.end_char] for e in sentence.evidence)
                held = set(content_keywords(window))
                found = sum(1 for term in new if term in held or (not term.isascii() and term in window))
                if found / len(new) < min_share:
                    sentence = replace(sentence, supported=False, evidence=())
        checked.append(sentence)
    return tuple(checked)


def check_figure_contexts(question: Question, sentences: Sequence[SentenceSupport], shown: ShownFacts,
                          headers: Mapping[int, str], min_share: float) -> tuple[SentenceSupport, ...]:
    """Each supported sentence whose figure stands only in passage sentences about something else is withdrawn.

    A figure's context is the passage sentence (a table row) that writes it, with its document's header; it
    is about what the question asks when it holds at least ``min_share`` of the question's content keywords.
    "Intel let go of $607 million ... employees" copies a figure from a sentence on severance costs; a right
    figure stands in the sentence or row the question's words point at. 0 switches the check off.
    """
    if min_share <= 0 or not question.content_keywords:
        return tuple(sentences)
    asked = set(question.content_keywords)
    given = question.stated_numbers | question.specific_items
    checked = []
    for sentence in sentences:
        if sentence.supported:
            figures = [f for f in facts(bare(sentence.text), given) if f.kind == "figure"]
            shares = []
            for figure in figures:
                contexts = shown.contexts(figure)
                if contexts:  # a figure computed from others has no context of its own: not judged here
                    shares.append(max(len(asked & set(content_keywords(headers.get(n, "") + " " + piece))) / len(asked)
                                      for n, piece in contexts))
            if shares and min(shares) < min_share:
                sentence = replace(sentence, supported=False, evidence=(),
                                   withdrawn_because="its figure stands in a passage sentence about something else "
                                                     "than the question asks")
        checked.append(sentence)
    return tuple(checked)


def figure_passages(sentence: SentenceSupport, shown: ShownFacts, question: Question) -> set[int]:
    """The numbers of the passages that write one of the sentence's figures."""
    given = question.stated_numbers | question.specific_items
    figures = [f for f in facts(bare(sentence.text), given) if f.kind == "figure"]
    return {number for figure in figures for number, _ in shown.contexts(figure)}


def check_periods(question: Question, sentences: Sequence[SentenceSupport], passages: Mapping[int, str],
                  headers: Mapping[int, str], sources: Mapping[int, str], shown: ShownFacts,
                  scoped: Collection[str] = ()) -> tuple[SentenceSupport, ...]:
    """Each supported sentence resting only on passages about other periods than the question names is withdrawn.

    Years: the question's years (``text.periods.year_mentions``). Quarters ("Q4 2023", "2023年第四季度"), when
    the question names one and not as a fiscal quarter (a fiscal calendar is known only from the document,
    which its scope resolved): a passage whose document's header names another quarter does not hold it.
    Versions ("v8.5.8", "7.3.0"; not "8.5", which may be a rate): a passage of another version's release
    notes (its header names that version) holds neither the date nor the fixes of the version asked about.
    ``passages``: number -> the text shown (header included, as the evidence offsets count);
    ``headers``: number -> that header; ``sources``: number -> the document; ``shown``: the passages' facts
    (a figure's period is that of the passages writing it); ``scoped``: documents the question was scoped
    to by its period.
    """
    asked = set(year_mentions(question.text))
    quarters = set() if _FISCAL.search(question.text) else {(q.year, q.quarter) for q in find_quarters(question.text)}
    versions = set(find_versions(question.text))
    if not asked and not quarters and not versions:
        return tuple(sentences)
    checked = []
    for sentence in sentences:
        if sentence.supported and sentence.evidence:
            evidence = [e for e in sentence.evidence if sources.get(e.source_number) not in scoped]
            # A figure's period is the period of the passages that write it, whatever the others cited say.
            holding = figure_passages(sentence, shown, question)
            if holding:
                evidence = [e for e in evidence if e.source_number in holding] or evidence
            verdicts = [_year_held(asked, passages[e.source_number][e.start_char:e.end_char],
                                   headers.get(e.source_number, ""), passages[e.source_number])
                        for e in evidence] if asked else []
            other_quarters = [_quarter_held(quarters, passages[e.source_number][e.start_char:e.end_char],
                                            headers.get(e.source_number, "")) for e in evidence] if quarters else []
            other_versions = [_version_held(versions, passages[e.source_number][e.start_char:e.end_char],
                                            headers.get(e.source_number, "")) for e in evidence] if versions else []
            if verdicts and all(years is not None for years in verdicts):
                other = sorted({year for years in verdicts for year in years})
                sentence = replace(sentence, supported=False, evidence=(),
                                   withdrawn_because=f"rests on a passage about {', '.join(map(str, other))}, not "
                                                     f"{', '.join(map(str, sorted(asked)))}")
            elif other_quarters and all(found is not None for found in other_quarters):
                other = sorted({f"{y} Q{q}" for found in other_quarters for y, q in found})
                sentence = replace(sentence, supported=False, evidence=(),
                                   withdrawn_because=f"rests on a document about {', '.join(other)}, not "
                                                     f"{', '.join(f'{y} Q{q}' for y, q in sorted(quarters))}")
            elif other_versions and all(found is not None for found in other_versions):
                other = sorted({"v" + ".".join(map(str, v)) for found in other_versions for v in found})
                sentence = replace(sentence, supported=False, evidence=(),
                                   withdrawn_because=f"rests on a document about {', '.join(other)}, not "
                                                     f"{', '.join('v' + '.'.join(map(str, v)) for v in sorted(versions))}")
        checked.append(sentence)
    return tuple(checked)


def _version_held(asked: set[tuple[int, ...]], window: str, header: str) -> set[tuple[int, ...]] | None:
    """None when the window or the document's header names an asked version (or its header names none);
    else the versions the header names instead."""
    named = set(find_versions(header))
    if not named or any(version_matches(a, v) for a in asked for v in named | set(find_versions(window))):
        return None
    return named


def _quarter_held(asked: set[tuple[int, int]], window: str, header: str) -> set[tuple[int, int]] | None:
    """None when the window or the document's header names an asked quarter (or its header names none);
    else the quarters the header names instead."""
    named = {(q.year, q.quarter) for q in find_quarters(window) + find_quarters(header)}
    named |= {(end.year, (end.month - 1) // 3 + 1) for end in period_end_dates(header)}
    if asked & named:
        return None
    return named or None


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
