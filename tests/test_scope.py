"""Document records and question scoping: periods as people write them, and the documents a question names."""

from __future__ import annotations

from datetime import date

from core.types import LoadedFile, Page
from text.periods import (Period, find_dates, find_periods_to_date, find_quarters, find_versions, find_years,
                            period_end_dates)
from ingest.records import describe_document
from retrieval.scope import prompt_hits, scope_question
from retrieval.question import analyse_question


def test_periods_in_english_and_chinese():
    assert find_quarters("2023 Q2 AAPL.pdf") == [Period(year=2023, quarter=2)]
    assert find_quarters("What were net sales in Q3 2022?") == [Period(year=2022, quarter=3)]
    assert find_quarters("in the second quarter of fiscal 2023") == [Period(year=2023, quarter=2)]
    assert find_quarters("2018 年第一季度报告") == [Period(year=2018, quarter=1)]
    assert find_quarters("2023年第三季度") == [Period(year=2023, quarter=3)]
    assert period_end_dates("For the quarterly period ended April 1, 2023\nor") == [date(2023, 4, 1)]
    assert find_dates("发版日期：2023 年 12 月 1 日") == [date(2023, 12, 1)]
    assert find_versions("TiDB 7.5.0 Release Notes") == [(7, 5, 0)]
    assert find_versions("TiDB 7.5 里这个参数的默认值", named=True) == [(7, 5)]
    assert find_versions("costs 3.5 dollars") == []  # a number, not a version
    assert find_versions("TiDB 8.x 各版本") == [(8,)]  # every 8.* release
    assert find_years("net sales of 2,023 units in 2022, up 2023%") == [2022]


def _document(source: str, first_page: str, *more: str, title: str | None = None) -> LoadedFile:
    pages = tuple(Page(source=source, page=n, text=text) for n, text in enumerate((first_page, *more), start=1))
    return LoadedFile(source=source, content_sha256="0" * 64, pages=pages, title=title)


def test_record_reads_title_organisation_and_period():
    cover = ("UNITED STATES SECURITIES AND EXCHANGE COMMISSION\nFORM 10-Q\n"
             "For the quarterly period ended April 1, 2023\nApple Inc.\n(Exact name of Registrant)\n")
    record = describe_document(_document("filings/2023 Q2 AAPL.pdf", cover), metadata_title="0000320193-23-000064")
    assert record.title == "2023 Q2 AAPL"  # an accession number is not a title; the file name is
    assert record.organisation == "Apple Inc."
    assert (record.year, record.quarter, record.period_end) == (2023, 2, "2023-04-01")
    assert record.date == date(2023, 4, 1)
    assert record.header == "2023 Q2 AAPL · Apple Inc. · quarter ended April 1, 2023"
    assert "aapl" in record.name_words and "q2" in record.name_words

    release = describe_document(_document("releases/release-7.5.0.md", "# TiDB 7.5.0 Release Notes\n\n发版日期：2023 年 12 月 1 日\n"))
    assert release.version == "7.5.0" and release.published == "2023-12-01"
    # Evaluation passages (no file name) get no header from their text: their indexing stays as it was.
    passage = describe_document(_document("scifact/123", "Apple Inc.\nThe quarter ended April 1, 2023."))
    assert passage.header == "" and passage.organisation is None


def _records(specs):
    records = {}
    for source, organisation, ended in specs:
        cover = f"{organisation}\nFor the quarterly period ended {ended}\n"
        records[source] = describe_document(_document(source, cover))
    return records


FILINGS = _records([
    ("2023 Q1 ACME.pdf", "Acme Corporation", "March 31, 2023"),
    ("2023 Q2 ACME.pdf", "Acme Corporation", "June 30, 2023"),
    ("2023 Q3 ACME.pdf", "Acme Corporation", "September 30, 2023"),
    ("2023 Q1 GLOBEX.pdf", "Globex Inc.", "April 1, 2023"),
    ("2023 Q2 GLOBEX.pdf", "Globex Inc.", "July 1, 2023"),
    ("2023 Q3 GLOBEX.pdf", "Globex Inc.", "September 30, 2023"),
])


