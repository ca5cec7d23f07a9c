"""What a document is, as every stage names it: ``DocumentRecord`` and the readable forms of file names.

Ingest reads a record from a file (``ingest.records.describe_document``); the
collection stores it (``retrieval.store``); retrieval matches questions
against it (``retrieval.scope``); the prompt and the answer label sources with
it (``llm``, ``app.answering``). Each reads this one type.

Worked example: "2023 Q2 AAPL.pdf" whose cover says "Apple Inc." and "For the
quarterly period ended April 1, 2023" ->
``DocumentRecord(source="2023 Q2 AAPL.pdf", title="2023 Q2 AAPL", organisation="Apple Inc.",
year=2023, quarter=2, period_end="2023-04-01")``, whose ``header`` is
"2023 Q2 AAPL · Apple Inc. · quarter ended April 1, 2023".

Deliberately not here: reading a record from a document (``ingest.records``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath

_NAME_WORD = re.compile(r"\d+(?:\.\d+)+|[A-Za-z]+\d*|\d+|[\u3400-\u9fff]+")
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                "November", "December")


@dataclass(frozen=True)
class DocumentRecord:
    """What a document says it is. Stored with the collection (one per file)."""

    source: str
    title: str
    name_words: tuple[str, ...] = ()  # lower-cased words of the file name: ("2023", "q2", "aapl")
    organisation: str | None = None
    year: int | None = None
    quarter: int | None = None
    period_end: str | None = None  # ISO date the period ends
    # Every quarter the document is known by, "2023-Q2": the file name's, and the one its own text speaks of
    # most ("the third quarter of fiscal year 2023" in a filing named "2023 Q2 MSFT.pdf").
    quarters: tuple[str, ...] = ()
    version: str | None = None  # "7.5.0"
    published: str | None = None  # ISO date found on the first page when no period end was

    @classmethod
    def from_dict(cls, row: dict) -> DocumentRecord:
        """From its stored JSON form (lists back to tuples; unknown keys of a newer version ignored)."""
        known = {name: row[name] for name in cls.__dataclass_fields__ if name in row}
        for name in ("name_words", "quarters"):
            known[name] = tuple(known.get(name) or ())
        return cls(**known)

    @property
    def version_tuple(self) -> tuple[int, ...] | None:
        return tuple(int(part) for part in self.version.split(".")) if self.version else None

    @property
    def date(self) -> date | None:
        """The date that orders documents in time ("the latest"), or None."""
        for iso in (self.period_end, self.published):
            if iso:
                return date.fromisoformat(iso)
        if self.year is not None:
            month = 3 * self.quarter if self.quarter else 12
            return date(self.year, month, 30 if month in (6, 9) else 31)
        return None

    @property
    def period_label(self) -> str:
        """"quarter ended April 1, 2023", "2023 Q2", "v7.5.0", "2023" or ""."""
        if self.period_end:
            end = date.fromisoformat(self.period_end)
            what = "quarter" if self.quarter else "period"
            return f"{what} ended {_MONTH_NAMES[end.month - 1]} {end.day}, {end.year}"
        if self.version:
            return f"v{self.version}"
        if self.year is not None:
            return f"{self.year} Q{self.quarter}" if self.quarter else str(self.year)
        return ""

    @property
    def header(self) -> str:
        """One line naming the document, its organisation and period; each part only when it adds something."""
        return self._header(self.title)

    def header_for(self, heading_path: tuple[str, ...]) -> str:
        """``header`` for a chunk under ``heading_path``: without the title when the path starts with it."""
        return self._header("" if heading_path and heading_path[0] == self.title else self.title)

    def _header(self, title: str) -> str:
        parts = [title] if title else []
        known = title.lower()
        for part in (self.organisation, self.period_label, self.published and f"dated {self.published}"):
            if part and part.lower() not in known:
                parts.append(part)
                known += " " + part.lower()
        return " · ".join(parts)

    @property
    def description(self) -> str:
        """For lists: "2023 Q2 AAPL.pdf: Apple Inc., quarter ended April 1, 2023"."""
        details = [part for part in (self.organisation, self.period_label) if part]
        title = "" if self.title == readable_file_name(self.source) else f" “{self.title}”"
        return f"{self.source}{title}" + (f": {', '.join(details)}" if details else "")


def readable_file_name(source: str) -> str:
    """"reports/2023_Q2-AAPL.pdf" -> "2023 Q2 AAPL"."""
    stem = PurePosixPath(source).stem
    return re.sub(r"[\s_\-]+", " ", stem).strip()


def name_words(source: str) -> tuple[str, ...]:
    """The file name's words, lower-cased, versions kept whole: "release-7.5.0.md" -> ("release", "7.5.0")."""
    stem = PurePosixPath(source).stem
    return tuple(dict.fromkeys(word.lower() for word in _NAME_WORD.findall(stem)))
