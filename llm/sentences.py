"""An answer's text cut into sentences, and its [n] citation markers read and rewritten.

Worked example::

    split_sentences("Run make [1]. It needs Python 3.11.\n```\nmake run\n```")
    -> [(0, 13), (14, 35), (36, 52)]     the marker stays with its sentence, "3.11" stays whole,
                                          the code block is one piece
    rewrite_markers("Port 8501 [2].", (2,), (1,))  -> "Port 8501 [1]."

Ends: 。！？； and .!? before a space, a marker or the end of the text, and every
line break. A "." followed by a lower-case word ("e.g. the") and a list number
("1. ") do not end a sentence. Passages (``wrapped_lines``): PDF text breaks
lines mid-sentence, so a single line break ends a sentence only before a blank
line, a list item or a heading.

Deliberately not here: whether a passage supports a sentence (``llm.grounding``),
the sentence cut used by the answer-support check (``llm.answer_support`` keeps
its own, with which its thresholds were measured).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Marker forms the models write: [1], [1][2], [1, 2], [1，2], 【1】.
MARKER = re.compile(r"[\[【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]】]")
_TRAILING_MARKERS = re.compile(r"(?:[ \t]*[\[【]\s*\d{1,3}(?:\s*[,，、]\s*\d{1,3})*\s*[\]】])+")
# A Latin end only counts before a space, a marker or the end, so "3.11" and "llama.cpp" stay whole.
_TERMINATOR = re.compile(r"[。！？；]+[”’」』）]*|[.!?]+[\"'”’)]*(?=\s|$|[\[【])|\n")
_CODE_FENCE = re.compile(r"^[ \t]*(```|~~~).*?(?:^[ \t]*\1[^\n]*$|\Z)", re.MULTILINE | re.DOTALL)
_BLOCK_START = re.compile(r"[ \t]*(?:\n|[-*+•#|>]|\d{1,3}[.)、]\s)")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in ``text``, trailing [n] markers included.

    Ends: 。！？； and .!? before a space, a marker or the end of the text, and
    every line break. A "." followed by a lower-case word ("e.g. the") and a
    list number ("1. ") do not end a sentence. A fenced code block is one piece.
    """
    return [(segment.start, segment.end) for segment in segments(text)]


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    claim: bool  # False for code blocks, headings, table rows, list introductions


def segments(text: str) -> list[Segment]:
    segments: list[Segment] = []
    position = 0
    for fence in _CODE_FENCE.finditer(text):
        segments += _prose_segments(text, position, fence.start())
        segments.append(Segment(fence.start(), fence.end(), claim=False))
        position = fence.end()
    return segments + _prose_segments(text, position, len(text))


def _prose_segments(text: str, start: int, end: int) -> list[Segment]:
    segments = []
    for s, e in sentence_spans(text, start, end):
        piece = text[s:e]
        line_start = text.rfind("\n", 0, s) + 1
        structural = (
            text[line_start:s].strip() == "" and piece.lstrip().startswith(("#", "|"))  # heading, table row
        ) or MARKER.sub("", piece).rstrip().endswith((":", "："))  # introduces a list
        segments.append(Segment(s, e, claim=not structural))
    return segments


def sentence_spans(text: str, start: int, end: int, wrapped_lines: bool = False) -> list[tuple[int, int]]:
    """Sentence spans; with ``wrapped_lines`` (passages: PDF text breaks lines mid-sentence) a
    single line break ends a sentence only before a blank line, a list item or a heading."""
    spans = []
    sentence_start = start
    for match in _TERMINATOR.finditer(text, start, end):
        if match.start() < sentence_start:
            continue  # inside markers already taken into the previous sentence
        stop = match.end()
        if match.group(0) == "\n":
            if wrapped_lines and not _BLOCK_START.match(text, stop, end):
                continue
        else:
            if match.group(0).startswith("."):
                line_start = max(text.rfind("\n", 0, match.start()) + 1, sentence_start)
                if re.fullmatch(r"\s*\d{1,3}", text[line_start : match.start()]):
                    continue  # "1. " numbers a list item
                if re.match(r"[ \t]*[a-z]", text[stop:end]):
                    continue  # "e.g. the", "etc. and": the sentence goes on
            markers = _TRAILING_MARKERS.match(text, stop, end)
            if markers:
                stop = markers.end()
        _add_span(spans, text, sentence_start, stop)
        sentence_start = stop
    _add_span(spans, text, sentence_start, end)
    return spans


def _add_span(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        offset = start + len(piece) - len(piece.lstrip())
        spans.append((offset, offset + len(stripped)))


def cited_numbers(sentence: str, sources: Mapping[int, object]) -> tuple[int, ...]:
    numbers = (int(n) for m in MARKER.finditer(sentence) for n in re.findall(r"\d+", m.group(1)))
    return tuple(dict.fromkeys(n for n in numbers if n in sources))


def rewrite_markers(sentence: str, before: tuple[int, ...], after: tuple[int, ...]) -> str:
    """Put ``after``'s markers where ``before``'s were: moved ones in place, dropped ones removed, new ones at the end."""
    to_place = [n for n in after if n not in before]
    placed: set[int] = set()

    def replace(match: re.Match[str]) -> str:
        out = []
        for number in (int(n) for n in re.findall(r"\d+", match.group(1))):
            if number in after and number not in placed:
                chosen = number
            elif number not in after and to_place:
                chosen = to_place.pop(0)
            else:
                continue
            if chosen not in placed:
                placed.add(chosen)
                out.append(f"[{chosen}]")
        return "".join(out)

    rewritten = MARKER.sub(replace, sentence)
    rewritten = re.sub(r"[ \t]+([.。,，;；!！?？])", r"\1", rewritten)  # space a removed marker left before punctuation
    missing = [n for n in after if n not in placed]
    if missing:
        markers = "".join(f"[{n}]" for n in missing)
        end = re.search(r"[.!?。！？；]+[\"'”’)」』）]*$", rewritten)
        cut = end.start() if end else len(rewritten)
        body = rewritten[:cut].rstrip()
        separator = "" if body and _CJK.match(body[-1]) else " "
        rewritten = body + separator + markers + rewritten[cut:]
    return rewritten
