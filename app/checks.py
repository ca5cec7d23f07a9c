"""What the pipeline decides about an answer from its settings alone: refuse before generating, or check what was generated.

- ``would_abstain(retrieval)``: before generation, do the passages cover the question, or hold its names
  and come close in meaning (``retrieval.evidence.AbstentionPolicy``)?
- ``checked_answer(retrieval, generated, sources)``: the generated text as the user gets it: cited and
  checked sentence by sentence, what no passage holds withdrawn, or "not in the documents" when nothing
  supported is left (``llm.answer``); a question let through on meaning alone keeps its answer only with
  a supported sentence (``AbstentionPolicy.keeps_answer``); with ``abstain_min_answer_support`` the answer's
  words must stand next to the question's in a passage (``llm.answer_support``).

It needs no model, so a stored draft can be checked again after the checks change
(``benchmarks/replay_answers.py``) exactly as the pipeline checks a new one.

Deliberately not here: retrieval, generation, the wording of refusals (``llm.refusals``).
"""

from __future__ import annotations

from collections.abc import Sequence

from app.results import Retrieval
from app.settings import Settings
from core.types import Answer, Source
from llm.answer import AnswerPolicy, make_answer
from llm.answer_support import answer_support
from llm.refusals import DRAFT_WITHDRAWN, NOT_IN_DOCUMENTS
from retrieval.evidence import AbstentionPolicy


class AnswerChecks:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def abstention_policy(self) -> AbstentionPolicy:
        reworded = self.settings.abstain_reworded_min_dense
        return AbstentionPolicy(self.settings.abstain_min_coverage, self.settings.abstain_min_dense,
                                reworded_min_dense=reworded if reworded <= 1.0 else None)

    def would_abstain(self, retrieval: Retrieval, answer: Answer | None = None) -> bool:
        """The refusal the pipeline makes with abstention on, whether or not it is on.

        Before generation (``answer`` None): do the passages cover the question, or hold its names and
        come close in meaning? After: if only the latter, does a cited passage support one of its sentences;
        and, when ``abstain_min_answer_support`` is set, does a passage hold the answer's words next to the
        question's?
        """
        if retrieval.evidence is None or not self.abstention_policy().supports(retrieval.evidence):
            return True
        if answer is None or answer.abstained:
            return bool(answer and answer.abstained)
        # A sentence whose numbers its cited passage writes grounds the answer as a supported one does.
        held = any(s.figures_held for s in answer.sentences)
        if not self.abstention_policy().keeps_answer(retrieval.evidence, 1.0 if held else answer.grounded_share):
            return True
        if self.settings.abstain_min_answer_support <= 0:
            return False  # the check is off: do not tokenise the passages on every answer
        passages = [hit.chunk.text for hit in retrieval.context]
        support = answer_support(retrieval.question, answer.text, passages)
        return support.score < self.settings.abstain_min_answer_support

    def answer_policy(self) -> AnswerPolicy:
        return AnswerPolicy(withdraw=self.settings.withdraw_unsupported,
                            decline_unsupported=self.settings.decline_unsupported, decline=self.settings.abstain,
                            figure_context_min=self.settings.figure_context_min,
                            new_words_min=self.settings.new_words_min,
                            keep_held_figures=self.settings.keep_held_figures)

    def checked_answer(self, retrieval: Retrieval, generated: str, sources: Sequence[Source]) -> Answer:
        """The generated text as the user gets it: cited, checked, what no passage holds withdrawn (``llm.answer``),
        or "not in the documents" when the abstention rules say so after generation (``would_abstain``)."""
        scoped = retrieval.scope.documents if retrieval.scope.periods else ()
        answer = make_answer(retrieval.question, generated, sources, self.answer_policy(), scoped=scoped)
        if self.settings.abstain and not answer.abstained and self.would_abstain(retrieval, answer):
            # The draft was streamed already; the checked answer that replaces it says why it was withdrawn.
            answer = Answer(
                question=retrieval.question.text,
                text=f"{NOT_IN_DOCUMENTS[retrieval.question.language]} {DRAFT_WITHDRAWN[retrieval.question.language]}",
                citations=(), sources=answer.sources, supported=False, abstained=True,
                withdrawn_draft=answer.text,  # the check is lexical: a right answer in other words can land here
            )
        return answer
