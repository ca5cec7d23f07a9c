"""Passage trimming: how much prompt it saves and whether the answer stays in it (CMRC2018).

For CMRC2018 questions (the ``report`` half of ``evaluation.ranking.select_queries``,
so nothing here was tuned on them), the real ``Pipeline.retrieve`` picks the
top ``context_chunks`` passages from an existing collection that holds the
CMRC2018 corpus (``kb eval`` builds one). The real ``llm.prompt.PromptBuilder``
then builds the prompt whole and with each trimming setting, counted with the
default model's tokenizer. Reported per setting:

- prompt tokens (median, mean): what prompt processing, and so the time to
  first token, scales with;
- answer kept: the share of questions whose gold answer span (any of
  ``answers.jsonl``) appears in the sources the model sees, among questions
  where it appears in the untrimmed sources.

``--generate N`` also asks the default model the first N questions with the
settings in ``GENERATED`` (abstention off, so every question is answered) and reports accuracy
(gold span contained in the answer) and the median time to first token. Run it
on an otherwise idle machine: generation on 2 cores collapses when shared.

Not measured here: English (no English set with answer spans and long
passages is on hand; RGB's passages are snippets shorter than any budget).

Example::

    KB_HOME=/work/evalkb .venv/bin/python benchmarks/trim_passages.py \\
        ../shared/data/retrieval/cmrc2018 --collection eval-cmrc2018-scifact --max 300 --generate 30
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from evaluation.ranking import select_queries  # noqa: E402
from app.pipeline import Pipeline  # noqa: E402
from app.settings import load_settings  # noqa: E402
from evaluation.beir import read_beir  # noqa: E402
from llm.prompt import PromptBuilder  # noqa: E402
from retrieval.question import analyse_question  # noqa: E402

SETTINGS = [  # (name, source_tokens, whole_sources)
    ("whole", None, 1),
    ("trim 192, first whole", 192, 1),
    ("trim 128, first whole", 128, 1),
    ("trim 96, first whole", 96, 1),
    ("trim 128, top 2 whole", 128, 2),
    ("trim 128, none whole", 128, 0),
]

GENERATED = ("whole", "trim 128, first whole")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cmrc", type=Path)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--max", type=int, default=300)
    parser.add_argument("--generate", type=int, default=0, help="also generate answers for this many questions")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    answers = {}
    for line in (args.cmrc / "answers.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        answers[row["_id"]] = [a for a in row["answers"] if a.strip()]
    queries = select_queries(read_beir(args.cmrc), half="report", sample=args.max)
    pipeline = Pipeline.from_settings(load_settings(collection=args.collection, abstain=False))
    generator = pipeline.generator
    settings = pipeline.settings
    builders = {name: PromptBuilder(generator.count_tokens, generator.info.context_window, settings.max_answer_tokens,
                                    source_tokens=tokens, whole_sources=whole)
                for name, tokens, whole in SETTINGS}
    print(f"# {platform.node()} {os.cpu_count()} cpus; {len(queries)} CMRC2018 report-half questions; "
          f"top {settings.context_chunks} passages; model {Path(generator.info.model).name}", flush=True)
    prompts = {name: [] for name in builders}
    retrievals = []
    for query in queries:
        retrieval = pipeline.retrieve(query.text)
        hits = retrieval.hits[: settings.context_chunks]
        retrievals.append((query, hits))
        for name, builder in builders.items():
            prompts[name].append(builder.build(analyse_question(query.text), hits))

    def has_answer(prompt, query) -> bool:
        return any(a in source.text for source in prompt.sources for a in answers[query.query_id])

    reachable = [i for i, (query, _) in enumerate(retrievals) if has_answer(prompts["whole"][i], query)]
    rows = []
    for name in builders:
        tokens = [p.prompt_tokens for p in prompts[name]]
        kept = sum(has_answer(prompts[name][i], retrievals[i][0]) for i in reachable)
        row = {"setting": name, "prompt_tokens_median": statistics.median(tokens),
               "prompt_tokens_mean": round(statistics.fmean(tokens), 1),
               "answer_kept": round(kept / len(reachable), 3) if reachable else None,
               "answer_in_whole_sources": len(reachable)}
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)

    if args.generate:
        chosen = list(range(min(args.generate, len(retrievals))))
        for row in rows:
            if row["setting"] not in GENERATED:
                continue
            asking = pipeline.with_settings(**_overrides(row["setting"]))
            correct, first_token = [], []
            for i in chosen:
                query, _ = retrievals[i]
                stream = asking.ask_stream(query.text)
                text = "".join(stream)
                correct.append(any(a in text for a in answers[query.query_id]))
                first_token.append(stream.timings.first_token_ms)
            row.update(generated=len(chosen), accuracy=round(statistics.fmean(correct), 3),
                       first_token_ms_median=round(statistics.median(first_token)))
            print(json.dumps(row, ensure_ascii=False), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=1))


def _overrides(setting: str) -> dict:
    name, tokens, whole = next(s for s in SETTINGS if s[0] == setting)
    return {"source_tokens": tokens or 0, "whole_sources": whole}


if __name__ == "__main__":
    main()
