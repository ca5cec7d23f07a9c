"""Questions about real document collections: right document, right figure, per-period figures, refusals, time.

Runs a labelled question set (``benchmarks/data/sec10q_questions.jsonl``,
``benchmarks/data/tidb_zh_questions.jsonl``; written by a helper who was not told
how retrieval works) through the pipeline with the default settings and scores:

- right document among the sources: a gold file is among the passages given to
  the model (for across-document questions: the share of gold files present);
- single-figure accuracy: the answer states the gold value in one of its accepted
  forms (kinds single_figure, latest, single_fact, table_cell);
- across-document questions (across_periods, across_companies, across_versions,
  within_filing): every gold item stated, and the share of items stated;
- with ``--retrieval-only``: the share of single-figure questions whose gold
  figure stands in one of the passages given to the model (the ceiling of
  single-figure accuracy that passage choice sets);
- false refusals: answerable questions answered "not in the documents";
  rejection: unanswerable questions refused;
- time to first token and total time, median.

The collection is built by the normal ingest (reused when it is there):
``--documents`` is the folder; ``--files-from`` a Markdown file whose first fenced block
lists the files of the folder to index (they are linked into a temporary folder).

    benchmarks/doc_questions.py --questions benchmarks/data/sec10q_questions.jsonl \\
        --documents ../shared/data/pdf/sec-10-q --collection sec10q --out sec10q-answers.json
    benchmarks/doc_questions.py --questions benchmarks/data/tidb_zh_questions.jsonl \\
        --documents ../shared/data/markdown/pingcap-docs-cn --files-from benchmarks/data/tidb_zh_questions.md \\
        --collection tidb-zh --out tidb-answers.json
    benchmarks/doc_questions.py --summarise sec10q-answers.json

``--retrieval-only`` skips generation (document figures only, seconds instead of minutes).
Settings come from the environment as everywhere (``KB_HOME``, ``KB_DOCUMENT_SCOPE``...).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SINGLE = {"single_figure", "latest", "single_fact", "table_cell"}
MULTI = {"across_periods", "across_companies", "across_versions", "within_filing"}


def normalise(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())
    return re.sub(r"[\s$＄]+", "", text)


def states(answer: str, form: str) -> bool:
    """Does the answer state ``form`` (commas, spaces and $ aside; a number not as part of a longer one)?"""
    target, text = normalise(form), normalise(answer)
    if not target:
        return False
    pattern = re.escape(target)
    if target[0].isdigit():
        pattern = r"(?<![\d.])" + pattern
    if target[-1].isdigit():
        pattern += r"(?![\d]|\.\d)"
    return re.search(pattern, text) is not None


def item_stated(answer: str, item: dict) -> bool:
    return any(states(answer, form) for form in [item.get("value", ""), *item.get("accept", [])])


def score(question: dict, result: dict) -> dict:
    gold = question["gold"]
    files = [source["source"] for source in result["sources"]]
    scored: dict = {"id": question["id"], "kind": question["kind"], "answerable": question["answerable"]}
    if not question["answerable"]:
        scored["refused"] = result.get("abstained")
        return scored
    gold_files = list(dict.fromkeys(item["file"] for item in gold))
    scored["right_document"] = any(f in files for f in gold_files)
    scored["document_share"] = sum(f in files for f in gold_files) / len(gold_files)
    if "passages" in result and question["kind"] in SINGLE:
        # The gold figure stands in a passage given to the model: the most a right answer could be.
        shown = "\n".join(result["passages"])
        scored["figure_in_passages"] = any(item_stated(shown, item) for item in gold)
    if "answer" in result:
        answer = result["answer"]
        scored["false_refusal"] = bool(result.get("abstained"))
        if question["kind"] in SINGLE:
            # several gold items of a single-fact question are alternative places of the same fact
            scored["figure_right"] = any(item_stated(answer, item) for item in gold)
        else:
            stated = [item_stated(answer, item) for item in gold]
            scored["items_share"] = sum(stated) / len(stated)
            scored["all_items"] = all(stated)
    return scored


def summarise(scored: list[dict], results: list[dict]) -> dict:
    answerable = [s for s in scored if s["answerable"]]
    summary = {
        "questions": len(scored),
        "right_document": _share([s["right_document"] for s in answerable]),
        "right_document_single": _share([s["right_document"] for s in answerable if s["kind"] in SINGLE]),
        "document_share_multi": _mean([s["document_share"] for s in answerable if s["kind"] in MULTI]),
    }
    if any("figure_in_passages" in s for s in scored):
        summary["single_figure_in_passages"] = _share([s["figure_in_passages"] for s in scored if "figure_in_passages" in s])
    if any("figure_right" in s for s in scored):
        summary.update({
            "single_figure_accuracy": _share([s["figure_right"] for s in scored if "figure_right" in s]),
            "multi_all_items": _share([s["all_items"] for s in scored if "all_items" in s]),
            "multi_items_share": _mean([s["items_share"] for s in scored if "items_share" in s]),
            "false_refusals": _share([s["false_refusal"] for s in answerable]),
            "unanswerable_refused": _share([s["refused"] for s in scored if not s["answerable"]]),
            "first_token_s_median": _median([r["first_token_ms"] / 1e3 for r in results if "first_token_ms" in r]),
            "total_s_median": _median([r["total_ms"] / 1e3 for r in results if "total_ms" in r]),
        })
        by_kind: dict[str, list[dict]] = {}
        for s in scored:
            by_kind.setdefault(s["kind"], []).append(s)
        summary["by_kind"] = {
            kind: {"n": len(items),
                   "right": _share([s.get("figure_right", s.get("all_items", s.get("refused"))) for s in items])}
            for kind, items in sorted(by_kind.items())
        }
    return summary


def _share(values: list) -> str:
    return f"{sum(bool(v) for v in values)}/{len(values)} ({sum(bool(v) for v in values) / len(values):.0%})" if values else "-"


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def linked_subset(folder: Path, listing: Path) -> Path:
    """A temporary folder holding links to the files the listing's first fenced block names."""
    block = re.search(r"```[^\n]*\n(.*?)```", listing.read_text(encoding="utf-8"), re.DOTALL)
    if not block:
        raise SystemExit(f"{listing}: no fenced block listing files")
    target = Path(tempfile.mkdtemp(prefix="kb-subset-"))
    for name in block.group(1).split():
        link = target / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((folder / name).resolve())
    return target


