"""Questions about real document collections, asked through the pipeline and scored (``benchmarks/doc_scoring.py``).

Runs labelled question sets (``benchmarks/data/*.jsonl``, written by helpers who were not told how the
product decides) with the default settings and prints, per run: right document among the sources,
single-figure accuracy, every figure of multi-figure questions, complete lists across documents,
false refusals of answerable questions, refusals of unanswerable ones, time to first token and total.

Each question names its collection (``collection``; default ``--collection``). A collection is built
by the normal ingest into ``KB_HOME`` (reused when it is there) from the folder ``--source`` names:

    --source sec10q=../shared/data/pdf/sec-10-q
    --source tidb-zh=../shared/data/markdown/pingcap-docs-cn@benchmarks/data/tidb_zh_questions.md
    --source 'fastapi-tutorial=../shared/data/markdown/fastapi-docs/docs@glob:en/docs/tutorial/**/*.md,zh/docs/tutorial/**/*.md'
    --source pdf-papers=../shared/data/pdf@benchmarks/data/nearmiss_en_questions.md
    --source dated-pages=/tmp/dated-pages          # made by benchmarks/dated_pages.py

``@LISTING`` takes the files the listing's first fenced block names, ``@glob:`` the files matching the
patterns; either is linked into a temporary folder, so sources keep their paths relative to the folder.

    benchmarks/doc_questions.py --questions benchmarks/data/sec10q_questions.jsonl --source sec10q=... \\
        --collection sec10q --out sec10q-answers.json
    benchmarks/doc_questions.py --questions benchmarks/data/nearmiss_en_questions.jsonl --source ... --out nm.json
    benchmarks/doc_questions.py --summarise nm.json --questions benchmarks/data/nearmiss_en_questions.jsonl

``--half tune|report`` asks only the questions whose id number is odd (tune) or even (report): rules
are decided on one half and reported on the other. ``--retrieval-only`` skips generation.
Every answer is stored with what the model wrote and the passages it was shown (``draft``, ``shown``),
so ``benchmarks/replay_answers.py`` can check stored drafts again after the checks change, without
generating. Settings come from the environment as everywhere (``KB_HOME``, ``KB_DOCUMENT_SCOPE``...).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks.doc_scoring import right, score, summarise  # noqa: E402


def read_questions(paths: list[str], half: str | None = None, ids: str | None = None,
                   kinds: str | None = None) -> list[dict]:
    questions = [json.loads(line) for path in paths
                 for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if half:
        questions = [q for q in questions if (int(re.findall(r"\d+", q["id"])[-1]) % 2 == 1) == (half == "tune")]
    if ids:
        questions = [q for q in questions if q["id"] in set(ids.split(","))]
    if kinds:
        questions = [q for q in questions if q["kind"] in set(kinds.split(","))]
    return questions


def linked_subset(folder: Path, selection: str) -> Path:
    """A temporary folder of links to the files ``selection`` names: a listing's first fenced block, or
    ``glob:`` patterns relative to ``folder``."""
    if selection.startswith("glob:"):
        names = sorted({str(path.relative_to(folder)) for pattern in selection[5:].split(",")
                        for path in folder.glob(pattern) if path.is_file()})
    else:
        block = re.search(r"```[^\n]*\n(.*?)```", Path(selection).read_text(encoding="utf-8"), re.DOTALL)
        if not block:
            raise SystemExit(f"{selection}: no fenced block listing files")
        names = block.group(1).split()
    target = Path(tempfile.mkdtemp(prefix="kb-subset-"))
    for name in names:
        link = target / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((folder / name).resolve())
    return target


def documents_folder(spec: str) -> Path:
    folder, _, selection = spec.partition("@")
    return linked_subset(Path(folder), selection) if selection else Path(folder)


def shown_sources(stream) -> list[dict]:
    """The passages the model was shown, as ``benchmarks/replay_answers.py`` rebuilds them."""
    return [{"number": source.number, "text": source.text, "chunk": asdict(source.hit.chunk),
             "score": source.hit.score, "dense_score": source.hit.dense_score,
             "keyword_score": source.hit.keyword_score, "chunk_id": source.hit.chunk_id}
            for source in stream.sources]


def ask(pipeline, question: dict, retrieval_only: bool, context_chunks: int) -> dict:
    started = time.perf_counter()
    if retrieval_only:
        retrieval = pipeline.retrieve(question["question"])
        context = retrieval.context or retrieval.hits[:context_chunks]
        return {"id": question["id"], "sources": [{"source": h.chunk.source, "page": h.chunk.page} for h in context],
                "passages": [hit.chunk.text for hit in context], "retrieval_ms": (time.perf_counter() - started) * 1e3}
    stream = pipeline.ask_stream(question["question"])
    draft = "".join(stream)
    answer = stream.answer
    retrieval = stream.retrieval
    result = {
        "id": question["id"], "question": question["question"], "answer": answer.text, "draft": draft,
        "abstained": answer.abstained, "supported": answer.supported, "withdrawn_draft": answer.withdrawn_draft,
        "sentences": [{"text": s.text, "supported": s.supported, "checked": s.checked, "score": s.score,
                       "citations": list(s.citations)} for s in answer.sentences],
        "sources": [{"source": c.source, "page": c.page} for c in answer.sources],
        "shown": shown_sources(stream),
        "first_token_ms": stream.timings.first_token_ms, "total_ms": stream.timings.total_ms,
        "refused_before_generation": stream.timings.generated_pieces == 0,
        "withdrawn": [{"text": s.text, "because": s.withdrawn_because} for s in answer.withdrawn],
    }
    if retrieval is not None:
        result["scope"] = list(retrieval.scope.documents)
        result["scope_periods"] = list(retrieval.scope.periods)
        result["evidence"] = asdict(retrieval.evidence) if retrieval.evidence else None
        scope = retrieval.scope
        # As the pipeline decides (app.pipeline.Pipeline.ask_stream): replay_answers.py checks such answers line by line.
        result["per_document"] = bool(scope.across or scope.one_each or scope.lists) and len(result["shown"]) > 1 \
            and not result["refused_before_generation"]
        result["listing"] = scope.lists and not scope.across
    return result


def run(args: argparse.Namespace) -> None:
    from app.pipeline import Pipeline
    from app.settings import load_settings

    sources = dict(spec.split("=", 1) for spec in args.source or [])
    if args.documents:
        sources.setdefault(args.collection, args.documents + (f"@{args.files_from}" if args.files_from else ""))
    questions = read_questions(args.questions, args.half, args.ids, args.kinds)
    if args.limit:
        questions = questions[: args.limit]
    base = None
    pipelines = {}
    results, scored = [], []
    for number, question in enumerate(questions, start=1):
        name = question.get("collection") or args.collection
        if name not in pipelines:
            if name not in sources:
                raise SystemExit(f"no --source for collection {name!r}")
            settings = load_settings(collection=name)
            base = base or Pipeline.from_settings(settings)
            pipeline = pipelines[name] = base.with_settings(collection=name)
            report = pipeline.ingest(documents_folder(sources[name]), progress=False)
            print(f"ingest {name}: {report.summary()}", file=sys.stderr)
        result = ask(pipelines[name], question, args.retrieval_only, base.settings.context_chunks)
        results.append(result)
        scored.append(score(question, result))
        print(f"[{number}/{len(questions)}] {question['id']} {question['kind']}: doc={scored[-1].get('right_document')} "
              f"right={right(scored[-1])}", file=sys.stderr)
        if args.out:  # as it goes: a long run's answers can be read, or replayed, before it ends
            Path(args.out).write_text(json.dumps({"summary": {}, "scored": scored, "results": results},
                                                 ensure_ascii=False, indent=1), encoding="utf-8")
    summary = summarise(scored, results)
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "scored": scored, "results": results},
                                             ensure_ascii=False, indent=1), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", nargs="+", required=True)
    parser.add_argument("--source", action="append", help="NAME=FOLDER[@LISTING.md | @glob:PATTERN,...] (repeatable)")
    parser.add_argument("--documents", help="the folder of --collection (older form of --source)")
    parser.add_argument("--files-from", help="with --documents: a Markdown file whose first fenced block lists the files")
    parser.add_argument("--collection", default="doc-questions", help="for questions that name none")
    parser.add_argument("--half", choices=("tune", "report"))
    parser.add_argument("--kinds", help="only these kinds, comma-separated")
    parser.add_argument("--retrieval-only", action="store_true")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--ids", help="only these question ids, comma-separated")
    parser.add_argument("--out")
    parser.add_argument("--summarise", help="print the summary of an --out file again (after re-scoring it)")
    args = parser.parse_args()
    if args.summarise:
        stored = json.loads(Path(args.summarise).read_text(encoding="utf-8"))
        questions = {q["id"]: q for q in read_questions(args.questions)}
        results = [r for r in stored["results"] if r["id"] in questions]
        scored = [score(questions[r["id"]], r) for r in results]
        print(json.dumps(summarise(scored, results), indent=2, ensure_ascii=False))
        return
    run(args)


if __name__ == "__main__":
    main()
