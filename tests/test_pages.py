"""Showing the cited page: a PDF page drawn with the supporting words highlighted, checked pixel by pixel.

Each PDF is drawn twice with the same geometry: the whole page, and the target line alone. The target's
ink on the second (rendered without highlights) says where the words are; the highlight colour on the
first must cover that ink and not reach far beyond it. So the check holds for rotated and cropped pages,
Chinese text and OCR'd pages alike, without computing any geometry in the test.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from app.pages import OriginalUnavailableError, UnknownDocumentError, page_spans
from core.types import Citation
from ingest.page_images import render_page
from tests.conftest import reportlab_canvas, write
from tests.test_ingest_robustness import scanned_pdf

TARGET_EN = "The launch code for the orbital test is ZEBRA-42."
OTHER_EN = "The cafeteria serves lunch from noon until two o'clock."
TARGET_ZH = "发射代码是斑马四十二号。"
OTHER_ZH = "食堂中午十二点开始供应午餐。"


def _draw(path, lines, *, chinese=False, rotate=0, crop=None):
    """A one-page PDF with ``lines`` as (y position in points, text); optionally turned or cropped."""
    pdf, font = reportlab_canvas(path, chinese=chinese)
    pdf.setFont(font, 16)
    for y, text in lines:
        pdf.drawString(72, y, text)
    pdf.save()
    if rotate or crop:
        writer = PdfWriter(clone_from=str(path))
        if rotate:
            writer.pages[0].rotate(rotate)
        if crop:
            writer.pages[0].cropbox.lower_left = crop
        writer.write(str(path))
    return path


def _pair(folder, name, target, other, **options):
    """The page to index (target high up, another line low down) and the target alone, same geometry."""
    full = _draw(folder / "docs" / name, [(700, target), (150, other)], **options)
    alone = _draw(folder / "alone" / name, [(700, target)], **options)
    return full, alone


def _pixels(png: bytes) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, columns = np.nonzero(mask)
    assert rows.size, "nothing found"
    return int(columns.min()), int(rows.min()), int(columns.max()), int(rows.max())


def _strong(pixels: np.ndarray) -> np.ndarray:
    """White paper under the strong highlight (orange, half translucent)."""
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return (red > 225) & (green > 180) & (green < 235) & (blue < 175)


def _light(pixels: np.ndarray) -> np.ndarray:
    """White paper under the light highlight (blue, mostly transparent): the rest of a cited passage."""
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return (blue > 245) & (red > 200) & (red < 232) & (green > 220) & (green < 245)


def _check_highlight(shown_png: bytes, alone_png: bytes) -> None:
    alone = _pixels(alone_png)
    ink = _bbox(alone.sum(axis=2) < 600)  # the target's ink where nothing else is drawn
    pixels = _pixels(shown_png)
    assert pixels.shape == alone.shape
    highlight = _bbox(_strong(pixels))
    slack = max(pixels.shape) * 0.03
    # The highlight covers the words...
    assert highlight[0] <= ink[0] + 2 and highlight[1] <= ink[1] + 2
    assert highlight[2] >= ink[2] - 2 and highlight[3] >= ink[3] - 2
    # ...and nothing far from them (the other line is hundreds of pixels away).
    assert highlight[0] >= ink[0] - slack and highlight[1] >= ink[1] - slack
    assert highlight[2] <= ink[2] + slack and highlight[3] <= ink[3] + slack


def _target_span(pipeline, source, target):
    """The target sentence's offsets on its page, found through the index's passage."""
    passage = next(p for p in pipeline.viewer().passages(source) if target[:12] in p.text)
    at = passage.text.index(target[:12])
    end = passage.text.index(target[-4:]) + 4
    return passage, (passage.start_char + at, passage.start_char + end)


@pytest.mark.parametrize("case", ["plain", "chinese", "rotated", "cropped"])
def test_the_highlight_covers_the_cited_words_on_the_page_and_nothing_far_from_them(make_pipeline, tmp_path, case):
    chinese = case == "chinese"
    target, other = (TARGET_ZH, OTHER_ZH) if chinese else (TARGET_EN, OTHER_EN)
    options = {"chinese": chinese, "rotate": 90 if case == "rotated" else 0,
               "crop": (40, 80) if case == "cropped" else None}
    full, alone = _pair(tmp_path, f"{case}.pdf", target, other, **options)
    pipeline = make_pipeline(ocr=False, second_embedder="none")
    assert pipeline.ingest(full.parent, progress=False).added == (full.name,)

    passage, span = _target_span(pipeline, full.name, target)
    assert passage.page == 1 and passage.boxes  # the index knows where the passage lies
    shown = pipeline.viewer().page_image(full.name, 1, spans=[span], max_width=800)
    assert shown.highlighted > 0 and shown.note == "" and shown.page_count == 1
    _check_highlight(shown.png, render_page(alone, 1, max_width=800).png)


def test_an_ocr_page_is_highlighted_by_its_recognised_lines(make_pipeline, tmp_path):
    _draw(tmp_path / "src" / "page.pdf", [(700, TARGET_EN), (150, OTHER_EN)])
    alone = _draw(tmp_path / "alone.pdf", [(700, TARGET_EN)])
    scanned_pdf(tmp_path / "src" / "page.pdf", 0, tmp_path / "docs" / "scan.pdf")  # a picture of the page
    pipeline = make_pipeline(ocr=True, second_embedder="none")
    assert pipeline.ingest(tmp_path / "docs", progress=False).ocr_pages == 1

    passage, span = _target_span(pipeline, "scan.pdf", "launch code")
    assert passage.ocr and passage.boxes
    shown = pipeline.viewer().page_image("scan.pdf", 1, spans=[span], max_width=800)
    # The scan is the page at 210 mm wide, as the original: the same place on the same size of page.
    _check_highlight(shown.png, render_page(alone, 1, max_width=800).png)


def test_a_citations_spans_become_page_offsets_and_the_passage_is_drawn_lightly(make_pipeline, tmp_path):
    full, _ = _pair(tmp_path, "code.pdf", TARGET_EN, OTHER_EN)
    pipeline = make_pipeline(ocr=False, second_embedder="none")
    pipeline.ingest(full.parent, progress=False)
    passage = pipeline.viewer().passages("code.pdf")[0]
    citation = Citation(1, "code.pdf", 1, (), passage.start_char, passage.end_char, passage.text, 1.0)
    at = passage.text.index("ZEBRA-42")
    spans = page_spans(citation, [(at, at + 8)])
    assert spans == ((passage.start_char + at, passage.start_char + at + 8),)

    shown = pipeline.viewer().page_image("code.pdf", 1, spans=spans, passage=(passage.start_char, passage.end_char))
    assert shown.highlighted == 1  # one word
    assert shown.passage_boxes > 5  # the rest of both lines, lightly
    again = pipeline.viewer().page_image("code.pdf", 1, spans=spans, passage=(passage.start_char, passage.end_char))
    assert again is shown  # cached per document, page and spans


def test_a_moved_or_changed_original_is_never_drawn_with_the_old_boxes(make_pipeline, tmp_path):
    full, _ = _pair(tmp_path, "code.pdf", TARGET_EN, OTHER_EN)
    pipeline = make_pipeline(ocr=False, second_embedder="none")
    pipeline.ingest(full.parent, progress=False)
    viewer = pipeline.viewer()
    assert viewer.original("code.pdf") == full.resolve()

    _draw(full, [(300, OTHER_EN)])  # the file changes after it was indexed
    with pytest.raises(OriginalUnavailableError, match="changed since"):
        viewer.page_image("code.pdf", 1, spans=[(0, 5)])
    full.unlink()
    with pytest.raises(OriginalUnavailableError, match="no longer at"):
        viewer.original("code.pdf")
    with pytest.raises(UnknownDocumentError):
        viewer.page_image("never-indexed.pdf", 1)


def test_a_collection_indexed_before_layouts_shows_the_page_and_says_why_nothing_is_highlighted(make_pipeline, tmp_path):
    import shutil

    full, _ = _pair(tmp_path, "code.pdf", TARGET_EN, OTHER_EN)
    pipeline = make_pipeline(ocr=False, second_embedder="none")
    pipeline.ingest(full.parent, progress=False)
    shutil.rmtree(pipeline.settings.collection_dir / "pages")  # as a collection from before this version
    viewer = make_pipeline(ocr=False, second_embedder="none").viewer()
    with pytest.raises(OriginalUnavailableError, match="kb ingest"):
        viewer.page_image("code.pdf", 1, spans=[(0, 5)])
    assert all(not passage.boxes for passage in viewer.passages("code.pdf"))


def test_a_text_documents_section_is_stitched_from_the_index_with_the_passage_in_place(make_pipeline, tmp_path):
    body = " ".join(f"Sentence {n} of the install section says step {n} is done." for n in range(60))
    write(tmp_path / "docs" / "guide.md", f"# Guide\n\nIntro.\n\n## Install\n\n{body}\n\n## Other\n\nElse.\n")
    pipeline = make_pipeline(chunk_tokens=120, chunk_overlap=20, second_embedder="none")
    pipeline.ingest(tmp_path / "docs", progress=False)
    passages = [p for p in pipeline.viewer().passages("guide.md") if p.heading_path == ("Guide", "Install")]
    assert len(passages) > 2  # the section spans several passages
    middle = passages[1]
    section = pipeline.viewer().section("guide.md", middle.start_char, middle.end_char)
    assert section.heading_path == ("Guide", "Install")
    assert section.text[section.passage_start:section.passage_end] == middle.text
    assert "Sentence 0 of" in section.text and "Sentence 59 of" in section.text and "Else." not in section.text
