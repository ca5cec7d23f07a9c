"""The one module that wires the stages together. The CLI and the UI call it; nothing else does.

Ingest:  folder -> files -> pages -> chunks -> vectors -> collection on disk
Ask:     question -> hits -> reranked hits -> prompt -> generated text -> Answer

``Pipeline`` gets its collaborators (embedder, reranker, generator factory)
through its constructor; ``Pipeline.from_settings`` builds the real ones. The
generator is loaded on the first question, so ``ingest`` never pays for it.

Ingest is incremental: a file whose bytes hash the same as when it was indexed
is not read again; a changed file's old chunks are replaced; a file gone from
the folder is removed from the index (unless ``prune=False``). The collection is
saved every ``checkpoint_seconds`` and at the end, each save atomic, so an
interrupted ingest keeps what it finished and the next run picks up the rest.

Files are read in a worker process (``ingest.isolation``) with a time limit
each, one file ahead of the embedder.

A second embedder (``second_embedder`` setting, all-MiniLM-L6-v2 by default)
embeds every chunk too; its cosines join the first stage for English questions
(``retrieval.fusion``). Chunks without a second vector (a collection built
before it, or with another second model) get one at the end of the next
ingest, without re-reading or re-embedding their files.

Deliberately not here: storing conversations (the UI keeps each browser
session's turns and passes them in), the calibration of abstention thresholds
(``kb eval-qa``).
"""

from __future__ import annotations

import hashlib
from collections import deque
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from app.settings import Settings
from ingest.chunking import Chunker
from ingest.documents import FileFailure, LoadedFile
from ingest.isolation import IsolatedLoader, PendingLoad
from ingest.loaders import SUPPORTED_SUFFIXES, LoadError, LoadOptions
from ingest.records import DocumentRecord, describe_document
from llm.answer import Answer, citation_from_source, make_answer
from llm.grounding import answer_support
from llm.generator import Generator, LlamaCppGenerator
from llm.models import resolve_model_path
from llm.per_document import per_document_answer
from llm.prompt import PromptBuilder, Source, question_language
from retrieval import keywords
from retrieval.embedders import Embedder, load_embedder
from retrieval.evidence import AbstentionPolicy, Evidence
from retrieval.followup import Turn, retrieval_query
from retrieval.fusion import FirstStage
from retrieval.hits import Hit
from retrieval.rerank import Reranker, load_reranker
from retrieval.scope import Scope, scope_question
from retrieval.store import Collection, CollectionMissingError, WriteLock

NOTHING_FOUND = {
    "en": "I could not find anything about this in the documents.",
    "zh": "在文档中没有找到与这个问题相关的内容。",
}
NOT_IN_DOCUMENTS = {
    "en": "The documents do not seem to contain the answer to this question. The closest passages found are listed below.",
    "zh": "文档中似乎没有这个问题的答案。下面列出了找到的最接近的段落。",
}
NOT_MENTIONED = {
    "en": "No passage found mentions: {items}.",
    "zh": "找到的段落都没有提到：{items}。",
}
PER_DOCUMENT_TOKENS = 96  # one sentence with a figure per document; the model's extras are cut anyway
DRAFT_WITHDRAWN = {
    "en": "(The model's draft answer was withdrawn: no passage states it in answer to this question.)",
    "zh": "（模型起草的答案已撤回：没有段落针对这个问题给出该答案。）",
}
EMPTY_COLLECTION = {
    "en": "The knowledge base is empty. Add documents first: `kb ingest <folder>` or the Documents panel.",
    "zh": "知识库是空的。请先添加文档：运行 `kb ingest <文件夹>` 或使用“文档”面板上传。",
}


