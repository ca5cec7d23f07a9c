"""A knowledge base stored in Milvus (the ``milvus`` backend): the same methods as ``retrieval.store.Collection``.

The passages, their vectors, keyword tokens and document fields live in a Milvus collection, what the
manifest holds (format version, embedder identity, every document's hash, chunk ids, pages, reader version
and record) in a second one (``retrieval.milvus_client`` has both schemas). The collection folder under
``KB_HOME`` keeps only a marker naming the Milvus collection (``milvus.json``) and the write lock.

What stays ours, so that both backends rank alike: fusion (``retrieval.fusion``) and the BM25 scores it
fuses. Milvus's BM25 finds the keyword candidates; their scores are computed here from their stored
keyword tokens and the collection's document frequencies with the local index's formula
(``retrieval.keyword_index.normalised_bm25``), because Milvus Lite's BM25 uses per-segment statistics and
neither reports the idf the scores are normalised by. The document frequencies are the sum of every
document's term counts, kept with its row and summed when the collection is opened (a scalar filter such
as ``TEXT_MATCH`` reads every row in Milvus Lite: 2.8 s per term at 20,000 passages). Rows read for a query
are cached by id (``ROW_CACHE``), so fusion's many small reads of the same candidates cost one Milvus call.

Writes are buffered like the local store's changes in memory and sent in batches (``BATCH_CHUNKS``) and at
every ``save``, journalled (``retrieval.milvus_journal``): the next writer rolls back whatever a killed
process left half-written, so a re-run ingest reads those files again and ends with the same passages. A
document's old passages are deleted by their ids: nothing of it stays retrievable. Readers drop hits at or
above the next id they loaded, so passages being written are not found half-way.

Deliberately not here: choosing the backend (``retrieval.backend``), Milvus's own rankers (RRF and weighted
rankers were not measured better than our fusion), locking out a writer on another machine (the write lock
is a file in the collection folder: one ingest per collection at a time is the operator's rule there).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.types import Chunk, Hit
from retrieval.embedders import EmbedderIdentity
from retrieval.keyword_index import idf_coverage, normalised_bm25
from retrieval.manifest import (FORMAT_VERSION, MILVUS_MARKER, CollectionMissingError, CorruptCollectionError,
                                IndexedFile, OlderFormatError, check_compatible, check_file_vectors)
from retrieval.milvus_client import MilvusConnection, keyword_field_token
from retrieval.milvus_journal import Batch, journal_row, roll_back, stored_terms, write_batch
from retrieval.milvus_rows import (PassageRow, StoredDocument, describe_document, document_from_payload,
                                   document_terms, meta_row, milvus_name, passage_from_row, passage_row, term_parts,
                                   term_row_keys)
from retrieval.milvus_second import SecondVectors
from text.documents import DocumentRecord
from text.keywords import text_language

BATCH_CHUNKS = 2_000  # passages per write batch: a few MB per insert call
QUERY_IDS = 500  # ids or names in one filter expression
ROW_CACHE = 20_000  # passages kept in memory after a read
HEADER = "header"
_ROW_FIELDS = ("id", "document", "page", "heading_path", "start_char", "end_char", "ocr", "header", "text",
               "keywords", "vector")


class MilvusCollection:
    """One knowledge base in Milvus; ``open`` it through ``retrieval.backend.open_collection``."""

    backend = "milvus"

    def __init__(self, db: MilvusConnection, name: str, folder: Path, identity: EmbedderIdentity,
                 second_identity: EmbedderIdentity | None) -> None:
        self._db, self.name, self._meta = db, name, f"{name}_meta"
        self.folder = Path(folder)
        self.identity, self.second_identity = identity, second_identity
        self.upgraded_from: int | None = None
        self.generation: str | None = None
        self._generation_number = 0
        self._documents: dict[str, StoredDocument] = {}
        self._next_id = 0
        self._created = False
        self._index = "FLAT"
        self._second = SecondVectors(db, f"{name}_second", second_identity) if second_identity else None
        self._writable = False  # a killed writer's journal rolled back
        self._unfinished: dict[str, dict] = {}  # ``writing`` rows found at load: what a killed writer left
        self._pending: dict[str, list[dict]] = {}  # source -> its new rows, until the next batch
        self._pending_second: dict[str, list[tuple[int, str, np.ndarray]]] = {}
        self._replaced: dict[str, StoredDocument] = {}  # written versions to delete with the next batch
        self._df: Counter = Counter()  # in how many passages each keyword occurs (the written form)
        self._rows: OrderedDict[int, PassageRow] = OrderedDict()
        self._languages: dict[int, str] = {}
        self._missing_second: int | None = None
        self._counted: tuple[int, int] | None = None

    # ----- opening -------------------------------------------------------
    @classmethod
    def open(cls, folder: Path, identity: EmbedderIdentity, *, db: MilvusConnection, create: bool = False,
             upgrade: bool = False, second_identity: EmbedderIdentity | None = None,
             index: str = "FLAT") -> MilvusCollection:
        folder = Path(folder)
        marker = folder / MILVUS_MARKER
        if not marker.is_file():
            if not create:
                raise CollectionMissingError(f"no index at {folder}: run `kb ingest <folder>` first")
            collection = cls(db, milvus_name(folder.name), folder, identity, second_identity)
            collection._index = index
            return collection
        name = json.loads(marker.read_text(encoding="utf-8"))["collection"]
        collection = cls(db, name, folder, identity, second_identity)
        collection._index = index
        header = collection._header()
        if header is None:
            if create:  # the marker of a collection whose Milvus side was dropped: start anew
                return collection
            raise CorruptCollectionError(f"{folder} names the Milvus collection {name} at {db.uri}, which is not "
                                         "there; delete this collection (`kb collections --delete`) and ingest again")
        try:
            check_compatible(header, f"{folder} (Milvus collection {name})", identity)
        except OlderFormatError as exc:
            if not upgrade:
                raise
            for part in (name, f"{name}_meta", f"{name}_second"):
                db.drop(part)
            collection = cls(db, name, folder, identity, second_identity)
            collection._index, collection.upgraded_from = index, exc.found
            return collection
        collection._load(header)
        return collection

    @classmethod
    def current_generation(cls, db: MilvusConnection, folder: Path) -> str | None:
        marker = Path(folder) / MILVUS_MARKER
        if not marker.is_file():
            return None
        name = json.loads(marker.read_text(encoding="utf-8"))["collection"]
        if not db.has(f"{name}_meta"):
            return None
        rows = db.get(f"{name}_meta", [HEADER], ["payload"])
        return f"milvus-{json.loads(rows[0]['payload'])['generation']:06d}" if rows else None

    def _header(self) -> dict | None:
        if not self._db.has(self._meta) or not self._db.has(self.name):
            return None
        rows = self._db.get(self._meta, [HEADER], ["payload"])
        return json.loads(rows[0]["payload"]) if rows else None

    def _load(self, header: dict) -> None:
        self._created = True
        self._generation_number = int(header["generation"])
        self.generation = f"milvus-{self._generation_number:06d}"
        self._next_id = int(header["next_id"])
        for row in self._db.query(self._meta, 'kind == "document"', ["key", "payload"]):
            payload, source = json.loads(row["payload"]), row["key"][len("doc:"):]
            if payload.get("state") != "done":  # what a killed writer left: invisible, rolled back by the next
                self._unfinished[source] = payload
                continue
            document = self._documents[source] = document_from_payload(source, payload)
            self._df.update(payload["terms"] if "terms" in payload
                            else stored_terms(self._db, self._meta, source, document.term_rows))
            self._next_id = max(self._next_id, document.file.chunk_ids.stop)

    # ----- reading: what the manifest says ---------------------------------
    def _totals(self) -> tuple[int, int]:
        """Passages and keyword tokens of all documents (BM25's count and average length), kept until a change."""
        if self._counted is None:
            self._counted = (sum(len(d.file.chunk_ids) for d in self._documents.values()),
                             sum(d.tokens for d in self._documents.values()))
        return self._counted

    @property
    def chunk_count(self) -> int:
        return self._totals()[0]

    @property
    def files(self) -> dict[str, IndexedFile]:
        return {source: document.file for source, document in self._documents.items()}

    @property
    def records(self) -> dict[str, DocumentRecord]:
        return {source: d.record for source, d in self._documents.items() if d.record is not None}

    def chunk_ids_of(self, sources: Iterable[str]) -> list[int]:
        return [i for source in sources if source in self._documents for i in self._documents[source].file.chunk_ids]

    @property
    def index_kind(self) -> str:
        return self._db.vector_index(self.name) if self._created else self._index.lower()

    # ----- reading: passages -----------------------------------------------
    def _fields(self) -> list[str]:
        return list(_ROW_FIELDS)

    def _remember(self, row: dict) -> PassageRow:
        cached = passage_from_row(row)
        self._rows[int(row["id"])] = cached
        self._rows.move_to_end(int(row["id"]))
        while len(self._rows) > ROW_CACHE:
            self._rows.popitem(last=False)
        return cached

    def _fetch(self, chunk_ids: Sequence[int]) -> list[PassageRow | None]:
        """The rows of these ids (None for an id that is gone), from the cache or in one Milvus call."""
        self._flush()
        wanted = [int(i) for i in chunk_ids]
        missing = list(dict.fromkeys(i for i in wanted if i not in self._rows))
        if missing and self._created:
            for start in range(0, len(missing), QUERY_IDS):
                for row in self._db.get(self.name, missing[start:start + QUERY_IDS], self._fields()):
                    self._remember(row)
        return [self._rows.get(i) for i in wanted]

    def chunk(self, chunk_id: int) -> Chunk:
        row = self._fetch([chunk_id])[0]
        if row is None:
            raise KeyError(chunk_id)
        return row.chunk

    def chunks_of(self, source: str) -> list[Chunk]:
        document = self._documents.get(source)
        if document is None:
            return []
        return [row.chunk for row in self._fetch(document.file.chunk_ids) if row is not None]

    def chunk_language(self, chunk_id: int) -> str:
        language = self._languages.get(chunk_id)
        if language is None:
            language = self._languages[chunk_id] = text_language(self.chunk(chunk_id).text)
        return language

    def search_dense(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the ``k`` nearest chunks, best first."""
        self._flush()
        if not self.chunk_count or k <= 0:
            return []
        vector = np.asarray(query_vector, dtype=np.float32).ravel().tolist()
        hits = self._db.search(self.name, "vector", vector, min(k, self.chunk_count, 16_384), "", self._fields())
        # Ids from the next id on are a batch being written; a filter would cost a read of every row in Lite.
        return [(chunk_id, score) for chunk_id, score, row in hits
                if chunk_id < self._next_id and self._remember({"id": chunk_id, **row})]

    def _vectors(self, chunk_ids: Sequence[int]) -> np.ndarray:
        rows = self._fetch(chunk_ids)
        zero = np.zeros(self.identity.dim, np.float32)
        return np.stack([row.vector if row is not None else zero for row in rows]) if rows \
            else np.zeros((0, self.identity.dim), np.float32)

    def vectors(self, chunk_ids: Sequence[int]) -> np.ndarray:
        return self._vectors(chunk_ids)

    def dense_scores(self, query_vector: np.ndarray, chunk_ids: Sequence[int]) -> np.ndarray:
        if not len(chunk_ids):
            return np.zeros(0)
        return self._vectors(chunk_ids) @ np.asarray(query_vector, dtype=np.float32).ravel()

    def search(self, query_vector: np.ndarray, k: int) -> list[Hit]:
        return [Hit(chunk=self.chunk(chunk_id), first_stage_score=score, first_stage_rank=rank, dense_score=score,
                    chunk_id=chunk_id)
                for rank, (chunk_id, score) in enumerate(self.search_dense(query_vector, k), start=1)]

    # ----- reading: keywords -------------------------------------------------
    def _statistics(self, terms: Sequence[str]) -> tuple[list[str], dict[str, int], int, float]:
        written = sorted({keyword_field_token(term) for term in terms})
        count, tokens = self._totals()
        average = tokens / count if count else 0.0
        return written, {term: self._df.get(term, 0) for term in written}, count, average

    def search_keywords(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        """(chunk id, normalised BM25) of the ``k`` best keyword matches, best first; only chunks that match."""
        self._flush()
        written = sorted({keyword_field_token(term) for term in terms if term.strip()})
        if k <= 0 or not written or not self.chunk_count:
            return []
        # Twice as many as asked: Milvus Lite's BM25 weighs terms per segment, so its ranking and the exact one
        # (ours, below) differ a little at the edge of the top k.
        hits = self._db.search(self.name, "sparse", " ".join(written), min(2 * k, 16_384), "", self._fields())
        ids = [chunk_id for chunk_id, _, row in hits if chunk_id < self._next_id and self._remember({"id": chunk_id, **row})]
        scores = self.keyword_scores(terms, ids)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(ids[i], float(scores[i])) for i in order if scores[i] > 0]

    def keyword_scores(self, terms: Sequence[str], chunk_ids: Sequence[int]) -> np.ndarray:
        written, frequencies, count, average = self._statistics(terms)
        rows = self._fetch(chunk_ids)
        return normalised_bm25(written, [row.counts if row is not None else Counter() for row in rows],
                               frequencies, count, average)

    def keyword_coverage(self, terms: Sequence[str], chunk_ids: Sequence[int]) -> float:
        written, frequencies, count, _ = self._statistics(terms)
        present = {term for row in self._fetch(chunk_ids) if row is not None for term in row.counts}
        return idf_coverage(written, present, frequencies, count)

    # ----- second embedder (``retrieval.milvus_second``) ----------------------
    def _need_second(self) -> SecondVectors:
        if self._second is None:
            raise ValueError("this collection was opened without a second embedder")
        return self._second

    @property
    def second_vectors_missing(self) -> int:
        if self._second is None or not self.chunk_count:
            return 0
        if self._missing_second is None:
            self._flush()
            self._missing_second = max(0, self.chunk_count - self._second.present(self._next_id))
        return self._missing_second

    @property
    def has_second_vectors(self) -> bool:
        return self._second is not None and bool(self.chunk_count) and self.second_vectors_missing == 0

    def missing_second_vectors(self) -> list[int]:
        if not self.second_vectors_missing:
            return []
        present = self._need_second().present_ids(self._next_id)
        return [i for d in self._documents.values() for i in d.file.chunk_ids if i not in present]

    def second_scores(self, query_vector: np.ndarray, chunk_ids: Sequence[int]) -> np.ndarray:
        vectors = self._need_second().vectors(chunk_ids)
        return vectors @ np.asarray(query_vector, dtype=np.float32).ravel() if len(chunk_ids) else np.zeros(0)

    def stored_second_vectors(self, chunk_ids: Sequence[int]) -> np.ndarray:
        return self._need_second().vectors(chunk_ids)

    def put_second_vectors(self, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
        second = self._need_second()
        if len(chunk_ids) != len(vectors):
            raise ValueError(f"{len(chunk_ids)} chunk ids but {len(vectors)} vectors")
        self._ensure_writable()
        self._flush()
        starts = sorted((d.file.chunk_ids.start, source) for source, d in self._documents.items())
        keys = [start for start, _ in starts]
        documents = [starts[bisect_right(keys, int(i)) - 1][1] for i in chunk_ids]
        second.put(zip(chunk_ids, documents, vectors), replace=True)
        self._missing_second = None

    # ----- changing (buffered, written in journalled batches) --------------
    def put_file(
        self, source: str, content_sha256: str, chunks: Sequence[Chunk], vectors: np.ndarray, pages: int,
        second_vectors: np.ndarray | None = None, record: DocumentRecord | None = None, reader_version: int = 1,
    ) -> None:
        """Add a file, replacing whatever was indexed for it before (written with the next batch)."""
        check_file_vectors(len(chunks), vectors, second_vectors)
        self.remove_file(source)
        self._counted = None
        start = self._next_id
        self._next_id += len(chunks)
        rows = [passage_row(start + n, chunk, vectors[n], record) for n, chunk in enumerate(chunks)]
        terms = document_terms(rows)
        self._df.update(terms)
        self._documents[source] = StoredDocument(
            IndexedFile(source, content_sha256, range(start, self._next_id), pages, reader_version), record,
            sum(len(row["keywords"].split()) for row in rows), terms=terms)
        self._pending[source] = rows
        if second_vectors is not None and self._second is not None:
            self._pending_second[source] = [(start + n, source, vector) for n, vector in enumerate(second_vectors)]
        if sum(map(len, self._pending.values())) >= BATCH_CHUNKS:
            self._flush()

    def remove_file(self, source: str) -> bool:
        document = self._documents.pop(source, None)
        if document is None:
            return False
        self._counted = None
        if self._pending.pop(source, None) is not None:  # never written: forget it
            self._pending_second.pop(source, None)
            terms = document.terms
        else:
            terms = stored_terms(self._db, self._meta, source, document.term_rows)
            self._replaced[source] = document
        for term, count in terms.items():
            left = self._df[term] - count
            if left > 0:
                self._df[term] = left
            else:
                del self._df[term]
        for chunk_id in document.file.chunk_ids:
            self._rows.pop(chunk_id, None)
            self._languages.pop(chunk_id, None)
        return True

    def _ensure_writable(self) -> None:
        if not self._created:
            for part in (self.name, self._meta, f"{self.name}_second"):
                self._db.drop(part)
            self._db.create_passages(self.name, self.identity.dim, self._index)
            self._db.create_meta(self._meta)
            self._write_header()
            self.folder.mkdir(parents=True, exist_ok=True)
            marker = self.folder / f".{MILVUS_MARKER}.partial"
            marker.write_text(json.dumps({"collection": self.name, "uri": self._db.uri}), encoding="utf-8")
            marker.replace(self.folder / MILVUS_MARKER)
            self._created = True
        if not self._writable:
            roll_back(self._db, self.name, self._meta, self._unfinished, self._second)
            self._unfinished.clear()
            self._writable = True

    def _flush(self) -> None:
        if not self._pending and not self._replaced:
            return
        self._ensure_writable()
        batch = Batch()
        for source in sorted(set(self._pending) | set(self._replaced)):
            old, new = self._replaced.get(source), self._documents.get(source) if source in self._pending else None
            parts = term_parts(new.terms) if new is not None else []
            batch.journal.append(journal_row(source, [d.file.chunk_ids for d in (old, new) if d is not None],
                                             max(old.term_rows if old else 0, len(parts) if len(parts) > 1 else 0)))
            if old is not None:
                batch.delete_ids.extend(old.file.chunk_ids)
                batch.delete_keys.extend(term_row_keys(source, old.term_rows))
            if new is None:
                batch.removed.append(f"doc:{source}")
                continue
            batch.passages.extend(self._pending[source])
            batch.seconds.extend(self._pending_second.get(source, ()))
            if len(parts) > 1:
                batch.term_rows.extend(meta_row(key, "terms", {"terms": json.loads(part)})
                                       for key, part in zip(term_row_keys(source, len(parts)), parts))
            batch.done.append(meta_row(f"doc:{source}", "document", describe_document(new, parts)))
            self._documents[source] = replace(new, terms=None, term_rows=len(parts) if len(parts) > 1 else 0)
        write_batch(self._db, self.name, self._meta, batch, self._second)
        self._pending.clear()
        self._pending_second.clear()
        self._replaced.clear()
        self._missing_second = None

    def _write_header(self) -> None:
        self._db.upsert(self._meta, [meta_row(HEADER, "header", {
            "format_version": FORMAT_VERSION, "embedder": self.identity.record(),
            "second_embedder": self.second_identity.record() if self.second_identity else None,
            "next_id": self._next_id, "generation": self._generation_number,
        })])

    def save(self) -> str:
        """Write what is buffered, then the header with the next generation number: readers reload then."""
        self._ensure_writable()
        self._flush()
        self._generation_number += 1
        self._write_header()
        self._db.flush(self.name)
        self.generation = f"milvus-{self._generation_number:06d}"
        return self.generation
