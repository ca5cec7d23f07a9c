"""Retrieval evaluation on BEIR-format sets: what ``kb eval`` runs.

The corpora are indexed through the real ingest path (``Pipeline.ingest_documents``:
chunking, embedding, keyword index, atomic saves) into one collection, which a
second run reuses; then every query of every set is run through the real
``Pipeline.retrieve`` under each configuration, one query at a time.

A document's rank is the rank of its best chunk (chunks of one document after
the first are skipped). Metrics follow BEIR: nDCG@10 with graded relevance and
linear gain, Recall@k = relevant documents in the top k / relevant documents,
MRR@10 = 1 / rank of the first relevant document in the top 10 (else 0).
Latency is wall time of ``retrieve`` per query: query embedding, both searches,
fusion and the second stage.

Worked example (two sets in one bilingual collection, 300 queries each)::

    kb eval ../shared/data/retrieval/scifact ../shared/data/retrieval/cmrc2018 \\
        --sample 300 --json results.json

Query selection: ``qrels_split`` picks the qrels file (``test``, ``train``);
``half`` = ``tune`` / ``report`` keeps the queries whose first relevant document
hashes even / odd, a fixed split by document for sets that have no train qrels
(tune on one half, report on the other); ``sample`` then keeps that many,
chosen with a fixed seed.

Deliberately not here: statistical tests between configurations
(``benchmarks/retrieval_quality.py`` has the paired bootstrap), answer quality.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from tqdm import tqdm

from evaluation.beir import BeirQuery, BeirSet
from retrieval.fusion import FirstStage
from core.types import Hit
from retrieval.rerank import NoReranker, Reranker

if TYPE_CHECKING:  # annotations only: the CLI, in app, runs these, so they import nothing of app at run time
    from app.pipeline import Pipeline
    from app.results import IngestReport

RECALL_DEPTHS = (1, 5, 20, 100)


@dataclass(frozen=True)
class EvalConfig:
    name: str
    first_stage: FirstStage
    reranker: Reranker = field(default_factory=NoReranker)


@dataclass(frozen=True)
class SetResult:
    set_name: str
    config: str
    queries: int
    ndcg_at_10: float
    recall: dict[int, float]  # depth -> mean recall
    mrr_at_10: float
    latency_median_ms: float
    latency_p95_ms: float


@dataclass(frozen=True)
class EvalReport:
    collection: str
    chunks: int
    ingest: IngestReport
    results: tuple[SetResult, ...]
    machine: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    def table(self) -> str:
        header = ["set", "config", "queries", "nDCG@10", *[f"R@{d}" for d in RECALL_DEPTHS], "MRR@10", "ms p50", "ms p95"]
        rows = [
            [r.set_name, r.config, str(r.queries), f"{r.ndcg_at_10:.3f}", *[f"{r.recall[d]:.3f}" for d in RECALL_DEPTHS],
             f"{r.mrr_at_10:.3f}", f"{r.latency_median_ms:.1f}", f"{r.latency_p95_ms:.1f}"]
            for r in self.results
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
        return "\n".join(lines)


def machine_description() -> str:
    import os

    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"


def select_queries(beir: BeirSet, *, half: str = "all", sample: int | None = None, seed: int = 13) -> list[BeirQuery]:
    if half not in ("all", "tune", "report"):
        raise ValueError(f"half must be all, tune or report, got {half!r}")
    queries = list(beir.queries)
    if half != "all":
        def parity(query: BeirQuery) -> int:
            return hashlib.sha1(min(query.relevant).encode()).digest()[0] % 2

        queries = [q for q in queries if parity(q) == (0 if half == "tune" else 1)]
    if sample and sample < len(queries):
        queries = sorted(random.Random(seed).sample(queries, sample), key=lambda q: q.query_id)
    return queries


def ranked_documents(hits: Sequence[Hit]) -> list[str]:
    """Sources in the order of their best chunk."""
    seen: dict[str, None] = {}
    for hit in hits:
        seen.setdefault(hit.chunk.source, None)
    return list(seen)


def ndcg_at_10(ranking: Sequence[str], relevant: dict[str, int]) -> float:
    gains = sum(relevant.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranking[:10], start=1))
    ideal = sum(g / math.log2(rank + 1) for rank, g in enumerate(sorted(relevant.values(), reverse=True)[:10], start=1))
    return gains / ideal if ideal else 0.0


def recall_at(ranking: Sequence[str], relevant: dict[str, int], depth: int) -> float:
    return len(set(ranking[:depth]) & set(relevant)) / len(relevant)


def mrr_at_10(ranking: Sequence[str], relevant: dict[str, int]) -> float:
    return next((1.0 / rank for rank, doc in enumerate(ranking[:10], start=1) if doc in relevant), 0.0)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))] if ordered else 0.0


def evaluate(
    pipeline: Pipeline,
    sets: Sequence[tuple[BeirSet, list[BeirQuery]]],
    configs: Sequence[EvalConfig],
    *,
    depth: int = 100,
    progress: bool | None = None,
) -> list[SetResult]:
    """Run every selected query of every set under every configuration."""
    k = max(pipeline.settings.first_stage_k, depth)  # Recall@100 needs 100 documents per search
    results = []
    total = sum(len(queries) for _, queries in sets) * len(configs)
    bar = tqdm(total=total, desc="queries", unit="q", disable=None if progress is None else not progress)
    pipeline.retrieve("warm up", k=k)  # loads the collection, the keyword index and jieba once
    for config in configs:
        for beir, queries in sets:
            ndcg, mrr, latencies = [], [], []
            recalls: dict[int, list[float]] = {d: [] for d in RECALL_DEPTHS}
            for query in queries:
                started = time.perf_counter()
                retrieval = pipeline.retrieve(query.text, first_stage=config.first_stage, reranker=config.reranker, k=k)
                latencies.append((time.perf_counter() - started) * 1e3)
                ranking = ranked_documents(retrieval.hits)
                ndcg.append(ndcg_at_10(ranking, query.relevant))
                mrr.append(mrr_at_10(ranking, query.relevant))
                for d in RECALL_DEPTHS:
                    recalls[d].append(recall_at(ranking, query.relevant, d))
                bar.update()
            results.append(SetResult(
                set_name=beir.name, config=config.name, queries=len(queries),
                ndcg_at_10=statistics.fmean(ndcg) if ndcg else 0.0,
                recall={d: statistics.fmean(v) if v else 0.0 for d, v in recalls.items()},
                mrr_at_10=statistics.fmean(mrr) if mrr else 0.0,
                latency_median_ms=statistics.median(latencies) if latencies else 0.0,
                latency_p95_ms=_percentile(latencies, 0.95),
            ))
    bar.close()
    return results
