"""Ingest that users can trust: OCR, passwords, time limits, other formats, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pypdf import PdfReader

from ingest.loaders import LoadError, LoadOptions, load_file
from retrieval.store import Collection
from team.uploads import save
from tests.conftest import SAMPLE_DATA, make_encrypted_pdf, write
from tests.server_helpers import kb

BIN = Path(sys.executable).parent


def scanned_pdf(source_pdf: Path, page_index: int, target: Path) -> Path:
    """A PDF whose only page is a picture of another PDF's page: no text layer, like a scan."""
    import pypdfium2 as pdfium
    from fpdf import FPDF

    document = pdfium.PdfDocument(str(source_pdf))
    image = document[page_index].render(scale=2).to_pil()
    document.close()
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=0, y=0, w=210)
    target.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(target))
    assert not (PdfReader(target).pages[0].extract_text() or "").strip()
    return target


def test_scanned_chinese_page_is_read_by_ocr_and_marked(make_pipeline, tmp_path):
    docs = tmp_path / "docs"
    scanned_pdf(SAMPLE_DATA / "quick-reference.pdf", 2, docs / "scan.pdf")  # the Chinese page
    loaded = load_file(docs / "scan.pdf", "scan.pdf")
    assert loaded.pages[0].ocr
    assert "嵌入模型" in loaded.pages[0].text and "pickle" in loaded.pages[0].text

    pipeline = make_pipeline()
    report = pipeline.ingest(docs, progress=False)
    assert report.added == ("scan.pdf",) and report.ocr_pages == 1
    hit = pipeline.retrieve("更换嵌入模型会怎样？").hits[0]
    assert hit.chunk.ocr and hit.chunk.page == 1

    with pytest.raises(LoadError, match="OCR is switched off"):
        load_file(docs / "scan.pdf", "scan.pdf", LoadOptions(ocr=False))


def test_encrypted_pdf_opens_with_a_configured_password(make_pipeline, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    make_encrypted_pdf(docs / "locked.pdf", ["The safe combination is 31-41-59."], user_password="s3cret")

    without = make_pipeline().ingest(docs, progress=False)
    assert "password" in without.failed[0].reason

    with_password = make_pipeline(pdf_passwords=["wrong", "s3cret"], collection="pw")
    report = with_password.ingest(docs, progress=False)
    assert report.added == ("locked.pdf",)
    assert "31-41-59" in with_password.retrieve("safe combination").hits[0].chunk.text


def test_a_file_over_the_time_limit_is_reported_and_the_run_goes_on(make_pipeline, tmp_path):
    docs = tmp_path / "docs"
    scanned_pdf(SAMPLE_DATA / "quick-reference.pdf", 0, docs / "a-slow.pdf")  # OCR takes seconds; sorted first
    write(docs / "quick.md", "# Quick\n\nThis one is fast.\n")
    pipeline = make_pipeline(file_timeout_seconds=0.5)
    report = pipeline.ingest(docs, progress=False)
    assert [f.source for f in report.failed] == ["a-slow.pdf"]
    assert "took longer than 0.5 s" in report.failed[0].reason
    assert report.added == ("quick.md",)  # the worker was replaced and the run went on


def test_word_and_html_documents_keep_their_headings(make_pipeline, tmp_path):
    import docx

    docs = tmp_path / "docs"
    docs.mkdir()
    document = docx.Document()
    document.add_heading("Maintenance", level=1)
    document.add_paragraph("Replace the air filter every 500 operating hours.")
    document.save(str(docs / "manual.docx"))
    write(docs / "faq.html", "<html><body><h1>FAQ</h1><h2>Returns</h2><p>Returns are accepted within 30 days.</p>"
                             "<script>var x = 1;</script></body></html>")
    pipeline = make_pipeline()
    report = pipeline.ingest(docs, progress=False)
    assert sorted(report.added) == ["faq.html", "manual.docx"]
    filter_hit = pipeline.retrieve("How often is the air filter replaced?").hits[0]
    assert filter_hit.chunk.source == "manual.docx" and filter_hit.chunk.heading_path == ("Maintenance",)
    returns_hit = pipeline.retrieve("return policy days").hits[0]
    assert returns_hit.chunk.source == "faq.html" and returns_hit.chunk.heading_path == ("FAQ", "Returns")
    assert "var x" not in returns_hit.chunk.text


def test_kill_9_during_ingest_leaves_a_loadable_index_and_the_next_run_finishes(tmp_path, model_cache, e5, run_models):
    docs = tmp_path / "docs"
    for i in range(40):
        write(docs / f"note-{i:02d}.md", f"# Note {i}\n\n" + f"Item {i} is stored on shelf {i * 7}. " * 30 + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    # The store's crash safety, not retrieval: no second embedder (half the embedding per file).
    env.update({"KB_HOME": str(tmp_path / "home"), "KB_MODEL_CACHE": str(model_cache), "KB_CHECKPOINT_SECONDS": "0",
                "KB_SECOND_EMBEDDER": "none"})
    collection_dir = tmp_path / "home" / "collections" / "default"

    process = subprocess.Popen([str(BIN / "kb"), "ingest", str(docs), "-q"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if Collection.exists(collection_dir) and len(Collection.open(collection_dir, e5.identity).files) >= 3:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the ingest and its parser worker, mid-run
    process.wait()

    survivor = Collection.open(collection_dir, e5.identity)
    done_before = len(survivor.files)
    assert 3 <= done_before < 40
    assert survivor.chunk_count == sum(len(f.chunk_ids) for f in survivor.files.values())

    finish = kb(tmp_path / "home", "ingest", str(docs), "--json", KB_CHECKPOINT_SECONDS="0", KB_SECOND_EMBEDDER="none")
    assert finish.returncode == 0, finish.stderr  # the lock died with the killed process
    report = json.loads(finish.stdout)
    assert len(report["unchanged"]) == done_before
    assert len(report["added"]) == 40 - done_before
    assert len(Collection.open(collection_dir, e5.identity).files) == 40


def test_collections_are_listed_and_deleted(tmp_path, run_models):
    home = tmp_path / "home"
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nAlpha.\n")
    for name in ("alpha", "beta"):
        assert kb(home, "ingest", str(docs), "-q", "-c", name, KB_SECOND_EMBEDDER="none").returncode == 0
    assert kb(home, "collections").stdout.split() == ["alpha", "beta"]
    uploads = home / "documents" / "alpha"
    uploaded = uploads / save(uploads, [("up.md", b"# Up\n\nUploaded through the API.\n")])[0]
    kept = write(uploads / "own.md", "# Own\n\nPut here by hand, not uploaded.\n")
    deleted = kb(home, "collections", "--delete", "alpha")
    assert deleted.returncode == 0
    assert not uploaded.exists()  # the one way to delete a collection takes its uploads too (as the API does)
    assert (docs / "a.md").is_file()  # a folder of the user's own is never touched
    assert kept.is_file()  # and only what was uploaded
    assert kb(home, "collections").stdout.split() == ["beta"]
    missing = kb(home, "collections", "--delete", "../home")
    assert missing.returncode == 2
