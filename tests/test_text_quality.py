"""Text layers that are not text: mixed scripts, private-use characters and repeated strings.

Unit tests of ``ingest.text_quality`` on strings, then one real PDF per kind read through the
public loader: the garbled text must never come out as written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest.loaders import LoadError, LoadOptions, load_file
from ingest.text_quality import diagnose, undouble
from tests.conftest import make_pdf, reportlab_canvas

# What a font without a Unicode map extracts as: glyph ids read as code points, here Oriya, Gujarati,
# Cyrillic and control characters inside each word.
MIXED_SCRIPTS = "ଓઅБ\x03ଡગД ॳଘЖ\x07ઘ ଓઅБଡ ગДॳଘ କખГ\x05ଗઘ"
# The same, one glyph a line (a page pypdf reads a character at a time): no word mixes, the page does.
MIXED_ONE_A_LINE = "\n".join("ୈೋҰ߲ͷදͷ੨৭ͷ౮Րͷ߲ୈࡾ߸தؚΉΛؚΉ੨৭ͷ౮Րͷҹͷ߲Λআ")


# --- the three kinds, on strings ------------------------------------------------------------------

@pytest.mark.parametrize("text", [MIXED_SCRIPTS, MIXED_ONE_A_LINE, "Net sales " + MIXED_SCRIPTS])
def test_letters_of_unrelated_scripts_mixed_together_are_garbled(text):
    assert diagnose(text) == "garbled"


@pytest.mark.parametrize("text", ["\ue01a\ue02b\ue00f", "\ue001", "\x01\x02\x05", "\ue001\ue002\ue003 1",
                                  "\U000f0001\ue010"])
def test_a_page_of_private_use_or_control_characters_is_garbled_however_short(text):
    assert diagnose(text) == "garbled"


def test_a_string_drawn_several_times_back_to_back_is_doubled_and_kept_once():
    assert diagnose("某某公司某某公司某某公司某某公司") == "doubled"
    assert undouble("某某公司某某公司某某公司某某公司") == "某某公司"
    assert undouble("Annual ReportAnnual Report") == "Annual Report"  # two copies of a long unit
    assert undouble("公司公司公司") == "公司"


def test_a_repeated_title_on_an_otherwise_good_page_is_the_only_line_repaired():
    page = "某某公司某某公司某某公司\n2023 年年度报告\n本公司董事会保证报告内容真实、准确、完整。\n"
    assert diagnose(page) == "doubled"
    assert undouble(page) == "某某公司\n2023 年年度报告\n本公司董事会保证报告内容真实、准确、完整。\n"


def test_a_line_with_every_character_twice_is_doubled_on_a_page_that_is_not():
    # pdfium's text of a map whose labels are drawn twice (a halo): one line doubled, the rest fine.
    page = ("Carte 25b - Zones inondables\nMMuunniicciippaalliittéé ddee SSaaiinntt--SSaauuvveeuurr\n"
            "Source: BDTQ, BDTA\n")
    assert diagnose(page) == "doubled"
    assert undouble(page) == "Carte 25b - Zones inondables\nMunicipalité de Saint-Sauveur\nSource: BDTQ, BDTA\n"


def test_the_older_kinds_still_hold():
    assert diagnose("本本科科录录取取分分数数线线理理工工类类") == "doubled"
    assert undouble("本本科科录录取取分分数数线线理理工工类类") == "本科录取分数线理工类"
    assert undouble("本科 本科 录取 录取 分数 分数 最高 最高 最低 最低") == "本科 录取 分数 最高 最低"
    assert diagnose("Ë¸Ã¶¨Ê±¼ä ÄÚ²¿ ¸Ã¶¨Ê±¼ä ÄÚ²¿") == "garbled"
    body = "Revenue grew in the first quarter.\nCosts fell.\n"
    assert undouble(body * 3) == body  # the whole page three times over


# --- real text that must stay "ok" ----------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "本公司使用Python开发了新的系统，并在2023年第一季度通过ISO 27001认证后上线。",  # Chinese with English
    "Loss of β-catenin and E-cadherin expression in α-smooth muscle cells (n = 12, p < 0.05).",
    "Экспрессия β-катенина повышается в клетках опухоли при активации сигнального пути Wnt.",
    "東京でiPhoneを買った。日本語の文章にはひらがなとカタカナと漢字が混ざっています。",
    "대한민국의 수도는 서울이며 인구는 약 천만 명이다. 韓國語 漢字 混用 문장도 있다.",
    "Les élèves ont étudié l’économie française à l’école pendant l’été, naïvement.",
    "-" * 60,
    "1111 2222 3333 4444 5555 6666 7777 8888",
    "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0",
    "ha ha ha, hahaha, said the reviewer of the annual report.",
    "研究研究\nHelloHello\nxxxxxxxxxxxxxxxxxxxxxxxx1234",
    "∑ᵢ xᵢ ≤ ∫₀^∞ f(x) dx for all x ∈ ℝⁿ, with ℓ₂ norm in µm and 𝑥 → ℵ₀.",
    "Hello World / Привет мир / مرحبا بالعالم / 你好世界 / สวัสดีชาวโลก / שלום עולם",
    "俄语单词мир的意思是和平，这个词在文中出现了三次。",  # a foreign word inside a Chinese sentence
    "\uf0b7项目一：年度预算\n\uf0b7项目二：季度报告\n\uf0b7项目三：人员安排\n",  # Word's Symbol-font bullets
    "Contents\n" + "".join(f"{number} {title} " + ". " * 30 + f"{page}\n" for number, title, page in (
        ("1", "Topologische Grundbegriffe", 2), ("1.1", "Topologische Räume", 2), ("1.2", "Metrische Räume", 6),
        ("1.3", "Stetigkeit", 9))),  # dot leaders: a table of contents once lost every other word to undouble
    "Amount % Amount % Amount %\nRevenue 1,234 12 % 2,345 13 % 3,456 14 %",  # repeated column groups
])
def test_real_text_stays_ok(text):
    assert diagnose(text) == "ok"
    assert undouble(text) == text


# --- real PDFs through the loader ------------------------------------------------------------------

def _remapped_pdf(path: Path, lines: list[str], code_points: dict[str, int]) -> Path:
    """A Helvetica page whose font maps each character to ``code_points`` (a ToUnicode map), as a font
    whose glyphs have no real Unicode map extracts: the page looks right, its text layer is not."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject, StreamObject

    pdf, font = reportlab_canvas(path)
    pdf.setFont(font, 16)
    for row, line in enumerate(lines):
        pdf.drawString(72, 740 - 28 * row, line)
    pdf.save()
    entries = "".join(f"<{ord(character):02X}> <{code_points[character]:04X}>\n" for character in sorted(code_points))
    cmap = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Garbled def /CMapType 2 def\n1 begincodespacerange <00> <FF> endcodespacerange\n"
        f"{len(code_points)} beginbfchar\n{entries}endbfchar\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end\n"
    )
    writer = PdfWriter(clone_from=PdfReader(path))
    stream = StreamObject()
    stream.set_data(cmap.encode())
    for reference in writer.pages[0]["/Resources"]["/Font"].values():
        # A stream must be an indirect object; _add_object is how pypdf (pinned) makes one.
        reference.get_object()[NameObject("/ToUnicode")] = writer._add_object(stream)
    with path.open("wb") as out:
        writer.write(out)
    return path


