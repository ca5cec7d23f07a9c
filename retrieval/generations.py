"""Crash-safe saves: a collection folder holds numbered generations and a ``CURRENT`` pointer.

A save writes a whole new generation folder (under a hidden staging name),
flushes it to disk, renames it into place, then points ``CURRENT`` at it with
an atomic rename: the commit point. A crash at any moment leaves ``CURRENT``
naming a complete generation, so readers (the UI) see the old or the new
collection, never a half-written one. The previous generation is kept until
the next save, for a reader that is still loading it; older ones and staging
leftovers of a crashed save are removed.

Worked example::

    name = write_generation(folder, write_files, previous="gen-000006")   -> "gen-000007"
    current_generation(folder)                                            -> "gen-000007"

Deliberately not here: what a generation holds (``retrieval.store`` writes its
files), locking out a second writer (``retrieval.store.WriteLock``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

GENERATION = re.compile(r"^gen-(\d{6})$")


def current_generation(folder: Path) -> str | None:
    """The live generation's name, cheap enough to poll before every query."""
    try:
        return (Path(folder) / "CURRENT").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def write_generation(folder: Path, write_files: Callable[[Path], None], previous: str | None) -> str:
    """Write a new generation with ``write_files(staging_folder)`` and make it live; returns its name.

    ``previous`` (the generation the writer had open) is kept besides the new one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(int(m.group(1)) for m in map(GENERATION.match, os.listdir(folder)) if m)
    name = f"gen-{(existing[-1] + 1 if existing else 1):06d}"
    staging = folder / f".staging-{name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    write_files(staging)
    _fsync_tree(staging)
    os.rename(staging, folder / name)
    pointer = folder / f".CURRENT.{os.getpid()}"
    pointer.write_text(name, encoding="utf-8")
    _fsync_file(pointer)
    os.replace(pointer, folder / "CURRENT")  # the commit point
    _fsync_dir(folder)
    _remove_old_generations(folder, keep={name, previous})
    return name


def _remove_old_generations(folder: Path, keep: set[str | None]) -> None:
    for entry in os.listdir(folder):
        if (GENERATION.match(entry) and entry not in keep) or entry.startswith(".staging-"):
            shutil.rmtree(folder / entry, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        _fsync_file(path)
    _fsync_dir(folder)
