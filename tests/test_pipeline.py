"""End to end through the pipeline with the default models: ingest the sample data, ask, cite.

The tests that do not generate run on both store backends (``backend``: local files and Milvus Lite);
those that generate answers run on local files only: past retrieval, generation never reads the store, and
each answer costs seconds of the 1.5B model."""

from __future__ import annotations

import shutil

import pytest

from app.pipeline import Pipeline, UnsafeFileNameError, safe_document_path
from llm.generator import Generator, GeneratorInfo
from llm.prompt import question_language
from tests.conftest import SAMPLE_DATA, make_pdf, write

pytestmark = pytest.mark.answer_quality  # what the default model answers is what is tested


@pytest.fixture
def sample_pipeline(make_pipeline, tmp_path) -> Pipeline:
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_DATA, docs)
    pipeline = make_pipeline(documents_dir=docs)
    report = pipeline.ingest(docs, progress=False)
    assert set(report.added) == {"quick-reference.pdf", "user-guide.md", "用户指南.md"}
    assert not report.failed
    return pipeline


def test_english_question_is_answered_with_a_citation_to_the_right_page(sample_pipeline):
    stream = sample_pipeline.ask_stream("Which port does the web interface listen on?")
    pieces = list(stream)
    assert len(pieces) > 3  # it streamed, piece by piece
    answer = stream.answer
    assert "8501" in answer.text
    assert answer.supported
    assert any(c.source == "quick-reference.pdf" and c.page == 2 for c in answer.citations)
    for citation in answer.citations:
        assert f"[{citation.number}]" in answer.text
    timings = stream.timings
    assert 0 < timings.first_token_ms <= timings.total_ms


def test_chinese_question_gets_a_chinese_answer_citing_the_chinese_page(sample_pipeline):
    answer = sample_pipeline.ask("索引文件使用 pickle 格式吗？")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in answer.text)
    assert answer.citations
    assert any(c.source == "quick-reference.pdf" and c.page == 3 for c in answer.citations)


def test_english_question_over_a_chinese_source_gets_an_english_answer(sample_pipeline):
    # The Chinese guide's GPU section ranks among the first sources; the answer must still be English.
    retrieval = sample_pipeline.retrieve("How do I get GPU acceleration?")
    assert "用户指南.md" in [hit.chunk.source for hit in retrieval.hits[:2]]
    answer = sample_pipeline.ask("How do I get GPU acceleration?")
    assert question_language(answer.text) == "en", answer.text
    assert "CUDA" in answer.text


@pytest.mark.usefixtures("backend")
def test_empty_knowledge_base_says_how_to_fill_it(make_pipeline):
    pipeline = make_pipeline()
    answer = pipeline.ask("What is the refund policy?")
    assert not answer.supported and not answer.citations
    assert "kb ingest" in answer.text
    assert "知识库是空的" in pipeline.ask("退款政策是什么？").text


