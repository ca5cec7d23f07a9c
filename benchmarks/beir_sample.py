"""A smaller BEIR set for runs that cannot afford embedding a whole corpus: every judged document of the kept
queries, plus a fixed random sample of the other documents as distractors (seeded, so that two runs, e.g. two
store backends, see exactly the same corpus and questions).

- ``--queries N``: keep N queries (fixed seed) of the qrels file; 0 keeps them all.
- ``--distractors N``: add N documents no kept query is judged on (fixed seed).

Example (docs/benchmarks.md, "Milvus against local files")::

    .venv/bin/python benchmarks/beir_sample.py ../shared/data/retrieval/scifact /tmp/scifact-s --distractors 1000
    .venv/bin/python benchmarks/beir_sample.py ../shared/data/retrieval/cmrc2018 /tmp/cmrc-s --queries 500 --distractors 0
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--qrels", default="test")
    parser.add_argument("--queries", type=int, default=0)
    parser.add_argument("--distractors", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    qrels_lines = (args.source / "qrels" / f"{args.qrels}.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = qrels_lines[0], [line.split("\t") for line in qrels_lines[1:] if line.strip()]
    query_ids = sorted({row[0] for row in rows})
    if args.queries:
        query_ids = sorted(rng.sample(query_ids, min(args.queries, len(query_ids))))
    kept_queries = set(query_ids)
    rows = [row for row in rows if row[0] in kept_queries]
    judged = {row[1] for row in rows}

    corpus = [json.loads(line) for line in (args.source / "corpus.jsonl").open(encoding="utf-8") if line.strip()]
    others = sorted(str(doc["_id"]) for doc in corpus if str(doc["_id"]) not in judged)
    kept_docs = judged | set(rng.sample(others, min(args.distractors, len(others))))

    (args.target / "qrels").mkdir(parents=True, exist_ok=True)
    with (args.target / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc in corpus:
            if str(doc["_id"]) in kept_docs:
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    with (args.target / "queries.jsonl").open("w", encoding="utf-8") as out:
        for line in (args.source / "queries.jsonl").open(encoding="utf-8"):
            if line.strip() and str(json.loads(line)["_id"]) in kept_queries:
                out.write(line if line.endswith("\n") else line + "\n")
    (args.target / "qrels" / f"{args.qrels}.tsv").write_text(
        "\n".join([header, *("\t".join(row) for row in rows)]) + "\n", encoding="utf-8")
    print(f"{args.target}: {len(kept_docs)} documents ({len(judged)} judged), {len(kept_queries)} queries")


if __name__ == "__main__":
    main()
