"""Which documents a question is about, from the names and periods it gives.

A question that names an organisation ("Apple", "AAPL"), a period ("Q2 2023",
"the quarter ended April 1, 2023", "2018 年第一季度", "v7.5"), or asks for "the
latest" is about particular documents; passages of other documents that happen
to match its words (Intel's filing for an Apple question) are wrong however
well they match. ``scope_question`` matches the question against the
collection's ``DocumentRecord``s:

- names: a word of the question that is in a document's organisation or file
  name, and not in every document's (so "TiDB" in a collection of TiDB pages
  names nothing). Several names widen the scope (Apple *and* Microsoft).
- periods: a quarter, a period end date (within a week: "March 31" finds the
  quarter that ended April 1), a year, or a version; several periods widen it.
- names and periods narrow each other: Apple's documents of 2023 Q2.
- a span ("from Q3 2022 to Q3 2023", "between 2021 and 2023", "从2022年第三季度到2023年第三季度")
  takes every period from the first to the last, not just the two named.
- a quarter "of fiscal 2023" is matched against the quarter a document's own
  text names most (NVIDIA's filing for the quarter ended October 2022 speaks of
  "the third quarter of fiscal 2023"), not the calendar quarter of its file name.
- "latest", "most recent", "最新", "最近一期": the newest document by its date,
  per organisation named.
- several organisations ("Compare Amazon, Intel and Microsoft …"): the answer needs
  each one's passage (``Scope.several``), however far another one's passages outrank it; with one
  document each (``Scope.one_each``) each is asked alone, one line per organisation, as periods are.
- across periods ("over the quarters", "each quarter", "各季度", "各版本"): the
  answer needs one passage from each document in scope, in date order
  (``Scope.across``).
- a list of documents ("which filings …", "how many of the reports …", "哪些版本……", "列出……"):
  each of the best documents' best passage, one line per document (``Scope.lists``), scoped or not.

When names and periods narrow to nothing (a quarter the collection does not
hold), the question is left unscoped: retrieval and abstention then see every
document, and the refusal names what no passage mentions.

Worked example, with the 20 10-Q filings "2022 Q3 AAPL.pdf" ... "2023 Q3 NVDA.pdf"::

    scope_question(analyse_question("What were Apple's net sales in Q2 2023?"), records)   -> ("2023 Q2 AAPL.pdf",)
    scope_question(analyse_question("Nvidia revenue in its latest 10-Q"), records)         -> ("2023 Q3 NVDA.pdf",)
    scope_question(analyse_question("How did Intel's revenue change over the quarters?"), records)
        -> the 4 Intel filings, oldest first, across=True

``prompt_hits`` picks the passages for the prompt from the ranked hits: the
best few; for ``across`` each document's best, oldest first; for ``several``
each document's best first, then the best of the rest; for ``lists`` the best
passage of each of the best documents.

Deliberately not here: how retrieval searches within the scope (``retrieval.fusion``
filters candidates to it), synonyms of names ("Big Blue"), fiscal-calendar arithmetic (a fiscal
quarter no document's text names is not computed from a fiscal year's start).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from datetime import date

from core.types import Hit, Question
from text.periods import find_dates, find_periods_to_date, find_quarters, find_versions, find_years, version_matches
from text.documents import DocumentRecord
from text.keywords import chinese_words

DATE_TOLERANCE_DAYS = 7
_LATIN = re.compile(r"[a-z0-9][a-z0-9&]*(?:[.\-][a-z0-9&]+)*")
_LATEST = re.compile(
    r"\b(latest|most\s+recent|newest|last\s+(?:reported\s+)?(?:quarter|filing|report|release|version))\b|最新|最近一期|最近的|最近一次|最后一期",
    re.IGNORECASE,
)
_ACROSS = re.compile(
    r"\b(over\s+(?:the|these|those)\s+(?:quarters|periods|filings|reports|years|versions|releases)|over\s+time|"
    r"across\s+(?:the\s+|these\s+|all\s+)?(?:quarters|periods|filings|reports|versions|releases)|"
    r"(?:each|every)\s+(?:quarter|period|filing|report|version|release)|quarter[\s-]+(?:by|over|to)[\s-]+quarter|"
    r"across\s+(?:the\s+|these\s+|all\s+)?\d*-?[a-z]*s\s+in\s+this\s+set|across\s+(?:its|their)\s+(?:filings|reports)|"
    r"each\s+of\s+(?:\S+\s+){1,2}?(?:filings|reports|10-qs|quarters|periods|versions|releases)|"
    r"(?:each|every)\s+(?:\w+\s+)?(?:10-qs?|filing|report)|"
    r"trend(?:ed|ing|s)?)\b|各季度|每个?季度|各个?季度|逐季|历个?季度|各期|各个?版本|每个版本|历个?版本|各次|历次|各年|历年|每一?年",
    re.IGNORECASE,
)
_DOCUMENT_NOUNS = (r"filings|documents|reports|files|pages|releases|release\s+notes|notes|versions|notices|quarters|years|"
                   r"protocols|plans|papers|10-qs|articles|manuals|guides|tutorials|tutorial\s+pages|announcements|"
                   r"policies|contracts|letters|minutes|specifications|statements")
_DOCUMENT_NOUNS_ZH = r"(?:版本|文档|文件|页面|报告|通知|年份|年|季度|发版说明|简章|公告|文章|教程)"
# A question whose answer is a list of documents: "which filings …", "in which years …", "how many of the reports …",
# "list the pages that …", "哪些版本……", "列出各年……". Answered one document at a time, one line each, naming it.
_LISTS = re.compile(
    rf"\bwhich\s+(?:of\s+(?:the|these|those|\S+)\s+)?(?:\S+\s+){{0,2}}?(?:{_DOCUMENT_NOUNS})\b|"
    rf"\bin\s+which\s+(?:of\s+\S+\s+)?(?:\S+\s+)?(?:{_DOCUMENT_NOUNS})\b|"
    rf"\bhow\s+many\s+(?:of\s+(?:the|these)\s+)?(?:\S+\s+)?(?:{_DOCUMENT_NOUNS})\b|"
    rf"\blist\s+(?:all\s+|the\s+|each\s+|every\s+)?(?:\S+\s+){{0,3}}?(?:{_DOCUMENT_NOUNS})\b|"
    rf"(?:哪些|哪几个?|哪一些|有几(?:个|份|篇)|多少(?:个|份|篇)|几个|几份|几篇|列出|列举)[^，。？?]{{0,12}}?{_DOCUMENT_NOUNS_ZH}",
    re.IGNORECASE)
# A comparison with another period of the same document: "compared with Q2 2022", "the year-earlier quarter".
_COMPARES = re.compile(
    r"\b(compar\w*|versus|vs\.?|year[\s-]+(?:ago|earlier|before)|prior[\s-]+(?:year|period|quarter)|previous|"
    r"preceding|last\s+year)\b|同比|环比|相比|比较|对比|上年同期|去年同期", re.IGNORECASE)
_GENERIC = frozenset(
    "the and for with from inc corp corporation company co ltd limited llc plc group holdings of report reports "
    "annual quarterly form notes note doc docs document final draft copy version release new".split()
)
# Two periods joined as a span: "from Q3 2022 to Q3 2023", "between 2021 and 2023", "Q1 through Q3 2023", "从…到…".
_SPAN = re.compile(r"\b(?:from|between)\b.+?\b(?:to|through|until|and)\b|\bthrough\b|[至到]", re.IGNORECASE)
_FISCAL = re.compile(r"\bfiscal\b|\bfy\s*'?\d|财年|财政年度|会计年度", re.IGNORECASE)
_LEGAL_FORMS_ZH = ("股份有限公司", "有限责任公司", "有限公司", "集团")


@dataclass(frozen=True)
class Scope:
    """The documents a question names, best first: for ``across``, in date order."""

    documents: tuple[str, ...] = ()  # sources; empty: the question names no document (search everything)
    names: tuple[str, ...] = ()  # the question's words that named documents, for showing why
    periods: tuple[str, ...] = ()  # the periods it named, readable
    latest: bool = False
    across: bool = False
    several: bool = False  # names more than one organisation: each document in scope gets a passage
    one_each: bool = False  # ``several``, one document each: answered one document at a time, like ``across``
    compares: bool = False  # compares periods ("Q2 2023 compared with Q2 2022", "the year-earlier quarter")
    lists: bool = False  # asks which documents (or a line for each): answered one document at a time, each named
    # For ``across``: the question as asked of one document ("How has X changed over the quarters?" ->
    # "What was X?"); asked of each document as it is, the small model computes a change instead of a figure.
    per_document_question: str = ""

    @property
    def scoped(self) -> bool:
        return bool(self.documents)


@lru_cache(maxsize=8192)  # asked for every record on every question; records are frozen
def document_names(record: DocumentRecord) -> frozenset[str]:
    """The words that name this document: its organisation's and its file name's, without period words."""
    words: set[str] = set()
    organisation = (record.organisation or "").lower()
    for form in _LEGAL_FORMS_ZH:
        organisation = organisation.replace(form, " ")
    words.update(_words(organisation))
    words.update(record.name_words)
    return frozenset(w for w in words if _is_name(w))


def _is_name(word: str) -> bool:
    if word in _GENERIC or re.fullmatch(r"\d+(\.\d+)*|q[1-4]|fy\d*|v\d+.*", word):
        return False
    return len(word) >= 2 if re.search(r"[\u3400-\u9fff]", word) else len(word) >= 3


def _words(text: str) -> set[str]:
    """Lower-cased Latin words ("amazon.com" also as "amazon"), possessives dropped, and Chinese words."""
    lowered = re.sub(r"['’]s\b", "", text.lower())
    words: set[str] = set()
    for word in _LATIN.findall(lowered):
        words.add(word)
        words.update(part for part in re.split(r"[.\-]", word) if part)
    words.update(chinese_words(lowered))
    return words


def _named_periods(question: str) -> tuple[list, list[date], list[int], list[tuple[int, ...]]]:
    quarters = find_quarters(question)
    quarters += [period for period in find_periods_to_date(question) if period not in quarters]  # "first half of 2023"
    dates = find_dates(question)
    versions = find_versions(question, named=True)
    # A year counts alone only when no quarter or date already says it.
    covered = {q.year for q in quarters} | {d.year for d in dates}
    years = [y for y in find_years(question) if y not in covered]
    return quarters, dates, years, versions


def _period_matches(record: DocumentRecord, quarters, dates, years, versions, *, fiscal: bool = False,
                    span: bool = False) -> bool:
    # "Q3 of fiscal 2023" is the quarter the document's own text calls so (its last recorded quarter: NVIDIA's
    # "2022 Q3" filing speaks of "the third quarter of fiscal 2023"), not the calendar quarter of its file name.
    known = record.quarters[-1:] if fiscal else record.quarters
    if quarters and span and len(quarters) > 1:
        first, last = min((q.year, q.quarter) for q in quarters), max((q.year, q.quarter) for q in quarters)
        if any(first <= _quarter_key(k) <= last for k in known):
            return True
    elif quarters and any(f"{q.year}-Q{q.quarter}" in known for q in quarters):
        return True
    if dates and record.date is not None and (record.period_end or record.published):
        tolerance = DATE_TOLERANCE_DAYS
        if span and len(dates) > 1:
            if (min(dates) - record.date).days <= tolerance and (record.date - max(dates)).days <= tolerance:
                return True
        elif any(abs((d - record.date).days) <= tolerance for d in dates):
            return True
    record_years = {record.year} | ({record.date.year} if record.period_end else set())
    if years and span and len(years) > 1:
        if any(y is not None and min(years) <= y <= max(years) for y in record_years):
            return True
    elif years and any(y in record_years for y in years):
        return True
    version = record.version_tuple
    return bool(versions and version and any(version_matches(v, version) for v in versions))


def _quarter_key(known: str) -> tuple[int, int]:
    year, quarter = known.split("-Q")  # "2023-Q2", as records store them
    return int(year), int(quarter)


def _has_period(record: DocumentRecord) -> bool:
    return bool(record.quarters or record.period_end or record.published or record.version or record.year)


def scope_question(question: Question, records: Mapping[str, DocumentRecord]) -> Scope:
    """The documents the question names (see module doc); an empty ``Scope`` when it names none.

    Read from ``question.search_text``: a follow-up names what the question it follows named.

    Only documents *of another* organisation or period are left out: a document that states no
    organisation (a handbook) or no period (a reference page) stays in scope, since "TiDB 8.1" in a
    question about a setting may mean the product at that version, which an unversioned page describes.
    """
    if len(records) < 2:
        return Scope()
    text = question.search_text
    lists = bool(_LISTS.search(text))
    # Unscoped, "each year's …" / "各年……" asks for a line per document too ("列出各年招生简章的发布日期").
    unscoped_lists = lists or bool(_ACROSS.search(text))
    names = {source: document_names(record) for source, record in records.items()}
    everywhere = frozenset.intersection(*names.values()) if names else frozenset()
    asked = _words(text)
    named_words = sorted(w for w in asked if w not in everywhere and any(w in n for n in names.values()))
    by_name: dict[str, set[str]] = {w: {s for s, n in names.items() if w in n} for w in named_words}
    in_scope = set(records)
    if by_name:
        named = set().union(*by_name.values())
        in_scope = {s for s in records if s in named or not records[s].organisation}

    quarters, dates, years, versions = _named_periods(text)
    periods_named = bool(quarters or dates or years or versions)
    if periods_named:
        fiscal = bool(_FISCAL.search(text))
        span = bool(_SPAN.search(text))

        def matches(source: str) -> bool:
            return _period_matches(records[source], quarters, dates, years, versions, fiscal=fiscal, span=span)

        in_period = {s for s in in_scope if matches(s) or not _has_period(records[s])}
        if not any(matches(s) for s in in_period):
            return Scope(lists=unscoped_lists)  # a period no document has: leave it to retrieval and abstention
        in_scope = in_period

    latest = bool(_LATEST.search(text)) and not periods_named
    if latest:
        groups = [group & in_scope for group in by_name.values()] or [in_scope]
        newest: set[str] = set()
        for group in groups:
            dated = [s for s in group if records[s].date is not None]
            if dated:
                top = max(records[s].date for s in dated)
                newest.update(s for s in dated if records[s].date == top)
        if newest:
            in_scope = newest | {s for s in in_scope if records[s].date is None}

    if not in_scope or in_scope == set(records):
        return Scope(lists=unscoped_lists)  # nothing named, or everything: no narrowing
    ordered = sorted(in_scope, key=lambda s: (records[s].date or date.min, records[s].version_tuple or (), s))
    dated = [s for s in ordered if records[s].date is not None or records[s].version is not None]
    across = bool(_ACROSS.search(text)) and len(dated) > 1
    if across:
        ordered = dated  # one passage per period: undated pages have no period to report
    groups = {frozenset(group & in_scope) for group in by_name.values()}
    several = not across and len(groups) > 1
    # Several organisations with one document each ("Compare Amazon, Intel and Microsoft in Q3 2023"): each
    # is asked alone, as periods are; given together, the 1.5B model mixes up whose figure is whose.
    one_each = several and all(len(group) == 1 for group in groups) and len(groups) == len(in_scope)
    period_labels = [q.label for q in quarters] + [d.isoformat() for d in dates] + [str(y) for y in years] + [
        "v" + ".".join(map(str, v)) for v in versions]
    return Scope(documents=tuple(ordered), names=tuple(named_words), periods=tuple(period_labels),
                 latest=latest, across=across, several=several, one_each=one_each,
                 compares=bool(_COMPARES.search(text)), lists=lists and not across,
                 per_document_question=single_period_question(text) if across else "")


def named_period(scope: Scope, records: Mapping[str, DocumentRecord]) -> str:
    """The period of the one document a question names by one period or as the latest, else "": its tables
    then show that period's columns (``llm.prompt.linearise_tables``), not last year's beside them.

    Not when the question compares periods ("Q2 2023 compared with Q2 2022", "the year-earlier quarter"):
    the other period's column must stay.
    """
    if len(scope.documents) != 1 or scope.compares or len(scope.periods) > 1 or not (scope.periods or scope.latest):
        return ""
    record = records.get(scope.documents[0])
    return record.period_label if record else ""


def prompt_hits(hits: Sequence[Hit], scope: Scope, best: int, across: int) -> tuple[Hit, ...]:
    """The hits for the prompt: the ``best`` first; across periods, or several organisations with one
    document each, each document's best, oldest first (the newest ``across`` documents when there are more)."""
    if scope.lists and not scope.across:
        documents: dict[str, Hit] = {}  # each document's best hit, best documents first
        for hit in hits:
            documents.setdefault(hit.chunk.source, hit)
        return tuple(list(documents.values())[:across])
    if not scope.across and not scope.several:
        return tuple(hits[:best])
    first: dict[str, Hit] = {}
    for hit in hits:
        first.setdefault(hit.chunk.source, hit)
    if scope.across or scope.one_each:
        ordered = [first[source] for source in scope.documents if source in first]
        return tuple(ordered[-across:])
    in_scope = set(scope.documents)
    firsts = [i for i, hit in enumerate(hits) if hit.chunk.source in in_scope and first[hit.chunk.source] is hit][:best]
    rest = [i for i in range(len(hits)) if i not in firsts][:best - len(firsts)]
    return tuple(hits[i] for i in sorted(firsts + rest))


