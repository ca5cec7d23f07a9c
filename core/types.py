"""The types that travel between the stages: files -> pages -> chunks -> hits -> sources -> answers.

A leaf: it imports nothing of this project, so every stage can read these
types and none has to reach into another stage's module for them.

- ``Page``: text that one citation can point at (a PDF page, a Markdown heading section).
- ``TextBox`` / ``PageLayout``: where spans of a PDF page's text lie on the page (``ingest.layout``).
- ``Chunk``: the unit that is embedded, retrieved and cited; it never crosses a page.
- ``LoadedFile`` / ``FileFailure``: a file that was read, or one that could not be used and why.
- ``Turn``: one earlier exchange of a conversation.
- ``Question``: a question analysed once (``retrieval.question.analyse_question``): its language,
  its keywords, its names and numbers, the standalone form of a follow-up.
- ``Hit``: a retrieved chunk with the scores each stage gave it; ``Evidence``: how well the hits cover the question.
- ``Source``: a hit as shown to the model under its number.
- ``Citation``, ``SentenceSupport``, ``EvidenceSpan``, ``Answer``: the answer with what grounds it.

Offsets: ``Chunk.start_char``/``end_char`` index into the text of the PDF page as
it was read (pypdf's text, or its tables rebuilt: ``ingest.tables``), or into the
whole decoded Markdown/text file. So ``page_text[start:end] == chunk.text`` holds
for PDFs and ``file_text[start:end] == chunk.text`` for Markdown, and the UI can
highlight a passage in its context; except for the later parts of a long table,
whose text starts with the table's caption and heading row repeated
(``ingest.chunking``) while their offsets span their own rows.

Deliberately not here: anything that computes (reading, splitting, scoring,
grounding happen in the stages), and each stage's internal types.
"""

from __future__ import annotations

from dataclasses import dataclass


def describe_location(source: str, page: int | None, heading_path: tuple[str, ...]) -> str:
    """Human-readable citation target: ``guide.pdf, page 3`` or ``guide.md › Install › GPU``."""
    if page is not None:
        return f"{source}, page {page}"
    if heading_path:
        return f"{source} › {' › '.join(heading_path)}"
    return source


# ----- ingest --------------------------------------------------------------------------


@dataclass(frozen=True)
class TextBox:
    """Where characters ``start``..``end`` of a page's text lie, as fractions of the page as displayed.

    Displayed: the crop box with the page's rotation applied, origin at the top left, as a renderer
    draws it. A box is one word on one line, or one Chinese character, so a highlight of any span
    is the boxes that overlap it.
    """

    start: int
    end: int
    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True)
class PageLayout:
    """The boxes of a page's text; characters that could not be placed have none."""

    width: float  # points, as displayed
    height: float
    boxes: tuple[TextBox, ...]

    def boxes_for(self, start: int, end: int) -> tuple[TextBox, ...]:
        """The boxes of the characters ``start``..``end`` of the page's text."""
        return tuple(box for box in self.boxes if box.start < end and box.end > start)


@dataclass(frozen=True)
class Page:
    """Text that one citation can point at."""

    source: str  # path relative to the folder being ingested, with "/" separators
    page: int | None  # 1-based PDF page number; None for Markdown and text files
    text: str
    heading_path: tuple[str, ...] = ()  # Markdown headings above this section, outermost first
    start_char: int = 0  # where ``text`` starts in the file's text (0 for PDF pages)
    ocr: bool = False  # the text was recognised from the page image, not extracted
    layout: PageLayout | None = None  # where the text lies on a PDF page (offsets into ``text``)


