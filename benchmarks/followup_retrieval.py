"""Do follow-up questions retrieve as if they were asked in full? Measured on CMRC2018.

Follow-ups are made from real CMRC2018 questions: for a paragraph whose title
(say 战国无双3) appears in one of its questions, that question with the title
replaced by 它 ("it") is the follow-up, and another question about the same
paragraph is the turn before it. Each question is run through the real
``Pipeline.retrieve`` on an existing collection that holds the CMRC2018 corpus
(``kb eval`` builds one), in four ways:

- ``full``: the original question (what the user meant);
- ``follow-up alone``: the rewritten question without history (no conversation memory);
- ``follow-up + history``: ``retrieval.followup.retrieval_query`` with the turn before;
- ``topic switch``: the original question after a turn about another paragraph,
  to check that history does not pull a standalone question off course.

Reported: Recall@1 and Recall@5 of the question's paragraph, and how often
``is_follow_up`` fired on the follow-ups and on the original (standalone) questions.

Not measured: English follow-ups (no English set here has questions whose
subject can be replaced mechanically; the test suite checks an English case),
references further back than one turn, the answer text.

Example::

    KB_HOME=/work/evalkb .venv/bin/python benchmarks/followup_retrieval.py \\
        ../shared/data/retrieval/cmrc2018 --collection eval-cmrc2018-scifact --max 300
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from evaluation.ranking import ranked_documents  # noqa: E402
from app.pipeline import Pipeline  # noqa: E402
from app.settings import load_settings  # noqa: E402
from evaluation.beir import read_beir  # noqa: E402
from core.types import Turn  # noqa: E402
from retrieval.followup import is_follow_up, retrieval_query  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cmrc", type=Path)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--max", type=int, default=300)
    args = parser.parse_args()
    beir = read_beir(args.cmrc)
    titles = {d.source: d.pages[0].heading_path[0] for d in beir.documents if d.pages and d.pages[0].heading_path}
    by_doc: dict[str, list] = {}
    for query in beir.queries:
        by_doc.setdefault(next(iter(query.relevant)), []).append(query)
    cases = []
    for source, queries in sorted(by_doc.items()):
        title = titles.get(source, "")
        if len(title) < 2:
            continue
        with_title = [q for q in queries if title in q.text]
        others = [q for q in queries if title not in q.text]
        if with_title and others:
            cases.append((source, others[0].text, with_title[0].text, with_title[0].text.replace(title, "它")))
    random.Random(5).shuffle(cases)
    cases = cases[: args.max]
    pipeline = Pipeline.from_settings(load_settings(collection=args.collection))
    pipeline.retrieve("warm up")
    counts = {name: [0, 0] for name in ("full", "follow-up alone", "follow-up + history", "topic switch")}
    fired = fired_standalone = 0
    for index, (source, before, full, follow_up) in enumerate(cases):
        unrelated = cases[(index + 1) % len(cases)][1]
        queries = {
            "full": full,
            "follow-up alone": follow_up,
            "follow-up + history": retrieval_query(follow_up, [Turn(before, "")]),
            "topic switch": retrieval_query(full, [Turn(unrelated, "")]),
        }
        fired += is_follow_up(follow_up)
        fired_standalone += is_follow_up(full)  # a standalone question taken for a follow-up
        for name, text in queries.items():
            ranking = ranked_documents(pipeline.retrieve(text).hits)
            counts[name][0] += ranking[:1] == [source]
            counts[name][1] += source in ranking[:5]
    result = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "collection": args.collection, "cases": len(cases), "is_follow_up_fired": fired,
        "fired_on_standalone": fired_standalone,
        "recall": {name: {"R@1": round(c[0] / len(cases), 3), "R@5": round(c[1] / len(cases), 3)} for name, c in counts.items()},
    }
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
