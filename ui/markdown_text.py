"""Text shown literally in Streamlit's Markdown, with spans marked by coloured backgrounds.

Passages are escaped first, so a passage can never inject formatting or a fake highlight; the
marks are private-use characters until escaping is done, then become Streamlit's
``:orange-background[...]`` (what supports an answer) and ``:blue-background[...]`` (the rest of
the cited passage, when it is shown inside its section).

Worked example::

    marked_text("Port 8501. Else.", strong=[(0, 10)])
    -> ':orange-background[Port 8501\\.] Else\\.'

Deliberately not here: what to mark (``ui.rendering``, ``ui.document_view``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$^=&])")
_STRONG, _LIGHT, _END = "\ue000", "\ue002", "\ue001"  # private-use characters: stand for the marks until escaped


def escape_markdown(text: str) -> str:
    """Text shown literally by st.markdown: every character Markdown or a Streamlit directive could read is escaped."""
    # Hard breaks keep the passage's lines; leading spaces would make a code block.
    return "  \n".join(_MARKDOWN_SPECIAL.sub(r"\\\1", line.lstrip()) for line in text.split("\n"))


def marked_text(text: str, strong: Sequence[tuple[int, int]] = (), light: Sequence[tuple[int, int]] = ()) -> str:
    """``text`` as escaped Markdown, ``strong`` spans on orange, the rest of the ``light`` spans on blue."""
    level = [0] * len(text)
    for spans, value in ((light, 1), (strong, 2)):
        for start, end in spans:
            for index in range(max(0, start), min(len(text), end)):
                level[index] = max(level[index], value)
    parts, current, index = [], 0, 0
    while index < len(text):
        if level[index] != current:
            if current:
                parts.append(_END)
            if level[index]:
                parts.append(_STRONG if level[index] == 2 else _LIGHT)
            current = level[index]
        if current and text[index].isspace():  # one line inside a mark: a line break would end the directive
            while index + 1 < len(text) and text[index + 1].isspace() and level[index + 1] == current:
                index += 1
            parts.append(" ")
        else:
            parts.append(text[index])
        index += 1
    if current:
        parts.append(_END)
    return (escape_markdown("".join(parts)).replace(_STRONG, ":orange-background[")
            .replace(_LIGHT, ":blue-background[").replace(_END, "]"))
