"""Model assembly, prompt fitting with the real tokenizer, citation handling, the GPU notice."""

from __future__ import annotations

import hashlib

import pytest

from core.types import Chunk
from llm import generator as generator_module
from core.types import Answer, Source
from llm.answer import make_answer
from llm.generator import LlamaCppGenerator
from llm.models import DEFAULT_MODEL, QWEN_0_5B, BuiltinModel, ModelError, assemble, resolve_model_path
from llm.prompt import PromptBuilder, question_language
from core.types import Hit
from retrieval.question import analyse_question


def hit(text: str, source: str = "doc.pdf", page: int | None = 1, rank: int = 1) -> Hit:
    return Hit(Chunk(source, page, (), 0, len(text), text), first_stage_score=0.9, first_stage_rank=rank)


def fake_part_packages(tmp_path, monkeypatch, blobs: list[bytes]) -> tuple[str, ...]:
    names = []
    for index, blob in enumerate(blobs, start=1):
        package = tmp_path / "site" / f"kbqa_test_part{index}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{index:02d}.bin").write_bytes(blob)
        names.append(package.name)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return tuple(names)


def test_parts_are_assembled_once_and_verified(tmp_path, monkeypatch):
    blobs = [b"GGUF" + b"a" * 100, b"b" * 50]
    whole = b"".join(blobs)
    model = BuiltinModel("tiny", "test", fake_part_packages(tmp_path, monkeypatch, blobs), len(whole),
                         hashlib.sha256(whole).hexdigest())
    path = assemble(model, tmp_path / "cache")
    assert path.read_bytes() == whole
    stamp_time = (tmp_path / "cache" / "tiny.gguf.verified").stat().st_mtime_ns
    assert assemble(model, tmp_path / "cache") == path  # second call: no re-assembly
    assert (tmp_path / "cache" / "tiny.gguf.verified").stat().st_mtime_ns == stamp_time


