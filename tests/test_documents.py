"""A collection of quarterly reports: questions naming a company, a period, "the latest" or every quarter.

Real PDFs drawn with reportlab (its built-in CID font STSong-Light writes Chinese
without a font file), two organisations and three periods each, one statement
table per report with right-aligned figures under two period columns; ingested
with the real embedder, answered by the real default model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import reportlab_canvas

pytestmark = pytest.mark.answer_quality  # what the default model answers is what is tested

# (file, organisation, cover line, this quarter's column heading, last year's, {row: (this, last)})
ENGLISH = [
    ("2023 Q1 ACME.pdf", "Acme Corporation", "For the quarterly period ended March 31, 2023", "March 31, 2023", "March 31, 2022",
     {"Net revenue": ("1,310", "1,150"), "Cost of revenue": ("702", "655"), "Operating income": ("388", "301"), "Net income": ("291", "240")}),
    ("2023 Q2 ACME.pdf", "Acme Corporation", "For the quarterly period ended June 30, 2023", "June 30, 2023", "June 30, 2022",
     {"Net revenue": ("1,420", "1,205"), "Cost of revenue": ("731", "688"), "Operating income": ("412", "322"), "Net income": ("305", "251")}),
    ("2023 Q3 ACME.pdf", "Acme Corporation", "For the quarterly period ended September 30, 2023", "September 30, 2023", "September 30, 2022",
     {"Net revenue": ("1,585", "1,262"), "Cost of revenue": ("790", "701"), "Operating income": ("466", "350"), "Net income": ("347", "266")}),
    ("2023 Q1 GLOBEX.pdf", "Globex Inc.", "For the quarterly period ended April 1, 2023", "April 1, 2023", "April 2, 2022",
     {"Net revenue": ("8,840", "9,102"), "Cost of revenue": ("5,011", "5,230"), "Operating income": ("1,904", "2,017"), "Net income": ("1,377", "1,498")}),
    ("2023 Q2 GLOBEX.pdf", "Globex Inc.", "For the quarterly period ended July 1, 2023", "July 1, 2023", "July 2, 2022",
     {"Net revenue": ("9,213", "9,350"), "Cost of revenue": ("5,188", "5,402"), "Operating income": ("2,040", "2,101"), "Net income": ("1,452", "1,530")}),
    # The period of this one is in its file name only: its pages never say "Q4" or "2023".
    ("2023 Q4 GLOBEX.pdf", "Globex Inc.", "Quarterly report to shareholders", "This quarter", "Same quarter last year",
     {"Net revenue": ("9,977", "9,540"), "Cost of revenue": ("5,530", "5,466"), "Operating income": ("2,288", "2,150"), "Net income": ("1,618", "1,577")}),
]
CHINESE = [
    ("华东制造2023年第一季度报告.pdf", "华东制造股份有限公司", "2023年第一季度报告", {"营业收入": ("52,310", "48,770"), "营业成本": ("40,112", "37,905"), "净利润": ("3,208", "2,944")}),
    ("华东制造2023年第二季度报告.pdf", "华东制造股份有限公司", "2023年第二季度报告", {"营业收入": ("57,640", "50,215"), "营业成本": ("43,870", "39,006"), "净利润": ("3,655", "3,012")}),
    ("华东制造2023年第三季度报告.pdf", "华东制造股份有限公司", "2023年第三季度报告", {"营业收入": ("61,025", "53,388"), "营业成本": ("46,203", "41,150"), "净利润": ("4,010", "3,290")}),
]


def _draw_report(path: Path, organisation: str, cover: str, columns: tuple[str, str], rows: dict, *, chinese: bool) -> None:
    pdf, font = reportlab_canvas(path, chinese=chinese)
    pdf.setFont(font, 14)
    pdf.drawString(72, 760, organisation)
    pdf.setFont(font, 11)
    pdf.drawString(72, 740, cover)
    pdf.drawString(72, 720, "本报告未经审计。" if chinese else "This report is unaudited and was prepared for shareholders.")
    pdf.showPage()
    pdf.setFont(font, 11)
    pdf.drawString(72, 760, "合并利润表（单位：万元）" if chinese else "CONDENSED STATEMENTS OF OPERATIONS (in millions)")
    if not chinese:
        pdf.drawCentredString(400, 730, "Three Months Ended")
    pdf.drawRightString(380, 712, columns[0])
    pdf.drawRightString(520, 712, columns[1])
    y = 690
    for label, (this, last) in rows.items():
        pdf.drawString(72, y, label)
        pdf.drawRightString(380, y, this)
        pdf.drawRightString(520, y, last)
        y -= 20
    pdf.showPage()
    pdf.save()


@pytest.fixture
def reports(tmp_path) -> Path:
    folder = tmp_path / "reports"
    folder.mkdir()
    for name, organisation, cover, this, last, rows in ENGLISH:
        _draw_report(folder / name, organisation, cover, (this, last), rows, chinese=False)
    for name, organisation, cover, rows in CHINESE:
        _draw_report(folder / name, organisation, cover, ("本报告期", "上年同期"), rows, chinese=True)
    return folder


@pytest.fixture
def pipeline(make_pipeline, reports):
    pipeline = make_pipeline()
    report = pipeline.ingest(reports, progress=False)
    assert not report.failed, report.failed
    return pipeline


def _sources(answer) -> set[str]:
    return {citation.source for citation in answer.sources}


def test_each_document_knows_what_it_is(pipeline):
    records = pipeline.status().records
    assert records["2023 Q2 ACME.pdf"].organisation == "Acme Corporation"
    assert records["2023 Q2 ACME.pdf"].period_end == "2023-06-30"
    assert records["2023 Q1 GLOBEX.pdf"].period_label == "quarter ended April 1, 2023"
    assert records["华东制造2023年第二季度报告.pdf"].organisation == "华东制造股份有限公司"
    assert records["华东制造2023年第二季度报告.pdf"].quarters == ("2023-Q2",)
    # The statement table was rebuilt with its column headings: a figure can be read with its period.
    chunks = pipeline.collection().chunks_of("2023 Q2 ACME.pdf")
    table = next(chunk.text for chunk in chunks if "1,420" in chunk.text)
    assert "| Three Months Ended June 30, 2023 | Three Months Ended June 30, 2022 |" in table
    assert "| Net revenue | 1,420 | 1,205 |" in table


def test_a_question_naming_a_company_and_quarter_gets_that_reports_figure(pipeline):
    answer = pipeline.ask("What was Acme's net revenue in the second quarter of 2023?")
    assert _sources(answer) == {"2023 Q2 ACME.pdf"}
    assert "1,420" in answer.text and not answer.abstained
    assert {citation.source for citation in answer.citations} == {"2023 Q2 ACME.pdf"}

    chinese = pipeline.ask("华东制造2023年第二季度的营业收入是多少？")
    assert _sources(chinese) == {"华东制造2023年第二季度报告.pdf"}
    assert "57,640" in chinese.text


def test_latest_means_the_newest_report_and_a_file_name_period_is_not_refused(pipeline):
    latest = pipeline.ask("What was Globex's net income in its latest quarter?")
    assert _sources(latest) == {"2023 Q4 GLOBEX.pdf"}
    assert "1,618" in latest.text
    # "Q4" and "2023" are only in the file name: the question is answered, not refused.
    named = pipeline.ask("What was Globex's operating income in 2023 Q4?")
    assert not named.abstained
    assert "2,288" in named.text


def test_a_question_across_quarters_lists_each_period_with_its_citation(pipeline):
    stream = pipeline.ask_stream("How has Acme's net revenue changed over the quarters?")
    "".join(stream)
    answer = stream.answer
    assert [hit.chunk.source for hit in stream.retrieval.context] == ["2023 Q1 ACME.pdf", "2023 Q2 ACME.pdf", "2023 Q3 ACME.pdf"]
    header, *lines = answer.text.splitlines()
    assert header == "3 documents looked at, one line each:"  # how many documents the answer rests on
    assert len(lines) == 3
    for line, figure, number in zip(lines, ("1,310", "1,420", "1,585"), (1, 2, 3)):
        assert figure in line and f"[{number}]" in line
    assert [citation.source for citation in answer.citations] == ["2023 Q1 ACME.pdf", "2023 Q2 ACME.pdf", "2023 Q3 ACME.pdf"]


def test_a_question_comparing_organisations_gets_one_cited_line_each(pipeline):
    """Acme's Q2 2023 report ends June 30, Globex's July 1: "the second quarter of 2023" names one each."""
    stream = pipeline.ask_stream("Compare net revenue at Acme and Globex in the second quarter of 2023.")
    "".join(stream)
    answer = stream.answer
    assert stream.retrieval.scope.one_each
    assert [hit.chunk.source for hit in stream.retrieval.context] == ["2023 Q2 ACME.pdf", "2023 Q2 GLOBEX.pdf"]
    header, *lines = answer.text.splitlines()
    assert header == "2 documents looked at, one line each:"
    assert len(lines) == 2
    for line, organisation, figure, number in zip(lines, ("Acme Corporation", "Globex Inc"), ("1,420", "9,213"), (1, 2)):
        assert line.startswith(f"- {organisation} · quarter ended") and figure in line and f"[{number}]" in line


def test_an_explicit_document_filter_is_obeyed(pipeline):
    retrieval = pipeline.retrieve("net revenue", documents=["2023 Q1 GLOBEX.pdf"])
    assert {hit.chunk.source for hit in retrieval.hits} == {"2023 Q1 GLOBEX.pdf"}
    with pytest.raises(ValueError, match="not in this knowledge base"):
        pipeline.retrieve("net revenue", documents=["missing.pdf"])