@pytest.mark.usefixtures("backend")
def test_reingest_is_incremental(make_pipeline, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nApples are red.\n")
    write(docs / "b.md", "# B\n\nBananas are yellow.\n")
    make_pdf(docs / "c.pdf", ["Cherries are dark red."])
    write(docs / "broken.pdf", "%PDF-1.4 this is not really a pdf")
    pipeline = make_pipeline()

    first = pipeline.ingest(docs, progress=False)
    assert sorted(first.added) == ["a.md", "b.md", "c.pdf"]
    assert [f.source for f in first.failed] == ["broken.pdf"]

    again = pipeline.ingest(docs, progress=False)
    assert sorted(again.unchanged) == ["a.md", "b.md", "c.pdf"]
    assert again.chunks_embedded == 0

    write(docs / "a.md", "# A\n\nApples are green now.\n")
    (docs / "b.md").unlink()
    third = pipeline.ingest(docs, progress=False)
    assert third.updated == ("a.md",) and third.removed == ("b.md",)
    assert set(pipeline.status().files) == {"a.md", "c.pdf"}
    assert "green" in pipeline.retrieve("apple colour").hits[0].chunk.text

    kept = pipeline.ingest(tmp_path / "docs", prune=False, progress=False)
    assert kept.removed == ()


@pytest.mark.usefixtures("backend")
def test_files_read_by_an_older_reader_are_read_again(make_pipeline, tmp_path):
    """A collection indexed before a better text extraction gains it on the next ``kb ingest``, without
    the user rebuilding it: the manifest keeps the reader version each file was read with."""
    import json

    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nApples are red.\n")
    make_pdf(docs / "c.pdf", ["Cherries are dark red."])
    pipeline = make_pipeline()
    pipeline.ingest(docs, progress=False)
    folder = pipeline.settings.collection_dir
    if pipeline.collection().backend == "milvus":  # its document rows, as a version that did not record it
        collection = pipeline.collection()
        rows = list(collection._db.query(collection._meta, 'kind == "document"', ["key", "kind", "payload"]))
        for row in rows:
            payload = json.loads(row["payload"])
            del payload["reader_version"]
            row.update(payload=json.dumps(payload), unused=[0.0, 0.0])
        collection._db.upsert(collection._meta, rows)
    else:
        manifest_path = folder / (folder / "CURRENT").read_text().strip() / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for row in manifest["files"].values():  # as the manifest of a version that did not record it
            del row["reader_version"]
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    pipeline = make_pipeline()  # a new process on the old collection

    again = pipeline.ingest(docs, progress=False)
    assert sorted(again.reread) == sorted(again.updated) == ["a.md", "c.pdf"] and again.unchanged == ()
    assert "2 unchanged files were read again" in again.summary()
    assert "Cherries" in pipeline.retrieve("cherry colour").hits[0].chunk.text
    third = pipeline.ingest(docs, progress=False)
    assert sorted(third.unchanged) == ["a.md", "c.pdf"] and third.reread == () and third.chunks_embedded == 0


@pytest.mark.usefixtures("backend")
def test_failed_file_keeps_its_previous_chunks(make_pipeline, tmp_path):
    docs = tmp_path / "docs"
    make_pdf(docs / "manual.pdf", ["The pump runs at 3000 rpm."])
    pipeline = make_pipeline()
    pipeline.ingest(docs, progress=False)
    (docs / "manual.pdf").write_bytes(b"%PDF-1.7 damaged by a bad copy")
    report = pipeline.ingest(docs, progress=False)
    assert [f.source for f in report.failed] == ["manual.pdf"]
    assert "3000 rpm" in pipeline.retrieve("pump speed").hits[0].chunk.text


@pytest.mark.usefixtures("backend")
def test_uploads_stay_inside_the_documents_folder(make_pipeline, tmp_path):
    pipeline = make_pipeline()
    report = pipeline.add_documents([("../../escape/notes.md", "# Notes\n\nThe vault code is 4711.\n".encode())])
    assert report.added == ("notes.md",)
    assert (pipeline.settings.documents_dir / "notes.md").is_file()
    assert not (tmp_path / "escape").exists()
    for bad in ["..", ".hidden.md", "evil.exe", ""]:
        with pytest.raises(UnsafeFileNameError):
            safe_document_path(pipeline.settings.documents_dir, bad)
    assert pipeline.delete_document("notes.md")
    assert pipeline.status().files == ()
    assert not (pipeline.settings.documents_dir / "notes.md").exists()


@pytest.mark.usefixtures("backend")
def test_linked_folders_are_followed_once_even_in_a_loop(make_pipeline, tmp_path):
    shared = tmp_path / "shared-notes"
    write(shared / "policy.md", "# Policy\n\nLaptops are replaced every four years.\n")
    docs = tmp_path / "docs"
    write(docs / "own.md", "# Own\n\nMy own note.\n")
    (docs / "linked").symlink_to(shared, target_is_directory=True)
    (shared / "loop").symlink_to(shared, target_is_directory=True)  # a cycle must not hang the walk
    report = make_pipeline().ingest(docs, progress=False)
    assert sorted(report.added) == ["linked/policy.md", "own.md"]


def _never_generate():
    raise AssertionError("abstention must decide before the model is loaded")


@pytest.mark.usefixtures("backend")
def test_question_the_documents_do_not_cover_is_refused_without_generating(sample_pipeline):
    strict = Pipeline(sample_pipeline.settings.model_copy(update={"abstain_min_coverage": 0.5}),
                      sample_pipeline.embedder, sample_pipeline.reranker, _never_generate)
    answer = strict.ask("Who won the football World Cup final in Qatar?")
    assert answer.abstained and not answer.supported and not answer.citations
    assert "do not seem to contain" in answer.text
    assert "Qatar" in answer.text  # the refusal says which of the question's names no passage mentions
    assert answer.sources  # the closest passages are shown, to check for oneself
    chinese = strict.ask("卡塔尔世界杯决赛谁赢了？")
    assert chinese.abstained and "文档中似乎没有" in chinese.text
    covered = strict.retrieve("Which port does the web interface listen on?")
    assert not strict.would_abstain(covered)


@pytest.mark.usefixtures("backend")
def test_questions_worded_differently_from_the_documents_are_not_refused(sample_pipeline):
    # Each misses most of its words in the passages (coverage < 0.45: "启用", "send"), but none of its names.
    for reworded in ("怎样启用 GPU 加速？", "Does kbqa send my documents anywhere?"):
        retrieval = sample_pipeline.retrieve(reworded)
        assert retrieval.evidence.coverage < sample_pipeline.settings.abstain_min_coverage
        assert not sample_pipeline.would_abstain(retrieval), reworded
    # Close in meaning but about a name the documents never mention: refused, and the name is given.
    near_miss = Pipeline(sample_pipeline.settings, sample_pipeline.embedder, sample_pipeline.reranker, _never_generate)
    answer = near_miss.ask("How do I enable GPU acceleration on a Raspberry Pi?")
    assert answer.abstained and "Raspberry" in answer.text


class _ScriptedGenerator(Generator):
    """Forces a rare path: the model answers a reworded question with something no passage says."""

    def __init__(self, pieces: list[str]) -> None:
        self.info = GeneratorInfo("scripted", 4096, 1, 0, False)
        self.pieces = pieces

    def count_tokens(self, text: str) -> int:
        return len(text) // 3 + 1

    def stream_chat(self, messages, max_tokens, temperature):
        yield from self.pieces


@pytest.mark.usefixtures("backend")
def test_answer_to_a_reworded_question_is_withdrawn_when_no_passage_supports_it(sample_pipeline):
    question = "怎样启用 GPU 加速？"  # let through on meaning: coverage is low, no name is missing

    def ask_with(pieces: list[str]):
        scripted = _ScriptedGenerator(pieces)
        return Pipeline(sample_pipeline.settings, sample_pipeline.embedder, sample_pipeline.reranker,
                        lambda: scripted).ask(question)

    invented = ask_with(["在设置页面打开“硬件加速”开关，然后重启浏览器即可[1]。"])
    assert invented.abstained and "文档中似乎没有" in invented.text and "已撤回" in invented.text
    assert "硬件加速" in invented.withdrawn_draft  # kept for the UI to show, labelled, not as the answer
    grounded = ask_with(["如果机器有 NVIDIA 显卡，请用 CUDA 重新编译 llama-cpp-python[1]。"])
    assert not grounded.abstained and grounded.grounded_share == 1.0


def test_follow_up_question_is_understood_from_the_conversation(sample_pipeline):
    from core.types import Turn

    first = sample_pipeline.ask("Which port does the web interface listen on?")
    assert "8501" in first.text
    stream = sample_pipeline.ask_stream("And which address does it bind to?",
                                        [Turn("Which port does the web interface listen on?", first.text)])
    for _ in stream:
        pass
    assert stream.retrieval.question.search_text.startswith("Which port does the web interface listen on?")
    assert "127.0.0.1" in stream.answer.text
