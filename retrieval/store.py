"""A collection on disk: FAISS vectors, chunk metadata and a versioned manifest.

Layout of a collection folder::

    CURRENT              name of the live generation, replaced atomically
    gen-000007/
        manifest.json    format version, embedder identity, files (hash, reader version), document records
        vectors.faiss    FAISS IndexIDMap2(IndexFlatIP) or IVF, written by faiss itself
        chunks.jsonl     one chunk per line, keyed by its FAISS id
        keywords.npz     the BM25 keyword index (``retrieval.keyword_index``)
        keyword_terms.json
        second_vectors.faiss  the second embedder's vectors, same ids (optional)
    write.lock           held by the one process that may write
    pages/               each indexed file's page layouts and original path (``retrieval.page_layouts``),
                         outside the generations: named by what was read, never rewritten

Nothing is pickled: FAISS's own binary format, JSON, JSON lines and numpy
arrays read with ``allow_pickle=False``.

The keyword index is derived from the chunks: if it is missing, unreadable or
was built by another tokenizer version, it is rebuilt from ``chunks.jsonl`` on
load (seconds) and written with the next save, so upgrading the tokenizer never
means embedding again.

Crash safety: each save is a new generation made live by an atomic rename of
``CURRENT`` (``retrieval.generations``); readers see the old or the new
collection, never a half-written one.

Opening a collection with an embedder other than the one that built it raises
``IndexMismatchError``: vectors from two models are not comparable.

Format 2 added document records (``ingest.records``) and the document header
each chunk is indexed with. A format-1 collection cannot be read by queries
(``IndexMismatchError`` says to run ``kb ingest``); opened for an ingest with
``upgrade=True`` it starts empty, so that ingest re-reads every file
(``Collection.upgraded_from`` tells the caller, which says so).

Second embedder (optional, ``second_identity``): a second set of vectors for
the same chunks, from another model (all-MiniLM-L6-v2 by default), whose
cosines the first stage fuses with the main ones (``retrieval.fusion``). It is
never searched, only read back for candidates, so it is always an exact
IndexIDMap2. Its identity is in the manifest too; vectors from another second
model are dropped on load, and until every chunk has one again
(``missing_second_vectors``, filled by the next ingest) the first stage leaves
the second scores out rather than mix models. Opened without a second
embedder, a collection ignores the file, and its next save leaves it out.

Index type by size: exact up to ``exact_up_to`` chunks, IVF above
(``retrieval.vector_index``, measured in benchmarks/bench_index.py). IVF rather
than HNSW because HNSW cannot delete, and deleting documents is an everyday
operation here.

Deliberately not here: fusing the two searches (``retrieval.fusion``),
compaction of the generation history, product quantisation (memory is not the
limit below a few million chunks on a 24 GB machine).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from core.types import Chunk, Hit
from text.documents import DocumentRecord
from retrieval.embedders import EmbedderIdentity
from retrieval.keyword_index import KeywordIndex
from text.keywords import TOKENIZER_VERSION, text_language
from retrieval.generations import GENERATION, current_generation, write_generation
from retrieval.manifest import (  # noqa: F401 - the errors and the lock are the store's interface too
    FORMAT_VERSION, MILVUS_MARKER, CollectionLockedError, CollectionMissingError, CorruptCollectionError, IndexedFile,
    IndexMismatchError, Manifest, OlderFormatError, StoreError, WriteLock, check_file_vectors, read_manifest,
    write_manifest,
)
from retrieval.vector_index import VectorIndex

log = logging.getLogger(__name__)

EXACT_UP_TO = 200_000  # chunks; beyond this, exact search costs more than the rest of a query
SECOND_VECTORS_FILE = "second_vectors.faiss"


class Collection:
    """One knowledge base on local files (the ``local`` backend): load, search, change in memory, save atomically.

    Its public methods are the store's protocol (``retrieval.backend.CollectionStore``), which the Milvus
    backend (``retrieval.milvus_store``) implements too.
    """

    backend = "local"

    def __init__(
        self, folder: Path, identity: EmbedderIdentity, exact_up_to: int = EXACT_UP_TO,
        second_identity: EmbedderIdentity | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.identity = identity
        self.second_identity = second_identity
        self._second = VectorIndex.exact(second_identity.dim) if second_identity else None
        self.exact_up_to = exact_up_to
        self._index = VectorIndex.exact(identity.dim)
        self._chunks: dict[int, Chunk] = {}
        self._files: dict[str, IndexedFile] = {}
        self._records: dict[str, DocumentRecord] = {}
        self.upgraded_from: int | None = None  # the older format this collection was opened over (ingest only)
        self._keywords = KeywordIndex()
        self._languages: dict[int, str] = {}  # chunk id -> language, filled on demand
        self._next_id = 0
        self.generation: str | None = None

    # ----- opening -------------------------------------------------------
    @classmethod
    def exists(cls, folder: Path) -> bool:
        """A collection lives here: a local one, or the marker of one stored in Milvus (``retrieval.backend``)."""
        return (Path(folder) / "CURRENT").is_file() or (Path(folder) / MILVUS_MARKER).is_file()

    @classmethod
    def open(
        cls, folder: Path, identity: EmbedderIdentity, *, create: bool = False, exact_up_to: int = EXACT_UP_TO,
        second_identity: EmbedderIdentity | None = None, upgrade: bool = False,
    ) -> Collection:
        """Load the live generation; with ``create``, a missing collection starts empty.

        With ``upgrade``, a collection of an older format starts empty too (``upgraded_from`` says which):
        its next save replaces it, so the ingest that opened it re-indexes everything.
        """
        collection = cls(folder, identity, exact_up_to, second_identity)
        if not (Path(folder) / "CURRENT").is_file():
            if create:
                return collection
            raise CollectionMissingError(f"no index at {folder}: run `kb ingest <folder>` first")
        try:
            collection._load()
        except OlderFormatError as exc:
            if not upgrade:
                raise
            log.warning("%s", exc)
            collection = cls(folder, identity, exact_up_to, second_identity)
            collection.upgraded_from = exc.found
        return collection

    @staticmethod
    def current_generation(folder: Path) -> str | None:
        """The live generation's name, cheap enough to poll before every query."""
        return current_generation(folder)

    def _load(self) -> None:
        generation = self.current_generation(self.folder)
        gen_dir = self.folder / (generation or "")
        if not generation or not GENERATION.match(generation) or not gen_dir.is_dir():
            raise CorruptCollectionError(
                f"{self.folder}/CURRENT names {generation!r}, which is missing; "
                "delete the collection folder and ingest again"
            )
        manifest = read_manifest(gen_dir, self.folder, self.identity)
        try:
            index = VectorIndex.read(gen_dir / "vectors.faiss", manifest.trained_on)
            chunks: dict[int, Chunk] = {}
            with (gen_dir / "chunks.jsonl").open(encoding="utf-8") as lines:
                for line in lines:
                    row = json.loads(line)
                    chunk_id = row.pop("id")
                    row["heading_path"] = tuple(row["heading_path"])
                    chunks[chunk_id] = Chunk(**row)
        except (OSError, RuntimeError, json.JSONDecodeError, TypeError, KeyError) as exc:
            raise CorruptCollectionError(f"damaged collection files in {gen_dir}: {exc}") from exc
        if index.size != len(chunks) or index.dim != self.identity.dim:
            raise CorruptCollectionError(
                f"{gen_dir}: {index.size} vectors of dimension {index.dim} but {len(chunks)} chunks"
            )
        self._index = index
        self._chunks = chunks
        self._files = dict(manifest.files)
        self._records = dict(manifest.records)
        self._next_id = manifest.next_id
        self._keywords = self._load_keywords(gen_dir, manifest.keyword_tokenizer)
        self._second = self._load_second(gen_dir, manifest.second_embedder)
        self.generation = generation

    def _load_second(self, gen_dir: Path, described: dict | None) -> VectorIndex | None:
        if self.second_identity is None:
            return None
        empty = VectorIndex.exact(self.second_identity.dim)
        if not described:
            return empty  # built without one: the next ingest computes them
        if not self.second_identity.can_search(EmbedderIdentity(**described)):
            log.info("%s: second-embedder vectors are from %s; the next ingest recomputes them",
                     self.folder, described.get("name"))
            return empty
        try:
            index = VectorIndex.read(gen_dir / SECOND_VECTORS_FILE)
        except (OSError, RuntimeError) as exc:
            raise CorruptCollectionError(f"damaged collection files in {gen_dir}: {exc}") from exc
        if index.dim != self.second_identity.dim or index.size > len(self._chunks):
            raise CorruptCollectionError(
                f"{gen_dir}: {index.size} second-embedder vectors of dimension {index.dim} for {len(self._chunks)} chunks"
            )
        return index

    def _load_keywords(self, gen_dir: Path, tokenizer: str | None) -> KeywordIndex:
        if tokenizer == TOKENIZER_VERSION:
            try:
                index = KeywordIndex.load(gen_dir)
                if len(index) == len(self._chunks):
                    return index
            except (OSError, ValueError, KeyError) as exc:
                log.warning("keyword index in %s unreadable (%s); rebuilding it from the chunks", gen_dir, exc)
        index = KeywordIndex()  # older tokenizer or none stored: derive it, the chunks are the truth
        for chunk_id, chunk in self._chunks.items():
            index.add(chunk_id, chunk.embedding_text)
        return index

    # ----- reading -------------------------------------------------------
    @property
    def chunk_count(self) -> int:
        return len(self._chunks)

    @property
    def files(self) -> dict[str, IndexedFile]:
        return dict(self._files)

    @property
    def records(self) -> dict[str, DocumentRecord]:
        """What each document is (title, organisation, period), by source."""
        return dict(self._records)

    def chunk_ids_of(self, sources: Iterable[str]) -> list[int]:
        return [i for source in sources if source in self._files for i in self._files[source].chunk_ids]

    def chunks_of(self, source: str) -> list[Chunk]:
        record = self._files.get(source)
        return [self._chunks[i] for i in record.chunk_ids] if record else []

    def chunk(self, chunk_id: int) -> Chunk:
        return self._chunks[chunk_id]

    def chunk_language(self, chunk_id: int) -> str:
        """'zh' or 'en' (``text.keywords.text_language``), computed once per chunk: fusion asks per query."""
        language = self._languages.get(chunk_id)
        if language is None:
            language = self._languages[chunk_id] = text_language(self._chunks[chunk_id].text)
        return language

    def search_dense(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the ``k`` nearest chunks, best first."""
        if not self._chunks or k <= 0:
            return []
        return self._index.search(query_vector, min(k, len(self._chunks)))

    def dense_scores(self, query_vector: np.ndarray, chunk_ids: Sequence[int]) -> np.ndarray:
        """Cosine of the query with each given chunk's stored vector."""
        return self._index.cosines(query_vector, chunk_ids)

    def vectors(self, chunk_ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of the given chunks."""
        return self._index.vectors(chunk_ids)

    @property
    def has_second_vectors(self) -> bool:
        """Every chunk has a vector from the configured second embedder."""
        return self._second is not None and bool(self._chunks) and self.second_vectors_missing == 0

    @property
    def second_vectors_missing(self) -> int:
        """How many chunks lack a second-embedder vector (0 without a second embedder); no id scan.

        Second vectors only exist for chunks of the collection (they are added with their chunks or
        for missing ones, removed with their file), so the count is the difference of the sizes.
        """
        return len(self._chunks) - self._second.size if self._second is not None else 0

    def second_scores(self, query_vector: np.ndarray, chunk_ids: Sequence[int]) -> np.ndarray:
        """Cosine of the second embedder's query vector with each given chunk's second vector."""
        if self._second is None:
            raise ValueError("this collection was opened without a second embedder")
        return self._second.cosines(query_vector, chunk_ids)

    def stored_second_vectors(self, chunk_ids: Sequence[int]) -> np.ndarray:
        """The second embedder's vectors of these chunks (each must have one: ``missing_second_vectors``)."""
        if self._second is None:
            raise ValueError("this collection was opened without a second embedder")
        return self._second.vectors(chunk_ids)

    def missing_second_vectors(self) -> list[int]:
        """Chunk ids that have no second-embedder vector yet (none when no second embedder is configured)."""
        if self._second is None:
            return []
        present = self._second.ids()
        return [chunk_id for chunk_id in self._chunks if chunk_id not in present]

    def put_second_vectors(self, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
        if self._second is None:
            raise ValueError("this collection was opened without a second embedder")
        if len(chunk_ids) != len(vectors):
            raise ValueError(f"{len(chunk_ids)} chunk ids but {len(vectors)} vectors")
        self._second.add(chunk_ids, vectors)

    def search_keywords(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        """(chunk id, normalised BM25) of the ``k`` best keyword matches for the query's keyword tokens, best first."""
        return self._keywords.search(terms, k) if k > 0 else []

    def keyword_scores(self, terms: Sequence[str], chunk_ids: Sequence[int]) -> np.ndarray:
        return self._keywords.scores_for(terms, chunk_ids)

    def keyword_coverage(self, terms: Sequence[str], chunk_ids: Sequence[int]) -> float:
        """Share of the query's keyword weight present in these chunks (``KeywordIndex.coverage``)."""
        return self._keywords.coverage(terms, chunk_ids)

    def search(self, query_vector: np.ndarray, k: int) -> list[Hit]:
        """Dense search only, as hits; best first (the app's first stage is ``retrieval.fusion``)."""
        return [
            Hit(chunk=self._chunks[chunk_id], first_stage_score=score, first_stage_rank=rank,
                dense_score=score, chunk_id=chunk_id)
            for rank, (chunk_id, score) in enumerate(self.search_dense(query_vector, k), start=1)
        ]

    # ----- changing (in memory until save) -------------------------------
    def put_file(
        self, source: str, content_sha256: str, chunks: Sequence[Chunk], vectors: np.ndarray, pages: int,
        second_vectors: np.ndarray | None = None, record: DocumentRecord | None = None, reader_version: int = 1,
    ) -> None:
        """Add a file, replacing whatever was indexed for it before."""
        check_file_vectors(len(chunks), vectors, second_vectors)
        self.remove_file(source)
        ids = np.arange(self._next_id, self._next_id + len(chunks), dtype=np.int64)
        self._next_id += len(chunks)
        self._index.add(ids, vectors)
        for chunk_id, chunk in zip(ids.tolist(), chunks):
            self._chunks[chunk_id] = chunk
            self._keywords.add(chunk_id, chunk.embedding_text)
        if second_vectors is not None and self._second is not None:
            self.put_second_vectors(ids.tolist(), second_vectors)
        self._files[source] = IndexedFile(source, content_sha256, tuple(ids.tolist()), pages, reader_version)
        if record is not None:
            self._records[source] = record

    def remove_file(self, source: str) -> bool:
        record = self._files.pop(source, None)
        self._records.pop(source, None)
        if record is None:
            return False
        self._index.remove(record.chunk_ids)
        if self._second is not None:
            self._second.remove(record.chunk_ids)
        for chunk_id in record.chunk_ids:
            self._chunks.pop(chunk_id, None)
            self._languages.pop(chunk_id, None)
        self._keywords.remove(record.chunk_ids)
        return True

    @property
    def index_kind(self) -> str:
        return self._index.kind

    # ----- saving ----------------------------------------------------------
    def save(self) -> str:
        """Write a new generation and make it live atomically (``retrieval.generations``); returns its name."""
        # Exact or IVF search as the collection crosses the thresholds (``retrieval.vector_index``).
        self._index = self._index.fitted(self._chunks, len(self._chunks), self.exact_up_to)
        self.generation = write_generation(self.folder, self._write_files, previous=self.generation)
        return self.generation

    def _write_files(self, staging: Path) -> None:
        self._index.write(staging / "vectors.faiss")
        with (staging / "chunks.jsonl").open("w", encoding="utf-8") as out:
            for chunk_id, chunk in self._chunks.items():
                row = {"id": chunk_id, **asdict(chunk)}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._keywords.save(staging)
        if self._second is not None:
            self._second.write(staging / SECOND_VECTORS_FILE)
        write_manifest(staging, Manifest(
            embedder=self.identity, next_id=self._next_id, files=self._files, records=self._records,
            chunk_count=len(self._chunks), index_kind=self.index_kind, trained_on=self._index.trained_on,
            keyword_tokenizer=TOKENIZER_VERSION,
            second_embedder=self.second_identity.record() if self._second is not None else None,
        ))
