"""``kb eval`` (retrieval on BEIR-format sets) and ``kb eval-qa`` (answers on QA sets), from the command line.

The measuring is ``evaluation``'s; this module reads the sets, builds the
pipelines and prints the tables. A set exported from the team's ratings
(``kb feedback export``) is indexed in a temporary home removed when it is done:
its collections are the evaluation's, not the team's, and are left nowhere.
Other sets keep their collections in ``KB_HOME`` for the next run to reuse.

Deliberately not here: the metrics, the sets' formats (``evaluation``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from dataclasses import replace as replace_config
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.support import pipeline_or_exit as _pipeline
from cli.support import settings_or_exit as _settings
from evaluation import answers as answer_evaluation
from evaluation.beir import BeirFormatError, read_beir
from evaluation.qa_sets import QASetError, read_qa_set
from evaluation.ranking import EvalConfig, EvalReport, machine_description, select_queries
from evaluation.ranking import evaluate as run_evaluation
from app.pipeline import Pipeline
from team import feedback as feedback_export
from llm.generator import GenerationError
from llm.models import ModelError
from retrieval.rerank import LEXICAL_FUSION, NO_RERANK, load_reranker
from retrieval.store import StoreError


def evaluate(
    datasets: Annotated[list[Path], typer.Argument(help="BEIR folders (corpus.jsonl, queries.jsonl, qrels/); several share one collection.")],
    collection: Annotated[Optional[str], typer.Option("--collection", "-c", help="Collection to build or reuse (default: eval-<set names>).")] = None,
    qrels: Annotated[str, typer.Option("--qrels", help="Which qrels file: test, train, ...")] = "test",
    half: Annotated[str, typer.Option("--half", help="all, or tune/report: a fixed half of the queries, split by document.")] = "all",
    sample: Annotated[Optional[int], typer.Option("--sample", help="At most this many queries per set (fixed seed).")] = None,
    configs: Annotated[str, typer.Option("--configs", help="Comma-separated: keyword, dense, hybrid, hybrid-2way (no second embedder), rrf, hybrid+rerank.")] = "keyword,dense,hybrid-2way,hybrid,hybrid+rerank",
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the results to this JSON file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Measure retrieval on BEIR-format sets: nDCG@10, Recall@1/5/20/100, MRR@10, latency per configuration."""
    try:
        sets = [read_beir(folder, qrels_split=qrels) for folder in datasets]
        selected = [(beir, select_queries(beir, half=half, sample=sample)) for beir in sets]
    except (BeirFormatError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    names = [beir.name for beir in sets]
    if len(set(names)) != len(names):
        typer.echo(f"error: two sets have the same folder name ({', '.join(names)})", err=True)
        raise typer.Exit(2)
    settings = _settings(collection=collection or "eval-" + "-".join(sorted(names)))
    pipeline = _pipeline(settings)
    hybrid = pipeline.first_stage()
    reranker_spec = settings.reranker if settings.reranker != NO_RERANK else LEXICAL_FUSION
    known = {
        "keyword": lambda: EvalConfig("keyword", replace_config(hybrid, mode="keyword")),
        "dense": lambda: EvalConfig("dense", replace_config(hybrid, mode="dense")),
        "hybrid": lambda: EvalConfig("hybrid", replace_config(hybrid, mode="hybrid")),
        # Without the second embedder: its weight goes back to the main one (what hybrid does when it is off).
        "hybrid-2way": lambda: EvalConfig("hybrid-2way", replace_config(
            hybrid, mode="hybrid", second_weight_en=0.0, second_weight_zh=0.0,
            dense_weight_en=hybrid.dense_weight_en + hybrid.second_weight_en,
            dense_weight_zh=hybrid.dense_weight_zh + hybrid.second_weight_zh,
        )),
        "rrf": lambda: EvalConfig("rrf", replace_config(hybrid, mode="hybrid", method="rrf")),
        "hybrid+rerank": lambda: EvalConfig(
            f"hybrid+{reranker_spec}", replace_config(hybrid, mode="hybrid"),
            load_reranker(reranker_spec, settings.rerank_dense_weight),
        ),
    }
    wanted = [name.strip() for name in configs.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        typer.echo(f"error: unknown configuration(s) {unknown}; choose from {', '.join(known)}", err=True)
        raise typer.Exit(2)
    try:
        documents = [document for beir in sets for document in beir.documents]
        typer.echo(f"{settings.collection}: indexing {len(documents)} documents (reused when unchanged)", err=True)
        # No pruning: a collection built for several sets can serve an evaluation of one of them.
        report = pipeline.ingest_documents(documents, progress=False if quiet else None)
        typer.echo(f"{settings.collection}: {report.summary()}", err=True)
        if report.interrupted:
            raise typer.Exit(130)
        results = run_evaluation(pipeline, selected, [known[name]() for name in wanted], progress=False if quiet else None)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    outcome = EvalReport(
        collection=settings.collection, chunks=report.collection_chunks, ingest=report,
        results=tuple(results), machine=machine_description(),
    )
    typer.echo(f"{outcome.machine}; collection {outcome.collection}: {outcome.chunks} chunks; "
               f"first stage k={max(settings.first_stage_k, 100)} per search")
    typer.echo(outcome.table())
    if json_path:
        json_path.write_text(outcome.to_json(), encoding="utf-8")


def evaluate_qa(
    qa_files: Annotated[list[Path], typer.Argument(help="RGB *_fact.json or DomainRAG basic_qa_retrieved_bm25.jsonl files.")],
    sample: Annotated[Optional[int], typer.Option("--sample", help="At most this many questions per set (fixed seed).")] = None,
    retrieval_only: Annotated[bool, typer.Option("--retrieval-only", help="Record the evidence only; no generation.")] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write every outcome and the summary to this JSON file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Answer quality on QA sets: accuracy with and without abstention, rejection rate, citation support."""
    try:
        sets = [read_qa_set(path) for path in qa_files]
    except QASetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    base = _pipeline(_settings())
    outcomes, summaries = [], []
    try:
        for path, qa_set in zip(qa_files, sets):
            items = answer_evaluation.select_items(qa_set, sample)
            with _evaluation_home(base, path) as home:
                answerable, negatives, built_all, built_neg = answer_evaluation.build_collections(
                    home, qa_set, items, progress=False if quiet else None)
                typer.echo(f"{qa_set.name}: {len(items)} questions; {answerable.settings.collection}: "
                           f"{built_all.summary()}; {negatives.settings.collection}: {built_neg.summary()}", err=True)
                outcomes += answer_evaluation.evaluate_set(qa_set, items, answerable, negatives,
                                                           retrieval_only=retrieval_only,
                                                           progress=False if quiet else None)
            summaries.append(answer_evaluation.summarise(qa_set.name, outcomes))
            if json_path:  # after each set, so a long run keeps what it finished
                json_path.write_text(answer_evaluation.outcomes_to_json(outcomes, summaries), encoding="utf-8")
    except (StoreError, ModelError, GenerationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    typer.echo(machine_description())
    for summary in summaries:
        typer.echo(json.dumps(asdict(summary), ensure_ascii=False))


@contextmanager
def _evaluation_home(base: Pipeline, path: Path) -> Iterator[Pipeline]:
    """The pipeline whose home holds a set's collections: a temporary one for the team's exported ratings.

    Those sets are small and made for one run; built in KB_HOME they were left there as ``qa-*``
    collections next to the team's. The temporary folder (private, 0700) goes with everything in it.
    """
    if not feedback_export.is_export(path):
        yield base
        return
    with tempfile.TemporaryDirectory(prefix="kb-eval-qa-") as scratch:
        yield base.with_settings(home=Path(scratch))
