"""Rated answers become a regression set in the format ``kb eval-qa`` reads (RGB's JSON lines).

Each rated answer (``team.conversations``) becomes one line::

    {"id": "feedback-17", "query": "Which port does the web UI use?", "answer": ["8501"],
     "positive": [<passages shown that hold the answer>], "negative": [<the other passages shown>],
     "rating": "down", "note": "It should say 8501", "given_answer": "…", "collection": "guide", "user": "carol"}

``kb eval-qa`` checks an answer by the gold strings it must contain (case and spacing
ignored, ``evaluation.qa_sets``), so each line needs short facts a right answer in other
words still contains: never a whole sentence, whose wording and final period a right
answer would have to repeat. Where they come from, first match wins:

1. what the note quotes ("it should say “8501”"): a quoted phrase that holds numbers gives
   its numbers, a short one (up to 40 characters) itself without its trailing punctuation
   ("“Acme Corp.”" -> Acme Corp), a longer one its numbers or names ("“The web interface
   listens on port 8501.”" -> 8501);
2. the note's numbers ("It should say 8501" -> 8501; every one must appear);
3. a short note (up to 40 characters) as a whole, without its trailing punctuation ("Acme Corp");
4. for a thumbs up: the numbers of the answer that a cited passage holds, else a short
   answer as a whole, else the names in the answer that a cited passage holds.

A rating that gives none of these (a thumbs down without a usable note, a thumbs up on a
long answer without a number or a name) has nothing to check against and is left out;
``export`` says how many were. ``positive`` are the passages the user was
shown that contain the gold answer (the cited ones when none does), ``negative``
the other passages shown: ``kb eval-qa`` then asks the question again over them,
and over the negatives alone (which must be refused).

Deliberately not here: running the evaluation (``kb eval-qa``), storing ratings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from team.conversations import Conversations, RatedTurn

# Quotation marks; a single quote only where it cannot be an apostrophe ("bob's", "it's").
_QUOTED = re.compile(r"[\"“”「『‘](.+?)[\"“”」』’]|(?<!\w)'(.+?)'(?!\w)")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,.]*\d(?![\w])|(?<![\w.])\d(?![\w.])")
_NAME = re.compile(r"\b[A-Z][\w&-]*(?:\s+[A-Z][\w&-]*)+")  # two or more capitalised words: "Acme Corp"
_MARKER = re.compile(r"\s*\[\d+\]")
_TRAILING = " \t.,;:!?。，；：！？、…"
SHORT_NOTE = 40


@dataclass(frozen=True)
class FeedbackExport:
    written: int
    up: int
    down: int
    left_out: tuple[str, ...]  # "feedback-17: thumbs down without the right answer in its note"


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


def _facts(text: str) -> list[str]:
    """The short facts of a phrase or sentence: its numbers; a short phrase itself; else its names."""
    text = text.strip().rstrip(_TRAILING)
    numbers = _NUMBER.findall(text)
    if numbers:
        return _unique(numbers)
    if len(text) <= SHORT_NOTE:
        return [text] if text else []
    return _unique(_NAME.findall(text))


def gold_answer(rated: RatedTurn) -> list[str] | None:
    """The strings a right answer must contain, or None when the rating says nothing checkable."""
    note = rated.turn.note.strip()
    if note:
        quoted = _unique([fact for match in _QUOTED.findall(note) for fact in _facts(match[0] or match[1])])
        if quoted:
            return quoted
        numbers = _NUMBER.findall(note)
        if numbers:
            return _unique(numbers)
        if len(note) <= SHORT_NOTE and note.rstrip(_TRAILING):
            return [note.rstrip(_TRAILING)]
    if rated.turn.rating and rated.turn.rating > 0:
        answer = rated.turn.answer
        if answer.abstained:
            return None
        cited = " ".join(citation.passage for citation in answer.citations)
        text = _MARKER.sub("", answer.text).strip()  # "[1]" is no figure of the answer
        numbers = [number for number in _unique(_NUMBER.findall(text)) if number in cited]
        if numbers:
            return numbers
        if len(text.rstrip(_TRAILING)) <= SHORT_NOTE:
            return [text.rstrip(_TRAILING)] if text.rstrip(_TRAILING) else None
        return [name for name in _unique(_NAME.findall(text)) if name in cited] or None
    return None


def to_line(rated: RatedTurn) -> dict | None:
    gold = gold_answer(rated)
    if not gold:
        return None
    answer = rated.turn.answer
    shown = {citation.number: citation.passage for citation in answer.sources}
    holding = [number for number, passage in shown.items()
               if all(part.lower() in passage.lower() for part in gold)]
    positive_numbers = holding or [citation.number for citation in answer.citations]
    return {
        "id": f"feedback-{rated.turn.id}", "query": rated.turn.question, "answer": gold,
        "positive": [shown[number] for number in positive_numbers if number in shown],
        "negative": [passage for number, passage in shown.items() if number not in positive_numbers],
        "rating": "up" if (rated.turn.rating or 0) > 0 else "down", "note": rated.turn.note,
        "given_answer": answer.text, "collection": rated.collection, "user": rated.user,
    }


def is_export(path: Path) -> bool:
    """Whether ``path`` is a file ``export`` wrote (its lines carry the rating and the answer given)."""
    try:
        with Path(path).open(encoding="utf-8") as lines:
            first = next((line for line in lines if line.strip()), "")
        row = json.loads(first) if first else {}
    except (OSError, ValueError):
        return False
    return isinstance(row, dict) and str(row.get("id", "")).startswith("feedback-") and "given_answer" in row


def export(store: Conversations, out: Path, collection: str | None = None, rating: int | None = None) -> FeedbackExport:
    """Write the rated answers (of one collection, of one rating) to ``out`` as JSON lines."""
    lines, left_out, up, down = [], [], 0, 0
    for rated in store.rated(collection, rating):
        line = to_line(rated)
        if line is None:
            if (rated.turn.rating or 0) > 0:
                left_out.append(f"feedback-{rated.turn.id}: thumbs up on an answer without a short fact to check "
                                "(a number, a name, or a short answer)")
            else:
                left_out.append(f"feedback-{rated.turn.id}: thumbs down without the right answer in its note")
            continue
        if not line["positive"]:
            left_out.append(f"feedback-{rated.turn.id}: no passage was shown with the answer")
            continue
        lines.append(json.dumps(line, ensure_ascii=False))
        up, down = up + (line["rating"] == "up"), down + (line["rating"] == "down")
    out.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return FeedbackExport(len(lines), up, down, tuple(left_out))
