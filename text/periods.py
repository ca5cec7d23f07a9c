"""Dates, quarters, years and versions as people write them, in English and Chinese.

One parser serves both ends: ingest reads a document's period from its file
name, title and first page (``ingest.records``), and retrieval reads the period
a question names (``retrieval.scope``), so "Q2 2023" in a question and
"2023 Q2 AAPL.pdf" on disk meet as the same ``Period``.

Worked examples::

    find_periods("2023 Q2 AAPL.pdf")                    -> [Period(year=2023, quarter=2)]
    find_periods("the quarter ended April 1, 2023")     -> [Period(year=2023, end=date(2023, 4, 1))]
    find_periods("second quarter of fiscal 2023")       -> [Period(year=2023, quarter=2)]
    find_periods("2018 年第一季度报告")                     -> [Period(year=2018, quarter=1)]
    find_periods_to_date("first half of fiscal 2023")   -> [Period(year=2023, quarter=2)]
    find_periods("TiDB 7.5.0 Release Notes")            -> [Period(version=(7, 5, 0))]
    find_dates("发版日期：2023 年 12 月 1 日")               -> [date(2023, 12, 1)]

A version is only taken with a ``v`` in front or two dots ("v7.5", "7.5.0"),
or after a product-like word in a question ("TiDB 7.5"); a bare "3.5" is a
number, not a version.

Deliberately not here: fiscal-calendar arithmetic (whether a company's fiscal
Q2 ends in March or December is only known from the document itself, which
states the date), relative dates ("last year"), date ranges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

MONTHS = {
    name: number
    for number, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
         ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
         ("november", "nov"), ("december", "dec")], start=1)
    for name in names
}
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?"
_MONTH_NAME = {number: max((name for name, same in MONTHS.items() if same == number), key=len).capitalize()
               for number in set(MONTHS.values())}
_MONTH_WORD = re.compile(rf"\b{_MONTH}(?![a-z])", re.IGNORECASE)
_YEAR = r"((?:19|20)\d\d)"
_ENGLISH_DATE = re.compile(rf"\b{_MONTH}\s+(\d{{1,2}}),?\s+{_YEAR}\b", re.IGNORECASE)
_ISO_DATE = re.compile(rf"\b{_YEAR}[-/.](\d{{1,2}})[-/.](\d{{1,2}})\b")
_CHINESE_DATE = re.compile(rf"{_YEAR}\s*年\s*(\d{{1,2}})\s*月\s*(\d{{1,2}})\s*日")
_ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4}
_CHINESE_ORDINALS = {"一": 1, "二": 2, "三": 3, "四": 4, "1": 1, "2": 2, "3": 3, "4": 4}
# "Q2 2023", "Q2 FY2023", "Q2'23", "2023 Q2", "2023Q2", "FY23 Q2", "fiscal 2023 Q2".
_Q_THEN_YEAR = re.compile(r"\bq([1-4])\s*(?:of\s+)?(?:fy|fiscal(?:\s+year)?)?\s*'?((?:19|20)?\d\d)\b", re.IGNORECASE)
_YEAR_THEN_Q = re.compile(r"\b(?:fy|fiscal(?:\s+year)?)?\s*((?:19|20)\d\d|\d\d)\s*[-_ ]?\s*q([1-4])\b", re.IGNORECASE)
_ORDINAL_QUARTER = re.compile(
    rf"\b(first|second|third|fourth|1st|2nd|3rd|4th)\s+(?:fiscal\s+)?quarter\s+(?:of\s+)?(?:(?:its|the|their|our)\s+)?"
    rf"(?:fiscal\s+(?:year\s+)?|fy\s*)?{_YEAR}\b",
    re.IGNORECASE,
)
_FISCAL_YEAR_ORDINAL = re.compile(
    rf"\b(?:fiscal\s+(?:year\s+)?|fy\s*){_YEAR}\s+(first|second|third|fourth|1st|2nd|3rd|4th)\s+quarter\b", re.IGNORECASE
)
_CHINESE_QUARTER = re.compile(rf"{_YEAR}\s*年?\s*(?:度)?\s*第?\s*([一二三四1-4])\s*季度?")
# Year to date, named by the report that covers it: "first half of 2023" is what the Q2 report states.
_TO_DATE = re.compile(
    rf"\b(?:first|1st)\s+(half|three\s+months|six\s+months|nine\s+months)\s+(?:of\s+)?(?:(?:its|the|their|our)\s+)?"
    rf"(?:fiscal\s+(?:year\s+)?|fy\s*)?{_YEAR}\b|\b(h1|h2)\s*(?:fy\s*)?{_YEAR}\b",
    re.IGNORECASE,
)
_TO_DATE_QUARTER = {"half": 2, "three months": 1, "six months": 2, "nine months": 3, "h1": 2, "h2": 4}
_CHINESE_TO_DATE = re.compile(rf"{_YEAR}\s*年\s*(?:度\s*)?(上半年|半年度?|中期|前三季度|前三个季度)")
_CHINESE_TO_DATE_QUARTER = {"上半年": 2, "半年": 2, "半年度": 2, "中期": 2, "前三季度": 3, "前三个季度": 3}
_ENDED = re.compile(r"\b(?:ended|ending|end(?:ed)?\s+on|as\s+of)\s*$", re.IGNORECASE)
_VERSION = re.compile(r"(?<![\w.])[vV](\d+)(?:\.(\d+))?(?:\.(\d+))?(?![\w.]*\d)|(?<![\w.])(\d+)\.(\d+)\.(\d+)(?![\w.]*\d)")
# "TiDB 7.5", "Python 3.11": a product-like word (Latin letters, or one capitalised) right before "N.N".
_NAMED_VERSION = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*[A-Za-z])\s*(\d+)\.(\d+)(?![\d.])")
# "8.x", "v7.x", "7.5.x": every version of a release line (asks for any 8.*); ``text.keywords`` reads it too.
VERSION_RANGE = re.compile(r"(?<![\w.])[vV]?(\d+(?:\.\d+)*)\.[xX](?![\w.])")
_YEAR_ALONE = re.compile(r"(?<![\d.,$])((?:19|20)\d\d)(?![\d%]|[.,]\d)")


@dataclass(frozen=True, order=True)
class Period:
    """One period a text names. Any field may be unknown (None)."""

    year: int | None = None
    quarter: int | None = None  # 1-4
    end: date | None = None  # the period's last day ("quarter ended April 1, 2023")
    version: tuple[int, ...] | None = None  # (7, 5, 0)

    @property
    def label(self) -> str:
        """Readable: "2023 Q2", "quarter ended 2023-04-01", "v7.5.0", "2023"."""
        if self.version is not None:
            return "v" + ".".join(map(str, self.version))
        if self.quarter is not None and self.year is not None:
            return f"{self.year} Q{self.quarter}"
        if self.end is not None:
            return f"period ended {self.end.isoformat()}"
        return str(self.year) if self.year is not None else ""


def _full_year(text: str) -> int:
    year = int(text)
    return year + 2000 if year < 100 else year


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def find_dates(text: str) -> list[date]:
    """Every calendar date written out in ``text``, in order of appearance."""
    return [parsed for _, _, parsed in date_spans(text)]


def date_spans(text: str) -> list[tuple[int, int, date]]:
    """(start, end, date) of every calendar date written out in ``text``, in order of appearance."""
    found: list[tuple[int, int, date]] = []
    for match in _ENGLISH_DATE.finditer(text):
        parsed = _safe_date(int(match.group(3)), MONTHS[match.group(1).lower().rstrip(".")], int(match.group(2)))
        if parsed:
            found.append((match.start(), match.end(), parsed))
    for pattern in (_ISO_DATE, _CHINESE_DATE):
        for match in pattern.finditer(text):
            parsed = _safe_date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            if parsed:
                found.append((match.start(), match.end(), parsed))
    return sorted(found, key=lambda item: item[0])


def period_end_dates(text: str) -> list[date]:
    """Dates written as the end of a period: "quarter ended April 1, 2023", "as of July 1, 2023", "截至2023年6月30日"."""
    ends: list[date] = []
    for match in _ENGLISH_DATE.finditer(text):
        if _ENDED.search(text[max(0, match.start() - 40) : match.start()]):
            parsed = _safe_date(int(match.group(3)), MONTHS[match.group(1).lower().rstrip(".")], int(match.group(2)))
            if parsed:
                ends.append(parsed)
    for match in _CHINESE_DATE.finditer(text):
        before = text[max(0, match.start() - 6) : match.start()]
        if "截至" in before or "截止" in before:
            parsed = _safe_date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            if parsed:
                ends.append(parsed)
    return ends


def spell_months(text: str) -> str:
    """Month names written out: "Three Months Ended Apr 1, 2023" -> "Three Months Ended April 1, 2023"."""
    return _MONTH_WORD.sub(lambda match: _MONTH_NAME[MONTHS[match.group(1).lower()]], text)


def find_quarters(text: str) -> list[Period]:
    """Year-and-quarter mentions: "Q2 2023", "2023 Q2", "second quarter of fiscal 2023", "2023年第二季度"."""
    found: list[tuple[int, Period]] = []
    for match in _Q_THEN_YEAR.finditer(text):
        found.append((match.start(), Period(year=_full_year(match.group(2)), quarter=int(match.group(1)))))
    for match in _YEAR_THEN_Q.finditer(text):
        found.append((match.start(), Period(year=_full_year(match.group(1)), quarter=int(match.group(2)))))
    for match in _ORDINAL_QUARTER.finditer(text):
        found.append((match.start(), Period(year=int(match.group(2)), quarter=_ORDINALS[match.group(1).lower()])))
    for match in _FISCAL_YEAR_ORDINAL.finditer(text):
        found.append((match.start(), Period(year=int(match.group(1)), quarter=_ORDINALS[match.group(2).lower()])))
    for match in _CHINESE_QUARTER.finditer(text):
        found.append((match.start(), Period(year=int(match.group(1)), quarter=_CHINESE_ORDINALS[match.group(2)])))
    unique: dict[Period, None] = {}
    for _, period in sorted(found, key=lambda item: item[0]):
        unique.setdefault(period)
    return list(unique)


def find_periods_to_date(text: str) -> list[Period]:
    """Year-to-date periods as the quarter whose report covers them: "first half of 2023" -> 2023 Q2,
    "first nine months of fiscal 2024" -> 2024 Q3, "2023年上半年" -> 2023 Q2, "2023年前三季度" -> 2023 Q3.

    Only for what a question asks: a document's own text speaks of last year's half-year too, so ingest
    does not read its period from these.
    """
    found: list[tuple[int, Period]] = []
    for match in _TO_DATE.finditer(text):
        if match.group(1):
            span = " ".join(match.group(1).lower().split())
            found.append((match.start(), Period(year=int(match.group(2)), quarter=_TO_DATE_QUARTER[span])))
        else:
            found.append((match.start(), Period(year=int(match.group(4)), quarter=_TO_DATE_QUARTER[match.group(3).lower()])))
    for match in _CHINESE_TO_DATE.finditer(text):
        found.append((match.start(), Period(year=int(match.group(1)), quarter=_CHINESE_TO_DATE_QUARTER[match.group(2)])))
    return list(dict.fromkeys(period for _, period in sorted(found, key=lambda item: item[0])))


def find_versions(text: str, *, named: bool = False) -> list[tuple[int, ...]]:
    """Versions: "v7.5", "V8.1.0", "7.5.0", "8.x" (any 8.*: ``(8,)``); with ``named``, also "TiDB 7.5"
    (a word right before "N.N")."""
    versions: dict[tuple[int, ...], None] = {}
    for match in VERSION_RANGE.finditer(text):
        versions.setdefault(tuple(int(part) for part in match.group(1).split(".")))
    for match in _VERSION.finditer(text):
        groups = match.groups()
        parts = groups[:3] if groups[0] is not None else groups[3:]
        versions.setdefault(tuple(int(part) for part in parts if part is not None))
    if named:
        for match in _NAMED_VERSION.finditer(text):
            if _YEAR_ALONE.fullmatch(match.group(1)):
                continue
            versions.setdefault((int(match.group(1)), int(match.group(2))))
    return list(versions)


def find_years(text: str) -> list[int]:
    """Four-digit years 1900-2099 standing alone (not inside 12,023 or 2023.5 or 2023%)."""
    return list(dict.fromkeys(int(year) for year in _YEAR_ALONE.findall(text)))


# A question's word that names a period rather than a thing: "q1", "fy2024", "h2", "2023", "23".
PERIOD_WORD = re.compile(r"q[1-4]|fy\d{0,4}|h[12]|(?:19|20)\d\d|\d\d", re.IGNORECASE)
_COHORT = re.compile(r"\s*级")  # "2019级学生": the class that enrolled in 2019, not the year something happened


def year_mentions(text: str) -> list[int]:
    """``find_years`` without years that name a cohort ("2019级"): the years a text speaks of.

    "在2021年的考试中，2019级学生通过率达93%" -> [2021].
    """
    return list(dict.fromkeys(int(match.group(1)) for match in _YEAR_ALONE.finditer(text)
                              if not _COHORT.match(text, match.end())))


def version_matches(asked: tuple[int, ...], document: tuple[int, ...]) -> bool:
    """"7.5" asks for any 7.5.x; "7.5.0" for exactly that one."""
    return document[: len(asked)] == asked
