"""pdfium and OCR: a second PDF parser and OCR for pages without a text layer.

The only module that imports rapidocr and pypdfium2.

``pdfium_page_texts`` is the fallback when pypdf gives up on a damaged file:
pdfium (Chrome's PDF engine) repairs many files pypdf rejects (a missing
``startxref``, broken page trees).

A page is rendered with pdfium at ``scale`` (2 = 144 dpi, enough for body
text) and read by RapidOCR, whose PP-OCRv4 Chinese/English models ship inside
the ``rapidocr-onnxruntime`` wheel, so nothing is downloaded. Recognised lines
are joined top to bottom; lines below ``min_confidence`` are dropped, because
a wrong character in an index is worse than a missing one.

Cost: about 0.5 s to load the models once, then several seconds per page on
two cores (see docs/benchmarks.md).

Deliberately not here: layout analysis (columns, tables), rotated pages,
handwriting, OCR of images embedded in pages that do have a text layer.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path


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
        import numpy as np
        import pypdfium2 as pdfium

        try:
            document = pdfium.PdfDocument(str(pdf_path), password=password)
            try:
                bitmap = document[page_index].render(scale=self.scale)
                image = np.asarray(bitmap.to_pil().convert("RGB"))
            finally:
                document.close()
        except Exception as exc:  # pdfium raises PdfiumError and friends for damaged pages
            raise OcrError(f"cannot render page {page_index + 1}: {exc}") from exc
        result, _ = self._engine(image)
        if not result:
            return ""
        # result rows: [box (4 corner points), text, confidence]; sort by top edge, then left.
        lines = sorted(
            (row for row in result if float(row[2]) >= self.min_confidence),
            key=lambda row: (round(min(p[1] for p in row[0]) / 10), min(p[0] for p in row[0])),
        )
        return "\n".join(str(row[1]) for row in lines).strip()
