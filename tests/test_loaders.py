"""Loading real PDF, Markdown and text files, and the errors for files we cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest.loaders import LoadError, LoadOptions, load_file, markdown_sections
from tests.conftest import make_encrypted_pdf, make_pdf, reportlab_canvas, write


def test_pdf_pages_keep_their_numbers_and_blank_pages_are_skipped(tmp_path):
    path = make_pdf(tmp_path / "report.pdf", ["Revenue grew in the first quarter.", "", "Costs fell on page three."])
    loaded = load_file(path, "report.pdf")
    assert [page.page for page in loaded.pages] == [1, 3]
    assert "Revenue grew" in loaded.pages[0].text
    assert "Costs fell" in loaded.pages[1].text
    assert len(loaded.content_sha256) == 64


def test_encrypted_pdf_is_reported_as_needing_a_password(tmp_path):
    locked = make_encrypted_pdf(tmp_path / "locked.pdf", ["Secret plans."], user_password="hunter2")
    with pytest.raises(LoadError, match="encrypted"):
        load_file(locked, "locked.pdf")


def test_pdf_with_only_an_owner_password_opens(tmp_path):
    path = make_encrypted_pdf(tmp_path / "owner-only.pdf", ["Readable by anyone."], user_password="")
    assert "Readable by anyone" in load_file(path, "owner-only.pdf").pages[0].text


def test_truncated_pdf_is_reported_as_corrupt(tmp_path):
    good = make_pdf(tmp_path / "good.pdf", ["Some text."]).read_bytes()
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(good[:200])
    with pytest.raises(LoadError, match="corrupt|no text"):
        load_file(broken, "broken.pdf")


def test_pdf_without_text_layer_is_never_indexed_as_empty(tmp_path):
    path = make_pdf(tmp_path / "scan.pdf", ["", ""])
    with pytest.raises(LoadError, match="no text layer"):
        load_file(path, "scan.pdf")


def test_empty_file_is_reported(tmp_path):
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    with pytest.raises(LoadError, match="empty"):
        load_file(path, "empty.md")


def test_markdown_sections_keep_heading_path_and_exact_offsets():
    text = (
        "# Guide\n\nIntro text.\n\n"
        "## Install\n\nRun make.\n\n```bash\n# not a heading\nmake run\n```\n\n"
        "### GPU\n\nSet CMAKE_ARGS.\n\n"
        "## Usage\n\nAsk questions.\n"
    )
    sections = markdown_sections(text, "guide.md")
    assert [s.heading_path for s in sections] == [
        ("Guide",),
        ("Guide", "Install"),
        ("Guide", "Install", "GPU"),
        ("Guide", "Usage"),
    ]
    for section in sections:
        assert text[section.start_char : section.start_char + len(section.text)] == section.text
    assert "# not a heading" in sections[1].text  # code fence stays inside its section


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_chinese_text_decodes_in_common_encodings(tmp_path, encoding):
    path = write(tmp_path / "笔记.md", "# 标题\n\n知识库支持中文文档。\n", encoding=encoding)
    loaded = load_file(path, "笔记.md")
    assert loaded.pages[0].heading_path == ("标题",)
    assert "知识库支持中文文档" in loaded.pages[0].text
    assert not loaded.pages[0].text.startswith("\ufeff")


def test_undecodable_text_is_a_clear_error(tmp_path):
    path = tmp_path / "binary.txt"
    path.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(LoadError, match="decode|UTF-8"):
        load_file(path, "binary.txt")


def test_pdf_that_pypdf_rejects_is_recovered_with_pdfium_and_says_so(tmp_path):
    good = make_pdf(tmp_path / "good.pdf", ["Recovered text survives."]).read_bytes()
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(good[: good.rfind(b"startxref")])  # no cross-reference trailer at all
    loaded = load_file(damaged, "damaged.pdf")
    assert "Recovered text survives" in loaded.pages[0].text
    assert "recovered with pdfium" in loaded.warnings[0]


def _reportlab_pdf(path: Path, lines: list[str], *, doubled: bool = False, chinese: bool = False) -> Path:
    """A real PDF; ``doubled`` draws every character twice, 0.4 pt apart (a "fake bold" text layer)."""
    from reportlab.pdfbase import pdfmetrics

    pdf, font = reportlab_canvas(path, chinese=chinese)
    pdf.setFont(font, 12)
    for row, line in enumerate(lines):
        x = 72.0
        for character in line:
            for offset in ((0.0, 0.4) if doubled else (0.0,)):
                pdf.drawString(x + offset, 760 - 20 * row, character)
            x += pdfmetrics.stringWidth(character, font, 12)
    pdf.save()
    return path


def test_fake_bold_pdf_is_indexed_once_not_doubled(tmp_path):
    pdf = _reportlab_pdf(tmp_path / "成绩.pdf", ["本科录取分数线理工类最高分六百五十", "文史类最低分五百九十八"], doubled=True, chinese=True)
    loaded = load_file(pdf, "成绩.pdf", LoadOptions(ocr=False))
    text = "".join(loaded.pages[0].text.split())
    assert "本科录取分数线" in text and "本本" not in text
    assert any("doubled" in warning for warning in loaded.warnings)


def test_garbled_text_layer_is_reported_not_indexed(tmp_path):
    # What a font without a usable character map extracts as: Latin-1 symbols instead of Chinese.
    garbage = ["Ë¸Ã¶¨Ê±¼ä ÄÚ²¿ ¸Ã¶¨Ê±¼ä ÄÚ²¿ Ë¸Ã¶¨", "Ê±¼ä¸Ã¶¨ ÄÚ²¿Ë¸ Ã¶¨Ê±¼ä ÄÚ²¿"]
    pdf = _reportlab_pdf(tmp_path / "garbled.pdf", garbage)
    with pytest.raises(LoadError, match="no text layer"):
        load_file(pdf, "garbled.pdf", LoadOptions(ocr=False))
    mixed = _reportlab_pdf(tmp_path / "mixed.pdf", garbage)
    # A garbled page next to a good one: the good one is indexed, the garbled one reported.
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.append(PdfReader(make_pdf(tmp_path / "good.pdf", ["Net sales were 94,836 million dollars this quarter."])))
    writer.append(PdfReader(mixed))
    with (tmp_path / "both.pdf").open("wb") as out:
        writer.write(out)
    loaded = load_file(tmp_path / "both.pdf", "both.pdf", LoadOptions(ocr=False))
    assert [page.page for page in loaded.pages] == [1]
    assert any("garbled" in warning and "2" in warning for warning in loaded.warnings)


def test_pdf_past_pypdfs_default_limits_is_read_by_pypdf_not_reduced_to_plain_text(tmp_path):
    # Real 10-Q filings hold arrays longer than pypdf's default limit against hostile files (100,000
    # elements); such a file is read again with higher limits instead of falling back to pdfium.
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import ArrayObject, NameObject, NumberObject

    plain = make_pdf(tmp_path / "plain.pdf", ["Net revenue 1,234 for the quarter."])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.pages[0][NameObject("/PieceInfo")] = ArrayObject([NumberObject(0)] * 150_000)
    big = tmp_path / "big.pdf"
    with big.open("wb") as out:
        writer.write(out)
    loaded = load_file(big, "big.pdf", LoadOptions())
    assert "Net revenue 1,234" in loaded.pages[0].text
    assert not any("pdfium" in warning for warning in loaded.warnings)
