"""Which files of a folder are documents, and where an uploaded file may be stored under which name.

``find_documents`` walks a folder (symlinked folders once each); ``safe_document_path`` keeps a name inside
the documents folder; ``check_upload_name`` refuses what an API client may not upload under;
``save_uploads`` writes uploads atomically. ``app.indexing`` re-exports them (the server, the team domain and
the pipeline import them from there).

Deliberately not here: reading the files (``ingest.loaders``), indexing them (``app.indexing``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from core.errors import KbError
from ingest.loaders import SUPPORTED_SUFFIXES


class UnsafeFileNameError(KbError, ValueError):
    """A file name that would leave the documents folder or is not a supported document."""


def safe_document_path(folder: Path, name: str, *, allow_subfolders: bool = False) -> Path:
    """Where a document called ``name`` lives inside ``folder``; never outside it."""
    cleaned = name.replace("\\", "/").strip()
    if not allow_subfolders:
        cleaned = cleaned.rsplit("/", 1)[-1]
    parts = [part for part in cleaned.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." or part.startswith(".") for part in parts) or "\x00" in cleaned:
        raise UnsafeFileNameError(f"not an acceptable file name: {name!r}")
    if Path(parts[-1]).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise UnsafeFileNameError(f"{parts[-1]!r}: only {', '.join(SUPPORTED_SUFFIXES)} files can be added")
    root = folder.resolve()
    target = root.joinpath(*parts).resolve()
    if root not in target.parents:  # a symlink inside the folder could still point outside
        raise UnsafeFileNameError(f"{name!r} would be stored outside {folder}")
    return target


MAX_NAME_BYTES = 200  # file systems allow 255; the partial file's name adds a few


def check_upload_name(name: str) -> str:
    """``name`` when it is a plain file name a client may upload under; ``UnsafeFileNameError`` otherwise.

    Stricter than ``safe_document_path``, which reduces a path to its last part: an
    API client that sends ``../x.md`` or ``/etc/x.md`` is told no, not silently renamed.
    Control characters (C0, DEL, C1) and the bidirectional controls are refused: with
    U+202E "invoice\\u202efdp.md" is listed as "invoicedm.pdf".
    """
    bidirectional = {"\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
    if (not name or any(ch in name for ch in "/\\") or name.strip() != name
            or any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F or ch in bidirectional for ch in name)):
        raise UnsafeFileNameError(f"not an acceptable file name: {name!r} (a plain name, no folders or control characters)")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise UnsafeFileNameError(f"file name longer than {MAX_NAME_BYTES} bytes: {name[:40]!r}…")
    return safe_document_path(Path("."), name).name  # hidden names, '..', unsupported suffixes


def save_uploads(folder: Path, files: Sequence[tuple[str, bytes]]) -> None:
    """Write uploaded (name, bytes) into ``folder`` under safe names (``safe_document_path``).

    Each file is written under a hidden partial name and renamed into place, so an interrupted
    upload never leaves half a file under the real name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files:
        target = safe_document_path(folder, name)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(data)
        partial.replace(target)


def find_documents(folder: Path) -> list[Path]:
    """Supported files below ``folder`` in a stable order.

    Hidden files and folders are skipped; symlinked folders are followed (people
    link their document folders together), each real folder once, so a link loop
    cannot make the walk endless.
    """
    found = []
    seen: set[str] = set()
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirectories[:] = []
            continue
        seen.add(real)
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in files:
            path = Path(directory) / name
            if not name.startswith(".") and path.suffix.lower() in SUPPORTED_SUFFIXES and path.is_file():
                found.append(path)
    return sorted(found)
