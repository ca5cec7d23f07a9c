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
    first_stage_score: float  # cosine similarity of query and chunk vectors
    first_stage_rank: int  # 1-based rank in the first stage
    rerank_score: float | None = None

    @property
    def score(self) -> float:
        """The score that ordered this hit last."""
        return self.rerank_score if self.rerank_score is not None else self.first_stage_score
