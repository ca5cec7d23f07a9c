"""Per-sentence grounding: markers kept, moved, added or flagged; evidence spans; English and Chinese."""

from __future__ import annotations

import pytest

from core.types import Chunk
from llm.answer import make_answer
from llm.grounding import ground, support_score
from llm.sentences import split_sentences
from core.types import Source
from llm.prompt import PromptBuilder
from core.types import Hit
from retrieval.question import analyse_question

# Passages written like the sample documents' (data/): a PDF page with wrapped lines, Markdown prose.
REFERENCE = (
    "Defaults\nChunks are 256 embedder tokens long and neighbouring chunks overlap by 32 tokens.\n"
    "The web interface listens on port 8501 of\n127.0.0.1. Answers are limited to 512 tokens."
)
INSTALL = (
    "kbqa needs Python 3.11, a C compiler and about 4 GB of free disk space. Clone the repository and run "
    "`make run`. The first run compiles llama.cpp, which takes about five minutes on two cores."
)
FRUIT = "Apples are red and sweet. They grow on trees in temperate climates."
ZH_INDEX = "kbqa 的索引保存在 .kb 文件夹中。索引文件不使用 pickle 格式，因此打开索引不会执行任何代码。"
ZH_INSTALL = "kbqa 需要 Python 3.11、C 编译器和大约 4 GB 的磁盘空间。第一次运行会编译 llama.cpp，双核机器上大约五分钟。"


def evidence_texts(sentence, passages):
    return [passages[e.source_number][e.start_char : e.end_char] for e in sentence.evidence]


def test_a_supported_sentence_keeps_its_marker_and_its_evidence_is_a_passage_sentence():
    passages = {1: FRUIT, 2: REFERENCE}
    grounded = ground("The web interface listens on port 8501 [2].", passages)
    [sentence] = grounded.sentences
    assert grounded.text == "The web interface listens on port 8501 [2]."
    assert sentence.citations == (2,) and sentence.supported and not sentence.flagged
    assert sentence.score >= 0.8
    # The span is the passage's own sentence, line break and all: offsets into the passage text.
    assert evidence_texts(sentence, passages) == ["The web interface listens on port 8501 of\n127.0.0.1."]


def test_a_supported_chinese_sentence_keeps_its_marker_and_its_evidence():
    passages = {1: ZH_INSTALL, 2: ZH_INDEX}
    grounded = ground("索引文件不使用 pickle 格式[2]。", passages)
    [sentence] = grounded.sentences
    assert sentence.citations == (2,) and sentence.supported
    assert evidence_texts(sentence, passages) == ["索引文件不使用 pickle 格式，因此打开索引不会执行任何代码。"]


@pytest.mark.parametrize(
    ("answer", "moved"),
    [
        ("Chunks overlap by 32 tokens [1].", "Chunks overlap by 32 tokens [2]."),
        ("kbqa 需要大约 4 GB 的磁盘空间[2]。", "kbqa 需要大约 4 GB 的磁盘空间[1]。"),
    ],
)
def test_a_marker_whose_passage_does_not_say_it_moves_to_the_one_that_does(answer, moved):
    passages = {1: ZH_INSTALL, 2: ZH_INDEX} if "磁盘" in answer else {1: FRUIT, 2: REFERENCE}
    grounded = ground(answer, passages)
    assert grounded.text == moved
    assert grounded.sentences[0].supported and grounded.sentences[0].evidence


