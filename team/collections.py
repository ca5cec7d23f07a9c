"""The knowledge bases of one home: list, create, delete, what each holds, a pipeline for each.

A server answers for many collections from one process. ``Library`` keeps one
pipeline per collection, each made with ``Pipeline.with_settings`` from one base
pipeline, so the embedders, the reranker, the generator and the generator's
fair queue (``app.turns``) exist once however many collections there are.

Files uploaded to a collection live in ``<home>/documents/<name>/`` (for the
configured collection: ``KB_DOCUMENTS_DIR``, ``data/`` by default); the last
ingest's failures of each file (a broken PDF, an encrypted one without its
password) are kept in ``<home>/documents/<name>/.failures.json`` (hidden, so
never read as a document), until the file is indexed or deleted, so the
document list can show them after a restart.

Worked example::

    library = Library(Pipeline.from_settings(settings))
    library.create("handbook")
    library.pipeline("handbook").add_documents([("leave.md", b"# Leave ...")])
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
from dataclasses import dataclass
from pathlib import Path

from app.pipeline import Pipeline
from app.results import IngestReport
from app.settings import COLLECTION_NAME, Settings
from core.errors import KbError
from retrieval.store import Collection, WriteLock

FAILURES_FILE = ".failures.json"
FAILURES_FORMAT = 1
_NAME = re.compile(COLLECTION_NAME)


class UnknownCollectionError(KbError, LookupError):
    """No collection of that name (or one the caller may not see: the server answers both alike)."""


class CollectionExistsError(KbError, ValueError):
    """A collection of that name exists already."""


class InvalidCollectionNameError(KbError, ValueError):
    """A name that cannot be a collection's (letters, digits, '.', '_', '-'; at most 64)."""


def uploads_dir(settings: Settings, name: str) -> Path:
    """Where the product keeps the files uploaded to collection ``name`` (other than the configured folder's)."""
    return settings.home / "documents" / name


def delete_collection(settings: Settings, name: str) -> None:
    """The one way to delete a collection: its index, then the uploads kept under the home.

    Not while an ingest writes it (``CollectionLockedError``). A folder of the user's own
    (``KB_DOCUMENTS_DIR``) is never touched. ``Library.delete`` and ``kb collections --delete`` call this.
    """
    if not _NAME.fullmatch(name) or not Collection.exists(settings.collections_root / name):
        raise UnknownCollectionError(f"no collection named {name!r}")
    folder = settings.collections_root / name
    with WriteLock(folder):
        shutil.rmtree(folder)
    shutil.rmtree(uploads_dir(settings, name), ignore_errors=True)


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
        """Where the files uploaded to ``name`` are kept: the configured folder (``KB_DOCUMENTS_DIR``) for the
        configured collection, which ``kb ingest`` and ``make run`` fill from there; ``<home>/documents/<name>``
        for every other."""
        self._check_name(name)
        if name == self.base.settings.collection:
            return self.base.settings.documents_dir
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

    def _pipeline(self, name: str) -> Pipeline:
        with self._lock:
            if name not in self._pipelines:
                if name == self.base.settings.collection:
                    self._pipelines[name] = self.base
                else:
                    self._pipelines[name] = self.base.with_settings(
                        collection=name, documents_dir=self.documents_dir(name))
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
        self.documents_dir(name).mkdir(parents=True, exist_ok=True)
        return pipeline

    def delete(self, name: str) -> None:
        """The collection's index and its uploaded files; not while an ingest writes it (``CollectionLockedError``)."""
        delete_collection(self.base.settings, name)
        with self._lock:
            self._pipelines.pop(name, None)

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
        folder = self._uploads_dir(name)  # under the home, never in a folder of the user's own
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / (FAILURES_FILE + ".partial")
        partial.write_text(json.dumps({"format": FAILURES_FORMAT, "failures": failures}, ensure_ascii=False),
                           encoding="utf-8")
        partial.replace(folder / FAILURES_FILE)

    def _check_name(self, name: str) -> None:
        if not _NAME.fullmatch(name):  # every request asks: a regex, not a settings validation
            raise InvalidCollectionNameError(
                f"{name!r} cannot name a collection: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
