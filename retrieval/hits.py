"""The retrieval result type: a chunk with the scores each stage gave it.

Deliberately not here: any scoring logic (``retrieval.store`` scores the first
stage, ``retrieval.rerank`` the second).
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.documents import Chunk


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. ``rerank_score`` is None until the second stage ran."""

    chunk: Chunk
    first_stage_score: float  # the first stage's (fused) score; the cosine when it searched vectors only
    first_stage_rank: int  # 1-based rank in the first stage
    rerank_score: float | None = None
    dense_score: float | None = None  # cosine of query and chunk vectors
    keyword_score: float | None = None  # BM25 as a share of the query's best possible score, in [0, 1)
    chunk_id: int | None = None  # the chunk's id in its collection
    second_score: float | None = None  # cosine under the second embedder, when the first stage used one

    @property
    def score(self) -> float:
        """The score that ordered this hit last."""
        return self.rerank_score if self.rerank_score is not None else self.first_stage_score
