"""How an answer is shown: the checked text with marks, its sources with the supporting sentences highlighted.

Passages and generated text are shown as Markdown: passages are escaped first,
so a passage can never inject formatting or a fake highlight; the answer is the
model's Markdown by design.

Deliberately not here: the page's layout, sessions, storage (``ui.streamlit_app``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import streamlit as st

from app.pipeline import Answer, Citation

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


def render_withdrawn(answer: Answer) -> None:
    """The sentences taken out of the answer because no passage holds what they state, collapsed, with why."""
    if answer.withdrawn and not answer.abstained:
        with st.expander(f"{len(answer.withdrawn)} sentence(s) withdrawn: no passage states them"):
            for sentence in answer.withdrawn:
                st.markdown(f"~~{escape_markdown(sentence.text)}~~  \n*{escape_markdown(sentence.withdrawn_because)}*")


def render_sources(answer: Answer) -> None:
    render_withdrawn(answer)
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
    if not answer.citations:
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