def test_a_question_naming_an_organisation_and_period_is_scoped_to_that_document():
    assert scope_question(analyse_question("What was Acme's revenue in Q2 2023?"), FILINGS).documents == ("2023 Q2 ACME.pdf",)
    assert scope_question(analyse_question("Globex revenue for the quarter ended March 31, 2023"), FILINGS).documents == ("2023 Q1 GLOBEX.pdf",)
    assert scope_question(analyse_question("GLOBEX net income, third quarter of 2023"), FILINGS).documents == ("2023 Q3 GLOBEX.pdf",)
    both = scope_question(analyse_question("Compare Acme and Globex revenue in Q1 2023"), FILINGS)
    assert set(both.documents) == {"2023 Q1 ACME.pdf", "2023 Q1 GLOBEX.pdf"} and both.several
    assert not scope_question(analyse_question("What was Acme's revenue in Q2 2023?"), FILINGS).several


def test_several_organisations_each_get_a_passage_however_far_down_they_rank():
    from core.types import Chunk, Hit

    scope = scope_question(analyse_question("Compare Acme and Globex revenue in Q1 2023 and Q2 2023"), FILINGS)
    assert scope.several and not scope.one_each  # two filings each
    hits = [Hit(chunk=Chunk(source, 1, (), 0, 1, f"{source} {n}"), first_stage_score=1.0 - rank / 10, first_stage_rank=rank + 1)
            for rank, (source, n) in enumerate([("2023 Q1 ACME.pdf", n) for n in range(6)] + [("2023 Q1 GLOBEX.pdf", 0)])]
    chosen = prompt_hits(hits, scope, best=5, across=6)
    assert [h.chunk.text for h in chosen] == ["2023 Q1 ACME.pdf 0", "2023 Q1 ACME.pdf 1", "2023 Q1 ACME.pdf 2",
                                              "2023 Q1 ACME.pdf 3", "2023 Q1 GLOBEX.pdf 0"]
    # One filing each: each is answered alone, from its own best passage.
    one_each = scope_question(analyse_question("Compare Acme and Globex revenue in Q1 2023"), FILINGS)
    assert one_each.one_each
    assert [h.chunk.text for h in prompt_hits(hits, one_each, best=5, across=6)] == ["2023 Q1 ACME.pdf 0",
                                                                                      "2023 Q1 GLOBEX.pdf 0"]


def test_latest_and_across_periods():
    assert scope_question(analyse_question("What is Globex's revenue in its latest quarter?"), FILINGS).documents == ("2023 Q3 GLOBEX.pdf",)
    across = scope_question(analyse_question("How has Acme's revenue changed over the quarters?"), FILINGS)
    assert across.across and across.documents == ("2023 Q1 ACME.pdf", "2023 Q2 ACME.pdf", "2023 Q3 ACME.pdf")


def test_a_span_of_periods_takes_every_period_between_its_ends():
    span = scope_question(analyse_question("What is the trend in Acme's revenue from Q1 2023 to Q3 2023?"), FILINGS)
    assert span.across and span.documents == ("2023 Q1 ACME.pdf", "2023 Q2 ACME.pdf", "2023 Q3 ACME.pdf")
    assert span.per_document_question == "What was Acme's revenue?"
    dated = scope_question(analyse_question("Globex net income between April 1, 2023 and July 1, 2023"), FILINGS)
    assert dated.documents == ("2023 Q1 GLOBEX.pdf", "2023 Q2 GLOBEX.pdf")
    # two periods without a span word are just those two
    two = scope_question(analyse_question("Acme revenue in Q1 2023 and Q3 2023"), FILINGS)
    assert two.documents == ("2023 Q1 ACME.pdf", "2023 Q3 ACME.pdf")
    trended = scope_question(analyse_question("How has Acme's revenue trended across the 10-Qs in this set?"), FILINGS)
    assert trended.across and len(trended.documents) == 3


