"""Run file loading in a worker process, with a time limit per file; the only module that imports pebble.

Why a separate process:

- A hostile or broken PDF can make a parser loop for minutes or exhaust
  memory. A thread cannot be stopped; a process can. After ``timeout_seconds``
  the worker is killed (pebble starts a fresh one) and the file is reported as
  "took longer than …", and the ingest goes on.
- A parser crash (segfault in a native library, out of memory) kills only the
  worker, and the file is reported as such.
- Loading the next files overlaps with embedding the current one, so on two
  cores parsing and OCR cost little wall time; with more cores several workers
  read files at once, so a fast embedder (a GPU) does not wait for the parser.

The worker is started with "spawn": forking a process that already runs
OpenMP and BLAS thread pools can deadlock the child.

Deliberately not here: memory limits per worker, choosing the number of
workers (the caller's setting).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from pebble import ProcessExpired, ProcessPool

from core.types import LoadedFile
from ingest.loaders import LoadError, LoadOptions, load_file
from ingest.ocr import PageOCR

_worker_ocr: PageOCR | None = None
_worker_niced = False
WORKER_NICENESS = 10  # parsing gives way to answering questions: a question waits on the cores, a file can


def _load_in_worker(path: Path, source: str, options: LoadOptions) -> LoadedFile:
    global _worker_ocr, _worker_niced
    if not _worker_niced:
        try:
            os.nice(WORKER_NICENESS)
        except OSError:  # not allowed here: reading at normal priority still works
            pass
        _worker_niced = True
    if options.ocr and _worker_ocr is None:
        _worker_ocr = PageOCR()  # loaded once per worker, reused for every scanned page
    return load_file(path, source, options, _worker_ocr)


@dataclass
class PendingLoad:
    """A file being loaded in the worker; ``result()`` returns it or raises ``LoadError``."""

    source: str
    _future: object
    _timeout: float

    def result(self) -> LoadedFile:
        try:
            return self._future.result()
        except LoadError:
            raise
        except FutureTimeout:
            raise LoadError(
                f"took longer than {self._timeout:g} s to read (raise KB_FILE_TIMEOUT_SECONDS if it is just large)"
            ) from None
        except ProcessExpired as exc:
            raise LoadError(f"the parser crashed on this file (exit code {exc.exitcode})") from None
        except Exception as exc:  # any other parser bug stays this file's problem
            raise LoadError(f"unexpected parser error: {type(exc).__name__}: {exc}") from None


class IsolatedLoader:
    """``with IsolatedLoader(options, timeout) as loader: loader.submit(path, source).result()``."""

    def __init__(self, options: LoadOptions, timeout_seconds: float, workers: int = 1) -> None:
        self._options = options
        self._timeout = timeout_seconds
        self.workers = max(1, workers)
        self._pool: ProcessPool | None = None

    def __enter__(self) -> IsolatedLoader:
        self._pool = ProcessPool(max_workers=self.workers, context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.stop()  # kills a worker that may still be parsing
            self._pool.join()
            self._pool = None

    def submit(self, path: Path, source: str) -> PendingLoad:
        assert self._pool is not None, "use IsolatedLoader as a context manager"
        future = self._pool.schedule(_load_in_worker, args=(path, source, self._options), timeout=self._timeout)
        return PendingLoad(source=source, _future=future, _timeout=self._timeout)
