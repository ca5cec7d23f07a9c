"""The facts an answer sentence states, and whether the passages the model was shown hold them.

A fact is what a reader checks first: a figure ("$94,836 million", "8.5%", "2.1 billion", "3万"), a
date ("April 1, 2023", "2019年12月19日", "12月19日"), a name ("Ashleigh Barty", "《三体》", "中法学院"),
an identifier (``KB_UI_PORT``, a backticked command) or a place in the documents ("page 2",
"第 3 页", "quick-reference.pdf"). The 1.5B model invents facts when the passages lack the answer
(a cost, a rate, a target, a winner from its own memory); a fact that no passage holds is the
strongest evidence that a sentence was invented. Wording is weak evidence (a right answer is often
worded differently from its passage), so wording is left to ``llm.grounding``'s score.

Worked example, with the shown passages "| Total net sales | 94,836 | 97,278 |" and "Tim Cook is CEO."::

    facts("Net sales were $94.8 billion, down 2.5% [1].")     -> figure 94.8 billion, figure 2.5%
    ShownFacts(...).missing(...)                               -> ()     94.8 billion ~ 94,836 (millions);
                                                                         2.5% = (97,278 - 94,836) / 97,278
    facts("Revenue was $100,000 and Satya Nadella said so.")  -> figure 100,000, name "Satya Nadella"
    ShownFacts(...).missing(...)                               -> ("100,000", "Satya Nadella")

How a fact is held:

- a figure by value, at its written precision and any scale of a thousand: "94.8 billion" is held by
  94,836 (a table in millions), "(1,568)" by "-1,568"; or computed from two figures of the passages
  the sentence cites (a difference, a sum, a share or a change in percent), when the sentence says it
  computed ("up", "of", "share", "比", "增长"...): "Data Center was 80% of revenue" from 14,514 and 18,120;
- a date by its parts, in any writing: "July 1, 2023" by "2023-07-01" or "2023年7月1日"; a year by
  its digits anywhere in the passages or their documents' headers;
- a name when each of its words stands in a passage (a Chinese name as a substring);
- an identifier as written, case aside;
- a place by the cited passages' own page and file (a passage never says which page it is on).

The question's own numbers and names are not facts of the answer: the user stated them.

Deliberately not here: whether a passage says what the sentence says (``llm.grounding``), deciding
to withdraw or to decline (``llm.answer``), facts written as words ("three quarters", "a third").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from llm.claims import spelled_numbers
from llm.sentences import sentence_spans
from text.keywords import chinese_names
from text.periods import MONTHS, date_spans, year_mentions

_SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "mn": 1e6, "m": 1e6, "billion": 1e9, "bn": 1e9, "b": 1e9,
           "trillion": 1e12, "千": 1e3, "万": 1e4, "百万": 1e6, "千万": 1e7, "亿": 1e8}
_FIGURE = re.compile(
    r"(?<![A-Za-z0-9_.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d,]*\.\d)\s*"
    r"(%|％|percent\b|per\s+cent\b|thousand\b|million\b|billion\b|trillion\b|bn\b|mn\b|[kKmMbB]\b|千万|百万|万|亿|千)?")
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_MONTH_DAY = re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?!,?\s*\d{{4}})", re.IGNORECASE)
_MONTH_YEAR = re.compile(rf"\b({_MONTH})\.?\s+((?:19|20)\d\d)\b", re.IGNORECASE)
_CHINESE_MONTH_DAY = re.compile(r"(?<![\d年])(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]")
# A span of days: "1月3-4日", "1月3日至4日", "January 3-4, 2019": each day counts as written.
_CHINESE_DAY_SPAN = re.compile(r"(?:((?:19|20)\d\d)\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*日?\s*[-–—~至到]\s*(\d{1,2})\s*[日号]")
_ENGLISH_DAY_SPAN = re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}})\s*[-–—]\s*(\d{{1,2}}),?(?:\s+((?:19|20)\d\d))?", re.IGNORECASE)
_CHINESE_YEAR_MONTH = re.compile(r"((?:19|20)\d\d)\s*年\s*(\d{1,2})\s*月(?!\s*\d{1,2}\s*[日号])")
_YEAR = re.compile(r"(?<![\d.,])((?:19|20)\d\d)(?![\d%]|[.,]\d)")
_IDENTIFIER = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+\b")
_BACKTICKED = re.compile(r"`([^`\n]{2,60})`")
_PAGE = re.compile(r"\bpages?\s+(\d{1,4})\b|\bp\.\s*(\d{1,4})\b|第\s*(\d{1,4})\s*页", re.IGNORECASE)
_FILE = re.compile(r"[\w\-.]{0,80}[\w\-]\.(?:pdf|md|markdown|docx|html?|txt)\b", re.IGNORECASE)
_NAME_RUN = re.compile(r"(?:[A-Z][\w&'’.-]*[a-z][\w&'’.-]*|[A-Z]{2,}[a-z]?)(?:\s+(?:of\s+|de\s+|van\s+)?(?:[A-Z][\w&'’.-]*))*")
_NOT_NAMES = frozenset(
    "the a an this that these those it its in on at for of and or but to from by with as is are was were be "
    "yes no not net total based according however also q1 q2 q3 q4 fy i we our they he she you".split()
) | {month.capitalize().lower() for month in MONTHS} | {
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
# Words that say a figure was worked out, not copied: only then is a computed figure accepted.
_COMPUTED = re.compile(
    r"\b(?:up|down|increase\w*|decrease\w*|grew|grow\w*|fell|fall\w*|rose|rise\w*|declin\w*|drop\w*|gain\w*|"
    r"difference|higher|lower|more|less|share|portion|percent(?:age)?\s+of|of\s+(?:the\s+)?total|of\s+\w+\s+revenue|"
    r"ratio|times|compared|combined|together|sum|total(?:ed|led|ing)?|margin|accounted|represent\w*|respectively)\b"
    r"|增长|增加|下降|减少|占|比|差|合计|共计|总计|提高|降低", re.IGNORECASE)
_QUARTERS = frozenset({"q1", "q2", "q3", "q4"})
_LIST_NUMBER = re.compile(r"^\s*(?:[-*+•]\s*)?\d{1,2}[.)、]\s")
SMALL_COUNT = 10  # a bare whole number below this is a count ("2 segments"), not a figure to check (docs/benchmarks.md)
MAX_COMPUTED_FIGURES = 120  # figures of the cited passages tried in pairs (a statement page holds about that many)


@dataclass(frozen=True)
class Fact:
    """One fact of a sentence: its kind, as written, and what it is compared by."""

    kind: str  # "figure", "date", "year", "name", "identifier", "page", "file"
    written: str
    value: float | tuple | str = ""
    decimals: int = 0  # figures: digits after the point as written
    scaled: bool = False  # figures: a scale word was written ("billion", "万")
    percent: bool = False


def facts(sentence: str, given: Iterable[str] = ()) -> tuple[Fact, ...]:
    """The facts ``sentence`` states (see module doc), leaving out what the question states (``given``)."""
    given_lower = {item.lower() for item in given}
    text = _LIST_NUMBER.sub(" ", sentence)
    found: list[Fact] = []
    for match in _PAGE.finditer(text):
        found.append(Fact("page", match.group(0), int(next(g for g in match.groups() if g))))
    text = _blank(_PAGE, text)
    for match in _FILE.finditer(text):
        found.append(Fact("file", match.group(0), match.group(0).lower()))
    text = _blank(_FILE, text)
    for match in _IDENTIFIER.finditer(text):
        if match.group(0).lower() not in given_lower:
            found.append(Fact("identifier", match.group(0), match.group(0).lower()))
    for match in _BACKTICKED.finditer(text):
        if match.group(1).lower() not in given_lower:
            found.append(Fact("identifier", match.group(1), match.group(1).lower()))
    text = _blank(_BACKTICKED, _blank(_IDENTIFIER, text))
    dates, text = _dates(text)
    # A date the question names ("the June 2023 quarter") is the question's, not the model's: whether the
    # passage speaks of that period is ``llm.verification.check_periods``' business.
    found += [date for date in dates if not any(date.written.lower() in item for item in given_lower)]
    for match in _YEAR.finditer(text):
        if match.group(1) not in given_lower:
            found.append(Fact("year", match.group(1), int(match.group(1))))
    named = text
    text = _blank(_YEAR, text)
    for match in _FIGURE.finditer(text):
        figure = _figure(match)
        if figure is not None and match.group(1).replace(",", "") not in given_lower:
            found.append(figure)
    found += _names(named, given_lower)
    return tuple(found)


def _blank(pattern: re.Pattern[str], text: str) -> str:
    """``text`` with ``pattern``'s matches replaced by as many spaces: later positions stay where they were."""
    return pattern.sub(lambda match: " " * len(match.group(0)), text)


