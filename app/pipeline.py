"""The one module that wires the stages together. The CLI and the UI call it; nothing else does.

Ingest:  folder -> files -> pages -> chunks -> vectors -> collection on disk
Ask:     question -> hits -> reranked hits -> prompt -> generated text -> Answer
         (answers without generation, and one line per document across periods: ``app.answering``)

``Pipeline`` gets its collaborators (embedder, reranker, generator factory)
through its constructor; ``Pipeline.from_settings`` builds the real ones. The
generator is loaded on the first question, so ``ingest`` never pays for it.

Ingest is ``app.indexing.Indexer``'s work (incremental, crash-safe, one file
read ahead of the embedder); the pipeline builds it with its embedders and
forgets its cached collection after each ingest.

A second embedder (``second_embedder`` setting, all-MiniLM-L6-v2 by default)
embeds every chunk too; its cosines join the first stage for English questions
(``retrieval.fusion``).

Deliberately not here: storing conversations (the UI keeps each browser
session's turns and passes them in), the calibration of abstention thresholds
(``kb eval-qa``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from app.answering import answer_per_document, fixed_answer
from app.checks import AnswerChecks
from app.indexing import (SUPPORTED_SUFFIXES, Indexer, UnsafeFileNameError, safe_document_path, save_uploads,
                          store_config)
from app.pages import DocumentViewer
from app.results import (AnswerStream, AskTimings, CollectionStatus, IngestProgress, IngestReport, QueuePosition,
                         Retrieval, RetrievalTimings)
from app.settings import Settings
from app.turns import GenerationTurns
from core.errors import KbError
from core.types import Answer, Citation, LoadedFile, Question, Source, Turn
from llm.generator import Generator, LlamaCppGenerator, planned_placement
from llm.model_server import ServerGenerator
from llm.models import resolve_model_path
from llm.prompt import PromptBuilder
from llm.refusals import EMPTY_COLLECTION, NOTHING_FOUND, not_in_documents
from text import keywords
from retrieval.embedders import Embedder, load_embedder
from retrieval.evidence import AbstentionPolicy, measure_evidence
from retrieval.fusion import FirstStage
from retrieval.question import analyse_question
from retrieval.rerank import Reranker, load_reranker
from retrieval.scope import Scope, named_period, prompt_hits, scope_question
from retrieval.table_rows import prefer_asked_rows
from retrieval.named_years import prefer_named_years
from text.periods import PERIOD_WORD, year_mentions
from retrieval.backend import CollectionStore as Collection, current_generation as store_generation
from retrieval.backend import open_collection as open_store
from retrieval.store import CollectionMissingError, WriteLock

# What the CLI and the UI take from here besides the pipeline: its result types and the one error type.
__all__ = [
    "Answer", "AnswerStream", "AskTimings", "Citation", "CollectionStatus", "IngestProgress", "IngestReport", "KbError",
    "Pipeline", "QueuePosition", "Retrieval", "RetrievalTimings", "SUPPORTED_SUFFIXES", "Turn", "UnsafeFileNameError",
]

class Pipeline:
    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        reranker: Reranker,
        generator_factory: Callable[[], Generator],
        second_embedder: Embedder | None = None,
        turns: GenerationTurns | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.second_embedder = second_embedder  # its cosines join the first stage (retrieval.fusion)
        self.reranker = reranker
        self._generator_factory = generator_factory
        self._generator: Generator | None = None
        self._collection: Collection | None = None
        self._viewer: DocumentViewer | None = None
        # One llama.cpp context cannot serve two generations at once; the UI and the API share one
        # generator between sessions and collections, so questions take turns, fairly (app.turns).
        # An abandoned stream gives its turn up when it is closed (Streamlit closes it on rerun).
        self.turns = turns or GenerationTurns(settings.max_waiting_per_user)
        self._generator_load_lock = threading.Lock()
        self.indexer = Indexer(settings, embedder, second_embedder, self.open_collection, pause=self._give_way)
        self.checks = AnswerChecks(settings)

    def _give_way(self) -> None:
        """An ingest's embedder waits while questions are answered (one process, one set of cores: an answer
        beside a batch of embeddings takes several times as long), at most ``KB_INGEST_GIVE_WAY_SECONDS``
        per batch so that a stream of questions cannot stop an ingest."""
        if self.settings.ingest_give_way_seconds > 0:
            self.turns.wait_until_idle(self.settings.ingest_give_way_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        def make_generator() -> Generator:
            if settings.llm_base_url:  # a model server the team runs (llm.model_server)
                key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
                return ServerGenerator(settings.llm_base_url, model=settings.llm_server_model, api_key=key,
                                       context_window=settings.context_window, timeout=settings.llm_timeout_seconds)
            model_path = resolve_model_path(settings.llm_model, settings.model_cache)
            return LlamaCppGenerator(
                model_path,
                context_window=settings.context_window,
                threads=settings.threads,
                gpu_layers=settings.gpu_layers,
            )

        return cls(
            settings=settings,
            embedder=load_embedder(settings.embedding_model, settings.model_cache),
            reranker=load_reranker(settings.reranker, dense_weight=settings.rerank_dense_weight),
            generator_factory=make_generator,
            second_embedder=None if settings.second_embedder.lower() == "none" else load_embedder(settings.second_embedder, settings.model_cache),
        )

    def with_settings(self, **changes: object) -> Pipeline:
        """A pipeline on changed settings (e.g. another collection) sharing this one's loaded models.

        Only retrieval, prompt and collection settings may change: the embedder,
        reranker and generator are reused as they are.
        """
        settings = type(self.settings).model_validate({**self.settings.model_dump(), **changes})  # validated
        return Pipeline(settings, self.embedder, self.reranker, lambda: self.generator, self.second_embedder, self.turns)

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
    def open_collection(self, folder: Path, *, create: bool = False, upgrade: bool = False) -> Collection:
        """The collection in its store (local files or Milvus: ``retrieval.backend``)."""
        return open_store(
            folder, store_config(self.settings), self.embedder.identity, create=create, upgrade=upgrade,
            second_identity=self.second_embedder.identity if self.second_embedder else None,
        )

    def collection(self) -> Collection:
        """The live collection, reloaded when an ingest has saved a newer generation."""
        folder = self.settings.collection_dir
        live = store_generation(folder, store_config(self.settings))
        if self._collection is None or self._collection.generation != live:
            self._collection = self.open_collection(folder)
        return self._collection

    def status(self) -> CollectionStatus:
        hardware = {"embedder_runs_on": self.embedder.runs_on, "generator_runs_on": self.generator_runs_on}
        try:
            collection = self.collection()
        except CollectionMissingError:
            return CollectionStatus(self.settings.collection, False, (), 0, self.embedder.identity.name, **hardware)
        return CollectionStatus(
            self.settings.collection, True, tuple(sorted(collection.files)), collection.chunk_count,
            self.embedder.identity.name,
            self.second_embedder.identity.name if self.second_embedder else None,
            collection.second_vectors_missing,
            collection.records,
            **hardware,
        )

    @property
    def generator_runs_on(self) -> str:
        """Where answers are generated: the loaded model's placement, else where it would load."""
        if self._generator is not None:
            return self._generator.info.runs_on
        settings = self.settings
        return planned_placement(settings.llm_base_url, settings.gpu_layers, settings.threads)

    def viewer(self) -> DocumentViewer:
        """Pages, passages and originals of this collection's documents (``app.pages``); one per pipeline."""
        if self._viewer is None:
            self._viewer = DocumentViewer(self.settings.collection_dir, self.collection, self.settings.pdf_passwords)
        return self._viewer

    def remove_documents(self, sources: list[str]) -> list[str]:
        """Drop documents from the index (the files themselves are not touched)."""
        folder = self.settings.collection_dir
        with WriteLock(folder):
            collection = self.open_collection(folder)
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

    def ingest(self, folder: Path, *, prune: bool = True, progress: bool | None = None,
               on_progress: Callable[[IngestProgress], None] | None = None) -> IngestReport:
        """Bring the collection in step with ``folder`` (``app.indexing``); ``on_progress`` hears after each file."""
        try:
            return self.indexer.ingest(folder, prune=prune, progress=progress, on_progress=on_progress)
        finally:
            self._collection = None

    def ingest_documents(
        self, documents: Sequence[LoadedFile], *, prune: bool = False, progress: bool | None = None
    ) -> IngestReport:
        """Index documents that are already text (e.g. a BEIR corpus), incrementally like ``ingest``."""
        try:
            return self.indexer.ingest_documents(documents, prune=prune, progress=progress)
        finally:
            self._collection = None

    def add_documents(self, files: list[tuple[str, bytes]],
                      on_progress: Callable[[IngestProgress], None] | None = None) -> IngestReport:
        """Save uploaded files into the documents folder, then bring the index in step.

        File names are reduced to their last component, so ``../../etc/passwd``
        becomes ``passwd`` inside the documents folder, never a path outside it.
        """
        folder = self.settings.documents_dir
        save_uploads(folder, files)
        # prune=False: an upload only adds; the collection may also hold files ingested from elsewhere.
        return self.ingest(folder, prune=False, progress=False, on_progress=on_progress)

    def delete_document(self, source: str) -> bool:
        """Remove a document from the index and its file from the documents folder."""
        removed = bool(self.remove_documents([source]))
        path = safe_document_path(self.settings.documents_dir, source, allow_subfolders=True)
        if path.is_file():
            path.unlink()
            removed = True
        return removed

    # ----- ask ----------------------------------------------------------------
    def first_stage(self) -> FirstStage:
        settings = self.settings
        return FirstStage(settings.first_stage, settings.fusion, settings.dense_weight_en, settings.dense_weight_zh,
                          second_weight_en=settings.second_weight_en, second_weight_zh=settings.second_weight_zh,
                          feedback_weight=settings.dense_feedback)

    def retrieve(
        self, question: Question | str, *, first_stage: FirstStage | None = None, reranker: Reranker | None = None,
        k: int | None = None, documents: Sequence[str] | None = None,
    ) -> Retrieval:
        """First stage (dense + keyword, wide) then second stage (rerank).

        ``first_stage``, ``reranker`` and ``k`` override the settings' choice (the
        ``eval`` command compares configurations on one loaded collection).
        ``documents``: search only these sources (the user's explicit filter); otherwise the documents the
        question names (``retrieval.scope``), as ``document_scope`` says.
        A ``str`` is analysed here (``retrieval.question``); ``ask_stream`` passes the question it analysed.
        """
        if isinstance(question, str):
            question = analyse_question(question)
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
        # Across periods each document is searched for what one period's answer needs: "How has NVIDIA's
        # revenue changed over these 10-Qs?" as "What was NVIDIA's revenue?" ("changed" finds the tables of
        # changes in deferred revenue). Abstention weighs that question too: "over the quarters in Amazon's
        # 10-Qs" says how to answer, not what a passage must hold.
        per_document = analyse_question(scope.per_document_question) if scope.across and scope.per_document_question \
            else None
        searched = per_document or question
        query_vector = self.embedder.embed_query(searched.search_text) if first_stage.mode != "keyword" else None
        second_vector = None
        if self.second_embedder and first_stage.second_weight(searched) > 0 and collection.has_second_vectors:
            second_vector = self.second_embedder.embed_query(searched.search_text)
        t1 = time.perf_counter()
        candidates = first_stage.search(collection, searched, query_vector, k or self.settings.first_stage_k,
                                        second_vector=second_vector, within=within)
        t2 = time.perf_counter()
        reranked = reranker.rerank(searched, candidates)
        if scope.scoped:  # within named documents: the statement row over the prose that discusses it
            reranked = prefer_asked_rows(searched, reranked, self.settings.table_row_weight)
        if not (scope.scoped and scope.periods):  # a year no document's period resolved: its passages first
            reranked = prefer_named_years(reranked, year_mentions(searched.text))
        t3 = time.perf_counter()
        timings = RetrievalTimings(embed_ms=(t1 - t0) * 1e3, first_stage_ms=(t2 - t1) * 1e3, rerank_ms=(t3 - t2) * 1e3)
        context = prompt_hits(reranked, scope, self.settings.context_chunks, self.settings.across_documents)
        # The period words the scope matched documents by are held by those documents (a filing's fiscal "Q1").
        held = frozenset(item for item in searched.specific_items if PERIOD_WORD.fullmatch(item)) \
            if scope.scoped and scope.periods else frozenset()
        return Retrieval(question=question, hits=tuple(reranked), timings=timings,
                         evidence=measure_evidence(collection, searched, context, held), scope=scope, context=context,
                         per_document=per_document)

    def abstention_policy(self) -> AbstentionPolicy:
        return self.checks.abstention_policy()

    def would_abstain(self, retrieval: Retrieval, answer: Answer | None = None) -> bool:
        """The refusal the pipeline makes with abstention on, whether or not it is on (``app.checks``)."""
        return self.checks.would_abstain(retrieval, answer)

    def checked_answer(self, retrieval: Retrieval, generated: str, sources: Sequence[Source]) -> Answer:
        """The generated text as the user gets it (``app.checks.AnswerChecks.checked_answer``)."""
        return self.checks.checked_answer(retrieval, generated, sources)

    def ask_stream(
        self, question: str, history: Sequence[Turn] = (), documents: Sequence[str] | None = None,
        requester: str = "local",
    ) -> AnswerStream:
        """Retrieve, then stream the generated answer; ``answer`` is set once iteration ends.

        ``history`` holds the conversation's earlier turns, oldest first: a
        follow-up question is searched together with the question it follows
        (``retrieval.followup``) and the last turns go into the prompt.
        ``documents`` restricts the search to these sources. ``requester`` (a user, an
        API key, a browser session) is who waits in the generator's fair queue (``app.turns``).

        With abstention on, a question the passages do not cover is answered with
        "not in the documents" (in the question's language) and the closest
        passages, without generating.
        """
        if not question.strip():
            raise ValueError("the question is empty")
        self.turns.check_room(requester)  # a full queue is refused before anything is retrieved
        started = time.perf_counter()
        question = analyse_question(question, history)  # the one analysis every stage below reads
        language = question.language
        try:
            retrieval = self.retrieve(question, documents=documents)
        except CollectionMissingError:
            retrieval = None
        stream = AnswerStream(_pieces=iter(()))
        stream.retrieval = retrieval
        if retrieval is None or not retrieval.hits:
            message = EMPTY_COLLECTION[language] if retrieval is None or not self.collection().chunk_count else NOTHING_FOUND[language]
            return fixed_answer(stream, question, message, (), started)
        closest = retrieval.context
        if self.settings.abstain and self.would_abstain(retrieval):
            shown = tuple(Source(number, hit, hit.chunk.text) for number, hit in enumerate(closest, start=1))
            refusal = not_in_documents(question, retrieval.evidence)
            return fixed_answer(stream, question, refusal, shown, started)

        generator = self.generator
        t_prompt = time.perf_counter()
        builder = PromptBuilder(
            generator.count_tokens, generator.info.context_window, self.settings.max_answer_tokens,
            source_tokens=self.settings.source_tokens or None, whole_sources=self.settings.whole_sources,
        )
        if (retrieval.scope.across or retrieval.scope.one_each or retrieval.scope.lists) and len(closest) > 1:
            records = self.collection().records
            return answer_per_document(stream, question, retrieval, builder, started, generator=generator,
                                       records=records, settings=self.settings, turns=self.turns, requester=requester,
                                       check=lambda text, sources: self.checked_answer(retrieval, text, sources))
        prompt = builder.build(question, closest, history, period=named_period(retrieval.scope, self.collection().records))
        prompt_ms = (time.perf_counter() - t_prompt) * 1e3
        stream.sources = tuple(prompt.sources)

        def pieces() -> Iterator[str | QueuePosition]:
            first_token_at = None
            count = 0
            parts: list[str] = []
            ticket = self.turns.join(requester)
            try:
                yield from (QueuePosition(ahead) for ahead in self.turns.positions_until_turn(ticket))
                for piece in generator.stream_chat(
                    prompt.messages, self.settings.max_answer_tokens, self.settings.temperature
                ):
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                    count += 1
                    parts.append(piece)
                    yield piece
            finally:
                self.turns.leave(ticket)
            finished = time.perf_counter()
            stream.answer = self.checked_answer(retrieval, "".join(parts), prompt.sources)
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

    def ask(self, question: str, history: Sequence[Turn] = (), documents: Sequence[str] | None = None,
            requester: str = "local") -> Answer:
        stream = self.ask_stream(question, history, documents, requester)
        for _ in stream:
            pass
        assert stream.answer is not None
        return stream.answer
