"""The knowledge bases of one home: list, create, delete, what each holds, a pipeline for each.

A server answers for many collections from one process. ``Library`` keeps one
pipeline per collection, each made with ``Pipeline.with_settings`` from one base
pipeline, so the embedders, the reranker, the generator and the generator's
fair queue (``app.turns``) exist once however many collections there are.

Files uploaded to a collection, the configured one too, live in
``<home>/documents/<name>/`` and are recorded there (``team.uploads``): a delete
removes only them, never a folder of the user's own that ``kb ingest`` indexed in
place (``ingest_folder`` keeps the uploads when it prunes what left that folder).
The last ingest's failures of each file (a broken PDF, an encrypted one without
its password) are kept in ``<home>/documents/<name>/.failures.json`` (hidden, so
never read as a document), until the file is indexed or deleted, so the
document list can show them after a restart. An upload's report counts only the
files of that upload (``report_of``): an old failure is listed with the
documents, not reported again by every later upload.

Worked example::

    library = Library(Pipeline.from_settings(settings))
    library.create("handbook")
    library.add_documents("handbook", [("leave.md", b"# Leave ...")])
    [d.title for d in library.documents("handbook")]   # ['Leave']

Deliberately not here: who may see which collection (``team.accounts``),
running ingests in the background (``team.jobs``), retrieval or answering
(``app.pipeline``).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Callable, Collection as Names, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from app.indexing import find_documents, store_config
from app.results import IngestProgress, IngestReport
from app.settings import COLLECTION_NAME, Settings
from core.errors import KbError
from retrieval.backend import milvus_dropper
from retrieval.store import Collection, WriteLock
from team import uploads
from team.jobs import Job
from team.sqlite_file import private_folder
from team.uploads import uploads_dir

if TYPE_CHECKING:  # a Library is given its base pipeline; `kb collections` lists and deletes without one
    from app.pipeline import Pipeline

__all__ = ["CollectionExistsError", "DocumentInfo", "InvalidCollectionNameError", "Library", "UnknownCollectionError",
           "delete_collection", "ingest_folder", "report_of", "uploads_dir"]

FAILURES_FILE = ".failures.json"
FAILURES_FORMAT = 1
_NAME = re.compile(COLLECTION_NAME)


class UnknownCollectionError(KbError, LookupError):
    """No collection of that name (or one the caller may not see: the server answers both alike)."""


class CollectionExistsError(KbError, ValueError):
    """A collection of that name exists already."""


class InvalidCollectionNameError(KbError, ValueError):
    """A name that cannot be a collection's (letters, digits, '.', '_', '-'; at most 64)."""


def delete_collection(settings: Settings, name: str) -> None:
    """The one way to delete a collection: its index, then the files uploaded to it (``team.uploads``).

    Not while an ingest writes it (``CollectionLockedError``). A file the product did not store (put in
    the uploads folder by hand, a folder ``kb ingest`` indexed) is never touched. ``Library.delete`` and
    ``kb collections --delete`` call this.
    """
    if not _NAME.fullmatch(name) or not Collection.exists(settings.collections_root / name):
        raise UnknownCollectionError(f"no collection named {name!r}")
    folder = settings.collections_root / name
    # Reaches Milvus now, for a collection stored there: one it cannot reach refuses the delete before the
    # folder goes, rather than leave the passages in Milvus with nothing naming them.
    drop_milvus_side = milvus_dropper(folder, store_config(settings))
    with WriteLock(folder):
        shutil.rmtree(folder)
    drop_milvus_side()
    uploads.remove_all(uploads_dir(settings, name), own_files=(FAILURES_FILE, FAILURES_FILE + ".partial"))


