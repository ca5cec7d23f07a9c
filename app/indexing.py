"""Ingest orchestration: folder -> files -> pages -> chunks -> vectors -> collection on disk.

``Indexer`` brings a collection in step with a folder (``ingest``) or with
documents that are already text (``ingest_documents``, e.g. a BEIR corpus). The
pipeline builds it with the loaded embedders and calls it; nothing else does.

Ingest is incremental: a file whose bytes hash the same as when it was indexed
is not read again; a changed file's old chunks are replaced; a file gone from
the folder is removed from the index (unless ``prune=False``). The collection is
saved every ``checkpoint_seconds`` and at the end, each save atomic, so an
interrupted ingest keeps what it finished and the next run picks up the rest.

Files are read in worker processes (``ingest.isolation``; ``parse_workers``,
by default half the CPUs) with a time limit each, ahead of the embedder, and
taken in folder order. Each file gets its ``DocumentRecord``
(``ingest.records``) and its chunks the record's header. The report gives each
stage's share of the wall time (``IngestStages``).

A second embedder (``second_embedder`` setting, all-MiniLM-L6-v2 by default)
embeds every chunk too. Chunks without a second vector (a collection built
before it, or with another second model) get one at the end of the next
ingest, without re-reading or re-embedding their files.

Also here: where an uploaded file may be stored (``safe_document_path``) and
which files of a folder are documents (``find_documents``).

Deliberately not here: reading a file (``ingest.loaders``), chunking
(``ingest.chunking``), the on-disk format (``retrieval.store``), embedding in
a process of its own (the embedder's library already uses every core it has).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from app.results import IngestProgress, IngestReport, IngestStages
from app.settings import Settings
from core.errors import KbError
from core.files import file_sha256
from core.types import FileFailure, LoadedFile
from ingest.chunking import Chunker
from ingest.isolation import IsolatedLoader, PendingLoad
from ingest.loaders import READER_VERSION, SUPPORTED_SUFFIXES, LoadError, LoadOptions
from ingest.records import describe_document
from retrieval.embedders import Embedder
from retrieval.store import Collection, WriteLock


@dataclass(frozen=True)
class _Ready:
    """An already-loaded document, with the ``source``/``result()`` shape of a ``PendingLoad``."""

    document: LoadedFile

    @property
    def source(self) -> str:
        return self.document.source

    def result(self) -> LoadedFile:
        return self.document


class UnsafeFileNameError(KbError, ValueError):
    """A file name that would leave the documents folder or is not a supported document."""


def safe_document_path(folder: Path, name: str, *, allow_subfolders: bool = False) -> Path:
    """Where a document called ``name`` lives inside ``folder``; never outside it."""
    cleaned = name.replace("\\", "/").strip()
    if not allow_subfolders:
        cleaned = cleaned.rsplit("/", 1)[-1]
    parts = [part for part in cleaned.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." or part.startswith(".") for part in parts) or "\x00" in cleaned:
        raise UnsafeFileNameError(f"not an acceptable file name: {name!r}")
    if Path(parts[-1]).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise UnsafeFileNameError(f"{parts[-1]!r}: only {', '.join(SUPPORTED_SUFFIXES)} files can be added")
    root = folder.resolve()
    target = root.joinpath(*parts).resolve()
    if root not in target.parents:  # a symlink inside the folder could still point outside
        raise UnsafeFileNameError(f"{name!r} would be stored outside {folder}")
    return target


MAX_NAME_BYTES = 200  # file systems allow 255; the partial file's name adds a few


def check_upload_name(name: str) -> str:
    """``name`` when it is a plain file name a client may upload under; ``UnsafeFileNameError`` otherwise.

    Stricter than ``safe_document_path``, which reduces a path to its last part: an
    API client that sends ``../x.md`` or ``/etc/x.md`` is told no, not silently renamed.
    Control characters (C0, DEL, C1) and the bidirectional controls are refused: with
    U+202E "invoice\\u202efdp.md" is listed as "invoicedm.pdf".
    """
    bidirectional = {"\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
    if (not name or any(ch in name for ch in "/\\") or name.strip() != name
            or any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F or ch in bidirectional for ch in name)):
        raise UnsafeFileNameError(f"not an acceptable file name: {name!r} (a plain name, no folders or control characters)")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise UnsafeFileNameError(f"file name longer than {MAX_NAME_BYTES} bytes: {name[:40]!r}…")
    return safe_document_path(Path("."), name).name  # hidden names, '..', unsupported suffixes


def save_uploads(folder: Path, files: Sequence[tuple[str, bytes]]) -> None:
    """Write uploaded (name, bytes) into ``folder`` under safe names (``safe_document_path``).

    Each file is written under a hidden partial name and renamed into place, so an interrupted
    upload never leaves half a file under the real name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files:
        target = safe_document_path(folder, name)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(data)
        partial.replace(target)


