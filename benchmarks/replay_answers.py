"""Check stored drafts again with today's checks, without generating: what the checks after generation decide.

``benchmarks/doc_questions.py`` stores, for every answer, what the model wrote (``draft``), the passages it
was shown (``shown``), the question's scope and its evidence. This script rebuilds those, runs the
pipeline's own checks on them (``app.checks.AnswerChecks.checked_answer``, with the settings of the
environment: ``KB_WITHDRAW_UNSUPPORTED``, ``KB_DECLINE_UNSUPPORTED``...), and scores the result as
``doc_questions.py`` would have. A change to the checks is measured on hundreds of stored answers in
seconds; a change to retrieval or prompts still needs a new run.

    benchmarks/replay_answers.py --answers nm.json --questions benchmarks/data/nearmiss_en_questions.jsonl \\
        [--out nm-replayed.json] [--show-changes]

Drafts of answers refused before generation are not replayed (nothing was generated): they stay refused.
An answer of one line per document is replayed line by line through ``app.answering.checked_lines``, as
the pipeline checks it.
Deliberately not here: generating, retrieval.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks.doc_questions import read_questions  # noqa: E402
from benchmarks.doc_scoring import right, score, summarise  # noqa: E402


def replay(result: dict, checks) -> dict:
    from app.results import Retrieval, RetrievalTimings
    from core.types import Chunk, Evidence, Hit, Source
    from retrieval.question import analyse_question
    from retrieval.scope import Scope

    if not result.get("shown") or not result.get("draft") or result.get("refused_before_generation"):
        return result
    sources = []
    for row in result["shown"]:
        chunk = dict(row["chunk"])
        chunk["heading_path"] = tuple(chunk["heading_path"])
        hit = Hit(chunk=Chunk(**chunk), first_stage_score=row["score"], first_stage_rank=row["number"],
                  dense_score=row.get("dense_score"), keyword_score=row.get("keyword_score"), chunk_id=row.get("chunk_id"))
        sources.append(Source(row["number"], hit, row["text"]))
    question = analyse_question(result["question"])
    evidence = Evidence(**{**result["evidence"], "missing_specifics": tuple(result["evidence"]["missing_specifics"])}) \
        if result.get("evidence") else None
    retrieval = Retrieval(question=question, hits=tuple(s.hit for s in sources), timings=RetrievalTimings(0, 0, 0),
                          evidence=evidence, scope=Scope(documents=tuple(result.get("scope", ())),
                                                         periods=tuple(result.get("scope_periods", ()))),
                          context=tuple(s.hit for s in sources))
    lines = document_lines(result)
    if lines is not None:  # one line per document (app.answering): each line checked alone, as the pipeline does
        from app.answering import checked_lines

        answer = checked_lines(question, lines, sources, lambda text, shown: checks.checked_answer(retrieval, text, shown),
                               listing=listing(result))
    else:
        answer = checks.checked_answer(retrieval, result["draft"], sources)
    return {**result, "answer": answer.text, "abstained": answer.abstained, "supported": answer.supported,
            "withdrawn_draft": answer.withdrawn_draft,
            "withdrawn": [{"text": s.text, "because": s.withdrawn_because} for s in answer.withdrawn],
            "sentences": [{"text": s.text, "supported": s.supported, "checked": s.checked, "score": s.score,
                           "citations": list(s.citations)} for s in answer.sentences]}


_LINE = re.compile(r"^- (.+?): (.*)$")
# How a stored answer says it kept only the documents that state it (app.answering's LOOKED_AT, NONE_OF_THEM).
_LISTED = re.compile(r"documents looked at state it|documents looked at states it|None of the \d+ documents looked at|"
                     r"在查看的 \d+ 份文档中|查看的 \d+ 份文档都没有提到")


def document_lines(result: dict) -> list[tuple[str, str]] | None:
    """The (label, sentence) lines of a one-line-per-document answer, or None for an ordinary answer.

    Runs since ``per_document`` was stored say so; before, a draft of one "- label: sentence" line per shown
    source is one."""
    draft_lines = [line for line in result["draft"].split("\n") if line.strip()]
    if result.get("per_document") is False or len(draft_lines) < 2 or len(draft_lines) != len(result["shown"]):
        return None
    matches = [_LINE.match(line) for line in draft_lines]
    if not all(matches):
        return None
    return [(match.group(1), match.group(2)) for match in matches]


def listing(result: dict) -> bool:
    """Whether the answer keeps only the documents that state it (``Scope.lists``), as stored or as its text says."""
    if "listing" in result:
        return bool(result["listing"])
    return bool(_LISTED.search(result.get("answer", "")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", nargs="+", required=True, help="--out files of benchmarks/doc_questions.py")
    parser.add_argument("--questions", nargs="+", required=True)
    parser.add_argument("--half", choices=("tune", "report"), help="only the questions of this half (doc_questions.py)")
    parser.add_argument("--out")
    parser.add_argument("--show-changes", action="store_true", help="print each question whose verdict changed")
    args = parser.parse_args()
    from app.checks import AnswerChecks
    from app.settings import load_settings

    checks = AnswerChecks(load_settings())
    questions = {q["id"]: q for q in read_questions(args.questions, args.half)}
    stored = [r for path in args.answers for r in json.loads(Path(path).read_text(encoding="utf-8"))["results"]
              if r["id"] in questions]
    replayed = [replay(r, checks) for r in stored]
    before = [score(questions[r["id"]], r) for r in stored]
    after = [score(questions[r["id"]], r) for r in replayed]
    if args.show_changes:
        for old, new, result in zip(before, after, replayed):
            if right(old) != right(new) or old.get("false_refusal") != new.get("false_refusal"):
                print(f"{new['id']}: right {right(old)} -> {right(new)}; answer: {result['answer'][:300]!r}",
                      file=sys.stderr)
                for item in result.get("withdrawn", []):
                    print(f"    withdrawn ({item['because']}): {item['text'][:200]!r}", file=sys.stderr)
    print(json.dumps({"stored": summarise(before, stored), "replayed": summarise(after, replayed)},
                     indent=2, ensure_ascii=False))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summarise(after, replayed), "scored": after,
                                              "results": replayed}, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
