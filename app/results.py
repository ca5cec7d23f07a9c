"""What the pipeline returns: small result types for ingest, retrieval, answers and the collection's state.

The CLI, the UI and the evaluation runners read these; only ``app.pipeline`` and
``app.indexing`` make them. ``AnswerStream`` is the one that is not frozen: it is
filled in as the answer streams.

Deliberately not here: the answer itself and its citations (``core.types``),
anything that computes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field

from core.types import Answer, Evidence, FileFailure, Hit, Question, Source, TextBox
from text.documents import DocumentRecord
from retrieval.scope import Scope


@dataclass(frozen=True)
class IngestStages:
    """Wall seconds of one ingest by stage, measured in the main process.

    ``reading`` is the time spent waiting for a parser worker: parsing that overlapped
    with embedding is free and not counted.
    """

    hashing: float = 0.0
    loading_models: float = 0.0  # the embedders' first load, when this ingest is what loads them
    reading: float = 0.0
    chunking: float = 0.0
    embedding: float = 0.0
    second_embedding: float = 0.0
    saving: float = 0.0

    def shares(self, wall: float) -> str:
        """"embedding 71 %, reading 12 %, …", largest first."""
        named = sorted(asdict(self).items(), key=lambda item: -item[1])
        return ", ".join(f"{name.replace('_', ' ')} {100 * seconds / wall:.0f} %" for name, seconds in named
                         if wall > 0 and seconds >= 0.005 * wall)


@dataclass(frozen=True)
class IngestProgress:
    """Where a running ingest is: sent after the unchanged files are sorted out and after each file read."""

    files_done: int  # of the files that need reading (unchanged files are not counted)
    files_total: int
    current: str | None  # the file being read or embedded now
    failed: tuple[FileFailure, ...] = ()


@dataclass(frozen=True)
class IngestReport:
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    reread: tuple[str, ...] = ()  # among ``updated``: unchanged files read again by a newer reader (better tables)
    failed: tuple[FileFailure, ...] = ()
    warnings: tuple[FileFailure, ...] = ()  # files indexed with a problem, e.g. pages OCR could not read
    chunks_embedded: int = 0
    pages_read: int = 0
    ocr_pages: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0  # both embedders
    interrupted: bool = False
    collection_chunks: int = 0
    upgraded_from_format: int | None = None  # the collection was indexed by an older version and is re-indexed
    stages: IngestStages = field(default_factory=IngestStages)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    def summary(self) -> str:
        upgraded = (f"the collection was indexed by an older version (format {self.upgraded_from_format}); "
                    "it was rebuilt from the files of this ingest. ") if self.upgraded_from_format else ""
        reread = (f"{len(self.reread)} unchanged files were read again: this version extracts their text better "
                  "(tables). ") if self.reread else ""
        return upgraded + reread + (
            f"added {len(self.added)}, updated {len(self.updated)}, removed {len(self.removed)}, "
            f"unchanged {len(self.unchanged)}, failed {len(self.failed)}; "
            f"{self.pages_read} pages read ({self.ocr_pages} by OCR), "
            f"{self.chunks_embedded} chunks embedded in {self.seconds:.1f}s; "
            f"collection now holds {self.collection_chunks} chunks"
        ) + (f"\ntime: {self.stages.shares(self.seconds)}" if self.chunks_embedded else "")


@dataclass(frozen=True)
class RetrievalTimings:
    embed_ms: float
    first_stage_ms: float
    rerank_ms: float


@dataclass(frozen=True)
class Retrieval:
    question: Question  # as analysed once; retrieval searched its ``search_text``
    hits: tuple[Hit, ...]  # reranked, best first; all candidates
    timings: RetrievalTimings
    evidence: Evidence | None = None  # how well the passages for the prompt cover the question
    scope: Scope = Scope()  # the documents the question names (searched alone when scoping filters)
    context: tuple[Hit, ...] = ()  # the hits for the prompt: the best few, or one per document across periods
    # Across periods, the question as asked of one period ("What was NVIDIA's revenue?"): searched, and asked
    # of each document (``app.answering.answer_per_document``). None otherwise.
    per_document: Question | None = None


@dataclass(frozen=True)
class AskTimings:
    retrieval: RetrievalTimings
    prompt_ms: float
    first_token_ms: float  # from the question arriving to the first generated piece
    total_ms: float
    generated_pieces: int
    prompt_tokens: int


@dataclass(frozen=True)
class CollectionStatus:
    name: str
    exists: bool
    files: tuple[str, ...]
    chunks: int
    embedder: str
    second_embedder: str | None = None
    second_vectors_missing: int = 0  # chunks the next ingest still has to give a second vector
    records: Mapping[str, DocumentRecord] = field(default_factory=dict)  # what each document is, by source
    embedder_runs_on: str = ""  # e.g. "CPU, 2 threads (torch, bf16)" or "GPU NVIDIA L4 (CUDA, fp16)"
    generator_runs_on: str = ""  # e.g. "CPU, 2 threads (llama.cpp)" or "the model server at http://…"


@dataclass(frozen=True)
class QueuePosition:
    """The question waits for the generator: ``ahead`` questions will be generated before it (``app.turns``)."""

    ahead: int


@dataclass
class AnswerStream:
    """Iterate for the answer's text as it is generated; then read ``answer`` and ``timings``.

    ``events()`` also yields a ``QueuePosition`` whenever the question's place in the
    generator's queue changes while it waits (the API and the UI show it).
    """

    _pieces: Iterator[str | QueuePosition]
    answer: Answer | None = None
    timings: AskTimings | None = None
    retrieval: Retrieval | None = None
    sources: tuple[Source, ...] = ()  # the passages as the model was shown them (trimmed), once the prompt is built

    def events(self) -> Iterator[str | QueuePosition]:
        yield from self._pieces

    def __iter__(self) -> Iterator[str]:
        for event in self._pieces:
            if isinstance(event, str):
                yield event

    def close(self) -> None:
        """Stop generating (a client went away): gives the generator's turn to the next question."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()


# ----- showing a document (``app.pages``) ----------------------------------------------


@dataclass(frozen=True)
class ShownPage:
    """A PDF page drawn with its highlights."""

    source: str
    page: int
    page_count: int
    png: bytes
    width: int  # pixels
    height: int
    highlighted: int  # boxes drawn strongly (what supports the answer)
    passage_boxes: int  # boxes drawn lightly (the rest of the passage)
    note: str = ""  # why nothing is highlighted although something was asked, "" otherwise


@dataclass(frozen=True)
class DocumentPassage:
    """A passage as the index holds it, with where it lies on its page (PDF)."""

    chunk_id: int
    page: int | None
    heading_path: tuple[str, ...]
    start_char: int
    end_char: int
    text: str
    ocr: bool
    boxes: tuple[TextBox, ...]  # fractions of the displayed page; () for text documents or unknown


@dataclass(frozen=True)
class DocumentSection:
    """A text document's section around a passage, stitched from the index, with the passage's place in it."""

    source: str
    heading_path: tuple[str, ...]
    text: str
    passage_start: int  # where the passage lies in ``text``
    passage_end: int

