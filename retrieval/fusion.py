"""The first retrieval stage: dense search and keyword search, fused into one ranking.

Both searches run over the whole collection (FAISS for vectors,
``retrieval.keyword_index`` for BM25); the union of their top ``k`` is the
candidate set, and every candidate gets both scores (a dense-only candidate's
BM25 and a keyword-only candidate's cosine are computed exactly), so no
candidate is judged on half the evidence.

Fusion methods:

- ``weighted`` (default): ``w`` x min-max-normalised cosine + ``(1 - w)`` x
  BM25 as a share of the query's best possible score (``keyword_scale`` =
  ``absolute``; ``minmax`` rescales it over the candidates instead, which lets
  one chunk matching one common query word look like a perfect match). Cosines
  of e5 are bunched (0.75-0.93), so they are min-max rescaled. ``w`` depends on the query's
  language (``dense_weight_en``, ``dense_weight_zh``): e5 and BM25 are not
  equally good in both languages, and plain rank fusion lets the weaker one drag
  the stronger one down. The weights were tuned on SciFact's train queries and a
  held-out half of CMRC2018 (docs/benchmarks.md).
- A second embedder's cosine (``second_weight_en``/``_zh``), when the
  collection has second vectors for every chunk and the caller passes the
  second query vector: ``w`` x cosine + ``w2`` x second cosine (both min-max)
  + ``(1 - w - w2)`` x BM25. all-MiniLM-L6-v2 and e5 err on different
  passages, so for English the three together beat any two (SciFact train:
  0.735 -> 0.749). Without second scores its weight goes to the main
  embedder. The second embedder only votes on passages in a language it
  reads, taken to be the languages whose second weight is above 0 (MiniLM:
  English): for a Chinese passage under an English question its weight goes to
  the main embedder too, so cross-language hits are judged by e5 alone, not
  by MiniLM's noise on Chinese text.
- ``rrf``: reciprocal rank fusion, ``1 / (rrf_k + rank)`` summed over both
  rankings (ranks within the candidates), for comparison.

``mode`` = ``dense`` or ``keyword`` keeps one search only (the ``eval`` command
compares all three).

Pseudo-relevance feedback (``feedback_weight``, hybrid only): the query vector
is moved towards the mean vector of the fused ranking's top
``feedback_chunks`` chunks and the dense search runs again; the new cosines
replace the old ones before the final fusion. It costs one more FAISS search.
Off by default: it added +0.007 nDCG@10 on SciFact train queries at weight 0.5
but cost -0.009 on the held-out test queries (docs/benchmarks.md).

Searching within documents (``within``: the chunk ids of the documents a
question names, ``retrieval.scope``): both searches rank only those chunks,
scored exactly (a cosine and a BM25 score for each; a few hundred chunks per
document cost a millisecond or two), so a passage of another document never
becomes a candidate however well it matches the words.

Deliberately not here: the second stage (``retrieval.rerank``), learning the
weights at run time, searching with the second embedder (it only re-scores the
candidates the other two found: adding its own top k gained nothing on SciFact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.types import Hit, Question
from retrieval.store import Collection

MODES = ("hybrid", "dense", "keyword")
METHODS = ("weighted", "rrf")
KEYWORD_SCALES = ("absolute", "minmax")


def minmax(values: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1]; all zeros when the values are (nearly) equal."""
    span = float(values.max() - values.min()) if len(values) else 0.0
    return (values - values.min()) / span if span > 1e-12 else np.zeros_like(values)


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based rank of each value, highest first."""
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[np.argsort(-values, kind="stable")] = np.arange(1, len(values) + 1)
    return ranks


@dataclass(frozen=True)
class FirstStage:
    mode: str = "hybrid"
    method: str = "weighted"
    dense_weight_en: float = 0.3  # tuned: SciFact train queries (docs/benchmarks.md)
    dense_weight_zh: float = 0.3  # tuned: the CMRC2018 tune half
    second_weight_en: float = 0.0  # the second embedder's share; taken from dense_weight when it is in use
    second_weight_zh: float = 0.0
    rrf_k: int = 60
    keyword_scale: str = "absolute"
    feedback_weight: float = 0.0  # pseudo-relevance feedback: query vector + this x mean of the top chunks' vectors
    feedback_chunks: int = 3

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"first stage mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.method not in METHODS:
            raise ValueError(f"fusion method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.keyword_scale not in KEYWORD_SCALES:
            raise ValueError(f"keyword scale must be one of {', '.join(KEYWORD_SCALES)}, got {self.keyword_scale!r}")
        for weight in (self.dense_weight_en, self.dense_weight_zh, self.second_weight_en, self.second_weight_zh):
            if not 0.0 <= weight <= 1.0:
                raise ValueError(f"dense weights must lie in [0, 1], got {weight}")
        for dense, second in ((self.dense_weight_en, self.second_weight_en), (self.dense_weight_zh, self.second_weight_zh)):
            if dense + second > 1.0 + 1e-9:
                raise ValueError(f"dense weight {dense} + second-embedder weight {second} exceed 1")

    def dense_weight(self, question: Question) -> float:
        return self.dense_weight_zh if question.search_language == "zh" else self.dense_weight_en

    def second_weight(self, question: Question) -> float:
        """The second embedder's share for this question (0: it is not used, so do not embed the question)."""
        if self.mode != "hybrid" or self.method != "weighted":
            return 0.0
        return self.second_weight_zh if question.search_language == "zh" else self.second_weight_en

    def _fuse(
        self, question: Question, dense: np.ndarray, lexical: np.ndarray, second: np.ndarray | None = None,
        readable: np.ndarray | None = None,
    ) -> np.ndarray:
        if self.mode == "dense":
            return dense
        if self.mode == "keyword":
            return lexical
        if self.method == "rrf":
            return 1.0 / (self.rrf_k + _ranks(dense)) + 1.0 / (self.rrf_k + _ranks(lexical))
        weight, second_weight = self.dense_weight(question), self.second_weight(question)
        scaled = minmax(lexical) if self.keyword_scale == "minmax" else lexical
        if second is None or second_weight == 0:
            weight += second_weight  # no second scores: the tuned two-way fusion
            return weight * minmax(dense) + (1 - weight) * scaled
        dense_scaled = minmax(dense)
        second_scaled = dense_scaled.copy()  # unreadable passages: the main embedder's vote twice
        if readable is None:
            readable = np.ones(len(second), dtype=bool)
        if readable.any():
            second_scaled[readable] = minmax(second[readable])
        return weight * dense_scaled + second_weight * second_scaled + (1 - weight - second_weight) * scaled

    def _readable_by_second(self, collection: Collection, ids: list[int]) -> np.ndarray:
        """Which candidates are in a language the second embedder reads (one with a second weight above 0)."""
        languages = {language for language, weight in (("en", self.second_weight_en), ("zh", self.second_weight_zh))
                     if weight > 0}
        return np.array([collection.chunk_language(i) in languages for i in ids], dtype=bool)

    def _best_within(
        self, collection: Collection, question: Question, query_vector: np.ndarray | None, k: int, within: list[int]
    ) -> list[int]:
        """The top ``k`` of ``within`` by cosine and by BM25 (as the modes ask), scored exactly."""
        ids = np.asarray(within, dtype=np.int64)
        best: list[int] = []
        if self.mode != "keyword":
            cosines = collection.dense_scores(query_vector, ids)
            best.extend(ids[np.argsort(-cosines, kind="stable")[:k]].tolist())
        if self.mode != "dense":
            lexical = collection.keyword_scores(question.keywords, ids)
            best.extend(ids[np.argsort(-lexical, kind="stable")[:k]].tolist())
        return best

    def search(
        self, collection: Collection, question: Question, query_vector: np.ndarray | None, k: int,
        second_vector: np.ndarray | None = None, within: list[int] | None = None,
    ) -> list[Hit]:
        """Candidates best first: up to ``k`` from each search (``2k`` in all for hybrid).

        ``second_vector``: the question embedded by the collection's second embedder; its cosines join the fusion
        when given and every chunk has a second vector. ``within``: search only these chunk ids.
        """
        candidates: dict[int, None] = {}  # insertion-ordered set
        if self.mode != "keyword" and query_vector is None:
            raise ValueError("dense and hybrid search need the query vector")
        if within is not None:
            candidates.update((chunk_id, None) for chunk_id in self._best_within(collection, question, query_vector, k, within))
        else:
            if self.mode != "keyword":
                candidates.update((chunk_id, None) for chunk_id, _ in collection.search_dense(query_vector, k))
            if self.mode != "dense":
                candidates.update((chunk_id, None) for chunk_id, _ in collection.search_keywords(question.keywords, k))
        ids = list(candidates)
        if not ids:
            return []
        dense = collection.dense_scores(query_vector, ids) if query_vector is not None else np.zeros(len(ids))
        lexical = collection.keyword_scores(question.keywords, ids)
        if self.feedback_weight > 0 and self.mode == "hybrid" and query_vector is not None:
            # Rocchio feedback: move the query towards what the fused ranking puts first, then search again.
            first = self._fuse(question, dense, lexical)
            top = [ids[i] for i in np.argsort(-first, kind="stable")[: self.feedback_chunks]]
            centre = collection.vectors(top).mean(axis=0)
            expanded = np.asarray(query_vector, dtype=np.float32).ravel() + self.feedback_weight * centre
            query_vector = expanded / np.linalg.norm(expanded)
            allowed = set(within) if within is not None else None
            extra = [i for i, _ in collection.search_dense(query_vector, k)
                     if i not in candidates and (allowed is None or i in allowed)]
            ids += extra
            dense = collection.dense_scores(query_vector, ids)
            lexical = collection.keyword_scores(question.keywords, ids)
        second = readable = None
        if second_vector is not None and self.second_weight(question) > 0 and collection.has_second_vectors:
            second = collection.second_scores(second_vector, ids)
            readable = self._readable_by_second(collection, ids)
        fused = self._fuse(question, dense, lexical, second, readable)
        order = np.argsort(-fused, kind="stable")
        return [
            Hit(
                chunk=collection.chunk(ids[i]), first_stage_score=float(fused[i]), first_stage_rank=rank,
                dense_score=float(dense[i]) if query_vector is not None else None, keyword_score=float(lexical[i]),
                chunk_id=ids[i], second_score=float(second[i]) if second is not None and readable[i] else None,
            )
            for rank, i in enumerate(order.tolist(), start=1)
        ]
