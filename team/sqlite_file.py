"""One SQLite file with a versioned schema: the accounts' and the conversations' storage.

``SQLiteFile.transaction()`` opens a connection with foreign keys on, creates
the schema on first use (``CREATE … IF NOT EXISTS``), records its version in a
``meta`` table and refuses a file written by a newer version; the block runs as
one transaction, committed at its end, rolled back on an exception. A
connection per block keeps the file safe to use from the web server's threads
and from several processes (WAL journal; writers wait up to 30 s).

Deliberately not here: upgrading an older schema in place (there is none older
yet: the first change to a table adds its step here), the tables themselves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import KbError


class NewerSchemaError(KbError):
    """The file was written by a newer kbqa."""


class SQLiteFile:
    def __init__(self, path: Path, schema: str, version: int) -> None:
        self.path = Path(path)
        self._schema = schema
        self._version = version
        self._ready = False

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            if not self._ready:
                self._create(db)
            with db:
                yield db
        finally:
            db.close()

    def _create(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);" + self._schema)
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row and int(row[0]) > self._version:
            raise NewerSchemaError(f"{self.path} was written by a newer kbqa (schema {row[0]} > {self._version})")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(self._version),))
        db.commit()
        self._ready = True