@dataclass(frozen=True)
class Chunk:
    """A passage that is embedded, retrieved and cited."""

    source: str
    page: int | None
    heading_path: tuple[str, ...]
    start_char: int
    end_char: int
    text: str
    ocr: bool = False  # from an OCR'd page: may hold recognition errors
    header: str = ""  # names the chunk's document ("2023 Q2 AAPL · Apple Inc. · quarter ended April 1, 2023")

    @property
    def chunk_key(self) -> str:
        """Stable identity within a collection: file, page and offset."""
        return f"{self.source}#p{self.page or 0}@{self.start_char}"

    @property
    def embedding_text(self) -> str:
        """What the embedder and the keyword index see: the document's header and the heading path give context.

        A chunk under "Installation > GPU" that only says "run make" would be
        unfindable by a question about GPU installation without its heading path,
        and a table row of Apple's Q2 filing by a question about "Apple's Q2 net
        sales" without its document's header (``ingest.records``). Users are shown
        ``text`` only.
        """
        context = [part for part in (self.header, " > ".join(self.heading_path)) if part]
        return "\n".join([*context, self.text]) if context else self.text

    @property
    def location(self) -> str:
        return describe_location(self.source, self.page, self.heading_path)


@dataclass(frozen=True)
class LoadedFile:
    """A file that was read: its pages and the hash of its bytes."""

    source: str
    content_sha256: str
    pages: tuple[Page, ...]
    warnings: tuple[str, ...] = ()  # problems that did not stop the file, e.g. a page OCR could not read
    title: str | None = None  # the title the file's metadata gives (PDF), if any


@dataclass(frozen=True)
class FileFailure:
    """A file that could not be used, with a reason a user can act on."""

    source: str
    reason: str


# ----- questions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation."""

    question: str
    answer: str


@dataclass(frozen=True)
class Question:
    """A question, analysed once; every stage reads these fields and none tokenises the question again.

    Two forms of the text: ``text`` as the user asked it (the prompt, the refusal and the answer's
    checks speak of it), and ``search_text``, what retrieval searches for: the same text, or for a
    follow-up ("and its warranty?") the question it follows, then it (``retrieval.followup``).

    Worked example (no history)::

        analyse_question("Who won the 2021 Super Bowl?")
        -> text = search_text = "Who won the 2021 Super Bowl?", language "en",
           keywords ("won", "2021", "super", "bowl"), specific_items {"2021", "super", "bowl"}
    """

    text: str  # as asked, stripped
    search_text: str  # the standalone form retrieval searches for
    language: str  # "zh" or "en", of ``text``: the answer's and the refusal's language
    search_language: str  # of ``search_text``: which fusion weights apply
    keywords: tuple[str, ...]  # keyword tokens of ``search_text`` (BM25, coverage, the second stage, answer support)
    content_keywords: frozenset[str]  # of ``text``, lone Chinese characters left out (trimming, table rows)
    specific_items: frozenset[str]  # of ``search_text``: names, numbers, identifiers a passage must hold
    stated_numbers: frozenset[str] = frozenset()  # numbers and identifiers ``text`` states ("8.4", "kb_ui_port")
    acronyms: frozenset[str] = frozenset()  # its all-capital words, lower-cased ("eps", "r&d"): a spelled-out form counts


# ----- retrieval -------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. ``rerank_score`` is None until the second stage ran."""

    chunk: Chunk
    first_stage_score: float  # the first stage's (fused) score; the cosine when it searched vectors only
    first_stage_rank: int  # 1-based rank in the first stage
    rerank_score: float | None = None
    dense_score: float | None = None  # cosine of query and chunk vectors
    keyword_score: float | None = None  # BM25 as a share of the query's best possible score, in [0, 1)
    chunk_id: int | None = None  # the chunk's id in its collection
    second_score: float | None = None  # cosine under the second embedder, when the first stage used one

    @property
    def score(self) -> float:
        """The score that ordered this hit last."""
        return self.rerank_score if self.rerank_score is not None else self.first_stage_score


@dataclass(frozen=True)
class Evidence:
    """How well the passages for the prompt cover a question (``retrieval.evidence.measure_evidence``)."""

    coverage: float  # share of the question's keyword weight the passages hold
    best_keyword: float  # the best passage's BM25 as a share of the question's best possible score
    best_dense: float  # the best passage's cosine to the question
    missing_specifics: tuple[str, ...] = ()  # e.g. ("2021",): names and numbers of the question no passage holds