def report_of(report: IngestReport, sources: Names[str]) -> IngestReport:
    """The part of an ingest's report about ``sources``: an upload job reports its own files only.

    Ingesting an upload reads the whole uploads folder, so files that failed before are tried again;
    they stay in the document list with their reason, but are not this upload's failures."""
    def mine(names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(name for name in names if name in sources)

    return replace(report, added=mine(report.added), updated=mine(report.updated), unchanged=mine(report.unchanged),
                   reread=mine(report.reread), removed=mine(report.removed),
                   failed=tuple(f for f in report.failed if f.source in sources),
                   warnings=tuple(w for w in report.warnings if w.source in sources))


def ingest_folder(pipeline: Pipeline, folder: Path, *, prune: bool = True, progress: bool | None = None) -> IngestReport:
    """``kb ingest FOLDER``: bring the collection in step with a folder of the user's own, indexed in place.

    Pruning removes the documents gone from ``folder``, but not the files uploaded to the collection:
    they live in its uploads folder, not in ``folder``, and ``make run`` ingests ``data/`` every time.
    """
    uploaded = uploads.recorded(uploads_dir(pipeline.settings, pipeline.settings.collection))
    if not prune or not uploaded:
        return pipeline.ingest(folder, prune=prune, progress=progress)
    report = pipeline.ingest(folder, prune=False, progress=progress)
    if report.interrupted:
        return report
    present = {path.relative_to(folder).as_posix() for path in find_documents(folder)}
    gone = [source for source in pipeline.collection().files if source not in present and source not in uploaded]
    removed = pipeline.remove_documents(gone) if gone else []
    return replace(report, removed=report.removed + tuple(removed), collection_chunks=pipeline.collection().chunk_count)


@dataclass(frozen=True)
class DocumentInfo:
    """One document of a collection as a user sees it; ``failure`` set when its last ingest could not use it."""

    source: str
    title: str
    description: str  # title, organisation, period: what `kb status` prints
    pages: int  # pages (PDF) or sections (Markdown) that gave text
    chunks: int
    ocr_pages: int  # pages whose text was recognised from the image
    failure: str | None = None  # indexed: None; failed: why (then pages and chunks are 0)
    organisation: str = ""  # whose document it is, when the reader found out (``ingest.records``)
    period: str = ""  # the period it reports on, e.g. "quarter ended June 29, 2024"


class Library:
    """The collections under one home, each with a pipeline sharing the base pipeline's models."""

    def __init__(self, base: Pipeline) -> None:
        self.base = base
        self._pipelines: dict[str, Pipeline] = {}
        self._lock = threading.Lock()  # the failures files and the pipeline cache

    @property
    def root(self) -> Path:
        return self.base.settings.collections_root

    def documents_dir(self, name: str) -> Path:
        """Where the files uploaded to ``name`` are kept: ``<home>/documents/<name>``, for every collection
        (``KB_DOCUMENTS_DIR`` is a folder of the user's own: ``kb ingest`` indexes it in place)."""
        self._check_name(name)
        return self._uploads_dir(name)

    def _uploads_dir(self, name: str) -> Path:
        return uploads_dir(self.base.settings, name)

    def names(self) -> list[str]:
        root = self.root
        return sorted(p.name for p in root.iterdir() if Collection.exists(p)) if root.is_dir() else []

    def exists(self, name: str) -> bool:
        try:
            self._check_name(name)
        except InvalidCollectionNameError:
            return False
        return Collection.exists(self.root / name)

    def pipeline(self, name: str) -> Pipeline:
        """The pipeline answering from collection ``name``; raises ``UnknownCollectionError`` when there is none."""
        if not self.exists(name):
            raise UnknownCollectionError(f"no collection named {name!r}")
        return self._pipeline(name)

    def pipeline_for(self, name: str) -> Pipeline:
        """The pipeline of ``name`` whether it exists yet or not (the UI's configured collection before its first
        ingest: its first upload creates it)."""
        self._check_name(name)
        return self._pipeline(name)

    def _pipeline(self, name: str) -> Pipeline:
        with self._lock:
            if name not in self._pipelines:
                # The configured collection too: its pipeline's documents folder is its uploads folder, not
                # KB_DOCUMENTS_DIR. The models are the base pipeline's (with_settings shares them).
                self._pipelines[name] = self.base.with_settings(collection=name, documents_dir=self._uploads_dir(name))
            return self._pipelines[name]

    def create(self, name: str) -> Pipeline:
        """An empty collection, ready for documents."""
        self._check_name(name)
        folder = self.root / name
        if Collection.exists(folder):
            raise CollectionExistsError(f"a collection named {name!r} exists already")
        pipeline = self._pipeline(name)
        with WriteLock(folder):
            if Collection.exists(folder):  # created meanwhile by another request
                raise CollectionExistsError(f"a collection named {name!r} exists already")
            pipeline.open_collection(folder, create=True).save()
        private_folder(self.documents_dir(name))
        return pipeline

    def delete(self, name: str) -> None:
        """The collection's index and its uploaded files; not while an ingest writes it (``CollectionLockedError``)."""
        delete_collection(self.base.settings, name)
        with self._lock:
            self._pipelines.pop(name, None)

    def save_uploads(self, name: str, files: Sequence[tuple[str, bytes]]) -> tuple[str, ...]:
        """Store uploaded ``(name, bytes)`` in the collection's uploads folder and record them; returns the names.
        Every name is checked first (``app.indexing.check_upload_name``): one bad name and nothing is written."""
        self._check_name(name)
        return uploads.save(self._uploads_dir(name), files)

    def ingest_uploads(self, name: str, sources: Names[str],
                       on_progress: Callable[[IngestProgress], None] | None = None) -> IngestReport:
        """Index the uploads folder; returns the report on ``sources`` only (``report_of``), while the failures
        of every file read are remembered for the document list."""
        pipeline = self.pipeline_for(name)
        folder = private_folder(self._uploads_dir(name))

        def progress(state: IngestProgress) -> None:
            if on_progress is not None:
                on_progress(replace(state, failed=tuple(f for f in state.failed if f.source in sources)))

        report = pipeline.ingest(folder, prune=False, progress=False, on_progress=progress)
        self.record_ingest(name, report)
        return report_of(report, sources)

    def run_job(self, job: Job, on_progress: Callable[[IngestProgress], None]) -> IngestReport:
        """What an ingest job does (``team.jobs``): a reindex first drops its documents from the index (again,
        when resumed after a restart: dropping is idempotent), then the uploads folder is indexed."""
        if job.kind == "reindex":
            self.pipeline(job.collection).remove_documents(list(job.sources))
        return self.ingest_uploads(job.collection, job.sources, on_progress)

    def add_documents(self, name: str, files: Sequence[tuple[str, bytes]],
                      on_progress: Callable[[IngestProgress], None] | None = None) -> IngestReport:
        """Upload and index at once (the web UI); the report is about these files only."""
        return self.ingest_uploads(name, self.save_uploads(name, files), on_progress)

    def delete_document(self, name: str, source: str) -> bool:
        """Remove ``source`` from the index, and its file when the product stored it (an upload); a file of the
        user's own, or one put in the uploads folder by hand, stays on disk. False when there was nothing to remove."""
        removed = bool(self.pipeline(name).remove_documents([source]))
        removed = uploads.remove(self._uploads_dir(name), source) or removed
        return self.forget_failure(name, source) or removed

    def documents(self, name: str) -> tuple[DocumentInfo, ...]:
        """Every indexed document with its counts, then the files whose last ingest failed."""
        collection = self.pipeline(name).collection()
        records = collection.records
        listed = []
        for source, indexed in sorted(collection.files.items()):
            chunks = collection.chunks_of(source)
            record = records.get(source)
            listed.append(DocumentInfo(
                source=source, title=record.title if record else source,
                description=record.description if record else source, pages=indexed.pages, chunks=len(chunks),
                ocr_pages=len({chunk.page for chunk in chunks if chunk.ocr}),
                organisation=(record.organisation or "") if record else "", period=(record.period_label or "") if record else "",
            ))
        failures = self._read_failures(name)
        listed += [DocumentInfo(source, source, source, 0, 0, 0, failure=reason)
                   for source, reason in sorted(failures.items()) if source not in collection.files]
        return tuple(listed)

    def record_ingest(self, name: str, report: IngestReport) -> None:
        """Remember the report's failures; forget earlier failures of files it indexed or removed."""
        with self._lock:
            failures = self._read_failures(name)
            for source in (*report.added, *report.updated, *report.removed):
                failures.pop(source, None)
            failures.update({failure.source: failure.reason for failure in report.failed})
            self._write_failures(name, failures)

    def forget_failure(self, name: str, source: str) -> bool:
        with self._lock:
            failures = self._read_failures(name)
            if failures.pop(source, None) is None:
                return False
            self._write_failures(name, failures)
            return True

    def _read_failures(self, name: str) -> dict[str, str]:
        path = self._uploads_dir(name) / FAILURES_FILE
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: the next ingest reports them again
        return dict(stored.get("failures", {})) if stored.get("format") == FAILURES_FORMAT else {}

    def _write_failures(self, name: str, failures: dict[str, str]) -> None:
        folder = private_folder(self._uploads_dir(name))  # under the home, never in a folder of the user's own
        partial = folder / (FAILURES_FILE + ".partial")
        partial.write_text(json.dumps({"format": FAILURES_FORMAT, "failures": failures}, ensure_ascii=False),
                           encoding="utf-8")
        partial.replace(folder / FAILURES_FILE)

    def _check_name(self, name: str) -> None:
        if not _NAME.fullmatch(name):  # every request asks: a regex, not a settings validation
            raise InvalidCollectionNameError(
                f"{name!r} cannot name a collection: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
