"""A collection on disk: FAISS vectors, chunk metadata and a versioned manifest.

Layout of a collection folder::

    CURRENT              name of the live generation, replaced atomically
    gen-000007/
        manifest.json    format version, embedder identity, files and their hashes
        vectors.faiss    FAISS IndexIDMap2(IndexFlatIP), written by faiss itself
        chunks.jsonl     one chunk per line, keyed by its FAISS id
    write.lock           held by the one process that may write

Nothing is pickled: FAISS's own binary format, JSON and JSON lines only.

Crash safety: a save writes a whole new generation folder, flushes it to disk,
then points ``CURRENT`` at it with an atomic rename. A crash at any moment
leaves ``CURRENT`` naming a complete generation, so readers (the UI) see the
old or the new collection, never a half-written one. The previous generation
is kept until the next save, for a reader that is still loading it.

Opening a collection with an embedder other than the one that built it raises
``IndexMismatchError``: vectors from two models are not comparable.

Deliberately not here: approximate indexes (exact inner-product search is fast
to tens of thousands of chunks; see docs/benchmarks.md), keyword indexes,
compaction of the generation history.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from filelock import FileLock, Timeout

from ingest.documents import Chunk
from retrieval.embedders import EmbedderIdentity
from retrieval.hits import Hit

FORMAT_VERSION = 1
_GENERATION = re.compile(r"^gen-(\d{6})$")


class StoreError(Exception):
    """Base class: something is wrong with a collection on disk."""


class CollectionMissingError(StoreError):
    """No index has been built here yet."""


class IndexMismatchError(StoreError):
    """The collection was built with another embedder or format."""


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

    def __init__(self, folder: Path, identity: EmbedderIdentity) -> None:
        self.folder = Path(folder)
        self.identity = identity
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(identity.dim))
        self._chunks: dict[int, Chunk] = {}
        self._files: dict[str, IndexedFile] = {}
        self._next_id = 0
        self.generation: str | None = None

    # ----- opening -------------------------------------------------------
    @classmethod
    def exists(cls, folder: Path) -> bool:
        return (Path(folder) / "CURRENT").is_file()

    @classmethod
    def open(cls, folder: Path, identity: EmbedderIdentity, *, create: bool = False) -> Collection:
        """Load the live generation; with ``create``, a missing collection starts empty."""
        collection = cls(folder, identity)
        if not cls.exists(folder):
            if create:
                return collection
            raise CollectionMissingError(f"no index at {folder}: run `kb ingest <folder>` first")
        collection._load()
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
        if manifest.get("format_version") != FORMAT_VERSION:
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
        self._index = faiss.downcast_index(index) if not isinstance(index, faiss.IndexIDMap2) else index
        self._chunks = chunks
        self._files = {
            source: IndexedFile(source, row["content_sha256"], tuple(row["chunk_ids"]), row["pages"])
            for source, row in manifest["files"].items()
        }
        self._next_id = int(manifest["next_id"])
        self.generation = generation

    # ----- reading -------------------------------------------------------
    @property
    def chunk_count(self) -> int:
        return len(self._chunks)

    @property
    def files(self) -> dict[str, IndexedFile]:
        return dict(self._files)

    def chunks_of(self, source: str) -> list[Chunk]:
        record = self._files.get(source)
        return [self._chunks[i] for i in record.chunk_ids] if record else []

    def search(self, query_vector: np.ndarray, k: int) -> list[Hit]:
        """Exact cosine search; best first."""
        if not self._chunks or k <= 0:
            return []
        query = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        scores, ids = self._index.search(query, min(k, len(self._chunks)))
        hits = []
        for rank, (score, chunk_id) in enumerate(zip(scores[0], ids[0]), start=1):
            if chunk_id < 0:
                continue
            hits.append(Hit(chunk=self._chunks[int(chunk_id)], first_stage_score=float(score), first_stage_rank=rank))
        return hits

    # ----- changing (in memory until save) -------------------------------
    def put_file(self, source: str, content_sha256: str, chunks: Sequence[Chunk], vectors: np.ndarray, pages: int) -> None:
        """Add a file, replacing whatever was indexed for it before."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        self.remove_file(source)
        ids = np.arange(self._next_id, self._next_id + len(chunks), dtype=np.int64)
        self._next_id += len(chunks)
        if len(chunks):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        for chunk_id, chunk in zip(ids.tolist(), chunks):
            self._chunks[chunk_id] = chunk
        self._files[source] = IndexedFile(source, content_sha256, tuple(ids.tolist()), pages)

    def remove_file(self, source: str) -> bool:
        record = self._files.pop(source, None)
        if record is None:
            return False
        if record.chunk_ids:
            self._index.remove_ids(np.asarray(record.chunk_ids, dtype=np.int64))
        for chunk_id in record.chunk_ids:
            self._chunks.pop(chunk_id, None)
        return True

    # ----- saving ----------------------------------------------------------
    def save(self) -> str:
        """Write a new generation and make it live atomically; returns its name."""
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
        manifest = {
            "format_version": FORMAT_VERSION,
            "embedder": asdict(self.identity),
            "chunk_count": len(self._chunks),
            "next_id": self._next_id,
            "files": {
                source: {"content_sha256": f.content_sha256, "chunk_ids": list(f.chunk_ids), "pages": f.pages}
                for source, f in sorted(self._files.items())
            },
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
