"""The sidebar: which collection, its documents (upload, delete, search only some), the saved conversations.

Each panel takes what it shows and the stores it changes; the page
(``ui.streamlit_app``) decides who the user is and what they may do, and
hands the documents panel the audit log to record uploads and deletions in.
Uploads go to the collection's uploads folder under the home (``team.collections``);
the report shown after one is about its files only: success as success, each
failure by file, no internal timings.
Delete buttons are icon-only "tertiary" buttons in a column wide enough for the
icon (a narrow bordered button clipped it at 1400x1100).

Deliberately not here: answers and their sources (``ui.rendering``), logging in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from app.pages import DocumentViewer
from app.pipeline import SUPPORTED_SUFFIXES, CollectionStatus, IngestProgress, IngestReport, KbError
from team.collections import Library
from team.conversations import Conversations
from ui.document_view import show_passages

Audit = Callable[[str, str], None]  # (action, detail): an entry in the audit log for this user and collection

UPLOAD_TYPES = [suffix.lstrip(".") for suffix in SUPPORTED_SUFFIXES]  # the loaders' one table of file types
ROW = [0.82, 0.18]  # name | icon button
DOCUMENT_ROW = [0.64, 0.18, 0.18]  # name | passages | delete


def collection_picker(names: Sequence[str], current: str) -> str:
    """The collection the user works in (a selector when there is more than one)."""
    if len(names) > 1:
        index = list(names).index(current) if current in names else 0
        return st.sidebar.selectbox("Collection", names, index=index, key="collection_picker")
    return names[0] if names else current


def documents_panel(library: Library, status: CollectionStatus, may_write: bool, viewer: DocumentViewer,
                    audit: Audit) -> list[str]:
    """Upload and remove documents (with write access), open a document's passages; returns the documents to
    search (empty: all)."""
    st.sidebar.subheader("Documents")
    _show_last_upload()
    if may_write:
        uploads = st.sidebar.file_uploader("Add PDF, Word, HTML, Markdown or text files", type=UPLOAD_TYPES,
                                           accept_multiple_files=True)
        if uploads and st.sidebar.button("Add to knowledge base", type="primary"):
            _add(library, status.name, [(upload.name, upload.getvalue()) for upload in uploads], audit)
    chosen = st.sidebar.multiselect(
        "Search only these documents", options=list(status.files), default=[],
        format_func=lambda source: status.records[source].description if source in status.records else source,
        help="Empty: every document. A question that names an organisation, a period or 'the latest' "
             "is searched in the documents it names by itself.",
    )
    for source in status.files:
        name_column, passages_column, button_column = st.sidebar.columns(DOCUMENT_ROW, vertical_alignment="center")
        record = status.records.get(source)
        name_column.write(source)
        if record is not None and (record.organisation or record.period_label):
            name_column.caption(", ".join(part for part in (record.organisation, record.period_label) if part))
        if passages_column.button("", icon=":material/article:", type="tertiary", key=f"passages-{source}",
                                  help=f"The passages of {source}, as the index holds them"):
            show_passages(viewer, source)
        if may_write and button_column.button("", icon=":material/delete:", type="tertiary", key=f"delete-{source}",
                                              help=f"Remove {source} from the knowledge base"):
            library.delete_document(status.name, source)  # the file too, when it was uploaded (team.uploads)
            audit("delete document", source)
            st.rerun()
    return [source for source in chosen if source in status.files]


def _add(library: Library, collection: str, files: list[tuple[str, bytes]], audit: Audit) -> None:
    """Save and index uploads with a progress bar per file read; failures listed by file."""
    bar = st.sidebar.progress(0.0, text="Saving…")

    def progress(state: IngestProgress) -> None:
        share = state.files_done / state.files_total if state.files_total else 1.0
        current = f": {state.current}" if state.current else ""
        bar.progress(min(share, 1.0), text=f"{state.files_done} of {state.files_total} files indexed{current}")

    try:
        saved = library.save_uploads(collection, files)
        audit("upload", ", ".join(saved))
        report = library.ingest_uploads(collection, saved, on_progress=progress)
    except KbError as exc:  # a name that is refused, a locked or broken index
        bar.empty()
        st.sidebar.error(str(exc))
        return
    # Drawn again so the counts and the list include the new files; the report is shown once after that.
    st.session_state["upload_report"] = report
    st.rerun()


def upload_summary(report: IngestReport) -> str | None:
    """What an upload did, for the user: the files indexed and what the collection holds now (no timings);
    None when none of its files could be used (the failures say why, one by one)."""
    parts = [f"{len(files)} {label}" for files, label in ((report.added, "added"), (report.updated, "updated"),
                                                          (report.unchanged, "already indexed")) if files]
    if not parts:
        return None
    return f"{', '.join(parts)}; the knowledge base holds {report.collection_chunks} passages."


def _show_last_upload() -> None:
    report = st.session_state.pop("upload_report", None)
    if report is None:
        return
    summary = upload_summary(report)
    if summary is not None:
        st.sidebar.success(summary)
    for failure in report.failed:
        st.sidebar.error(f"{failure.source}: {failure.reason}")
    for warning in report.warnings:
        st.sidebar.warning(f"{warning.source}: {warning.reason}")


def conversations_panel(store: Conversations, user: str, collection: str) -> None:
    """The user's conversations in this collection: open, rename, delete, export the open one."""
    st.sidebar.subheader("Conversations")
    current = st.session_state.get("conversation")
    if st.sidebar.button("New conversation", icon=":material/add:", disabled=current is None):
        st.session_state["conversation"] = None
        st.rerun()
    for summary in store.list(user, collection):
        title_column, button_column = st.sidebar.columns(ROW, vertical_alignment="center")
        label = f"**{summary.title}**" if summary.id == current else summary.title
        if title_column.button(label, key=f"open-{summary.id}", type="tertiary", help="Open this conversation"):
            st.session_state["conversation"] = summary.id
            st.rerun()
        if button_column.button("", icon=":material/delete:", type="tertiary", key=f"forget-{summary.id}",
                                help=f"Delete “{summary.title}”"):
            store.delete(user, summary.id)
            if current == summary.id:
                st.session_state["conversation"] = None
            st.rerun()
    if current is None:
        return
    summary = store.get(user, current)
    renamed = st.sidebar.text_input("Title of this conversation", value=summary.title, key=f"title-{current}")
    if renamed.strip() and renamed != summary.title:
        store.rename(user, current, renamed)
        st.rerun()
    markdown_column, json_column = st.sidebar.columns(2)
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in summary.title)[:60] or "conversation"
    markdown_column.download_button("Markdown", store.export_markdown(user, current), file_name=f"{stem}.md",
                                    mime="text/markdown", icon=":material/download:")
    json_column.download_button("JSON", store.export_json(user, current), file_name=f"{stem}.json",
                                mime="application/json", icon=":material/download:")