@dataclass(frozen=True)
class IngestReport:
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    failed: tuple[FileFailure, ...] = ()
    warnings: tuple[FileFailure, ...] = ()  # files indexed with a problem, e.g. pages OCR could not read
    chunks_embedded: int = 0
    pages_read: int = 0
    ocr_pages: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    interrupted: bool = False
    collection_chunks: int = 0
    upgraded_from_format: int | None = None  # the collection was indexed by an older version and is re-indexed

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    def summary(self) -> str:
        upgraded = (f"the collection was indexed by an older version (format {self.upgraded_from_format}); "
                    "it was rebuilt from the files of this ingest. ") if self.upgraded_from_format else ""
        return upgraded + (
            f"added {len(self.added)}, updated {len(self.updated)}, removed {len(self.removed)}, "
            f"unchanged {len(self.unchanged)}, failed {len(self.failed)}; "
            f"{self.pages_read} pages read ({self.ocr_pages} by OCR), "
            f"{self.chunks_embedded} chunks embedded in {self.seconds:.1f}s; "
            f"collection now holds {self.collection_chunks} chunks"
        )


@dataclass(frozen=True)
class RetrievalTimings:
    embed_ms: float
    first_stage_ms: float
    rerank_ms: float


@dataclass(frozen=True)
class Retrieval:
    question: str
    hits: tuple[Hit, ...]  # reranked, best first; all candidates
    timings: RetrievalTimings
    evidence: Evidence | None = None  # how well the passages for the prompt cover the question
    scope: Scope = Scope()  # the documents the question names (searched alone when scoping filters)
    context: tuple[Hit, ...] = ()  # the hits for the prompt: the best few, or one per document across periods


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


@dataclass
class AnswerStream:
    """Iterate for the answer's text as it is generated; then read ``answer`` and ``timings``."""

    _pieces: Iterator[str]
    answer: Answer | None = None
    timings: AskTimings | None = None
    retrieval: Retrieval | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self._pieces


@dataclass(frozen=True)
class _Ready:
    """An already-loaded document, with the ``source``/``result()`` shape of a ``PendingLoad``."""

    document: LoadedFile

    @property
    def source(self) -> str:
        return self.document.source

    def result(self) -> LoadedFile:
        return self.document


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class UnsafeFileNameError(ValueError):
    """A file name that would leave the documents folder or is not a supported document."""


