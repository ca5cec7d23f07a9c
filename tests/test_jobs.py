"""Ingest jobs: stored and run again after a restart, cancellable, one queue per collection, a cap on
passages per file. Real ingests into real collections; where a job must be caught mid-way, its run is
held on an event (the one fake: a real ingest does not pause on demand)."""

from __future__ import annotations

import threading
import time

import pytest

from team.collections import Library
from team.jobs import IngestJobs


def _library(make_pipeline, tmp_path) -> Library:
    return Library(make_pipeline(second_embedder="none"))


def _upload(library: Library, name: str, count: int) -> tuple[str, ...]:
    if not library.exists(name):
        library.create(name)
    return library.save_uploads(name, [(f"{name}-{n}.md", f"# Part {n}\n\nValve {n} of {name} opens at {n} bar.\n".encode())
                                       for n in range(count)])


def _held(library: Library, hold: set[str], gate: threading.Event, started: threading.Event):
    """Runs jobs as the server does; a job of a collection in ``hold`` waits for ``gate`` once it has started."""
    def run(job, progress):
        if job.collection in hold:
            started.set()
            if not gate.wait(120):  # abandoned (the "crashed" process of a test): never runs
                raise RuntimeError("held job abandoned")
        return library.run_job(job, progress)
    return run


def test_a_collections_upload_does_not_wait_behind_anothers_ingest(make_pipeline, tmp_path):
    library = _library(make_pipeline, tmp_path)
    gate, started = threading.Event(), threading.Event()
    jobs = IngestJobs(_held(library, {"big"}, gate, started), store=tmp_path / "jobs.sqlite3")
    big = jobs.submit("big", "upload", _upload(library, "big", 2), "alice")
    assert started.wait(60)
    small = jobs.submit("small", "upload", _upload(library, "small", 1), "bob")
    assert jobs.wait(small.id, timeout=300).status == "done"
    assert jobs.get(big.id).status == "running"  # still held: the small one did not wait for it
    gate.set()
    assert jobs.wait(big.id, timeout=300).status == "done"
    assert sorted(library.pipeline("big").status().files) == ["big-0.md", "big-1.md"]


def test_a_queued_job_is_cancelled_at_once_and_a_running_one_before_its_next_file(make_pipeline, tmp_path):
    library = _library(make_pipeline, tmp_path)
    gate, started = threading.Event(), threading.Event()
    jobs = IngestJobs(_held(library, {"docs"}, gate, started))
    first = jobs.submit("docs", "upload", _upload(library, "docs", 1), "alice")
    assert started.wait(60)
    queued = jobs.submit("docs", "upload", ("docs-0.md",), "alice")
    assert jobs.cancel(queued.id).status == "cancelled"
    gate.set()
    assert jobs.wait(first.id, timeout=300).status == "done"
    assert jobs.get(queued.id).status == "cancelled" and jobs.get(queued.id).files_done == 0

    # Running: the job is cancelled at its first file; the files before that point stay indexed and the
    # collection is not left locked: the next job indexes everything.
    reached, go_on = threading.Event(), threading.Event()

    def run(job, progress):
        def watched(state):
            if state.current is not None and not reached.is_set():
                reached.set()
                go_on.wait(120)
            progress(state)
        return library.run_job(job, watched)

    jobs = IngestJobs(run)
    sources = _upload(library, "docs", 4)
    running = jobs.submit("docs", "upload", sources, "alice")
    assert reached.wait(120)
    jobs.cancel(running.id)
    go_on.set()
    stopped = jobs.wait(running.id, timeout=300)
    assert stopped.status == "cancelled" and "stay indexed" in stopped.error
    assert len(library.pipeline("docs").status().files) < 4
    again = jobs.submit("docs", "upload", sources, "alice")
    assert jobs.wait(again.id, timeout=300).status == "done"
    assert len(library.pipeline("docs").status().files) == 4


def test_after_a_crash_the_stored_jobs_run_again_and_say_so(make_pipeline, tmp_path):
    library = _library(make_pipeline, tmp_path)
    store = tmp_path / "jobs.sqlite3"
    gate, started = threading.Event(), threading.Event()  # never set: this "process" dies holding its job
    crashed = IngestJobs(_held(library, {"docs"}, gate, started), store=store)
    running = crashed.submit("docs", "upload", _upload(library, "docs", 2), "alice")
    assert started.wait(60)
    queued = crashed.submit("docs", "reindex", ("docs-0.md",), "alice")
    crashed.close()

    restarted = IngestJobs(library.run_job, store=store)
    for job in (running, queued):
        done = restarted.wait(job.id, timeout=300)
        assert done.status == "done" and done.resumed, done
    assert sorted(library.pipeline("docs").status().files) == ["docs-0.md", "docs-1.md"]
    assert IngestJobs(library.run_job, store=store).get(running.id).summary  # finished jobs are kept too
    assert (store.stat().st_mode & 0o777) == 0o600


def test_a_file_that_would_make_too_many_passages_is_refused_before_embedding(make_pipeline, tmp_path):
    library = Library(make_pipeline(second_embedder="none", max_file_passages=5, chunk_tokens=32, chunk_overlap=0))
    library.create("docs")
    long_text = "# Long\n\n" + " ".join(f"Sentence {n} says the valve opens at {n} bar." for n in range(200))
    saved = library.save_uploads("docs", [("long.md", long_text.encode()), ("short.md", b"# Short\n\nOne line.\n")])
    report = library.ingest_uploads("docs", saved)
    assert report.added == ("short.md",)
    [failure] = report.failed
    assert failure.source == "long.md" and "KB_MAX_FILE_PASSAGES=5" in failure.reason and "passages" in failure.reason


@pytest.mark.parametrize("status", ["done"])
def test_cancelling_a_finished_job_changes_nothing(make_pipeline, tmp_path, status):
    library = _library(make_pipeline, tmp_path)
    jobs = IngestJobs(library.run_job)
    job = jobs.submit("docs", "upload", _upload(library, "docs", 1), "alice")
    assert jobs.wait(job.id, timeout=300).status == status
    assert jobs.cancel(job.id).status == status


def test_kill_9_of_the_server_mid_job_then_a_restart_finishes_the_job(tmp_path):
    """Issue 23: after `kill -9` and a restart the jobs were gone (404) and the uploaded files sat on disk,
    neither indexed nor listed as failures."""
    import os
    import signal

    import httpx

    from tests.server_helpers import start_server, wait_for_job

    home = tmp_path / "home"
    # Enough work that the job is still running when the server is killed (its state is polled every 0.1 s).
    files = [("files", (f"part-{n:02d}.md", ("# Part %d\n\n" % n + " ".join(
        f"Valve {n}-{m} opens at {m} bar and closes at {m + 3} bar." for m in range(40))).encode()))
        for n in range(12)]
    server = start_server(home, tmp_path / "serve-1.log", KB_SECOND_EMBEDDER="none")
    try:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            assert client.post("/v1/collections", json={"name": "docs"}).status_code == 201
            job = client.post("/v1/collections/docs/documents", files=files).json()
            for _ in range(600):
                state = client.get(f"/v1/jobs/{job['id']}").json()
                if state["status"] != "queued":
                    break
                time.sleep(0.1)
            assert state["status"] == "running", state
    finally:
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)

    server = start_server(home, tmp_path / "serve-2.log", KB_SECOND_EMBEDDER="none")
    try:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            done = wait_for_job(client, job)
            assert done["status"] == "done" and done["resumed"], done
            listed = client.get("/v1/collections/docs/documents").json()
            assert len(listed) == 12 and not any(d["failure"] for d in listed)
    finally:
        server.stop()
