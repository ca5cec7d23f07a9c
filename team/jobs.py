"""Ingest jobs in the background: stored, resumed after a restart, cancellable, one queue per collection.

An upload returns at once with a job; the job brings the collection in step with its uploads folder
while the caller polls it (files done of total, the file being read, failures so far). Each collection
has its own queue and worker thread: an upload to one collection never waits behind another's ingest,
while two jobs of one collection run one after the other (they would fight over its write lock; the
second finds the first's files unchanged).

Jobs are stored (``<home>/jobs.sqlite3``, written at every change of state and after every file): a
server killed mid-job finds its queued and running jobs on start and runs them again, marked
``resumed`` — the files were saved before the job was queued, the index keeps what was saved, so
running again finishes the work rather than repeating it. A job whose collection is gone by then
fails with the reason.

Cancelling: a queued job is dropped at once; a running one stops before its next file (the files
indexed so far stay indexed; the rest stay uploaded and are listed with the reason by the caller).
A file being embedded is not interrupted: the cap on a file's passages (``KB_MAX_FILE_PASSAGES``,
``app.indexing``) keeps any one file's time bounded.

Worked example::

    jobs = IngestJobs(run=lambda job, progress: library.ingest_uploads(job.collection, job.sources, progress),
                      store=home / "jobs.sqlite3")
    job = jobs.submit("handbook", "upload", ("leave.pdf",), "alice")
    jobs.wait(job.id, timeout=600).status        # "done"

Deliberately not here: what an ingest does (``team.collections``, ``app.pipeline``), who may see or
cancel a job (``team.permissions``), sharing the cores with answering (the ingest's own settings).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from app.results import IngestProgress, IngestReport
from core.errors import KbError
from core.types import FileFailure
from team.sqlite_file import SQLiteFile

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: tuple[JobStatus, ...] = ("done", "failed", "cancelled")
KEEP_FINISHED = 500  # finished jobs remembered for polling; older ones are forgotten

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, collection TEXT NOT NULL, kind TEXT NOT NULL, requested_by TEXT NOT NULL,
    sources TEXT NOT NULL, status TEXT NOT NULL, files_done INTEGER NOT NULL, files_total INTEGER NOT NULL,
    current TEXT, failures TEXT NOT NULL, summary TEXT, error TEXT, created REAL NOT NULL, finished REAL,
    resumed INTEGER NOT NULL
);
"""
SCHEMA_VERSION = 1


class JobCancelled(KbError):
    """Raised inside a running job's progress callback once it was cancelled: the ingest stops there."""


@dataclass(frozen=True)
class Job:
    """A snapshot of one ingest job."""

    id: str
    collection: str
    kind: str  # "upload", "reindex", "ingest"
    requested_by: str
    sources: tuple[str, ...] = ()  # the files it was asked to index
    status: JobStatus = "queued"
    files_done: int = 0
    files_total: int = 0
    current: str | None = None
    failures: tuple[FileFailure, ...] = ()
    report: IngestReport | None = None  # only in the process that ran it
    summary: str | None = None  # the finished ingest's report in one paragraph (kept across restarts)
    error: str | None = None  # why the job as a whole failed or stopped
    created: float = field(default_factory=time.time)
    finished: float | None = None
    resumed: bool = False  # queued or running when the service stopped, run again after its restart


JobRun = Callable[[Job, Callable[[IngestProgress], None]], IngestReport]