def find_documents(folder: Path) -> list[Path]:
    """Supported files below ``folder`` in a stable order.

    Hidden files and folders are skipped; symlinked folders are followed (people
    link their document folders together), each real folder once, so a link loop
    cannot make the walk endless.
    """
    found = []
    seen: set[str] = set()
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirectories[:] = []
            continue
        seen.add(real)
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in files:
            path = Path(directory) / name
            if not name.startswith(".") and path.suffix.lower() in SUPPORTED_SUFFIXES and path.is_file():
                found.append(path)
    return sorted(found)


class Indexer:
    """Indexes files into one collection with the given embedders; ``open_collection`` opens it for writing."""

    def __init__(
        self, settings: Settings, embedder: Embedder, second_embedder: Embedder | None,
        open_collection: Callable[..., Collection],
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.second_embedder = second_embedder
        self._open_collection = open_collection
        self.chunker = Chunker(embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap)

    def ingest(self, folder: Path, *, prune: bool = True, progress: bool | None = None,
               on_progress: Callable[[IngestProgress], None] | None = None) -> IngestReport:
        """Bring the collection in step with ``folder`` (see module docstring)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no such folder: {folder}")
        settings = self.settings
        paths = find_documents(folder)
        options = LoadOptions(passwords=tuple(settings.pdf_passwords), ocr=settings.ocr)
        too_large: list[FileFailure] = []
        by_source: dict[str, Path] = {}  # files within the size limit
        for path in paths:
            source = path.relative_to(folder).as_posix()
            size = path.stat().st_size
            if size > settings.max_file_mb * 1e6:
                too_large.append(FileFailure(source, f"too large ({size / 1e6:.0f} MB > KB_MAX_FILE_MB={settings.max_file_mb:g})"))
            else:
                by_source[source] = path
        present = {path.relative_to(folder).as_posix() for path in paths}
        workers = settings.parse_workers or max(1, min(8, (os.cpu_count() or 2) // 2))
        with IsolatedLoader(options, settings.file_timeout_seconds, workers) as loader:
            return self._index(
                sources=list(by_source),
                # The hash is only computed for files indexed before: a new file is read anyway.
                content_hash=lambda source: file_sha256(by_source[source]),
                submit=lambda source: loader.submit(by_source[source], source),
                read_ahead=workers + 1,
                present=present if prune else None,
                failed_early=too_large,
                progress=progress,
                on_progress=on_progress,
            )

    def ingest_documents(
        self, documents: Sequence[LoadedFile], *, prune: bool = False, progress: bool | None = None
    ) -> IngestReport:
        """Index documents that are already text (e.g. a BEIR corpus), incrementally like ``ingest``.

        A document whose ``content_sha256`` matches the indexed one is skipped, so
        running an evaluation twice reuses the collection.
        """
        by_source = {document.source: document for document in documents}
        return self._index(
            sources=list(by_source),
            content_hash=lambda source: by_source[source].content_sha256,
            submit=lambda source: _Ready(by_source[source]),
            read_ahead=1,
            present=set(by_source) if prune else None,
            failed_early=[],
            progress=progress,
        )

    def _index(
        self,
        *,
        sources: list[str],
        content_hash: Callable[[str], str],
        submit: Callable[[str], PendingLoad | _Ready],
        read_ahead: int,
        present: set[str] | None,
        failed_early: list[FileFailure],
        progress: bool | None,
        on_progress: Callable[[IngestProgress], None] | None = None,
    ) -> IngestReport:
        """The one indexing loop: skip unchanged, load ahead, chunk, embed, checkpoint, prune."""
        started = time.perf_counter()
        settings = self.settings
        target = settings.collection_dir
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        reread: list[str] = []
        failed: list[FileFailure] = list(failed_early)
        warnings: list[FileFailure] = []
        removed: list[str] = []
        chunks_embedded = pages_read = ocr_pages = 0
        seconds = dict.fromkeys(
            ("hashing", "loading_models", "reading", "chunking", "embedding", "second_embedding", "saving"), 0.0)

        @contextmanager
        def stage(name: str) -> Iterator[None]:  # adds the block's wall time to its stage
            stage_started = time.perf_counter()
            try:
                yield
            finally:
                seconds[name] += time.perf_counter() - stage_started

        interrupted = False
        with WriteLock(target):
            collection = self._open_collection(target, create=True, upgrade=True)
            indexed = collection.files
            dirty = False
            last_save = time.monotonic()
            try:
                # Cheap pass first: the content hash decides what needs reading at all.
                todo: list[tuple[str, bool]] = []  # (source, was indexed before)
                with stage("hashing"):
                    for source in sources:
                        previous = indexed.get(source)
                        if previous and previous.content_sha256 == content_hash(source):
                            if previous.reader_version >= READER_VERSION:
                                unchanged.append(source)
                                continue
                            reread.append(source)  # same file, but this version extracts better text from it
                        todo.append((source, previous is not None))

                if todo:
                    with stage("loading_models"):  # counting a token loads a lazy model: not the chunker's time
                        for embedder in (self.embedder, self.second_embedder):
                            if embedder is not None:
                                embedder.count_tokens("")
                bar = tqdm(total=len(todo), desc="ingest", unit="file",
                           disable=None if progress is None else not progress)
                pending: deque = deque()
                upcoming = iter(todo)
                was_indexed = dict(todo)

                def top_up() -> None:  # keep every parser worker busy ahead of the embedder
                    while len(pending) < read_ahead:
                        item = next(upcoming, None)
                        if item is None:
                            return
                        pending.append(submit(item[0]))

                def report_progress(current: str | None) -> None:
                    if on_progress is not None:
                        done = len(added) + len(updated) + len(failed) - len(failed_early)  # tqdm's n stays 0 when hidden
                        on_progress(IngestProgress(done, len(todo), current, tuple(failed)))

                top_up()
                while pending:
                    job = pending.popleft()
                    top_up()
                    bar.set_postfix_str(job.source[-40:], refresh=False)
                    report_progress(job.source)
                    try:
                        with stage("reading"):
                            loaded = job.result()
                        with stage("chunking"):
                            record = describe_document(loaded, loaded.title)
                            chunks = [replace(chunk, header=record.header_for(chunk.heading_path))
                                      for chunk in self.chunker.chunk(loaded.pages)]
                        if not chunks:
                            raise LoadError("no text left after chunking")
                    except LoadError as exc:
                        failed.append(FileFailure(job.source, str(exc)))  # previous chunks, if any, stay
                        bar.update()
                        continue
                    warnings.extend(FileFailure(job.source, warning) for warning in loaded.warnings)
                    texts = [c.embedding_text for c in chunks]
                    with stage("embedding"):
                        vectors = self._embed(self.embedder, texts)
                    with stage("second_embedding"):
                        second = self._embed(self.second_embedder, texts) if self.second_embedder else None
                    collection.put_file(job.source, loaded.content_sha256, chunks, vectors, len(loaded.pages), second,
                                        record=record, reader_version=READER_VERSION)
                    (updated if was_indexed[job.source] else added).append(job.source)
                    chunks_embedded += len(chunks)
                    pages_read += len(loaded.pages)
                    ocr_pages += sum(1 for page in loaded.pages if page.ocr)
                    dirty = True
                    bar.update()
                    if time.monotonic() - last_save > settings.checkpoint_seconds:
                        with stage("saving"):
                            collection.save()  # an interruption from here on keeps this work
                        dirty, last_save = False, time.monotonic()
                bar.close()
                report_progress(None)
                missing_second = collection.missing_second_vectors() if collection.second_vectors_missing else []
                if missing_second:
                    dirty = True  # an interruption while they are computed keeps the ones done
                    with stage("second_embedding"):
                        self._add_second_vectors(collection, missing_second, progress)
                if present is not None:
                    for source in sorted(set(indexed) - present):
                        collection.remove_file(source)
                        removed.append(source)
                        dirty = True
            except KeyboardInterrupt:
                interrupted = True
            finally:
                if dirty or not Collection.exists(target):
                    with stage("saving"):
                        collection.save()
        return IngestReport(
            added=tuple(added), updated=tuple(updated), removed=tuple(removed), unchanged=tuple(unchanged),
            reread=tuple(source for source in reread if source in updated),
            failed=tuple(failed), warnings=tuple(warnings), chunks_embedded=chunks_embedded,
            pages_read=pages_read, ocr_pages=ocr_pages, seconds=time.perf_counter() - started,
            embed_seconds=seconds["embedding"] + seconds["second_embedding"], interrupted=interrupted,
            collection_chunks=collection.chunk_count, upgraded_from_format=collection.upgraded_from,
            stages=IngestStages(**seconds),
        )

    def _embed(self, embedder: Embedder, texts: list[str]):
        import numpy as np

        size = self.settings.embed_batch_size
        batches = [embedder.embed_passages(texts[i : i + size]) for i in range(0, len(texts), size)]
        return np.concatenate(batches) if batches else np.zeros((0, embedder.identity.dim), np.float32)

    def _add_second_vectors(self, collection: Collection, missing: list[int], progress: bool | None) -> None:
        """Give these chunks a second-embedder vector (a collection from before it, or from another model).

        Runs after the files, so an interrupted ingest keeps those; the chunks done here are kept too
        (the caller saves on interruption), and the next ingest finishes the rest.
        """
        assert self.second_embedder is not None
        size = self.settings.embed_batch_size * 4
        bar = tqdm(total=len(missing), desc=f"second embedder ({self.second_embedder.identity.name})", unit="chunk",
                   disable=None if progress is None else not progress)
        try:
            for start in range(0, len(missing), size):
                ids = missing[start : start + size]
                texts = [collection.chunk(chunk_id).embedding_text for chunk_id in ids]
                collection.put_second_vectors(ids, self._embed(self.second_embedder, texts))
                bar.update(len(ids))
        finally:
            bar.close()