def run(args: argparse.Namespace) -> None:
    from app.pipeline import Pipeline
    from app.settings import load_settings

    settings = load_settings(collection=args.collection)
    pipeline = Pipeline.from_settings(settings)
    folder = Path(args.documents)
    if args.files_from:
        folder = linked_subset(folder, Path(args.files_from))
    report = pipeline.ingest(folder, progress=False)
    print(f"ingest: {report.summary()}", file=sys.stderr)
    questions = [json.loads(line) for line in Path(args.questions).read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.ids:
        questions = [q for q in questions if q["id"] in set(args.ids.split(","))]
    if args.limit:
        questions = questions[: args.limit]
    results, scored = [], []
    for number, question in enumerate(questions, start=1):
        started = time.perf_counter()
        if args.retrieval_only:
            retrieval = pipeline.retrieve(question["question"])
            context = getattr(retrieval, "context", None) or retrieval.hits[: settings.context_chunks]
            result = {"id": question["id"], "sources": [_source(hit.chunk) for hit in context],
                      "passages": [hit.chunk.text for hit in context],
                      "retrieval_ms": (time.perf_counter() - started) * 1e3}
        else:
            stream = pipeline.ask_stream(question["question"])
            text = "".join(stream)
            answer = stream.answer
            result = {
                "id": question["id"], "question": question["question"], "answer": answer.text, "streamed": text,
                "abstained": answer.abstained, "withdrawn_draft": answer.withdrawn_draft,
                "sources": [{"source": c.source, "page": c.page} for c in answer.sources],
                "first_token_ms": stream.timings.first_token_ms, "total_ms": stream.timings.total_ms,
            }
            scope = getattr(stream.retrieval, "scope", None) if stream.retrieval else None
            if scope is not None:
                result["scope"] = list(scope.documents)
        results.append(result)
        scored.append(score(question, result))
        mark = scored[-1].get("figure_right", scored[-1].get("all_items", scored[-1].get("refused")))
        print(f"[{number}/{len(questions)}] {question['id']} {question['kind']}: doc={scored[-1].get('right_document')} "
              f"right={mark}", file=sys.stderr)
    summary = summarise(scored, results)
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "scored": scored, "results": results},
                                             ensure_ascii=False, indent=1), encoding="utf-8")


def _source(chunk) -> dict:
    return {"source": chunk.source, "page": chunk.page}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions")
    parser.add_argument("--documents", help="the folder to index")
    parser.add_argument("--files-from", help="Markdown file whose first fenced block lists the files to index")
    parser.add_argument("--collection", default="doc-questions")
    parser.add_argument("--retrieval-only", action="store_true")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--ids", help="only these question ids, comma-separated")
    parser.add_argument("--out")
    parser.add_argument("--summarise", help="print the summary of an --out file again (after re-scoring it)")
    args = parser.parse_args()
    if args.summarise:
        stored = json.loads(Path(args.summarise).read_text(encoding="utf-8"))
        questions = {json.loads(line)["id"]: json.loads(line)
                     for line in Path(args.questions).read_text(encoding="utf-8").splitlines() if line.strip()}
        scored = [score(questions[r["id"]], r) for r in stored["results"]]
        print(json.dumps(summarise(scored, stored["results"]), indent=2, ensure_ascii=False))
        return
    if not (args.questions and args.documents):
        parser.error("--questions and --documents are needed")
    run(args)


if __name__ == "__main__":
    main()
