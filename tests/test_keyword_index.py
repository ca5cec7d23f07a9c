"""The BM25 keyword index: ranking in both languages, incremental changes, storage with the collection."""

from __future__ import annotations

import json

import numpy as np

from core.types import Chunk
from retrieval.embedders import EmbedderIdentity
from retrieval.keyword_index import KeywordIndex
from retrieval.store import Collection
from text.keywords import keyword_tokens

IDENTITY = EmbedderIdentity(name="test-embedder", dim=8, fingerprint="v1")

PASSAGES = {
    0: "FAISS keeps the embedding vectors of every chunk on disk.",
    1: "The reranker re-orders the candidates that the first stage found.",
    2: "Studies of mice showed that the treatment reduced inflammation.",
    3: "向量索引保存在磁盘上，每个文本块都有一个向量。",
    4: "重排序模型对第一阶段找到的候选段落重新排序。",
    5: "使用显卡可以加速大语言模型的推理。",
}


def build(passages: dict[int, str] = PASSAGES) -> KeywordIndex:
    index = KeywordIndex()
    for chunk_id, text in passages.items():
        index.add(chunk_id, text)
    return index


def test_english_query_finds_its_passage_through_stemming():
    hits = build().search(keyword_tokens("what did the study in mouse show"), k=3)
    assert hits[0][0] == 2  # "study" and "studies" share the stem "studi"
    assert all(0 < score < 1 for _, score in hits)


def test_chinese_query_is_segmented_and_ranked():
    hits = build().search(keyword_tokens("显卡推理加速"), k=3)
    assert hits[0][0] == 5
    assert build().search(keyword_tokens("候选段落怎么重新排序"), k=1)[0][0] == 4


def test_no_shared_term_gives_no_hits_and_scores_are_comparable_between_queries():
    index = build()
    assert index.search(keyword_tokens("photosynthesis chlorophyll"), k=5) == []
    full = index.scores_for(keyword_tokens("reranker candidates first stage"), [1])[0]
    partial = index.scores_for(keyword_tokens("reranker bicycle volcano"), [1])[0]
    assert full > partial > 0  # matching more of the query's weight scores higher


def test_remove_and_re_add_change_results_without_rebuilding():
    index = build()
    index.remove([2])
    assert all(chunk_id != 2 for chunk_id, _ in index.search(keyword_tokens("studies mice treatment"), k=5))
    index.add(7, "A later study on mice treatment.")
    assert index.search(keyword_tokens("studies mice treatment"), k=1)[0][0] == 7
    assert index.scores_for(keyword_tokens("mice"), [2, 7, 99]).tolist()[0] == 0.0  # removed and unknown ids score 0


def test_save_and_load_round_trip(tmp_path):
    index = build()
    index.save(tmp_path)
    loaded = KeywordIndex.load(tmp_path)
    for query in ("vectors on disk", "重新排序", "显卡"):
        assert loaded.search(keyword_tokens(query), k=3) == index.search(keyword_tokens(query), k=3)


def _chunk(source: str, text: str) -> Chunk:
    return Chunk(source, None, (), 0, len(text), text)


def test_collection_keeps_keyword_index_in_step_and_rebuilds_a_missing_one(tmp_path):
    collection = Collection.open(tmp_path, IDENTITY, create=True)
    vectors = np.eye(8, dtype=np.float32)
    collection.put_file("a.md", "sha-a", [_chunk("a.md", PASSAGES[0]), _chunk("a.md", PASSAGES[3])], vectors[:2], 1)
    collection.put_file("b.md", "sha-b", [_chunk("b.md", PASSAGES[5])], vectors[2:3], 1)
    generation = collection.save()
    reopened = Collection.open(tmp_path, IDENTITY)
    assert reopened.chunk(reopened.search_keywords(keyword_tokens("显卡"), k=1)[0][0]).source == "b.md"

    reopened.remove_file("b.md")
    reopened.put_file("b.md", "sha-b2", [_chunk("b.md", "GPU offload speeds up generation")], vectors[3:4], 1)
    generation = reopened.save()
    assert reopened.search_keywords(keyword_tokens("显卡"), k=5) == []
    assert reopened.chunk(reopened.search_keywords(keyword_tokens("gpu offload"), k=1)[0][0]).text.startswith("GPU offload")

    # An index written by an older tokenizer (or lost) is derived again from the chunks.
    manifest_path = tmp_path / generation / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["keyword_index"] = {"tokenizer": "kw-0"}
    manifest_path.write_text(json.dumps(manifest))
    (tmp_path / generation / "keywords.npz").unlink()
    rebuilt = Collection.open(tmp_path, IDENTITY)
    assert rebuilt.chunk(rebuilt.search_keywords(keyword_tokens("gpu offload"), k=1)[0][0]).source == "b.md"
    assert rebuilt.chunk(rebuilt.search_keywords(keyword_tokens("向量索引"), k=1)[0][0]).source == "a.md"


def test_specific_items_are_the_names_and_numbers_a_passage_must_hold():
    from text.keywords import as_written, missing_items, specific_items

    assert specific_items("Who won the 2021 Super Bowl?") == {"2021", "super", "bowl"}
    assert specific_items("How do I set KB_UI_HOST?") >= {"kb_ui_host"}
    assert "红楼梦" in specific_items("《红楼梦》的作者是谁？")  # a title
    assert "北京" in specific_items("北京今天的天气怎么样？")  # a place, by jieba's part of speech
    assert specific_items("如何更换嵌入模型？") == set()  # ordinary words only: rewording them is fine
    assert specific_items("怎样启用 GPU 加速？") == {"gpu"}
    # A capital opening a second sentence is no name; a year worded "mid-2023" is the year.
    assert specific_items("Has Intel turned around? Give the figure for mid-2023.") == {"intel", "2023"}
    assert "8.x" not in specific_items("TiDB 8.x 各版本对 CentOS 7 的支持情况")  # a range of versions, not a name
    assert missing_items({"2021", "super", "红楼梦"}, "Super Bowl 2022 and 《红楼梦》") == ("2021",)
    assert as_written(["academi", "2021"], "the 92nd Academy Awards of 2021") == ["Academy", "2021"]
    assert as_written(["pi", "raspberri"], "GPU on a Raspberry Pi?") == ["Raspberry", "Pi"]
