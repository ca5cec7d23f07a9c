"""The rows a Milvus-stored knowledge base writes and reads: passages, document rows, the header's parts.

A passage row holds the chunk (its text, place and header), the document's record as scalar fields (so
that a Milvus filter can ask for a period or an organisation), its keyword tokens as written for the BM25
function, and its vector. A document row of the meta collection holds a JSON payload: its state
(``writing`` while a batch is under way, with the id ranges it may have written; ``done`` after), hash,
chunk id range, pages, reader version, keyword token count, record, and its term counts (in how many of its
passages each keyword occurs: the collection's document frequencies are their sum), inline or, for a
document too large for one row, in ``terms:`` rows (``term_rows``).

Deliberately not here: talking to Milvus (``retrieval.milvus_client``), when rows are written
(``retrieval.milvus_store``).
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from core.types import Chunk
from retrieval.embedders import EmbedderIdentity
from retrieval.manifest import IndexedFile, StoreError
from retrieval.milvus_client import MAX_TEXT, keyword_field_token
from text.documents import DocumentRecord
from text.keywords import keyword_tokens

RECORD_FIELDS = ("title", "organisation", "year", "quarter", "period_end", "version", "published")
INLINE_TERMS = 40_000  # bytes of term counts kept in the document row; more go to rows of their own


@dataclass(frozen=True)
class PassageRow:
    """A passage as read back from Milvus."""

    chunk: Chunk
    counts: Counter  # its keyword tokens (as written in the ``keywords`` field) and how often each occurs
    vector: np.ndarray


@dataclass(frozen=True)
class StoredDocument:
    """What the meta collection keeps of one document."""

    file: IndexedFile  # chunk_ids is a range: a file's passages get consecutive ids
    record: DocumentRecord | None
    tokens: int  # keyword tokens of all its passages (the BM25 average length)
    term_rows: int = 0  # ``terms:`` rows holding its term counts (0: inline in its row)
    terms: Counter | None = None  # its term counts, while it waits to be written (not kept after)


def milvus_name(collection: str) -> str:
    """A fresh Milvus collection name for a knowledge base: readable, and new after a delete and re-create."""
    return f"kb_{re.sub(r'[^A-Za-z0-9_]', '_', collection)[:64]}_{secrets.token_hex(4)}"


def second_tag(identity: EmbedderIdentity, fingerprint: str | None = None) -> str:
    """What ``second_of`` says of a second-embedder vector: the model that made it."""
    return f"{identity.name}|{fingerprint or identity.fingerprint}"[:256]


def passage_row(chunk_id: int, chunk: Chunk, vector: np.ndarray, record: DocumentRecord | None) -> dict:
    """The row of one passage."""
    row = {"id": chunk_id, "document": chunk.source, "page": chunk.page,
           "heading_path": json.dumps(list(chunk.heading_path), ensure_ascii=False),
           "start_char": chunk.start_char, "end_char": chunk.end_char, "ocr": chunk.ocr, "header": chunk.header,
           "text": chunk.text, "vector": np.asarray(vector, dtype=np.float32).tolist(),
           "keywords": " ".join(keyword_field_token(t) for t in keyword_tokens(chunk.embedding_text))}
    for field in ("document", "heading_path", "header", "text", "keywords"):
        if len(row[field].encode("utf-8")) > MAX_TEXT:
            raise StoreError(f"{chunk.source}: a passage's {field} is longer than Milvus allows ({MAX_TEXT} "
                             "bytes); ingest with a smaller KB_CHUNK_TOKENS")
    described = asdict(record) if record is not None else {}
    row["title"] = described.get("title") or ""
    row.update({field: described.get(field) for field in RECORD_FIELDS if field != "title"})
    return row


def passage_from_row(row: dict) -> PassageRow:
    chunk = Chunk(row["document"], row["page"], tuple(json.loads(row["heading_path"])), row["start_char"],
                  row["end_char"], row["text"], bool(row["ocr"]), row["header"])
    return PassageRow(chunk, Counter(row["keywords"].split()), np.asarray(row["vector"], dtype=np.float32))


def document_terms(rows: list[dict]) -> Counter:
    """In how many of these passages each keyword occurs."""
    return Counter(term for row in rows for term in set(row["keywords"].split()))


def term_parts(terms: Counter) -> list[str]:
    """The term counts as JSON texts, one per row: a single one when it fits in the document row."""
    text = json.dumps(terms, ensure_ascii=False)
    if len(text.encode("utf-8")) <= INLINE_TERMS:
        return [text]
    items, parts, size, part = sorted(terms.items()), [], 0, {}
    for term, count in items:
        size += len(term.encode("utf-8")) + 12
        part[term] = count
        if size > INLINE_TERMS:
            parts.append(json.dumps(part, ensure_ascii=False))
            part, size = {}, 0
    return parts + ([json.dumps(part, ensure_ascii=False)] if part else [])


def describe_document(document: StoredDocument, parts: list[str]) -> dict:
    """The payload of a finished document row; ``parts``: ``term_parts`` of its terms."""
    ids = document.file.chunk_ids
    payload = {"state": "done", "content_sha256": document.file.content_sha256, "chunk_ids": [ids.start, ids.stop],
               "pages": document.file.pages, "reader_version": document.file.reader_version,
               "tokens": document.tokens, "record": asdict(document.record) if document.record else None}
    if len(parts) == 1:
        payload["terms"] = json.loads(parts[0])
    else:
        payload["term_rows"] = len(parts)
    return payload


def term_row_keys(source: str, count: int) -> list[str]:
    return [f"terms:{source}:{n}" for n in range(count)]


def document_from_payload(source: str, payload: dict) -> StoredDocument:
    start, end = payload["chunk_ids"]
    record = DocumentRecord.from_dict(payload["record"]) if payload.get("record") else None
    return StoredDocument(IndexedFile(source, payload["content_sha256"], range(start, end), payload["pages"],
                                      payload.get("reader_version", 1)), record, int(payload["tokens"]),
                          int(payload.get("term_rows", 0)))


def meta_row(key: str, kind: str, payload: dict) -> dict:
    """A row of the meta collection (its vector field is never searched: Milvus wants one in every collection)."""
    return {"key": key, "kind": kind, "payload": json.dumps(payload, ensure_ascii=False), "unused": [0.0, 0.0]}
