"""The sidebar: which collection, its documents (upload, delete, search only some), the saved conversations.

Each panel asks the service (``client.service``) with the user's own session, so
the service decides what the user may do and records uploads and deletions in its
audit log; the page (``ui.streamlit_app``) only hides the buttons a user could
not use. An upload is saved by the service and indexed by one of its jobs; the
panel follows the job with a progress bar, and the report shown after it is about
its files only: success as success, each failure by file, no internal timings.
Delete buttons are icon-only "tertiary" buttons in a column wide enough for the
icon (a narrow bordered button clipped it at 1400x1100).

Deliberately not here: answers and their sources (``ui.rendering``), logging in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import streamlit as st

from client.service import ServiceClient
from client.types import CollectionInfo, DocumentInfo, JobState, ServiceError
from ui.document_view import show_passages

ROW = [0.82, 0.18]  # name | icon button
DOCUMENT_ROW = [0.64, 0.18, 0.18]  # name | passages | delete
JOB_POLL_SECONDS = 1.0


def collection_picker(names: Sequence[str], current: str) -> str:
    """The collection the user works in (a selector when there is more than one)."""
    if len(names) > 1:
        index = list(names).index(current) if current in names else 0
        return st.sidebar.selectbox("Collection", names, index=index, key="collection_picker")
    return names[0] if names else current


def documents_panel(service: ServiceClient, info: CollectionInfo, documents: Sequence[DocumentInfo],
                    may_write: bool) -> list[str]:
    """Upload and remove documents (with write access), open a document's passages; returns the documents to
    search (empty: all)."""
    st.sidebar.subheader("Documents")
    _show_last_upload()
    indexed = [document for document in documents if document.failure is None]
    if may_write:
        uploads = st.sidebar.file_uploader("Add PDF, Word, HTML, Markdown or text files",
                                           type=[suffix.lstrip(".") for suffix in info.accepts] or None,
                                           accept_multiple_files=True)
        if uploads and st.sidebar.button("Add to knowledge base", type="primary"):
            _add(service, info, [(upload.name, upload.getvalue()) for upload in uploads])
    described = {document.source: document.description for document in indexed}
    chosen = st.sidebar.multiselect(
        "Search only these documents", options=list(described), default=[],
        format_func=lambda source: described.get(source, source),
        help="Empty: every document. A question that names an organisation, a period or 'the latest' "
             "is searched in the documents it names by itself.",
    )
    for document in indexed:
        source = document.source
        name_column, passages_column, button_column = st.sidebar.columns(DOCUMENT_ROW, vertical_alignment="center")
        name_column.write(source)
        if document.organisation or document.period:
            name_column.caption(", ".join(part for part in (document.organisation, document.period) if part))
        if passages_column.button("", icon=":material/article:", type="tertiary", key=f"passages-{source}",
                                  help=f"The passages of {source}, as the index holds them"):
            show_passages(service, info.name, source)
        if may_write and button_column.button("", icon=":material/delete:", type="tertiary", key=f"delete-{source}",
                                              help=f"Remove {source} from the knowledge base"):
            try:
                service.delete_document(info.name, source)  # the file too, when it was uploaded
            except ServiceError as exc:
                st.sidebar.error(str(exc))
            else:
                st.rerun()
    return [source for source in chosen if source in described]


def _add(service: ServiceClient, info: CollectionInfo, files: list[tuple[str, bytes]]) -> None:
    """Upload, then follow the service's job with a progress bar per file indexed; failures listed by file."""
    bar = st.sidebar.progress(0.0, text="Saving…")
    try:
        if not info.exists:  # the configured collection, before its first document
            service.create_collection(info.name)
        job = service.upload(info.name, files)
        while not job.finished:
            share = job.files_done / job.files_total if job.files_total else 0.0
            current = f": {job.current}" if job.current else ""
            waiting = "waiting for the indexer" if job.status == "queued" else \
                f"{job.files_done} of {job.files_total} files indexed{current}"
            bar.progress(min(share, 1.0), text=waiting)
            time.sleep(JOB_POLL_SECONDS)
            job = service.job(job.id)
    except ServiceError as exc:  # a name that is refused, too large, a locked or broken index
        bar.empty()
        st.sidebar.error(str(exc))
        return
    # Drawn again so the counts and the list include the new files; the report is shown once after that.
    st.session_state["upload_report"] = job
    st.rerun()


def upload_summary(job: JobState) -> str | None:
    """What an upload did, for the user: the files indexed and what the collection holds now (no timings);
    None when none of its files could be used (the failures say why, one by one)."""
    parts = [f"{len(files)} {label}" for files, label in ((job.added, "added"), (job.updated, "updated"),
                                                          (job.unchanged, "already indexed")) if files]
    if not parts:
        return None
    held = f"; the knowledge base holds {job.collection_chunks} passages" if job.collection_chunks is not None else ""
    return f"{', '.join(parts)}{held}."


def _show_last_upload() -> None:
    job = st.session_state.pop("upload_report", None)
    if job is None:
        return
    if job.status != "done":
        st.sidebar.error(f"The upload was not indexed: {job.error or job.status}")
    summary = upload_summary(job)
    if summary is not None:
        st.sidebar.success(summary)
    for failure in job.failures:
        st.sidebar.error(f"{failure.source}: {failure.reason}")
    for warning in job.warnings:
        st.sidebar.warning(f"{warning.source}: {warning.reason}")


def conversations_panel(service: ServiceClient, collection: str) -> None:
    """The user's conversations in this collection: open, rename, delete, export the open one."""
    st.sidebar.subheader("Conversations")
    current = st.session_state.get("conversation")
    if st.sidebar.button("New conversation", icon=":material/add:", disabled=current is None):
        st.session_state["conversation"] = None
        st.rerun()
    summaries = service.conversations(collection)
    for summary in summaries:
        title_column, button_column = st.sidebar.columns(ROW, vertical_alignment="center")
        label = f"**{summary.title}**" if summary.id == current else summary.title
        if title_column.button(label, key=f"open-{summary.id}", type="tertiary", help="Open this conversation"):
            st.session_state["conversation"] = summary.id
            st.rerun()
        if button_column.button("", icon=":material/delete:", type="tertiary", key=f"forget-{summary.id}",
                                help=f"Delete “{summary.title}”"):
            service.delete_conversation(summary.id)
            if current == summary.id:
                st.session_state["conversation"] = None
            st.rerun()
    summary = next((s for s in summaries if s.id == current), None)
    if summary is None:
        return
    renamed = st.sidebar.text_input("Title of this conversation", value=summary.title, key=f"title-{current}")
    if renamed.strip() and renamed != summary.title:
        service.rename_conversation(current, renamed)
        st.rerun()
    markdown_column, json_column = st.sidebar.columns(2)
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in summary.title)[:60] or "conversation"
    markdown_column.download_button("Markdown", lambda: service.export_conversation(current, "markdown"),
                                    file_name=f"{stem}.md", mime="text/markdown", icon=":material/download:",
                                    on_click="ignore")
    json_column.download_button("JSON", lambda: service.export_conversation(current, "json"),
                                file_name=f"{stem}.json", mime="application/json", icon=":material/download:",
                                on_click="ignore")
