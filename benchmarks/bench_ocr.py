"""OCR throughput: pages per second for scanned PDF pages, as ingest reads them.

Makes a "scanned" PDF from a text PDF (each page rendered to an image at 144
dpi and placed as the only content of a new page: no text layer), then times
``ingest.loaders.load_file`` on it twice in one process: the first run
includes loading the OCR models, the second does not. Also checks how much of
the original text the OCR recovered (share of the original's words found).

Not measured: accuracy on real scans (noise, skew, photos of pages), GPU.

    .venv/bin/python benchmarks/bench_ocr.py [--pdf data/quick-reference.pdf] [--repeat-pages 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import tempfile
import time
from pathlib import Path

from fpdf import FPDF
from pypdf import PdfReader

from ingest.loaders import load_file
from ingest.ocr import PageOCR


def make_scan(source: Path, target: Path, repeat: int) -> int:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(source))
    images = [page.render(scale=2).to_pil() for page in document] * repeat
    document.close()
    pdf = FPDF()
    for image in images:
        pdf.add_page()
        pdf.image(image, x=0, y=0, w=210)
    pdf.output(str(target))
    return len(images)


def words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z]{3,}|[\u4e00-\u9fff]", text.lower()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdf", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "quick-reference.pdf")
    parser.add_argument("--repeat-pages", type=int, default=3, help="use each page this many times")
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"machine: {platform.platform()}, {cpu}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    original = " ".join(page.extract_text() or "" for page in PdfReader(args.pdf).pages)
    with tempfile.TemporaryDirectory() as folder:
        scan = Path(folder) / "scan.pdf"
        pages = make_scan(args.pdf, scan, args.repeat_pages)
        ocr = PageOCR()
        for label in ("first run (includes model load)", "second run (models loaded)"):
            started = time.perf_counter()
            loaded = load_file(scan, "scan.pdf", ocr=ocr)
            seconds = time.perf_counter() - started
            recovered = words(" ".join(page.text for page in loaded.pages))
            expected = words(original)
            print(f"{label}: {pages} pages in {seconds:.1f} s = {pages / seconds:.2f} pages/s; "
                  f"{len(expected & recovered) / len(expected):.0%} of the original's words recovered; "
                  f"all pages marked ocr: {all(page.ocr for page in loaded.pages)}")


if __name__ == "__main__":
    main()
