"""Where a PDF page's indexed text lies on the page: a box for every word (every Chinese character).

The text a page is indexed with comes from pypdf (tables rebuilt by ``ingest.tables``), from pdfium
(a damaged or garbled text layer read again) or from OCR. The boxes come from pdfium's character
boxes of the same page, and are tied to the indexed text by aligning the two character sequences:

    indexed text   "Net sales  were $94,836"      (whitespace ignored on both sides)
    pdfium chars    N e t s a l e s w e r e $ 9 4 , 8 3 6    each with its box

Both sides are compared without whitespace and after NFKC (a ligature "ﬁ" is "fi"); equal runs are
matched, and after a difference the two sides are brought back in step at the next place where
``ANCHOR`` characters agree; a stretch left over is then looked for among the other side's left-overs
(blocks read in another order: columns, the lines of a turned page). A character that is not matched gets no box: a rebuilt table's "|" and
"---", or cells that pypdf and pdfium read in a different order. So a highlight can miss words, but
never lands on the wrong ones.

A box is one word on one line (the characters between two spaces of the indexed text that lie on
one line), or one Chinese, Japanese or Korean character, whose text has no spaces to cut at.
Coordinates are fractions of the page as displayed (crop box, rotation applied, origin top left),
computed with pdfium's own page-to-device transform, so they hold for rotated and cropped pages.

OCR'd pages get their boxes from the OCR's own line boxes (``ingest.ocr``), one per line.

Worked example::

    layouts = pdf_layouts(Path("q2.pdf"), None, {4: page_four_text})
    layouts[4].boxes_for(120, 160)     # the boxes of characters 120..160 of page 4's text

Cost: one pass over pdfium's characters per page (docs/benchmarks.md, "Showing the cited page").

Deliberately not here: rendering (``ingest.page_images``), storing layouts (``retrieval.page_layouts``),
vertical Chinese text (read top to bottom it is still boxed per character, but untested).
"""

from __future__ import annotations

import ctypes
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from core.types import PageLayout, TextBox
from text.table_format import TABLE_ROW, TABLE_RULE

ANCHOR = 6  # characters that must agree to bring the two sides back in step after a difference
WINDOW = 4000  # how far ahead (characters) a side may be skipped to find the anchor
NEAR = 2  # a short stretch of matches counts only between others at most this many characters away
BLOCK_ANCHOR = 12  # characters that place a block read in another order: long enough to be one place only

Box = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the displayed page
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


class LayoutError(Exception):
    """pdfium could not open the file or a page."""


