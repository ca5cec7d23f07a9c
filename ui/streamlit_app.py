"""Streamlit web UI: chat with cited answers, sources, and document management.

Start it with ``kb ui`` (binds to 127.0.0.1 unless ``KB_UI_HOST`` says
otherwise). Settings come from ``KB_*`` environment variables, read here at the
edge and passed to the pipeline. Models load once per process
(``st.cache_resource``), never per rerun. The answer streams as it is
generated; when it is complete it is replaced by the version with checked
citations, in which a sentence no source supports carries a warning mark. Each
cited source shows file, page or section, and the passage with the sentences
that support the answer highlighted. Passages and generated text are shown as
Markdown: passages are escaped first, so a passage can never inject formatting
or a fake highlight; the answer is the model's Markdown by design.

The sidebar shows the generator's notice, if any (e.g. a GPU the llama.cpp
build cannot use, with the command that fixes it), once, above the documents.

Deliberately not here: any retrieval, prompting or ingest logic (all in
``app.pipeline``), authentication (a localhost tool; put a reverse proxy with
auth in front if you bind it to a network).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st

from app.pipeline import Answer, Citation, CollectionStatus, KbError, Pipeline, Turn
from app.settings import Settings, load_settings


@dataclass(frozen=True)
class ChatTurn:
    question: str
    answer: Answer


@st.cache_resource(show_spinner="Loading the models (once per server start)…")
def get_pipeline(settings_json: str) -> Pipeline:
    pipeline = Pipeline.from_settings(Settings.model_validate_json(settings_json))
    pipeline.warm_up()
    return pipeline


UNSUPPORTED_MARK = ":red[**⚠**]"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$^=&])")
_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters: stand for the highlight until escaping is done


def escape_markdown(text: str) -> str:
    """Text shown literally by st.markdown: every character Markdown or a Streamlit directive could read is escaped."""
    # Hard breaks keep the passage's lines; leading spaces would make a code block.
    return "  \n".join(_MARKDOWN_SPECIAL.sub(r"\\\1", line.lstrip()) for line in text.split("\n"))


def highlighted_passage(passage: str, spans: Sequence[tuple[int, int]]) -> str:
    """The passage as escaped Markdown with the character spans highlighted (overlapping spans merged)."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts, position = [], 0
    for start, end in merged:
        # One line inside the highlight: a line break would end the directive.
        parts += [passage[position:start], _OPEN, " ".join(passage[start:end].split()), _CLOSE]
        position = end
    parts.append(passage[position:])
    escaped = escape_markdown("".join(parts))
    return escaped.replace(_OPEN, ":orange-background[").replace(_CLOSE, "]")


def answer_markdown(answer: Answer) -> str:
    """The answer text with a warning mark after every sentence no source supports."""
    text, pieces, position = answer.text, [], 0
    for sentence in answer.unsupported_sentences:
        pieces += [text[position : sentence.end_char], " ", UNSUPPORTED_MARK]
        position = sentence.end_char
    pieces.append(text[position:])
    return "".join(pieces)


def render_answer(answer: Answer, into=None) -> None:
    """The checked answer (into ``into``, e.g. the placeholder that held the stream) and what was not found."""
    (into or st).markdown(answer_markdown(answer))
    flagged = len(answer.unsupported_sentences)
    if flagged:
        checked = sum(s.checked for s in answer.sentences)
        st.caption(
            f"⚠ {flagged} of {checked} statements not found in the sources (checked by their words and numbers): "
            "treat them as unverified."
        )


def render_sources(answer: Answer) -> None:
    if answer.abstained:
        if answer.withdrawn_draft:
            # Collapsed and labelled: the check is lexical, so a right answer worded differently from the
            # passages can be withdrawn; the user may still read it, knowing no passage was found to say it.
            with st.expander("Withdrawn draft: no passage was found to say this"):
                st.markdown(escape_markdown(answer.withdrawn_draft))
        if answer.sources:
            with st.expander("Closest passages found"):
                for citation in answer.sources:
                    st.markdown(f"**[{citation.number}] {escape_markdown(citation.label)}**")
                    _render_citation(citation)
        return
    if not answer.supported:
        if answer.sources:
            st.warning("This answer cites none of your documents. Treat it as unsupported.")
            with st.expander("Closest passages found"):
                for citation in answer.sources:
                    st.markdown(f"**[{citation.number}] {escape_markdown(citation.label)}**")
                    _render_citation(citation)
        return
    st.caption("Sources")
    for citation in answer.citations:
        spans = answer.supported_spans(citation.number)
        with st.expander(f"[{citation.number}] {citation.label}"):
            _render_citation(citation, spans)


