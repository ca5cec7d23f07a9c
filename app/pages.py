"""Showing what an answer cites: the PDF page with the supporting words highlighted, a text document's
section, a document's passages as the index holds them, and the original file.

Offsets. A highlight is asked for in offsets into the page's indexed text: a chunk's ``start_char`` and
``end_char`` are such offsets, and ``page_spans`` turns spans of a citation's passage (what
``Answer.supported_spans`` gives) into them. The boxes those offsets cover were measured when the file
was indexed (``ingest.layout``, kept by ``retrieval.page_layouts``).

Never a wrong highlight: the page is drawn from the file the collection was indexed from only while that
file still has the indexed content (its SHA-256 is checked; the hash is remembered per size and
modification time). A moved or changed file gives ``OriginalUnavailableError``; a collection indexed
before layouts were kept shows the page without highlights and says why (``ShownPage.note``).

Worked example::

    viewer = pipeline.viewer()
    citation = answer.citations[0]
    shown = viewer.page_image(citation.source, citation.page,
                              spans=page_spans(citation, answer.supported_spans(citation.number)),
                              passage=(citation.start_char, citation.end_char))
    Path("page.png").write_bytes(shown.png)

Deliberately not here: drawing (``ingest.page_images``), who may see a collection (``team.permissions``:
callers check before they ask), a disk cache of images (a bounded one in memory serves a team).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from app.results import DocumentPassage, DocumentSection, ShownPage
from core.errors import KbError
from core.files import file_sha256
from core.types import Chunk, Citation, TextBox
from ingest.page_images import LIGHT, STRONG, Highlight, PageImageError, render_page
from retrieval import page_layouts
from retrieval.backend import CollectionStore
from retrieval.manifest import IndexedFile
from retrieval.page_layouts import DocumentPages

Span = tuple[int, int]
MAX_WIDTH = 2000  # pixels: the widest page image anyone may ask for
KEPT_DOCUMENTS = 16  # documents whose layouts stay read


class UnknownDocumentError(KbError, LookupError):
    """No document of that name in the collection, or no such page."""


class OriginalUnavailableError(KbError):
    """The file the collection was indexed from is gone or has changed since."""


def passage_offset(chunk: Chunk | Citation) -> int:
    """Characters at the start of a passage that are not its own text on the page.

    The later parts of a long table repeat its caption and heading row before their rows
    (``ingest.chunking``); their offsets span their own rows only.
    """
    return max(0, len(chunk.text if isinstance(chunk, Chunk) else chunk.passage) - (chunk.end_char - chunk.start_char))


def page_spans(citation: Citation, spans: Sequence[Span]) -> tuple[Span, ...]:
    """Spans of a citation's passage as offsets into its page's text (a repeated table heading left out)."""
    skip = passage_offset(citation)
    moved = []
    for start, end in spans:
        if end > skip:
            moved.append((citation.start_char + max(start, skip) - skip, citation.start_char + end - skip))
    return tuple(moved)


class DocumentViewer:
    """Pages, passages, sections and originals of one collection's documents."""

    def __init__(self, folder: Path, collection: Callable[[], CollectionStore], passwords: Sequence[str] = (),
                 cache_size: int = 64) -> None:
        self._folder = folder
        self._collection = collection
        self._passwords = tuple(passwords)
        self._lock = threading.Lock()
        self._images: OrderedDict[tuple, ShownPage] = OrderedDict()
        self._cache_size = cache_size
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._documents: OrderedDict[IndexedFile, DocumentPages | None] = OrderedDict()

    # ----- what was kept ----------------------------------------------------------
    def _indexed(self, source: str) -> IndexedFile:
        indexed = self._collection().files.get(source)
        if indexed is None:
            raise UnknownDocumentError(f"no document {source!r} in this collection")
        return indexed

    def _kept(self, source: str, indexed: IndexedFile | None = None) -> tuple[DocumentPages | None, str]:
        """What was kept of ``source`` (read once per indexed version: reading a long PDF's takes ~30 ms)."""
        indexed = indexed or self._indexed(source)
        with self._lock:
            if indexed in self._documents:
                self._documents.move_to_end(indexed)
                return self._documents[indexed], indexed.content_sha256
        kept = page_layouts.read(self._folder, indexed)
        with self._lock:
            self._documents[indexed] = kept
            while len(self._documents) > KEPT_DOCUMENTS:
                self._documents.popitem(last=False)
        return kept, indexed.content_sha256

    def original(self, source: str) -> Path:
        """The file ``source`` was indexed from, when it is still there with the indexed content."""
        return self._original(source, *self._kept(source))

    def _original(self, source: str, kept: DocumentPages | None, content_sha256: str) -> Path:
        if kept is None or kept.file is None:
            raise OriginalUnavailableError(
                f"where {source!r} was read from is not known (indexed before this was kept, or not from a file); "
                "run `kb ingest` to read it again")
        path = kept.file
        try:
            stat = path.stat()
        except OSError:
            raise OriginalUnavailableError(f"the file {source!r} was indexed from is no longer at {path}") from None
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            digest = self._hashes.get(key)
        if digest is None:
            digest = file_sha256(path)
            with self._lock:
                self._hashes[key] = digest
        if digest != content_sha256:
            raise OriginalUnavailableError(
                f"{path} has changed since {source!r} was indexed; run `kb ingest` to index it again")
        return path

    # ----- passages and sections --------------------------------------------------
    def passages(self, source: str) -> tuple[DocumentPassage, ...]:
        """The document's passages as the index holds them, in reading order, with their boxes on the page."""
        kept, _ = self._kept(source)
        collection = self._collection()
        ids = collection.chunk_ids_of([source])
        layouts = kept.layouts if kept else {}
        shown = []
        for chunk_id in ids:
            chunk = collection.chunk(chunk_id)
            layout = layouts.get(chunk.page) if chunk.page is not None else None
            boxes = layout.boxes_for(chunk.start_char, chunk.end_char) if layout else ()
            shown.append(DocumentPassage(chunk_id, chunk.page, chunk.heading_path, chunk.start_char, chunk.end_char,
                                         chunk.text, chunk.ocr, boxes))
        return tuple(sorted(shown, key=lambda p: (p.page or 0, p.start_char)))

    def section(self, source: str, start_char: int, end_char: int) -> DocumentSection:
        """The section (same heading path) around the passage at ``start_char``..``end_char``, from the index."""
        chunks = sorted(self._collection().chunks_of(source), key=lambda c: c.start_char)
        cited = next((c for c in chunks if (c.start_char, c.end_char) == (start_char, end_char)), None)
        if cited is None:
            raise UnknownDocumentError(f"no passage at {start_char}-{end_char} in {source!r}")
        text, cursor, passage = "", None, (0, 0)
        for chunk in (c for c in chunks if c.heading_path == cited.heading_path and c.page == cited.page):
            own = chunk.text[passage_offset(chunk):]
            if cursor is not None and chunk.start_char < cursor:  # overlapping chunks: only what is new
                own = own[cursor - chunk.start_char:]
                begins = len(text) - (cursor - chunk.start_char)
            else:
                if text:
                    text += "\n"
                begins = len(text)
            if chunk is cited:
                passage = (begins, begins + chunk.end_char - chunk.start_char)
            text += own
            cursor = max(cursor or 0, chunk.end_char)
        return DocumentSection(source, cited.heading_path, text, *passage)

    # ----- pages ------------------------------------------------------------------
    def page_image(self, source: str, page: int, *, spans: Sequence[Span] = (), passage: Span | None = None,
                   max_width: int = 1000) -> ShownPage:
        """Page ``page`` of a PDF with ``spans`` (page-text offsets) highlighted strongly, ``passage`` lightly."""
        if not 100 <= max_width <= MAX_WIDTH:
            raise ValueError(f"width must be between 100 and {MAX_WIDTH} pixels, not {max_width}")
        indexed = self._indexed(source)
        if not source.lower().endswith(".pdf"):
            raise UnknownDocumentError(f"{source!r} is not a PDF: it has sections, not pages")
        key = (source, indexed.content_sha256, page, tuple(sorted(spans)), passage, max_width)
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        kept, _ = self._kept(source, indexed)
        path = self._original(source, kept, indexed.content_sha256)
        layout = kept.layouts.get(page) if kept else None
        strong: tuple[TextBox, ...] = ()
        light: tuple[TextBox, ...] = ()
        note = ""
        if spans or passage:
            if layout is None:
                note = ("where the text lies on this page was not kept (indexed before it was, or unreadable); "
                        "run `kb ingest` to read the file again")
            else:
                strong = tuple(dict.fromkeys(box for start, end in spans for box in layout.boxes_for(start, end)))
                chosen = set(strong)
                light = tuple(box for box in (layout.boxes_for(*passage) if passage else ()) if box not in chosen)
                if not strong and not light:
                    note = "the cited words could not be placed on the page (a rebuilt table or reordered text)"
        try:
            image = render_page(path, page, [*(Highlight(b, LIGHT) for b in light), *(Highlight(b, STRONG) for b in strong)],
                                max_width=max_width, passwords=self._passwords)
        except PageImageError as exc:
            raise UnknownDocumentError(str(exc)) from exc
        shown = ShownPage(source, page, image.page_count, image.png, image.width, image.height, len(strong), len(light),
                          note)
        with self._lock:
            self._images[key] = shown
            while len(self._images) > self._cache_size:
                self._images.popitem(last=False)
        return shown
