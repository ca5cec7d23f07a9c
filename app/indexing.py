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

With ``ray_address`` set (``kb ingest --ray``, ``KB_RAY_ADDRESS``) files are read and embedded on a Ray
cluster (``app.distributed``) and come back as ``PreparedFile``s; the same loop writes them, so hashing,
checkpoints, pruning and the report are the same. ``store_config`` says which store a collection goes to
(``retrieval.backend``: local files or Milvus).

Also here, re-exported from ``app.document_files``: where an uploaded file may be stored
(``safe_document_path``) and which files of a folder are documents (``find_documents``).

Deliberately not here: reading a file (``ingest.loaders``), chunking
(``ingest.chunking``), the on-disk format (``retrieval.store``, ``retrieval.milvus_store``), embedding in
a process of its own on one machine (the embedder's library already uses every core it has).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from app.document_files import (  # noqa: F401 - re-exported: the pipeline, the server and the team import them here
    MAX_NAME_BYTES, UnsafeFileNameError, check_upload_name, find_documents, safe_document_path, save_uploads,
)
from app.results import IngestProgress, IngestReport, IngestStages
from app.settings import Settings
from core.files import file_sha256
from core.types import Chunk, FileFailure, LoadedFile, PageLayout
from ingest.chunking import Chunker
from ingest.isolation import IsolatedLoader, PendingLoad
from ingest.loaders import READER_VERSION, SUPPORTED_SUFFIXES, LoadError, LoadOptions  # noqa: F401 - re-exported
from ingest.records import describe_document
from retrieval import page_layouts
from retrieval.backend import CollectionStore, StoreConfig
from retrieval.embedders import Embedder
from retrieval.store import WriteLock
from text.documents import DocumentRecord


def store_config(settings: Settings) -> StoreConfig:
    """Where the settings put new collections (``retrieval.backend``); Milvus Lite in KB_HOME by default."""
    uri = settings.milvus_uri or str(settings.home / "milvus.db")
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
    return StoreConfig(settings.store, uri, token, settings.milvus_index, settings.exact_search_up_to)


@dataclass(frozen=True)
class PreparedFile:
    """A file read, chunked and embedded: what is written to the store (here, or by a Ray embedder actor)."""

    source: str
    content_sha256: str
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray
    second_vectors: np.ndarray | None
    record: DocumentRecord
    pages: int
    ocr_pages: int
    warnings: tuple[str, ...]
    seconds: dict[str, float]  # chunking, embedding, second_embedding
    layouts: tuple[tuple[int, PageLayout], ...] = ()  # (page number, where its text lies): PDF pages


GIVE_WAY_EVERY = 16  # texts in the first batch between two looks for a question being answered
GIVE_WAY_SECONDS = 2.5  # then as many texts as the last batch embedded in about this long


def embed_texts(embedder: Embedder, texts: list[str], batch_size: int,
                pause: Callable[[], None] | None = None) -> np.ndarray:
    """Embedded in batches of ``batch_size``; with ``pause`` (the service's: wait while a question is
    answered), which runs before each, a batch is as many texts as take about ``GIVE_WAY_SECONDS``: a batch
    already running when a question arrives is not interrupted, and 64 chunks hold 2 CPU cores for about
    10 s, while a GPU embeds a whole batch in well under a second."""
    batches = []
    step = batch_size if pause is None else min(batch_size, GIVE_WAY_EVERY)
    start = 0
    while start < len(texts):
        if pause is not None:
            pause()
        began = time.perf_counter()
        batch = texts[start : start + step]
        batches.append(embedder.embed_passages(batch))
        start += len(batch)
        if pause is not None:
            per_text = max((time.perf_counter() - began) / len(batch), 1e-6)
            step = max(1, min(batch_size, int(GIVE_WAY_SECONDS / per_text)))
    return np.concatenate(batches) if batches else np.zeros((0, embedder.identity.dim), np.float32)


