"""Writing a batch of document changes to Milvus so that a crash at any point can be undone.

Milvus has no transactions, so a batch is written in an order the next writer can roll back:

1. each document it touches gets a ``writing`` row naming every id range the batch may write or delete for
   it and how many ``terms:`` rows it may have (the journal);
2. the old versions' passages, second-embedder vectors and term rows are deleted by id;
3. the new passages, second vectors and term rows are inserted;
4. each document's row is rewritten as ``done`` (the commit point), or deleted for a removal.

A process killed anywhere before 4 leaves ``writing`` rows; ``roll_back`` deletes everything they name and
the rows themselves, so the documents are read again by the next ingest and nothing of a half-written
batch stays retrievable. Deleting by id (a document's passages have one id range) rather than by a filter
on the document's name keeps deletes cheap in Milvus Lite, where a filter reads every row.

Deliberately not here: what the rows hold (``retrieval.milvus_rows``), when batches are written
(``retrieval.milvus_store``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from retrieval.milvus_client import MilvusConnection
from retrieval.milvus_rows import meta_row, term_row_keys
from retrieval.milvus_second import SecondVectors

BATCH_ROWS = 2_000  # rows per insert call: a few MB
IDS = 5_000  # ids per delete call


@dataclass
class Batch:
    """What one batch writes, in the order ``write_batch`` writes it."""

    journal: list[dict] = field(default_factory=list)  # ``writing`` rows
    delete_ids: list[int] = field(default_factory=list)  # the old versions' passages
    delete_keys: list[str] = field(default_factory=list)  # the old versions' term rows
    passages: list[dict] = field(default_factory=list)
    seconds: list[tuple[int, str, np.ndarray]] = field(default_factory=list)  # (id, document, vector)
    term_rows: list[dict] = field(default_factory=list)
    done: list[dict] = field(default_factory=list)  # the commit: finished document rows
    removed: list[str] = field(default_factory=list)  # keys of document rows to delete (removals)


def journal_row(source: str, ranges: Sequence[range], term_rows: int) -> dict:
    return meta_row(f"doc:{source}", "document", {"state": "writing", "ids": [[r.start, r.stop] for r in ranges],
                                                  "term_rows": term_rows})


def _delete_ids(db: MilvusConnection, passages: str, second: SecondVectors | None, ids: list[int]) -> None:
    for start in range(0, len(ids), IDS):
        part = ids[start:start + IDS]
        db.delete_ids(passages, part)
        if second is not None:
            second.delete_ids(part)


def write_batch(db: MilvusConnection, passages: str, meta: str, batch: Batch, second: SecondVectors | None) -> None:
    for start in range(0, len(batch.journal), BATCH_ROWS):
        db.upsert(meta, batch.journal[start:start + BATCH_ROWS])
    _delete_ids(db, passages, second, batch.delete_ids)
    db.delete_ids(meta, batch.delete_keys)
    for start in range(0, len(batch.passages), BATCH_ROWS):
        db.insert(passages, batch.passages[start:start + BATCH_ROWS])
    if second is not None and batch.seconds:
        second.put(batch.seconds)
    for rows in (batch.term_rows, batch.done):
        for start in range(0, len(rows), BATCH_ROWS):
            db.upsert(meta, rows[start:start + BATCH_ROWS])
    db.delete_ids(meta, batch.removed)


def roll_back(db: MilvusConnection, passages: str, meta: str, unfinished: dict[str, dict],
              second: SecondVectors | None) -> None:
    """Undo what the ``writing`` rows (source -> payload) name, then the rows themselves."""
    ids = [i for payload in unfinished.values() for start, stop in payload.get("ids", ()) for i in range(start, stop)]
    _delete_ids(db, passages, second, ids)
    keys = [key for source, payload in unfinished.items() for key in term_row_keys(source, payload.get("term_rows", 0))]
    db.delete_ids(meta, keys + [f"doc:{source}" for source in unfinished])


def stored_terms(db: MilvusConnection, meta: str, source: str, term_rows: int) -> dict[str, int]:
    """A written document's term counts, from its row or its ``terms:`` rows."""
    keys = term_row_keys(source, term_rows) if term_rows else [f"doc:{source}"]
    counts: dict[str, int] = {}
    for row in db.get(meta, keys, ["payload"]):
        counts.update(json.loads(row["payload"]).get("terms") or {})
    return counts
