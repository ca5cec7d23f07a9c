"""Which store a collection lives in, the protocol both stores implement, and copying one into Milvus.

Two backends keep a knowledge base:

- ``local`` (``retrieval.store.Collection``): FAISS and keyword files in generations under the collection
  folder; the default.
- ``milvus`` (``retrieval.milvus_store.MilvusCollection``): a Milvus collection, embedded Milvus Lite (a
  file path) or a Milvus server or cluster (``http://host:19530``); the collection folder keeps a marker
  naming it (``milvus.json``) and the write lock.

A collection stays where it was made: a folder with a marker is opened in Milvus, one with ``CURRENT`` from
local files, and only a new collection goes where ``StoreConfig.kind`` says. The pipeline, the indexer,
fusion and evidence call only the methods of ``CollectionStore``: that list is the protocol, and a third
backend implements the same.

``copy_collection`` copies a local collection (passages, vectors, second-embedder vectors, documents'
hashes, reader versions and records, embedder identity) into a new Milvus one without embedding anything:
a team moving to Milvus keeps its index (``kb collections --copy-to milvus``).

Deliberately not here: settings (``app.settings``; ``app.indexing.store_config`` builds a ``StoreConfig``),
deleting a collection's folder (``team.collections``; ``milvus_dropper`` drops its Milvus side), moving a collection back from Milvus to local files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from core.types import Chunk, Hit
from retrieval.embedders import EmbedderIdentity
from retrieval.manifest import MILVUS_MARKER, IndexedFile, StoreError
from retrieval.store import EXACT_UP_TO, Collection
from text.documents import DocumentRecord

BACKENDS = ("local", "milvus")


@dataclass(frozen=True)
class StoreConfig:
    """Where new collections go and how Milvus is reached (the token is never written anywhere)."""

    kind: str = "local"
    milvus_uri: str | None = None  # a file path (Milvus Lite) or http://host:19530
    milvus_token: str | None = field(default=None, repr=False)
    milvus_index: str = "FLAT"
    exact_up_to: int = EXACT_UP_TO


class CollectionStore(Protocol):
    """What every backend offers: add passages with their vectors, text and document fields (``put_file``),
    delete by document (``remove_file``), dense and keyword search, restricted to some documents through
    ``chunk_ids_of`` and the exact scores, counts, vectors by id, and ``save`` (flush, a new generation)."""

    backend: str
    second_identity: EmbedderIdentity | None
    generation: str | None
    upgraded_from: int | None

    @property
    def chunk_count(self) -> int: ...
    @property
    def files(self) -> dict[str, IndexedFile]: ...
    @property
    def records(self) -> dict[str, DocumentRecord]: ...
    @property
    def index_kind(self) -> str: ...
    @property
    def has_second_vectors(self) -> bool: ...
    @property
    def second_vectors_missing(self) -> int: ...
    def chunk_ids_of(self, sources: Iterable[str]) -> list[int]: ...
    def chunks_of(self, source: str) -> list[Chunk]: ...
    def chunk(self, chunk_id: int) -> Chunk: ...
    def chunk_language(self, chunk_id: int) -> str: ...
    def search_dense(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]: ...
    def dense_scores(self, query_vector: np.ndarray, chunk_ids: Sequence[int]) -> np.ndarray: ...
    def vectors(self, chunk_ids: Sequence[int]) -> np.ndarray: ...
    def second_scores(self, query_vector: np.ndarray, chunk_ids: Sequence[int]) -> np.ndarray: ...
    def stored_second_vectors(self, chunk_ids: Sequence[int]) -> np.ndarray: ...
    def missing_second_vectors(self) -> list[int]: ...
    def put_second_vectors(self, chunk_ids: Sequence[int], vectors: np.ndarray) -> None: ...
    def search_keywords(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]: ...
    def keyword_scores(self, terms: Sequence[str], chunk_ids: Sequence[int]) -> np.ndarray: ...
    def keyword_coverage(self, terms: Sequence[str], chunk_ids: Sequence[int]) -> float: ...
    def search(self, query_vector: np.ndarray, k: int) -> list[Hit]: ...
    def put_file(self, source: str, content_sha256: str, chunks: Sequence[Chunk], vectors: np.ndarray, pages: int,
                 second_vectors: np.ndarray | None = None, record: DocumentRecord | None = None,
                 reader_version: int = 1) -> None: ...
    def remove_file(self, source: str) -> bool: ...
    def save(self) -> str: ...


def backend_of(folder: Path, config: StoreConfig) -> str:
    """The backend a collection folder's collection lives in; a new one's is the configured one."""
    folder = Path(folder)
    if (folder / MILVUS_MARKER).is_file():
        return "milvus"
    if (folder / "CURRENT").is_file():
        return "local"
    return config.kind


def _milvus(config: StoreConfig):
    from retrieval.milvus_client import MilvusConnection  # pymilvus and grpc load only for a Milvus store

    if not config.milvus_uri:
        raise StoreError("KB_STORE=milvus needs KB_MILVUS_URI (a file path for Milvus Lite, or http://host:19530)")
    return MilvusConnection.to(config.milvus_uri, config.milvus_token)


def open_collection(
    folder: Path, config: StoreConfig, identity: EmbedderIdentity, *, create: bool = False, upgrade: bool = False,
    second_identity: EmbedderIdentity | None = None, backend: str | None = None,
) -> CollectionStore:
    """The collection of ``folder`` in its backend (``backend`` forces one, for a copy's target)."""
    backend = backend or backend_of(folder, config)
    if backend == "milvus":
        from retrieval.milvus_store import MilvusCollection

        return MilvusCollection.open(folder, identity, db=_milvus(config), create=create, upgrade=upgrade,
                                     second_identity=second_identity, index=config.milvus_index)
    return Collection.open(folder, identity, create=create, upgrade=upgrade, exact_up_to=config.exact_up_to,
                           second_identity=second_identity)


def current_generation(folder: Path, config: StoreConfig) -> str | None:
    """The live generation's name, polled before every query (one small read in Milvus)."""
    if backend_of(folder, config) == "milvus" and (Path(folder) / MILVUS_MARKER).is_file():
        from retrieval.milvus_store import MilvusCollection

        return MilvusCollection.current_generation(_milvus(config), folder)
    return Collection.current_generation(folder)


def milvus_dropper(folder: Path, config: StoreConfig) -> Callable[[], None]:
    """What drops the Milvus side of a collection, read and connected now, called once its folder is deleted (a
    no-op for a local collection): ``team.collections.delete_collection`` deletes the folder first, which may be
    refused."""
    marker = Path(folder) / MILVUS_MARKER
    if not marker.is_file():
        return lambda: None
    import json

    name = json.loads(marker.read_text(encoding="utf-8"))["collection"]
    db = _milvus(config)  # connected now: a Milvus that cannot be reached is an error before the folder goes

    def drop() -> None:
        for part in (name, f"{name}_meta", f"{name}_second"):
            db.drop(part)

    return drop


COPY_CHECKPOINT = 20_000  # passages between saves of a copy


def copy_collection(source: CollectionStore, target: CollectionStore,
                    on_progress: Callable[[int, int], None] | None = None) -> int:
    """Copy every document of ``source`` into ``target``, vectors included; returns the passages copied.

    Documents the target already holds with the same hash and reader version are skipped, so an interrupted
    copy, run again, finishes the rest; documents the source no longer has are removed from the target.
    Second-embedder vectors are copied for the documents whose every passage has one; the rest get them
    at the next ``kb ingest``, as after a change of the second embedder.
    """
    has_second = getattr(source, "second_identity", None) is not None
    missing = set(source.missing_second_vectors())
    already = target.files
    records = source.records
    total, copied, since_save = source.chunk_count, 0, 0
    for name, indexed in sorted(source.files.items()):
        ids = list(indexed.chunk_ids)
        present = already.get(name)
        if present is not None and (present.content_sha256, present.reader_version) == \
                (indexed.content_sha256, indexed.reader_version) and len(present.chunk_ids) == len(ids):
            total -= len(ids)
            continue
        second = source.stored_second_vectors(ids) if has_second and ids and missing.isdisjoint(ids) else None
        target.put_file(name, indexed.content_sha256, [source.chunk(i) for i in ids], source.vectors(ids),
                        indexed.pages, second, record=records.get(name), reader_version=indexed.reader_version)
        copied += len(ids)
        since_save += len(ids)
        if since_save >= COPY_CHECKPOINT:
            target.save()
            since_save = 0
        if on_progress is not None:
            on_progress(copied, total)
    for name in set(already) - set(source.files):
        target.remove_file(name)
    target.save()
    return copied
