"""Is the model's own probability of its answer a usable abstention signal? An experiment on ``kb eval-qa`` output.

For every answer in a ``kb eval-qa --json`` file, the exact prompt is rebuilt
(same collection, same retrieval, same ``llm.prompt.PromptBuilder``), the
prompt followed by the stored answer is evaluated once with logits for every
position, and the log-probability of each answer token is read. Only tokens
the answer adds to the question count (not markers, punctuation or words
copied from the question): when the passages state the answer, the model
copies it and should be sure; when they do not, it has to choose. Reported:
the median of each feature for correct answers and for distractors-only
answers, and the best rejection of distractors-only questions at a given cost
in accuracy (thresholds chosen on the same questions, so optimistic).

This is an experiment, not product code: it loads the model with
``logits_all`` (about 1.2 GB of logits at a 2,048-token context), which the
app does not.

Example::

    KB_HOME=/work/evalkb .venv/bin/python benchmarks/confidence_experiment.py qa4-answers-rgb.json --out conf.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.pipeline import Pipeline  # noqa: E402
from app.settings import load_settings  # noqa: E402
from llm.prompt import PromptBuilder  # noqa: E402

_CONTENT = re.compile(r"[\w\u4e00-\u9fff]")
_MARKER_PIECE = re.compile(r"\[?\d+\]?|\[")


def new_token_logprobs(question: str, pieces: list[str], logprobs: list[float]) -> list[float]:
    """Log-probabilities of the answer tokens that carry content the question does not."""
    lowered = question.lower()
    kept = []
    for piece, logprob in zip(pieces, logprobs):
        text = piece.strip().lower()
        if text and _CONTENT.search(text) and not _MARKER_PIECE.fullmatch(text) and text not in lowered:
            kept.append(logprob)
    return kept or [0.0]


def main() -> None:
    from benchmarks.raw_model import open_raw_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outcomes", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = load_settings()
    model = open_raw_model(settings, logits_all=True)
    llm = model.llm
    pipelines: dict[str, Pipeline] = {}
    rows = []
    for row in json.loads(args.outcomes.read_text())["outcomes"]:
        if not row.get("answer"):
            continue
        name = f"qa-{row['set_name']}-{'all' if row['condition'] == 'answerable' else 'negatives'}"
        pipeline = pipelines.setdefault(name, Pipeline.from_settings(load_settings(collection=name)))
        closest = pipeline.retrieve(row["question"]).hits[: settings.context_chunks]
        builder = PromptBuilder(lambda text: len(llm.tokenize(text.encode(), add_bos=False)), 4096,
                                settings.max_answer_tokens, source_tokens=settings.source_tokens or None,
                                whole_sources=settings.whole_sources)
        prompt = builder.build(row["question"], closest, ())
        prompt_tokens = model.prompt_tokens([{"role": m.role, "content": m.content} for m in prompt.messages])
        answer_tokens = llm.tokenize(row["answer"].encode(), add_bos=False, special=False)
        if len(prompt_tokens) + len(answer_tokens) > 2040:
            continue
        started = time.perf_counter()
        llm.reset()
        llm.eval(prompt_tokens + answer_tokens)
        scores = np.array(llm.scores[len(prompt_tokens) - 1: len(prompt_tokens) + len(answer_tokens) - 1])
        normaliser = np.logaddexp.reduce(scores, axis=1)
        logprobs = [float(scores[i, token] - normaliser[i]) for i, token in enumerate(answer_tokens)]
        pieces = [llm.detokenize([token]).decode("utf-8", "replace") for token in answer_tokens]
        kept = new_token_logprobs(row["question"], pieces, logprobs)
        rows.append({key: row[key] for key in ("set_name", "item_id", "condition", "question", "answer", "correct")}
                    | {"min": min(kept), "mean": statistics.fmean(kept), "first": kept[0],
                       "mean_first3": statistics.fmean(kept[:3]), "seconds": time.perf_counter() - started})
    answerable = [r for r in rows if r["condition"] == "answerable"]
    unanswerable = [r for r in rows if r["condition"] == "unanswerable"]
    base = statistics.fmean(r["correct"] for r in answerable)
    print(f"{len(answerable)} answerable, {len(unanswerable)} distractors-only answers; accuracy {base:.3f}; "
          f"{statistics.median(r['seconds'] for r in rows):.1f} s per answer")
    for feature in ("min", "mean", "first", "mean_first3"):
        medians = (statistics.median(r[feature] for r in answerable if r["correct"]),
                   statistics.median(r[feature] for r in unanswerable))
        frontier = []
        for threshold in np.linspace(-12, 0, 121):
            accuracy = statistics.fmean(r["correct"] and r[feature] >= threshold for r in answerable)
            rejection = statistics.fmean(r[feature] < threshold for r in unanswerable)
            frontier.append((100 * (base - accuracy), rejection, float(threshold)))
        best = {cost: max((p for p in frontier if p[0] <= cost + 1e-9), key=lambda p: p[1]) for cost in (5, 10, 20)}
        print(json.dumps({"feature": feature, "median_correct": round(medians[0], 2),
                          "median_distractors_only": round(medians[1], 2),
                          **{f"rejection_at_cost<={c}": round(b[1], 3) for c, b in best.items()}}))
    if args.out:
        args.out.write_text(json.dumps(rows, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
