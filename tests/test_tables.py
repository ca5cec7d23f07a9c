"""PDF statement tables rebuilt with their column headings (ingest.tables through ingest.loaders), on PDFs made here."""

from __future__ import annotations

from ingest.loaders import load_file
from tests.conftest import reportlab_canvas


def _draw_rows(pdf, rows, edges: tuple[int, ...], y: int, step: int = 12) -> None:
    """Each (label, figure, …) row: the label at x=72, its figures right-aligned at ``edges``; a row of
    the label alone is a label line (a wrapped label, a group)."""
    for label, *figures in rows:
        pdf.drawString(72, y, label)
        for x, figure in zip(edges, figures):
            pdf.drawRightString(x, y, figure)
        y -= step


def _page_text(pdf, path) -> str:
    """The one page drawn on ``pdf``, as the loader reads it back."""
    pdf.showPage()
    pdf.save()
    return load_file(path, path.name).pages[0].text


def test_headings_above_group_labels_still_head_the_table(tmp_path):
    """Segment tables put "Net revenue:" and "Client Computing" between the headings and the first row."""
    path = tmp_path / "segments.pdf"
    pdf, font = reportlab_canvas(path)
    pdf.setFont(font, 9)
    pdf.drawString(72, 760, "Net revenue and operating income for each period were as follows:")
    pdf.drawCentredString(330, 740, "Three Months Ended")
    pdf.drawCentredString(470, 740, "Six Months Ended")
    pdf.drawString(72, 728, "(In Millions)")
    for x, heading in ((300, "Jul 1, 2023"), (360, "Jul 2, 2022"), (450, "Jul 1, 2023"), (510, "Jul 2, 2022")):
        pdf.drawRightString(x, 728, heading)
    pdf.drawString(72, 714, "Net revenue:")
    pdf.drawString(80, 702, "Client Computing")
    rows = [("Desktop", "2,370", "2,289", "4,249", "4,930"), ("Notebook", "3,896", "4,751", "7,303", "10,710"),
            ("Data Center and AI", "4,004", "4,695", "7,722", "10,769"),
            ("Total net revenue", "12,949", "15,321", "24,664", "33,674")]
    y = 690
    for label, *figures in rows:
        pdf.drawString(86 if label != "Total net revenue" else 72, y, label)
        for x, figure in zip((300, 360, 450, 510), figures):
            pdf.drawRightString(x, y, figure)
        y -= 12

    text = _page_text(pdf, path)
    heading = next(line for line in text.splitlines() if "Months Ended" in line)
    assert heading.startswith("| (In Millions) | Three Months Ended Jul 1, 2023 | Three Months Ended Jul 2, 2022 |")
    assert "| Six Months Ended Jul 1, 2023 | Six Months Ended Jul 2, 2022 |" in heading
    assert "| Total net revenue | 12,949 | 15,321 | 24,664 | 33,674 |" in text
    # the group labels above the first row label it, the indented segment name ("Client Computing") too
    assert "| Net revenue: Client Computing: Desktop | 2,370 |" in text


