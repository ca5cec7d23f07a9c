"""pdfium and OCR: a second PDF parser and OCR for pages without a text layer.

The only module that imports rapidocr; pypdfium2 is imported here, in ``ingest.layout`` (character
boxes) and in ``ingest.page_images`` (rendering a page to show).

``pdfium_page_texts`` is the fallback when pypdf gives up on a damaged file:
pdfium (Chrome's PDF engine) repairs many files pypdf rejects (a missing
``startxref``, broken page trees).

A page is rendered with pdfium at ``scale`` (2 = 144 dpi, enough for body
text) and read by RapidOCR, whose PP-OCRv4 Chinese/English models ship inside
the ``rapidocr-onnxruntime`` wheel, so nothing is downloaded. Recognised lines
are joined top to bottom; lines below ``min_confidence`` are dropped, because
a wrong character in an index is worse than a missing one. Each line keeps its
box (``PageLayout``), so the page can be shown with the line highlighted.

Cost: about 0.5 s to load the models once, then several seconds per page on
two cores (see docs/benchmarks.md).

Deliberately not here: layout analysis (columns, tables), rotated pages,
handwriting, OCR of images embedded in pages that do have a text layer.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

from core.types import PageLayout
from ingest.layout import line_boxes


class OcrError(Exception):
    """The page could not be rendered or recognised."""


def pdfium_page_texts(pdf_path: Path, password: str | None = None) -> list[str]:
    """Text of every page as pdfium extracts it; raises ``OcrError`` if pdfium cannot open the file."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(str(pdf_path), password=password)
    except Exception as exc:  # PdfiumError for damaged or locked files
        raise OcrError(str(exc)) from exc
    try:
        texts = []
        for page in document:
            textpage = page.get_textpage()
            texts.append(textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n"))
            textpage.close()
            page.close()
        return texts
    finally:
        document.close()


class PageOCR:
    def __init__(self, scale: float = 2.0, min_confidence: float = 0.5) -> None:
        self.scale = scale
        self.min_confidence = min_confidence

    @cached_property
    def _engine(self):
        from rapidocr_onnxruntime import RapidOCR

        logging.getLogger("RapidOCR").setLevel(logging.WARNING)  # it logs every call at INFO
        return RapidOCR()

    def read_page(self, pdf_path: Path, page_index: int, password: str | None = None) -> str:
        """Text of page ``page_index`` (0-based), '' when nothing legible is found."""
        return self.read_page_layout(pdf_path, page_index, password)[0]

    def read_page_layout(self, pdf_path: Path, page_index: int,
                         password: str | None = None) -> tuple[str, PageLayout | None]:
        """Text of page ``page_index`` (0-based) and a box per line; ('', None) when nothing legible is found."""
        import numpy as np
        import pypdfium2 as pdfium

        try:
            document = pdfium.PdfDocument(str(pdf_path), password=password)
            try:
                page = document[page_index]
                width, height = float(page.get_width()), float(page.get_height())
                bitmap = page.render(scale=self.scale)
                image = np.asarray(bitmap.to_pil().convert("RGB"))
            finally:
                document.close()
        except Exception as exc:  # pdfium raises PdfiumError and friends for damaged pages
            raise OcrError(f"cannot render page {page_index + 1}: {exc}") from exc
        result, _ = self._engine(image)
        if not result:
            return "", None
        # result rows: [box (4 corner points), text, confidence]; sort by top edge, then left.
        lines = sorted(
            (row for row in result if float(row[2]) >= self.min_confidence),
            key=lambda row: (round(min(p[1] for p in row[0]) / 10), min(p[0] for p in row[0])),
        )
        pixels_high, pixels_wide = image.shape[:2]

        def box(corners) -> tuple[float, float, float, float]:  # the line's corners as fractions of the page
            xs, ys = [float(p[0]) / pixels_wide for p in corners], [float(p[1]) / pixels_high for p in corners]
            return min(xs), min(ys), max(xs), max(ys)

        kept = [(str(row[1]).strip(), box(row[0])) for row in lines if str(row[1]).strip()]
        if not kept:
            return "", None
        text, boxes = line_boxes(kept)
        return text, PageLayout(width=width, height=height, boxes=boxes)
