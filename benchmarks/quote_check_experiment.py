"""Can the local model point at the sentence that answers? An abstention experiment on ``kb eval-qa`` output.

For every question of a ``kb eval-qa --json`` file (both conditions: answer
passages indexed, distractors only), the default model is shown the same 5
passages its answer came from and asked to copy, word for word, the one
sentence that answers the question, or to write NONE. The answer is then
refused when:

- ``none``: the model wrote NONE;
- ``not copied``: the "copied" sentence is not in the passages (under half of
  its content keywords in any one passage sentence);
- ``disagrees``: under half of the quote's content keywords are in the answer
  the pipeline generated (the model's two readings of the passages differ).

(The model mostly copies the answer span, "Simona Halep", rather than the
sentence; the checks are written for either.)

Reported: rejection on distractors-only questions and the accuracy cost on
answerable ones, per set and overall, for each rule and their unions, with the
seconds each check took. ``--summarise`` recomputes the report from a stored ``--out`` file.
It is one more generation per answer, so even a good result costs time to first
*checked* answer; that is why this is an experiment and not product code.

Example::

    .venv/bin/python benchmarks/quote_check_experiment.py qa5-answers-rgb.json qa5-answers-domainrag.json \\
        --out quote-check.jsonl
    .venv/bin/python benchmarks/quote_check_experiment.py --summarise quote-check.jsonl
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.pipeline import Pipeline  # noqa: E402
from app.settings import load_settings  # noqa: E402
from llm.generator import ChatMessage  # noqa: E402
from llm.prompt import question_language  # noqa: E402
from retrieval.keywords import content_keywords  # noqa: E402

SYSTEM = {
    "en": "You find the sentence in the passages that answers a question. Copy it word for word. "
          "If no passage answers the question, write NONE.",
    "zh": "你在段落中找出回答问题的那一句话，并逐字照抄。如果没有段落回答这个问题，就写 NONE。",
}
USER = {
    "en": "{passages}\n\nQuestion: {question}\nCopy the one sentence that answers it, or write NONE.",
    "zh": "{passages}\n\n问题：{question}\n照抄回答该问题的那一句话；如果没有，写 NONE。",
}
_SENTENCE_END = re.compile(r"(?<=[.!?;。！？；\n])\s*")


def without_marker(quote: str) -> str:
    """The quote without a leading "[2] " (the model sometimes names the passage first)."""
    return re.sub(r"^\[\d+\]\s*", "", quote)


def copied_from(quote: str, passages: list[str]) -> bool:
    """At least half of the quote's content keywords are in one sentence of one passage."""
    terms = set(content_keywords(quote))
    if not terms:
        return False
    for passage in passages:
        for sentence in _SENTENCE_END.split(passage):
            if len(terms & set(content_keywords(sentence))) * 2 >= len(terms):
                return True
    return False


def disagrees(quote: str, answer: str) -> bool:
    """Under half of the quote's content keywords are in the answer (Chinese ones as substrings)."""
    terms = set(content_keywords(quote))
    lowered = answer.lower()
    return not terms or sum(term in lowered for term in terms) * 2 < len(terms)


RULES = {
    "none": lambda r: r["none"],
    "not copied": lambda r: r["not_copied"],
    "disagrees": lambda r: r["disagrees"],
    "none or not copied": lambda r: r["none"] or r["not_copied"],
    "none or disagrees": lambda r: r["none"] or r["disagrees"],
    "any": lambda r: r["none"] or r["not_copied"] or r["disagrees"],
}


def summarise(records: list[dict]) -> None:
    for record in records:  # files written before the "disagrees" check existed
        record.setdefault("disagrees", disagrees(without_marker(record["quote"]), record["answer"]))
    print(f"# {platform.node()} {os.cpu_count()} cpus; {len(records)} answers; "
          f"check p50 {statistics.median(r['seconds'] for r in records):.1f} s")
    for set_name in sorted({r["set_name"] for r in records}) + ["all"]:
        chosen = [r for r in records if set_name in ("all", r["set_name"])]
        answerable = [r for r in chosen if r["condition"] == "answerable"]
        unanswerable = [r for r in chosen if r["condition"] == "unanswerable"]
        for name, refuses in RULES.items():
            lost = sum(r["correct"] and refuses(r) for r in answerable)
            print(json.dumps({"set": set_name, "refuse when": name,
                              "rejection": f"{sum(map(refuses, unanswerable))}/{len(unanswerable)}",
                              "correct answers lost": f"{lost}/{len(answerable)}",
                              "accuracy_cost_points": round(100 * lost / len(answerable), 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outcomes", type=Path, nargs="*")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--summarise", type=Path, help="report from a stored --out file instead of generating")
    args = parser.parse_args()
    if args.summarise:
        summarise([json.loads(line) for line in args.summarise.read_text(encoding="utf-8").splitlines() if line])
        return
    generator = Pipeline.from_settings(load_settings()).generator
    records = []
    with args.out.open("w", encoding="utf-8") as out:
        for path in args.outcomes:
            for outcome in json.loads(path.read_text(encoding="utf-8"))["outcomes"]:
                if outcome["answer"] is None or outcome["abstained"]:
                    continue
                language = question_language(outcome["question"])
                numbered = "\n".join(f"[{n}] {text}" for n, text in enumerate(outcome["passages"], start=1))
                messages = [ChatMessage("system", SYSTEM[language]),
                            ChatMessage("user", USER[language].format(passages=numbered, question=outcome["question"]))]
                started = time.perf_counter()
                quote = "".join(generator.stream_chat(messages, 80, 0.0)).strip()
                seconds = time.perf_counter() - started
                bare = without_marker(quote)
                record = {
                    "set_name": outcome["set_name"], "item_id": outcome["item_id"], "condition": outcome["condition"],
                    "correct": bool(outcome["correct"]), "answer": outcome["answer"], "quote": quote, "seconds": seconds,
                    "none": "NONE" in quote.upper() and len(bare) < 40,
                    "not_copied": not copied_from(bare, outcome["passages"]),
                    "disagrees": disagrees(bare, outcome["answer"]),
                }
                records.append(record)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
    summarise(records)


if __name__ == "__main__":
    main()