def test_damaged_part_is_refused_and_leaves_nothing_behind(tmp_path, monkeypatch):
    blobs = [b"GGUF" + b"a" * 100, b"b" * 50]
    model = BuiltinModel("tiny", "test", fake_part_packages(tmp_path, monkeypatch, blobs), 155, "0" * 64)
    with pytest.raises(ModelError, match="damaged"):
        assemble(model, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_part_package_says_how_to_install(tmp_path):
    model = BuiltinModel("tiny", "test", ("kbqa_no_such_package",), 1, "0" * 64)
    with pytest.raises(ModelError, match="not installed"):
        assemble(model, tmp_path)


def test_a_non_gguf_path_is_refused(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelError, match="not a GGUF"):
        resolve_model_path(str(fake), tmp_path)
    with pytest.raises(ModelError, match="unknown model"):
        resolve_model_path("gpt-5", tmp_path)


def test_default_model_is_assembled_and_matches_its_checksum(model_cache):
    path = resolve_model_path(DEFAULT_MODEL, model_cache)
    assert path.stat().st_size == 1_117_320_768
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"


def test_prompt_numbers_sources_and_fits_the_context_window(generator):
    long_text = "The turbine spins at 3000 rpm. " * 200  # about 2,000 tokens
    hits = [hit("Short first passage about pumps.", rank=1), hit(long_text, "big.pdf", 7, rank=2),
            hit("Never reached.", rank=3)]
    builder = PromptBuilder(generator.count_tokens, context_window=1024, answer_tokens=256)
    prompt = builder.build(analyse_question("How fast does the turbine spin?"), hits)
    user = prompt.messages[-1].content
    assert [s.number for s in prompt.sources] == [1, 2]  # the third did not fit
    assert "[1] doc.pdf, page 1" in user and "[2] big.pdf, page 7" in user
    assert len(prompt.sources[1].text) < len(long_text)  # shortened at a sentence end
    assert prompt.sources[1].text.endswith("rpm.")
    total = sum(generator.count_tokens(m.content) for m in prompt.messages)
    assert total + 256 <= 1024


def test_sources_after_the_first_are_trimmed_to_the_sentences_that_match_the_question(generator):
    filler = "The museum shop sells postcards and umbrellas. Opening hours vary in winter. "
    second = filler * 6 + "Tickets for the tower cost 12 euros for adults. " + filler * 6
    chinese = "博物馆的商店出售明信片。" * 8 + "塔楼门票成人十二欧元。" + "冬季开放时间会有变化。" * 8
    hits = [hit("The tower is 300 metres tall. " * 8, "a.md", rank=1), hit(second, "b.md", rank=2),
            hit(chinese, "c.md", rank=3)]
    builder = PromptBuilder(generator.count_tokens, 4096, 256, source_tokens=40, whole_sources=1)
    prompt = builder.build(analyse_question("How much do tower tickets cost?"), hits)
    first, trimmed, other = (source.text for source in prompt.sources)
    assert first == hits[0].chunk.text  # the best-ranked source stays whole
    assert "Tickets for the tower cost 12 euros for adults." in trimmed
    assert trimmed.startswith("…") and trimmed.endswith("…") and generator.count_tokens(trimmed) <= 40 + 4
    assert generator.count_tokens(other) <= 44  # no shared keyword: cut to its opening within the budget

    zh = builder.build(analyse_question("塔楼门票多少钱？"), hits).sources[2].text
    assert "塔楼门票成人十二欧元。" in zh and len(zh) < len(chinese)
    whole = PromptBuilder(generator.count_tokens, 4096, 256).build(analyse_question("How much do tower tickets cost?"), hits)
    assert whole.prompt_tokens > prompt.prompt_tokens + 150  # what trimming saves in prompt processing


def test_a_trimmed_table_keeps_its_heading_row_whole_and_reads_by_column(generator):
    """A heading cell with "; " in it is not a sentence end: the trimmed table still names its columns."""
    prose = "Revenue decreased due to lower demand in every segment. " * 6
    table = (prose + "\n| (In Millions, Except Per Share Amounts; Unaudited) | Three Months Ended Sep 30, 2023 "
             "| Nine Months Ended Sep 30, 2023 |\n| --- | --- | --- |\n| Net revenue | $14,158 | $38,822 |\n"
             "| Gross margin | 5,833 | 15,054 |\n" + prose)
    hits = [hit("The tower is 300 metres tall.", "a.md", rank=1), hit(table, "q3.pdf", 6, rank=2)]
    builder = PromptBuilder(generator.count_tokens, 4096, 256, source_tokens=80, whole_sources=1)
    shown = builder.build(analyse_question("What was net revenue in the three months ended Sep 30, 2023?"),
                          hits).sources[1].text
    assert "Net revenue — Three Months Ended Sep 30, 2023: $14,158" in shown
    assert "$38,822" not in shown  # the column the question does not ask for is left out
    assert "Unaudited) |" not in shown  # no heading row torn in half


def test_the_named_documents_period_picks_among_the_columns_the_question_leaves_open():
    from llm.prompt import linearise_tables

    table = ("| | Three Months Ended Sep 30, 2023 | Three Months Ended Oct 1, 2022 | Nine Months Ended Sep 30, 2023 |\n"
             "| --- | --- | --- | --- |\n| Net revenue | $14,158 | $15,338 | $38,822 |")
    latest = analyse_question("What was Intel's net revenue in its most recent quarter?")
    assert linearise_tables(table, latest) == (  # "quarter" leaves both three-month columns
        "Net revenue — Three Months Ended Sep 30, 2023: $14,158; Three Months Ended Oct 1, 2022: $15,338")
    period = "quarter ended September 30, 2023"
    assert linearise_tables(table, latest, period=period) == "Net revenue — Three Months Ended Sep 30, 2023: $14,158"
    year_ago = analyse_question("What was Intel's net revenue in the quarter ended Oct 1, 2022?")
    assert linearise_tables(table, year_ago, period=period) == "Net revenue — Three Months Ended Oct 1, 2022: $15,338"
    # One prompt per document across quarters: the document's "April 1, 2023" is the heading's "Apr 1, 2023".
    first_quarter = ("| | Three Months Ended Apr 1, 2023 | Three Months Ended Apr 2, 2022 |\n| --- | --- | --- |\n"
                     "| Research and development | 4,109 | 4,362 |")
    across = analyse_question("Track Intel's quarterly research and development spending over these 10-Qs.")
    assert linearise_tables(first_quarter, across, focus="quarter ended April 1, 2023") == (
        "Research and development — Three Months Ended Apr 1, 2023: 4,109")


def test_question_language():
    assert question_language("索引文件使用 pickle 格式吗？") == "zh"
    assert question_language("Which port does the UI use?") == "en"


def test_invalid_markers_are_dropped_and_valid_ones_mapped():
    sources = [Source(1, hit("Apples are red.", "fruit.md", None), "Apples are red."),
               Source(2, hit("The pump runs at 3000 rpm.", "pump.pdf", 4), "The pump runs at 3000 rpm.")]
    answer = make_answer(analyse_question("q"), "Apples are red [1][9]. The pump runs at 3000 rpm【2】.", sources)
    assert answer.text == "Apples are red [1]. The pump runs at 3000 rpm[2]."
    assert [(c.number, c.source, c.page) for c in answer.citations] == [(1, "fruit.md", None), (2, "pump.pdf", 4)]
    assert answer.supported and len(answer.sources) == 2


def test_a_citation_to_the_wrong_source_is_moved_to_the_supporting_one():
    sources = [Source(1, hit("Apples are red and sweet.", "fruit.md", None), "Apples are red and sweet."),
               Source(2, hit("The web interface listens on port 8501.", "ref.pdf", 2),
                      "The web interface listens on port 8501.")]
    answer = make_answer(analyse_question("q"), "The web interface listens on port 8501 [1].", sources)
    assert answer.text == "The web interface listens on port 8501 [2]."
    assert [c.source for c in answer.citations] == ["ref.pdf"]


def test_answer_without_citations_is_flagged_unsupported():
    sources = [Source(1, hit("Apples are red."), "Apples are red.")]
    answer = make_answer(analyse_question("q"), "Bananas are yellow.", sources)
    assert not answer.supported and answer.citations == ()


def test_an_answer_built_without_sentences_still_works():
    # The pipeline builds "nothing found" answers this way; the new fields must default.
    answer = Answer(question="q", text="Nothing found.", citations=(), sources=(), supported=False)
    assert answer.sentences == () and answer.grounded_share is None and answer.unsupported_sentences == ()


def fake_nvidia_smi(tmp_path, exit_code: int) -> str:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho 'GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-1234)'\nexit {exit_code}\n")
    script.chmod(0o755)
    return str(script)


def test_nvidia_gpu_is_detected_by_nvidia_smi_or_the_device_node(tmp_path, monkeypatch):
    monkeypatch.setattr(generator_module, "NVIDIA_DEVICE", str(tmp_path / "nvidia0"))
    monkeypatch.setattr(generator_module.shutil, "which", lambda name: fake_nvidia_smi(tmp_path, 0))
    assert generator_module.nvidia_gpu_present()
    monkeypatch.setattr(generator_module.shutil, "which", lambda name: fake_nvidia_smi(tmp_path, 9))
    assert not generator_module.nvidia_gpu_present()  # nvidia-smi fails: no usable driver
    (tmp_path / "nvidia0").touch()
    assert generator_module.nvidia_gpu_present()
    monkeypatch.setattr(generator_module.shutil, "which", lambda name: None)
    (tmp_path / "nvidia0").unlink()
    assert not generator_module.nvidia_gpu_present()


def test_a_gpu_the_build_cannot_use_gives_the_rebuild_command_once(monkeypatch, caplog):
    monkeypatch.setattr(generator_module, "nvidia_gpu_present", lambda: True)
    monkeypatch.setattr(generator_module, "_warned", set())
    with caplog.at_level("WARNING", logger="llm.generator"):
        first = generator_module.gpu_notice(offload_supported=False)
        second = generator_module.gpu_notice(offload_supported=False)
    assert first == second and first is not None
    assert 'CMAKE_ARGS="-DGGML_CUDA=on" .venv/bin/pip install --force-reinstall --no-cache-dir ' \
           "llama-cpp-python==0.3.36" in first
    assert [r.levelname for r in caplog.records] == ["WARNING"]  # logged once, not per model load
    assert generator_module.gpu_notice(offload_supported=True) is None  # a CUDA build: nothing to say
    monkeypatch.setattr(generator_module, "nvidia_gpu_present", lambda: False)
    assert generator_module.gpu_notice(offload_supported=False) is None


def test_the_real_generator_reports_a_notice_only_for_an_unused_gpu(generator, model_cache, monkeypatch):
    info = generator.info
    unused_gpu = generator_module.nvidia_gpu_present() and not info.gpu_offload_supported
    assert (info.notice is not None) == unused_gpu
    if info.gpu_offload_supported:
        return  # a CUDA build: the rare path below cannot happen here
    # The rare path, forced: this CPU build on a machine that has an NVIDIA GPU.
    monkeypatch.setattr(generator_module, "nvidia_gpu_present", lambda: True)
    small = LlamaCppGenerator(resolve_model_path(QWEN_0_5B.name, model_cache), context_window=256)
    assert small.info.gpu_layers == 0 and generator_module.CUDA_REBUILD_COMMAND in small.info.notice
