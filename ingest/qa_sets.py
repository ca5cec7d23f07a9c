"""Read question-answering evaluation sets (RGB, DomainRAG) as questions with passages.

Each item has a question, its gold answers, passages that contain the answer
(``positives``) and passages that do not (``negatives``). ``documents`` turns
passages into ``LoadedFile`` objects (one page each, source
``<set>/<kind>/<hash>``) so that they are indexed through the real ingest path.

Formats (see ../shared/data/README.md):

- RGB ``en_fact.json`` / ``zh_fact.json``: JSON lines with ``query``, ``answer``
  (a string or a list of alternatives), ``positive[]``, ``negative[]``.
- DomainRAG ``basic_qa_retrieved_bm25.jsonl``: ``question``, ``answers``
  (a list of answer groups; every string of one group must appear),
  ``positive_reference[].contents`` and ``retrieved_psgs[]`` (BM25 top 20,
  which may include a positive; those and any passage containing a gold answer
  are dropped from the negatives). Its text is word-segmented with spaces; the
  spaces between Chinese characters are removed, as a user's document would be.

A negative that happens to contain a gold answer string is dropped too: the
"only non-answer passages" condition must really lack the answer.

Deliberately not here: RGB's counterfactual (``positive_wrong``) passages,
DomainRAG's other task types.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ingest.documents import LoadedFile, Page

_CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
_SEGMENTATION_SPACE = re.compile(rf"(?<=[{_CJK}]) +(?=[{_CJK}])|(?<=[{_CJK}]) +(?=[\w])|(?<=[\w]) +(?=[{_CJK}])")


class QASetError(Exception):
    """The file is not a readable QA set."""


@dataclass(frozen=True)
class QAItem:
    item_id: str
    question: str
    # Any answer set counts; within a set every requirement must be met; a requirement is met
    # by any of its alternative strings (RGB lists date spellings as alternatives).
    answers: tuple[tuple[tuple[str, ...], ...], ...]
    positives: tuple[str, ...]
    negatives: tuple[str, ...]

    def is_correct(self, answer_text: str) -> bool:
        """The gold answer is contained in the text (case and spacing ignored)."""
        text = _normalise(answer_text)
        return any(
            all(any(_normalise(alternative) in text for alternative in requirement) for requirement in answer_set)
            for answer_set in self.answers
        )

    def mentions_answer(self, passage: str) -> bool:
        return self.is_correct(passage)


@dataclass(frozen=True)
class QASet:
    name: str
    items: tuple[QAItem, ...]

    def documents(self, *, with_positives: bool) -> list[LoadedFile]:
        """Distinct passages of all items: negatives, plus positives when asked."""
        passages: dict[str, tuple[str, str]] = {}
        for item in self.items:
            kinds = [("neg", item.negatives)] + ([("pos", item.positives)] if with_positives else [])
            for kind, texts in kinds:
                for text in texts:
                    digest = hashlib.sha256(text.encode()).hexdigest()
                    passages.setdefault(digest, (kind, text))
        return [
            LoadedFile(
                source=f"{self.name}/{kind}/{digest[:16]}", content_sha256=digest,
                pages=(Page(source=f"{self.name}/{kind}/{digest[:16]}", page=None, text=text),),
            )
            for digest, (kind, text) in sorted(passages.items())
        ]


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _desegment(text: str) -> str:
    return _SEGMENTATION_SPACE.sub("", text).strip()


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise QASetError(f"{path} does not exist")
    try:
        with path.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError as exc:
        raise QASetError(f"{path}: not JSON lines ({exc.msg})") from None


def _rgb_answers(answer: object) -> tuple[tuple[tuple[str, ...], ...], ...]:
    """RGB: a string, or a list of requirements, each a string or a list of alternatives."""
    if isinstance(answer, str):
        return (((answer,),),)
    return (tuple(tuple(map(str, entry)) if isinstance(entry, list) else (str(entry),) for entry in answer),)


def _domainrag_answers(answers: list) -> tuple[tuple[tuple[str, ...], ...], ...]:
    """DomainRAG: alternative answer sets, each a list of strings that must all appear."""
    return tuple(tuple((_desegment(str(part)),) for part in group) for group in answers if group)


def read_qa_set(path: Path, *, name: str | None = None) -> QASet:
    """An RGB ``*_fact.json`` or a DomainRAG ``basic_qa_retrieved_bm25.jsonl`` file."""
    path = Path(path)
    rows = _rows(path)
    items = []
    if rows and "query" in rows[0]:  # RGB
        name = name or f"rgb-{path.stem}"
        for row in rows:
            item = QAItem(str(row["id"]), row["query"], _rgb_answers(row["answer"]),
                          tuple(row.get("positive") or ()), ())
            negatives = tuple(p for p in row.get("negative") or () if not item.mentions_answer(p))
            items.append(QAItem(item.item_id, item.question, item.answers, item.positives, negatives))
    elif rows and "retrieved_psgs" in rows[0]:  # DomainRAG with BM25 distractors
        name = name or "domainrag"
        for number, row in enumerate(rows):
            positives = tuple(_desegment(p["contents"]) for p in row["positive_reference"])
            positive_ids = {(str(p.get("id")), p.get("psg_id")) for p in row["positive_reference"]}
            item = QAItem(str(number), _desegment(row["question"]), _domainrag_answers(row["answers"]), positives, ())
            negatives = tuple(
                text for p in row["retrieved_psgs"]
                if (str(p.get("id")), p.get("psg_id")) not in positive_ids
                and not item.mentions_answer(text := _desegment(p["contents"]))
            )
            items.append(QAItem(item.item_id, item.question, item.answers, item.positives, negatives))
    else:
        raise QASetError(f"{path}: neither an RGB file (query/positive/negative) nor DomainRAG with retrieved_psgs")
    return QASet(name=name, items=tuple(items))
