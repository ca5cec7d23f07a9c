"""The table text format every stage reads: Markdown tables whose first cell is the row label.

Ingest writes PDF statement tables, and Markdown, Word and HTML tables, in this
form (``ingest.tables``, ``ingest.loaders``); chunking keeps a table's heading
row with every part of it, the prompt trims tables by column, and the figure
check and the table-row preference read body rows. They all meet here::

    | | Three Months Ended July 1, 2023 | Three Months Ended June 25, 2022 |    <- heading row
    | --- | --- | --- |                                                        <- rule
    | Net sales: Total net sales | 81,797 | 82,959 |                             <- body row

    body_rows(text) -> [("Net sales: Total net sales", ["81,797", "82,959"])]

Deliberately not here: finding tables in PDF layout text (``ingest.tables``),
choosing columns for a question (``llm.prompt``).
"""

from __future__ import annotations

import re

# A Markdown table's lines, as chunking, the prompt and the figure check read them: "| a | b |" and "| --- | --- |".
TABLE_ROW = re.compile(r"^\|(.*)\|\s*$")
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$")


def body_rows(text: str) -> list[tuple[str, list[str]]]:
    """(label, the other cells) of each body row of the Markdown tables in ``text``.

    Heading rows (the row above a "| --- |" rule) and rules are left out: they name columns, not values.
    The figure check (``llm.figures``) and the table-row preference (``retrieval.table_rows``) read these.
    """
    rows = []
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        match = TABLE_ROW.match(line)
        if not match or TABLE_RULE.match(line) or (index + 1 < len(lines) and TABLE_RULE.match(lines[index + 1])):
            continue
        cells = [cell.strip() for cell in match.group(1).split("|")]
        rows.append((cells[0], cells[1:]))
    return rows
