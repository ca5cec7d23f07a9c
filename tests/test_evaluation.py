"""`kb eval` and `kb eval-qa` inputs: a tiny BEIR set and tiny QA files written by the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.ranking import mrr_at_10, ndcg_at_10, recall_at
from evaluation.beir import BeirFormatError, read_beir
from evaluation.answers import distractors
from evaluation.qa_sets import QASetError, read_qa_set
from tests.server_helpers import kb


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


def test_kb_eval_builds_then_reuses_a_collection_and_reports_every_configuration(tmp_path, run_models):
    data = write_beir(tmp_path / "tiny")
    home = tmp_path / "home"
    out = tmp_path / "eval.json"
    done = kb(home, "eval", str(data), "--json", str(out), "-q")
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

    again = kb(home, "eval", str(data), "--configs", "keyword", "-q")
    assert again.returncode == 0, again.stderr
    assert "unchanged 6" in again.stderr  # nothing embedded twice
    bad = kb(home, "eval", str(data), "--configs", "magic")
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


def _rgb(tmp_path, rows) -> Path:
    path = tmp_path / "en_fact.json"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


def test_negatives_that_state_the_answer_in_other_words_are_dropped(tmp_path):
    rows = [
        {"id": 0, "query": "Who won the women's singles Wimbledon in 2021?", "answer": "Ashleigh Barty",
         "positive": ["Ashleigh Barty won in 2021."],
         "negative": ["Barty wins the 2021 Wimbledon.", "Serena Williams lost in the first round."]},
        {"id": 1, "query": "When does season 3 of The Crown premiere?",
         "answer": [["November 17 2019", "Nov 17, 2019"]], "positive": ["It premieres on November 17, 2019."],
         "negative": ["The Crown season 3 premieres Sunday, November 17 on Netflix.",
                      "Season 4 arrives on 15th November.", "It premiered on 17th of November."]},
        {"id": 2, "query": "《肖申克的救赎》的导演是谁", "answer": "弗兰克·德拉邦特", "positive": ["导演是弗兰克·德拉邦特。"],
         "negative": ["电影的导演是弗兰克.德拉邦特。", "德拉克洛瓦是画家。"]},
        {"id": 3, "query": "里约奥运会开幕日期", "answer": "2016年8月5日", "positive": ["2016年8月5日开幕。"],
         "negative": ["8月6日开赛，8月5日就开幕。", "18月5日不是日期。"]},
    ]
    items = read_qa_set(_rgb(tmp_path, rows)).items
    assert items[0].negatives == ("Serena Williams lost in the first round.",)  # the winner's surname alone
    assert items[1].negatives == ("Season 4 arrives on 15th November.",)  # month and day, without the year
    assert items[2].negatives == ("德拉克洛瓦是画家。",)  # "." for "·" in a translated name
    assert items[3].negatives == ("18月5日不是日期。",)  # 8月5日 inside another number is not the date


def test_distractors_only_collection_drops_passages_that_answer_another_question(tmp_path):
    rows = [
        {"id": 0, "query": "Who won the women's singles Wimbledon in 2019?", "answer": "Simona Halep",
         "positive": ["Simona Halep won the 2019 title."],
         "negative": ["Kerber won the women's singles Wimbledon title in 2018.", "Wimbledon is played on grass.",
                      "Tickets for Kerber fans are sold out."]},
        {"id": 1, "query": "Who won the women's singles Wimbledon in 2018?", "answer": "Angelique Kerber",
         "positive": ["Angelique Kerber won the 2018 title."],
         "negative": ["Halep reached the semi-final in 2018.", "Kerber lost one set."]},
    ]
    qa_set = read_qa_set(_rgb(tmp_path, rows))
    kept = {document.pages[0].text for document in distractors(qa_set)}
    assert qa_set.items[1].negatives == ("Halep reached the semi-final in 2018.",)  # its own: any mention of Kerber
    # The first answers item 1 although it was item 0's distractor; the ticket news mentions Kerber, answers nothing.
    assert kept == {"Wimbledon is played on grass.", "Halep reached the semi-final in 2018.",
                    "Tickets for Kerber fans are sold out."}
    everything = {document.pages[0].text for document in qa_set.documents(with_positives=True)}
    assert "Kerber won the women's singles Wimbledon title in 2018." in everything  # still there when answerable