# ----- answers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A passage as shown to the model under its number."""

    number: int
    hit: Hit
    text: str  # possibly shortened to fit


@dataclass(frozen=True)
class EvidenceSpan:
    """A passage sentence that supports an answer sentence, as offsets into the passage text."""

    source_number: int
    start_char: int
    end_char: int


@dataclass(frozen=True)
class SentenceSupport:
    """One sentence of the answer and what grounds it (``llm.grounding``).

    ``checked`` is False for text that is not a checkable claim (code, headings,
    list introductions, "the documents do not say", too few words) and for a
    sentence whose passages are all in the other language and share too few names
    and numbers with it. Such a sentence is neither supported nor flagged.
    """

    text: str  # as it appears in the final answer, markers included
    start_char: int  # offsets into the final answer text
    end_char: int
    citations: tuple[int, ...]  # source numbers, in the order the markers appear
    supported: bool
    score: float  # share of the sentence's keywords and numbers the cited passages hold (0..1)
    evidence: tuple[EvidenceSpan, ...] = ()  # the supporting passage sentences, when supported
    checked: bool = True
    missing: tuple[str, ...] = ()  # facts it states that no passage holds, as written ("$100,000")
    withdrawn_because: str = ""  # why it was withdrawn from the answer (``llm.verification``); "" when kept
    figures_held: bool = False  # not supported in words, but its cited passages write every number it states

    @property
    def flagged(self) -> bool:
        """A claim no passage was found to support: to be shown as such."""
        return self.checked and not self.supported


@dataclass(frozen=True)
class Citation:
    """A source passage as the user sees it: file, page, the passage itself."""

    number: int
    source: str
    page: int | None
    heading_path: tuple[str, ...]
    start_char: int
    end_char: int
    passage: str
    score: float
    ocr: bool = False  # the passage was recognised from a page image and may contain OCR errors
    document: str = ""  # what the document is: title, organisation, period (``ingest.records``)

    @property
    def location(self) -> str:
        return describe_location(self.source, self.page, self.heading_path)

    @property
    def label(self) -> str:
        """The location and, when known, what the document is: "q2.pdf, page 4 (Apple Inc. · quarter ended …)"."""
        return f"{self.location} ({self.document})" if self.document else self.location


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    citations: tuple[Citation, ...]  # the sources the text cites, by number
    sources: tuple[Citation, ...]  # every source the model was shown
    supported: bool  # False when the answer cites nothing (or there was nothing to cite)
    sentences: tuple[SentenceSupport, ...] = ()  # the text sentence by sentence, each with its grounding
    abstained: bool = False  # the pipeline answered "not in the documents" itself; ``sources`` are the closest passages
    withdrawn_draft: str | None = None  # when abstention withdrew a generated answer: that answer, for the user to judge
    withdrawn: tuple[SentenceSupport, ...] = ()  # sentences removed because no passage holds what they state

    def citation(self, number: int) -> Citation | None:
        return next((c for c in self.citations if c.number == number), None)

    def supported_spans(self, number: int) -> tuple[tuple[int, int], ...]:
        """Character spans of source ``number``'s passage that support a sentence of the answer."""
        return tuple(
            (evidence.start_char, evidence.end_char)
            for sentence in self.sentences if sentence.supported
            for evidence in sentence.evidence if evidence.source_number == number
        )

    @property
    def grounded_share(self) -> float | None:
        """Share of the checkable sentences that a cited passage supports; None when none is checkable."""
        checked = [s for s in self.sentences if s.checked]
        return sum(s.supported for s in checked) / len(checked) if checked else None

    @property
    def unsupported_sentences(self) -> tuple[SentenceSupport, ...]:
        return tuple(s for s in self.sentences if s.flagged)
