"""Read a BEIR-format retrieval set: corpus, queries and relevance judgments.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``),
``queries.jsonl`` (``_id``, ``text``) and ``qrels/<split>.tsv`` (a header, then
``query-id  corpus-id  score``). Each corpus document becomes a ``LoadedFile``
with one page, so it is chunked, embedded and indexed exactly like a user's
file. Its source is ``<set name>/<doc id>``, which keeps two sets apart in one
collection; its title becomes the heading path, so the embedder and the keyword
index see ``title + "\\n" + text`` while citations keep the text alone.

Worked example::

    beir = read_beir(Path("../shared/data/retrieval/scifact"), qrels_split="train")
    beir.documents[0].source   -> "scifact/4983"
    beir.qrels["1"]            -> {"scifact/31715818": 1}

Deliberately not here: downloading sets, BEIR's zip layout, qrels with
negative or zero scores (they are dropped: only ``score > 0`` is relevant).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from core.types import LoadedFile, Page


class BeirFormatError(Exception):
    """The folder is not a readable BEIR set."""


@dataclass(frozen=True)
class BeirQuery:
    query_id: str
    text: str
    relevant: dict[str, int]  # source -> graded relevance (> 0)


@dataclass(frozen=True)
class BeirSet:
    name: str
    documents: tuple[LoadedFile, ...]
    queries: tuple[BeirQuery, ...]  # only queries that have relevant documents in the corpus, file order

    @property
    def qrels(self) -> dict[str, dict[str, int]]:
        return {query.query_id: query.relevant for query in self.queries}


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise BeirFormatError(f"{path} is missing: a BEIR folder has corpus.jsonl, queries.jsonl and qrels/")
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise BeirFormatError(f"{path}:{number}: not JSON ({exc.msg})") from None
    return rows


def _document(set_name: str, row: dict) -> LoadedFile:
    doc_id = str(row["_id"])
    title = (row.get("title") or "").strip()
    text = row.get("text") or ""
    source = f"{set_name}/{doc_id}"
    digest = hashlib.sha256(f"{title}\x00{text}".encode()).hexdigest()
    page = Page(source=source, page=None, text=text, heading_path=(title,) if title else ())
    return LoadedFile(source=source, content_sha256=digest, pages=(page,) if text.strip() else ())


def read_beir(folder: Path, *, qrels_split: str = "test", name: str | None = None) -> BeirSet:
    """The set in ``folder``; ``name`` (default: the folder's name) prefixes every source."""
    folder = Path(folder)
    name = name or folder.name
    documents = tuple(_document(name, row) for row in _jsonl(folder / "corpus.jsonl"))
    known = {document.source for document in documents}
    qrels_path = folder / "qrels" / f"{qrels_split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise BeirFormatError(f"{qrels_path} is missing; this set has qrels for: {', '.join(available) or 'nothing'}")
    relevant: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        next(rows, None)  # header
        for row in rows:
            if len(row) >= 3 and int(row[2]) > 0 and f"{name}/{row[1]}" in known:
                relevant.setdefault(row[0], {})[f"{name}/{row[1]}"] = int(row[2])
    queries = tuple(
        BeirQuery(str(row["_id"]), row["text"], relevant[str(row["_id"])])
        for row in _jsonl(folder / "queries.jsonl")
        if str(row["_id"]) in relevant
    )
    return BeirSet(name=name, documents=documents, queries=queries)
