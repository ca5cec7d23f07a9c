"""A PDF page drawn as a PNG with boxes highlighted: how a cited page is shown.

pdfium (``pypdfium2``) renders the page as displayed (crop box, rotation), the same view the boxes of
``ingest.layout`` are measured in, so a box's fractions multiplied by the image's size are its pixels.
Highlights are translucent colour laid over the page (the words stay readable): ``STRONG`` for what
supports an answer, ``LIGHT`` for the rest of the cited passage.

The image is bounded: ``max_width`` pixels wide (at most ``MAX_SCALE`` times the page's size in points)
and at most ``MAX_PIXELS`` in all, so a poster-sized page cannot exhaust memory.

Worked example::

    png = render_page(Path("q2.pdf"), 4, [Highlight(box, STRONG)], max_width=900)

Deliberately not here: which boxes to highlight (``app.pages``), caching, the page's text.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.types import TextBox

STRONG = (255, 170, 0, 120)  # RGBA laid over what supports the answer
LIGHT = (90, 160, 255, 60)  # over the rest of the cited passage
MAX_SCALE = 4.0
MAX_PIXELS = 6_000_000
PAD = 0.002  # a box grows by this fraction of the page on each side, so the ink is inside the colour


class PageImageError(Exception):
    """The page cannot be drawn: no such page, or a file pdfium cannot open with the passwords given."""


@dataclass(frozen=True)
class Highlight:
    box: TextBox
    colour: tuple[int, int, int, int]


@dataclass(frozen=True)
class PageImage:
    png: bytes
    width: int  # pixels
    height: int
    page_count: int  # pages the document has


def render_page(path: Path, page_number: int, highlights: Sequence[Highlight] = (), *, max_width: int = 1000,
                passwords: Sequence[str] = ()) -> PageImage:
    """Page ``page_number`` (1-based) of the PDF at ``path`` as a PNG with ``highlights`` laid over it."""
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    document = _open(pdfium, path, passwords)
    try:
        page_count = len(document)
        if not 1 <= page_number <= page_count:
            raise PageImageError(f"no page {page_number}: the document has {page_count}")
        page = document[page_number - 1]
        try:
            width, height = page.get_width(), page.get_height()
            scale = min(max_width / width, MAX_SCALE, (MAX_PIXELS / (width * height)) ** 0.5)
            image = page.render(scale=scale).to_pil().convert("RGBA")
        finally:
            page.close()
    finally:
        document.close()
    if highlights:
        layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        pixels_wide, pixels_high = image.size
        for highlight in highlights:
            box = highlight.box
            draw.rectangle(((box.left - PAD) * pixels_wide, (box.top - PAD) * pixels_high,
                            (box.right + PAD) * pixels_wide, (box.bottom + PAD) * pixels_high), fill=highlight.colour)
        image = Image.alpha_composite(image, layer)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG", optimize=False)
    return PageImage(out.getvalue(), image.size[0], image.size[1], page_count)


def _open(pdfium, path: Path, passwords: Sequence[str]):
    last_error: Exception | None = None
    for password in (None, *passwords):
        try:
            return pdfium.PdfDocument(str(path), password=password)
        except Exception as exc:  # PdfiumError: a damaged file, or a password that does not fit
            last_error = exc
    raise PageImageError(f"cannot open {path.name}: {last_error}")
