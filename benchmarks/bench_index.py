"""Vector index size limits: exact vs IVF search latency, recall and memory at 10k, 100k and 1M chunks.

What it measures, for each size, with the store's own index builders
(``retrieval.vector_index.VectorIndex.exact`` and ``.ivf``):

- median and p95 milliseconds per single-query search (top 40), exact and IVF,
  measured side by side in one run;
- IVF recall@10 against exact search on the same queries;
- build time (adding vectors; IVF: training + adding) and the memory each index
  adds (RSS growth while it is built, and the index's serialized size);
- with ``--collection``, the same on a real collection's e5 vectors, queried with
  real questions embedded by the real embedder (``--queries``, BEIR queries.jsonl
  files), and ``--nprobe`` values compared, which is how ``IVF_PROBED_SHARE`` was chosen.

Synthetic vectors: 384 dimensions, drawn around 2,000 random centres (unit
vectors plus Gaussian noise, renormalised) so that they cluster like real
embeddings do; uniform random vectors would make IVF look worse than it is.
Queries are perturbed copies of stored vectors.

Not measured: the keyword index at these sizes, concurrent queries, GPU faiss.

Example::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_index.py --sizes 10000 100000 1000000 \\
        --collection /work/evalkb/collections/eval-cmrc2018-scifact \\
        --queries ../shared/data/retrieval/scifact/queries.jsonl ../shared/data/retrieval/cmrc2018/queries.jsonl
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from retrieval import store  # noqa: E402
from retrieval.vector_index import VectorIndex  # noqa: E402

DIM = 384


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def synthetic(count: int, seed: int, centres: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, DIM)).astype(np.float32)
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    out = np.empty((count, DIM), dtype=np.float32)
    for start in range(0, count, 100_000):  # in blocks: 1M x 384 noise at once would double peak memory
        n = min(100_000, count - start)
        block = middle[rng.integers(0, centres, n)] + rng.normal(scale=0.025, size=(n, DIM)).astype(np.float32)
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def time_searches(index: faiss.Index, queries: np.ndarray, k: int = 40) -> tuple[list[float], np.ndarray]:
    times, found = [], []
    index.search(queries[:1], k)  # warm-up
    for query in queries:
        started = time.perf_counter()
        _, ids = index.search(query.reshape(1, -1), k)
        times.append((time.perf_counter() - started) * 1e3)
        found.append(ids[0])
    return times, np.array(found)


def recall_at_10(exact_ids: np.ndarray, approx_ids: np.ndarray) -> float:
    return statistics.fmean(len(set(e[:10]) & set(a[:10])) / 10 for e, a in zip(exact_ids, approx_ids))


def serialized_mb(index: faiss.Index) -> float:
    return faiss.serialize_index(index).nbytes / 2**20


def compare(name: str, vectors: np.ndarray, queries: np.ndarray, nprobes: list[int]) -> dict:
    ids = np.arange(len(vectors), dtype=np.int64)
    before = rss_mb()
    started = time.perf_counter()
    exact = VectorIndex.exact(vectors.shape[1]).raw
    exact.add_with_ids(vectors, ids)
    exact_build = time.perf_counter() - started
    exact_rss = rss_mb() - before
    exact_times, exact_ids = time_searches(exact, queries)
    row = {
        "set": name, "chunks": len(vectors), "queries": len(queries),
        "exact": {"build_s": round(exact_build, 2), "rss_growth_mb": round(exact_rss), "file_mb": round(serialized_mb(exact)),
                  "ms_p50": round(statistics.median(exact_times), 2),
                  "ms_p95": round(float(np.percentile(exact_times, 95)), 2)},
        "ivf": [],
    }
    before = rss_mb()
    started = time.perf_counter()
    ivf = VectorIndex.ivf(vectors).raw
    trained = time.perf_counter() - started
    ivf.add_with_ids(vectors, ids)
    ivf_build = time.perf_counter() - started
    ivf_rss = rss_mb() - before
    for nprobe in nprobes:
        ivf.nprobe = nprobe
        times, approx = time_searches(ivf, queries)
        row["ivf"].append({
            "nlist": ivf.nlist, "nprobe": nprobe, "train_s": round(trained, 2), "build_s": round(ivf_build, 2),
            "rss_growth_mb": round(ivf_rss), "file_mb": round(serialized_mb(ivf)),
            "ms_p50": round(statistics.median(times), 2), "ms_p95": round(float(np.percentile(times, 95)), 2),
            "recall_at_10": round(recall_at_10(exact_ids, approx), 4),
        })
    del exact, ivf
    print(json.dumps(row), flush=True)
    return row


def real_collection(folder: Path, query_files: list[Path], limit: int) -> tuple[np.ndarray, np.ndarray]:
    from app.settings import load_settings
    from retrieval.embedders import load_embedder

    settings = load_settings()
    embedder = load_embedder(settings.embedding_model, settings.model_cache)
    collection = store.Collection.open(folder, embedder.identity)
    ids = np.array(sorted(collection._chunks), dtype=np.int64)  # noqa: SLF001 (benchmark reads the store's vectors)
    vectors = collection.vectors(ids)
    texts = []
    for path in query_files:
        with path.open(encoding="utf-8") as lines:
            rows = [json.loads(line)["text"] for line in lines if line.strip()]
        texts += rows[: limit // len(query_files)]
    queries = np.stack([embedder.embed_query(text) for text in texts]).astype(np.float32)
    return np.ascontiguousarray(vectors), queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries-count", type=int, default=200)
    parser.add_argument("--nprobe", type=int, nargs="*", default=[8, 16, 24, 32, 64])
    parser.add_argument("--collection", type=Path, help="a real collection folder to measure IVF recall on")
    parser.add_argument("--queries", type=Path, nargs="*", default=[], help="BEIR queries.jsonl files for --collection")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, faiss {faiss.__version__}, "
          f"python {platform.python_version()}, load {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    if args.collection:
        vectors, queries = real_collection(args.collection, args.queries, args.queries_count)
        rows.append(compare(f"real:{args.collection.name}", vectors, queries, args.nprobe))
    for size in args.sizes:
        vectors = synthetic(size, seed=size)
        picks = np.random.default_rng(1).choice(size, args.queries_count, replace=False)
        noisy = vectors[picks] + np.random.default_rng(2).normal(scale=0.025, size=(args.queries_count, DIM)).astype(np.float32)
        queries = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
        rows.append(compare(f"synthetic:{size}", vectors, queries, args.nprobe))
        del vectors
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
