"""Vectors by chunk id, searched by inner product: the one module that imports FAISS.

A ``VectorIndex`` is exact (``IndexIDMap2(IndexFlatIP)``) while a collection is
small and IVF (``IndexIVFFlat``, about sqrt(n) lists, a quarter of them probed)
once it passes ``exact_up_to`` chunks; ``fitted`` switches between them as the
collection grows or shrinks (back to exact below half the threshold, retrained
when it has grown fourfold since training). Vectors are unit length, so inner
products are cosines. Both kinds can give back a stored vector by id, which
fusion needs to score candidates found by the keyword search.

Worked example::

    index = VectorIndex.exact(384)
    index.add([7, 8], vectors)            # two unit vectors, ids 7 and 8
    index.search(query, k=1)              -> [(8, 0.93)]
    index.cosines(query, [7])             -> array([0.41])

Recall of IVF against exact search on real e5 vectors is measured in
``benchmarks/bench_index.py`` (docs/benchmarks.md: recall@10 0.97 at a quarter
of the lists probed).

Deliberately not here: which chunk an id is (``retrieval.store``), product
quantisation or HNSW (memory is not the limit below a few million chunks on a
24 GB machine; exact or IVF search is a few milliseconds at that size).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import faiss
import numpy as np

IVF_PROBED_SHARE = 4  # search 1/4 of the lists: recall@10 0.97 on real e5 vectors (1/8: 0.955, too close)
IVF_MIN_NPROBE = 32


class VectorIndex:
    """A FAISS index with chunk ids; ``trained_on``: the collection size the IVF lists were trained on (0: exact)."""

    def __init__(self, index: faiss.Index, trained_on: int = 0) -> None:
        self._index = index
        self.trained_on = trained_on

    @classmethod
    def exact(cls, dim: int) -> VectorIndex:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def ivf(cls, vectors: np.ndarray) -> VectorIndex:
        """An IVF index trained on (a sample of) ``vectors`` and sized for them; still empty."""
        count, dim = vectors.shape
        lists = int(2 ** round(math.log2(max(math.sqrt(count), 64))))  # about sqrt(n), a power of two
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10  # k-means converges enough for search in 10 rounds; 25 doubles the cost
        sample = vectors[np.random.default_rng(0).choice(count, size=min(count, 40 * lists), replace=False)]
        index.train(np.ascontiguousarray(sample))
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct (fusion) and remove by id
        index.nprobe = max(IVF_MIN_NPROBE, lists // IVF_PROBED_SHARE)
        return cls(index, trained_on=count)

    @classmethod
    def read(cls, path: Path, trained_on: int = 0) -> VectorIndex:
        """Load a written index; raises ``OSError`` or ``RuntimeError`` (FAISS's) for a damaged file."""
        # read_index returns the concrete class already; downcasting it again crashes faiss.
        return cls(faiss.read_index(str(path)), trained_on)

    def write(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @property
    def raw(self) -> faiss.Index:
        """The FAISS index itself, for benchmarks that time FAISS's own calls (``benchmarks/bench_index.py``)."""
        return self._index

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self._index, faiss.IndexIVF) else "exact"

    def ids(self) -> set[int]:
        """Every stored id (an exact index only: it keeps an id map)."""
        return set(faiss.vector_to_array(self._index.id_map).tolist()) if self.size else set()

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Sequence[int]) -> None:
        if len(ids):
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(id, cosine) of the ``k`` nearest vectors, best first."""
        if k <= 0 or not self.size:
            return []
        query = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        scores, ids = self._index.search(query, min(k, self.size))
        return [(int(i), float(score)) for score, i in zip(scores[0], ids[0]) if i >= 0]

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of the given ids."""
        return self._index.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def cosines(self, query_vector: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """Inner products (cosines: vectors are unit length) of the query with the given ids' stored vectors."""
        if not len(ids):
            return np.zeros(0)
        return self.vectors(ids) @ np.asarray(query_vector, dtype=np.float32).ravel()

    def fitted(self, ids: Iterable[int], count: int, exact_up_to: int) -> VectorIndex:
        """This index, or an exact / retrained IVF one holding the same vectors when ``count`` crossed a threshold."""
        if self.kind == "exact":
            rebuild = count > exact_up_to
        else:
            rebuild = count < exact_up_to // 2 or count > 4 * self.trained_on
        if not rebuild:
            return self
        id_array = np.fromiter(ids, dtype=np.int64, count=count)
        vectors = self.vectors(id_array) if count else np.zeros((0, self.dim), np.float32)
        fitted = VectorIndex.ivf(vectors) if count > exact_up_to else VectorIndex.exact(self.dim)
        fitted.add(id_array, vectors)
        return fitted