class IngestJobs:
    """Runs ingest jobs on one background thread per collection; ``store`` keeps them across restarts."""

    def __init__(self, run: JobRun, store: Path | None = None) -> None:
        self._run_job = run
        self._db = SQLiteFile(store, SCHEMA, SCHEMA_VERSION) if store is not None else None
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pending: dict[str, deque[str]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._cancelled: set[str] = set()
        self._closed = False
        for job in self._stored_unfinished():  # a restart: run again what was queued or running
            self._jobs[job.id] = replace(job, status="queued", current=None, resumed=True)
            self._save(self._jobs[job.id])
            self._enqueue(job.id)

    # ----- asking ----------------------------------------------------------------
    def submit(self, collection: str, kind: str, sources: tuple[str, ...], requested_by: str) -> Job:
        job = Job(id=f"job-{uuid.uuid4().hex[:16]}", collection=collection, kind=kind, requested_by=requested_by,
                  sources=tuple(sources))
        with self._lock:
            self._jobs[job.id] = job
        self._save(job)
        self._enqueue(job.id)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None else self._stored(job_id)

    def list(self, collection: str | None = None) -> list[Job]:
        with self._lock:
            return sorted((job for job in self._jobs.values() if collection is None or job.collection == collection),
                          key=lambda job: job.created)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job at once, a running one before its next file; a finished job stays as it was."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status in FINISHED:
                return job
            if job.status == "queued":
                queue = self._pending.get(job.collection)
                if queue is not None and job_id in queue:
                    queue.remove(job_id)
                job = self._jobs[job_id] = replace(job, status="cancelled", error="cancelled before it started",
                                                   finished=time.time())
            else:
                self._cancelled.add(job_id)
        self._save(job)
        return job

    def wait(self, job_id: str, timeout: float) -> Job | None:
        """The job once finished, or as it is after ``timeout`` seconds (tests, the CLI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job is None or job.status in FINISHED:
                return job
            time.sleep(0.1)
        return self.get(job_id)

    def close(self) -> None:
        """Start no further job; running ones finish (queued ones stay stored, and run after a restart)."""
        with self._lock:
            self._closed = True

    # ----- running ---------------------------------------------------------------
    def _enqueue(self, job_id: str) -> None:
        with self._lock:
            collection = self._jobs[job_id].collection
            self._pending.setdefault(collection, deque()).append(job_id)
            worker = self._workers.get(collection)
            if worker is None or not worker.is_alive():
                worker = threading.Thread(target=self._work, args=(collection,), name=f"ingest-{collection}",
                                          daemon=True)
                self._workers[collection] = worker
                worker.start()

    def _next(self, collection: str) -> str | None:
        with self._lock:
            queue = self._pending.get(collection)
            if self._closed or not queue:
                self._workers.pop(collection, None)  # under the lock: a submit now starts a new worker
                self._pending.pop(collection, None)
                return None
            return queue.popleft()

    def _work(self, collection: str) -> None:
        while (job_id := self._next(collection)) is not None:
            self._update(job_id, status="running")

            def progress(state: IngestProgress, job_id: str = job_id) -> None:
                if job_id in self._cancelled:
                    raise JobCancelled("cancelled")
                self._update(job_id, files_done=state.files_done, files_total=state.files_total,
                             current=state.current, failures=state.failed)

            try:
                report = self._run_job(self.get(job_id), progress)
            except JobCancelled:
                self._update(job_id, status="cancelled", current=None, finished=time.time(),
                             error="cancelled while running: the files indexed before it stopped stay indexed")
            except Exception as exc:  # noqa: BLE001 - the job reports it; the worker must go on
                traceback.print_exc()
                self._update(job_id, status="failed", error=str(exc) or type(exc).__name__, current=None,
                             finished=time.time())
            else:
                done = len(report.added) + len(report.updated) + len(report.failed)
                self._update(job_id, status="done", report=report, summary=report.summary(), failures=report.failed,
                             current=None, files_done=done, files_total=done, finished=time.time())
            finally:
                self._cancelled.discard(job_id)
            self._forget_old()

    def _update(self, job_id: str, **changes: object) -> None:
        with self._lock:
            job = self._jobs[job_id] = replace(self._jobs[job_id], **changes)
        self._save(job)

    def _forget_old(self) -> None:
        with self._lock:
            finished = sorted((job for job in self._jobs.values() if job.finished is not None),
                              key=lambda job: job.finished or 0)[:-KEEP_FINISHED]
            for job in finished:
                del self._jobs[job.id]
        if self._db is not None and finished:
            with self._db.transaction() as db:
                db.executemany("DELETE FROM jobs WHERE id = ?", [(job.id,) for job in finished])

    # ----- storing ---------------------------------------------------------------
    def _save(self, job: Job) -> None:
        if self._db is None:
            return
        row = (job.id, job.collection, job.kind, job.requested_by, json.dumps(list(job.sources)), job.status,
               job.files_done, job.files_total, job.current,
               json.dumps([[f.source, f.reason] for f in job.failures]), job.summary, job.error, job.created,
               job.finished, int(job.resumed))
        with self._db.transaction() as db:
            db.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def _stored(self, job_id: str) -> Job | None:
        if self._db is None:
            return None
        with self._db.transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def _stored_unfinished(self) -> list[Job]:
        if self._db is None:
            return []
        with self._db.transaction() as db:
            rows = db.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY created").fetchall()
            finished = db.execute("SELECT * FROM jobs WHERE status NOT IN ('queued', 'running') "
                                  "ORDER BY finished DESC LIMIT ?", (KEEP_FINISHED,)).fetchall()
        self._jobs.update({row[0]: _job(row) for row in finished})
        return [_job(row) for row in rows]


def _job(row: tuple) -> Job:
    (job_id, collection, kind, requested_by, sources, status, files_done, files_total, current, failures, summary,
     error, created, finished, resumed) = row
    return Job(id=job_id, collection=collection, kind=kind, requested_by=requested_by, sources=tuple(json.loads(sources)),
               status=status, files_done=files_done, files_total=files_total, current=current,
               failures=tuple(FileFailure(source, reason) for source, reason in json.loads(failures)),
               summary=summary, error=error, created=created, finished=finished, resumed=bool(resumed))