_HOW_CHANGED = re.compile(
    r"^\s*how\s+(?:has|have|did|does|do|is|are)\s+(?:the\s+)?(.+?)\s+(?:changed?|evolved?|trended|developed|moved|grown|"
    r"grow|varied|vary|shifted|been\s+(?:changing|trending))\b", re.IGNORECASE)
_TREND_OF = re.compile(r"^\s*what\s+(?:is|was|has\s+been)\s+the\s+(?:trend|change|development)\s+(?:of|in)\s+(.+?)(?:\?|$)",
                       re.IGNORECASE)
_CHINESE_CHANGE = re.compile(r"(?:是)?(?:如何|怎样|怎么)(?:变化|变动|发展)的?|有(?:什么|何)变化|的?变化(?:趋势|情况)?(?:如何|怎样)?|的?趋势")


_PERIOD_WORDS = r"(?:(?:Q[1-4]\s+|fiscal\s+)?\d{4}(?:\s+Q[1-4])?|\w+\s+\d{1,2},?\s+\d{4})"
_SPAN_PHRASE = re.compile(rf"\s*\b(?:from|between)\s+{_PERIOD_WORDS}\s+(?:to|through|and)\s+{_PERIOD_WORDS}", re.IGNORECASE)


def single_period_question(question: str) -> str:
    """An across-periods question as asked of one period (see ``Scope.per_document_question``).

    "How have Apple's net sales changed over the quarters?" -> "What were Apple's net sales?";
    "英特尔各季度的营业收入如何变化？" -> "英特尔的营业收入是多少？". Other wordings lose only their across phrase.
    """
    question = _SPAN_PHRASE.sub("", question)
    match = _HOW_CHANGED.match(question) or _TREND_OF.match(question)
    if match:
        subject = _ACROSS.sub("", match.group(1)).strip(" ,")
        verb = "were" if re.search(r"\b(sales|revenues|expenses|earnings|costs|margins|assets|liabilities|shares)\b",
                                    subject, re.IGNORECASE) else "was"
        return f"What {verb} {subject}?"
    if re.search(r"[\u3400-\u9fff]", question):
        changed = _CHINESE_CHANGE.sub("是多少", _ACROSS.sub("", question))
        return re.sub(r"(是多少)+", "是多少", changed).replace("的的", "的")
    stripped = re.sub(r"\s+", " ", _ACROSS.sub("", question)).replace(" ?", "?").strip()
    return re.sub(r"\s+(?:in|for|during|from|of|on|across|over)\s*(\?|$)", r"\1", stripped)