def _with_a_good_first_page(tmp_path: Path, garbled: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.append(PdfReader(make_pdf(tmp_path / "good.pdf", ["Net sales were 94,836 million dollars this quarter."])))
    writer.append(PdfReader(garbled))
    both = tmp_path / "both.pdf"
    with both.open("wb") as out:
        writer.write(out)
    return both


def _mixed_script_map(text: str) -> dict[str, int]:
    """Each letter to Oriya, Gujarati, Cyrillic or a control character in turn (spaces stay spaces)."""
    starts = (0x0B15, 0x0A95, 0x0430, 0x000E)  # control characters 0x0E-0x1B: none of them is whitespace
    letters = sorted(set(text) - {" "})
    return {" ": 0x20} | {letter: starts[i % 4] + i // 4 for i, letter in enumerate(letters)}


def test_pdf_with_scripts_mixed_inside_words_is_not_indexed_as_written(tmp_path):
    lines = ["Net sales increased five percent", "Costs fell in every region"]
    pdf = _remapped_pdf(tmp_path / "mixed.pdf", lines, _mixed_script_map("".join(lines)))
    from pypdf import PdfReader

    extracted = PdfReader(pdf).pages[0].extract_text()
    assert {"\u0b15", "\u0a95", "\u0430", "\x0e"} <= set(extracted)  # Oriya, Gujarati, Cyrillic, control
    loaded = load_file(_with_a_good_first_page(tmp_path, pdf), "both.pdf", LoadOptions(ocr=False))
    assert [page.page for page in loaded.pages] == [1]
    assert any("garbled" in warning and "2" in warning for warning in loaded.warnings)


def test_pdf_with_scripts_mixed_inside_words_is_read_by_ocr_when_it_is_on(tmp_path):
    pdf = _remapped_pdf(tmp_path / "mixed.pdf", ["Net sales increased five percent"],
                        _mixed_script_map("Net sales increased five percent"))
    loaded = load_file(pdf, "mixed.pdf", LoadOptions(ocr=True))
    assert [(page.page, page.ocr) for page in loaded.pages] == [(1, True)]
    assert "sales increased" in loaded.pages[0].text.lower()


def test_pdf_page_of_a_few_private_use_characters_is_not_indexed(tmp_path):
    pdf = _remapped_pdf(tmp_path / "pua.pdf", ["abc"], {"a": 0xE001, "b": 0xE002, "c": 0xE003})
    from pypdf import PdfReader

    assert PdfReader(pdf).pages[0].extract_text().strip() == "\ue001\ue002\ue003"
    loaded = load_file(_with_a_good_first_page(tmp_path, pdf), "both.pdf", LoadOptions(ocr=False))
    assert [page.page for page in loaded.pages] == [1]
    assert any("garbled" in warning and "2" in warning for warning in loaded.warnings)
    with pytest.raises(LoadError, match="no text layer"):
        load_file(pdf, "pua.pdf", LoadOptions(ocr=False))


def test_pdf_title_drawn_as_a_repeated_string_is_indexed_once(tmp_path):
    pdf, font = reportlab_canvas(tmp_path / "年报.pdf", chinese=True)
    pdf.setFont(font, 14)
    pdf.drawString(72, 760, "某某公司某某公司某某公司某某公司")
    pdf.drawString(72, 730, "本公司董事会保证年度报告内容真实准确完整")
    pdf.save()
    loaded = load_file(tmp_path / "年报.pdf", "年报.pdf", LoadOptions(ocr=False))
    text = loaded.pages[0].text
    assert "某某公司" in text and "某某公司某某公司" not in text
    assert "本公司董事会保证年度报告内容真实准确完整" in text
    assert any("doubled" in warning for warning in loaded.warnings)


def test_pdf_of_real_mixed_script_text_is_indexed_as_it_is(tmp_path):
    lines = ["使用Python开发的系统已上线", "Экспрессия β-катенина", "東京でiPhoneを買った"]
    pdf, font = reportlab_canvas(tmp_path / "multi.pdf", chinese=True)
    pdf.setFont(font, 14)
    for row, line in enumerate(lines):
        pdf.drawString(72, 760 - 24 * row, line)
    pdf.save()
    loaded = load_file(tmp_path / "multi.pdf", "multi.pdf", LoadOptions(ocr=False))
    assert loaded.warnings == ()
    assert all(line in loaded.pages[0].text for line in lines)
