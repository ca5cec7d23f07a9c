"""Does the abstention rule refuse answerable questions that are worded differently from the text?

Measures ``retrieval.evidence`` (keyword coverage, best cosine of the 5
sources, the question's names and numbers missing from them) and what
``AbstentionPolicy`` decides from it, for coverage alone (``d=None``) and for
"coverage, or best cosine >= d" with no guard, with the ``neutral`` guard
(numbers, identifiers, Latin names must be in the sources) and with the
``names`` guard (also Chinese names: ``text.keywords.specific_items``,
the default).

- ``--sample``: hand-written questions on the sample documents (the collection
  ``kb ingest data`` builds), answerable ones worded as a user might and
  off-topic ones. Reports how many of each the rule refuses.
- ``--questions FILE``: a labelled JSON Lines set (``question``, ``answerable``,
  ``language``) asked of ``--collection``: ``benchmarks/data/fastapi_questions.jsonl``
  on the FastAPI tutorial pages (see benchmarks/data/README.md). Reports refusals per
  language and label; ``--answers OUT`` also answers every question with abstention
  off (only those the cosine override lets through) and stores each answer's grounding,
  for a check after generation.
- ``--beir FOLDER``: a BEIR set already in a collection (``kb eval`` builds
  one): every query is retrieved once; *answerable* = an answer document is among
  the 5 sources, *unanswerable* = the same query with the answer documents'
  chunks removed from the hits (what retrieval would give if they were not
  indexed). Reports false refusals and rejection.

Example::

    .venv/bin/python benchmarks/abstention_paraphrases.py --sample
    mkdir -p /tmp/fastapi && cp -r ../shared/data/markdown/fastapi-docs/docs/en/docs/tutorial /tmp/fastapi/en \
        && cp -r ../shared/data/markdown/fastapi-docs/docs/zh/docs/tutorial /tmp/fastapi/zh
    KB_HOME=/work/evalkb kb ingest /tmp/fastapi -c fastapi-tutorial
    KB_HOME=/work/evalkb .venv/bin/python benchmarks/abstention_paraphrases.py \
        --questions benchmarks/data/fastapi_questions.jsonl --collection fastapi-tutorial
    KB_HOME=/work/evalkb .venv/bin/python benchmarks/abstention_paraphrases.py \
        --beir ../shared/data/retrieval/scifact --beir ../shared/data/retrieval/cmrc2018 \
        --collection eval-cmrc2018-scifact --sample-queries 500

Left out: answer correctness on the FastAPI set (it has evidence sentences, not
gold answer strings); the RGB/DomainRAG runs are ``kb eval-qa``'s job.
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
from llm.answer_support import answer_support  # noqa: E402
from core.types import Evidence  # noqa: E402
from retrieval.evidence import AbstentionPolicy  # noqa: E402
from text.keywords import language_neutral_items, missing_items, specific_items  # noqa: E402
from retrieval.question import analyse_question  # noqa: E402

ANSWERABLE = [
    "How do I get GPU acceleration?", "Which text encodings are accepted for Chinese files?",
    "How long does the first run take?", "What happens to documents I delete from the folder?",
    "Does kbqa send my documents anywhere?", "How much disk space does kbqa need?",
    "Can other computers on my network open the web page?", "What should I do if a scanned PDF has no text?",
    "怎样启用 GPU 加速？", "如何更换嵌入模型？", "网页界面默认监听哪个地址？", "上传的文件保存在哪里？",
    "加密的 PDF 会怎么样？", "第一次运行需要多长时间？", "我的文件会被上传到网上吗？", "删除的文件还会留在索引里吗？",
]
OFF_TOPIC = [
    "Who won the football World Cup final in Qatar?", "What is the capital of France?",
    "How do I bake sourdough bread?", "What is the boiling point of water at sea level?",
    "Who wrote Pride and Prejudice?", "How tall is Mount Everest?", "What is the best way to learn to play the guitar?",
    "How many moons does Jupiter have?", "What GPU does the iPhone 15 use?", "How much does an NVIDIA RTX 4090 cost?",
    "谁赢得了2022年世界杯？", "如何治疗感冒？", "长城有多长？", "《红楼梦》的作者是谁？", "北京今天的天气怎么样？", "怎么做红烧肉？",
    "显卡的价格是多少？", "Python 3.12 有哪些新特性？",
]
OVERRIDES = (None, 0.90, 0.88, 0.86)


def missing_specifics(question: str, passages_text: str, names: bool = False) -> int:
    """How many of the question's numbers, identifiers and Latin names (``language_neutral_items``) no passage holds.

    ``names``: Chinese names count too (``specific_items``).
    """
    items = specific_items(question) if names else language_neutral_items(question)
    return len(missing_items(items, passages_text))


def refuses(evidence: dict, min_coverage: float, dense_override: float | None, specifics: str = "") -> bool:
    """What ``AbstentionPolicy`` decides; ``specifics``: "" no guard, "neutral" numbers, identifiers and Latin
    names only, "names" also Chinese names (the default, ``text.keywords.specific_items``)."""
    missing = evidence[f"missing_{specifics}"] if specifics else 0
    policy = AbstentionPolicy(min_coverage, reworded_min_dense=dense_override)
    return not policy.supports(Evidence(evidence["coverage"], 0.0, evidence["best_dense"], ("?",) * missing))


RULES = [(d, "") for d in OVERRIDES] + [(d, guard) for guard in ("neutral", "names") for d in OVERRIDES if d]


def rule_name(dense_override: float | None, specifics: str) -> str:
    return f"d={dense_override}" + (f"+{specifics}" if specifics else "")


def evidence_of(collection, question: str, hits) -> dict:
    top = hits[:5]
    passages_text = " ".join(h.chunk.text for h in top)
    return {"coverage": collection.keyword_coverage(analyse_question(question).keywords, [h.chunk_id for h in top]),
            "best_dense": max((h.dense_score or 0.0) for h in top) if top else 0.0,
            "missing_neutral": missing_specifics(question, passages_text),
            "missing_names": missing_specifics(question, passages_text, names=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", action="store_true", help="the hand-written questions on the sample documents")
    parser.add_argument("--questions", type=Path, help="labelled JSON Lines questions asked of --collection")
    parser.add_argument("--beir", type=Path, action="append", default=[])
    parser.add_argument("--collection", help="collection holding the BEIR sets")
    parser.add_argument("--answers", type=Path, help="also answer the labelled questions (abstention off) into this file")
    parser.add_argument("--dump", type=Path, help="write each labelled question's evidence here (JSON Lines)")
    parser.add_argument("--sample-queries", type=int, default=500, help="at most this many queries per BEIR set")
    args = parser.parse_args()
    settings = load_settings()
    min_coverage = settings.abstain_min_coverage
    print(f"# {platform.node()} {os.cpu_count()} cpus; coverage >= {min_coverage}, or best cosine >= d")
    if args.sample:
        pipeline = Pipeline.from_settings(settings)
        collection = pipeline.collection()
        groups = {"answerable": ANSWERABLE, "off-topic": OFF_TOPIC}
        evidence = {name: [evidence_of(collection, q, pipeline.retrieve(q).hits) for q in questions]
                    for name, questions in groups.items()}
        for name, rows in evidence.items():
            print(json.dumps({"sample": name, "questions": len(rows),
                              "best_cosine_median": round(statistics.median(r["best_dense"] for r in rows), 3),
                              "refused": {rule_name(*rule): sum(refuses(r, min_coverage, *rule) for r in rows)
                                          for rule in RULES}}))
    if args.questions:
        pipeline = Pipeline.from_settings(load_settings(collection=args.collection))
        collection = pipeline.collection()
        labelled = [json.loads(line) for line in args.questions.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = []
        for item in labelled:
            hits = pipeline.retrieve(item["question"]).hits
            evidence = evidence_of(collection, item["question"], hits)
            # "tutorial/a/b.md" is indexed as "en/a/b.md" and "zh/a/b.md": compare below the top folder.
            if item["answerable"] and item.get("file"):
                page = item["file"].split("/", 1)[-1]
                evidence["page_in_sources"] = any(h.chunk.source.split("/", 1)[-1] == page for h in hits[:5])
            rows.append((item, evidence))
        for language in sorted({item["language"] for item, _ in rows}):
            for answerable in (True, False):
                group = [r for item, r in rows if item["language"] == language and item["answerable"] == answerable]
                print(json.dumps({"questions": args.questions.name, "language": language, "answerable": answerable,
                                  "n": len(group),
                                  "best_cosine_median": round(statistics.median(r["best_dense"] for r in group), 3),
                                  "coverage_median": round(statistics.median(r["coverage"] for r in group), 3),
                                  "answer_page_in_sources": sum(r.get("page_in_sources", False) for r in group),
                                  "refused": {rule_name(*rule): sum(refuses(r, min_coverage, *rule) for r in group)
                                              for rule in RULES}}))
        if args.answers:
            # Answer with abstention off the questions only the cosine override lets through (coverage too low,
            # best cosine >= the lowest d, no name missing): a check after generation would decide those.
            # (About 20 s per answer here: FastAPI passages are long and hold code.)
            lowest = min(d for d in OVERRIDES if d)
            answering = Pipeline.from_settings(load_settings(collection=args.collection, abstain=False))
            answered = []
            with args.answers.open("w", encoding="utf-8") as out:
                for item, evidence in rows:
                    if refuses(evidence, min_coverage, None) == refuses(evidence, min_coverage, lowest, "names"):
                        continue
                    answer = answering.ask(item["question"])
                    support = answer_support(analyse_question(item["question"]), answer.text,
                                             [source.passage for source in answer.sources])
                    record = {**item, **evidence, "answer": answer.text, "grounded_share": answer.grounded_share,
                              "supported_sentences": sum(s.supported for s in answer.sentences),
                              "answer_support": support.score}
                    answered.append(record)
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    out.flush()
            withdraw_when = {
                "no supported sentence (grounded share 0; the default)": lambda r: r["grounded_share"] == 0,
                "under half supported": lambda r: r["grounded_share"] is not None and r["grounded_share"] < 0.5,
                "answer_support < 0.1": lambda r: r["answer_support"] < 0.1,
            }
            for answerable in (True, False):
                group = [r for r in answered if r["answerable"] == answerable]
                print(json.dumps({"answered_after_override": len(group), "answerable": answerable,
                                  "withdrawn": {name: sum(map(rule, group)) for name, rule in withdraw_when.items()}}))
        if args.dump:
            args.dump.write_text("\n".join(json.dumps({**item, **r}, ensure_ascii=False) for item, r in rows) + "\n",
                                 encoding="utf-8")
    for folder in args.beir:
        pipeline = Pipeline.from_settings(load_settings(collection=args.collection))
        collection = pipeline.collection()
        beir = read_beir(folder)
        queries = select_queries(beir, half="report", sample=args.sample_queries) if beir.name == "cmrc2018" \
            else select_queries(beir, sample=args.sample_queries)
        answerable, unanswerable = [], []
        for query in queries:
            hits = pipeline.retrieve(query.text).hits
            if any(hit.chunk.source in query.relevant for hit in hits[:5]):
                answerable.append(evidence_of(collection, query.text, hits))
            unanswerable.append(evidence_of(collection, query.text,
                                            [h for h in hits if h.chunk.source not in query.relevant]))
        print(json.dumps({"set": beir.name, "answerable": len(answerable), "unanswerable": len(unanswerable),
                          **{rule_name(*rule): {
                              "false_refusals": round(statistics.fmean(refuses(r, min_coverage, *rule) for r in answerable), 3),
                              "rejection": round(statistics.fmean(refuses(r, min_coverage, *rule) for r in unanswerable), 3)}
                             for rule in RULES}}))


if __name__ == "__main__":
    main()
