"""Read PDF, Markdown, plain-text, Word and HTML files into ``Page`` objects.

- PDF goes through pypdf, one ``Page`` per page that has a text layer, with its
  1-based page number. A page with a table of figures is read again with
  positions and its tables rebuilt as Markdown tables (``ingest.tables``).
  A doubled ("fake bold") or garbled text layer (``ingest.text_quality``) is
  read again with pdfium, else de-doubled, else treated as a page without text
  (OCR'd when OCR is on); the file's warnings say which pages. A re-read that
  finds a fraction of a garbled page's characters does not count.
- A PDF past pypdf's limits against hostile files (real filings: arrays of over
  100,000 elements) is read again with raised limits; other files pypdf cannot
  parse are read by pdfium, which gives text without positions (no tables).
- Markdown is split along its heading structure (parsed by markdown-it-py, so
  ``#`` lines inside code fences are not mistaken for headings and setext
  headings count); each section keeps the path of headings above it.
- Every PDF page keeps where its words lie (``ingest.layout``: pdfium's character
  boxes aligned with the indexed text; OCR's line boxes), so the page can be
  shown with a cited passage highlighted.
- PDF pages without a text layer go through OCR (``ingest.ocr``) when it is
  switched on; such pages are marked ``ocr=True``. A page OCR cannot read is
  listed in the file's warnings, never indexed as empty.
- Encrypted PDFs are opened with the empty password or any of the passwords
  the user configured.
- Word (.docx, through mammoth) and HTML (through html2text) are converted to
  Markdown first, so their headings give heading paths like Markdown's; their
  offsets refer to that Markdown text.
- Text files (``.txt``) are one section.
- Text is decoded as UTF-8 (with or without BOM), then GB18030 (a superset of
  GBK and GB2312), the encodings Chinese users actually have.

Every problem becomes a ``LoadError`` whose message tells the user what is wrong
and what to do; nothing here returns empty pages silently.

Deliberately not here: time limits and crash isolation (``ingest.isolation``
runs this module in a worker process), legacy .doc, spreadsheets, images.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt
from pypdf import PdfReader, apply_configuration
from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError, PdfReadError, PyPdfError

from core.types import LoadedFile, Page, PageLayout
from ingest.layout import LayoutError, pdf_layouts
from ingest.ocr import OcrError, PageOCR, pdfium_page_texts
from ingest.tables import looks_tabular, render_page
from ingest.text_quality import diagnose, undouble

# Raised whenever the text or chunks a file gives change (table rebuilding, headings, chunk boundaries).
# The manifest keeps the version each file was read with; ``kb ingest`` reads older ones again, so a
# collection gains the better text without being rebuilt by hand. 1: files indexed before it was recorded.
READER_VERSION = 4  # 4: PDF pages keep where their words lie (``ingest.layout``), to be shown highlighted


@dataclass(frozen=True)
class LoadOptions:
    passwords: tuple[str, ...] = ()  # tried, after the empty one, on encrypted PDFs
    ocr: bool = True  # OCR pages that have no text layer

# pypdf logs every recoverable oddity of a broken PDF as a warning; the ingest
# report already says what matters about each file.
logging.getLogger("pypdf").setLevel(logging.ERROR)


class LoadError(Exception):
    """A file that cannot be used; the message is shown to the user as is."""


Reader = Callable[..., tuple[list[Page], str | None]]  # (path, data, source, options, ocr, warnings)


def _read_pdf(path: Path, data: bytes, source: str, options: LoadOptions, ocr: PageOCR | None,
              warnings: list[str]) -> tuple[list[Page], str | None]:
    if options.ocr and ocr is None:
        ocr = PageOCR()
    return _pdf_pages(path, source, options, ocr if options.ocr else None, warnings)


def _read_docx(path: Path, data: bytes, source: str, *_: object) -> tuple[list[Page], str | None]:
    return markdown_sections(_docx_markdown(path), source), None


def _read_html(path: Path, data: bytes, source: str, *_: object) -> tuple[list[Page], str | None]:
    html = decode_text(data)
    return markdown_sections(_html_markdown(html), source), _html_title(html)


def _read_markdown(path: Path, data: bytes, source: str, *_: object) -> tuple[list[Page], str | None]:
    return markdown_sections(decode_text(data), source), None


def _read_text(path: Path, data: bytes, source: str, *_: object) -> tuple[list[Page], str | None]:
    text = decode_text(data)
    return ([Page(source=source, page=None, text=text)] if text.strip() else []), None


# The one table of file types: ingest, the folder scan, the UI's uploader and the API read it.
READERS: dict[str, Reader] = {
    ".pdf": _read_pdf, ".md": _read_markdown, ".markdown": _read_markdown, ".txt": _read_text,
    ".docx": _read_docx, ".html": _read_html, ".htm": _read_html,
}
SUPPORTED_SUFFIXES = tuple(READERS)


def load_file(path: Path, source: str, options: LoadOptions = LoadOptions(), ocr: PageOCR | None = None) -> LoadedFile:
    """Read one file; ``source`` is the name it is cited by."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read file: {exc.strerror or exc}") from exc
    if not data:
        raise LoadError("empty file (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise LoadError(f"unsupported file type {path.suffix.lower()!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    warnings: list[str] = []
    pages, title = reader(path, data, source, options, ocr, warnings)
    if not pages:
        raise LoadError("no text found in the file")
    return LoadedFile(source=source, content_sha256=digest, pages=tuple(pages), warnings=tuple(warnings), title=title)


def decode_text(data: bytes) -> str:
    """Decode UTF-8 (BOM or not) or GB18030; anything else is a clear error."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise LoadError("cannot decode text: not UTF-8 or GB18030/GBK; re-save the file as UTF-8")


def _docx_markdown(path: Path) -> str:
    import mammoth

    try:
        with path.open("rb") as handle:
            return mammoth.convert_to_markdown(handle).value
    except Exception as exc:  # a damaged .docx surfaces as zip, XML or key errors
        raise LoadError(f"corrupt Word file: {type(exc).__name__}: {exc}") from exc


_TABLE = re.compile(r"<table\b.*?</table>", re.IGNORECASE | re.DOTALL)
_LINE_BREAK = re.compile(r"<br\s*/?>|\s*\n\s*", re.IGNORECASE)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _html_markdown(html: str) -> str:
    import html2text

    # A line break inside a table cell ("文史/历史类<br>最高") would break the Markdown row in two,
    # and the heading row with it: inside tables it becomes a space.
    html = _TABLE.sub(lambda table: _LINE_BREAK.sub(" ", table.group(0)), html)
    converter = html2text.HTML2Text()
    converter.body_width = 0  # no hard wrapping: lines stay sentences
    converter.ignore_images = True
    return converter.handle(html)


def _html_title(html: str) -> str | None:
    import html as entities

    match = _HTML_TITLE.search(html)
    return " ".join(entities.unescape(match.group(1)).split()) if match else None


def _open_pdf(path: Path, options: LoadOptions) -> tuple[PdfReader, str | None]:
    reader = PdfReader(path)
    if not reader.is_encrypted:
        return reader, None
    for password in ("", *options.passwords):
        try:
            if reader.decrypt(password):
                return reader, password
        except (FileNotDecryptedError, NotImplementedError) as exc:
            raise LoadError(f"encrypted PDF that cannot be opened: {exc}") from exc
    hint = "none of the configured passwords fits" if options.passwords else "give it with --password or KB_PDF_PASSWORDS"
    raise LoadError(f"encrypted PDF: it needs a password ({hint})")


def _page_text(pdf_page) -> str:
    """pypdf's text of the page; a page with a table of figures is re-read with positions (``ingest.tables``)."""
    text = pdf_page.extract_text() or ""
    if not looks_tabular(text):
        return text
    try:
        rendered = render_page(pdf_page.extract_text(extraction_mode="layout") or "")
    except Exception:  # layout mode trips on odd fonts where plain mode does not; the plain text still serves
        return text
    return rendered or text


def _metadata_title(reader: PdfReader) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a damaged info dictionary must not cost the document
        return None
    return str(title) if title else None


# pypdf's limits against malicious files (100,000 elements in an array or dictionary) are passed by real
# large filings (a 10-Q's statements); the file is then read again with these. The worker's time limit per
# file (``ingest.isolation``) still bounds what a hostile file can cost.
RAISED_PYPDF_LIMITS = {"array_maximum_element_count": 5_000_000, "dictionary_maximum_element_count": 5_000_000}


def _pypdf_texts(path: Path, options: LoadOptions) -> tuple[list[str], str | None, str | None]:
    """Each page's text (tables rebuilt), the metadata title and the password that opened the file."""
    reader, password = _open_pdf(path, options)
    return [_page_text(pdf_page) for pdf_page in reader.pages], _metadata_title(reader), password


def _pdf_pages(
    path: Path, source: str, options: LoadOptions, ocr: PageOCR | None, warnings: list[str]
) -> tuple[list[Page], str | None]:
    password: str | None = None
    title = None
    try:
        try:
            texts, title, password = _pypdf_texts(path, options)
        except LimitReachedError:
            with apply_configuration(**RAISED_PYPDF_LIMITS):
                texts, title, password = _pypdf_texts(path, options)
    except LoadError:
        raise
    except DependencyError as exc:
        raise LoadError(f"cannot decrypt this PDF: {exc}") from exc
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, RecursionError,
            AssertionError, IndexError, ZeroDivisionError, OverflowError) as exc:
        # pypdf raises a wide range of errors on damaged files. pdfium repairs many of them.
        try:
            texts = pdfium_page_texts(path, password)
        except OcrError:
            raise LoadError(f"corrupt PDF: {type(exc).__name__}: {exc}") from exc
        warnings.append(f"damaged PDF ({type(exc).__name__}: {exc}); its text was recovered with pdfium")
    texts = _usable_texts(path, password, texts, warnings)
    layouts = _layouts(path, password, {n: text for n, text in enumerate(texts, start=1) if text.strip()}, warnings)
    pages: list[Page] = []
    textless: list[int] = []
    for number, text in enumerate(texts, start=1):
        if text.strip():
            pages.append(Page(source=source, page=number, text=text, layout=layouts.get(number)))
        else:
            textless.append(number)
    if textless and ocr is not None:
        unreadable = []
        for number in textless:
            try:
                text, layout = ocr.read_page_layout(path, number - 1, password)
            except OcrError as exc:
                warnings.append(str(exc))
                continue
            if text:
                pages.append(Page(source=source, page=number, text=text, ocr=True, layout=layout))
            else:
                unreadable.append(number)
        pages.sort(key=lambda page: page.page or 0)
        if unreadable:
            warnings.append(f"OCR found no text on page(s) {_page_list(unreadable)}; they are not indexed")
    elif textless and pages:
        warnings.append(f"page(s) {_page_list(textless)} have no text layer and OCR is off; they are not indexed")
    if not pages:
        what = "OCR found no text either" if ocr is not None else "OCR is switched off (KB_OCR)"
        raise LoadError(
            f"no text layer on any of its {len(textless)} page(s) (a scanned or image-only PDF) and {what}; "
            "it was not indexed"
        )
    return pages, title


def _layouts(path: Path, password: str | None, texts: dict[int, str], warnings: list[str]) -> dict[int, PageLayout]:
    """Where each page's text lies (``ingest.layout``); none, with a warning, when pdfium cannot open the file."""
    try:
        return pdf_layouts(path, password, texts)
    except LayoutError as exc:
        warnings.append(f"the positions of the text could not be read ({exc}); its pages are shown without highlights")
        return {}


# A garbled page's re-read must find at least this share of its characters: GBK mojibake spells each Chinese
# character with two, but pdfium reading 30 of a page's 5,000 glyphs (a font it cannot map either) has lost
# the page, and OCR reads it better.
REREAD_MIN_SHARE = 0.25


def _usable_texts(path: Path, password: str | None, texts: list[str], warnings: list[str]) -> list[str]:
    """Doubled ("fake bold") or garbled text layers re-read with pdfium, else repaired or left to OCR.

    A garbled page that pdfium cannot read either comes back empty, so the caller OCRs it (or reports it):
    mojibake is never indexed as text.
    """
    verdicts = [diagnose(text) for text in texts]
    if all(verdict == "ok" for verdict in verdicts):
        return texts
    try:
        again = pdfium_page_texts(path, password)
    except OcrError:
        again = []
    usable = list(texts)
    reread, repaired, dropped = [], [], []
    for index, verdict in enumerate(verdicts):
        if verdict == "ok":
            continue
        alternative = again[index] if index < len(again) else ""
        enough = verdict != "garbled" or _size(alternative) >= REREAD_MIN_SHARE * _size(texts[index])
        if alternative.strip() and enough and diagnose(alternative) == "ok":
            usable[index] = alternative
            reread.append(index + 1)
        elif verdict == "doubled":
            usable[index] = undouble(texts[index])
            repaired.append(index + 1)
        else:
            usable[index] = ""
            dropped.append(index + 1)
    if reread:
        warnings.append(f"page(s) {_page_list(reread)} had a doubled or garbled text layer; read again with pdfium")
    if repaired:
        warnings.append(f"page(s) {_page_list(repaired)} had doubled text (fake bold: characters, words or lines "
                        "drawn twice or more); one copy kept")
    if dropped:
        warnings.append(f"page(s) {_page_list(dropped)} had a garbled text layer (fonts without a character map); "
                        "it was not indexed as text")
    return usable


def _size(text: str) -> int:
    return sum(not character.isspace() for character in text)


def _page_list(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def markdown_sections(text: str, source: str) -> list[Page]:
    """Split Markdown at its headings; each section keeps its heading path.

    Worked example::

        # Install            -> section ("Install",)          "# Install\\nRun make.\\n"
        Run make.
        ## GPU              -> section ("Install", "GPU")    "## GPU\\nSet CMAKE_ARGS.\\n"
        Set CMAKE_ARGS.

    The heading line stays in its section's text, so offsets are plain slices of
    the file and the heading's words are searchable.
    """
    lines = text.splitlines(keepends=True)
    line_starts = [0]
    for line in lines:
        line_starts.append(line_starts[-1] + len(line))

    tokens = MarkdownIt("commonmark").parse(text)
    headings: list[tuple[int, int, int, str]] = []  # (first line, line after it, level, title)
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.map is not None:
            title = tokens[index + 1].content.strip() if index + 1 < len(tokens) else ""
            headings.append((token.map[0], token.map[1], int(token.tag[1]), title))

    sections: list[Page] = []
    path: list[tuple[int, str]] = []  # (level, title) of the headings we are under
    boundaries = [(0, 0, None)] + [(line, after, (level, title)) for line, after, level, title in headings]
    for position, (first_line, body_line, heading) in enumerate(boundaries):
        if heading is not None:
            level, title = heading
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, title))
        next_line = boundaries[position + 1][0] if position + 1 < len(boundaries) else len(lines)
        start, end = line_starts[first_line], line_starts[next_line]
        section_text = text[start:end]
        # A heading directly followed by a sub-heading has no body of its own: its
        # title lives on in the sub-sections' heading path instead.
        if text[line_starts[body_line]:end].strip():
            sections.append(
                Page(
                    source=source,
                    page=None,
                    text=section_text,
                    heading_path=tuple(title for _, title in path),
                    start_char=start,
                )
            )
    return sections
