"""What a collection generation says of itself (``manifest.json``), the write lock, and the store's errors.

A generation's manifest names the format version, the embedder that made its
vectors (and the second embedder's, if any), the vector index's kind, the
keyword tokenizer, every file with its hash, chunk ids, pages and the reader
version it was read with, and every document's record::

    {"format_version": 2, "embedder": {"name": "intfloat/multilingual-e5-small", "dim": 384, ...},
     "chunk_count": 18, "next_id": 18, "keyword_index": {"tokenizer": "kw-3"}, "second_embedder": {...},
     "vector_index": {"kind": "flat", "trained_on": 0},
     "files": {"guide.md": {"content_sha256": "…", "chunk_ids": [0, 1], "pages": 2, "reader_version": 4}},
     "documents": {"guide.md": {"source": "guide.md", "title": "Guide", ...}}}

``read_manifest`` refuses what cannot be searched: an older format
(``OlderFormatError``: ``kb ingest`` re-indexes it), a newer or unknown one, a
collection built by another embedder (``IndexMismatchError``), an unreadable
file (``CorruptCollectionError``). ``WriteLock`` holds ``write.lock`` so that one
process at a time writes a collection.

Deliberately not here: the vectors, chunks and keyword index themselves
(``retrieval.store``), switching generations (``retrieval.generations``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from core.errors import KbError
from retrieval.embedders import EmbedderIdentity
from text.documents import DocumentRecord

FORMAT_VERSION = 2  # 2: document records, chunk headers
MILVUS_MARKER = "milvus.json"  # in a collection folder whose passages live in Milvus (``retrieval.backend``)


class StoreError(KbError):
    """Base class: something is wrong with a collection on disk."""


class CollectionMissingError(StoreError):
    """No index has been built here yet."""


class IndexMismatchError(StoreError):
    """The collection was built with another embedder or format."""


class OlderFormatError(IndexMismatchError):
    """Built by an older version of this program: ``kb ingest`` re-indexes it."""

    def __init__(self, found: int, folder: object) -> None:
        super().__init__(
            f"{folder} was indexed by an older version (format {found}, now {FORMAT_VERSION}: documents now "
            "carry their title, organisation and period); run `kb ingest <folder>` again to re-index it"
        )
        self.found = found


class CorruptCollectionError(StoreError):
    """The files are there but do not make a valid collection."""


class CollectionLockedError(StoreError):
    """Another process is writing this collection."""


@dataclass(frozen=True)
class IndexedFile:
    """What the manifest keeps about each ingested file."""

    source: str
    content_sha256: str
    chunk_ids: tuple[int, ...]
    pages: int  # pages (PDF) or sections (Markdown) that gave text
    reader_version: int = 1  # ``ingest.loaders.READER_VERSION`` it was read with (1: before that was kept)


@dataclass(frozen=True)
class Manifest:
    """One generation's manifest, read and checked."""

    embedder: EmbedderIdentity
    next_id: int
    files: Mapping[str, IndexedFile]
    records: Mapping[str, DocumentRecord]
    chunk_count: int = 0
    index_kind: str = "flat"
    trained_on: int = 0  # vectors an IVF index was trained on (0: exact)
    keyword_tokenizer: str | None = None  # the tokenizer version the stored keyword index was built with
    second_embedder: dict | None = None  # the second embedder's identity record, as stored


def check_file_vectors(chunk_count: int, vectors, second_vectors=None) -> None:
    """A file's vectors, one per chunk (both stores' ``put_file``); ValueError otherwise."""
    if len(vectors) != chunk_count:
        raise ValueError(f"{chunk_count} chunks but {len(vectors)} vectors")
    if second_vectors is not None and len(second_vectors) != chunk_count:
        raise ValueError(f"{chunk_count} chunks but {len(second_vectors)} second-embedder vectors")


def check_compatible(raw: dict, where: object, identity: EmbedderIdentity) -> EmbedderIdentity:
    """The embedder a collection's header (a manifest, or a Milvus header row) names, when ``identity`` can
    search it; ``OlderFormatError`` / ``IndexMismatchError`` otherwise. Both backends ask here."""
    found = raw.get("format_version")
    if isinstance(found, int) and found < FORMAT_VERSION:
        raise OlderFormatError(found, where)
    if found != FORMAT_VERSION:
        raise IndexMismatchError(
            f"{where} has index format {raw.get('format_version')!r}, this version reads "
            f"{FORMAT_VERSION}; ingest the documents again into a new collection"
        )
    built_with = EmbedderIdentity(**raw["embedder"])
    if not identity.can_search(built_with):
        raise IndexMismatchError(
            f"{where} was built with embedder {built_with.name!r} ({built_with.dim}-dim, "
            f"{built_with.fingerprint}) but the configured embedder is {identity.name!r} "
            f"({identity.dim}-dim, {identity.fingerprint}); set the embedding model back, "
            "or ingest into a new collection"
        )
    return built_with


def read_manifest(gen_dir: Path, folder: Path, identity: EmbedderIdentity) -> Manifest:
    """The manifest of ``gen_dir``, when a collection searched with ``identity`` can use it."""
    try:
        raw = json.loads((gen_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptCollectionError(f"unreadable manifest in {gen_dir}: {exc}") from exc
    built_with = check_compatible(raw, folder, identity)
    try:
        vector_index = raw.get("vector_index") or {}
        return Manifest(
            embedder=built_with,
            next_id=int(raw["next_id"]),
            files={source: IndexedFile(source, row["content_sha256"], tuple(row["chunk_ids"]), row["pages"],
                                       row.get("reader_version", 1))
                   for source, row in raw["files"].items()},
            records={source: DocumentRecord.from_dict(row) for source, row in (raw.get("documents") or {}).items()},
            chunk_count=int(raw.get("chunk_count", 0)),
            index_kind=vector_index.get("kind", "flat"),
            trained_on=int(vector_index.get("trained_on", 0)),
            keyword_tokenizer=(raw.get("keyword_index") or {}).get("tokenizer"),
            second_embedder=raw.get("second_embedder"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptCollectionError(f"damaged manifest in {gen_dir}: {exc}") from exc


def write_manifest(staging: Path, manifest: Manifest) -> None:
    row = {
        "format_version": FORMAT_VERSION,
        "embedder": manifest.embedder.record(),
        "chunk_count": manifest.chunk_count,
        "next_id": manifest.next_id,
        "keyword_index": {"tokenizer": manifest.keyword_tokenizer},
        "second_embedder": manifest.second_embedder,
        "vector_index": {"kind": manifest.index_kind, "trained_on": manifest.trained_on},
        "files": {
            source: {"content_sha256": f.content_sha256, "chunk_ids": list(f.chunk_ids), "pages": f.pages,
                     "reader_version": f.reader_version}
            for source, f in sorted(manifest.files.items())
        },
        "documents": {source: asdict(record) for source, record in sorted(manifest.records.items())},
    }
    (staging / "manifest.json").write_text(json.dumps(row, ensure_ascii=False), encoding="utf-8")


class WriteLock:
    """Holds ``write.lock`` so that only one ingest writes a collection at a time."""

    def __init__(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(Path(folder) / "write.lock"))
        self._folder = folder

    def __enter__(self) -> WriteLock:
        try:
            self._lock.acquire(timeout=0)
        except Timeout as exc:
            raise CollectionLockedError(
                f"another ingest is writing {self._folder}; wait for it to finish"
            ) from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()
