"""Streamlit web UI: chat with cited answers, sources, and document management.

Start it with ``kb ui`` (binds to 127.0.0.1 unless ``KB_UI_HOST`` says
otherwise). Settings come from ``KB_*`` environment variables, read here at the
edge and passed to the pipeline. Models load once per process
(``st.cache_resource``), never per rerun. The answer streams as it is
generated; when it is complete it is replaced by the version with checked
citations, and each cited source shows file, page or section, and the passage.

Deliberately not here: any retrieval, prompting or ingest logic (all in
``app.pipeline``), authentication (a localhost tool; put a reverse proxy with
auth in front if you bind it to a network).
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from app.pipeline import CollectionStatus, Pipeline, UnsafeFileNameError
from app.settings import Settings, SettingsError, load_settings
from llm.answer import Answer, Citation
from llm.generator import GenerationError
from llm.models import ModelError
from retrieval.embedders import EmbedderError
from retrieval.rerank import RerankerError
from retrieval.store import StoreError


@dataclass(frozen=True)
class ChatTurn:
    question: str
    answer: Answer


@st.cache_resource(show_spinner="Loading the models (once per server start)…")
def get_pipeline(settings_json: str) -> Pipeline:
    pipeline = Pipeline.from_settings(Settings.model_validate_json(settings_json))
    pipeline.warm_up()
    return pipeline


def render_sources(answer: Answer) -> None:
    if not answer.supported:
        if answer.sources:
            st.warning("This answer cites none of your documents. Treat it as unsupported.")
            with st.expander("Closest passages found"):
                for citation in answer.sources:
                    st.markdown(f"**[{citation.number}] {citation.location}**")
                    _render_citation(citation)
        return
    st.caption("Sources")
    for citation in answer.citations:
        with st.expander(f"[{citation.number}] {citation.location}"):
            _render_citation(citation)


def _render_citation(citation: Citation) -> None:
    ocr_note = " · text recognised by OCR from a scanned page, may contain errors" if citation.ocr else ""
    st.caption(f"relevance {citation.score:.2f}{ocr_note}")
    st.text(citation.passage)


def render_sidebar(pipeline: Pipeline, status: CollectionStatus) -> None:
    st.sidebar.header("Knowledge base")
    st.sidebar.write(f"Collection **{status.name}**: {len(status.files)} documents, {status.chunks} passages")
    st.sidebar.caption(f"Embedder: {status.embedder} · reranker: {pipeline.reranker.name}")
    info = pipeline.generator_info
    if info is not None:
        where = f"GPU ({info.gpu_layers} layers)" if info.gpu_layers else "CPU"
        st.sidebar.caption(f"Model: {info.model} on {where}, {info.threads} threads")

    st.sidebar.subheader("Documents")
    uploads = st.sidebar.file_uploader(
        "Add PDF, Markdown or text files", type=["pdf", "md", "markdown", "txt"], accept_multiple_files=True
    )
    if uploads and st.sidebar.button("Add to knowledge base", type="primary"):
        with st.sidebar.status("Indexing…") as progress:
            try:
                report = pipeline.add_documents([(upload.name, upload.getvalue()) for upload in uploads])
            except (UnsafeFileNameError, StoreError) as exc:
                progress.update(label="Not added", state="error")
                st.sidebar.error(str(exc))
            else:
                progress.update(label=report.summary(), state="complete" if not report.failed else "error")
                for failure in report.failed:
                    st.sidebar.error(f"{failure.source}: {failure.reason}")
                for warning in report.warnings:
                    st.sidebar.warning(f"{warning.source}: {warning.reason}")
    for source in status.files:
        left, right = st.sidebar.columns([5, 1])
        left.write(source)
        if right.button(":material/delete:", key=f"delete-{source}", help=f"Remove {source} from the knowledge base"):
            pipeline.delete_document(source)
            st.rerun()


def main() -> None:
    st.set_page_config(page_title="kbqa – ask your documents", page_icon="📚", layout="wide")
    try:
        settings = load_settings()
        pipeline = get_pipeline(settings.model_dump_json())
    except (SettingsError, EmbedderError, RerankerError, ModelError, GenerationError, ValueError) as exc:
        st.error(f"kbqa cannot start: {exc}")
        st.stop()
        return

    st.title("Ask your documents")
    try:
        status = pipeline.status()
    except StoreError as exc:  # e.g. built with another embedder: say so instead of a traceback
        st.error(f"The index cannot be used: {exc}")
        st.stop()
        return
    render_sidebar(pipeline, status)
    if not status.exists or status.chunks == 0:
        st.info(
            "The knowledge base is empty. Add files in the sidebar under **Documents**, "
            f"or run `kb ingest <folder>` (collection `{status.name}`) and reload this page."
        )

    history: list[ChatTurn] = st.session_state.setdefault("history", [])
    for turn in history:
        with st.chat_message("user"):
            st.markdown(turn.question)
        with st.chat_message("assistant"):
            st.markdown(turn.answer.text)
            render_sources(turn.answer)

    question = st.chat_input("Ask a question about your documents (English or 中文)")
    if not question:
        return
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        placeholder = st.empty()
        try:
            stream = pipeline.ask_stream(question)
            with placeholder.container():
                st.write_stream(stream)
        except (StoreError, ModelError, GenerationError) as exc:
            placeholder.error(f"Could not answer: {exc}")
            return
        answer = stream.answer
        placeholder.markdown(answer.text)  # the checked version replaces the raw stream
        render_sources(answer)
    history.append(ChatTurn(question=question, answer=answer))


main()
