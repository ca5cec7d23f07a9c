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

Deliberately not here: semantic or layout-aware chunking, tables, merging tiny
sections across headings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.documents import Chunk, Page

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

# LangChain warns for every over-size piece; the docstring above says why it is fine.
logging.getLogger("langchain_text_splitters.base").setLevel(logging.ERROR)


class Chunker:
    """Turns pages into chunks of at most ``chunk_tokens`` tokens (see module doc)."""

    def __init__(self, count_tokens: Callable[[str], int], chunk_tokens: int, overlap_tokens: int) -> None:
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
        for piece in self._splitter.split_text(page.text):
            # The splitter returns substrings of the page text in order; find each
            # one at or after the previous start to get its exact offset.
            start = page.text.find(piece, cursor)
            if start < 0:  # cannot happen with these separators; never index text we cannot cite
                continue
            cursor = start + 1
            result.append(
                Chunk(
                    source=page.source,
                    page=page.page,
                    heading_path=page.heading_path,
                    start_char=page.start_char + start,
                    end_char=page.start_char + start + len(piece),
                    text=piece,
                    ocr=page.ocr,
                )
            )
        return result
