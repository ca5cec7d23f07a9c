"""Each indexed file's page layouts and where it was read from, kept beside a collection.

One file per indexed file, named by what it was read from, so it never has to be rewritten::

    <collection>/pages/<content sha256>-<source digest>-r<reader version>.npz
        header   JSON: format, source, the file's path when read, its hash, reader version, page sizes
        page     int32[n]      page number of each box
        span     int32[n, 2]   start, end: offsets into that page's indexed text
        box      float32[n, 4] left, top, right, bottom as fractions of the page as displayed

A Markdown or Word file has a header and no boxes: it records where the original file was read from,
so it can be offered for download and its section shown again.

Written while a file is indexed, before the generation that lists it is made live, by an atomic rename:
a crash leaves at most a file no generation names, removed by the next ingest (``prune``). A file is
read through the manifest's ``IndexedFile`` (hash and reader version), so a layout from another read of
the same name is never used for this one; a collection built before layouts were kept has none until
``kb ingest`` reads its files again (``ingest.loaders.READER_VERSION``).

numpy's own format, ``allow_pickle=False``: nothing is unpickled.

Deliberately not here: computing layouts (``ingest.layout``), rendering (``ingest.page_images``),
checking that the file at the recorded path is still the one indexed (``app.pages``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.types import PageLayout, TextBox
from retrieval.manifest import IndexedFile

LAYOUTS_FORMAT = 1
FOLDER = "pages"


@dataclass(frozen=True)
class DocumentPages:
    """What a collection keeps of one indexed file for showing it: its layouts and its original's path."""

    source: str
    content_sha256: str
    file: Path | None  # where it was read from when indexed; None for documents that were text already
    layouts: Mapping[int, PageLayout]  # page number -> layout (PDF pages only)


def _name(source: str, content_sha256: str, reader_version: int) -> str:
    return f"{content_sha256}-{hashlib.sha256(source.encode()).hexdigest()[:16]}-r{reader_version}.npz"


def write(folder: Path, source: str, content_sha256: str, reader_version: int, file: Path | None,
          layouts: Mapping[int, PageLayout]) -> None:
    """Keep ``layouts`` of one file read (``folder`` is the collection's folder)."""
    rows = [(number, box) for number, layout in sorted(layouts.items()) for box in layout.boxes]
    header = {"format": LAYOUTS_FORMAT, "source": source, "content_sha256": content_sha256,
              "reader_version": reader_version, "file": str(file.resolve()) if file else None,
              "pages": {str(number): [layout.width, layout.height] for number, layout in layouts.items()}}
    target = folder / FOLDER
    target.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target, prefix=".", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez_compressed(
                out, header=np.array(json.dumps(header, ensure_ascii=False)),
                page=np.array([number for number, _ in rows], dtype=np.int32),
                span=np.array([(box.start, box.end) for _, box in rows], dtype=np.int32).reshape(-1, 2),
                box=np.array([(box.left, box.top, box.right, box.bottom) for _, box in rows],
                             dtype=np.float32).reshape(-1, 4))
        os.replace(temporary, target / _name(source, content_sha256, reader_version))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read(folder: Path, indexed: IndexedFile) -> DocumentPages | None:
    """What was kept of this indexed file; None when nothing was (indexed before layouts, or unreadable)."""
    path = folder / FOLDER / _name(indexed.source, indexed.content_sha256, indexed.reader_version)
    try:
        with np.load(path, allow_pickle=False) as stored:
            header = json.loads(str(stored["header"]))
            pages, spans, boxes = stored["page"], stored["span"], stored["box"]
    except (OSError, ValueError, KeyError):
        return None
    if header.get("format") != LAYOUTS_FORMAT or header.get("content_sha256") != indexed.content_sha256:
        return None
    per_page: dict[int, list[TextBox]] = {}
    for number, (start, end), (left, top, right, bottom) in zip(pages.tolist(), spans.tolist(), boxes.tolist()):
        per_page.setdefault(number, []).append(TextBox(start, end, left, top, right, bottom))
    layouts = {int(number): PageLayout(width, height, tuple(per_page.get(int(number), ())))
               for number, (width, height) in header["pages"].items()}
    return DocumentPages(indexed.source, indexed.content_sha256, Path(header["file"]) if header.get("file") else None,
                         layouts)


def prune(folder: Path, indexed: Iterable[IndexedFile]) -> int:
    """Remove kept files no indexed file names (a deleted or re-read file's, a crashed write's); how many."""
    target = folder / FOLDER
    if not target.is_dir():
        return 0
    keep = {_name(f.source, f.content_sha256, f.reader_version) for f in indexed}
    removed = 0
    for path in target.iterdir():
        if path.name not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
