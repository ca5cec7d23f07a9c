"""The second embedder's vectors of a Milvus-stored knowledge base, in a Milvus collection of their own.

``<name>_second`` holds one row per passage that has a second vector: ``id`` (the passage's, deleted with
it), ``document``, ``second_of`` (the model that made it,
``retrieval.milvus_rows.second_tag``) and ``vector``. A collection of its own, not a field of the passages:
a second embedder can be switched on, off or changed after the passages were written (Milvus Lite cannot
add a field to a collection), and the vectors are only read back for candidates, never searched.

Vectors of another model stop counting as soon as the configured second embedder changes (the next ingest
recomputes them, as on the local store); of another size, the collection is made anew by the next writer.

Deliberately not here: which passages exist (``retrieval.milvus_store``), embedding (``app.indexing``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np

from retrieval.embedders import EmbedderIdentity
from retrieval.milvus_client import MilvusConnection, literal
from retrieval.milvus_rows import second_tag

CACHE = 20_000
BATCH = 2_000
NAMES = 500  # ids in one get


class SecondVectors:
    """The second-embedder vectors of one knowledge base (``identity``: the configured second embedder)."""

    def __init__(self, db: MilvusConnection, name: str, identity: EmbedderIdentity) -> None:
        self._db, self.name, self.identity = db, name, identity
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._usable: bool | None = None  # the collection exists with vectors of this size

    def _accepted(self) -> str:
        tags = (second_tag(self.identity, fingerprint)
                for fingerprint in (self.identity.fingerprint, *self.identity.reads_vectors_of))
        return f"second_of in [{', '.join(literal(tag) for tag in tags)}]"

    @property
    def usable(self) -> bool:
        if self._usable is None:
            self._usable = self._db.has(self.name) and self._db.vector_dim(self.name, "vector") == self.identity.dim
        return self._usable

    def ensure(self) -> None:
        """Make the collection for this embedder's size (a writer does, before its first write)."""
        if not self.usable:
            self._db.drop(self.name)
            self._db.create_second(self.name, self.identity.dim)
            self._usable = True

    def present(self, visible_below: int) -> int:
        """How many passages below this id have a vector of the configured model."""
        return self._db.count(self.name, f"id < {visible_below} and {self._accepted()}") if self.usable else 0

    def present_ids(self, visible_below: int) -> set[int]:
        if not self.usable:
            return set()
        return {int(row["id"]) for row in self._db.query(self.name, f"id < {visible_below} and {self._accepted()}", ["id"])}

    def vectors(self, chunk_ids: Sequence[int]) -> np.ndarray:
        """The vectors of these passages; zeros where one has none (fusion asks only when all have one)."""
        wanted = [int(i) for i in chunk_ids]
        missing = list(dict.fromkeys(i for i in wanted if i not in self._cache))
        if missing and self.usable:
            for start in range(0, len(missing), NAMES):
                for row in self._db.get(self.name, missing[start:start + NAMES], ["vector", "second_of"]):
                    self._cache[int(row["id"])] = np.asarray(row["vector"], dtype=np.float32)
            while len(self._cache) > CACHE:
                self._cache.popitem(last=False)
        zero = np.zeros(self.identity.dim, np.float32)
        return np.stack([self._cache.get(i, zero) for i in wanted]) if wanted else np.zeros((0, self.identity.dim), np.float32)

    def put(self, rows: Iterable[tuple[int, str, np.ndarray]], replace: bool = False) -> None:
        """Write (id, document, vector) rows; ``replace``: upsert over vectors an older model made."""
        self.ensure()
        tag = second_tag(self.identity)
        written = [{"id": int(i), "document": document, "second_of": tag,
                    "vector": np.asarray(vector, dtype=np.float32).tolist()} for i, document, vector in rows]
        for start in range(0, len(written), BATCH):
            (self._db.upsert if replace else self._db.insert)(self.name, written[start:start + BATCH])
        for row in written:
            self._cache.pop(row["id"], None)

    def delete_ids(self, chunk_ids: Sequence[int]) -> None:
        if len(chunk_ids) and self._db.has(self.name):
            self._db.delete_ids(self.name, list(chunk_ids))
            for chunk_id in chunk_ids:
                self._cache.pop(int(chunk_id), None)

    def forget(self) -> None:
        self._cache.clear()
        self._usable = None
