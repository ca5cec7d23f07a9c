"""`kb eval` and `kb eval-qa` inputs: a tiny BEIR set and tiny QA files written by the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.evaluation import mrr_at_10, ndcg_at_10, recall_at
from ingest.beir import BeirFormatError, read_beir
from ingest.qa_sets import QASetError, read_qa_set

BIN = Path(sys.executable).parent

DOCS = [
    {"_id": "d1", "title": "Tomatoes", "text": "Tomatoes need six hours of direct sunlight and deep watering."},
    {"_id": "d2", "title": "Bicycles", "text": "Inflate road bike tyres to about 6 bar and check them weekly."},
    {"_id": "d3", "title": "Sourdough", "text": "Sourdough rises slowly because wild yeast ferments the dough."},
    {"_id": "d4", "title": "大熊猫", "text": "大熊猫生活在四川的山区，每天要吃十几公斤竹子。"},
    {"_id": "d5", "title": "绿茶", "text": "泡绿茶的水温最好在八十度左右，水太烫会让茶叶发苦。"},
    {"_id": "d6", "title": "高铁", "text": "京沪高铁全长约一千三百公里，最快四个半小时从北京到上海。"},
]
QUERIES = {
    "q1": ("How many hours of sun do tomatoes need?", "d1"),
    "q2": ("What pressure for road bike tyres?", "d2"),
    "q3": ("大熊猫每天吃多少竹子？", "d4"),
    "q4": ("京沪高铁有多长？", "d6"),
}


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in DOCS), encoding="utf-8")
    (folder / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) for q, (t, _) in QUERIES.items()), encoding="utf-8")
    rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, (_, d) in QUERIES.items()]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def test_metrics_follow_the_beir_definitions():
    relevant = {"a": 1, "b": 1}
    assert ndcg_at_10(["a", "b", "c"], relevant) == pytest.approx(1.0)
    assert ndcg_at_10(["c", "a"], {"a": 1}) == pytest.approx(1 / 1.5849625, rel=1e-6)  # 1/log2(3)
    assert recall_at(["c", "a", "x"], relevant, 2) == 0.5
    assert mrr_at_10(["c", "x", "b"], relevant) == pytest.approx(1 / 3)
    assert mrr_at_10([f"x{i}" for i in range(10)] + ["a"], relevant) == 0.0


def test_beir_reader_prefixes_sources_and_explains_missing_files(tmp_path):
    beir = read_beir(write_beir(tmp_path / "tiny"))
    assert beir.documents[0].source == "tiny/d1"
    assert beir.documents[0].pages[0].heading_path == ("Tomatoes",)
    assert beir.qrels["q3"] == {"tiny/d4": 1}
    with pytest.raises(BeirFormatError, match="train"):
        read_beir(tmp_path / "tiny", qrels_split="train")
    with pytest.raises(BeirFormatError, match="corpus.jsonl"):
        read_beir(tmp_path)


def test_kb_eval_builds_then_reuses_a_collection_and_reports_every_configuration(tmp_path, model_cache):
    data = write_beir(tmp_path / "tiny")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    env.update({"KB_HOME": str(tmp_path / "home"), "KB_MODEL_CACHE": str(model_cache)})
    out = tmp_path / "eval.json"
    done = subprocess.run([str(BIN / "kb"), "eval", str(data), "--json", str(out), "-q"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "added 6" in done.stderr
    report = json.loads(out.read_text())
    configs = {r["config"]: r for r in report["results"]}
    assert set(configs) == {"keyword", "dense", "hybrid-2way", "hybrid", "hybrid+lexical-fusion"}
    for result in configs.values():
        assert result["queries"] == 4
        assert result["recall"]["100"] == 1.0  # six documents: every one is retrieved
        assert result["latency_median_ms"] > 0
    assert configs["hybrid"]["ndcg_at_10"] >= 0.9
    assert "nDCG@10" in done.stdout and "tiny" in done.stdout

    again = subprocess.run([str(BIN / "kb"), "eval", str(data), "--configs", "keyword", "-q"],
                           env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "unchanged 6" in again.stderr  # nothing embedded twice
    bad = subprocess.run([str(BIN / "kb"), "eval", str(data), "--configs", "magic"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "magic" in bad.stderr


def test_qa_sets_are_read_with_their_answer_rules(tmp_path):
    rgb = tmp_path / "en_fact.json"
    rows = [
        {"id": 0, "query": "When was Splatoon 2 released?", "answer": [["July 21 2017", "July 21, 2017"]],
         "positive": ["It was released on July 21, 2017."], "negative": ["Splatoon 3 came out in 2022.",
                                                                        "Again: July 21, 2017 it was."]},
    ]
    rgb.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    item = read_qa_set(rgb).items[0]
    assert item.is_correct("Released on july 21, 2017 [1].") and not item.is_correct("In 2022.")
    assert item.negatives == ("Splatoon 3 came out in 2022.",)  # a "negative" holding the answer is dropped

    domainrag = tmp_path / "basic_qa_retrieved_bm25.jsonl"
    row = {"question": "中法学院 用 哪 三 个 语言 教学 ？", "answers": [["汉语", "法语", "英语"]],
           "positive_reference": [{"id": "1", "psg_id": 0, "contents": "汉语 、 法语 、 英语 三语 教学"}],
           "retrieved_psgs": [{"id": "1", "psg_id": 0, "contents": "汉语 、 法语 、 英语 三语 教学"},
                              {"id": "2", "psg_id": 3, "contents": "金融 专业 的 基础课"}]}
    domainrag.write_text(json.dumps(row, ensure_ascii=False), encoding="utf-8")
    item = read_qa_set(domainrag).items[0]
    assert item.question == "中法学院用哪三个语言教学？"  # word-segmentation spaces removed
    assert item.negatives == ("金融专业的基础课",)  # the positive among the BM25 passages is not a negative
    assert item.is_correct("用汉语、法语和英语。") and not item.is_correct("用汉语和法语。")  # all three needed
    (tmp_path / "other.jsonl").write_text('{"x": 1}\n', encoding="utf-8")
    with pytest.raises(QASetError, match="neither"):
        read_qa_set(tmp_path / "other.jsonl")