def _render_citation(citation: Citation, spans: Sequence[tuple[int, int]] = ()) -> None:
    ocr_note = " · text recognised by OCR from a scanned page, may contain errors" if citation.ocr else ""
    support_note = " · highlighted: what supports the answer" if spans else ""
    st.caption(f"relevance {citation.score:.2f}{ocr_note}{support_note}")
    st.markdown(highlighted_passage(citation.passage, spans))


def render_sidebar(pipeline: Pipeline, status: CollectionStatus) -> list[str]:
    """The sidebar; returns the documents the user chose to search (empty: all of them)."""
    st.sidebar.header("Knowledge base")
    st.sidebar.write(f"Collection **{status.name}**: {len(status.files)} documents, {status.chunks} passages")
    st.sidebar.caption(f"Embedder: {status.embedder} on {status.embedder_runs_on} · reranker: {pipeline.reranker.name}")
    info = pipeline.generator_info
    model = info.model if info is not None else "the language model"
    st.sidebar.caption(f"Generator: {model} on {status.generator_runs_on}")
    if info is not None and info.notice:  # e.g. a GPU this llama.cpp build cannot use, with the command that fixes it
        st.sidebar.warning(info.notice, icon="⚠️")

    st.sidebar.subheader("Documents")
    uploads = st.sidebar.file_uploader(
        "Add PDF, Markdown or text files", type=["pdf", "md", "markdown", "txt"], accept_multiple_files=True
    )
    if uploads and st.sidebar.button("Add to knowledge base", type="primary"):
        with st.sidebar.status("Indexing…") as progress:
            try:
                report = pipeline.add_documents([(upload.name, upload.getvalue()) for upload in uploads])
            except KbError as exc:  # a name that would leave the folder, a locked or broken index
                progress.update(label="Not added", state="error")
                st.sidebar.error(str(exc))
            else:
                progress.update(label=report.summary(), state="complete" if not report.failed else "error")
                for failure in report.failed:
                    st.sidebar.error(f"{failure.source}: {failure.reason}")
                for warning in report.warnings:
                    st.sidebar.warning(f"{warning.source}: {warning.reason}")
    chosen = st.sidebar.multiselect(
        "Search only these documents", options=list(status.files), default=[],
        format_func=lambda source: status.records[source].description if source in status.records else source,
        help="Empty: every document. A question that names an organisation, a period or 'the latest' "
             "is searched in the documents it names by itself.",
    )
    for source in status.files:
        left, right = st.sidebar.columns([5, 1])
        record = status.records.get(source)
        left.write(source)
        if record is not None and (record.organisation or record.period_label):
            left.caption(", ".join(part for part in (record.organisation, record.period_label) if part))
        if right.button(":material/delete:", key=f"delete-{source}", help=f"Remove {source} from the knowledge base"):
            pipeline.delete_document(source)
            st.rerun()
    return [source for source in chosen if source in status.files]


def main() -> None:
    st.set_page_config(page_title="kbqa – ask your documents", page_icon="📚", layout="wide")
    try:
        settings = load_settings()
        pipeline = get_pipeline(settings.model_dump_json())
    except (KbError, ValueError) as exc:  # settings, models that cannot load
        st.error(f"kbqa cannot start: {exc}")
        st.stop()
        return

    st.title("Ask your documents")
    try:
        status = pipeline.status()
    except KbError as exc:  # e.g. built with another embedder: say so instead of a traceback
        st.error(f"The index cannot be used: {exc}")
        st.stop()
        return
    only = render_sidebar(pipeline, status)
    if not status.exists or status.chunks == 0:
        st.info(
            "The knowledge base is empty. Add files in the sidebar under **Documents**, "
            f"or run `kb ingest <folder>` (collection `{status.name}`) and reload this page."
        )

    history: list[ChatTurn] = st.session_state.setdefault("history", [])  # per browser session
    if history and st.sidebar.button("New conversation", help="Forget the questions so far"):
        history.clear()
    for turn in history:
        with st.chat_message("user"):
            st.markdown(turn.question)
        with st.chat_message("assistant"):
            render_answer(turn.answer)
            render_sources(turn.answer)

    question = st.chat_input("Ask a question about your documents (English or 中文)")
    if not question:
        return
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        placeholder = st.empty()
        try:
            # The conversation so far, so that a follow-up ("and its weight?") is understood.
            earlier = [Turn(turn.question, turn.answer.text) for turn in history]
            stream = pipeline.ask_stream(question, earlier, only or None)
            with placeholder.container():
                st.write_stream(stream)
        except KbError as exc:
            placeholder.error(f"Could not answer: {exc}")
            return
        answer = stream.answer
        render_answer(answer, into=placeholder)  # the checked version replaces the raw stream
        render_sources(answer)
    history.append(ChatTurn(question=question, answer=answer))


main()
