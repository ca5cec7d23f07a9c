"""Split pages into chunks sized in the embedder's own tokens.

LangChain's ``RecursiveCharacterTextSplitter`` does the splitting; this module
only chooses the separators and recovers exact character offsets. Separators,
coarsest first:

1. blank lines (paragraphs), then single newlines;
2. Chinese sentence ends ``。！？；`` and English ones (``. ! ? ;`` before a space);
3. clause marks ``，、,：:``;
4. whitespace between words;
5. the boundary after a CJK character, so a long run of Chinese without
   punctuation can still be cut, between two Chinese characters.

There is no "split anywhere" fallback: an English word is never cut. A single
"word" longer than the chunk size (a long URL, a base64 blob) stays whole in an
over-size chunk; the embedder truncates it, which costs only that chunk.

Sizes are counted with the embedder's tokenizer when it has one, so a 256-token
chunk is 256 tokens for Chinese and English alike (a character count would make
Chinese chunks three times longer in tokens than English ones).

Tables (Markdown tables: from Markdown files, Word and HTML converted to
Markdown, and PDF tables rebuilt by ``ingest.tables``) are cut between rows,
never inside one, and every part starts with the table's caption (the one or two
short lines right above it) and its heading row, so a figure in any part can be
read with its row label and column heading. The first part is a plain slice of
the page; later parts repeat caption and heading in their text, and their
offsets span their own rows.

Deliberately not here: semantic or layout-aware chunking of prose, merging tiny
sections across headings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from langchain_text_splitters import RecursiveCharacterTextSplitter

from core.types import Chunk, Page
from text.table_format import TABLE_RULE

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
SEPARATORS = [
    r"\n[ \t]*\n",
    r"\n",
    r"[。！？；]",
    r"(?<=[.!?;])\s+",
    r"[，、,：:]",
    r"\s+",
    rf"(?<=[{_CJK}])",
]

CAPTION_MAX_CHARS = 300

# LangChain warns for every over-size piece; the docstring above says why it is fine.
logging.getLogger("langchain_text_splitters.base").setLevel(logging.ERROR)


class Chunker:
    """Turns pages into chunks of at most ``chunk_tokens`` tokens (see module doc)."""

    def __init__(self, count_tokens: Callable[[str], int], chunk_tokens: int, overlap_tokens: int) -> None:
        self._count = count_tokens
        self._chunk_tokens = chunk_tokens
        if chunk_tokens < 16:
            raise ValueError(f"chunk size must be at least 16 tokens, got {chunk_tokens}")
        if not 0 <= overlap_tokens < chunk_tokens:
            raise ValueError(f"chunk overlap must be between 0 and the chunk size, got {overlap_tokens}")
        self._splitter = RecursiveCharacterTextSplitter(
            separators=SEPARATORS,
            is_separator_regex=True,
            keep_separator="end",  # the full stop stays with its sentence
            chunk_size=chunk_tokens,
            chunk_overlap=overlap_tokens,
            length_function=count_tokens,
            strip_whitespace=True,
        )

    def chunk(self, pages: Iterable[Page]) -> list[Chunk]:
        chunks: list[Chunk] = []
        for page in pages:
            chunks.extend(self._chunk_page(page))
        return chunks

    def _chunk_page(self, page: Page) -> list[Chunk]:
        result: list[Chunk] = []
        cursor = 0
        for caption_start, table_start, rows, table_end in table_spans(page.text):
            result.extend(self._prose(page, cursor, caption_start))
            result.extend(self._table(page, caption_start, table_start, rows))
            cursor = table_end
        result.extend(self._prose(page, cursor, len(page.text)))
        return result

    def _prose(self, page: Page, start: int, end: int) -> list[Chunk]:
        result: list[Chunk] = []
        text = page.text[start:end]
        cursor = 0
        for piece in self._splitter.split_text(text):
            # The splitter returns substrings of the text in order; find each
            # one at or after the previous start to get its exact offset.
            found = text.find(piece, cursor)
            if found < 0:  # cannot happen with these separators; never index text we cannot cite
                continue
            cursor = found + 1
            result.append(self._make(page, start + found, piece))
        return result

    def _table(self, page: Page, caption_start: int, table_start: int, rows: list[tuple[int, int]]) -> list[Chunk]:
        """Parts of a table within the chunk size, each with the caption and heading row (see module doc)."""
        text = page.text
        head = text[table_start : rows[0][0]].rstrip("\n") if rows else text[table_start:].rstrip("\n")
        caption = text[caption_start:table_start].strip()
        prefix = f"{caption}\n\n{head}" if caption else head
        # Rows get at least three quarters of the chunk size: a long heading row must not leave room for one row
        # only. A part can so exceed the chunk size by its prefix (within the embedder's 512 tokens).
        budget = max(self._chunk_tokens - self._count(prefix), self._chunk_tokens * 3 // 4)
        result: list[Chunk] = []
        group: list[tuple[int, int]] = []
        used = 0
        for row in rows:
            cost = self._count(text[row[0] : row[1]]) + 1
            if group and used + cost > budget:
                result.append(self._table_part(page, caption_start, prefix, group, first=not result))
                group, used = [], 0
            group.append(row)
            used += cost
        if group or not result:
            result.append(self._table_part(page, caption_start, prefix, group, first=not result))
        return result

    def _table_part(self, page: Page, caption_start: int, prefix: str, rows: list[tuple[int, int]], *, first: bool) -> Chunk:
        if first:  # a plain slice: caption, heading and the first rows are contiguous
            end = rows[-1][1] if rows else caption_start + len(page.text[caption_start:].split("\n\n", 1)[0])
            raw = page.text[caption_start:end]
            start = caption_start + len(raw) - len(raw.lstrip())
            return self._make(page, start, page.text[start:end].rstrip())
        body = page.text[rows[0][0] : rows[-1][1]]
        chunk = self._make(page, rows[0][0], body)
        return Chunk(chunk.source, chunk.page, chunk.heading_path, chunk.start_char, chunk.end_char,
                     f"{prefix}\n{body}", chunk.ocr)

    @staticmethod
    def _make(page: Page, offset: int, piece: str) -> Chunk:
        """A chunk of ``piece``, which stands at ``offset`` in the page's text."""
        return Chunk(
            source=page.source,
            page=page.page,
            heading_path=page.heading_path,
            start_char=page.start_char + offset,
            end_char=page.start_char + offset + len(piece),
            text=piece,
            ocr=page.ocr,
        )


