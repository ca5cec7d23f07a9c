"""Does the answer as a whole stand next to the question's words in a passage? The check abstention runs after generation.

The new information in the answer (its keywords that are not the question's)
must stand in a passage *next to* the question's keywords, within two
neighbouring sentences (``retrieval.evidence`` explains why "next to" matters:
distractor passages are on the question's topic and hold plausible names).
``AnswerSupport.score`` = share of the answer's new keywords in the best window
x share of the question's keywords in that same window.

Worked example (RGB): "Where was Super Bowl 2021 held?" answered "Las Vegas [1]"
from a passage about Super Bowl LVIII in Las Vegas scores low: "2021" is not in
the sentences that say "Las Vegas".

Deliberately not here: the per-sentence citation check shown to users
(``llm.grounding``), the threshold and the decision (``Pipeline.would_abstain``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.types import Question
from llm.sentences import MARKER
from text.keywords import keyword_tokens

# Passage sentences are cut at plain terminators here, not with ``llm.sentences``: the thresholds in
# docs/benchmarks.md were measured with this cut.
_PASSAGE_SENTENCE_END = re.compile(r"(?<=[.!?;。！？；\n])\s*")


@dataclass(frozen=True)
class AnswerSupport:
    """The best window of two neighbouring passage sentences for an answer."""

    answer_share: float  # share of the answer's own keywords found in the window
    question_share: float  # share of the question's keywords found in the same window
    answer_terms: int  # how many keywords the answer adds to the question (0: nothing to check)

    @property
    def score(self) -> float:
        return self.answer_share * self.question_share


def answer_support(question: Question, answer: str, passages: Sequence[str]) -> AnswerSupport:
    question_terms = set(question.keywords)
    answer_terms = set(keyword_tokens(MARKER.sub(" ", answer))) - question_terms
    if not answer_terms:
        return AnswerSupport(0.0, 0.0, 0)
    best = AnswerSupport(0.0, 0.0, len(answer_terms))
    for passage in passages:
        sentences = [set(keyword_tokens(s)) for s in _PASSAGE_SENTENCE_END.split(passage) if s.strip()]
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
