"""The files the product stores for a collection, and only those: saved, recorded, deleted.

Files uploaded to collection ``name`` (through the API or the web UI) live in
``<home>/documents/<name>/``, a private folder (0700) under the home, for every
collection, the configured one included: never in ``KB_DOCUMENTS_DIR`` or any
other folder of the user's own. Each name is recorded in that folder's
``.uploads.json`` before its file is written, so deleting a document or the
collection removes exactly what was uploaded, and leaves alone a file put in
the folder by hand, a subfolder, and every folder ``kb ingest`` indexed in place.
The record is changed under a file lock: ``kb serve`` and ``kb ui`` may upload
to one collection at once.

Files uploaded before this record existed are not in it, so they are kept on a
delete: a file the product cannot tell from one put there by hand is never deleted.

Deliberately not here: indexing the files and the failures file (``team.collections``),
which names are acceptable (``app.indexing.check_upload_name``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from filelock import FileLock

from app.indexing import check_upload_name, save_uploads
from app.settings import Settings
from team.sqlite_file import private_folder

RECORD_FILE = ".uploads.json"
RECORD_FORMAT = 1
_LOCK_FILE = ".uploads.lock"


def uploads_dir(settings: Settings, name: str) -> Path:
    """Where the product keeps the files uploaded to collection ``name``."""
    return settings.home / "documents" / name


def save(folder: Path, files: Sequence[tuple[str, bytes]]) -> tuple[str, ...]:
    """Write uploaded ``(name, bytes)`` into ``folder`` and record them; every name is checked before anything is written."""
    names = tuple(check_upload_name(name) for name, _ in files)  # UnsafeFileNameError: nothing written
    private_folder(folder.parent)
    private_folder(folder)
    with FileLock(folder / _LOCK_FILE):
        # Recorded first: a crash between the two leaves a name without a file (harmless on a delete),
        # never a file of ours the record does not know (which a delete would leave behind).
        _write(folder, recorded(folder) | set(names))
        save_uploads(folder, [(name, data) for name, (_, data) in zip(names, files)])
    return names


def recorded(folder: Path) -> set[str]:
    """The names uploaded into ``folder`` and not deleted since."""
    try:
        stored = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()  # none yet (or unreadable: then nothing is deleted, which is the safe side)
    return set(stored.get("files", [])) if stored.get("format") == RECORD_FORMAT else set()


def remove(folder: Path, source: str) -> bool:
    """Delete the uploaded file ``source`` and its record; False (nothing touched) when it is not one the product stored."""
    if not folder.is_dir():
        return False
    with FileLock(folder / _LOCK_FILE):
        names = recorded(folder)
        if source not in names:
            return False
        _unlink(folder, [source])
        _write(folder, names - {source})
    return True


def remove_all(folder: Path, own_files: Iterable[str] = ()) -> None:
    """Delete every recorded upload, the record and the product's ``own_files`` (e.g. the failures file);
    the folder too when nothing else is left in it."""
    if not folder.is_dir():
        return
    with FileLock(folder / _LOCK_FILE):
        names = recorded(folder)
        _unlink(folder, [*names, *(f".{name}.partial" for name in names), *own_files, RECORD_FILE])
    (folder / _LOCK_FILE).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # files of somebody's own are left, and so is the folder holding them
        pass


def _unlink(folder: Path, names: Iterable[str]) -> None:
    for name in names:
        path = folder / name
        if path.parent == folder and path.is_file() and not path.is_symlink():  # recorded names are plain names
            path.unlink()


def _write(folder: Path, names: set[str]) -> None:
    partial = folder / (RECORD_FILE + ".partial")
    partial.write_text(json.dumps({"format": RECORD_FORMAT, "files": sorted(names)}, ensure_ascii=False),
                       encoding="utf-8")
    partial.replace(folder / RECORD_FILE)
