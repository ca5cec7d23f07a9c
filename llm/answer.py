"""Turn generated text into an ``Answer`` whose [n] markers point at real passages.

Worked example, with sources [1] and [2] in the prompt::

    "Run make run [1]. It needs Python 3.11 [2][7]."
    -> text      "Run make run [1]. It needs Python 3.11 [2]."
       citations (1 -> guide.pdf p.2, 2 -> readme.md › Install)

Marker forms the models actually write are understood: ``[1]``, ``[1][2]``,
``[1, 2]``, ``[1，2]`` and full-width ``【1】``. Numbers that name no source are
removed from the text, so the user never sees a citation that leads nowhere.

Small models often cite the wrong number ("port 8501 [3]" when the port is in
[2]). Each claim (the text before a group of markers) is therefore checked
against every source by keyword overlap: when the cited source shares clearly
fewer of the claim's keywords than another source does, the marker is moved to
that source. The thresholds are conservative, so a correct citation is left alone.

Deliberately not here: entailment checking (a source sharing the words is not
proof it supports the claim), deciding to abstain. An answer with no valid
citation is flagged ``supported=False`` so the UI can say so; it is not hidden.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ingest.documents import describe_location
from llm.prompt import Source
from retrieval.keywords import keyword_tokens

# A claim is the text since the previous marker group; re-pointing needs this much evidence:
REPOINT_MIN_SUPPORT = 0.5  # the better source holds at least half of the claim's keywords
REPOINT_MIN_GAIN = 0.25  # and a quarter more of them than the cited one
_MARKER = re.compile(r"[\[【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]】]")


@dataclass(frozen=True)
class Citation:
    """A source passage as the user sees it: file, page, the passage itself."""

    number: int
    source: str
    page: int | None
    heading_path: tuple[str, ...]
    start_char: int
    end_char: int
    passage: str
    score: float
    ocr: bool = False  # the passage was recognised from a page image and may contain OCR errors

    @property
    def location(self) -> str:
        return describe_location(self.source, self.page, self.heading_path)


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    citations: tuple[Citation, ...]  # the sources the text cites, by number
    sources: tuple[Citation, ...]  # every source the model was shown
    supported: bool  # False when the answer cites nothing (or there was nothing to cite)

    def citation(self, number: int) -> Citation | None:
        return next((c for c in self.citations if c.number == number), None)


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
    )


def make_answer(question: str, generated: str, sources: Sequence[Source]) -> Answer:
    """Keep valid [n] markers, drop the others, and list what is cited."""
    by_number = {source.number: citation_from_source(source) for source in sources}
    cited: dict[int, Citation] = {}

    def keep_valid(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        valid = [n for n in dict.fromkeys(numbers) if n in by_number]
        for number in valid:
            cited.setdefault(number, by_number[number])
        return "".join(f"[{n}]" for n in valid)

    text = _MARKER.sub(keep_valid, _repoint(generated, sources))
    text = re.sub(r"[ \t]+([.。,，;；!！?？])", r"\1", text).strip()  # space left before punctuation by a removed marker
    citations = tuple(sorted(cited.values(), key=lambda c: c.number))
    return Answer(
        question=question,
        text=text,
        citations=citations,
        sources=tuple(by_number[n] for n in sorted(by_number)),
        supported=bool(citations),
    )


def support(claim: str, passage: str) -> float:
    """Share of the claim's keywords that occur in the passage (0..1)."""
    claim_terms = set(keyword_tokens(claim))
    if not claim_terms:
        return 0.0
    return len(claim_terms & set(keyword_tokens(passage))) / len(claim_terms)


def _repoint(generated: str, sources: Sequence[Source]) -> str:
    """Move markers whose source clearly supports the claim less than another source does."""
    if len(sources) < 2:
        return generated
    passages = {source.number: source.text for source in sources}
    pieces: list[str] = []
    claim_start = 0
    for match in _MARKER.finditer(generated):
        claim = generated[claim_start : match.start()]
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        cited = [n for n in numbers if n in passages]
        replacement = match.group(0)
        if cited and keyword_tokens(claim):
            scores = {number: support(claim, text) for number, text in passages.items()}
            best = max(scores, key=lambda number: (scores[number], -number))
            cited_best = max(scores[n] for n in cited)
            if scores[best] >= REPOINT_MIN_SUPPORT and scores[best] - cited_best >= REPOINT_MIN_GAIN:
                replacement = f"[{best}]"
        pieces.append(generated[claim_start : match.start()] + replacement)
        claim_start = match.end()
    pieces.append(generated[claim_start:])
    return "".join(pieces)
