"""How well the retrieved passages cover a question: the numbers abstention decides on.

Small local models answer whatever they are given, even when the passages lack
the answer (MODELS.md: every registry model invented one). So the pipeline
decides before generating whether the passages can support an answer, from
evidence it can measure:

- ``coverage``: share of the question's keyword weight (idf) whose terms occur
  somewhere in the passages that would go into the prompt. A question about
  "Super Bowl 2021" answered from passages about Super Bowl 2022 misses the
  rare, decisive term "2021";
- ``best_keyword``: the best passage's BM25 as a share of the question's best
  possible score;
- ``best_dense``: the best passage's cosine similarity to the question.

``AbstentionPolicy`` turns these into a yes/no with thresholds calibrated on
RGB and DomainRAG (``kb eval-qa``; figures in docs/benchmarks.md).

After generation, ``llm.grounding.answer_support`` checks the answer against
the passages the way a reader would: the new information in the answer (its words that are
not the question's) must stand in a passage *next to* the question's words,
within two neighbouring sentences. Distractor passages are usually on the
question's topic and hold plausible names and numbers, so "the answer's words
occur somewhere" is not enough; "the answer's words occur where the question's
words are" separates much better (RGB: "Super Bowl 2021 location" answered
"Las Vegas" from a passage about Super Bowl LVIII fails, because "2021" is not
in that sentence).

Deliberately not here: per-sentence citation checking for the UI
(``llm.grounding``), the wording of the refusal (``app.pipeline``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Evidence:
    coverage: float
    best_keyword: float
    best_dense: float


@dataclass(frozen=True)
class AbstentionPolicy:
    """Answer only when the passages cover enough of the question."""

    min_coverage: float
    min_dense: float = 0.0

    def supports(self, evidence: Evidence) -> bool:
        return evidence.coverage >= self.min_coverage and evidence.best_dense >= self.min_dense
