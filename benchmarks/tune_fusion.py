"""Choose the first stage's fusion settings on tuning queries only (never the reported test queries).

Tuning queries: SciFact's train qrels (809 queries, English) and the ``tune``
half of CMRC2018 (split by paragraph, ``evaluation.ranking.select_queries``;
reported numbers use the ``report`` half). Both run against one bilingual
collection that ``kb eval`` built, so the weights are tuned in the setting they
are used in.

Grid: ``keyword_scale`` absolute / minmax x dense weight 0.0 ... 1.0, plus RRF;
per language, because the two languages' queries are scored apart (English
queries -> ``dense_weight_en``, Chinese -> ``dense_weight_zh``). Query vectors
are computed once; each grid point runs the real ``retrieval.fusion.FirstStage``
over the real collection.

``--second``: grid over the main and second embedder's weights together
(English queries only: the second embedder, all-MiniLM-L6-v2, cannot read
Chinese); needs a collection whose chunks all have second vectors (any
``kb eval`` run with the default settings computes them).

Example::

    KB_HOME=/work/evalkb .venv/bin/python benchmarks/tune_fusion.py \\
        --scifact ../shared/data/retrieval/scifact --cmrc ../shared/data/retrieval/cmrc2018 \\
        --collection eval-cmrc2018-scifact --cmrc-sample 600
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

from evaluation.ranking import ndcg_at_10, ranked_documents, recall_at, select_queries  # noqa: E402
from app.pipeline import Pipeline  # noqa: E402
from app.settings import load_settings  # noqa: E402
from evaluation.beir import read_beir  # noqa: E402
from retrieval.fusion import FirstStage  # noqa: E402
from retrieval.question import analyse_question  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scifact", type=Path, required=True)
    parser.add_argument("--cmrc", type=Path, required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--cmrc-sample", type=int, default=600)
    parser.add_argument("--k", type=int, default=40)
    parser.add_argument("--feedback", action="store_true", help="grid over pseudo-relevance feedback weights instead")
    parser.add_argument("--second", action="store_true", help="grid over the main and second embedders' weights instead")
    args = parser.parse_args()

    pipeline = Pipeline.from_settings(load_settings(collection=args.collection))
    collection = pipeline.collection()
    sets = {
        "scifact-train": select_queries(read_beir(args.scifact, qrels_split="train")),
        "cmrc-tune": select_queries(read_beir(args.cmrc), half="tune", sample=args.cmrc_sample),
    }
    if args.second:
        if not (pipeline.second_embedder and collection.has_second_vectors):
            parser.error("--second needs a second embedder and a collection with its vectors (run kb eval first)")
        sets.pop("cmrc-tune")
    vectors = {name: [pipeline.embedder.embed_query(q.text) for q in queries] for name, queries in sets.items()}
    second_vectors = {
        name: [pipeline.second_embedder.embed_query(q.text) if args.second else None for q in queries]
        for name, queries in sets.items()
    }
    print(f"# {platform.node()} {os.cpu_count()} cpus; {collection.chunk_count} chunks; "
          f"queries: {', '.join(f'{n} {len(q)}' for n, q in sets.items())}", flush=True)

    grid = [("rrf", None, FirstStage(method="rrf"))]
    if args.feedback:
        grid = []
        for beta in (0.0, 0.25, 0.5, 1.0):
            for weight in (0.2, 0.3, 0.4):
                grid.append((f"absolute+feedback{beta}", weight,
                             FirstStage(dense_weight_en=weight, dense_weight_zh=weight, feedback_weight=beta)))
    if args.second:
        grid = []
        for dense_tenths in range(0, 9):
            for second_tenths in range(0, 9 - dense_tenths):
                weight, second = dense_tenths / 20, second_tenths / 20
                grid.append((f"second {second}", weight, FirstStage(dense_weight_en=weight, second_weight_en=second)))
    for scale in (() if args.feedback or args.second else ("absolute", "minmax")):
        for tenth in range(0, 11):
            weight = tenth / 10
            grid.append((scale, weight, FirstStage(dense_weight_en=weight, dense_weight_zh=weight, keyword_scale=scale)))
    questions = {name: [analyse_question(query.text) for query in queries] for name, queries in sets.items()}
    rows = []
    for scale, weight, stage in grid:
        row = {"scale": scale, "dense_weight": weight}
        for name, queries in sets.items():
            ndcg, recall = [], []
            for query, question, vector, second_vector in zip(queries, questions[name], vectors[name], second_vectors[name]):
                ranking = ranked_documents(stage.search(collection, question, vector, args.k, second_vector=second_vector))
                ndcg.append(ndcg_at_10(ranking, query.relevant))
                recall.append(recall_at(ranking, query.relevant, 20))
            row[name] = {"nDCG@10": round(statistics.fmean(ndcg), 4), "R@20": round(statistics.fmean(recall), 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    for name in sets:
        best = max(rows, key=lambda r: r[name]["nDCG@10"])
        print(f"best for {name}: scale {best['scale']}, dense weight {best['dense_weight']}: {best[name]}")


if __name__ == "__main__":
    main()
