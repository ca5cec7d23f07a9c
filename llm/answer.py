"""Turn generated text into an ``Answer`` whose [n] markers point at passages that say what is claimed.

Worked example, with sources [1] guide.pdf p.2 "Run `make run` to install." and
[2] readme.md › Install "It needs Python 3.11." in the prompt::

    "Run make run [1]. It needs Python 3.11 [2][7]. It also needs Rust."
    -> text      "Run make run [1]. It needs Python 3.11 [2]. It also needs Rust."
       citations (1 -> guide.pdf p.2, 2 -> readme.md › Install)
       sentences "Run make run [1]."          supported, evidence [1] chars 0-26
                 "It needs Python 3.11 [2]."  supported, evidence [2] chars 0-21
                 "It also needs Rust."        flagged: no passage says it

Marker forms the models actually write are understood: ``[1]``, ``[1][2]``,
``[1, 2]``, ``[1，2]`` and full-width ``【1】``. Numbers that name no source are
removed from the text, so the user never sees a citation that leads nowhere.

Then every sentence is grounded (``llm.grounding``): a marker whose passage
does not support its sentence moves to a passage that does, a supported
sentence without a marker gets one, and a sentence no passage supports is
flagged in ``Answer.sentences`` so the UI can show it as not found in the
sources. ``grounded_share`` is the share of checkable sentences that are
supported.

A sentence whose figure stands in a cited table's row other than the one that
holds the question's measure is flagged too (``llm.figures``).

Deliberately not here: the support test itself (``llm.grounding``), deciding to
abstain. An answer with no valid citation is flagged ``supported=False`` so the
UI can say so; it is not hidden.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from core.types import Answer, Citation, Question, Source
from llm.figures import figures_in_right_rows
from llm.grounding import GroundedText, ground
from llm.sentences import MARKER


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


def _without_headers(grounded: GroundedText, lengths: Mapping[int, int]) -> GroundedText:
    """Evidence offsets into header + passage, turned into offsets into the passage (evidence in the header dropped)."""
    sentences = []
    for sentence in grounded.sentences:
        evidence = []
        for item in sentence.evidence:
            shift = lengths.get(item.source_number, 0)
            if item.end_char > shift:
                evidence.append(replace(item, start_char=max(0, item.start_char - shift), end_char=item.end_char - shift))
        sentences.append(replace(sentence, evidence=tuple(evidence)))
    return GroundedText(grounded.text, tuple(sentences))


def make_answer(question: Question, generated: str, sources: Sequence[Source]) -> Answer:
    """Keep valid [n] markers, drop the others, ground each sentence, and list what is cited."""
    by_number = {source.number: citation_from_source(source) for source in sources}

    def keep_valid(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        return "".join(f"[{n}]" for n in dict.fromkeys(numbers) if n in by_number)

    text = MARKER.sub(keep_valid, generated)
    text = re.sub(r"[ \t]+([.。,，;；!！?？])", r"\1", text).strip()  # space left before punctuation by a removed marker
    # Grounding reads the text the model was shown (a prefix of the chunk when the prompt
    # shortened it), so evidence offsets hold for the chunk text too. The source's header (its document's
    # organisation and period) was shown as well: a period stated only there counts, its offsets are taken off.
    headers = {source.number: source.hit.chunk.header + "\n" if source.hit.chunk.header else "" for source in sources}
    grounded = ground(text, {source.number: headers[source.number] + source.text for source in sources},
                      given=question.stated_numbers)
    if any(headers.values()):
        grounded = _without_headers(grounded, {number: len(header) for number, header in headers.items()})
    # A figure copied from the wrong row of a cited table (cost of sales for net sales) is not supported.
    shown = {source.number: source.text for source in sources}
    grounded = GroundedText(grounded.text, tuple(
        replace(sentence, supported=False, evidence=())
        if sentence.supported and not all(figures_in_right_rows(question, sentence.text, shown[n])
                                          for n in sentence.citations if n in shown)
        else sentence
        for sentence in grounded.sentences
    ))
    cited = {n for sentence in grounded.sentences for n in sentence.citations}
    citations = tuple(by_number[n] for n in sorted(cited))
    return Answer(
        question=question.text,
        text=grounded.text,
        citations=citations,
        sources=tuple(by_number[n] for n in sorted(by_number)),
        supported=bool(citations),
        sentences=grounded.sentences,
    )

