"""A collection on disk: FAISS vectors, chunk metadata and a versioned manifest.

Layout of a collection folder::

    CURRENT              name of the live generation, replaced atomically
    gen-000007/
        manifest.json    format version, embedder identity, files and their hashes, document records
        vectors.faiss    FAISS IndexIDMap2(IndexFlatIP), written by faiss itself
        chunks.jsonl     one chunk per line, keyed by its FAISS id
        keywords.npz     the BM25 keyword index (``retrieval.keyword_index``)
        keyword_terms.json
        second_vectors.faiss  the second embedder's vectors, same ids (optional)
    write.lock           held by the one process that may write

Nothing is pickled: FAISS's own binary format, JSON, JSON lines and numpy
arrays read with ``allow_pickle=False``.

The keyword index is derived from the chunks: if it is missing, unreadable or
was built by another tokenizer version, it is rebuilt from ``chunks.jsonl`` on
load (seconds) and written with the next save, so upgrading the tokenizer never
means embedding again.

Crash safety: a save writes a whole new generation folder, flushes it to disk,
then points ``CURRENT`` at it with an atomic rename. A crash at any moment
leaves ``CURRENT`` naming a complete generation, so readers (the UI) see the
old or the new collection, never a half-written one. The previous generation
is kept until the next save, for a reader that is still loading it.

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

Index type by size: exact inner-product search (IndexIDMap2 over IndexFlatIP)
up to ``exact_up_to`` chunks; above, an inverted-file index (IndexIVFFlat,
about sqrt(n) lists, a quarter of them searched) that keeps adding and removing
chunks without a rebuild. It is built when a save crosses the threshold,
retrained when the collection has grown fourfold since, and turned back into an
exact index below half the threshold. Threshold and the share of lists searched are
measured (benchmarks/bench_index.py: recall@10 against exact search at least
0.95 on the real bilingual collection's vectors; exact search costs 13 ms at
100k chunks and grows linearly).
IVF rather than HNSW because HNSW cannot delete, and deleting documents is an
everyday operation here.

Deliberately not here: fusing the two searches (``retrieval.fusion``),
compaction of the generation history, product quantisation (memory is not the
limit below a few million chunks on a 24 GB machine).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from filelock import FileLock, Timeout

from core.errors import KbError
from core.types import Chunk
from ingest.records import DocumentRecord
from retrieval.embedders import EmbedderIdentity
from core.types import Hit
from retrieval.keyword_index import KeywordIndex
from retrieval.keywords import TOKENIZER_VERSION, text_language

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: document records, chunk headers
EXACT_UP_TO = 200_000  # chunks; beyond this, exact search costs more than the rest of a query
IVF_PROBED_SHARE = 4  # search 1/4 of the lists: recall@10 0.97 on real e5 vectors (1/8: 0.955, too close)
IVF_MIN_NPROBE = 32
_GENERATION = re.compile(r"^gen-(\d{6})$")
SECOND_VECTORS_FILE = "second_vectors.faiss"


class StoreError(KbError):
    """Base class: something is wrong with a collection on disk."""


class CollectionMissingError(StoreError):
    """No index has been built here yet."""


class IndexMismatchError(StoreError):
    """The collection was built with another embedder or format."""


class OlderFormatError(IndexMismatchError):
    """Built by an older version of this program: ``kb ingest`` re-indexes it."""

    def __init__(self, found: int, folder: Path) -> None:
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


class Collection:
    """One knowledge base: load, search, change in memory, save atomically."""

    def __init__(
        self, folder: Path, identity: EmbedderIdentity, exact_up_to: int = EXACT_UP_TO,
        second_identity: EmbedderIdentity | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.identity = identity
        self.second_identity = second_identity
        self._second = exact_index(second_identity.dim) if second_identity else None
        self.exact_up_to = exact_up_to
        self._index = exact_index(identity.dim)
        self._trained_on = 0  # collection size when the IVF index was trained (0: exact index)
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
        return (Path(folder) / "CURRENT").is_file()

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
        if not cls.exists(folder):
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
        try:
            return (Path(folder) / "CURRENT").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None

    def _load(self) -> None:
        generation = self.current_generation(self.folder)
        gen_dir = self.folder / (generation or "")
        if not generation or not _GENERATION.match(generation) or not gen_dir.is_dir():
            raise CorruptCollectionError(
                f"{self.folder}/CURRENT names {generation!r}, which is missing; "
                "delete the collection folder and ingest again"
            )
        try:
            manifest = json.loads((gen_dir / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CorruptCollectionError(f"unreadable manifest in {gen_dir}: {exc}") from exc
        found = manifest.get("format_version")
        if isinstance(found, int) and found < FORMAT_VERSION:
            raise OlderFormatError(found, self.folder)
        if found != FORMAT_VERSION:
            raise IndexMismatchError(
                f"{self.folder} has index format {manifest.get('format_version')!r}, this version reads "
                f"{FORMAT_VERSION}; ingest the documents again into a new collection"
            )
        built_with = EmbedderIdentity(**manifest["embedder"])
        if built_with != self.identity:
            raise IndexMismatchError(
                f"{self.folder} was built with embedder {built_with.name!r} ({built_with.dim}-dim, "
                f"{built_with.fingerprint}) but the configured embedder is {self.identity.name!r} "
                f"({self.identity.dim}-dim, {self.identity.fingerprint}); set the embedding model back, "
                "or ingest into a new collection"
            )
        try:
            index = faiss.read_index(str(gen_dir / "vectors.faiss"))
            chunks: dict[int, Chunk] = {}
            with (gen_dir / "chunks.jsonl").open(encoding="utf-8") as lines:
                for line in lines:
                    row = json.loads(line)
                    chunk_id = row.pop("id")
                    row["heading_path"] = tuple(row["heading_path"])
                    chunks[chunk_id] = Chunk(**row)
        except (OSError, RuntimeError, json.JSONDecodeError, TypeError, KeyError) as exc:
            raise CorruptCollectionError(f"damaged collection files in {gen_dir}: {exc}") from exc
        if index.ntotal != len(chunks) or index.d != self.identity.dim:
            raise CorruptCollectionError(
                f"{gen_dir}: {index.ntotal} vectors of dimension {index.d} but {len(chunks)} chunks"
            )
        # read_index returns the concrete class already; downcasting it again crashes faiss.
        self._index = index
        self._trained_on = int((manifest.get("vector_index") or {}).get("trained_on", 0))
        self._chunks = chunks
        self._files = {
            source: IndexedFile(source, row["content_sha256"], tuple(row["chunk_ids"]), row["pages"])
            for source, row in manifest["files"].items()
        }
        self._records = {
            source: DocumentRecord.from_dict(row) for source, row in (manifest.get("documents") or {}).items()
        }
        self._next_id = int(manifest["next_id"])
        self._keywords = self._load_keywords(gen_dir, manifest.get("keyword_index") or {})
        self._second = self._load_second(gen_dir, manifest.get("second_embedder"))
        self.generation = generation

    def _load_second(self, gen_dir: Path, described: dict | None) -> faiss.Index | None:
        if self.second_identity is None:
            return None
        empty = exact_index(self.second_identity.dim)
        if not described:
            return empty  # built without one: the next ingest computes them
        if EmbedderIdentity(**described) != self.second_identity:
            log.info("%s: second-embedder vectors are from %s; the next ingest recomputes them",
                     self.folder, described.get("name"))
            return empty
        try:
            index = faiss.read_index(str(gen_dir / SECOND_VECTORS_FILE))
        except (OSError, RuntimeError) as exc:
            raise CorruptCollectionError(f"damaged collection files in {gen_dir}: {exc}") from exc
        if index.d != self.second_identity.dim or index.ntotal > len(self._chunks):
            raise CorruptCollectionError(
                f"{gen_dir}: {index.ntotal} second-embedder vectors of dimension {index.d} for {len(self._chunks)} chunks"
            )
        return index

    def _load_keywords(self, gen_dir: Path, described: dict) -> KeywordIndex:
        if described.get("tokenizer") == TOKENIZER_VERSION:
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
        """'zh' or 'en' (``retrieval.keywords.text_language``), computed once per chunk: fusion asks per query."""
        language = self._languages.get(chunk_id)
        if language is None:
            language = self._languages[chunk_id] = text_language(self._chunks[chunk_id].text)
        return language

    def search_dense(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the ``k`` nearest chunks, best first."""
        if not self._chunks or k <= 0:
            return []
        query = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        scores, ids = self._index.search(query, min(k, len(self._chunks)))
        return [(int(i), float(score)) for score, i in zip(scores[0], ids[0]) if i >= 0]

    def dense_scores(self, query_vector: np.ndarray, chunk_ids: Sequence[int]) -> np.ndarray:
        """Cosine of the query with each given chunk's stored vector."""
        return _cosines(self._index, query_vector, chunk_ids)

    def vectors(self, chunk_ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of the given chunks."""
        return self._index.reconstruct_batch(np.asarray(chunk_ids, dtype=np.int64))

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
        return len(self._chunks) - self._second.ntotal if self._second is not None else 0

    def second_scores(self, query_vector: np.ndarray, chunk_ids: Sequence[int]) -> np.ndarray:
        """Cosine of the second embedder's query vector with each given chunk's second vector."""
        if self._second is None:
            raise ValueError("this collection was opened without a second embedder")
        return _cosines(self._second, query_vector, chunk_ids)

    def missing_second_vectors(self) -> list[int]:
        """Chunk ids that have no second-embedder vector yet (none when no second embedder is configured)."""
        if self._second is None:
            return []
        present = set(faiss.vector_to_array(self._second.id_map).tolist()) if self._second.ntotal else set()
        return [chunk_id for chunk_id in self._chunks if chunk_id not in present]

    def put_second_vectors(self, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
        if self._second is None:
            raise ValueError("this collection was opened without a second embedder")
        if len(chunk_ids) != len(vectors):
            raise ValueError(f"{len(chunk_ids)} chunk ids but {len(vectors)} vectors")
        if len(chunk_ids):
            self._second.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                      np.asarray(chunk_ids, dtype=np.int64))

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
        second_vectors: np.ndarray | None = None, record: DocumentRecord | None = None,
    ) -> None:
        """Add a file, replacing whatever was indexed for it before."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if second_vectors is not None and len(second_vectors) != len(chunks):
            raise ValueError(f"{len(chunks)} chunks but {len(second_vectors)} second-embedder vectors")
        self.remove_file(source)
        ids = np.arange(self._next_id, self._next_id + len(chunks), dtype=np.int64)
        self._next_id += len(chunks)
        if len(chunks):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        for chunk_id, chunk in zip(ids.tolist(), chunks):
            self._chunks[chunk_id] = chunk
            self._keywords.add(chunk_id, chunk.embedding_text)
        if second_vectors is not None and self._second is not None:
            self.put_second_vectors(ids.tolist(), second_vectors)
        self._files[source] = IndexedFile(source, content_sha256, tuple(ids.tolist()), pages)
        if record is not None:
            self._records[source] = record

    def remove_file(self, source: str) -> bool:
        record = self._files.pop(source, None)
        self._records.pop(source, None)
        if record is None:
            return False
        if record.chunk_ids:
            self._index.remove_ids(np.asarray(record.chunk_ids, dtype=np.int64))
            if self._second is not None:
                self._second.remove_ids(np.asarray(record.chunk_ids, dtype=np.int64))
        for chunk_id in record.chunk_ids:
            self._chunks.pop(chunk_id, None)
            self._languages.pop(chunk_id, None)
        self._keywords.remove(record.chunk_ids)
        return True

    @property
    def index_kind(self) -> str:
        return "ivf" if isinstance(self._index, faiss.IndexIVF) else "exact"

    def _fit_index_to_size(self) -> None:
        """Switch between exact and IVF search as the collection crosses the thresholds."""
        count = len(self._chunks)
        if self.index_kind == "exact":
            rebuild = count > self.exact_up_to
        else:
            rebuild = count < self.exact_up_to // 2 or count > 4 * self._trained_on
        if not rebuild:
            return
        ids = np.fromiter(self._chunks, dtype=np.int64, count=count)
        vectors = self._index.reconstruct_batch(ids) if count else np.zeros((0, self.identity.dim), np.float32)
        if count > self.exact_up_to:
            self._index, self._trained_on = ivf_index(vectors), count
        else:
            self._index, self._trained_on = exact_index(self.identity.dim), 0
        if count:
            self._index.add_with_ids(np.ascontiguousarray(vectors), ids)

    # ----- saving ----------------------------------------------------------
    def save(self) -> str:
        """Write a new generation and make it live atomically; returns its name."""
        self._fit_index_to_size()
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = sorted(int(m.group(1)) for m in map(_GENERATION.match, os.listdir(self.folder)) if m)
        name = f"gen-{(existing[-1] + 1 if existing else 1):06d}"
        staging = self.folder / f".staging-{name}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        faiss.write_index(self._index, str(staging / "vectors.faiss"))
        with (staging / "chunks.jsonl").open("w", encoding="utf-8") as out:
            for chunk_id, chunk in self._chunks.items():
                row = {"id": chunk_id, **asdict(chunk)}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._keywords.save(staging)
        if self._second is not None:
            faiss.write_index(self._second, str(staging / SECOND_VECTORS_FILE))
        manifest = {
            "format_version": FORMAT_VERSION,
            "embedder": asdict(self.identity),
            "chunk_count": len(self._chunks),
            "next_id": self._next_id,
            "keyword_index": {"tokenizer": TOKENIZER_VERSION},
            "second_embedder": asdict(self.second_identity) if self._second is not None else None,
            "vector_index": {"kind": self.index_kind, "trained_on": self._trained_on},
            "files": {
                source: {"content_sha256": f.content_sha256, "chunk_ids": list(f.chunk_ids), "pages": f.pages}
                for source, f in sorted(self._files.items())
            },
            "documents": {source: asdict(record) for source, record in sorted(self._records.items())},
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
        _fsync_tree(staging)
        os.rename(staging, self.folder / name)
        pointer = self.folder / f".CURRENT.{os.getpid()}"
        pointer.write_text(name, encoding="utf-8")
        _fsync_file(pointer)
        os.replace(pointer, self.folder / "CURRENT")  # the commit point
        _fsync_dir(self.folder)
        previous = self.generation
        self.generation = name
        self._remove_old_generations(keep={name, previous})
        return name

    def _remove_old_generations(self, keep: Iterable[str | None]) -> None:
        keep = set(keep)
        for entry in os.listdir(self.folder):
            if (_GENERATION.match(entry) and entry not in keep) or entry.startswith(".staging-"):
                shutil.rmtree(self.folder / entry, ignore_errors=True)


def _cosines(index: faiss.Index, query_vector: np.ndarray, chunk_ids: Sequence[int]) -> np.ndarray:
    """Inner products (cosines: vectors are unit length) of the query with the given ids' stored vectors."""
    if not len(chunk_ids):
        return np.zeros(0)
    vectors = index.reconstruct_batch(np.asarray(chunk_ids, dtype=np.int64))
    return vectors @ np.asarray(query_vector, dtype=np.float32).ravel()


def exact_index(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def ivf_index(vectors: np.ndarray) -> faiss.Index:
    """An untrained-then-trained IVF index sized for ``vectors``; still empty."""
    count, dim = vectors.shape
    lists = int(2 ** round(math.log2(max(math.sqrt(count), 64))))  # about sqrt(n), a power of two
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10  # k-means converges enough for search in 10 rounds; 25 doubles the cost
    sample = vectors[np.random.default_rng(0).choice(count, size=min(count, 40 * lists), replace=False)]
    index.train(np.ascontiguousarray(sample))
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct (fusion) and remove by id
    index.nprobe = max(IVF_MIN_NPROBE, lists // IVF_PROBED_SHARE)
    return index


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


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        _fsync_file(path)
    _fsync_dir(folder)