@pytest.mark.parametrize(
    "answer",
    [
        "The web interface listens on port 8443 [2].",  # every word is in passage 2, the number is not
        "第一次运行大约需要 15 分钟[1]。",  # the passage says five minutes
        "是的，索引文件使用 pickle 格式。[2]",  # the passage says the opposite: 不使用
    ],
)
def test_an_invented_or_reversed_sentence_is_flagged_and_keeps_the_models_marker(answer):
    passages = {1: ZH_INSTALL, 2: ZH_INDEX} if any("\u4e00" <= ch <= "\u9fff" for ch in answer) else {1: FRUIT, 2: REFERENCE}
    grounded = ground(answer, passages)
    [sentence] = grounded.sentences
    assert sentence.flagged and not sentence.supported and sentence.evidence == ()
    assert grounded.text == answer  # shown as the model wrote it, the UI marks it


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("kbqa needs Python 3.11 and a C compiler. It listens on port 8501 [2].",
         "kbqa needs Python 3.11 and a C compiler [1]. It listens on port 8501 [2]."),
        ("第一次运行会编译 llama.cpp，大约需要 5 分钟。", "第一次运行会编译 llama.cpp，大约需要 5 分钟[1]。"),
    ],
)
def test_a_supported_sentence_without_a_marker_gets_its_citation(answer, expected):
    passages = {1: ZH_INSTALL, 2: ZH_INDEX} if "运行" in answer else {1: INSTALL, 2: REFERENCE}
    grounded = ground(answer, passages)
    assert grounded.text == expected
    assert grounded.sentences[0].citations == (1,) and grounded.sentences[0].supported
    # "5" in the sentence, "five"/"五" in the passage: spelled-out numbers count.
    assert all(s.supported for s in grounded.sentences)


def test_a_co_cited_passage_that_holds_nothing_of_the_sentence_loses_its_marker():
    grounded = ground("Apples are red and sweet [1][2].", {1: FRUIT, 2: REFERENCE})
    assert grounded.text == "Apples are red and sweet [1]."


def test_sentence_offsets_point_into_the_final_text():
    grounded = ground("Chunks overlap by 32 tokens [1]. Apples are red.\n- Port 8501 [1]", {1: FRUIT, 2: REFERENCE})
    assert grounded.text == "Chunks overlap by 32 tokens [2]. Apples are red [1].\n- Port 8501 [2]"
    for sentence in grounded.sentences:
        assert grounded.text[sentence.start_char : sentence.end_char] == sentence.text


def test_chinese_sentence_is_checked_against_an_english_passage_by_numbers_and_names():
    passages = {1: FRUIT, 2: REFERENCE}
    supported = ground("网页界面监听 8501 端口[1]。", passages).sentences[0]
    assert supported.supported and supported.citations == (2,)
    # Nothing language-neutral to compare: left unchecked, neither supported nor flagged.
    unknowable = ground("网页界面只在本机上运行[2]。", passages).sentences[0]
    assert not unknowable.checked and not unknowable.flagged and unknowable.citations == (2,)


def test_english_sentence_is_checked_against_a_chinese_passage_by_numbers_and_names():
    passages = {1: ZH_INSTALL, 2: ZH_INDEX}
    sentence = ground("kbqa needs Python 3.11 and 4 GB of disk space [2].", passages).sentences[0]
    assert sentence.supported and sentence.citations == (1,)


def test_text_that_is_not_a_claim_is_not_checked_and_code_is_left_alone():
    answer = "Steps:\n```bash\nkb ingest data\n```\nThe documents do not contain the upload limit."
    grounded = ground(answer, {1: FRUIT, 2: REFERENCE})
    assert grounded.text == answer  # no marker pushed into the code block
    assert [s.checked for s in grounded.sentences] == [False, False, False]


def test_sentences_end_at_chinese_and_english_punctuation_and_keep_their_markers():
    text = "Install Python 3.11, e.g. the system one [1]. 然后运行 make run【2】。\n1. Open the UI. [3] Done!"
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Install Python 3.11, e.g. the system one [1].",
        "然后运行 make run【2】。",
        "1. Open the UI. [3]",
        "Done!",
    ]


def test_support_score_needs_every_number():
    assert support_score("The web interface listens on port 8501.", REFERENCE) == 1.0
    assert support_score("The web interface listens on port 8502.", REFERENCE) == 0.0
    assert support_score("Apples are red.", REFERENCE) == 0.0