def test_a_year_to_date_period_is_the_report_that_covers_it():
    assert find_periods_to_date("R&D in the first half of fiscal 2023") == [Period(year=2023, quarter=2)]
    assert find_periods_to_date("2023年前三季度的营业收入") == [Period(year=2023, quarter=3)]
    half = scope_question(analyse_question("How much did Acme spend on R&D in the first half of 2023?"), FILINGS)
    assert half.documents == ("2023 Q2 ACME.pdf",)
    nine = scope_question(analyse_question("Globex's capital spending in the first nine months of 2023"), FILINGS)
    assert nine.documents == ("2023 Q3 GLOBEX.pdf",)
    assert scope_question(analyse_question("Acme 2023年上半年的研发费用"), FILINGS).documents == ("2023 Q2 ACME.pdf",)


def test_questions_naming_nothing_or_a_missing_period_are_not_scoped():
    assert not scope_question(analyse_question("What is revenue recognition?"), FILINGS).scoped
    assert not scope_question(analyse_question("What was Acme's revenue in Q4 2021?"), FILINGS).scoped  # no such filing
    assert not scope_question(analyse_question("What was revenue in 2019?"), FILINGS).scoped



def test_a_fiscal_quarter_is_the_one_the_filing_itself_names():
    # NVIDIA's fiscal year ends in January: its filing for the quarter ended October 30, 2022 (filed as
    # "2022 Q3") speaks of "the third quarter of fiscal 2023", which the next year's "2023 Q3" file name also says.
    pages = {
        "2022 Q3 NVDA.pdf": ("NVIDIA Corporation\nFor the quarterly period ended October 30, 2022\n",
                             "Revenue for the third quarter of fiscal 2023 was $5.93 billion.",
                             "Gaming revenue for the third quarter of fiscal 2023 was $1.57 billion."),
        "2023 Q3 NVDA.pdf": ("NVIDIA Corporation\nFor the quarterly period ended October 29, 2023\n",
                             "Revenue for the third quarter of fiscal 2024 was $18.12 billion.",
                             "Gaming revenue for the third quarter of fiscal 2024 was $2.86 billion."),
        "2023 Q3 ACME.pdf": ("Acme Corporation\nFor the quarterly period ended September 30, 2023\n",),
    }
    records = {source: describe_document(_document(source, *texts)) for source, texts in pages.items()}
    assert records["2022 Q3 NVDA.pdf"].quarters == ("2022-Q3", "2023-Q3")  # the file name's, then the text's
    fiscal = scope_question(analyse_question("What was NVIDIA's revenue in the third quarter of its fiscal 2023?"), records)
    assert fiscal.documents == ("2022 Q3 NVDA.pdf",)
    calendar = scope_question(analyse_question("What was NVIDIA's revenue in Q3 2023?"), records)
    assert "2023 Q3 NVDA.pdf" in calendar.documents

REPORT = """# {name} quarterly report, third quarter of 2024

{name} Inc.

## Management discussion

{name}'s net revenue grew in the third quarter of 2024 on stronger demand for its
cloud services and the revenue recognised from the new data centre contracts. Revenue
from hardware fell as customers delayed purchases; we expect net revenue to keep growing.

## Statement of operations

| (In millions) | Three Months Ended September 30, 2024 | Three Months Ended September 30, 2023 |
| --- | --- | --- |
| Net revenue | {revenue} | {last} |
| Cost of sales | 4,102 | 3,980 |
| Operating income | 1,377 | 1,052 |
"""


