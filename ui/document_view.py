"""Showing what a citation points at: the PDF page with the supporting words highlighted (previous and
next pages a click away), a text document's section with the passage marked, the original file to
download; and a document's passages as the index holds them.

Everything comes from the service (``client.service``: its document routes, with the user's own
rights), which draws pages itself: the browser gets a PNG, nothing is loaded from another host.

Deliberately not here: the answer and the list of its sources (``ui.rendering``), who may see what
(the service answers 404 for a collection the user may not read).
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from client.service import ServiceClient
from client.types import CitedPassage, ServiceError
from ui.markdown_text import escape_markdown, marked_text

PAGE_WIDTH = 1000  # pixels the page is drawn at; the browser scales it to the column


def show_original(service: ServiceClient, collection: str, citation: CitedPassage, key: str) -> None:
    """The cited page (PDF) or section (text), with what supports the answer highlighted (the closest passages
    of a refusal support nothing: only the passage is marked)."""
    try:
        if citation.page is not None:
            _show_page(service, collection, citation, key)
        else:
            _show_section(service, collection, citation)
    except ServiceError as exc:  # moved or changed since indexed, indexed before pages were kept
        st.warning(str(exc), icon="⚠️")
        return
    st.download_button("Download the original", data=lambda: service.original(collection, citation.source),
                       file_name=citation.source.rsplit("/", 1)[-1], key=f"{key}-download",
                       icon=":material/download:", on_click="ignore")


def _show_page(service: ServiceClient, collection: str, citation: CitedPassage, key: str) -> None:
    state_key = f"{key}-page"
    page = st.session_state.get(state_key, citation.page)
    on_cited = page == citation.page
    shown = service.page(collection, citation.source, page,
                         spans=citation.page_spans if on_cited else (),
                         passage=(citation.start_char, citation.end_char) if on_cited else None, width=PAGE_WIDTH)
    previous_column, where_column, next_column = st.columns([0.2, 0.6, 0.2], vertical_alignment="center")
    if previous_column.button("Previous page", key=f"{key}-previous", disabled=page <= 1, icon=":material/chevron_left:"):
        st.session_state[state_key] = page - 1
        st.rerun()
    where = f"Page {page} of {shown.page_count}"
    if on_cited:
        where += " · highlighted: what supports the answer" if shown.highlighted else " · the cited passage"
    where_column.caption(where)
    if next_column.button("Next page", key=f"{key}-next", disabled=page >= shown.page_count,
                          icon=":material/chevron_right:"):
        st.session_state[state_key] = page + 1
        st.rerun()
    st.image(shown.png, caption=f"{citation.source}, page {page}", width="stretch", output_format="PNG")
    if shown.note:
        st.caption(shown.note)


def _show_section(service: ServiceClient, collection: str, citation: CitedPassage) -> None:
    section = service.section(collection, citation.source, citation.start_char, citation.end_char)
    # The passage as cited may carry a heading line before the text it covers in the file: shift past it.
    shift = section.passage_start - (len(citation.passage) - (citation.end_char - citation.start_char))
    marked = [(start + shift, end + shift) for start, end in citation.supported_spans if start + shift >= section.passage_start]
    st.caption(" › ".join(section.heading_path) or citation.source)
    st.markdown(marked_text(section.text, marked, [(section.passage_start, section.passage_end)]))


@st.dialog("Passages as the index holds them", width="large")
def show_passages(service: ServiceClient, collection: str, source: str) -> None:
    """Every passage of ``source``: where it is, its headings, whether OCR read it, its text."""
    try:
        passages = service.passages(collection, source)
    except ServiceError as exc:
        st.warning(str(exc))
        return
    st.caption(f"{source}: {len(passages)} passages, in reading order")
    for passage in passages:
        where = [f"page {passage.page}"] if passage.page is not None else []
        where += [" › ".join(passage.heading_path)] if passage.heading_path else []
        where += ["recognised by OCR"] if passage.ocr else []
        where += [f"placed on the page ({passage.boxes} boxes)"] if passage.boxes else []
        st.markdown(f"**{escape_markdown(' · '.join(where) or source)}**")
        st.markdown(escape_markdown(passage.text))
        st.divider()
