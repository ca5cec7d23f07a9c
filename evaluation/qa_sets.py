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

A negative that states a gold answer is dropped too: the "only non-answer
passages" condition must really lack the answer. "States" is looser than the
gold string (``_cue``): in RGB about a quarter of the distractors-only
questions had a passage in their top 5 that gave the answer in another
spelling ("Barty wins the 2021 Wimbledon"). Passages of *other* items that
answer a question are the evaluation's business (``evaluation.answers``).

Deliberately not here: RGB's counterfactual (``positive_wrong``) passages,
DomainRAG's other task types.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from core.types import LoadedFile, Page

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
        """The passage gives a gold answer: spelled as in the set, or in a looser form (``_answer_cues``)."""
        if self.is_correct(passage):
            return True
        lowered = passage.lower()
        loose = _unseparated(lowered)
        return any(
            all(any(cue(lowered, loose) for cue in requirement) for requirement in answer_set)
            for answer_set in self._answer_cues
        )

    @cached_property
    def _answer_cues(self) -> tuple[tuple[tuple[Callable[[str, str], bool], ...], ...], ...]:
        return tuple(
            tuple(tuple(_cue(alternative, self.question) for alternative in requirement) for requirement in answer_set)
            for answer_set in self.answers
        )


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


_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_ENGLISH_DATE = re.compile(r"\b(%s)[a-z]*\.?,?\s+(\d{1,2})\b|\b(\d{1,2})(?:st|nd|rd|th)?\s+(%s)" % ("|".join(_MONTHS), "|".join(_MONTHS)))
_CHINESE_DATE = re.compile(r"(\d{1,2})月(\d{1,2})日")
_NAME = re.compile(r"[A-Z][a-z]+(?: [A-Z][a-z]+){1,3}")
_NAME_SEPARATORS = re.compile(r"[\s·・.．\-‐]+")


def _unseparated(text: str) -> str:
    """Lower case without spaces, dots and name separators: "弗兰克·德拉邦特" = "弗兰克.德拉邦特"."""
    return _NAME_SEPARATORS.sub("", text.lower())


def _cue(alternative: str, question: str) -> Callable[[str, str], bool]:
    """A looser test for one gold answer string, for finding passages that state it in other words.

    RGB's "negative" passages were chosen by string match, and many state the
    answer anyway: "Barty wins the 2021 Wimbledon" (gold "Ashleigh Barty"),
    "premieres Sunday, November 17" (gold "November 17, 2019"),
    "弗兰克.德拉邦特" (gold "弗兰克·德拉邦特"). So besides the exact string:

    - separators ignored (spaces, dots, middle dots, hyphens);
    - a date: its month and day, in either order ("Nov 17", "17th November", "11月17日");
    - a name of two to four capitalised words: its last word, unless the question has it.

    Over-matching only drops a distractor from the "no answer indexed" condition,
    which never makes that condition easier to fail.
    """
    unseparated = _unseparated(alternative)
    lowered = alternative.lower()
    english = _ENGLISH_DATE.search(lowered)
    chinese = _CHINESE_DATE.search(alternative)
    patterns: list[re.Pattern[str]] = []
    if english:
        month = english.group(1) or english.group(4)
        day = english.group(2) or english.group(3)
        patterns.append(re.compile(rf"\b{month}[a-z]*\.?,?\s+(?:\w+,?\s+)?{day}(?!\d)|(?<!\d){day}(?:st|nd|rd|th)?\s+(?:of\s+)?{month}"))
    elif chinese:
        patterns.append(re.compile(rf"(?<!\d){chinese.group(1)}月{chinese.group(2)}日"))
    elif _NAME.fullmatch(alternative.strip()):
        last = alternative.split()[-1].lower()
        if len(last) >= 4 and last not in question.lower():
            patterns.append(re.compile(rf"\b{re.escape(last)}\b"))

    def cue(lowered_passage: str, unseparated_passage: str) -> bool:
        if unseparated and unseparated in unseparated_passage:
            return True
        return any(pattern.search(lowered_passage) for pattern in patterns)

    return cue


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
