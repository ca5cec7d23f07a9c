"""Showing the cited page: what the page layouts cost at ingest and on disk, and how fast a page is drawn.

Side by side, on the same PDFs:
- reading: ``load_file`` as ingest runs it (text + layouts) vs the layouts alone (``pdf_layouts``), so the
  layouts' share of reading is known; and the share of each page's indexed characters that got a box
  (table syntax "|" and "---" left out: they are not on the page);
- disk: the kept layout files (``retrieval.page_layouts``) per 1,000 pages;
- drawing at the UI's size (1000 px wide): raw pdfium render + PNG vs ``render_page`` with a passage's
  highlights, cold; and through ``DocumentViewer`` (one file ingested with the real pipeline), cold and cached.

    .venv/bin/python benchmarks/bench_pages.py --pdfs ../shared/data/pdf/sec-10-q --files 5 --render-pages 40
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.pipeline import Pipeline  # noqa: E402
from app.settings import load_settings  # noqa: E402
from ingest.layout import pdf_layouts, table_syntax  # noqa: E402
from ingest.loaders import LoadOptions, load_file  # noqa: E402
from ingest.page_images import LIGHT, STRONG, Highlight, render_page  # noqa: E402
from retrieval import page_layouts  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def raw_render(path: Path, number: int, width: int) -> bytes:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(path))
    page = document[number - 1]
    image = page.render(scale=width / page.get_width()).to_pil()
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG")
    document.close()
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdfs", type=Path, required=True)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--render-pages", type=int, default=40)
    args = parser.parse_args()
    files = sorted(args.pdfs.glob("*.pdf"))[: args.files]
    reading, layout_seconds, pages, placed, placeable = 0.0, 0.0, 0, 0, 0
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        loaded_files = []
        for path in files:
            started = time.perf_counter()
            loaded = load_file(path, path.name, LoadOptions(ocr=False))
            reading += time.perf_counter() - started
            texts = {page.page: page.text for page in loaded.pages if not page.ocr}
            started = time.perf_counter()
            pdf_layouts(path, None, texts)
            layout_seconds += time.perf_counter() - started
            layouts = {page.page: page.layout for page in loaded.pages if page.layout is not None}
            page_layouts.write(folder, path.name, loaded.content_sha256, 4, path, layouts)
            for page in loaded.pages:
                if page.layout is None:
                    continue
                pages += 1
                covered = {i for box in page.layout.boxes for i in range(box.start, box.end)}
                syntax = table_syntax(page.text)
                wanted = [i for i, c in enumerate(page.text) if not c.isspace() and i not in syntax]
                placeable += len(wanted)
                placed += sum(i in covered for i in wanted)
            loaded_files.append((path, loaded))
        disk = sum(p.stat().st_size for p in (folder / page_layouts.FOLDER).iterdir())
        print(f"files {len(files)}, pages {pages}")
        print(f"reading with layouts {reading:.1f} s ({1000 * reading / pages:.0f} ms/page); "
              f"layouts alone {layout_seconds:.1f} s ({1000 * layout_seconds / pages:.0f} ms/page, "
              f"{100 * layout_seconds / reading:.0f} % of reading)")
        print(f"characters placed on their page: {100 * placed / placeable:.1f} % of {placeable:,}")
        print(f"layout files: {disk / 1e6:.2f} MB, {disk / pages * 1000 / 1e6:.2f} MB per 1,000 pages")

        # Drawing, cold: each page once, with its first passage-sized stretch highlighted.
        raw, ours = [], []
        chosen = [(path, page) for path, loaded in loaded_files for page in loaded.pages if page.layout][
            : args.render_pages]
        for path, page in chosen:
            started = time.perf_counter()
            raw_render(path, page.page, 1000)
            raw.append(time.perf_counter() - started)
            boxes = page.layout.boxes_for(0, 1200)
            started = time.perf_counter()
            render_page(path, page.page, [*(Highlight(b, LIGHT) for b in boxes[20:]),
                                          *(Highlight(b, STRONG) for b in boxes[:20])], max_width=1000)
            ours.append(time.perf_counter() - started)
        print(f"draw {len(chosen)} pages at 1000 px: raw pdfium+PNG p50 {1000 * statistics.median(raw):.0f} ms "
              f"p95 {1000 * percentile(raw, 0.95):.0f}; render_page with highlights p50 "
              f"{1000 * statistics.median(ours):.0f} ms p95 {1000 * percentile(ours, 0.95):.0f}")

        # Through the viewer: one file indexed with the real pipeline, each page cold then cached.
        path = files[0]
        settings = load_settings(home=folder / "home", collection="bench", second_embedder="none", ocr=False)
        pipeline = Pipeline.from_settings(settings)
        docs = folder / "docs"
        docs.mkdir()
        (docs / path.name).write_bytes(path.read_bytes())
        pipeline.ingest(docs, progress=False)
        viewer = pipeline.viewer()
        cold, cached = [], []
        for passage in viewer.passages(path.name)[: args.render_pages]:
            span = ((passage.start_char, min(passage.end_char, passage.start_char + 200)),)
            for times in (cold, cached):
                started = time.perf_counter()
                viewer.page_image(path.name, passage.page, spans=span, passage=(passage.start_char, passage.end_char))
                times.append(time.perf_counter() - started)
        print(f"viewer ({path.name}, {len(cold)} passages): cold p50 {1000 * statistics.median(cold):.0f} ms "
              f"p95 {1000 * percentile(cold, 0.95):.0f} (first call hashes the original: "
              f"{1000 * cold[0]:.0f} ms); cached p50 {1000 * statistics.median(cached):.2f} ms")


if __name__ == "__main__":
    main()