def safe_document_path(folder: Path, name: str, *, allow_subfolders: bool = False) -> Path:
    """Where a document called ``name`` lives inside ``folder``; never outside it."""
    cleaned = name.replace("\\", "/").strip()
    if not allow_subfolders:
        cleaned = cleaned.rsplit("/", 1)[-1]
    parts = [part for part in cleaned.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." or part.startswith(".") for part in parts) or "\x00" in cleaned:
        raise UnsafeFileNameError(f"not an acceptable file name: {name!r}")
    if Path(parts[-1]).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise UnsafeFileNameError(f"{parts[-1]!r}: only {', '.join(SUPPORTED_SUFFIXES)} files can be added")
    root = folder.resolve()
    target = root.joinpath(*parts).resolve()
    if root not in target.parents:  # a symlink inside the folder could still point outside
        raise UnsafeFileNameError(f"{name!r} would be stored outside {folder}")
    return target


def find_documents(folder: Path) -> list[Path]:
    """Supported files below ``folder`` in a stable order.

    Hidden files and folders are skipped; symlinked folders are followed (people
    link their document folders together), each real folder once, so a link loop
    cannot make the walk endless.
    """
    found = []
    seen: set[str] = set()
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirectories[:] = []
            continue
        seen.add(real)
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in files:
            path = Path(directory) / name
            if not name.startswith(".") and path.suffix.lower() in SUPPORTED_SUFFIXES and path.is_file():
                found.append(path)
    return sorted(found)


def not_in_documents(question: str, language: str, evidence: Evidence | None) -> str:
    """The refusal, naming the question's names and numbers the passages lack: the user learns what to rephrase.

    "Who won the 2021 Super Bowl?" over passages about 2022 -> "... No passage found mentions: 2021."
    """
    if evidence is None or not evidence.missing_specifics:
        return NOT_IN_DOCUMENTS[language]
    items = ("、" if language == "zh" else ", ").join(keywords.as_written(evidence.missing_specifics, question))
    return f"{NOT_IN_DOCUMENTS[language]} {NOT_MENTIONED[language].format(items=items)}"


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        reranker: Reranker,
        generator_factory: Callable[[], Generator],
        second_embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.second_embedder = second_embedder  # its cosines join the first stage (retrieval.fusion)
        self.reranker = reranker
        self._generator_factory = generator_factory
        self._generator: Generator | None = None
        self._collection: Collection | None = None
        # One llama.cpp context cannot serve two generations at once; the UI shares one
        # pipeline between browser sessions, so questions take turns.
        # An abandoned stream releases it when its generator is closed (Streamlit closes it on rerun).
        self._generation_lock = threading.Lock()
        self._generator_load_lock = threading.Lock()
        self.chunker = Chunker(embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap)

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        def make_generator() -> Generator:
            model_path = resolve_model_path(settings.llm_model, settings.model_cache)
            return LlamaCppGenerator(
                model_path,
                context_window=settings.context_window,
                threads=settings.threads,
                gpu_layers=settings.gpu_layers,
            )

        return cls(
            settings=settings,
            embedder=load_embedder(settings.embedding_model),
            reranker=load_reranker(settings.reranker, dense_weight=settings.rerank_dense_weight),
            generator_factory=make_generator,
            second_embedder=None if settings.second_embedder.lower() == "none" else load_embedder(settings.second_embedder),
        )

    def with_settings(self, **changes: object) -> Pipeline:
        """A pipeline on changed settings (e.g. another collection) sharing this one's loaded models.

        Only retrieval, prompt and collection settings may change: the embedder,
        reranker and generator are reused as they are.
        """
        settings = type(self.settings).model_validate({**self.settings.model_dump(), **changes})  # validated
        return Pipeline(settings, self.embedder, self.reranker, lambda: self.generator, self.second_embedder)

    @property
    def generator(self) -> Generator:
        with self._generator_load_lock:  # two first questions at once must not load the model twice
            if self._generator is None:
                self._generator = self._generator_factory()
        return self._generator

    @property
    def generator_info(self):
        """The loaded generator's description, or None before it is loaded."""
        return self._generator.info if self._generator is not None else None

    # ----- collection ------------------------------------------------------
    def _open_collection(self, folder: Path, *, create: bool = False, upgrade: bool = False) -> Collection:
        return Collection.open(
            folder, self.embedder.identity, create=create, upgrade=upgrade,
            exact_up_to=self.settings.exact_search_up_to,
            second_identity=self.second_embedder.identity if self.second_embedder else None,
        )

    def collection(self) -> Collection:
        """The live collection, reloaded when an ingest has saved a newer generation."""
        folder = self.settings.collection_dir
        live = Collection.current_generation(folder)
        if self._collection is None or self._collection.generation != live:
            self._collection = self._open_collection(folder)
        return self._collection

    def status(self) -> CollectionStatus:
        try:
            collection = self.collection()
        except CollectionMissingError:
            return CollectionStatus(self.settings.collection, False, (), 0, self.embedder.identity.name)
        return CollectionStatus(
            self.settings.collection, True, tuple(sorted(collection.files)), collection.chunk_count,
            self.embedder.identity.name,
            self.second_embedder.identity.name if self.second_embedder else None,
            collection.second_vectors_missing,
            collection.records,
        )

    def remove_documents(self, sources: list[str]) -> list[str]:
        """Drop documents from the index (the files themselves are not touched)."""
        folder = self.settings.collection_dir
        with WriteLock(folder):
            collection = self._open_collection(folder)
            removed = [source for source in sources if collection.remove_file(source)]
            if removed:
                collection.save()
        self._collection = None
        return removed

    def warm_up(self) -> None:
        """Load everything the first question would otherwise wait for (the UI calls this at start)."""
        keywords.warm_up()
        if self.second_embedder is not None and max(self.settings.second_weight_en, self.settings.second_weight_zh) > 0:
            self.second_embedder.embed_query("warm up")  # the built-in one loads torch on first use: about 5 s
        _ = self.generator

    def add_documents(self, files: list[tuple[str, bytes]]) -> IngestReport:
        """Save uploaded files into the documents folder, then bring the index in step.

        File names are reduced to their last component, so ``../../etc/passwd``
        becomes ``passwd`` inside the documents folder, never a path outside it.
        """
        folder = self.settings.documents_dir
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files:
            target = safe_document_path(folder, name)
            partial = target.with_name(f".{target.name}.partial")
            partial.write_bytes(data)
            partial.replace(target)  # an interrupted upload never leaves half a file under the real name
        # prune=False: an upload only adds; the collection may also hold files ingested from elsewhere.
        return self.ingest(folder, prune=False, progress=False)

    def delete_document(self, source: str) -> bool:
        """Remove a document from the index and its file from the documents folder."""
        removed = bool(self.remove_documents([source]))
        path = safe_document_path(self.settings.documents_dir, source, allow_subfolders=True)
        if path.is_file():
            path.unlink()
            removed = True
        return removed

    # ----- ingest -----------------------------------------------------------
    def ingest(self, folder: Path, *, prune: bool = True, progress: bool | None = None) -> IngestReport:
        """Bring the collection in step with ``folder`` (see module docstring)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no such folder: {folder}")
        settings = self.settings
        paths = find_documents(folder)
        options = LoadOptions(passwords=tuple(settings.pdf_passwords), ocr=settings.ocr)
        too_large: list[FileFailure] = []
        by_source: dict[str, Path] = {}  # files within the size limit
        for path in paths:
            source = path.relative_to(folder).as_posix()
            size = path.stat().st_size
            if size > settings.max_file_mb * 1e6:
                too_large.append(FileFailure(source, f"too large ({size / 1e6:.0f} MB > KB_MAX_FILE_MB={settings.max_file_mb:g})"))
            else:
                by_source[source] = path
        present = {path.relative_to(folder).as_posix() for path in paths}
        with IsolatedLoader(options, settings.file_timeout_seconds) as loader:
            return self._index(
                sources=list(by_source),
                # The hash is only computed for files indexed before: a new file is read anyway.
                content_hash=lambda source: file_sha256(by_source[source]),
                submit=lambda source: loader.submit(by_source[source], source),
                present=present if prune else None,
                failed_early=too_large,
                progress=progress,
            )

    def ingest_documents(
        self, documents: Sequence[LoadedFile], *, prune: bool = False, progress: bool | None = None
    ) -> IngestReport:
        """Index documents that are already text (e.g. a BEIR corpus), incrementally like ``ingest``.

        A document whose ``content_sha256`` matches the indexed one is skipped, so
        running an evaluation twice reuses the collection.
        """
        by_source = {document.source: document for document in documents}
        return self._index(
            sources=list(by_source),
            content_hash=lambda source: by_source[source].content_sha256,
            submit=lambda source: _Ready(by_source[source]),
            present=set(by_source) if prune else None,
            failed_early=[],
            progress=progress,
        )

    def _index(
        self,
        *,
        sources: list[str],
        content_hash: Callable[[str], str],
        submit: Callable[[str], PendingLoad | _Ready],
        present: set[str] | None,
        failed_early: list[FileFailure],
        progress: bool | None,
    ) -> IngestReport:
        """The one indexing loop: skip unchanged, load ahead, chunk, embed, checkpoint, prune."""
        started = time.perf_counter()
        settings = self.settings
        target = settings.collection_dir
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        failed: list[FileFailure] = list(failed_early)
        warnings: list[FileFailure] = []
        removed: list[str] = []
        chunks_embedded = pages_read = ocr_pages = 0
        embed_seconds = 0.0
        interrupted = False
        with WriteLock(target):
            collection = self._open_collection(target, create=True, upgrade=True)
            indexed = collection.files
            dirty = False
            last_save = time.monotonic()
            try:
                # Cheap pass first: the content hash decides what needs reading at all.
                todo: list[tuple[str, bool]] = []  # (source, was indexed before)
                for source in sources:
                    previous = indexed.get(source)
                    if previous and previous.content_sha256 == content_hash(source):
                        unchanged.append(source)
                    else:
                        todo.append((source, previous is not None))

                bar = tqdm(total=len(todo), desc="ingest", unit="file",
                           disable=None if progress is None else not progress)
                pending: deque = deque()
                upcoming = iter(todo)
                was_indexed = dict(todo)

                def top_up() -> None:  # keep the loader one file ahead of the embedder
                    while len(pending) < 2:
                        item = next(upcoming, None)
                        if item is None:
                            return
                        pending.append(submit(item[0]))

                top_up()
                while pending:
                    job = pending.popleft()
                    top_up()
                    bar.set_postfix_str(job.source[-40:], refresh=False)
                    try:
                        loaded = job.result()
                        record = describe_document(loaded, loaded.title)
                        chunks = [replace(chunk, header=record.header_for(chunk.heading_path))
                                  for chunk in self.chunker.chunk(loaded.pages)]
                        if not chunks:
                            raise LoadError("no text left after chunking")
                    except LoadError as exc:
                        failed.append(FileFailure(job.source, str(exc)))  # previous chunks, if any, stay
                        bar.update()
                        continue
                    warnings.extend(FileFailure(job.source, warning) for warning in loaded.warnings)
                    embed_started = time.perf_counter()
                    texts = [c.embedding_text for c in chunks]
                    vectors = self._embed(self.embedder, texts)
                    second = self._embed(self.second_embedder, texts) if self.second_embedder else None
                    embed_seconds += time.perf_counter() - embed_started
                    collection.put_file(job.source, loaded.content_sha256, chunks, vectors, len(loaded.pages), second,
                                        record=record)
                    (updated if was_indexed[job.source] else added).append(job.source)
                    chunks_embedded += len(chunks)
                    pages_read += len(loaded.pages)
                    ocr_pages += sum(1 for page in loaded.pages if page.ocr)
                    dirty = True
                    bar.update()
                    if time.monotonic() - last_save > settings.checkpoint_seconds:
                        collection.save()  # an interruption from here on keeps this work
                        dirty, last_save = False, time.monotonic()
                bar.close()
                missing_second = collection.missing_second_vectors() if collection.second_vectors_missing else []
                if missing_second:
                    dirty = True  # an interruption while they are computed keeps the ones done
                    embed_started = time.perf_counter()
                    self._add_second_vectors(collection, missing_second, progress)
                    embed_seconds += time.perf_counter() - embed_started
                if present is not None:
                    for source in sorted(set(indexed) - present):
                        collection.remove_file(source)
                        removed.append(source)
                        dirty = True
            except KeyboardInterrupt:
                interrupted = True
            finally:
                if dirty or not Collection.exists(target):
                    collection.save()
        self._collection = None
        return IngestReport(
            added=tuple(added), updated=tuple(updated), removed=tuple(removed), unchanged=tuple(unchanged),
            failed=tuple(failed), warnings=tuple(warnings), chunks_embedded=chunks_embedded,
            pages_read=pages_read, ocr_pages=ocr_pages, seconds=time.perf_counter() - started,
            embed_seconds=embed_seconds, interrupted=interrupted, collection_chunks=collection.chunk_count,
            upgraded_from_format=collection.upgraded_from,
        )

    def _embed(self, embedder: Embedder, texts: list[str]):
        import numpy as np

        size = self.settings.embed_batch_size
        batches = [embedder.embed_passages(texts[i : i + size]) for i in range(0, len(texts), size)]
        return np.concatenate(batches) if batches else np.zeros((0, embedder.identity.dim), np.float32)

    def _add_second_vectors(self, collection: Collection, missing: list[int], progress: bool | None) -> None:
        """Give these chunks a second-embedder vector (a collection from before it, or from another model).

        Runs after the files, so an interrupted ingest keeps those; the chunks done here are kept too
        (the caller saves on interruption), and the next ingest finishes the rest.
        """
        assert self.second_embedder is not None
        size = self.settings.embed_batch_size * 4
        bar = tqdm(total=len(missing), desc=f"second embedder ({self.second_embedder.identity.name})", unit="chunk",
                   disable=None if progress is None else not progress)
        try:
            for start in range(0, len(missing), size):
                ids = missing[start : start + size]
                texts = [collection.chunk(chunk_id).embedding_text for chunk_id in ids]
                collection.put_second_vectors(ids, self._embed(self.second_embedder, texts))
                bar.update(len(ids))
        finally:
            bar.close()

    # ----- ask ----------------------------------------------------------------
    def first_stage(self) -> FirstStage:
        settings = self.settings
        return FirstStage(settings.first_stage, settings.fusion, settings.dense_weight_en, settings.dense_weight_zh,
                          second_weight_en=settings.second_weight_en, second_weight_zh=settings.second_weight_zh,
                          feedback_weight=settings.dense_feedback)

    def retrieve(
        self, question: str, *, first_stage: FirstStage | None = None, reranker: Reranker | None = None,
        k: int | None = None, documents: Sequence[str] | None = None,
    ) -> Retrieval:
        """First stage (dense + keyword, wide) then second stage (rerank).

        ``first_stage``, ``reranker`` and ``k`` override the settings' choice (the
        ``eval`` command compares configurations on one loaded collection).
        ``documents``: search only these sources (the user's explicit filter); otherwise the documents the
        question names (``retrieval.scope``), as ``document_scope`` says.
        """
        collection = self.collection()
        first_stage = first_stage or self.first_stage()
        reranker = reranker or self.reranker
        t0 = time.perf_counter()
        if documents:
            unknown = sorted(set(documents) - set(collection.files))
            if unknown:
                raise ValueError(f"not in this knowledge base: {', '.join(unknown)}")
            scope = Scope(documents=tuple(documents))
        elif self.settings.document_scope != "off":
            scope = scope_question(question, collection.records)
        else:
            scope = Scope()
        within = collection.chunk_ids_of(scope.documents) if scope.scoped else None
        query_vector = self.embedder.embed_query(question) if first_stage.mode != "keyword" else None
        second_vector = None
        if self.second_embedder and first_stage.second_weight(question) > 0 and collection.has_second_vectors:
            second_vector = self.second_embedder.embed_query(question)
        t1 = time.perf_counter()
        candidates = first_stage.search(collection, question, query_vector, k or self.settings.first_stage_k,
                                        second_vector=second_vector, within=within)
        t2 = time.perf_counter()
        reranked = reranker.rerank(question, candidates)
        t3 = time.perf_counter()
        timings = RetrievalTimings(embed_ms=(t1 - t0) * 1e3, first_stage_ms=(t2 - t1) * 1e3, rerank_ms=(t3 - t2) * 1e3)
        context = self._context(reranked, scope)
        return Retrieval(question=question, hits=tuple(reranked), timings=timings,
                         evidence=self._evidence(collection, question, context), scope=scope, context=context)

    def _context(self, hits: Sequence[Hit], scope: Scope) -> tuple[Hit, ...]:
        """The hits for the prompt: the best ``context_chunks``; across periods, each document's best, oldest first."""
        if not scope.across:
            return tuple(hits[: self.settings.context_chunks])
        best: dict[str, Hit] = {}
        for hit in hits:
            best.setdefault(hit.chunk.source, hit)
        ordered = [best[source] for source in scope.documents if source in best]
        return tuple(ordered[-self.settings.across_documents:])  # the newest when there are more

    def abstention_policy(self) -> AbstentionPolicy:
        reworded = self.settings.abstain_reworded_min_dense
        return AbstentionPolicy(self.settings.abstain_min_coverage, self.settings.abstain_min_dense,
                                reworded_min_dense=reworded if reworded <= 1.0 else None)

    def would_abstain(self, retrieval: Retrieval, answer: Answer | None = None) -> bool:
        """The refusal the pipeline makes with abstention on, whether or not it is on.

        Before generation (``answer`` None): do the passages cover the question, or hold its names and
        come close in meaning? After: if only the latter, does a cited passage support one of its sentences;
        and, when ``abstain_min_answer_support`` is set, does a passage hold the answer's words next to the
        question's?
        """
        if retrieval.evidence is None or not self.abstention_policy().supports(retrieval.evidence):
            return True
        if answer is None or answer.abstained:
            return bool(answer and answer.abstained)
        if not self.abstention_policy().keeps_answer(retrieval.evidence, answer.grounded_share):
            return True
        if self.settings.abstain_min_answer_support <= 0:
            return False  # the check is off: do not tokenise the passages on every answer
        passages = [hit.chunk.text for hit in retrieval.context]
        support = answer_support(retrieval.question, answer.text, passages)
        return support.score < self.settings.abstain_min_answer_support

    @staticmethod
    def _evidence(collection: Collection, question: str, top: Sequence[Hit]) -> Evidence | None:
        if not top:
            return None
        return Evidence(
            coverage=collection.keyword_coverage(question, [h.chunk_id for h in top if h.chunk_id is not None]),
            best_keyword=max(h.keyword_score or 0.0 for h in top),
            best_dense=max(h.dense_score or 0.0 for h in top),
            # embedding_text: a name or period in a document's header (its file name, title) counts as present.
            missing_specifics=keywords.missing_items(keywords.specific_items(question),
                                                     "\n".join(h.chunk.embedding_text for h in top)),
        )

    def ask_stream(
        self, question: str, history: Sequence[Turn] = (), documents: Sequence[str] | None = None
    ) -> AnswerStream:
        """Retrieve, then stream the generated answer; ``answer`` is set once iteration ends.

        ``history`` holds the conversation's earlier turns, oldest first: a
        follow-up question is searched together with the question it follows
        (``retrieval.followup``) and the last turns go into the prompt.
        ``documents`` restricts the search to these sources.

        With abstention on, a question the passages do not cover is answered with
        "not in the documents" (in the question's language) and the closest
        passages, without generating.
        """
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        started = time.perf_counter()
        language = question_language(question)
        try:
            retrieval = self.retrieve(retrieval_query(question, history), documents=documents)
        except CollectionMissingError:
            retrieval = None
        stream = AnswerStream(_pieces=iter(()))
        stream.retrieval = retrieval
        if retrieval is None or not retrieval.hits:
            message = EMPTY_COLLECTION[language] if retrieval is None or not self.collection().chunk_count else NOTHING_FOUND[language]
            return self._fixed_answer(stream, question, message, (), started)
        closest = retrieval.context
        if self.settings.abstain and self.would_abstain(retrieval):
            shown = tuple(Source(number, hit, hit.chunk.text) for number, hit in enumerate(closest, start=1))
            refusal = not_in_documents(question, language, retrieval.evidence)
            return self._fixed_answer(stream, question, refusal, shown, started)

        generator = self.generator
        t_prompt = time.perf_counter()
        builder = PromptBuilder(
            generator.count_tokens, generator.info.context_window, self.settings.max_answer_tokens,
            source_tokens=self.settings.source_tokens or None, whole_sources=self.settings.whole_sources,
        )
        if retrieval.scope.across and len(closest) > 1:
            return self._answer_per_document(stream, question, language, retrieval, builder, started)
        prompt = builder.build(question, closest, history)
        prompt_ms = (time.perf_counter() - t_prompt) * 1e3

        def pieces() -> Iterator[str]:
            first_token_at = None
            count = 0
            parts: list[str] = []
            with self._generation_lock:
                for piece in generator.stream_chat(
                    prompt.messages, self.settings.max_answer_tokens, self.settings.temperature
                ):
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                    count += 1
                    parts.append(piece)
                    yield piece
            finished = time.perf_counter()
            stream.answer = make_answer(question, "".join(parts), prompt.sources)
            if self.settings.abstain and self.would_abstain(retrieval, stream.answer):
                # The draft was streamed already; the checked answer that replaces it says why it was withdrawn.
                stream.answer = Answer(
                    question=question, text=f"{NOT_IN_DOCUMENTS[language]} {DRAFT_WITHDRAWN[language]}",
                    citations=(), sources=stream.answer.sources, supported=False, abstained=True,
                    withdrawn_draft=stream.answer.text,  # the check is lexical: a right answer in other words can land here
                )
            stream.timings = AskTimings(
                retrieval=retrieval.timings,
                prompt_ms=prompt_ms,
                first_token_ms=((first_token_at or finished) - started) * 1e3,
                total_ms=(finished - started) * 1e3,
                generated_pieces=count,
                prompt_tokens=prompt.prompt_tokens,
            )

        stream._pieces = pieces()
        return stream

    def _answer_per_document(
        self, stream: AnswerStream, question: str, language: str, retrieval: Retrieval, builder: PromptBuilder,
        started: float,
    ) -> AnswerStream:
        """A question across periods: each document asked alone, the lines assembled (``llm.per_document``)."""
        records = self.collection().records
        sources = tuple(Source(number, hit, hit.chunk.text) for number, hit in enumerate(retrieval.context, start=1))
        labels = []
        for source in sources:
            record = records.get(source.hit.chunk.source)
            labels.append((record.period_label or record.title) if record else source.hit.chunk.source)
        generator = self.generator
        settings = self.settings

        def pieces() -> Iterator[str]:
            first_line_at = None
            lines: list[str] = []
            prompt_tokens = 0
            with self._generation_lock:
                asked = retrieval.scope.per_document_question or question
                for line in per_document_answer(generator, builder, asked, sources, labels,
                                                min(settings.max_answer_tokens, PER_DOCUMENT_TOKENS), settings.temperature):
                    first_line_at = first_line_at or time.perf_counter()
                    prompt_tokens += line.prompt_tokens
                    text = f"- {line.label}: {line.text}"
                    lines.append(text)
                    yield ("\n" if len(lines) > 1 else "") + text
            finished = time.perf_counter()
            stream.answer = make_answer(question, "\n".join(lines), sources)
            stream.timings = AskTimings(
                retrieval=retrieval.timings, prompt_ms=0.0,
                first_token_ms=((first_line_at or finished) - started) * 1e3, total_ms=(finished - started) * 1e3,
                generated_pieces=len(lines), prompt_tokens=prompt_tokens,
            )

        stream._pieces = pieces()
        return stream

    def _fixed_answer(
        self, stream: AnswerStream, question: str, message: str, shown: Sequence[Source], started: float
    ) -> AnswerStream:
        """An answer the pipeline gives itself (empty index, nothing found, not covered): no generation."""
        answer = Answer(question=question, text=message, citations=(),
                        sources=tuple(citation_from_source(source) for source in shown), supported=False,
                        abstained=True)
        stream.answer = answer
        stream._pieces = iter([message])
        retrieval_timings = stream.retrieval.timings if stream.retrieval else RetrievalTimings(0.0, 0.0, 0.0)
        elapsed = (time.perf_counter() - started) * 1e3
        stream.timings = AskTimings(retrieval_timings, 0.0, elapsed, elapsed, 0, 0)
        return stream

    def ask(self, question: str, history: Sequence[Turn] = (), documents: Sequence[str] | None = None) -> Answer:
        stream = self.ask_stream(question, history, documents)
        for _ in stream:
            pass
        assert stream.answer is not None
        return stream.answer
