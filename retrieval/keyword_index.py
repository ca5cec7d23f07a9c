"""A BM25 keyword index over a collection's chunks, stored with it and changed with it.

Each chunk's keyword tokens (``text.keywords.keyword_tokens``: jieba for
Chinese, stemmed words for English) are counted once, when the chunk is added;
a query only looks up its own terms in a sparse matrix (scipy CSC, one column per
term), so a search costs milliseconds whatever the collection's size, and
nothing is re-tokenised per query. A query comes as its keyword tokens
(``Question.keywords``): the question is tokenised once, where it is analysed.

Scores are BM25 (Lucene's idf, ``k1`` = 1.2, ``b`` = 0.75) divided by the
highest score the query could reach (every query term matched, at saturation;
a term no chunk contains counts with the highest idf), so they lie in [0, 1)
and mean roughly "how much of the query's weight this chunk matches":
comparable between queries, which fusion and abstention need.

Worked example::

    index = KeywordIndex()
    index.add(0, "FAISS stores the vectors")
    index.add(1, "jieba 切分中文")
    index.search(keyword_tokens("where are vectors stored?"), k=5)   -> [(0, 0.66...)]

On disk (next to the FAISS file, no pickle)::

    keywords.npz        chunk_ids, offsets, term_ids, counts (int arrays)
    keyword_terms.json  the term of each term id

The same scores for a store that keeps its term statistics elsewhere (Milvus, ``retrieval.milvus_store``):
``normalised_bm25`` and ``idf_coverage`` take the candidates' term counts and the collection's document
frequencies, and compute what ``search``/``scores_for`` and ``coverage`` compute here.

Deliberately not here: phrase or proximity scoring, query expansion, field
weights (a title counts like any other text), and deleting unused terms from the
vocabulary (an unused term costs one string).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy import sparse

from text.keywords import keyword_tokens

ARRAYS_FILE = "keywords.npz"
TERMS_FILE = "keyword_terms.json"


class KeywordIndex:
    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._term_ids: dict[str, int] = {}
        self._terms: list[str] = []
        self._docs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # chunk id -> (term ids, counts)
        self._compiled: _Compiled | None = None
        self._last_query: tuple[tuple[str, ...], _Compiled, np.ndarray | None] | None = None

    def __len__(self) -> int:
        return len(self._docs)

    # ----- changing --------------------------------------------------------
    def add(self, chunk_id: int, text: str) -> None:
        counts = Counter(keyword_tokens(text))
        ids = np.fromiter((self._term_id(term) for term in counts), dtype=np.int32, count=len(counts))
        self._docs[int(chunk_id)] = (ids, np.fromiter(counts.values(), dtype=np.int32, count=len(counts)))
        self._compiled = None

    def remove(self, chunk_ids: Iterable[int]) -> None:
        for chunk_id in chunk_ids:
            self._docs.pop(int(chunk_id), None)
        self._compiled = None

    def _term_id(self, term: str) -> int:
        term_id = self._term_ids.get(term)
        if term_id is None:
            term_id = self._term_ids[term] = len(self._terms)
            self._terms.append(term)
        return term_id

    # ----- searching -------------------------------------------------------
    def search(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        """The ``k`` best chunks as (chunk id, normalised score), best first; only chunks that match."""
        compiled, scores = self._all_scores(terms)
        if scores is None:
            return []
        matching = np.flatnonzero(scores > 0)
        if len(matching) > k:
            matching = matching[np.argpartition(-scores[matching], k - 1)[:k]]
        order = matching[np.argsort(-scores[matching], kind="stable")]
        return [(int(compiled.chunk_ids[row]), float(scores[row])) for row in order]

    def scores_for(self, terms: Sequence[str], chunk_ids: Iterable[int]) -> np.ndarray:
        """Normalised scores of the given chunks (0 for chunks not in the index)."""
        chunk_ids = np.fromiter((int(i) for i in chunk_ids), dtype=np.int64)
        compiled, scores = self._all_scores(terms)
        if scores is None or not len(compiled.chunk_ids):
            return np.zeros(len(chunk_ids))
        rows = np.searchsorted(compiled.chunk_ids, chunk_ids)
        rows = np.minimum(rows, len(compiled.chunk_ids) - 1)
        found = compiled.chunk_ids[rows] == chunk_ids
        return np.where(found, scores[rows], 0.0)

    def _all_scores(self, terms: Sequence[str]) -> tuple[_Compiled, np.ndarray | None]:
        """Every row's score for the query ``terms``; the last query's are kept, because one retrieval asks
        twice (``search`` for candidates, ``scores_for`` for the union with the dense ones)."""
        compiled = self._compile()
        cached = self._last_query  # one read: another thread (UI sessions share the index) may replace it
        query = tuple(terms)
        if cached is None or cached[0] != query or cached[1] is not compiled:
            cached = (query, compiled, compiled.scores(*self._query_terms(query)))
            self._last_query = cached
        return compiled, cached[2]

    def coverage(self, terms: Sequence[str], chunk_ids: Iterable[int]) -> float:
        """Share of the query's idf weight whose terms occur in at least one of the chunks.

        Unlike the BM25 share this ignores how often a term occurs: it asks "is every
        important word of the question somewhere in these passages?", which is what
        abstention needs (a passage about Super Bowl 2022 lacks the question's "2021").
        """
        compiled = self._compile()
        term_ids, unknown = self._query_terms(terms)
        if not len(compiled.chunk_ids) or (not len(term_ids) and not unknown):
            return 0.0
        unseen_idf = math.log(1 + (len(compiled.chunk_ids) + 0.5) / 0.5)
        idf = np.where(compiled.idf[term_ids] > 0, compiled.idf[term_ids], unseen_idf) if len(term_ids) else np.zeros(0)
        total = float(idf.sum()) + unknown * unseen_idf
        present = np.zeros(len(term_ids), dtype=bool)
        for chunk_id in chunk_ids:
            document = self._docs.get(int(chunk_id))
            if document is not None:
                present |= np.isin(term_ids, document[0])
        return float(idf[present].sum()) / total if total > 0 else 0.0

    def _query_terms(self, query: Sequence[str]) -> tuple[np.ndarray, int]:
        """Ids of the query's distinct terms that the index knows, and how many it does not."""
        terms = set(query)
        ids = sorted(self._term_ids[t] for t in terms if t in self._term_ids)
        return np.array(ids, dtype=np.int64), len(terms) - len(ids)

    def _compile(self) -> _Compiled:
        if self._compiled is None:
            self._compiled = _Compiled.build(self._docs, len(self._terms), self.k1, self.b)
        return self._compiled

    # ----- disk ------------------------------------------------------------
    def save(self, folder: Path) -> None:
        chunk_ids = np.array(sorted(self._docs), dtype=np.int64)
        lengths = np.array([len(self._docs[i][0]) for i in chunk_ids], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        term_ids = np.concatenate([self._docs[i][0] for i in chunk_ids]) if len(chunk_ids) else np.zeros(0, np.int32)
        counts = np.concatenate([self._docs[i][1] for i in chunk_ids]) if len(chunk_ids) else np.zeros(0, np.int32)
        with open(Path(folder) / ARRAYS_FILE, "wb") as handle:
            np.savez(handle, chunk_ids=chunk_ids, offsets=offsets, term_ids=term_ids, counts=counts)
        (Path(folder) / TERMS_FILE).write_text(json.dumps(self._terms, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, k1: float = 1.2, b: float = 0.75) -> KeywordIndex:
        """Read a saved index; raises ``ValueError``/``OSError`` if the files are unusable."""
        index = cls(k1, b)
        index._terms = json.loads((Path(folder) / TERMS_FILE).read_text(encoding="utf-8"))
        index._term_ids = {term: i for i, term in enumerate(index._terms)}
        with np.load(Path(folder) / ARRAYS_FILE, allow_pickle=False) as arrays:  # never unpickle
            chunk_ids, offsets = arrays["chunk_ids"], arrays["offsets"]
            term_ids, counts = arrays["term_ids"], arrays["counts"]
        if len(offsets) != len(chunk_ids) + 1 or offsets[-1] != len(term_ids) or len(term_ids) != len(counts):
            raise ValueError("keyword index arrays do not fit together")
        if len(term_ids) and int(term_ids.max()) >= len(index._terms):
            raise ValueError("keyword index refers to unknown terms")
        for position, chunk_id in enumerate(chunk_ids.tolist()):
            start, end = offsets[position], offsets[position + 1]
            index._docs[chunk_id] = (term_ids[start:end], counts[start:end])
        return index


class _Compiled:
    """The query-time form: a CSC matrix of BM25 term weights and each term's idf."""

    def __init__(self, chunk_ids: np.ndarray, weights: sparse.csc_matrix, idf: np.ndarray, k1: float) -> None:
        self.chunk_ids = chunk_ids  # sorted; row i of ``weights`` is chunk_ids[i]
        self.weights = weights
        self.idf = idf
        self.k1 = k1

    @classmethod
    def build(cls, docs: dict[int, tuple[np.ndarray, np.ndarray]], vocabulary: int, k1: float, b: float) -> _Compiled:
        chunk_ids = np.array(sorted(docs), dtype=np.int64)
        if not len(chunk_ids):
            return cls(chunk_ids, sparse.csc_matrix((0, vocabulary)), np.zeros(vocabulary), k1)
        per_doc = [docs[i] for i in chunk_ids.tolist()]
        rows = np.repeat(np.arange(len(per_doc)), [len(ids) for ids, _ in per_doc])
        columns = np.concatenate([ids for ids, _ in per_doc]).astype(np.int64)
        frequencies = np.concatenate([counts for _, counts in per_doc]).astype(np.float64)
        lengths = np.bincount(rows, weights=frequencies, minlength=len(per_doc))
        average = max(float(lengths.mean()), 1.0)
        norm = k1 * (1 - b + b * lengths[rows] / average)
        tf_weight = frequencies * (k1 + 1) / (frequencies + norm)
        weights = sparse.csc_matrix((tf_weight, (rows, columns)), shape=(len(per_doc), vocabulary))
        document_frequency = np.bincount(columns, minlength=vocabulary).astype(np.float64)
        n = len(per_doc)
        idf = np.log(1 + (n - document_frequency + 0.5) / (document_frequency + 0.5))
        idf[document_frequency == 0] = 0.0  # terms left over from deleted chunks
        return cls(chunk_ids, weights, idf, k1)

    def scores(self, term_ids: np.ndarray, unknown_terms: int) -> np.ndarray | None:
        """Normalised BM25 of every row, or None when no query term is in the index."""
        if not len(term_ids) or not len(self.chunk_ids):
            return None
        idf = self.idf[term_ids]
        unseen_idf = math.log(1 + (len(self.chunk_ids) + 0.5) / 0.5)  # a term in no chunk
        ceiling = (float(idf.sum()) + unknown_terms * unseen_idf + float((idf == 0).sum()) * unseen_idf) * (self.k1 + 1)
        if ceiling <= 0 or math.isnan(ceiling):
            return None
        return np.asarray(self.weights[:, term_ids] @ idf).ravel() / ceiling


def bm25_idf(count: int, document_frequency: int) -> float:
    """Lucene's idf; 0 for a term no chunk holds (its weight in the ceiling is ``unseen_idf``)."""
    if document_frequency <= 0:
        return 0.0
    return math.log(1 + (count - document_frequency + 0.5) / (document_frequency + 0.5))


def unseen_idf(count: int) -> float:
    return math.log(1 + (count + 0.5) / 0.5)


def normalised_bm25(
    terms: Sequence[str], documents: Sequence[Counter], frequencies: dict[str, int], count: int,
    average_length: float, k1: float = 1.2, b: float = 0.75,
) -> np.ndarray:
    """``KeywordIndex.scores_for`` from the parts: each document's term counts, the collection's document
    frequency of every query term, its chunk count and average chunk length (in tokens)."""
    query = sorted(set(terms))
    if not documents:
        return np.zeros(0)
    idf = {term: bm25_idf(count, frequencies.get(term, 0)) for term in query}
    if not any(idf.values()):
        return np.zeros(len(documents))
    ceiling = sum(value if value > 0 else unseen_idf(count) for value in idf.values()) * (k1 + 1)
    average = max(float(average_length), 1.0)
    scores = np.zeros(len(documents))
    for row, counts in enumerate(documents):
        norm = k1 * (1 - b + b * sum(counts.values()) / average)
        scores[row] = sum(idf[term] * counts[term] * (k1 + 1) / (counts[term] + norm)
                          for term in query if idf[term] > 0 and counts.get(term))
    return scores / ceiling


def idf_coverage(terms: Sequence[str], present: set[str], frequencies: dict[str, int], count: int) -> float:
    """``KeywordIndex.coverage`` from the parts: ``present`` holds the terms the chunks contain."""
    query = set(terms)
    if not count or not query:
        return 0.0
    weights = {term: bm25_idf(count, frequencies.get(term, 0)) or unseen_idf(count) for term in query}
    total = sum(weights.values())
    return sum(weight for term, weight in weights.items() if term in present) / total if total > 0 else 0.0
