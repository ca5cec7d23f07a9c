"""REST routes that show a document: a cited PDF page with highlights, a text document's section, the
passages the index holds, and the original file. All under the caller's grants (404 outside them).

Offsets in ``spans`` and ``passage`` are into the page's indexed text, as ``start_char``/``end_char`` of
a passage and ``page_spans`` of a citation give them (``kb.citations[].page_url`` is such a request,
ready made).

Deliberately not here: drawing or finding the boxes (``app.pages``), who may read (``team.permissions``).
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Sequence
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from app.pages import MAX_WIDTH
from core.types import Citation
from server.deps import CallerDep, ServiceDep, readable

router = APIRouter(prefix="/v1", tags=["documents"])
_SPAN = re.compile(r"^(\d{1,9})-(\d{1,9})$")
MAX_SPANS = 200


class PassageOut(BaseModel):
    chunk_id: int
    page: int | None
    section: str | None = Field(description="The headings above the passage, outermost first, joined by ' › '.")
    heading_path: list[str]
    start_char: int = Field(description="Where the passage starts in its page's text (PDF) or its file's text.")
    end_char: int
    text: str
    ocr: bool = Field(description="Recognised from a page image: may hold recognition errors.")
    boxes: list[tuple[int, int, float, float, float, float]] = Field(
        description="[start, end, left, top, right, bottom]: where characters start..end of the page's text lie, as "
                    "fractions of the page as displayed (origin top left). Empty for text documents.")


class SectionOut(BaseModel):
    source: str
    heading_path: list[str]
    text: str
    passage_start: int = Field(description="Where the passage lies in `text`.")
    passage_end: int


def _spans(text: str | None, what: str) -> list[tuple[int, int]]:
    """'10-50,60-80' -> [(10, 50), (60, 80)]; ValueError (a 400) for anything else."""
    if not text:
        return []
    spans = []
    for part in text.split(",")[: MAX_SPANS + 1]:
        match = _SPAN.match(part.strip())
        if not match or int(match.group(1)) >= int(match.group(2)):
            raise ValueError(f"{what} must be character spans like '10-50,60-80' (start < end), not {part[:40]!r}")
        spans.append((int(match.group(1)), int(match.group(2))))
    if len(spans) > MAX_SPANS:
        raise ValueError(f"at most {MAX_SPANS} spans")
    return spans


def page_url(collection: str, citation: Citation, moved: Sequence[tuple[int, int]]) -> str | None:
    """The request that draws a citation's page with its supporting spans (``moved``: as offsets into the page's
    text, ``app.pages.page_spans``); None for a text document."""
    if citation.page is None:
        return None
    query = {"passage": f"{citation.start_char}-{citation.end_char}"}
    if moved:
        query["spans"] = ",".join(f"{start}-{end}" for start, end in moved)
    return (f"/v1/collections/{quote(collection, safe='')}/documents/{quote(citation.source)}/pages/{citation.page}?"
            + urlencode(query))


@router.get("/collections/{name}/documents/{source:path}/pages/{page}", response_class=Response,
            summary="A PDF page as PNG, with spans of its text highlighted",
            responses={200: {"content": {"image/png": {}}, "description": "The page, drawn."}})
def document_page(name: str, source: str, page: int, service: ServiceDep, caller: CallerDep,
                  spans: str | None = Query(None, description="What supports the answer, strongly: '10-50,60-80' "
                                                              "(offsets into the page's text)."),
                  passage: str | None = Query(None, description="The whole cited passage, lightly: '0-420'."),
                  width: int = Query(1000, ge=100, le=MAX_WIDTH, description="Image width in pixels.")) -> Response:
    viewer = readable(service, caller, name).viewer()
    passage_spans = _spans(passage, "passage")
    if len(passage_spans) > 1:
        raise ValueError("passage is one span, like '0-420'")
    shown = viewer.page_image(source, page, spans=_spans(spans, "spans"),
                              passage=passage_spans[0] if passage_spans else None, max_width=width)
    headers = {"X-Page-Count": str(shown.page_count), "X-Highlighted": str(shown.highlighted),
               "Cache-Control": "private, max-age=300"}
    if shown.note:
        headers["X-Highlight-Note"] = shown.note.encode("ascii", "replace").decode()
    return Response(shown.png, media_type="image/png", headers=headers)


@router.get("/collections/{name}/documents/{source:path}/passages", response_model=list[PassageOut],
            summary="A document's passages as the index holds them, with where they lie on their pages")
def document_passages(name: str, source: str, service: ServiceDep, caller: CallerDep) -> list[PassageOut]:
    viewer = readable(service, caller, name).viewer()
    return [PassageOut(chunk_id=p.chunk_id, page=p.page, section=" › ".join(p.heading_path) or None,
                       heading_path=list(p.heading_path), start_char=p.start_char, end_char=p.end_char, text=p.text,
                       ocr=p.ocr, boxes=[(b.start, b.end, round(b.left, 5), round(b.top, 5), round(b.right, 5),
                                          round(b.bottom, 5)) for b in p.boxes])
            for p in viewer.passages(source)]


@router.get("/collections/{name}/documents/{source:path}/section", response_model=SectionOut,
            summary="A text document's section around a passage (Markdown, Word, HTML, text)")
def document_section(name: str, source: str, service: ServiceDep, caller: CallerDep,
                     start: int = Query(ge=0, description="The passage's start_char."),
                     end: int = Query(ge=0, description="The passage's end_char.")) -> SectionOut:
    section = readable(service, caller, name).viewer().section(source, start, end)
    return SectionOut(source=section.source, heading_path=list(section.heading_path), text=section.text,
                      passage_start=section.passage_start, passage_end=section.passage_end)


@router.get("/collections/{name}/documents/{source:path}/file", response_class=FileResponse,
            summary="The original file, as it was indexed",
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The file."}})
def document_file(name: str, source: str, service: ServiceDep, caller: CallerDep) -> FileResponse:
    path = readable(service, caller, name).viewer().original(source)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    service.audit(caller, "download", name, source)
    return FileResponse(path, media_type=media_type, filename=source.rsplit("/", 1)[-1],
                        content_disposition_type="attachment")
