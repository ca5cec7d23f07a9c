"""Can the local model itself verify an answer against a passage? An experiment on ``kb eval-qa`` output.

For every answer in a ``kb eval-qa --json`` file, the default model is shown
the passage that best supports the answer (``llm.grounding.answer_support``'s
window, else the first passage), the question and the proposed answer, and asked
"Does the passage say that this is the answer to the question? yes/no". The
probability of "yes" against "no" is read from the next-token logits (one
prompt evaluation, no generation). Reported: the rejection / accuracy trade-off
of thresholds on that probability, alone and combined with the lexical check.

This is an experiment, not product code: it reaches into llama-cpp-python's
low-level API (``llm.generator`` wraps the supported one).

Example::

    .venv/bin/python benchmarks/verifier_experiment.py /work/evalkb/qa-answers-rgb.json --out verifier.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.settings import load_settings  # noqa: E402
from llm.grounding import answer_support  # noqa: E402

SYSTEM = "You check answers against a passage. Reply with yes or no only."
USER = {
    "en": "Passage: {passage}\nQuestion: {question}\nProposed answer: {answer}\n"
          "Does the passage say that this is the answer to the question? Reply yes or no.",
    "zh": "段落：{passage}\n问题：{question}\n答案：{answer}\n这个段落是否说明了该答案就是这个问题的答案？只回答 yes 或 no。",
}


def main() -> None:
    import llama_cpp

    from benchmarks.raw_model import open_raw_model
    from llm.prompt import question_language

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outcomes", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = load_settings()
    model = open_raw_model(settings)
    llm = model.llm
    yes = [llm.tokenize(w.encode(), add_bos=False)[0] for w in ("yes", "Yes")]
    no = [llm.tokenize(w.encode(), add_bos=False)[0] for w in ("no", "No")]
    rows = [r for r in json.loads(args.outcomes.read_text())["outcomes"] if r["answer"]]
    seconds = []
    for row in rows:
        support = answer_support(row["question"], row["answer"], row["passages"])
        best = max(row["passages"], key=lambda p: answer_support(row["question"], row["answer"], [p]).score)
        language = question_language(row["question"])
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": USER[language].format(passage=best[:1200], question=row["question"],
                                                                       answer=row["answer"][:300])}]
        tokens = model.prompt_tokens(messages)
        started = time.perf_counter()
        llm.reset()
        llm.eval(tokens)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        seconds.append(time.perf_counter() - started)
        log_yes = np.logaddexp.reduce(logits[yes])
        log_no = np.logaddexp.reduce(logits[no])
        row["p_yes"] = float(1 / (1 + np.exp(log_no - log_yes)))
        row["support"] = support.score
    answerable = [r for r in rows if r["condition"] == "answerable"]
    unanswerable = [r for r in rows if r["condition"] == "unanswerable"]
    print(f"{len(rows)} answers, verifier {statistics.median(seconds):.2f} s median per answer")
    base = statistics.fmean(r["correct"] for r in answerable)
    for threshold in (0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.98):
        for support_min in (0.0, 0.3):
            def refuses(r: dict) -> bool:
                return r["p_yes"] < threshold or r["support"] < support_min

            accuracy = statistics.fmean(r["correct"] and not refuses(r) for r in answerable)
            rejection = statistics.fmean(refuses(r) for r in unanswerable)
            print(json.dumps({"p_yes_min": threshold, "support_min": support_min, "accuracy_without": round(base, 3),
                              "accuracy_with": round(accuracy, 3), "cost_points": round(100 * (base - accuracy), 1),
                              "rejection": round(rejection, 3)}))
    if args.out:
        args.out.write_text(json.dumps(rows, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
