"""One store backend at scale: N synthetic passages (384-d vectors plus text) written and searched through the
store's own interface (``retrieval.backend``), local FAISS (IVF) or Milvus Lite.

For one backend per run (a process of its own, so that its memory is its own):

- insert rate: passages per second through ``put_file`` (10 passages a document) and the final ``save``
  (local: FAISS IVF trained and written, keyword index and chunks written; Milvus: batches inserted, flushed);
- reopen time (a new reader loading the collection);
- hybrid search p50/p95: the app's first stage (``retrieval.fusion.FirstStage``: dense top 40, BM25 top 40,
  every candidate scored by both, weighted fusion) on queries made of a stored passage's words and a
  perturbed copy of its vector;
- recall@10 of the store's dense search against exact search (numpy over all vectors);
- memory: the process's RSS after writing and after reopening (Milvus Lite runs in this process).

Synthetic data: vectors drawn around 2,000 centres (``benchmarks/bench_index.py``'s recipe: clustered like
real embeddings); text of 40 words from a Zipf-distributed vocabulary of 50,000 English-like words and 5,000
Chinese words, so that BM25 posting lists are as skewed as in real text.

Example (figures in docs/benchmarks.md)::

    .venv/bin/python benchmarks/bench_store_scale.py --backend local --passages 1000000 --json local-1m.json
    .venv/bin/python benchmarks/bench_store_scale.py --backend milvus --passages 1000000 --json milvus-1m.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.types import Chunk  # noqa: E402
from retrieval.backend import StoreConfig, open_collection  # noqa: E402
from retrieval.embedders import EmbedderIdentity  # noqa: E402
from retrieval.fusion import FirstStage  # noqa: E402
from retrieval.question import analyse_question  # noqa: E402

DIM = 384
PER_DOCUMENT = 10
IDENTITY = EmbedderIdentity(name="synthetic", dim=DIM, fingerprint="bench")
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pre", "con", "dat", "ion", "ter", "al", "ing", "ex"]
_HANZI = "数据索引向量检索模型文档问题答案系统服务器集群节点内存磁盘网络延迟吞吐查询写入删除更新分片副本"


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def vocabulary(rng: np.random.Generator) -> list[str]:
    english = {"".join(rng.choice(_SYLLABLES, size=rng.integers(2, 5))) for _ in range(60_000)}
    chinese = {"".join(rng.choice(list(_HANZI), size=rng.integers(2, 4))) for _ in range(6_000)}
    return sorted(english)[:50_000] + sorted(chinese)[:5_000]


def passages(count: int, seed: int = 0):
    """(vectors, texts) of ``count`` synthetic passages, made in slices to bound memory."""
    rng = np.random.default_rng(seed)
    words = np.array(vocabulary(rng))
    centres = rng.normal(size=(2_000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1 / np.arange(1, len(words) + 1) ** 1.07  # Zipf
    weights /= weights.sum()
    for start in range(0, count, 10_000):
        size = min(10_000, count - start)
        vectors = centres[rng.integers(0, len(centres), size)] + rng.normal(scale=0.025, size=(size, DIM))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        chosen = rng.choice(len(words), size=(size, 40), p=weights)
        yield vectors, [" ".join(words[row]) for row in chosen]


def run(backend: str, count: int, queries: int, folder: Path, milvus_index: str) -> dict:
    config = StoreConfig(kind=backend, milvus_uri=str(folder / "milvus.db"), milvus_index=milvus_index,
                         exact_up_to=200_000)
    target = folder / "collections" / "scale"
    collection = open_collection(target, config, IDENTITY, create=True)
    started = rss_mb()
    all_vectors = np.zeros((count, DIM), np.float32)
    texts: list[str] = []
    t0 = time.perf_counter()
    for batch, (vectors, batch_texts) in enumerate(passages(count)):
        for document in range(0, len(vectors), PER_DOCUMENT):
            source = f"doc-{batch:04d}-{document // PER_DOCUMENT:04d}.md"
            chunks = [Chunk(source, 1, (), n * 300, n * 300 + 280, text)
                      for n, text in enumerate(batch_texts[document:document + PER_DOCUMENT])]
            collection.put_file(source, "sha", chunks, vectors[document:document + PER_DOCUMENT], pages=1)
        offset = batch * 10_000
        all_vectors[offset:offset + len(vectors)] = vectors
        texts.extend(batch_texts)
        if (offset + len(vectors)) % 100_000 == 0:
            print(f"  {offset + len(vectors):,} passages, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    t_put = time.perf_counter() - t0
    collection.save()
    insert_seconds = time.perf_counter() - t0
    rss_written = rss_mb()
    del collection
    t1 = time.perf_counter()
    reader = open_collection(target, config, IDENTITY)
    reopen_seconds = time.perf_counter() - t1

    rng = np.random.default_rng(1)
    picks = rng.choice(count, size=queries, replace=False)
    stage = FirstStage(dense_weight_en=0.35)
    latencies, recalls = [], []
    ids_of_row = np.arange(count)  # both stores number passages in the order they are put, from 0
    for pick in picks:
        query_vector = all_vectors[pick] + rng.normal(scale=0.025, size=DIM).astype(np.float32)
        query_vector /= np.linalg.norm(query_vector)
        words = texts[pick].split()
        question = analyse_question(" ".join(words[:6]))
        t = time.perf_counter()
        stage.search(reader, question, query_vector, 40)
        latencies.append((time.perf_counter() - t) * 1e3)
        exact = set(ids_of_row[np.argsort(-(all_vectors @ query_vector))[:10]].tolist())
        found = {chunk_id for chunk_id, _ in reader.search_dense(query_vector, 10)}
        recalls.append(len(exact & found) / 10)
    latencies.sort()
    return {
        "backend": backend, "passages": count, "vector_index": reader.index_kind,
        "insert_seconds": round(insert_seconds, 1), "put_seconds": round(t_put, 1),
        "insert_passages_per_s": round(count / insert_seconds),
        "reopen_seconds": round(reopen_seconds, 1),
        "hybrid_ms_p50": round(statistics.median(latencies), 1),
        "hybrid_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "dense_recall_at_10": round(float(np.mean(recalls)), 3),
        "rss_mb_before": round(started), "rss_mb_after_write": round(rss_written), "rss_mb_after_reopen": round(rss_mb()),
        "vectors_in_benchmark_mb": round(all_vectors.nbytes / 2**20),
        "disk_mb": round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("local", "milvus"), required=True)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--milvus-index", default="IVF_FLAT", choices=("FLAT", "IVF_FLAT", "HNSW"))
    parser.add_argument("--folder", type=Path, default=None, help="Where to write (default: a temporary folder, removed).")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="kb-scale-"))
    try:
        result = run(args.backend, args.passages, args.queries, folder, args.milvus_index)
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
