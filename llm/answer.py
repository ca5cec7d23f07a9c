"""Turn generated text into an ``Answer`` that says only what the passages say, each sentence cited.

Worked example, with sources [1] guide.pdf p.2 "Run `make run` to install." and
[2] readme.md › Install "It needs Python 3.11." in the prompt::

    "Run make run [1]. It needs Python 3.11 [2][7]. It also needs Rust 1.80."
    -> text      "Run make run [1]. It needs Python 3.11 [2]."
       citations (1 -> guide.pdf p.2, 2 -> readme.md › Install)
       sentences "Run make run [1]."          supported, evidence [1] chars 0-26
                 "It needs Python 3.11 [2]."  supported, evidence [2] chars 0-21
       withdrawn "It also needs Rust 1.80."   states 1.80, which no passage holds

The steps:

1. Marker forms the models write (``[1]``, ``[1][2]``, ``[1, 2]``, ``[1，2]``, ``【1】``) are read;
   numbers that name no source are removed, so no citation leads nowhere.
2. Every sentence is grounded (``llm.grounding``): a marker whose passage does not support its
   sentence moves to one that does, a supported sentence without a marker gets one, a sentence no
   passage supports is flagged. A figure copied from the wrong row of a cited table is flagged
   (``llm.figures``).
3. Sentences that state a fact no passage holds, or rest on a passage about another year than the
   question names, are withdrawn (``llm.verification``): removed from the text, kept in
   ``Answer.withdrawn`` with the reason.
4. When no supported sentence is left (``AnswerPolicy.decline_unsupported``; otherwise when no
   sentence is left at all), a sentence whose numbers its cited passages write counts as left
   (``keep_held_figures``: wording is weak evidence, a figure strong; it is shown flagged), the model itself said the documents do not hold the answer, or the
   answer is made of citation markers and fragments ("[1] [2][3]", "U.S [1]."), the answer is
   "not in the documents" with the passages as the closest ones, and the model's text is
   kept as ``withdrawn_draft`` for the user to judge.

``Answer.supported`` is True only when every checkable sentence shown is supported.

Deliberately not here: the support test itself (``llm.grounding``), the facts (``llm.facts``),
abstaining before generation (``retrieval.evidence``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from core.types import Answer, Citation, Question, SentenceSupport, Source
from llm.facts import ShownFacts
from llm.figures import figures_in_right_rows
from llm.grounding import ABSTENTION, ground
from llm.refusals import NOT_IN_DOCUMENTS, draft_withdrawn
from llm.sentences import MARKER, segments
from llm.verification import check_facts, check_figure_contexts, check_new_words, check_periods, without_withdrawn
from text.keywords import numbers_and_identifiers


@dataclass(frozen=True)
class AnswerPolicy:
    """What happens to sentences the checks reject (the defaults: docs/benchmarks.md, Answers)."""

    withdraw: bool = True  # sentences with invented facts or from another year's passage are removed
    decline_unsupported: bool = True  # no supported sentence left: "not in the documents" (else: none left)
    decline: bool = True  # False: never answer "not in the documents" after generation (abstention off)
    figure_context_min: float = 0.0  # least share of the question's keywords by a figure in its passage sentence
    new_words_min: float = 0.0  # least share of a sentence's words beyond the question's its evidence must hold
    keep_held_figures: bool = True  # an unsupported sentence whose figures its cited passages write is not declined


def citation_from_source(source: Source) -> Citation:
    chunk = source.hit.chunk
    return Citation(
        number=source.number,
        source=chunk.source,
        page=chunk.page,
        heading_path=chunk.heading_path,
        start_char=chunk.start_char,
        end_char=chunk.end_char,
        passage=chunk.text,
        score=source.hit.score,
        ocr=chunk.ocr,
        document=chunk.header,
    )


def _into_passages(sentences: Sequence[SentenceSupport], sources: Mapping[int, Source]) -> tuple[SentenceSupport, ...]:
    """Evidence offsets into what the model was shown of a source, turned into offsets into its passage.

    The model may be shown an excerpt of a passage, or its table written out as sentences
    (``llm.prompt``); a citation highlights the passage itself. A supporting sentence is found there
    again (exactly, else with any whitespace); one that cannot be found is left out, never guessed.
    """
    moved = []
    for sentence in sentences:
        evidence = []
        for item in sentence.evidence:
            source = sources.get(item.source_number)
            if source is None:
                continue
            passage = source.hit.chunk.text
            if source.text == passage:
                evidence.append(item)
                continue
            found = _find_again(source.text[item.start_char:item.end_char], passage)
            if found is not None:
                evidence.append(replace(item, start_char=found[0], end_char=found[1]))
        moved.append(replace(sentence, evidence=tuple(evidence)))
    return tuple(moved)


def _find_again(piece: str, passage: str) -> tuple[int, int] | None:
    piece = piece.strip().strip("…").strip()  # an excerpt marks what it left out with "…"
    words = piece.split()
    if not words:
        return None
    at = passage.find(piece)
    if at >= 0:
        return at, at + len(piece)
    match = re.search(r"\s+".join(re.escape(word) for word in words), passage)
    return (match.start(), match.end()) if match else None


def _without_headers(sentences: Sequence[SentenceSupport], lengths: Mapping[int, int]) -> tuple[SentenceSupport, ...]:
    """Evidence offsets into header + passage, turned into offsets into the passage (evidence in the header dropped)."""
    moved = []
    for sentence in sentences:
        evidence = []
        for item in sentence.evidence:
            shift = lengths.get(item.source_number, 0)
            if item.end_char > shift:
                evidence.append(replace(item, start_char=max(0, item.start_char - shift), end_char=item.end_char - shift))
        moved.append(replace(sentence, evidence=tuple(evidence)))
    return tuple(moved)


_WORDS = re.compile(r"[A-Za-z]{2,}|\d+|[\u3400-\u4dbf\u4e00-\u9fff]")
_YES_NO = re.compile(r"^\W*(?:yes|no|是|否|对|不|能|不能|可以|不可以)\W*$", re.IGNORECASE)


def _fragment(sentence: str) -> bool:
    """A sentence that says nothing: markers, a letter or one word (a bare yes or no is an answer, and so
    is a bare figure such as "8501": whether a passage states it is the fact check's business)."""
    bare = MARKER.sub(" ", sentence)
    return len(_WORDS.findall(bare)) < 2 and not _YES_NO.match(bare) and not re.search(r"\d", bare)


def _figures_held(question: Question, sentence: SentenceSupport, passages: Mapping[int, str]) -> bool:
    """Whether the sentence states numbers beyond the question's and its cited passages write every one of them.

    Wording is weak evidence, a figure strong: "设计学类计划招53人 [2]" over a table whose cells stand one per
    line ("设计学类" / "53") shares too few words with any two of its lines to be supported, yet [2] writes 53.
    """
    numbers = set(numbers_and_identifiers(MARKER.sub(" ", sentence.text))) - set(question.stated_numbers)
    numbers = {n for n in numbers if any(ch.isdigit() for ch in n)}
    cited = [passages[n] for n in sentence.citations if n in passages]
    if not numbers or not cited:
        return False
    held = set().union(*(numbers_and_identifiers(text) for text in cited))
    return numbers <= held


def make_answer(question: Question, generated: str, sources: Sequence[Source], policy: AnswerPolicy = AnswerPolicy(),
                scoped: Collection[str] = ()) -> Answer:
    """Keep valid [n] markers, ground and check each sentence, withdraw what no passage holds (see module doc).

    ``scoped``: the documents the question was scoped to by the period it names (``retrieval.scope``).
    """
    by_number = {source.number: citation_from_source(source) for source in sources}

    def keep_valid(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        return "".join(f"[{n}]" for n in dict.fromkeys(numbers) if n in by_number)

    text = MARKER.sub(keep_valid, generated)
    text = re.sub(r"[ \t]+([.。,，;；!！?？])", r"\1", text).strip()  # space left before punctuation by a removed marker
    # Grounding reads the text the model was shown (a prefix of the chunk when the prompt shortened it),
    # with the source's header (its document's title, organisation, period): a period stated only there counts.
    headers = {source.number: source.hit.chunk.header + "\n" if source.hit.chunk.header else "" for source in sources}
    shown = {source.number: headers[source.number] + source.text for source in sources}
    grounded = ground(text, shown, given=question.stated_numbers)
    # A figure copied from the wrong row of a cited table (cost of sales for net sales) is not supported.
    bare_shown = {source.number: source.text for source in sources}
    sentences = tuple(
        replace(sentence, supported=False, evidence=())
        if sentence.supported and not all(figures_in_right_rows(question, sentence.text, bare_shown[n])
                                          for n in sentence.citations if n in bare_shown)
        else sentence
        for sentence in grounded.sentences
    )
    claims = [segment.claim and not ABSTENTION.search(grounded.text[s.start_char:s.end_char])
              for segment, s in zip(segments(text), sentences)]
    # Facts may come from anything the model was shown of a source: its location line (file, headings) too.
    facts_shown = ShownFacts({n: f"{s.hit.chunk.location}\n{shown[n]}" for n, s in ((s.number, s) for s in sources)},
                             {s.number: (s.hit.chunk.source, s.hit.chunk.page) for s in sources})
    sentences = check_facts(question, sentences, claims, facts_shown)
    sentences = check_periods(question, sentences, shown, headers, {s.number: s.hit.chunk.source for s in sources},
                              facts_shown, scoped)
    sentences = check_figure_contexts(question, sentences, facts_shown, headers, policy.figure_context_min)
    sentences = check_new_words(question, sentences, shown, policy.new_words_min)
    sentences = _without_headers(sentences, {number: len(header) for number, header in headers.items()})
    sentences = _into_passages(sentences, {source.number: source for source in sources})
    final_text, kept = (without_withdrawn(grounded.text, sentences) if policy.withdraw
                        else (grounded.text, tuple(replace(s, withdrawn_because="") for s in sentences)))
    withdrawn = tuple(s for s in sentences if s.withdrawn_because) if policy.withdraw else ()
    cited = {n for sentence in kept for n in sentence.citations}
    citations = tuple(by_number[n] for n in sorted(cited))
    all_sources = tuple(by_number[n] for n in sorted(by_number))
    checkable = [s for s in kept if s.checked]
    said_not_found = any(ABSTENTION.search(s.text) for s in kept) and not any(s.supported for s in kept)
    said_nothing = bool(kept) and all(_fragment(s.text) for s in kept)  # "[1] [2][3]", "U.S [1]."
    kept = tuple(replace(s, figures_held=True) if policy.keep_held_figures and s.checked and not s.supported
                 and _figures_held(question, s, bare_shown) else s for s in kept)
    left = [s for s in kept if s.supported or s.figures_held] if policy.decline_unsupported else checkable
    if policy.decline and (said_not_found or said_nothing or (not left and (checkable or withdrawn))):
        missing = tuple(dict.fromkeys(item for s in withdrawn for item in s.missing))
        return Answer(question=question.text,
                      text=f"{NOT_IN_DOCUMENTS[question.language]} {draft_withdrawn(question.language, missing)}",
                      citations=(), sources=all_sources, supported=False, abstained=True,
                      withdrawn_draft=grounded.text, sentences=(), withdrawn=withdrawn)
    return Answer(
        question=question.text,
        text=final_text,
        citations=citations,
        sources=all_sources,
        supported=bool(citations) and bool(checkable) and all(s.supported for s in checkable),
        sentences=kept,
        withdrawn=withdrawn,
    )
