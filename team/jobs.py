"""Ingest jobs in the background: one at a time, in the order they were asked for, each with its progress.

An upload returns at once with a job; the job brings the collection in step
with its documents folder while the caller polls it (files done of total, the
file being read, failures so far). One worker thread runs the jobs one after
another: an ingest already uses every core (parser workers, the embedder), and
two ingests of one collection would fight over its write lock. Two uploads to
one collection therefore both end up indexed, the second job finding the
first's files unchanged.

Jobs live in memory: a restarted server forgets them, but not their work (the
files were saved before the job was queued, the index is saved as it goes, and
the next ingest of the collection picks up what an interrupted one left).

Deliberately not here: what an ingest does (``app.pipeline``), cancelling a job
(an ingest stopped half-way keeps its work; nothing asked for it yet).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from app.results import IngestProgress, IngestReport
from core.types import FileFailure

JobStatus = Literal["queued", "running", "done", "failed"]
KEEP_FINISHED = 500  # finished jobs remembered for polling; older ones are forgotten


@dataclass(frozen=True)
class Job:
    """A snapshot of one ingest job."""

    id: str
    collection: str
    kind: str  # "upload", "reindex", "ingest"
    requested_by: str
    status: JobStatus = "queued"
    files_done: int = 0
    files_total: int = 0
    current: str | None = None
    failures: tuple[FileFailure, ...] = ()
    report: IngestReport | None = None
    error: str | None = None  # why the job as a whole failed (e.g. the collection was deleted meanwhile)
    created: float = field(default_factory=time.time)
    finished: float | None = None


IngestWork = Callable[[Callable[[IngestProgress], None]], IngestReport]


class IngestJobs:
    """Runs ingest work one job at a time on a background thread."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, IngestWork] | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._worker = threading.Thread(target=self._run, name="ingest-jobs", daemon=True)
        self._worker.start()

    def submit(self, collection: str, kind: str, work: IngestWork, requested_by: str) -> Job:
        with self._lock:
            job = Job(id=f"job-{next(self._ids)}-{int(time.time())}", collection=collection, kind=kind,
                      requested_by=requested_by)
            self._jobs[job.id] = job
        self._queue.put((job.id, work))
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self, collection: str | None = None) -> list[Job]:
        with self._lock:
            return [job for job in self._jobs.values() if collection is None or job.collection == collection]

    def wait(self, job_id: str, timeout: float) -> Job | None:
        """The job once finished, or as it is after ``timeout`` seconds (tests, the CLI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job is None or job.status in ("done", "failed"):
                return job
            time.sleep(0.1)
        return self.get(job_id)

    def close(self) -> None:
        """Stop after the running job; queued ones are not started."""
        self._queue.put(None)

    def _update(self, job_id: str, **changes: object) -> None:
        with self._lock:
            self._jobs[job_id] = replace(self._jobs[job_id], **changes)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            job_id, work = item
            self._update(job_id, status="running")

            def progress(state: IngestProgress, job_id: str = job_id) -> None:
                self._update(job_id, files_done=state.files_done, files_total=state.files_total,
                             current=state.current, failures=state.failed)

            try:
                report = work(progress)
            except Exception as exc:  # noqa: BLE001 - the job reports it; the worker must go on
                traceback.print_exc()
                self._update(job_id, status="failed", error=str(exc) or type(exc).__name__, current=None,
                             finished=time.time())
            else:
                self._update(job_id, status="done", report=report, failures=report.failed, current=None,
                             files_done=len(report.added) + len(report.updated) + len(report.failed),
                             files_total=len(report.added) + len(report.updated) + len(report.failed),
                             finished=time.time())
            self._forget_old()

    def _forget_old(self) -> None:
        with self._lock:
            finished = [job for job in self._jobs.values() if job.finished is not None]
            for job in sorted(finished, key=lambda job: job.finished or 0)[:-KEEP_FINISHED]:
                del self._jobs[job.id]
