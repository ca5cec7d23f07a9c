"""The ingest data types: a file becomes pages, pages become chunks.

A ``Page`` is a run of text that shares one citation target: a PDF page, or one
heading section of a Markdown file. A ``Chunk`` is the unit that gets embedded and
cited; it never crosses a page, so every citation names exactly one page.

Offsets: ``start_char``/``end_char`` index into the text of the PDF page as
it was read (pypdf's text, or its tables rebuilt: ``ingest.tables``), or into
the whole decoded Markdown/text file. So ``page_text[start:end] == chunk.text``
holds for PDFs and ``file_text[start:end] == chunk.text`` for Markdown, and the
UI can highlight a passage in its context; except for the later parts of a long
table, whose text starts with the table's caption and heading row repeated
(``ingest.chunking``) while their offsets span their own rows.

Deliberately not here: reading files (``ingest.loaders``), splitting
(``ingest.chunking``), anything about vectors.
"""

from __future__ import annotations

from dataclasses import dataclass


def describe_location(source: str, page: int | None, heading_path: tuple[str, ...]) -> str:
    """Human-readable citation target: ``guide.pdf, page 3`` or ``guide.md › Install › GPU``."""
    if page is not None:
        return f"{source}, page {page}"
    if heading_path:
        return f"{source} › {' › '.join(heading_path)}"
    return source


@dataclass(frozen=True)
class Page:
    """Text that one citation can point at."""

    source: str  # path relative to the folder being ingested, with "/" separators
    page: int | None  # 1-based PDF page number; None for Markdown and text files
    text: str
    heading_path: tuple[str, ...] = ()  # Markdown headings above this section, outermost first
    start_char: int = 0  # where ``text`` starts in the file's text (0 for PDF pages)
    ocr: bool = False  # the text was recognised from the page image, not extracted


@dataclass(frozen=True)
class Chunk:
    """A passage that is embedded, retrieved and cited."""

    source: str
    page: int | None
    heading_path: tuple[str, ...]
    start_char: int
    end_char: int
    text: str
    ocr: bool = False  # from an OCR'd page: may hold recognition errors
    header: str = ""  # names the chunk's document ("2023 Q2 AAPL · Apple Inc. · quarter ended April 1, 2023")

    @property
    def chunk_key(self) -> str:
        """Stable identity within a collection: file, page and offset."""
        return f"{self.source}#p{self.page or 0}@{self.start_char}"

    @property
    def embedding_text(self) -> str:
        """What the embedder and the keyword index see: the document's header and the heading path give context.

        A chunk under "Installation > GPU" that only says "run make" would be
        unfindable by a question about GPU installation without its heading path,
        and a table row of Apple's Q2 filing by a question about "Apple's Q2 net
        sales" without its document's header (``ingest.records``). Users are shown
        ``text`` only.
        """
        context = [part for part in (self.header, " > ".join(self.heading_path)) if part]
        return "\n".join([*context, self.text]) if context else self.text

    @property
    def location(self) -> str:
        return describe_location(self.source, self.page, self.heading_path)


@dataclass(frozen=True)
class LoadedFile:
    """A file that was read: its pages and the hash of its bytes."""

    source: str
    content_sha256: str
    pages: tuple[Page, ...]
    warnings: tuple[str, ...] = ()  # problems that did not stop the file, e.g. a page OCR could not read
    title: str | None = None  # the title the file's metadata gives (PDF), if any


@dataclass(frozen=True)
class FileFailure:
    """A file that could not be used, with a reason a user can act on."""

    source: str
    reason: str
