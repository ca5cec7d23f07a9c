"""What a document is: its title, organisation and period, read once at ingest.

Users ask about documents the way they think of them ("Apple's Q2 2023 10-Q",
"2018 年第一季度报告", "TiDB 7.5 的发布说明"), and those names are usually in the file
name, the title or the first page, not in the passage that holds the answer.
``describe_document`` reads them into a ``DocumentRecord``; the chunk header
(``DocumentRecord.header``) carries them into what is embedded and keyword-indexed
for every chunk, and ``retrieval.scope`` matches questions against them.

Where each field comes from, first found wins:

- title: the PDF's metadata title when it reads like one (an HTML file's <title>,
  a Markdown file's front matter ``title:``), else the first heading of a
  Markdown/Word/HTML file, else the file name made readable
  ("2023_Q2-report.pdf" -> "2023 Q2 report"). Sources without a file suffix
  (evaluation corpora) take only a heading.
- organisation: the first line near the top of the first page that names a company or
  institution by its legal form ("Apple Inc.", "NVIDIA CORPORATION", "某某股份有限公司").
- period: a quarter in the file name or title ("2023 Q2"), else on the first page;
  the end date of the period stated on the first page ("for the quarterly period
  ended April 1, 2023"); a version in the file name or title ("v7.5.0").
- date (for ordering, "the latest"): the period's end date, else a date in the
  file name or title, or one the first page labels as the document's own
  ("发版日期：…", "Published: …"), else the quarter's last day, else the year's.

Worked example: "2023 Q2 AAPL.pdf" whose first page says "Apple Inc." and "For the
quarterly period ended April 1, 2023" -> title "2023 Q2 AAPL", organisation
"Apple Inc.", year 2023, quarter 2, period_end 2023-04-01, date 2023-04-01; header
"2023 Q2 AAPL · Apple Inc. · quarter ended April 1, 2023".

Deliberately not here: a named-entity model (organisations are found by their
legal-form suffix only), document types ("10-Q", "annual report") as a field
(their words stay searchable in the title), authors.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from core.types import LoadedFile
from text.documents import DocumentRecord, name_words, readable_file_name
from text.periods import find_dates, find_quarters, find_versions, period_end_dates

FIRST_PAGE_CHARS = 3000  # the cover: where a document says what it is
_LEGAL_FORM = re.compile(
    r"(?:\b(?:inc|incorporated|corp|corporation|company|co|ltd|limited|llc|plc|ag|gmbh|s\.a|n\.v|holdings|group|"
    r"university|bank)\.?|有限公司|有限责任公司|股份有限公司|集团|银行|大学|研究院|委员会)\s*$",
    re.IGNORECASE,
)
_NOT_A_TITLE = re.compile(r"^(untitled|microsoft word\b|document\d*|slide \d+|\W*)$", re.IGNORECASE)
# Markdown front matter (Jekyll, Hugo, MkDocs): "---\ntitle: TiDB 8.5.4 Release Notes\n...\n---".
_FRONT_MATTER_TITLE = re.compile(r"\A---[ \t]*\n(?:.*\n)*?title:[ \t]*(.+)\n(?:.*\n)*?---", re.MULTILINE)
# A date the document gives as its own: "发版日期：2023 年 12 月 1 日", "Published: March 3, 2024". Any other date
# on the first page (a deadline, a law's date) says nothing about when the document is from.
_DATED_LINE = re.compile(
    r"(?:发版日期|发布日期|发布时间|日期|published|publication date|release date|released|date|last updated|updated)"
    r"\s*[:：]?\s*([^\n]{6,40})", re.IGNORECASE)


def describe_document(document: LoadedFile, metadata_title: str | None = None) -> DocumentRecord:
    """Read a document's record from its file name, metadata title and first page (see module doc)."""
    source = document.source
    has_file_name = bool(PurePosixPath(source).suffix)
    cover = ""
    for page in document.pages:  # the first page, or the first sections of a Markdown file
        cover += page.text[: FIRST_PAGE_CHARS - len(cover)] + "\n"
        if len(cover) >= FIRST_PAGE_CHARS:
            break
    heading = next((page.heading_path[0] for page in document.pages[:3] if page.heading_path), None)
    front_matter = _FRONT_MATTER_TITLE.search(cover)
    title = _title(metadata_title or (front_matter.group(1).strip(" '\"") if front_matter else None), heading,
                   source if has_file_name else None)
    if not has_file_name:  # a passage of an evaluation corpus or an in-memory text: its heading is all it has
        return DocumentRecord(source=source, title=title)
    named_in = " ".join(part for part in (readable_file_name(source) if has_file_name else "", title) if part)

    quarters = find_quarters(named_in) or find_quarters(cover)
    spoken = _most_spoken_quarter(document)
    known = [q for q in [*quarters[:1], spoken] if q is not None]
    ends = period_end_dates(cover)
    end = ends[0] if ends else None
    year = quarters[0].year if quarters else (end.year if end else None)
    quarter = quarters[0].quarter if quarters else None
    versions = find_versions(named_in)
    published = None
    if end is None and not quarters:
        dates = find_dates(named_in) or [d for line in _DATED_LINE.findall(cover) for d in find_dates(line)]
        published = dates[0].isoformat() if dates else None
    return DocumentRecord(
        source=source,
        title=title,
        name_words=name_words(source) if has_file_name else (),
        organisation=_organisation(cover),
        year=year,
        quarter=quarter,
        period_end=end.isoformat() if end else None,
        quarters=tuple(dict.fromkeys(f"{q.year}-Q{q.quarter}" for q in known)),
        version=".".join(map(str, versions[0])) if versions else None,
        published=published,
    )


def _most_spoken_quarter(document: LoadedFile):
    """The quarter the document's text names most often (at least twice), or None."""
    counts: dict = {}
    for page in document.pages:
        for period in find_quarters(page.text):
            counts[period] = counts.get(period, 0) + 1
    if not counts:
        return None
    best = max(counts, key=lambda period: counts[period])
    return best if counts[best] >= 2 else None


def _title(metadata_title: str | None, heading: str | None, source: str | None) -> str:
    if metadata_title:
        cleaned = " ".join(metadata_title.split())
        # Accession numbers and file ids ("0000320193-22-000070") are not titles: a title has a word.
        if 3 <= len(cleaned) <= 200 and not _NOT_A_TITLE.match(cleaned) and re.search(r"[^\W\d_]{3}", cleaned):
            return cleaned
    if heading:
        return " ".join(heading.split())[:200]
    return readable_file_name(source) if source else ""


def _organisation(cover: str) -> str | None:
    for line in cover.splitlines()[:60]:
        line = " ".join(line.split()).strip(" ,;:()（）")
        if 2 < len(line) <= 80 and len(line.split()) <= 8 and _LEGAL_FORM.search(line):
            words = line.split()
            # "NVIDIA CORPORATION" -> "Nvidia Corporation": shown to users and put in chunk headers.
            if line.isupper():
                line = " ".join(word if len(word) <= 3 else word.capitalize() for word in words)
            return line
    return None