def pdf_layouts(path: Path, password: str | None, texts: Mapping[int, str]) -> dict[int, PageLayout]:
    """The layout of each page ``number -> its indexed text`` (1-based numbers) of the PDF at ``path``."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(str(path), password=password)
    except Exception as exc:  # PdfiumError for damaged or locked files
        raise LayoutError(str(exc)) from exc
    layouts = {}
    try:
        for number, text in texts.items():
            if not 1 <= number <= len(document):
                continue
            page = document[number - 1]
            try:
                textpage = page.get_textpage()
                try:
                    chars = list(_page_characters(page, textpage))
                finally:
                    textpage.close()
                # Text runs across a page as drawn; on a page turned a quarter it runs down (or up) the display.
                across = page.get_rotation() in (0, 180)
                layouts[number] = PageLayout(width=float(page.get_width()), height=float(page.get_height()),
                                             boxes=text_boxes(text, chars, across=across))
            finally:
                page.close()
    finally:
        document.close()
    return layouts


def _page_characters(page, textpage) -> Iterator[tuple[str, Box]]:
    """pdfium's characters of the page with their boxes in displayed fractions; whitespace left out."""
    import pypdfium2.raw as raw

    to_display = _display_transform(page, raw)
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    for index in range(textpage.count_chars()):
        code = raw.FPDFText_GetUnicode(textpage.raw, index)
        if not code or code > 0x10FFFF:
            continue
        character = chr(code)
        if character.isspace() or unicodedata.category(character) in ("Cc", "Cf"):
            continue
        if not raw.FPDFText_GetCharBox(textpage.raw, index, ctypes.byref(left), ctypes.byref(right),
                                       ctypes.byref(bottom), ctypes.byref(top)):
            continue
        x0, y0 = to_display(left.value, top.value)
        x1, y1 = to_display(right.value, bottom.value)
        yield character, (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _display_transform(page, raw):
    """Page space -> fractions of the displayed page: pdfium's own transform (crop box and rotation)."""
    size = 1_000_000  # device pixels: the transform returns integers, so a large device keeps precision
    x, y = ctypes.c_int(), ctypes.c_int()

    def device(px: float, py: float) -> tuple[float, float]:
        raw.FPDF_PageToDevice(page.raw, 0, 0, size, size, 0, px, py, ctypes.byref(x), ctypes.byref(y))
        return x.value / size, y.value / size

    # The transform is affine: three points give it, and the rest is arithmetic.
    ox, oy = device(0.0, 0.0)
    ax, ay = device(1000.0, 0.0)
    bx, by = device(0.0, 1000.0)
    return lambda px, py: (ox + (ax - ox) * px / 1000 + (bx - ox) * py / 1000,
                           oy + (ay - oy) * px / 1000 + (by - oy) * py / 1000)


def _comparable(characters: Iterator[tuple[str, object]]) -> tuple[str, list[object]]:
    """The characters without whitespace, NFKC-normalised, each with what it came from (its offset or box)."""
    letters, origins = [], []
    for character, origin in characters:
        if character.isspace():
            continue
        for letter in unicodedata.normalize("NFKC", character):
            if not letter.isspace():
                letters.append(letter)
                origins.append(origin)
    return "".join(letters), origins


def align(first: str, second: str) -> list[tuple[int, int]]:
    """Pairs (i, j) of equal characters of ``first`` and ``second``, each character in at most one pair.

    First in order of both (``_in_step``); then each stretch of ``first`` left over that starts with
    ``BLOCK_ANCHOR`` characters found among ``second``'s left-overs is matched there: a block the two
    read in another order (columns, or a turned page whose lines pdfium reads from the other end).
    """
    pairs = _in_step(first, second)
    used = {j for _, j in pairs}
    matched = {i for i, _ in pairs}
    rest = [j for j in range(len(second)) if j not in used]
    rest_text = "".join(second[j] for j in rest)
    start = 0
    while start < len(first):
        if start in matched:
            start += 1
            continue
        end = start
        while end < len(first) and end not in matched:
            end += 1
        segment = first[start:end]
        at = rest_text.find(segment[:BLOCK_ANCHOR]) if len(segment) >= BLOCK_ANCHOR else -1
        if at >= 0:
            for i, j in _in_step(segment, rest_text[at:at + len(segment) + WINDOW]):
                if rest[at + j] not in used:
                    pairs.append((start + i, rest[at + j]))
                    used.add(rest[at + j])
        start = end
    return sorted(pairs)


def _in_step(first: str, second: str) -> list[tuple[int, int]]:
    """Equal stretches matched as they come; at a difference, whichever side reaches the other's next
    ``ANCHOR`` characters with the shorter skip (within ``WINDOW``) is skipped, else one character of each."""
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < len(first) and j < len(second):
        if first[i] == second[j]:
            pairs.append((i, j))
            i += 1
            j += 1
            continue
        anchor_first = first[i:i + ANCHOR]
        anchor_second = second[j:j + ANCHOR]
        in_second = second.find(anchor_first, j, j + WINDOW) if len(anchor_first) == ANCHOR else -1
        in_first = first.find(anchor_second, i, i + WINDOW) if len(anchor_second) == ANCHOR else -1
        if in_second >= 0 and (in_first < 0 or in_second - j <= in_first - i):
            j = in_second
        elif in_first >= 0:
            i = in_first
        else:
            i += 1
            j += 1
    return _without_stray_stretches(pairs)


def _without_stray_stretches(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drops a stretch of fewer than ``ANCHOR`` matches that a skip of more than ``NEAR`` characters
    separates from what precedes or follows it: "The" of one line matched to "The" of another."""
    stretches: list[list[tuple[int, int]]] = []
    for pair in pairs:
        if stretches and pair == (stretches[-1][-1][0] + 1, stretches[-1][-1][1] + 1):
            stretches[-1].append(pair)
        else:
            stretches.append([pair])
    kept: list[tuple[int, int]] = []
    for index, stretch in enumerate(stretches):
        if len(stretch) < ANCHOR:
            before = stretches[index - 1][-1] if index else (-1, -1)
            after = stretches[index + 1][0] if index + 1 < len(stretches) else None
            near_before = max(stretch[0][0] - before[0], stretch[0][1] - before[1]) <= NEAR + 1
            near_after = after is not None and max(after[0] - stretch[-1][0], after[1] - stretch[-1][1]) <= NEAR + 1
            if not (near_before and near_after):
                continue
        kept.extend(stretch)
    return kept


def text_boxes(text: str, characters: Sequence[tuple[str, Box]], *, across: bool = True) -> tuple[TextBox, ...]:
    """The boxes of ``text``'s words, from the positioned ``characters`` of the same page (see the module)."""
    table_marks = table_syntax(text)
    ours, offsets = _comparable((character, offset) for offset, character in enumerate(text)
                                if offset not in table_marks)
    theirs, boxes = _comparable(iter(characters))
    box_at: dict[int, Box] = {}
    for i, j in align(ours, theirs):
        box_at.setdefault(offsets[i], boxes[j])  # a ligature's letters share one box: keep the first
    placed: list[TextBox] = []
    for word in re.finditer(r"\S+", text):
        placed.extend(_word_boxes(word.start(), word.group(), box_at, across))
    return tuple(placed)


def table_syntax(text: str) -> set[int]:
    """Offsets of a rebuilt table's "|" and rule lines (``text.table_format``): written by us, not on the page."""
    offsets: set[int] = set()
    position = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if TABLE_RULE.match(body):
            offsets.update(range(position, position + len(body)))
        elif TABLE_ROW.match(body):
            offsets.update(position + i for i, character in enumerate(body) if character == "|")
        position += len(line)
    return offsets


def _word_boxes(start: int, word: str, box_at: Mapping[int, Box], across: bool) -> Iterator[TextBox]:
    """One box per line a word's placed characters lie on; a Chinese character is a box of its own."""
    run: list[tuple[int, Box]] = []
    for offset in range(start, start + len(word)):
        box = box_at.get(offset)
        if box is None:
            continue
        if run and (_CJK.match(word[offset - start]) or _CJK.match(word[run[-1][0] - start])
                    or not _continues(run[-1][1], box, across)):
            yield _merged(run)
            run = []
        run.append((offset, box))
    if run:
        yield _merged(run)


def _continues(before: Box, after: Box, across: bool) -> bool:
    """``after`` lies on ``before``'s line: their extents across the line's direction overlap by half."""
    low, high = (1, 3) if across else (0, 2)
    overlap = min(before[high], after[high]) - max(before[low], after[low])
    return overlap >= 0.5 * min(before[high] - before[low], after[high] - after[low])


def _merged(run: list[tuple[int, Box]]) -> TextBox:
    return TextBox(start=run[0][0], end=run[-1][0] + 1, left=min(b[0] for _, b in run), top=min(b[1] for _, b in run),
                   right=max(b[2] for _, b in run), bottom=max(b[3] for _, b in run))


def line_boxes(lines: Sequence[tuple[str, Box]]) -> tuple[str, tuple[TextBox, ...]]:
    """Text joined from lines (OCR's) and a box per line: ``("a\\nb", (box of a, box of b))``."""
    text, placed = "", []
    for line, box in lines:
        if text:
            text += "\n"
        placed.append(TextBox(len(text), len(text) + len(line), *box))
        text += line
    return text, tuple(placed)