def _dates(text: str) -> tuple[list[Fact], str]:
    """Dates as (year, month, day) with None for the parts not written; the text with them blanked."""
    found = []
    spans: list[tuple[int, int]] = []
    for start, end, day in date_spans(text):
        found.append(Fact("date", text[start:end], (day.year, day.month, day.day)))
        spans.append((start, end))
    partial = ((_MONTH_YEAR, lambda m: (int(m.group(2)), MONTHS[m.group(1).lower()], None)),
               (_MONTH_DAY, lambda m: (None, MONTHS[m.group(1).lower()], int(m.group(2)))),
               (_CHINESE_YEAR_MONTH, lambda m: (int(m.group(1)), int(m.group(2)), None)),
               (_CHINESE_MONTH_DAY, lambda m: (None, int(m.group(1)), int(m.group(2)))))
    for pattern, parts in partial:
        for match in pattern.finditer(text):
            if not _inside(match.span(), spans):
                found.append(Fact("date", match.group(0), parts(match)))
                spans.append(match.span())
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + " " * (end - start) + text[end:]
    return found, text


def _inside(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(start <= span[0] < end or start < span[1] <= end for start, end in spans)


def _figure(match: re.Match[str]) -> Fact | None:
    digits, unit = match.group(1), (match.group(2) or "").strip()
    value = float(digits.replace(",", ""))
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    percent = unit.lower() in ("%", "％", "percent") or unit.lower().startswith("per")
    scale = 1.0 if percent or not unit else _SCALES.get(unit.lower(), _SCALES.get(unit, 1.0))
    if not percent and not unit and value < SMALL_COUNT and decimals == 0:
        return None  # "2 segments", "step 3": small counts are checked as words by llm.grounding
    return Fact("figure", match.group(0).strip(), value * scale, decimals, scaled=scale != 1.0, percent=percent)


def _names(sentence: str, given: set[str]) -> list[Fact]:
    """Runs of capitalised words (a lone one at the start of the sentence is just its first word),
    and Chinese names (``text.keywords.chinese_names``)."""
    found = []
    start = len(sentence) - len(sentence.lstrip(" -*•\t"))
    for match in _NAME_RUN.finditer(sentence):
        words = match.group(0).split()
        if match.start() == start and len(words) == 1:
            continue
        parts = [w.strip(".,;:!?()[]'’\"").removesuffix("'s").removesuffix("’s") for w in words]
        parts = [p for p in parts if len(p) >= 3 and p.lower() not in _NOT_NAMES and p[:2].lower() not in _QUARTERS
                 and p.lower() not in given and not any(p.lower() in g for g in given)]
        if parts:
            found.append(Fact("name", " ".join(parts), tuple(p.lower() for p in parts)))
    for name in chinese_names(sentence):
        if name.lower() not in given and not any(name in g for g in given):
            found.append(Fact("name", name, name))
    return found


@dataclass(frozen=True)
class _Figure:
    value: float
    decimals: int


class ShownFacts:
    """The passages the model was shown, read once for checking facts against.

    ``passages``: number -> the text shown under that number, with its document's header.
    ``locations``: number -> (source, page) of that passage.
    """

    def __init__(self, passages: Mapping[int, str], locations: Mapping[int, tuple[str, int | None]] | None = None):
        self.passages = dict(passages)
        self.locations = dict(locations or {})
        self.lowered = "\n".join(passages.values()).lower()

    @cached_property
    def _figures(self) -> dict[int, list[_Figure]]:
        """Each passage's figures as written and, when a scale word follows ("3万", "2.1 billion"), scaled too."""
        found: dict[int, list[_Figure]] = {}
        for number, text in self.passages.items():
            figures = found[number] = []
            for match in _FIGURE.finditer(text):
                value = float(match.group(1).replace(",", ""))
                decimals = len(match.group(1).split(".")[1]) if "." in match.group(1) else 0
                figures.append(_Figure(value, decimals))
                scale = _SCALES.get((match.group(2) or "").strip().lower(), _SCALES.get((match.group(2) or "").strip()))
                if scale:
                    figures.append(_Figure(value * scale, decimals))
            # Counts a passage spells out ("three segments", "三个") hold the digits a sentence writes.
            figures += [_Figure(float(value), 0) for value in spelled_numbers(text)]
        return found

    @cached_property
    def _dates(self) -> set[tuple]:
        """Every date the passages write, as (year, month, day), also without the parts a sentence may leave out;
        a day without a year counts for the years its passage speaks of ("2月21日" on the 2015 notice)."""
        found = set()
        for text in self.passages.values():
            written = [fact.value for fact in _dates(text)[0]]
            for match in _CHINESE_DAY_SPAN.finditer(text):
                year = int(match.group(1)) if match.group(1) else None
                written += [(year, int(match.group(2)), int(match.group(3))), (year, int(match.group(2)), int(match.group(4)))]
            for match in _ENGLISH_DAY_SPAN.finditer(text):
                year, month = (int(match.group(4)) if match.group(4) else None), MONTHS[match.group(1).lower()]
                written += [(year, month, int(match.group(2))), (year, month, int(match.group(3)))]
            years = set(year_mentions(text))
            for year, month, day in written:
                found |= {(year, month, day), (None, month, day), (year, month, None)}
                if year is None:
                    found |= {(spoken, month, day) for spoken in years} | {(spoken, month, None) for spoken in years}
        return found

    @cached_property
    def _pieces(self) -> list[tuple[int, str, list[_Figure]]]:
        """Each passage's sentences (table rows are lines) with the figures they write."""
        pieces = []
        for number, text in self.passages.items():
            for start, end in sentence_spans(text, 0, len(text), wrapped_lines=True):
                piece = text[start:end]
                figures = [_Figure(float(m.group(1).replace(",", "")),
                                   len(m.group(1).split(".")[1]) if "." in m.group(1) else 0)
                           for m in _FIGURE.finditer(piece)]
                if figures:
                    pieces.append((number, piece, figures))
        return pieces

    def contexts(self, fact: Fact) -> list[tuple[int, str]]:
        """(passage number, sentence) of every passage sentence that writes the figure ``fact`` states."""
        return [(number, piece) for number, piece, figures in self._pieces
                if any(_same_figure(fact, figure) for figure in figures)]

    def missing(self, sentence: str, sentence_facts: Iterable[Fact], cited: Iterable[int] = ()) -> tuple[Fact, ...]:
        """The facts of ``sentence`` that no shown passage holds (a page: none of the cited passages' own)."""
        cited = [n for n in cited if n in self.passages] or list(self.passages)
        absent = []
        for fact in sentence_facts:
            if self._holds(fact, cited):
                continue
            if fact.kind == "figure" and computes(sentence) and self._computed(fact, cited):
                continue
            absent.append(fact)
        return tuple(absent)

    def _holds(self, fact: Fact, cited: list[int]) -> bool:
        if fact.kind == "figure":
            return any(_same_figure(fact, figure) for figures in self._figures.values() for figure in figures)
        if fact.kind == "date":
            return fact.value in self._dates or (fact.value[2] is None and fact.value[0] is not None
                                                 and f"{fact.value[0]}" in self.lowered and self._month_near(fact))
        if fact.kind == "year":
            return re.search(rf"(?<!\d){fact.value}(?!\d)", self.lowered) is not None
        if fact.kind == "name":
            if isinstance(fact.value, str):
                return fact.value.lower() in self.lowered
            return all(re.search(rf"\b{re.escape(part)}", self.lowered) for part in fact.value)
        if fact.kind == "identifier":
            return fact.value in self.lowered
        if fact.kind == "page":
            return any(self.locations.get(n, ("", None))[1] == fact.value for n in cited)
        if fact.kind == "file":  # "AAPL.pdf" of "2023 Q2 AAPL.pdf": file names may hold spaces
            return any(source.lower().endswith(fact.value) for source, _ in self.locations.values())
        return True

    def _month_near(self, fact: Fact) -> bool:
        year, month, _ = fact.value
        return any(d[0] == year and d[1] == month for d in self._dates)

    def _computed(self, fact: Fact, cited: list[int]) -> bool:
        """Whether two figures of the cited passages make ``fact`` (difference, sum, share, change in percent)."""
        figures = list(dict.fromkeys(f.value for n in cited for f in self._figures.get(n, ()) if f.value))
        figures = figures[:MAX_COMPUTED_FIGURES]
        for i, a in enumerate(figures):
            for b in figures[i + 1:]:
                candidates = (abs(a - b), a + b) if not fact.percent else (
                    100 * a / b, 100 * b / a, 100 * abs(a - b) / a, 100 * abs(a - b) / b)
                if any(_close(fact, c, scales=not fact.percent) for c in candidates):
                    return True
        return False


def computes(sentence: str) -> bool:
    """Whether the sentence says it worked a figure out (a change, a share, a sum)."""
    return _COMPUTED.search(sentence) is not None


def _same_figure(fact: Fact, figure: _Figure) -> bool:
    if fact.decimals > figure.decimals and not fact.scaled and not fact.percent:
        return False  # more precision than the passage writes is invented precision
    return _close(fact, figure.value, scales=not fact.percent)


def _close(fact: Fact, value: float, scales: bool) -> bool:
    """``value`` (at a scale of a thousand, when ``scales``) rounds to the fact as written."""
    step = _step(fact)
    for scale in ((1.0, 1e3, 1e6, 1e9) if scales else (1.0,)):
        if abs(abs(value) * scale - abs(fact.value)) <= step / 2 + 1e-9 * max(1.0, abs(fact.value)):
            return True
    return False


def _step(fact: Fact) -> float:
    """The unit of the fact's last written digit, in its value's scale: "94.8 billion" -> 0.1e9."""
    number = re.search(r"\d[\d,]*(?:\.\d+)?", fact.written)
    digits = number.group(0).replace(",", "") if number else "0"
    written = float(digits) or 1.0
    scale = fact.value / written if fact.scaled and written else 1.0
    return 10 ** -fact.decimals * scale