def test_an_invented_setting_name_is_not_supported_by_a_passage_holding_its_parts():
    settings = ("Change the chunk size with KB_CHUNK_TOKENS. The web interface listens on port 8501; "
                "every setting is an environment variable.")
    invented = ground("To change the port, set the KB_PORT environment variable [1].", {1: settings})
    assert invented.sentences[0].flagged  # "kb" and "port" are both in the passage, KB_PORT is not
    stated = ground("Set the kb_chunk_tokens environment variable to change the chunk size [1].", {1: settings})
    assert stated.sentences[0].supported  # the same identifier, whatever its case


def test_answer_carries_sentences_and_withdraws_the_one_stating_what_no_passage_holds():
    sources = [Source(n, Hit(Chunk(f"doc{n}.md", None, (), 0, len(t), t), 0.9, n), t)
               for n, t in ((1, FRUIT), (2, REFERENCE))]
    answer = make_answer(analyse_question("q"), "The web interface listens on port 8501 [1]. It uses TLS 1.3 [2].", sources)
    assert answer.text == "The web interface listens on port 8501 [2]."  # the marker moved to the passage that says it
    assert [s.supported for s in answer.sentences] == [True]
    assert answer.grounded_share == 1.0 and answer.supported
    assert [(s.text, s.missing) for s in answer.withdrawn] == [("It uses TLS 1.3 [2].", ("1.3", "TLS"))]
    assert [c.source for c in answer.citations] == ["doc2.md"]
    unsure = make_answer(analyse_question("q"), "The web interface listens on port 8501 [1]. It is reliable and secure for teams [2].",
                         sources)
    assert [s.supported for s in unsure.sentences] == [True, False]  # no invented fact: shown, flagged
    assert [s.text for s in unsure.unsupported_sentences] == ["It is reliable and secure for teams [2]."] and not unsure.supported


@pytest.mark.answer_quality
def test_real_model_answer_is_grounded_in_the_passage_it_cites(generator):
    """The default model answers over two passages; its claim about the port is found, with evidence."""
    hits = [Hit(Chunk("fruit.md", None, (), 0, len(FRUIT), FRUIT), 0.9, 1),
            Hit(Chunk("quick-reference.pdf", 2, (), 0, len(REFERENCE), REFERENCE), 0.9, 2)]
    prompt = PromptBuilder(generator.count_tokens, 4096, 128).build(analyse_question("Which port does the web interface listen on?"), hits)
    generated = "".join(generator.stream_chat(prompt.messages, 128, 0.0))
    answer = make_answer(analyse_question("Which port does the web interface listen on?"), generated, prompt.sources)
    port = [s for s in answer.sentences if "8501" in s.text]
    assert port, generated
    assert all(s.supported and s.citations == (2,) for s in port), answer.sentences
    for sentence in port:
        for evidence in sentence.evidence:
            assert "8501" in answer.citation(2).passage[evidence.start_char : evidence.end_char]


def test_a_figure_from_the_wrong_table_row_is_flagged():
    from llm.figures import figures_in_right_rows

    table = (
        "| | Three Months Ended April 1, 2023 | Three Months Ended March 26, 2022 |\n| --- | --- | --- |\n"
        "| Net sales: Total net sales | 94,836 | 97,278 |\n| Cost of sales: Total cost of sales | 52,860 | 54,719 |\n"
        "| Gross margin | 41,976 | 42,559 |"
    )
    question = "What were Apple's total net sales in the quarter ended April 1, 2023?"
    assert figures_in_right_rows(analyse_question(question), "Total net sales were $94,836 million in 2023 [1].", table)
    assert not figures_in_right_rows(analyse_question(question), "Total net sales were $52,860 million [1].", table)
    assert figures_in_right_rows(analyse_question(question), "Apple sold many phones [1].", table)  # no figure: nothing to check
    assert figures_in_right_rows(analyse_question("What is the GPU speed?"), "It is 5 times faster [1].", "It is 5 times faster.")


