"""Calibrate the abstention thresholds from a ``kb eval-qa --json`` run (answers included).

Every question was answered twice with abstention off (``evaluation.answers``):
once with its answer passages indexed (*answerable*), once with distractors only
(*unanswerable*). For each candidate rule this script recomputes, from the
stored passages and answers, what the pipeline would have done:

- ``coverage >= c``: the passages hold the question's keyword weight (before generating);
- ``answer_support.score >= s``: the answer's own words stand next to the
  question's words in a passage (after generating; ``retrieval.evidence``);
- both.

Questions are split in two by item id parity: thresholds are chosen on the
``tune`` half (highest rejection whose accuracy cost, with vs without
abstention, is at most ``--max-cost`` points) and reported on the ``report``
half, per set and overall.

Example::

    .venv/bin/python benchmarks/calibrate_abstention.py qa-answers-rgb.json qa-answers-domainrag.json --max-cost 0.05
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from llm.answer_support import answer_support  # noqa: E402
from retrieval.question import analyse_question  # noqa: E402


def half_of(item_id: str) -> str:
    return "tune" if int(item_id) % 2 == 0 else "report"


def rates(rows: list[dict], coverage_min: float, support_min: float) -> tuple[float, float, float]:
    """(accuracy without abstention, accuracy with, rejection) over rows."""
    def refuses(row: dict) -> bool:
        return row["evidence"]["coverage"] < coverage_min or row["support"] < support_min

    answerable = [r for r in rows if r["condition"] == "answerable"]
    unanswerable = [r for r in rows if r["condition"] == "unanswerable"]
    without = statistics.fmean(r["correct"] for r in answerable)
    with_ = statistics.fmean(r["correct"] and not refuses(r) for r in answerable)
    rejection = statistics.fmean(refuses(r) for r in unanswerable)
    return without, with_, rejection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outcomes", type=Path, nargs="+", help="kb eval-qa --json files")
    parser.add_argument("--max-cost", type=float, default=0.05)
    parser.add_argument("--recompute-coverage", type=Path, metavar="KB_HOME",
                        help="re-run retrieval on the eval-qa collections in KB_HOME and take coverage from the "
                             "current keyword tokenizer (answers stay as generated)")
    args = parser.parse_args()
    rows = [r for path in args.outcomes for r in json.loads(path.read_text())["outcomes"] if r["answer"] is not None]
    if args.recompute_coverage:
        from app.pipeline import Pipeline
        from app.settings import load_settings

        base = Pipeline.from_settings(load_settings(home=args.recompute_coverage))
        pipelines = {}
        for row in rows:
            name = f"qa-{row['set_name']}-{'all' if row['condition'] == 'answerable' else 'negatives'}"
            pipeline = pipelines.setdefault(name, base.with_settings(collection=name))
            row["evidence"]["coverage"] = pipeline.retrieve(row["question"]).evidence.coverage
    for row in rows:
        row["support"] = answer_support(analyse_question(row["question"]), row["answer"], row["passages"]).score
    tune = [r for r in rows if half_of(r["item_id"]) == "tune"]
    grid = [(c / 20, s / 20) for c in range(0, 21) for s in range(0, 21)]
    best = None
    for coverage_min, support_min in grid:
        without, with_, rejection = rates(tune, coverage_min, support_min)
        if without - with_ <= args.max_cost and (best is None or rejection > best[0]):
            best = (rejection, coverage_min, support_min)
    assert best is not None
    _, coverage_min, support_min = best
    print(f"chosen on the tune half: coverage >= {coverage_min}, answer support >= {support_min}")
    for name in sorted({r["set_name"] for r in rows}) + ["all"]:
        for half in ("tune", "report"):
            subset = [r for r in rows if half_of(r["item_id"]) == half and name in (r["set_name"], "all")]
            if subset:
                without, with_, rejection = rates(subset, coverage_min, support_min)
                print(json.dumps({"set": name, "half": half, "questions": len(subset) // 2,
                                  "accuracy_without": round(without, 3), "accuracy_with": round(with_, 3),
                                  "cost_points": round(100 * (without - with_), 1), "rejection": round(rejection, 3)}))
    table(rows, coverage_min, support_min)
    print("\ntrade-off of the answer check alone (all questions, coverage threshold as chosen):")
    for support_min in (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8):
        without, with_, rejection = rates(rows, coverage_min, support_min)
        print(f"  answer support >= {support_min}: cost {100 * (without - with_):.1f} points, rejection {rejection:.3f}")


def table(rows: list[dict], coverage_min: float, support_min: float) -> None:
    """Per set, all questions, with the chosen thresholds: the figures docs/benchmarks.md reports."""
    print("| set | questions | accuracy, abstention off | accuracy, abstention on | cost (points) | rejection "
          "| supported sentences | answer in question's language | answer in the 5 passages | first token p50 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in sorted({r["set_name"] for r in rows}) + ["all"]:
        subset = [r for r in rows if name in (r["set_name"], "all")]
        without, with_, rejection = rates(subset, coverage_min, support_min)
        kept = [r for r in subset if not (r["evidence"]["coverage"] < coverage_min or r["support"] < support_min)]
        supported = sum(r["supported_sentences"] or 0 for r in kept) / max(1, sum(r["sentences"] or 0 for r in kept))
        language = statistics.fmean(bool(r["language_ok"]) for r in kept) if kept else float("nan")
        recall = statistics.fmean(r["answer_in_passages"] for r in subset if r["condition"] == "answerable")
        first = statistics.median(r["first_token_ms"] for r in subset if r["first_token_ms"]) / 1e3
        print(f"| {name} | {len(subset) // 2} | {without:.3f} | {with_:.3f} | {100 * (without - with_):.1f} | "
              f"{rejection:.3f} | {supported:.3f} | {language:.3f} | {recall:.3f} | {first:.1f} s |")


if __name__ == "__main__":
    main()
