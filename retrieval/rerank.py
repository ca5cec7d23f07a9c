"""The second retrieval stage: re-order the first stage's candidates.

Rerankers, chosen by the ``reranker`` setting:

- ``none`` (default): keep the first stage's order. Since the first stage fuses
  a corpus-wide BM25 index with dense search (``retrieval.fusion``), no
  second stage available offline improved on it (docs/benchmarks.md).
- ``lexical-fusion``: BM25 over the candidates alone (Chinese segmented by
  jieba, English stemmed), min-max normalised and mixed with the normalised
  first-stage score. It was the default when the first stage was dense-only;
  kept for comparison and for ``first_stage=dense``. Costs about 4 ms for
  English candidates and about 100 ms for 40 uncached Chinese ones (jieba);
  recently seen passages are cached.
- a path to a local sentence-transformers ``CrossEncoder`` folder (for example a
  bge-reranker a user copied in): its scores replace the first stage's.

Deliberately not here: the corpus-wide keyword index (``retrieval.keyword_index``),
score calibration for abstention (``retrieval.evidence``).
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.errors import KbError
from core.types import Hit, Question
from retrieval.fusion import minmax
from text.keywords import keyword_tokens

LEXICAL_FUSION = "lexical-fusion"
NO_RERANK = "none"


class RerankerError(KbError):
    """The configured reranker cannot be loaded."""


class Reranker(ABC):
    name: str

    @abstractmethod
    def rerank(self, question: Question, hits: Sequence[Hit]) -> list[Hit]:
        """Return the hits with ``rerank_score`` set, best first."""


class NoReranker(Reranker):
    name = NO_RERANK

    def rerank(self, question: Question, hits: Sequence[Hit]) -> list[Hit]:
        return [replace(hit, rerank_score=hit.first_stage_score) for hit in hits]


@lru_cache(maxsize=4096)
def _term_counts(text: str) -> Counter:
    """Segmenting 40 Chinese passages costs ~100 ms a query; popular chunks come back often.

    Bounded to about 70 MB (about 18 kB per cached Chinese passage). Callers must not modify the result.
    """
    return Counter(keyword_tokens(text))


class LexicalFusionReranker(Reranker):
    """``dense_weight`` x normalised cosine + (1 - ``dense_weight``) x normalised BM25."""

    name = LEXICAL_FUSION

    def __init__(self, dense_weight: float = 0.5, k1: float = 1.2, b: float = 0.75) -> None:
        if not 0.0 <= dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be in [0, 1], got {dense_weight}")
        self.dense_weight = dense_weight
        self.k1, self.b = k1, b

    def bm25_scores(self, question: Question, hits: Sequence[Hit]) -> np.ndarray:
        documents = [_term_counts(hit.chunk.embedding_text) for hit in hits]
        lengths = np.array([sum(doc.values()) for doc in documents], dtype=np.float64)
        average_length = max(float(lengths.mean()), 1.0)
        scores = np.zeros(len(hits))
        for term in set(question.keywords):
            containing = sum(1 for doc in documents if term in doc)
            if not containing:
                continue
            idf = math.log(1 + (len(documents) - containing + 0.5) / (containing + 0.5))
            for position, doc in enumerate(documents):
                frequency = doc.get(term, 0)
                if frequency:
                    norm = self.k1 * (1 - self.b + self.b * lengths[position] / average_length)
                    scores[position] += idf * frequency * (self.k1 + 1) / (frequency + norm)
        return scores

    def rerank(self, question: Question, hits: Sequence[Hit]) -> list[Hit]:
        if not hits:
            return []
        dense = minmax(np.array([hit.first_stage_score for hit in hits]))
        lexical = minmax(self.bm25_scores(question, hits))
        fused = self.dense_weight * dense + (1 - self.dense_weight) * lexical
        rescored = [replace(hit, rerank_score=float(score)) for hit, score in zip(hits, fused)]
        return sorted(rescored, key=lambda hit: (-hit.rerank_score, hit.first_stage_rank))


class CrossEncoderReranker(Reranker):
    """A local sentence-transformers CrossEncoder folder scores (query, passage) pairs."""

    def __init__(self, model_dir: Path, batch_size: int = 16) -> None:
        # Offline install: never let the hub client try the network (it would hang, then fail).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import CrossEncoder

        model_dir = Path(model_dir).expanduser().resolve()
        if not (model_dir / "config.json").exists():
            raise RerankerError(f"{model_dir} is not a cross-encoder model folder (no config.json)")
        try:
            self._model = CrossEncoder(str(model_dir), device="cpu", local_files_only=True)
        except Exception as exc:  # the library raises many types for a bad folder
            raise RerankerError(f"cannot load cross-encoder from {model_dir}: {exc}") from exc
        self.name = f"cross-encoder:{model_dir.name}"
        self._batch_size = batch_size

    def rerank(self, question: Question, hits: Sequence[Hit]) -> list[Hit]:
        if not hits:
            return []
        pairs = [(question.search_text, hit.chunk.embedding_text) for hit in hits]
        scores = self._model.predict(pairs, batch_size=self._batch_size, convert_to_numpy=True)
        rescored = [replace(hit, rerank_score=float(score)) for hit, score in zip(hits, np.ravel(scores))]
        return sorted(rescored, key=lambda hit: (-hit.rerank_score, hit.first_stage_rank))


# The one table of built-in second stages by the name a setting gives; anything else must be a local folder.
BUILTIN_RERANKERS: dict[str, Callable[[float], Reranker]] = {
    LEXICAL_FUSION: lambda dense_weight: LexicalFusionReranker(dense_weight=dense_weight),
    NO_RERANK: lambda dense_weight: NoReranker(),
}


def load_reranker(spec: str, dense_weight: float = 0.5) -> Reranker:
    """Build the reranker a setting names."""
    builtin = BUILTIN_RERANKERS.get(spec)
    if builtin is not None:
        return builtin(dense_weight)
    path = Path(spec).expanduser()
    if path.is_dir():
        return CrossEncoderReranker(path)
    raise RerankerError(
        f"unknown reranker {spec!r}: use {' or '.join(map(repr, BUILTIN_RERANKERS))} "
        "or the path of a local sentence-transformers CrossEncoder folder"
    )
