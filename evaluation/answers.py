"""Answer-quality evaluation on QA sets with gold answers: what ``kb eval-qa`` runs.

For each set (``evaluation.qa_sets``: RGB en/zh fact, DomainRAG) two collections are
built through the real ingest path and reused by later runs:

- ``qa-<set>-all``: every selected question's answer passages and distractors;
- ``qa-<set>-negatives``: the distractors only, so no question has its answer.

Every question is asked against both, through the real pipeline, with
abstention off so that the model always answers; then the pipeline's own checks
with abstention on (``Pipeline.would_abstain`` before generation, ``Pipeline.checked_answer``
after it: invented facts withdrawn, nothing supported left declined) decide on that
same draft what the user would get.
With temperature 0 this equals running twice, once with abstention on and once
off, at half the cost, and keeps every answer for calibrating thresholds:

- *answerable* (first collection): the answer is correct when it contains the
  gold answer (case and spacing ignored): "accuracy without abstention" scores
  the model's draft, "accuracy with abstention" the checked answer the user gets
  (wrong when refused);
- *unanswerable* (second collection): a rejection is the pipeline refusing.

Also reported: the share of answer sentences whose citation supports them
(``Answer.sentences``), the share of answers in the question's language, and
time to first token.

``retrieval_only=True`` skips generation and records the evidence of both
conditions (seconds per question): the data thresholds are calibrated on.

Deliberately not here: LLM-as-judge scoring, RGB's counterfactual passages.
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from tqdm import tqdm

from core.types import Evidence, LoadedFile
from evaluation.qa_sets import QAItem, QASet
from llm.prompt import question_language
from text.keywords import content_keywords

if TYPE_CHECKING:  # annotations only: the CLI, in app, runs these, so they import nothing of app at run time
    from app.pipeline import Pipeline
    from app.results import IngestReport


@dataclass(frozen=True)
class QAOutcome:
    set_name: str
    item_id: str
    condition: str  # "answerable" or "unanswerable"
    question: str
    evidence: Evidence | None
    answer_in_passages: bool  # a passage that would go into the prompt contains the gold answer
    passages: tuple[str, ...] = ()  # the passages that went into the prompt
    answer: str | None = None  # None when nothing was generated
    abstained: bool | None = None  # the pipeline refuses with abstention on
    correct: bool | None = None  # the model's draft holds the gold answer
    correct_shown: bool | None = None  # the checked answer the user gets holds it (refused: False)
    supported_sentences: int | None = None
    sentences: int | None = None
    language_ok: bool | None = None
    first_token_ms: float | None = None
    shown: tuple[dict, ...] = ()  # the sources as the model was shown them (number, text, chunk), for checking again


@dataclass(frozen=True)
class QASummary:
    set_name: str
    questions: int
    accuracy_without_abstention: float
    accuracy_with_abstention: float
    rejection_rate: float
    supported_sentence_share: float
    language_ok_share: float
    retrieval_recall: float  # answerable questions whose answer reached the prompt
    first_token_ms_median: float


def select_items(qa_set: QASet, sample: int | None, seed: int = 7) -> list[QAItem]:
    items = [item for item in qa_set.items if item.positives and item.negatives]
    if sample and sample < len(items):
        items = sorted(random.Random(seed).sample(items, sample), key=lambda i: int(i.item_id) if i.item_id.isdigit() else 0)
    return items


def distractors(qa_set: QASet) -> list[LoadedFile]:
    """The distractors-only collection: every item's negatives, minus passages that answer any item's question.

    The items share one collection, so a negative of one question can answer
    another ("Barty wins the 2021 Wimbledon" is a distractor for 2019 and the
    answer for 2021). A passage is dropped when it states an item's answer
    (``QAItem.mentions_answer``) and holds at least half of that question's
    content keywords; a bare answer string in an unrelated passage ("北京",
    "5") does not answer the question.
    """
    def answers(item: QAItem, text: str) -> bool:
        if not item.mentions_answer(text):
            return False
        terms = set(content_keywords(item.question))
        return not terms or len(terms & set(content_keywords(text))) >= len(terms) / 2

    return [document for document in qa_set.documents(with_positives=False)
            if not any(answers(item, document.pages[0].text) for item in qa_set.items)]


def build_collections(base: Pipeline, qa_set: QASet, items: list[QAItem], progress: bool | None) -> tuple[Pipeline, Pipeline, IngestReport, IngestReport]:
    chosen = QASet(qa_set.name, tuple(items))
    answerable = base.with_settings(collection=f"qa-{qa_set.name}-all")
    negatives = base.with_settings(collection=f"qa-{qa_set.name}-negatives")
    report_all = answerable.ingest_documents(chosen.documents(with_positives=True), prune=True, progress=progress)
    report_neg = negatives.ingest_documents(distractors(chosen), prune=True, progress=progress)
    return answerable, negatives, report_all, report_neg


def _answer_in_prompt(item: QAItem, retrieval, context_chunks: int) -> bool:
    return any(item.mentions_answer(hit.chunk.text) for hit in retrieval.hits[:context_chunks])


def evaluate_set(
    qa_set: QASet, items: Sequence[QAItem], answerable: Pipeline, negatives: Pipeline, *,
    retrieval_only: bool, progress: bool | None = None,
) -> list[QAOutcome]:
    outcomes: list[QAOutcome] = []
    context = answerable.settings.context_chunks
    bar = tqdm(total=2 * len(items), desc=qa_set.name, unit="q", disable=None if progress is None else not progress)
    for item in items:
        for condition, pipeline in (("answerable", answerable), ("unanswerable", negatives)):
            retrieval = pipeline.retrieve(item.question)
            base = dict(set_name=qa_set.name, item_id=item.item_id, condition=condition, question=item.question,
                        evidence=retrieval.evidence, answer_in_passages=_answer_in_prompt(item, retrieval, context),
                        passages=tuple(hit.chunk.text for hit in retrieval.hits[:context]))
            if retrieval_only:
                outcomes.append(QAOutcome(**base))
                bar.update()
                continue
            # Asked once with abstention off: the model always answers, and its draft is what "without abstention"
            # scores; the pipeline's own checks then decide on that same draft what the user gets.
            stream = pipeline.with_settings(abstain=False).ask_stream(item.question)
            draft = "".join(stream).strip()
            if pipeline.would_abstain(stream.retrieval):
                shown, abstained = None, True
            else:
                shown = pipeline.checked_answer(stream.retrieval, draft, stream.sources)
                abstained = shown.abstained
            sentences = shown.sentences if shown is not None else stream.answer.sentences
            outcomes.append(QAOutcome(
                **base,
                answer=draft,
                abstained=abstained,
                correct=item.is_correct(draft),
                correct_shown=not abstained and item.is_correct(shown.text),
                supported_sentences=sum(1 for s in sentences if s.supported),
                sentences=len(sentences),
                language_ok=question_language(draft) == question_language(item.question),
                first_token_ms=stream.timings.first_token_ms if stream.timings else None,
                shown=tuple({"number": s.number, "text": s.text, "chunk": asdict(s.hit.chunk), "score": s.hit.score,
                             "dense_score": s.hit.dense_score, "keyword_score": s.hit.keyword_score,
                             "chunk_id": s.hit.chunk_id} for s in stream.sources),
            ))
            bar.update()
    bar.close()
    return outcomes


def summarise(set_name: str, outcomes: Sequence[QAOutcome]) -> QASummary:
    answerable = [o for o in outcomes if o.set_name == set_name and o.condition == "answerable"]
    unanswerable = [o for o in outcomes if o.set_name == set_name and o.condition == "unanswerable"]
    generated = [o for o in answerable + unanswerable if o.answer is not None and not o.abstained]
    if not any(o.answer is not None for o in answerable):
        return QASummary(set_name, len(answerable), *(float("nan"),) * 5,
                         retrieval_recall=statistics.fmean(o.answer_in_passages for o in answerable) if answerable else float("nan"),
                         first_token_ms_median=float("nan"))

    def share(values: list[bool]) -> float:
        return statistics.fmean(values) if values else float("nan")

    return QASummary(
        set_name=set_name,
        questions=len(answerable),
        accuracy_without_abstention=share([bool(o.correct) for o in answerable]),
        accuracy_with_abstention=share([bool(o.correct_shown) for o in answerable]),
        rejection_rate=share([bool(o.abstained) for o in unanswerable]),
        supported_sentence_share=(
            sum(o.supported_sentences or 0 for o in generated) / max(1, sum(o.sentences or 0 for o in generated))
        ),
        language_ok_share=share([bool(o.language_ok) for o in generated]),
        retrieval_recall=share([o.answer_in_passages for o in answerable]),
        first_token_ms_median=statistics.median([o.first_token_ms for o in generated if o.first_token_ms]) if generated else float("nan"),
    )


def outcomes_to_json(outcomes: Sequence[QAOutcome], summaries: Sequence[QASummary]) -> str:
    return json.dumps({"summaries": [asdict(s) for s in summaries], "outcomes": [asdict(o) for o in outcomes]},
                      ensure_ascii=False, indent=1)
