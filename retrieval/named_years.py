"""Passages of the year a question names, before passages of other years.

A collection of dated pages (admission notices, news, annual reports) holds the same kind of
statement for several years: "在2019年……优秀率达48%" on one page, "在2021年……优秀率达59%" on the
next. A question naming 2019 matches both on every word but the year, and the 2021 page often ranks
first. Scoping cannot help here: a page's own date is not the year it speaks of (the 2020 Q&A page
reports the 2019 exam), so a document filter by date would drop the only page with the answer.

``prefer_named_years`` keeps the ranking but moves the passages that speak of an asked year (in their
text, their headings or their document's header) ahead of those that speak of no year, and those
ahead of passages speaking only of other years. A year of a cohort ("2019级学生", the class that
enrolled in 2019) is not a year the passage speaks of (``text.periods.year_mentions``).

Worked example, "2019年……优秀率是多少？" over [2021 page, 2020 page, fees page]::

    2021 page "在2021年……2019级学生……59%"   -> speaks of 2021 only    -> last
    2020 page "在2019年……优秀率达48%"        -> speaks of 2019         -> first
    fees page "学费为每年5000元"              -> speaks of no year      -> second

Deliberately not here: questions whose scope already chose documents by their period
(``retrieval.scope``), quarters and dates (the scope resolves those from document records).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.types import Hit
from text.periods import year_mentions


def prefer_named_years(hits: Sequence[Hit], years: Sequence[int]) -> list[Hit]:
    """``hits`` with the passages speaking of one of ``years`` first, then those of no year, then the rest."""
    if not years:
        return list(hits)
    asked = set(years)

    def rank(hit: Hit) -> int:
        chunk = hit.chunk
        spoken = set(year_mentions(" ".join((chunk.header, " ".join(chunk.heading_path), chunk.text))))
        return 0 if spoken & asked else (1 if not spoken else 2)

    return sorted(hits, key=rank)  # stable: the ranking holds within each group
