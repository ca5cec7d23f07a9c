"""Saved conversations and their ratings, per user, in ``<home>/conversations.sqlite3``.

A conversation belongs to one user and one collection; each turn keeps the
question and the whole checked answer (text, citations with their passages,
sentence support), so a reloaded conversation shows exactly what was shown, and
a rating (thumbs up or down, with an optional note) can later become a test
case (``team.feedback``). Every method takes the user: one user can never read,
rename, rate or delete another's conversation (``ConversationNotFoundError``,
the same as for one that does not exist).

Schema version in ``meta`` (``team.sqlite_file``); a newer one is refused.

Worked example::

    store = Conversations(home)
    cid = store.create("bob", "handbook", "Leave days")
    turn = store.add_turn("bob", cid, "How many leave days?", answer)
    store.rate("bob", turn, +1, "right, 25 days")
    print(store.export_markdown("bob", cid))

Deliberately not here: who may use which collection (``team.permissions``), turning
ratings into an evaluation set (``team.feedback``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from team.sqlite_file import SQLiteFile
from core.errors import KbError
from core.types import Answer, Citation, EvidenceSpan, SentenceSupport

SCHEMA_VERSION = 1
MAX_TITLE = 120

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, collection TEXT NOT NULL, title TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS conversations_user ON conversations (user, updated);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    question TEXT NOT NULL, answer TEXT NOT NULL, created REAL NOT NULL,
    rating INTEGER CHECK (rating IN (-1, 1)), note TEXT NOT NULL DEFAULT '', rated REAL);
CREATE INDEX IF NOT EXISTS turns_conversation ON turns (conversation, id);
"""


class ConversationNotFoundError(KbError, LookupError):
    """No such conversation or turn for this user."""


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    user: str
    collection: str
    title: str
    created: float
    updated: float


@dataclass(frozen=True)
class SavedTurn:
    id: int
    question: str
    answer: Answer
    created: float
    rating: int | None = None  # +1 thumbs up, -1 thumbs down
    note: str = ""


@dataclass(frozen=True)
class RatedTurn:
    """A rated answer with where it came from (``team.feedback`` exports these)."""

    turn: SavedTurn
    user: str
    collection: str
    conversation: int


def answer_to_json(answer: Answer) -> str:
    return json.dumps(asdict(answer), ensure_ascii=False)


def answer_from_json(text: str) -> Answer:
    """The inverse of ``answer_to_json``; fields a newer version added are ignored."""
    data = json.loads(text)

    def citation(row: dict) -> Citation:
        known = {k: v for k, v in row.items() if k in Citation.__dataclass_fields__}
        return Citation(**{**known, "heading_path": tuple(known.get("heading_path") or ())})

    def sentence(row: dict) -> SentenceSupport:
        known = {k: v for k, v in row.items() if k in SentenceSupport.__dataclass_fields__}
        known["citations"] = tuple(known.get("citations") or ())
        known["evidence"] = tuple(EvidenceSpan(**span) for span in known.get("evidence") or ())
        known["missing"] = tuple(known.get("missing") or ())
        return SentenceSupport(**known)

    known = {k: v for k, v in data.items() if k in Answer.__dataclass_fields__}
    known["citations"] = tuple(citation(c) for c in known.get("citations") or ())
    known["sources"] = tuple(citation(c) for c in known.get("sources") or ())
    known["sentences"] = tuple(sentence(s) for s in known.get("sentences") or ())
    known["withdrawn"] = tuple(sentence(s) for s in known.get("withdrawn") or ())
    return Answer(**known)