def test_an_acronym_in_the_question_names_the_row_that_spells_it_out():
    """"EPS" and "R&D" are the rows "Earnings (loss) per share …—diluted" and "Research and development",
    for the figure check and for the table-row preference of retrieval alike."""
    from llm.figures import figures_in_right_rows
    from retrieval.table_rows import prefer_asked_rows

    statement = (
        "| | Three Months Ended Sep 30, 2023 | Nine Months Ended Sep 30, 2023 |\n| --- | --- | --- |\n"
        "| Research and development | 3,870 | 12,059 |\n| Net income (loss) | 297 | (2,000) |\n"
        "| Earnings (loss) per share attributable to Intel—diluted | $0.07 | $(0.23) |"
    )
    eps = analyse_question("What diluted EPS did Intel report for Q3 2023?")
    assert figures_in_right_rows(eps, "Diluted EPS was $0.07 [1].", statement)
    assert not figures_in_right_rows(eps, "Diluted EPS was $3,870 [1].", statement)

    prose = "R&D spending increased as we invested in new process technology, and R&D remains a priority."
    hits = [Hit(Chunk("q3.pdf", 13, (), 0, len(prose), prose), 0.9, 1),
            Hit(Chunk("q3.pdf", 6, (), 0, len(statement), statement), 0.8, 2)]
    ranked = prefer_asked_rows(analyse_question("How much did Intel spend on R&D in Q3 2023?"), hits, weight=1.0)
    assert [hit.chunk.page for hit in ranked] == [6, 13]  # without the spelled-out row the prose stays first


def test_the_row_check_reads_tables_as_the_prompt_shows_them():
    from llm.figures import figures_in_right_rows
    from llm.prompt import linearise_tables

    shown = linearise_tables(
        "| | Three Months Ended April 1, 2023 | Six Months Ended April 1, 2023 |\n| --- | --- | --- |\n"
        "| Total net sales | 94,836 | 211,990 |\n| Total cost of sales | 52,860 | 119,860 |"
    )
    assert shown.splitlines()[0] == "Total net sales — Three Months Ended April 1, 2023: 94,836; Six Months Ended April 1, 2023: 211,990"
    question = "What were total net sales in the quarter ended April 1, 2023?"
    assert figures_in_right_rows(analyse_question(question), "Total net sales were $94,836 million [1].", shown)
    assert not figures_in_right_rows(analyse_question(question), "Total net sales were $52,860 million [1].", shown)


def test_a_number_the_question_states_need_not_stand_in_the_passage():
    question = analyse_question("TiDB 8.4 里 TiKV 的 sst-max-size 默认值改成了多少？")
    passage = {1: "sst-max-size 的默认值从 144MiB 修改为 384MiB，以减少 SST 文件数量。"}
    repeated = "TiDB 8.4 里 TiKV 的 sst-max-size 默认值改成了 384 MiB。[1]"
    assert not ground(repeated, passage).sentences[0].supported  # 8.4 is in no passage
    assert ground(repeated, passage, given=question.stated_numbers).sentences[0].supported
    invented = "TiDB 8.4 里 TiKV 的 sst-max-size 默认值改成了 512 MiB。[1]"
    assert not ground(invented, passage, given=question.stated_numbers).sentences[0].supported


def test_supporting_spans_point_into_the_passage_when_the_model_was_shown_an_excerpt():
    """The prompt may show an excerpt of a passage ("… Bananas are yellow."); the citation highlights the
    passage itself, so the span must be the sentence's place there, not its place in the excerpt."""
    passage = "Apples are red. Pears grow on trees. Bananas are yellow in the shops of Lima."
    excerpt = "… Bananas are yellow in the shops of Lima."
    sources = [Source(1, Hit(Chunk("fruit.md", None, (), 0, len(passage), passage), 0.9, 1), excerpt)]
    answer = make_answer(analyse_question("What colour are bananas in Lima?"),
                         "Bananas are yellow in the shops of Lima [1].", sources)
    (start, end), = answer.supported_spans(1)
    assert passage[start:end].startswith("Bananas are yellow")