def test_within_a_named_document_the_table_row_asked_for_beats_the_prose_about_it(make_pipeline, tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    for name, revenue, last in (("Initech", "9,318", "8,861"), ("Hooli", "12,540", "11,075")):
        (folder / f"2024 Q3 {name.upper()}.md").write_text(REPORT.format(name=name, revenue=revenue, last=last), encoding="utf-8")
    question = "What was Initech's net revenue in the third quarter of 2024?"
    off = make_pipeline(table_row_weight=0.0)
    off.ingest(folder, progress=False)
    assert off.retrieve(question).context[0].chunk.heading_path[-1] == "Management discussion"
    on = make_pipeline()  # the default weight, on the same collection
    retrieval = on.retrieve(question)
    assert retrieval.scope.documents == ("2024 Q3 INITECH.md",)
    assert retrieval.context[0].chunk.heading_path[-1] == "Statement of operations"
    assert "9,318" in retrieval.context[0].chunk.text


CHANGES_REPORT = """# Initech quarterly report, {quarter} 2024

Initech Inc.

For the quarterly period ended {ended}.

## Deferred revenue

The following table shows how deferred revenue changed over the periods presented, with the changes
in each period: revenue deferred during the period and revenue recognised from the opening balance.

| (In millions) | Three Months Ended {ended} |
| --- | --- |
| Balance at the start of the period | 410 |
| Revenue deferred during the period | 95 |
| Revenue recognised during the period | (88) |

## Statement of operations

| (In millions) | Three Months Ended {ended} |
| --- | --- |
| Revenue | {revenue} |
| Cost of sales | 4,102 |
| Operating income | 1,377 |
"""


def test_across_periods_each_document_is_searched_for_one_periods_answer(make_pipeline, tmp_path):
    """"changed over the periods" must not pick each report's table of changes: the per-period question
    ("What was Initech's revenue?") is what each document is searched for."""
    folder = tmp_path / "reports"
    folder.mkdir()
    for quarter, ended, revenue in (("Q1", "March 31, 2024", "8,861"), ("Q2", "June 30, 2024", "9,102"),
                                    ("Q3", "September 30, 2024", "9,318")):
        (folder / f"2024 {quarter} INITECH.md").write_text(
            CHANGES_REPORT.format(quarter=quarter, ended=ended, revenue=revenue), encoding="utf-8")
    hooli = CHANGES_REPORT.format(quarter="Q3", ended="September 30, 2024", revenue="12,540").replace("Initech", "Hooli")
    (folder / "2024 Q3 HOOLI.md").write_text(hooli, encoding="utf-8")
    pipeline = make_pipeline()
    pipeline.ingest(folder, progress=False)
    retrieval = pipeline.retrieve("How has Initech's revenue changed over the periods in these reports?")
    assert retrieval.scope.across and retrieval.per_document is not None
    assert [hit.chunk.source for hit in retrieval.context] == ["2024 Q1 INITECH.md", "2024 Q2 INITECH.md",
                                                               "2024 Q3 INITECH.md"]
    assert [hit.chunk.heading_path[-1] for hit in retrieval.context] == ["Statement of operations"] * 3
    # Abstention weighs the one-period question as well: "over the periods in these reports" is no word a
    # passage must hold, but a measure the reports lack still is.
    assert not pipeline.would_abstain(pipeline.retrieve("How has Initech's revenue moved over the quarters in these filings?"))
    assert pipeline.would_abstain(pipeline.retrieve("How has Initech's headcount changed over the periods in these reports?"))


def test_the_named_documents_period_chooses_the_column_unless_the_question_compares():
    """"Its latest quarter" shows the model this quarter's column only; a comparison keeps last year's."""
    from llm.prompt import linearise_tables
    from retrieval.scope import named_period

    table = ("| (In millions) | Three Months Ended September 30, 2023 | Three Months Ended September 30, 2022 |\n"
             "| --- | --- | --- |\n| Net revenue | 9,318 | 8,861 |")

    def shown(question: str) -> str:
        analysed = analyse_question(question)
        return linearise_tables(table, analysed, period=named_period(scope_question(analysed, FILINGS), FILINGS))

    assert shown("What was Globex's net revenue in its latest quarter?") == (
        "Net revenue — Three Months Ended September 30, 2023: 9,318")
    assert "8,861" in shown("How did Globex's latest quarterly net revenue compare with the year-earlier quarter?")
    assert "8,861" in shown("Globex net revenue in Q3 2023 versus Q3 2022")
    assert named_period(scope_question(analyse_question("Globex revenue in 2023"), FILINGS), FILINGS) == ""  # 3 filings


def test_questions_asking_for_documents_are_lists_even_when_they_name_none():
    assert scope_question(analyse_question("Which filings mention a stock split?"), FILINGS).lists
    assert scope_question(analyse_question("列出各年招生简章的发布日期。"), FILINGS).lists
    assert scope_question(analyse_question("How did revenue change over the quarters?"), FILINGS).lists  # a line each
    assert not scope_question(analyse_question("What is the revenue recognition policy?"), FILINGS).lists