class Conversations:
    """The conversation store of one home (see the module docstring)."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "conversations.sqlite3"
        self._file = SQLiteFile(self.path, _SCHEMA, SCHEMA_VERSION)

    def _db(self):
        return self._file.transaction()

    def create(self, user: str, collection: str, title: str) -> int:
        now = time.time()
        with self._db() as db:
            cursor = db.execute("INSERT INTO conversations (user, collection, title, created, updated) VALUES (?, ?, ?, ?, ?)",
                                (user, collection, _title(title), now, now))
            return int(cursor.lastrowid)

    def list(self, user: str, collection: str | None = None) -> list[ConversationSummary]:
        """The user's conversations, the most recently continued first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, user, collection, title, created, updated FROM conversations "
                "WHERE user = ? AND (? IS NULL OR collection = ?) ORDER BY updated DESC, id DESC",
                (user, collection, collection)).fetchall()
        return [ConversationSummary(*row) for row in rows]

    def get(self, user: str, conversation: int) -> ConversationSummary:
        with self._db() as db:
            row = db.execute("SELECT id, user, collection, title, created, updated FROM conversations "
                             "WHERE id = ? AND user = ?", (conversation, user)).fetchone()
        if row is None:
            raise ConversationNotFoundError(f"no conversation {conversation}")
        return ConversationSummary(*row)

    def turns(self, user: str, conversation: int) -> list[SavedTurn]:
        self.get(user, conversation)
        with self._db() as db:
            rows = db.execute("SELECT id, question, answer, created, rating, note FROM turns WHERE conversation = ? "
                              "ORDER BY id", (conversation,)).fetchall()
        return [SavedTurn(row[0], row[1], answer_from_json(row[2]), row[3], row[4], row[5]) for row in rows]

    def add_turn(self, user: str, conversation: int, question: str, answer: Answer) -> int:
        self.get(user, conversation)
        now = time.time()
        with self._db() as db:
            cursor = db.execute("INSERT INTO turns (conversation, question, answer, created) VALUES (?, ?, ?, ?)",
                                (conversation, question, answer_to_json(answer), now))
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation))
            return int(cursor.lastrowid)

    def rename(self, user: str, conversation: int, title: str) -> None:
        with self._db() as db:
            if not db.execute("UPDATE conversations SET title = ? WHERE id = ? AND user = ?",
                              (_title(title), conversation, user)).rowcount:
                raise ConversationNotFoundError(f"no conversation {conversation}")

    def delete(self, user: str, conversation: int) -> None:
        with self._db() as db:  # its turns go with it (ON DELETE CASCADE)
            if not db.execute("DELETE FROM conversations WHERE id = ? AND user = ?", (conversation, user)).rowcount:
                raise ConversationNotFoundError(f"no conversation {conversation}")

    def rate(self, user: str, turn: int, rating: int | None, note: str = "", conversation: int | None = None) -> None:
        """Thumbs up (+1), down (-1) or none (None) on one of the user's answers, with an optional note; with
        ``conversation``, only an answer of that conversation."""
        if rating not in (1, -1, None):
            raise ValueError("a rating is +1, -1 or None")
        with self._db() as db:
            if not db.execute(
                "UPDATE turns SET rating = ?, note = ?, rated = ? WHERE id = ? AND (? IS NULL OR conversation = ?) "
                "AND conversation IN (SELECT id FROM conversations WHERE user = ?)",
                (rating, note.strip(), time.time() if rating else None, turn, conversation, conversation,
                 user)).rowcount:
                raise ConversationNotFoundError(f"no answer {turn}" + (f" in conversation {conversation}"
                                                                      if conversation is not None else ""))

    def rated(self, collection: str | None = None, rating: int | None = None) -> list[RatedTurn]:
        """Every rated answer (all users: an admin's export), oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT t.id, t.question, t.answer, t.created, t.rating, t.note, c.user, c.collection, c.id "
                "FROM turns t JOIN conversations c ON c.id = t.conversation WHERE t.rating IS NOT NULL "
                "AND (? IS NULL OR c.collection = ?) AND (? IS NULL OR t.rating = ?) ORDER BY t.id",
                (collection, collection, rating, rating)).fetchall()
        return [RatedTurn(SavedTurn(r[0], r[1], answer_from_json(r[2]), r[3], r[4], r[5]), r[6], r[7], r[8])
                for r in rows]

    # ----- export ----------------------------------------------------------------
    def export_json(self, user: str, conversation: int) -> str:
        summary = self.get(user, conversation)
        turns = [{"question": t.question, "answer": t.answer.text, "abstained": t.answer.abstained,
                  "citations": [{"number": c.number, "source": c.source, "page": c.page,
                                 "section": list(c.heading_path), "passage": c.passage} for c in t.answer.citations],
                  "rating": t.rating, "note": t.note, "asked": _when(t.created)}
                 for t in self.turns(user, conversation)]
        return json.dumps({"title": summary.title, "collection": summary.collection, "created": _when(summary.created),
                           "turns": turns}, ensure_ascii=False, indent=2)

    def export_markdown(self, user: str, conversation: int) -> str:
        summary = self.get(user, conversation)
        lines = [f"# {summary.title}", "", f"Collection: {summary.collection} · started {_when(summary.created)}", ""]
        for turn in self.turns(user, conversation):
            lines += [f"## {turn.question}", "", turn.answer.text, ""]
            cited = turn.answer.citations or (turn.answer.sources if turn.answer.abstained else ())
            if cited:
                lines.append("Sources:" if turn.answer.citations else "Closest passages:")
                lines += [f"- [{c.number}] {c.location}" for c in cited]
                lines.append("")
            if turn.rating:
                lines += [f"Rated {'👍' if turn.rating > 0 else '👎'}{': ' + turn.note if turn.note else ''}", ""]
        return "\n".join(lines)


def _title(title: str) -> str:
    cleaned = " ".join(title.split())[:MAX_TITLE]
    return cleaned or "Conversation"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