def table_spans(text: str) -> list[tuple[int, int, list[tuple[int, int]], int]]:
    """Markdown tables in ``text``: (caption start, heading row start, [(row start, row end)], table end).

    The caption is the one or two short non-empty lines right above the heading row (a table's title
    and its "(in millions)" line); without them, the caption start is the heading row's start.
    """
    lines: list[tuple[int, int]] = []  # (start, end without the newline)
    position = 0
    for line in text.splitlines(keepends=True):
        lines.append((position, position + len(line.rstrip("\r\n"))))
        position += len(line)
    spans = []
    index = 1
    while index < len(lines):
        start, end = lines[index]
        header_start, header_end = lines[index - 1]
        if not (TABLE_RULE.match(text[start:end]) and "|" in text[header_start:header_end]):
            index += 1
            continue
        rows = []
        cursor = index + 1
        while cursor < len(lines) and "|" in text[lines[cursor][0] : lines[cursor][1]] and text[lines[cursor][0] : lines[cursor][1]].strip():
            rows.append(lines[cursor])
            cursor += 1
        caption_start = header_start
        taken = 0
        probe = index - 2
        while probe >= 0 and taken < 2:
            line_start, line_end = lines[probe]
            line = text[line_start:line_end].strip()
            if not line:
                if taken:
                    break
                probe -= 1
                continue
            if "|" in line or header_start - line_start > CAPTION_MAX_CHARS:
                break
            caption_start, taken = line_start, taken + 1
            probe -= 1
        if spans and caption_start < spans[-1][3]:
            caption_start = header_start  # never reach back into the previous table
        table_end = rows[-1][1] if rows else end
        spans.append((caption_start, header_start, rows, table_end))
        index = cursor
    return spans
