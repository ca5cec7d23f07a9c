"""Rated answers become a regression set in the format ``kb eval-qa`` reads (RGB's JSON lines).

Each rated answer (``team.conversations``) becomes one line::

    {"id": "feedback-17", "query": "Which port does the web UI use?", "answer": ["8501"],
     "positive": [<passages shown that hold the answer>], "negative": [<the other passages shown>],
     "rating": "down", "note": "It should say 8501", "given_answer": "…", "collection": "guide", "user": "carol"}

``kb eval-qa`` checks an answer by the gold strings it must contain, so each line
needs one. Where it comes from, first match wins:

1. the note, when it quotes the right answer ("it should say “8501”": the quoted text);
2. the note's numbers ("It should say 8501" -> 8501; every one must appear);
3. a short note (up to 40 characters) as a whole ("Acme Corp");
4. for a thumbs up: the numbers of the answer that a cited passage holds, else
   the answer itself without its citation markers.

A thumbs down without a usable note has nothing to check against and is left
out; ``export`` says how many were. ``positive`` are the passages the user was
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

_QUOTED = re.compile(r"[\"“”「『'‘](.+?)[\"“”」』'’]")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,.]*\d(?![\w])|(?<![\w.])\d(?![\w.])")
_MARKER = re.compile(r"\s*\[\d+\]")
SHORT_NOTE = 40


@dataclass(frozen=True)
class FeedbackExport:
    written: int
    up: int
    down: int
    left_out: tuple[str, ...]  # "feedback-17: thumbs down without the right answer in its note"


def gold_answer(rated: RatedTurn) -> list[str] | None:
    """The strings a right answer must contain, or None when the rating says nothing checkable."""
    note = rated.turn.note.strip()
    if note:
        quoted = [match.strip() for match in _QUOTED.findall(note) if match.strip()]
        if quoted:
            return quoted
        numbers = _NUMBER.findall(note)
        if numbers:
            return numbers
        if len(note) <= SHORT_NOTE:
            return [note]
    if rated.turn.rating and rated.turn.rating > 0:
        answer = rated.turn.answer
        if answer.abstained:
            return None
        cited = " ".join(citation.passage for citation in answer.citations)
        text = _MARKER.sub("", answer.text).strip()  # "[1]" is no figure of the answer
        numbers = [number for number in dict.fromkeys(_NUMBER.findall(text)) if number in cited]
        return numbers or [text]
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


def export(store: Conversations, out: Path, collection: str | None = None, rating: int | None = None) -> FeedbackExport:
    """Write the rated answers (of one collection, of one rating) to ``out`` as JSON lines."""
    lines, left_out, up, down = [], [], 0, 0
    for rated in store.rated(collection, rating):
        line = to_line(rated)
        if line is None:
            left_out.append(f"feedback-{rated.turn.id}: thumbs {'up' if (rated.turn.rating or 0) > 0 else 'down'} "
                            "without the right answer in its note")
            continue
        if not line["positive"]:
            left_out.append(f"feedback-{rated.turn.id}: no passage was shown with the answer")
            continue
        lines.append(json.dumps(line, ensure_ascii=False))
        up, down = up + (line["rating"] == "up"), down + (line["rating"] == "down")
    out.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return FeedbackExport(len(lines), up, down, tuple(left_out))
