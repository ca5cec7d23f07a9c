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

After generation, ``answer_support`` checks the answer against the passages
the way a reader would: the new information in the answer (its words that are
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

import re
from collections.abc import Sequence
from dataclasses import dataclass

from retrieval.keywords import keyword_tokens

_MARKER = re.compile(r"\[\d+(?:\]\s*\[\d+)*\]|\[\d+(?:\s*[,，]\s*\d+)*\]")
_SENTENCE = re.compile(r"(?<=[.!?;。！？；\n])\s*")


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


@dataclass(frozen=True)
class AnswerSupport:
    """The best window of two neighbouring passage sentences for an answer."""

    answer_share: float  # share of the answer's own keywords found in the window
    question_share: float  # share of the question's keywords found in the same window
    answer_terms: int  # how many keywords the answer adds to the question (0: nothing to check)

    @property
    def score(self) -> float:
        return self.answer_share * self.question_share


def answer_support(question: str, answer: str, passages: Sequence[str]) -> AnswerSupport:
    question_terms = set(keyword_tokens(question))
    answer_terms = set(keyword_tokens(_MARKER.sub(" ", answer))) - question_terms
    if not answer_terms:
        return AnswerSupport(0.0, 0.0, 0)
    best = AnswerSupport(0.0, 0.0, len(answer_terms))
    for passage in passages:
        sentences = [set(keyword_tokens(s)) for s in _SENTENCE.split(passage) if s.strip()]
        for i in range(len(sentences)):
            window = sentences[i] | (sentences[i + 1] if i + 1 < len(sentences) else set())
            candidate = AnswerSupport(
                len(answer_terms & window) / len(answer_terms),
                len(question_terms & window) / len(question_terms) if question_terms else 0.0,
                len(answer_terms),
            )
            if candidate.score > best.score:
                best = candidate
    return best
