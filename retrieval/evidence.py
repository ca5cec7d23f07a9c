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
- ``best_dense``: the best passage's cosine similarity to the question;
- ``missing_specifics``: the question's numbers, identifiers and names
  (``text.keywords.specific_items``) that no passage holds. An item counts
  as held when a passage's document says it of itself: in its header (file name,
  title, organisation, period) or in its opening (a filing's cover says "FORM
  10-Q", which "these 10-Qs" refers to; its page 17 does not). An acronym of the
  question counts as held when a passage spells it out ("EPS": "earnings per
  share"), for coverage too.

``AbstentionPolicy`` turns these into a yes/no. Coverage alone refuses
questions worded differently from the text ("怎样启用 GPU 加速？" over a guide
that says 使用 GPU … 重新编译: coverage 0.16). Such a reworded question misses
ordinary words but none of its names or numbers, and its best passage is close
in meaning; a question about something the passages do not hold usually misses
a name or a number ("2021" over passages about 2022). So a question with low
coverage is still answered when the best cosine reaches ``reworded_min_dense``
and no specific item is missing. Thresholds: coverage calibrated on RGB and
DomainRAG (``kb eval-qa``), the cosine on labelled reworded and off-topic
questions (``benchmarks/abstention_paraphrases.py``); figures in docs/benchmarks.md.

After generation, ``llm.answer_support.answer_support`` checks the answer against
the passages the way a reader would: the new information in the answer (its words that are
not the question's) must stand in a passage *next to* the question's words,
within two neighbouring sentences. Distractor passages are usually on the
question's topic and hold plausible names and numbers, so "the answer's words
occur somewhere" is not enough; "the answer's words occur where the question's
words are" separates much better (RGB: "Super Bowl 2021 location" answered
"Las Vegas" from a passage about Super Bowl LVIII fails, because "2021" is not
in that sentence).

``measure_evidence`` computes the first four for the passages that would go
into the prompt.

Deliberately not here: per-sentence citation checking for the UI
(``llm.grounding``), the wording of the refusal (``llm.refusals``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.types import Evidence, Hit, Question
from text.keywords import keyword_tokens, missing_items, spelled_out, spelled_out_terms
from retrieval.store import Collection


@dataclass(frozen=True)
class AbstentionPolicy:
    """Answer only when the passages cover enough of the question, or hold all its names and are close in meaning.

    Worked example with the defaults (0.45, reworded_min_dense 0.86):
    coverage 0.16, cosine 0.90, nothing missing -> answered (a reworded question);
    coverage 0.30, cosine 0.90, "2021" missing -> refused; coverage 0.30, cosine 0.80 -> refused.
    """

    min_coverage: float
    min_dense: float = 0.0
    reworded_min_dense: float | None = None  # None: coverage decides alone

    def supports(self, evidence: Evidence) -> bool:
        if evidence.best_dense < self.min_dense:
            return False
        if evidence.coverage >= self.min_coverage:
            return True
        return self._reworded(evidence)

    def keeps_answer(self, evidence: Evidence, grounded_share: float | None) -> bool:
        """After generation: an answer to a question let through on meaning alone needs one supported sentence.

        ``grounded_share`` is the share of the answer's checkable sentences that a cited passage
        supports (``llm.answer.Answer.grounded_share``); None (nothing checkable, e.g. "不能。") keeps it.
        """
        if evidence.coverage >= self.min_coverage or not self._reworded(evidence):
            return True
        return grounded_share is None or grounded_share > 0

    def _reworded(self, evidence: Evidence) -> bool:
        return (self.reworded_min_dense is not None and evidence.best_dense >= self.reworded_min_dense
                and not evidence.missing_specifics)


def measure_evidence(collection: Collection, question: Question, top: Sequence[Hit],
                     held: frozenset[str] = frozenset()) -> Evidence | None:
    """How well ``top`` (the passages for the prompt) cover the question; None when there are none.

    ``held``: items of the question the documents hold by what they are, whatever their passages say:
    the period words the question's scope matched (``retrieval.scope``: "Q1" of "Microsoft's Q1 fiscal 2024"
    names the filing for the quarter ended September 30, 2023, whose pages never say "Q1").
    """
    if not top:
        return None
    missing = _missing_specifics(collection, question, top)
    return Evidence(
        coverage=collection.keyword_coverage(_covered_terms(question, top), [h.chunk_id for h in top if h.chunk_id is not None]),
        best_keyword=max(h.keyword_score or 0.0 for h in top),
        best_dense=max(h.dense_score or 0.0 for h in top),
        missing_specifics=tuple(item for item in missing if item not in held),
    )


def _covered_terms(question: Question, top: Sequence[Hit]) -> list[str]:
    """The question's keywords, an acronym the passages spell out standing as the words that spell it:
    "diluted EPS" over "Diluted earnings per share" is covered, not missing its rarest word."""
    terms = list(question.keywords)
    if not question.acronyms:
        return terms
    text = "\n".join(h.chunk.text for h in top)
    for acronym in question.acronyms:
        spelled = spelled_out_terms({acronym}, text)
        if spelled:
            own = set(keyword_tokens(acronym))
            terms = [term for term in terms if term not in own] + sorted(spelled - set(terms))
    return terms


OPENING_CHUNKS = 2  # a document's cover: title, form, organisation, period


def _missing_specifics(collection: Collection, question: Question, top: Sequence[Hit]) -> tuple[str, ...]:
    # embedding_text: a name or period in a document's header (its file name, title) counts as present.
    text = "\n".join(h.chunk.embedding_text for h in top)
    missing = [item for item in missing_items(set(question.specific_items), text)
               if not (item in question.acronyms and spelled_out(item, text))]
    if not missing:
        return ()
    sources = dict.fromkeys(h.chunk.source for h in top)
    openings = "\n".join(chunk.text for source in sources for chunk in collection.chunks_of(source)[:OPENING_CHUNKS])
    return missing_items(set(missing), openings)
