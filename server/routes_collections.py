"""REST routes for collections, documents, ingest jobs and search (passages without generation).

Uploads are saved under checked names into the collection's uploads folder under
the home, and recorded (``team.uploads``), before the route returns ``202`` with an
ingest job; the job indexes them in the background (``team.jobs``) and reports on
its own files only. A name with a folder in it, a NUL or another control character,
a bidirectional control, a leading dot or over 200 bytes is refused before anything
is written; the size limit (``KB_MAX_UPLOAD_MB``) is enforced on the request before
its body is read (``server.app``). Deleting a document or a collection removes only
the files that were uploaded.

Deliberately not here: who may do what (``team.permissions``), the pipeline's work.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, File, HTTPException, UploadFile
from pydantic import BaseModel, Field

from app.indexing import safe_document_path
from app.pipeline import SUPPORTED_SUFFIXES
from team.jobs import Job
from team.permissions import Action, Caller, Grant, check_create
from server.deps import CallerDep, Service, ServiceDep, permitted, readable, writable

router = APIRouter(prefix="/v1", tags=["collections"])


class CollectionOut(BaseModel):
    name: str
    access: Grant


class CollectionDetail(CollectionOut):
    documents: int
    chunks: int
    embedder: str
    embedder_runs_on: str = Field("", description="e.g. 'CPU, 2 threads (torch, float32)'.")
    reranker: str = ""
    generator: str = Field("", description="The language model answering every collection of this service.")
    generator_runs_on: str = ""
    generator_notice: str | None = Field(None, description="Something the operator should know about the generator "
                                                           "(e.g. a GPU this llama.cpp build cannot use, and the fix).")
    accepts: list[str] = Field(default_factory=list, description="File types an upload may hold: ['.pdf', '.md', …].")


class NewCollection(BaseModel):
    name: str = Field(description="1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.")


class DocumentOut(BaseModel):
    source: str
    title: str
    description: str
    pages: int
    chunks: int
    ocr_pages: int
    failure: str | None
    organisation: str = ""
    period: str = ""


class FailureOut(BaseModel):
    source: str
    reason: str


class JobOut(BaseModel):
    id: str
    collection: str
    kind: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    files_done: int
    files_total: int
    current: str | None
    failures: list[FailureOut]
    error: str | None
    summary: str | None = Field(None, description="The finished ingest's report in one paragraph.")
    sources: list[str] = Field(default_factory=list, description="The files the job was asked to index.")
    resumed: bool = Field(False, description="Queued or running when the service stopped; run again after its restart.")
    added: list[str] = Field(default_factory=list, description="Done: the files indexed for the first time (known "
                                                                 "while the service that ran the job is up).")
    updated: list[str] = Field(default_factory=list, description="Done: the files indexed again because they changed.")
    unchanged: list[str] = Field(default_factory=list, description="Done: the files that were indexed already.")
    collection_chunks: int | None = Field(None, description="Done: the passages the collection holds now.")
    warnings: list[FailureOut] = Field(default_factory=list, description="Done: files indexed with a problem "
                                       "(e.g. pages OCR could not read), known while the service that ran the job is up.")


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(5, ge=1, le=50)
    documents: list[str] | None = Field(None, description="Search only these documents.")


class SearchHit(BaseModel):
    rank: int
    source: str
    page: int | None
    section: str | None
    location: str
    passage: str
    score: float
    dense_score: float | None
    keyword_score: float | None


class SearchResult(BaseModel):
    scoped_to: list[str] = Field(description="The documents the question named, searched alone (empty: all).")
    hits: list[SearchHit]


def _job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id, collection=job.collection, kind=job.kind, status=job.status, files_done=job.files_done,
        files_total=job.files_total, current=job.current,
        failures=[FailureOut(source=f.source, reason=f.reason) for f in job.failures], error=job.error,
        summary=job.summary, sources=list(job.sources), resumed=job.resumed,
        **({"added": list(job.report.added), "updated": list(job.report.updated),
            "unchanged": list(job.report.unchanged), "collection_chunks": job.report.collection_chunks,
            "warnings": [FailureOut(source=w.source, reason=w.reason) for w in job.report.warnings]}
           if job.report is not None else {}),
    )


@router.get("/collections", response_model=list[CollectionOut], summary="The collections the caller may read")
def list_collections(service: ServiceDep, caller: CallerDep) -> list[CollectionOut]:
    return [CollectionOut(name=name, access=grant) for name in service.library.names()
            if (grant := caller.grant_on(name)) is not None]


@router.post("/collections", status_code=201, response_model=CollectionOut, summary="Create an empty collection (admins)")
def create_collection(body: NewCollection, service: ServiceDep, caller: CallerDep) -> CollectionOut:
    check_create(caller, body.name)
    service.library.create(body.name)
    service.audit(caller, "create collection", body.name)
    return CollectionOut(name=body.name, access="write")


@router.get("/collections/{name}", response_model=CollectionDetail)
def get_collection(name: str, service: ServiceDep, caller: CallerDep) -> CollectionDetail:
    pipeline = readable(service, caller, name)
    status = pipeline.status()
    base = service.library.base  # one generator for every collection, loaded at start
    info = base.generator_info
    return CollectionDetail(name=name, access=caller.grant_on(name) or "read", documents=len(status.files),
                            chunks=status.chunks, embedder=status.embedder, embedder_runs_on=status.embedder_runs_on,
                            reranker=pipeline.reranker.name, generator=info.model if info else "",
                            generator_runs_on=base.generator_runs_on, generator_notice=info.notice if info else None,
                            accepts=list(SUPPORTED_SUFFIXES))


@router.delete("/collections/{name}", status_code=204, summary="Delete a collection and its uploaded files (admins)")
def delete_collection(name: str, service: ServiceDep, caller: CallerDep) -> None:
    permitted(service, caller, Action.ADMINISTER, name)
    service.library.delete(name)
    service.audit(caller, "delete collection", name)


@router.get("/collections/{name}/documents", response_model=list[DocumentOut])
def list_documents(name: str, service: ServiceDep, caller: CallerDep) -> list[DocumentOut]:
    readable(service, caller, name)
    return [DocumentOut(**vars(document)) for document in service.library.documents(name)]


def _ingest_job(service: Service, name: str, kind: str, caller: Caller, sources: tuple[str, ...]) -> Job:
    """A background job bringing the collection in step with its uploads folder (``Library.run_job``); its
    report is about ``sources``, the files the request named, only."""
    return service.jobs.submit(name, kind, sources, caller.name)


@router.post("/collections/{name}/documents", status_code=202, response_model=JobOut,
             summary="Upload documents (PDF, Markdown, text, Word, HTML); they are indexed by a background job")
def upload_documents(name: str, service: ServiceDep, caller: CallerDep,
                     files: list[UploadFile] = File(description="One or more files.")) -> JobOut:
    writable(service, caller, name)
    saved = service.library.save_uploads(name, [(upload.filename or "", upload.file.read()) for upload in files])
    service.audit(caller, "upload", name, ", ".join(saved))
    return _job_out(_ingest_job(service, name, "upload", caller, saved))


@router.delete("/collections/{name}/documents/{source:path}", status_code=204)
def delete_document(name: str, source: str, service: ServiceDep, caller: CallerDep) -> None:
    writable(service, caller, name)
    if not service.library.delete_document(name, source):
        raise HTTPException(404, f"no document {source!r} in {name!r}")
    service.audit(caller, "delete document", name, source)


@router.post("/collections/{name}/documents/{source:path}/reindex", status_code=202, response_model=JobOut,
             summary="Read a document again (e.g. after changing OCR or password settings)")
def reindex_document(name: str, source: str, service: ServiceDep, caller: CallerDep) -> JobOut:
    writable(service, caller, name)
    if not safe_document_path(service.library.documents_dir(name), source, allow_subfolders=True).is_file():
        raise HTTPException(409, f"{source!r} is not among the files uploaded to {name!r}; upload it again")
    service.audit(caller, "reindex", name, source)
    return _job_out(_ingest_job(service, name, "reindex", caller, (source,)))


@router.get("/jobs/{job_id}", response_model=JobOut, summary="An ingest job's progress")
def get_job(job_id: str, service: ServiceDep, caller: CallerDep) -> JobOut:
    job = service.jobs.get(job_id)
    if job is None or not caller.may(Action.READ, job.collection):
        raise HTTPException(404, f"no job {job_id!r}")
    return _job_out(job)


@router.delete("/jobs/{job_id}", response_model=JobOut,
               summary="Cancel an ingest job: a queued one at once, a running one before its next file")
def cancel_job(job_id: str, service: ServiceDep, caller: CallerDep) -> JobOut:
    job = service.jobs.get(job_id)
    if job is None or not caller.may(Action.READ, job.collection):
        raise HTTPException(404, f"no job {job_id!r}")
    writable(service, caller, job.collection)  # the same right as uploading to the collection
    cancelled = service.jobs.cancel(job_id) or job
    service.audit(caller, "cancel job", job.collection, job_id)
    return _job_out(cancelled)


@router.get("/collections/{name}/jobs", response_model=list[JobOut])
def list_jobs(name: str, service: ServiceDep, caller: CallerDep) -> list[JobOut]:
    readable(service, caller, name)
    return [_job_out(job) for job in service.jobs.list(name)]


@router.post("/collections/{name}/search", response_model=SearchResult, summary="Passages for a question, no generation")
def search(name: str, body: SearchRequest, service: ServiceDep, caller: CallerDep) -> SearchResult:
    pipeline = readable(service, caller, name)
    retrieval = pipeline.retrieve(body.query, documents=body.documents or None)
    service.audit(caller, "search", name, body.query if service.accounts.audit_questions else "")
    return SearchResult(
        scoped_to=list(retrieval.scope.documents) if retrieval.scope.scoped and not body.documents else [],
        hits=[SearchHit(rank=rank, source=hit.chunk.source, page=hit.chunk.page,
                        section=" › ".join(hit.chunk.heading_path) or None, location=hit.chunk.location,
                        passage=hit.chunk.text, score=round(hit.score, 4),
                        dense_score=None if hit.dense_score is None else round(hit.dense_score, 4),
                        keyword_score=None if hit.keyword_score is None else round(hit.keyword_score, 4))
              for rank, hit in enumerate(retrieval.hits[: body.top_k], start=1)],
    )

