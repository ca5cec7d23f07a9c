"""One SQLite file with a versioned schema: the accounts' and the conversations' storage.

``SQLiteFile.transaction()`` opens a connection with foreign keys on, creates
the schema on first use (``CREATE … IF NOT EXISTS``), records its version in a
``meta`` table and refuses a file written by a newer version; the block runs as
one transaction, committed at its end, rolled back on an exception. A
connection per block keeps the file safe to use from the web server's threads
and from several processes (WAL journal; writers wait up to 30 s).

The files hold secrets (password and key hashes, sessions, the audit log, every
question and answer): the file is created 0600 before SQLite opens it (SQLite
gives its -wal and -shm files the same mode) and a file or folder from an older
version is tightened when opened; its folder is made 0700 (``private_folder``,
which the collections' upload folders use too).

Deliberately not here: upgrading an older schema in place (there is none older
yet: the first change to a table adds its step here), the tables themselves.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import KbError


class NewerSchemaError(KbError):
    """The file was written by a newer kbqa."""


def private_folder(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700): created so (with any missing parents), or tightened."""
    path = Path(path)
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):  # mkdir(parents=True) would give the parents the umask's mode
        folder.mkdir(mode=0o700, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        try:
            path.chmod(0o700)
        except PermissionError:  # somebody else's folder (e.g. KB_HOME=/srv): the files in it are still 0600
            pass
    return path


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it is missing; make it 0600 if it is not."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)


class SQLiteFile:
    def __init__(self, path: Path, schema: str, version: int) -> None:
        self.path = Path(path)
        self._schema = schema
        self._version = version
        self._ready = False

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:  # once per object: the modes are set before the first connection makes the files
            private_folder(self.path.parent)
            for path in (self.path, self.path.with_name(self.path.name + "-wal"),
                         self.path.with_name(self.path.name + "-shm")):
                if path == self.path or path.exists():
                    private_file(path)
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
