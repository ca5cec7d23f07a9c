"""Both retrieval stages on a small real bilingual corpus, with real models, on both store backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.pipeline import Pipeline
from retrieval.rerank import CrossEncoderReranker, LexicalFusionReranker, NoReranker, RerankerError, load_reranker
from retrieval.store import IndexMismatchError
from tests.conftest import write
from retrieval.question import analyse_question

pytestmark = pytest.mark.usefixtures("backend")  # every test on local files and on Milvus Lite

CORPUS = {
    "garden.md": "# Garden\n\nTomatoes need six hours of direct sunlight and deep watering twice a week.\n",
    "bikes.md": "# Bicycles\n\nInflate road bike tyres to about 6 bar; check the pressure every week.\n",
    "bread.md": "# Baking\n\nSourdough bread rises slowly because wild yeast ferments the dough overnight.\n",
    "熊猫.md": "# 大熊猫\n\n大熊猫主要生活在四川的山区，每天要吃十几公斤竹子。\n",
    "茶.md": "# 绿茶\n\n泡绿茶的水温最好在八十度左右，水太烫会让茶叶发苦。\n",
    "高铁.md": "# 高铁\n\n京沪高铁全长约一千三百公里，最快四个半小时可以从北京到上海。\n",
}


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    for name, text in CORPUS.items():
        write(folder / name, text)
    return folder


@pytest.fixture(scope="module")
def built() -> dict[tuple[str, str], Pipeline]:
    """The read-only tests' indexed pipelines, built once per module and backend (one on Milvus Lite
    took ~3 s to build): those tests only ask, so they can share one."""
    return {}


def _shared(built, kind: str, backend: str, make_pipeline, tmp_path_factory, corpus: Path) -> Pipeline:
    if (kind, backend) not in built:
        pipeline = make_pipeline(home=tmp_path_factory.mktemp(f"{kind}-{backend}") / "home")
        report = pipeline.ingest(corpus, progress=False)
        assert len(report.added) == len(list(corpus.iterdir())) and not report.failed
        built[kind, backend] = pipeline
    return built[kind, backend]


@pytest.fixture
def indexed(make_pipeline, corpus, backend, built, tmp_path_factory) -> Pipeline:
    return _shared(built, "plain", backend, make_pipeline, tmp_path_factory, corpus)


@pytest.mark.parametrize(
    "question, expected",
    [
        ("How much sun do tomato plants need?", "garden.md"),
        ("What tyre pressure for a road bike?", "bikes.md"),
        ("Why does sourdough take so long to rise?", "bread.md"),
        ("大熊猫每天吃多少竹子？", "熊猫.md"),
        ("泡绿茶用多少度的水？", "茶.md"),
        ("从北京坐高铁到上海要多久？", "高铁.md"),
        ("What temperature should water be for green tea?", "茶.md"),  # across languages
    ],
)
def test_right_document_comes_first_in_both_languages(indexed, question, expected):
    retrieval = indexed.retrieve(question)
    assert retrieval.hits[0].chunk.source == expected
    assert retrieval.hits[0].rerank_score is not None
    assert retrieval.timings.embed_ms > 0


def test_first_stage_is_wide_and_second_stage_reorders_all_candidates(indexed):
    retrieval = indexed.retrieve("bike tyre pressure")
    assert len(retrieval.hits) == len(CORPUS)  # first_stage_k (40) is more than the corpus
    scores = [hit.rerank_score for hit in retrieval.hits]
    assert scores == sorted(scores, reverse=True)
    assert sorted(hit.first_stage_rank for hit in retrieval.hits) == list(range(1, len(CORPUS) + 1))


def test_lexical_fusion_promotes_the_exact_term_match(indexed):
    # Two candidates with near-equal dense scores: the one sharing the rare term wins.
    hits = indexed.retrieve("sourdough wild yeast").hits
    fused = LexicalFusionReranker(dense_weight=0.0).rerank(analyse_question("sourdough wild yeast"), hits[::-1])
    assert fused[0].chunk.source == "bread.md"
    assert fused[0].rerank_score == pytest.approx(1.0)
    unchanged = NoReranker().rerank(analyse_question("x"), hits)
    assert [h.chunk.source for h in unchanged] == [h.chunk.source for h in hits]


def test_a_users_cross_encoder_folder_is_used_as_second_stage(make_pipeline, corpus, minilm_dir, tmp_path):
    from sentence_transformers import CrossEncoder

    # A real (untrained-head) cross-encoder built from a local model, as a user would copy one in.
    folder = tmp_path / "my-cross-encoder"
    CrossEncoder(str(minilm_dir), num_labels=1, device="cpu").save(str(folder))
    pipeline = make_pipeline(reranker=str(folder))
    assert isinstance(pipeline.reranker, CrossEncoderReranker)
    pipeline.ingest(corpus, progress=False)
    hits = pipeline.retrieve("How much sun do tomato plants need?").hits
    assert len(hits) == len(CORPUS)
    assert [h.rerank_score for h in hits] == sorted((h.rerank_score for h in hits), reverse=True)
    assert len({round(h.rerank_score, 6) for h in hits}) > 1  # it really scored the pairs


def test_unknown_reranker_is_a_clear_error():
    with pytest.raises(RerankerError, match="lexical-fusion"):
        load_reranker("bge-reranker-from-the-internet")


def test_any_local_sentence_transformers_folder_works_as_embedder(make_pipeline, corpus, minilm_dir):
    pipeline = make_pipeline(embedding_model=str(minilm_dir), collection="minilm")
    pipeline.ingest(corpus, progress=False)
    assert pipeline.retrieve("tomato sunlight watering").hits[0].chunk.source == "garden.md"
    assert pipeline.status().embedder == minilm_dir.name

    # The same collection opened with the default embedder is refused, not searched.
    other = make_pipeline(collection="minilm")
    with pytest.raises(IndexMismatchError, match=minilm_dir.name):
        other.retrieve("tomato")


def test_the_fast_builtin_embedder_also_serves_both_languages(make_pipeline, corpus):
    pipeline = make_pipeline(embedding_model="use-multilingual", collection="use")
    pipeline.ingest(corpus, progress=False)
    assert pipeline.embedder.identity.dim == 512
    assert pipeline.retrieve("tomato plants and sunlight").hits[0].chunk.source == "garden.md"
    assert pipeline.retrieve("大熊猫吃竹子").hits[0].chunk.source == "熊猫.md"


# ----- hybrid first stage ------------------------------------------------------
IDENTIFIERS = {
    "errors.md": "# Error codes\n\nE4711 means the licence file is missing; E4712 means it has expired.\n",
    "错误.md": "# 错误代码\n\n错误 K9083 表示磁盘空间不足，需要清理缓存目录。\n",
}


@pytest.fixture
def hybrid_indexed(make_pipeline, corpus, backend, built, tmp_path_factory) -> Pipeline:
    for name, text in IDENTIFIERS.items():
        write(corpus / name, text)
    return _shared(built, "hybrid", backend, make_pipeline, tmp_path_factory, corpus)


@pytest.mark.parametrize(
    "question, expected",
    [
        ("E4712", "errors.md"),  # a bare identifier: only the keyword index knows it
        ("K9083 是什么意思？", "错误.md"),
        ("How much sun do tomato plants need?", "garden.md"),  # paraphrase-ish: dense carries it
        ("泡绿茶用多少度的水？", "茶.md"),
        ("What temperature should water be for green tea?", "茶.md"),  # across languages: dense only
    ],
)
def test_hybrid_first_stage_finds_identifiers_and_meaning_in_both_languages(hybrid_indexed, question, expected):
    hits = hybrid_indexed.retrieve(question).hits
    assert hits[0].chunk.source == expected
    assert hits[0].dense_score is not None and hits[0].keyword_score is not None


def test_each_first_stage_mode_does_what_it_says(hybrid_indexed):
    from retrieval.fusion import FirstStage

    keyword_only = hybrid_indexed.retrieve("E4711 licence", first_stage=FirstStage(mode="keyword")).hits
    assert [h.chunk.source for h in keyword_only] == ["errors.md"]  # only chunks sharing a term
    assert all(h.dense_score is None for h in keyword_only)  # the question was not embedded
    dense_only = hybrid_indexed.retrieve("E4711 licence", first_stage=FirstStage(mode="dense")).hits
    assert len(dense_only) == len(CORPUS) + len(IDENTIFIERS)  # every chunk has a cosine
    rrf = hybrid_indexed.retrieve("sourdough yeast", first_stage=FirstStage(method="rrf")).hits
    assert rrf[0].chunk.source == "bread.md"
    scores = [h.first_stage_score for h in rrf]
    assert scores == sorted(scores, reverse=True)


def test_keyword_index_follows_incremental_ingest(make_pipeline, corpus):
    pipeline = make_pipeline()
    pipeline.ingest(corpus, progress=False)
    write(corpus / "errors.md", IDENTIFIERS["errors.md"])
    pipeline.ingest(corpus, progress=False)
    assert pipeline.retrieve("E4711").hits[0].chunk.source == "errors.md"
    (corpus / "errors.md").unlink()
    pipeline.ingest(corpus, progress=False)
    assert all(h.chunk.source != "errors.md" for h in pipeline.retrieve("E4711").hits)


# ----- second embedder ------------------------------------------------------------
def test_second_embedder_scores_english_questions_and_stays_out_of_chinese_ones(indexed):
    assert indexed.collection().has_second_vectors  # computed at ingest, one per chunk
    english = indexed.retrieve("How much sun do tomato plants need?").hits
    assert english[0].chunk.source == "garden.md"
    english_passages = [h for h in english if h.chunk.text.isascii()]
    assert all(h.second_score is not None for h in english_passages)
    assert english[0].second_score == max(h.second_score for h in english_passages)  # MiniLM agrees
    assert all(h.second_score is None for h in english if not h.chunk.text.isascii())  # it cannot read Chinese
    chinese = indexed.retrieve("大熊猫每天吃多少竹子？").hits
    assert chinese[0].chunk.source == "熊猫.md"
    assert all(h.second_score is None for h in chinese)  # weight 0 for Chinese: the question is not even embedded


def test_the_builtin_second_embedder_loads_its_model_only_when_it_first_embeds(minilm_dir, model_cache):

    from retrieval.embedders import MINILM_NAME, SentenceTransformerEmbedder, load_embedder

    lazy = load_embedder(MINILM_NAME, model_cache)
    assert not lazy.loaded  # a Chinese-only session never pays for torch
    eager = SentenceTransformerEmbedder(minilm_dir, name=MINILM_NAME)  # a user's folder: loaded at once, errors early
    assert eager.loaded
    assert lazy.identity == eager.identity  # read from the folder's config files, same as the loaded model's
    assert lazy.max_tokens == eager.max_tokens == 256
    vector = lazy.embed_query("How much sun do tomato plants need?")
    # the built-in one computes in bf16 where the CPU has it, a user's folder in float32: the same vector to 1e-3
    assert lazy.loaded and float(vector @ eager.embed_query("How much sun do tomato plants need?")) > 0.999


def test_collection_without_second_vectors_still_answers_and_next_ingest_adds_them(make_pipeline, corpus):
    before = make_pipeline(second_embedder="none")
    before.ingest(corpus, progress=False)
    after = make_pipeline()  # the default, with the second embedder, on the same collection
    assert not after.collection().has_second_vectors
    assert after.status().second_vectors_missing == after.status().chunks > 0
    hits = after.retrieve("What tyre pressure for a road bike?").hits
    assert hits[0].chunk.source == "bikes.md" and hits[0].second_score is None  # two-way fusion meanwhile
    report = after.ingest(corpus, progress=False)
    assert len(report.unchanged) == len(CORPUS) and not report.added  # no file was read or embedded again
    assert after.collection().has_second_vectors and after.status().second_vectors_missing == 0
    hits = after.retrieve("What tyre pressure for a road bike?").hits
    assert hits[0].chunk.source == "bikes.md" and hits[0].second_score is not None
    # Removing a document removes its second vectors too: the rest stay complete.
    after.remove_documents(["bikes.md"])
    assert after.collection().has_second_vectors and after.collection().chunk_count == len(CORPUS) - 1


def test_weights_that_leave_nothing_for_keywords_are_refused(make_settings):
    from app.settings import SettingsError

    with pytest.raises(SettingsError, match="KB_DENSE_WEIGHT_EN"):
        make_settings(dense_weight_en=0.7, second_weight_en=0.5)


# ----- follow-up questions ------------------------------------------------------
def test_follow_up_is_searched_with_the_question_it_follows(indexed):
    from core.types import Turn
    from retrieval.followup import retrieval_query

    history = [Turn("从北京坐高铁到上海要多久？", "最快四个半小时 [1]。")]
    query = retrieval_query("它全长多少？", history)
    assert query.startswith("从北京坐高铁到上海要多久？")
    assert indexed.retrieve(query).hits[0].chunk.source == "高铁.md"

    history = [Turn("What tyre pressure for a road bike?", "About 6 bar [1].")]
    query = retrieval_query("And how often should I check it?", history)
    assert indexed.retrieve(query).hits[0].chunk.source == "bikes.md"
    # A question that stands on its own is searched as it is, whatever came before.
    assert retrieval_query("Why does sourdough take so long to rise?", history) == "Why does sourdough take so long to rise?"


@pytest.mark.parametrize(
    "question, follows",
    [
        ("What does that mean?", True),  # "that" as a pronoun points back
        ("Is that free?", True),
        ("Which part holds the yeast that ferments the dough?", False),  # "that" starting a clause
        ("Is there a gluten-free sourdough?", False),  # "there is" points nowhere
        ("此外还有什么功能？", True),  # "besides that"
        ("其他格式支持吗？", True),  # "the other formats"
        ("我应该怎么保存面包才不会变硬？", False),  # 该 inside 应该 "should"
        ("土耳其的首都是哪座城市？", False),  # 其 inside a name
    ],
)
def test_reference_words_inside_other_words_do_not_make_a_follow_up(question, follows):
    from core.types import Turn
    from retrieval.followup import retrieval_query

    history = [Turn("What tyre pressure for a road bike?", "About 6 bar [1].")]
    assert (retrieval_query(question, history) != question) is follows