def prepare_file(loaded: LoadedFile, chunker: Chunker, embedder: Embedder, second_embedder: Embedder | None,
                 batch_size: int, max_passages: int | None = None, pause: Callable[[], None] | None = None
                 ) -> PreparedFile:
    """Chunk a read file under its document record's header and embed it; ``LoadError`` when no text is left,
    or when it makes more than ``max_passages`` passages (before any is embedded: a 30 MB text file would
    hold the ingest for hours)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    record = describe_document(loaded, loaded.title)
    chunks = tuple(replace(chunk, header=record.header_for(chunk.heading_path)) for chunk in chunker.chunk(loaded.pages))
    if not chunks:
        raise LoadError("no text left after chunking")
    if max_passages is not None and len(chunks) > max_passages:
        raise LoadError(f"its text makes {len(chunks):,} passages, more than KB_MAX_FILE_PASSAGES={max_passages:,}; "
                        "split the file, or raise the limit")
    texts = [c.embedding_text for c in chunks]
    seconds["chunking"] = time.perf_counter() - started
    vectors = embed_texts(embedder, texts, batch_size, pause)
    seconds["embedding"] = time.perf_counter() - started - seconds["chunking"]
    second = embed_texts(second_embedder, texts, batch_size, pause) if second_embedder else None
    seconds["second_embedding"] = time.perf_counter() - started - seconds["chunking"] - seconds["embedding"]
    return PreparedFile(loaded.source, loaded.content_sha256, chunks, vectors, second, record, len(loaded.pages),
                        sum(1 for page in loaded.pages if page.ocr), loaded.warnings, seconds,
                        tuple((page.page, page.layout) for page in loaded.pages
                              if page.page is not None and page.layout is not None))


@dataclass(frozen=True)
class _Ready:
    """An already-loaded document, with the ``source``/``result()`` shape of a ``PendingLoad``."""

    document: LoadedFile

    @property
    def source(self) -> str:
        return self.document.source

    def result(self) -> LoadedFile:
        return self.document


class Indexer:
    """Indexes files into one collection with the given embedders; ``open_collection`` opens it for writing."""

    def __init__(
        self, settings: Settings, embedder: Embedder, second_embedder: Embedder | None,
        open_collection: Callable[..., CollectionStore], pause: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.pause = pause  # before each embedding batch: the service gives the cores to a question first
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
        if settings.ray_address:  # files read and embedded on a Ray cluster; written here (app.distributed)
            from app.distributed import RayFiles

            with RayFiles(settings, options) as cluster:
                return self._index(
                    sources=list(by_source), content_hash=lambda source: file_sha256(by_source[source]),
                    submit=lambda source: cluster.submit(by_source[source], source), read_ahead=cluster.read_ahead,
                    present=present if prune else None, failed_early=too_large, progress=progress,
                    on_progress=on_progress, prepare=lambda job: job.result(), load_models=False,
                    file_of=by_source.get,
                )
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
                file_of=by_source.get,
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
        prepare: Callable[[PendingLoad | _Ready], PreparedFile] | None = None,
        load_models: bool = True,
        file_of: Callable[[str], Path | None] = lambda source: None,
    ) -> IngestReport:
        """The one indexing loop: skip unchanged, load ahead, chunk, embed, checkpoint, prune.

        ``prepare`` turns a submitted job into a ``PreparedFile`` (default: read here, ``prepare_file`` here).
        ``file_of`` names the file a source was read from, kept with its page layouts (``retrieval.page_layouts``).
        """
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

                if todo and load_models:
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
                        if prepare is None:
                            with stage("reading"):
                                loaded = job.result()
                            prepared = prepare_file(loaded, self.chunker, self.embedder, self.second_embedder,
                                                    settings.embed_batch_size, settings.max_file_passages,
                                                    self.pause)
                        else:
                            with stage("reading"):  # waiting for the cluster: reading and embedding elsewhere
                                prepared = prepare(job)
                    except LoadError as exc:
                        failed.append(FileFailure(job.source, str(exc)))  # previous chunks, if any, stay
                        bar.update()
                        continue
                    if prepare is None:  # a cluster's seconds were spent in parallel, not in this process's wall time
                        for name, spent in prepared.seconds.items():
                            seconds[name] += spent
                    warnings.extend(FileFailure(job.source, warning) for warning in prepared.warnings)
                    # Before the generation that lists the file goes live: a crash leaves an unnamed file, pruned.
                    page_layouts.write(target, job.source, prepared.content_sha256, READER_VERSION,
                                       file_of(job.source), dict(prepared.layouts))
                    collection.put_file(job.source, prepared.content_sha256, prepared.chunks, prepared.vectors,
                                        prepared.pages, prepared.second_vectors, record=prepared.record,
                                        reader_version=READER_VERSION)
                    (updated if was_indexed[job.source] else added).append(job.source)
                    chunks_embedded += len(prepared.chunks)
                    pages_read += prepared.pages
                    ocr_pages += prepared.ocr_pages
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
                if dirty or collection.generation is None:
                    with stage("saving"):
                        collection.save()
                        page_layouts.prune(target, collection.files.values())
        return IngestReport(
            added=tuple(added), updated=tuple(updated), removed=tuple(removed), unchanged=tuple(unchanged),
            reread=tuple(source for source in reread if source in updated),
            failed=tuple(failed), warnings=tuple(warnings), chunks_embedded=chunks_embedded,
            pages_read=pages_read, ocr_pages=ocr_pages, seconds=time.perf_counter() - started,
            embed_seconds=seconds["embedding"] + seconds["second_embedding"], interrupted=interrupted,
            collection_chunks=collection.chunk_count, upgraded_from_format=collection.upgraded_from,
            stages=IngestStages(**seconds),
        )

    def _add_second_vectors(self, collection: CollectionStore, missing: list[int], progress: bool | None) -> None:
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
                collection.put_second_vectors(ids, embed_texts(self.second_embedder, texts, self.settings.embed_batch_size,
                                                               self.pause))
                bar.update(len(ids))
        finally:
            bar.close()
