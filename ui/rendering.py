"""How an answer is shown: the checked text with marks, its sources with the supporting sentences highlighted.

Passages and generated text are shown as Markdown: passages are escaped first
(``ui.markdown_text``), so a passage can never inject formatting or a fake
highlight; the answer is the model's Markdown by design. With the service at hand, each
source can be shown on its page or in its section (``ui.document_view``).

Deliberately not here: the page's layout, sessions, storage (``ui.streamlit_app``).
"""

from __future__ import annotations

import streamlit as st

from client.service import ServiceClient
from client.types import CheckedAnswer, CitedPassage
from ui.document_view import show_original
from ui.markdown_text import escape_markdown, marked_text

UNSUPPORTED_MARK = ":red[**⚠**]"


def answer_markdown(answer: CheckedAnswer) -> str:
    """The answer text with a warning mark after every sentence no source supports."""
    text, pieces, position = answer.text, [], 0
    for sentence in answer.unsupported_sentences:
        pieces += [text[position : sentence.end_char], " ", UNSUPPORTED_MARK]
        position = sentence.end_char
    pieces.append(text[position:])
    return "".join(pieces)


def render_answer(answer: CheckedAnswer, into=None) -> None:
    """The checked answer (into ``into``, e.g. the placeholder that held the stream) and what was not found."""
    (into or st).markdown(answer_markdown(answer))
    flagged = len(answer.unsupported_sentences)
    if flagged:
        checked = sum(s.checked for s in answer.sentences)
        st.caption(
            f"⚠ {flagged} of {checked} statements not found in the sources (checked by their words and numbers): "
            "treat them as unverified."
        )


def render_withdrawn(answer: CheckedAnswer) -> None:
    """The sentences taken out of the answer because no passage holds what they state, collapsed, with why."""
    if answer.withdrawn and not answer.abstained:
        with st.expander(f"{len(answer.withdrawn)} sentence(s) withdrawn: no passage states them"):
            for sentence in answer.withdrawn:
                st.markdown(f"~~{escape_markdown(sentence.text)}~~  \n*{escape_markdown(sentence.because)}*")


def render_sources(answer: CheckedAnswer, service: ServiceClient | None = None, collection: str = "",
                   key: str = "answer") -> None:
    """The answer's sources; with ``service``, each can be shown on its page or in its section (``key``: the
    answer's own prefix for the widgets, e.g. its saved turn's id)."""
    render_withdrawn(answer)
    closest = answer.closest_passages if answer.abstained or not answer.citations else ()
    if answer.abstained and answer.withdrawn_draft:
        # Collapsed and labelled: the check is lexical, so a right answer worded differently from the
        # passages can be withdrawn; the user may still read it, knowing no passage was found to say it.
        with st.expander("Withdrawn draft: no passage was found to say this"):
            st.markdown(escape_markdown(answer.withdrawn_draft))
    if closest:
        if not answer.abstained:
            st.warning("This answer cites none of your documents. Treat it as unsupported.")
        with st.expander("Closest passages found"):
            for citation in closest:
                st.markdown(f"**[{citation.number}] {escape_markdown(citation.label)}**")
                _render_citation(citation, service, collection, f"{key}-closest")
        return
    if answer.abstained or not answer.citations:
        return
    st.caption("Sources")
    for citation in answer.citations:
        with st.expander(f"[{citation.number}] {citation.label}"):
            _render_citation(citation, service, collection, key)


def _render_citation(citation: CitedPassage, service: ServiceClient | None, collection: str, key: str) -> None:
    spans = citation.supported_spans
    ocr_note = " · text recognised by OCR from a scanned page, may contain errors" if citation.ocr else ""
    support_note = " · highlighted: what supports the answer" if spans else ""
    st.caption(f"relevance {citation.score:.2f}{ocr_note}{support_note}")
    st.markdown(marked_text(citation.passage, spans))
    if service is not None:
        widget = f"{key}-source-{citation.number}"
        if st.toggle("Show page" if citation.page is not None else "Show section", key=f"{widget}-show"):
            show_original(service, collection, citation, widget)
