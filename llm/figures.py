"""Does a figure in the answer come from the table row that holds what the question asks about?

The citation check (``llm.grounding``) already requires an answer's numbers to
occur in the passage it cites. In a statement table that is not enough: every
row is full of numbers, and the small model copies the one next to the right one.
So a number that stands in a table row of the cited passage (a Markdown row, or
a row as the prompt shows it: "label — heading: value; …") must stand
in a row whose label shares the most of the question's keywords among that
table's rows::

    question: "What were Apple's total net sales in Q2 2023?"   keywords {total, net, sale, ...}
    | Net sales: Total net sales         | 94,836 | 97,278 |   label shares 3  <- the best row
    | Cost of sales: Total cost of sales | 52,860 | 54,719 |   label shares 2
    "Total net sales were $52,860 million [1]."  -> flagged: 52,860 stands in a row that is not the best
    "Total net sales were $94,836 million [1]."  -> kept

Deliberately not here: the column (the period) a figure stands in (the table's
headings name it for the model; checking it needs the answer's period, which it
rarely states), figures in prose sentences (the grounding window covers them).
"""

from __future__ import annotations

import re

from core.types import Question
from text.table_format import body_rows
from text.keywords import NUMBER, content_keywords, spelled_out_terms

_LINEAR = re.compile(r"^(.+?) — (.+: .+)$")


def _rows(passage: str) -> list[tuple[str, set[str]]]:
    """(row label, the row's numbers) of every body row of every Markdown table in the passage."""
    rows = []
    for line in passage.splitlines():
        linear = _LINEAR.match(line.strip())
        if linear:  # "label — heading: value; heading: value", as the prompt shows tables
            values = [pair.rsplit(": ", 1)[-1] for pair in linear.group(2).split("; ")]
            numbers = {re.sub(r",(?=\d{3}\b)", "", n) for value in values for n in NUMBER.findall(value)}
            if numbers:
                rows.append((linear.group(1), numbers))
    for label, cells in body_rows(passage):
        numbers = {re.sub(r",(?=\d{3}\b)", "", n) for cell in cells for n in NUMBER.findall(cell)}
        if numbers:
            rows.append((label, numbers))
    return rows


def figures_in_right_rows(question: Question, sentence: str, passage: str) -> bool:
    """False when a number of ``sentence`` stands only in table rows of ``passage`` that match the question
    less than its best-matching row does (see module doc); True otherwise, also when there is no table."""
    rows = _rows(passage)
    if not rows:
        return True
    asked = set(question.content_keywords)
    # "EPS" in the question names the row "Diluted earnings per share" (``text.keywords.spelled_out``).
    overlap = [len((asked | spelled_out_terms(question.acronyms, label)).intersection(content_keywords(label)))
               for label, _ in rows]
    best = max(overlap)
    if best == 0:
        return True  # no row label says what the question asks: nothing to compare
    stated = {re.sub(r",(?=\d{3}\b)", "", n) for n in NUMBER.findall(sentence)}
    for number in stated:
        holding = [overlap[i] for i, (_, numbers) in enumerate(rows) if number in numbers]
        if holding and max(holding) < best:
            return False
    return True