def test_centred_titles_wrapped_labels_and_spaced_percents_keep_the_table_whole(tmp_path):
    """A statement whose unit line is centred above the headings, whose long row label wraps onto a line of
    its own, and whose percentages set "%" apart: one table, headed by its periods, with whole labels."""
    path = tmp_path / "statement.pdf"
    pdf, font = reportlab_canvas(path)
    pdf.setFont(font, 8)
    pdf.drawCentredString(300, 780, "CONSOLIDATED STATEMENTS OF CASH FLOWS")
    pdf.drawCentredString(300, 768, "(in millions, except per share data)")
    pdf.drawCentredString(420, 756, "Nine Months Ended")
    pdf.drawCentredString(420, 744, "September 30,")
    for x, year in ((400, "2022"), (460, "2023")):
        pdf.drawRightString(x, 732, year)
    _draw_rows(pdf, [
        ("Net income (loss)", "(3,000)", "19,801"),
        ("Depreciation and amortization of property and equipment and capitalized content costs, operating",),
        ("   lease assets, and other", "29,236", "34,843"),
        ("Stock-based compensation", "14,015", "17,704"),
        ("Purchases of property and equipment", "(47,053)", "(38,141)"),
        ("Operating margin", "2.9  %", "6.4  %"),
    ], (400, 460), y=720)

    text = _page_text(pdf, path)
    heading = next(line for line in text.splitlines() if "Months Ended" in line)
    assert heading == "|  | Nine Months Ended September 30, 2022 | Nine Months Ended September 30, 2023 |"
    assert "(in millions, except per share data)" in text.split(heading)[0]  # stays a line above, not a heading
    assert ("| Depreciation and amortization of property and equipment and capitalized content costs, operating "
            "lease assets, and other | 29,236 | 34,843 |") in text
    assert "| Purchases of property and equipment | (47,053) | (38,141) |" in text
    assert "| Operating margin | 2.9% | 6.4% |" in text
    assert sum(line.startswith("| --- |") for line in text.splitlines()) == 1  # one table, not two halves


def test_rows_far_apart_and_headings_over_column_pairs(tmp_path):
    """Microsoft's statements: blank lines between rows and between heading lines, "(174   )" with its
    parenthesis set apart, and "Three Months Ended" centred over two columns, ending at one's edge."""
    path = tmp_path / "income.pdf"
    pdf, font = reportlab_canvas(path)
    pdf.setFont(font, 8)
    columns = (330, 390, 450, 510)
    pdf.drawCentredString(372, 760, "Three Months Ended")
    pdf.drawCentredString(492, 760, "Nine Months Ended")
    pdf.drawString(72, 750, "(In millions) (Unaudited)")
    pdf.drawCentredString(376, 750, "March 31,")
    pdf.drawCentredString(496, 750, "March 31,")
    for x, year in zip(columns, ("2023", "2022", "2023", "2022")):
        pdf.drawRightString(x + 4, 705, year)
    _draw_rows(pdf, [("Total revenue", "52,857", "49,360", "155,726", "146,405"),
                     ("Research and development", "6,984", "6,306", "20,456", "17,663"),
                     ("Other income (expense), net", "321", "(174", "315", "380"),
                     ("Net income", "18,299", "16,728", "52,280", "55,998")],
               columns, y=660, step=45)  # four blank lines between rows in the layout text
    pdf.drawString(columns[1] + 8, 660 - 2 * 45, ")")  # "(174   )": its parenthesis set apart

    text = _page_text(pdf, path)
    heading = next(line for line in text.splitlines() if "Months Ended" in line)
    assert heading == ("| (In millions) (Unaudited) | Three Months Ended March 31, 2023 | Three Months Ended March 31, 2022 "
                       "| Nine Months Ended March 31, 2023 | Nine Months Ended March 31, 2022 |")
    assert "| Other income (expense), net | 321 | (174) | 315 | 380 |" in text
    assert "| Net income | 18,299 | 16,728 | 52,280 | 55,998 |" in text
    assert sum(line.startswith("| --- |") for line in text.splitlines()) == 1


def test_one_period_heading_over_two_columns_heads_both_wherever_it_stands(tmp_path):
    """Intel's first-quarter statements: "Three Months Ended" starts right of the first column's figures."""
    path = tmp_path / "q1.pdf"
    pdf, font = reportlab_canvas(path)
    pdf.setFont(font, 8)
    pdf.drawString(402, 760, "Three Months Ended")
    pdf.drawString(72, 750, "(In Millions; Unaudited)")
    pdf.drawRightString(398, 750, "Apr 1, 2023")
    pdf.drawRightString(520, 750, "Apr 2, 2022")
    _draw_rows(pdf, [("Net revenue", "$11,715", "$18,353"), ("Cost of sales", "7,707", "9,109"),
                     ("Research and development", "4,109", "4,362")], (400, 522), y=738)

    text = _page_text(pdf, path)
    assert "| (In Millions; Unaudited) | Three Months Ended Apr 1, 2023 | Three Months Ended Apr 2, 2022 |" in text
