"""The facts of an answer sentence, and the answers built from them: what no passage holds is withdrawn.

String-level: passages and drafts written here, no model (the pipeline tests ask the real one).
"""

from __future__ import annotations

import pytest

from core.types import Chunk, Hit, Source
from llm.answer import AnswerPolicy, make_answer
from llm.facts import ShownFacts, facts
from retrieval.question import analyse_question

STATEMENT = "| | Three Months Ended April 1, 2023 | Three Months Ended March 26, 2022 |\n| --- | --- | --- |\n" \
            "| Total net sales | 94,836 | 97,278 |\n| Data Center | 14,514 | 3,833 |\n| Revenue | 18,120 | 5,931 |"


def shown(*texts: str, pages=None) -> ShownFacts:
    return ShownFacts({n: text for n, text in enumerate(texts, start=1)},
                      {n: (f"doc{n}.pdf", (pages or {}).get(n, n)) for n in range(1, len(texts) + 1)})


def missing(sentence: str, passages: ShownFacts, cited=(1,), given=()) -> list[str]:
    return [fact.written for fact in passages.missing(sentence, facts(sentence, given), cited)]


@pytest.mark.parametrize("sentence", [
    "Total net sales were $94,836 million.",
    "Total net sales were $94.8 billion.",          # another scale, the written precision
    "Net sales fell 2.5% from a year earlier.",     # (97,278 - 94,836) / 97,278, and the sentence says it changed
    "Data Center was 80% of total revenue.",        # 14,514 / 18,120 as a share
    "The quarter ended on April 1, 2023.",          # a date in the table's heading
    "Net sales were 94,836 in April 2023.",         # a month and year the passage dates
])
def test_facts_the_passage_holds_in_another_form_are_held(sentence):
    assert missing(sentence, shown(STATEMENT)) == []


@pytest.mark.parametrize("sentence, invented", [
    ("The repair cost was $100,000.", ["100,000"]),
    ("The overall response rate was 75.0%.", ["75.0%"]),
    ("Net sales were $94.836123 billion.", ["94.836123 billion"]),   # more precision than any passage writes
    ("Ashleigh Barty won the final.", ["Ashleigh Barty"]),
    ("It premiered on November 17, 2019.", ["November 17, 2019"]),
    ("Set KB_PORT to change it.", ["KB_PORT"]),
])
def test_facts_no_passage_holds_are_named(sentence, invented):
    assert missing(sentence, shown(STATEMENT, "Tim Cook is the CEO of Apple.")) == invented


def test_a_computed_figure_needs_the_sentence_to_say_it_computed():
    # 80 is 14,514 / 18,120, but a sentence that does not say so is stating 80 as a figure of its own.
    assert missing("The target is 80%.", shown(STATEMENT)) == ["80%"]


def test_the_questions_own_numbers_and_names_are_not_facts_of_the_answer():
    assert missing("Apple's 2024 net sales in Cupertino were not reported.", shown(STATEMENT),
                   given={"2024", "cupertino"}) == []


def test_a_page_is_held_only_by_the_cited_passages_own_page():
    passages = shown("The web interface listens on port 8501.", "Other text.", pages={1: 2, 2: 5})
    assert missing("This is on page 2 of doc1.pdf.", passages, cited=(1,)) == []
    assert missing("This is on page 5.", passages, cited=(1,)) == ["page 5"]
    assert missing("See page 2 of handbook.pdf.", passages, cited=(1,)) == ["handbook.pdf"]


def test_chinese_dates_and_figures_in_any_writing():
    passages = shown("报名截止时间为2018年12月19日，学费为每年5000元，录取约3万人。")
    assert missing("截止日期是12月19日。", passages) == []
    assert missing("学费是5,000元，录取3万人。", passages) == []
    assert missing("学费是6000元。", passages) == ["6000"]


def _source(number: int, text: str, header: str = "", source: str = "") -> Source:
    chunk = Chunk(source=source or f"doc{number}.md", page=None, heading_path=(), start_char=0, end_char=len(text),
                  text=text, header=header)
    return Source(number, Hit(chunk=chunk, first_stage_score=1.0, first_stage_rank=number), text)


def test_a_sentence_stating_an_invented_figure_is_withdrawn_and_the_rest_kept():
    sources = [_source(1, "The accident happened on runway 27 in heavy rain. The aircraft was substantially damaged.")]
    answer = make_answer(analyse_question("What did the repairs cost?"),
                         "The aircraft was substantially damaged [1]. The repairs cost $100,000 [1].", sources)
    assert answer.text == "The aircraft was substantially damaged [1]."
    assert [s.withdrawn_because for s in answer.withdrawn] == ["states 100,000, which no passage holds"]
    assert not answer.abstained and answer.supported


def test_an_answer_made_only_of_invented_facts_is_declined_and_the_draft_kept():
    sources = [_source(1, "The protocol defines the overall response rate as the share of patients with a response.")]
    question = analyse_question("What overall response rate did the trial report?")
    answer = make_answer(question, "The overall response rate was 75.0% [1].", sources)
    assert answer.abstained and not answer.supported and answer.citations == ()
    assert "75.0%" in answer.text  # the refusal names what no passage holds
    assert answer.withdrawn_draft == "The overall response rate was 75.0% [1]."
    assert len(answer.sources) == 1  # the closest passages are still shown


def test_a_figure_from_another_years_page_is_withdrawn():
    sources = [_source(1, "在2021年全国高校法语专业四级考试中，中法学院2019级学生通过率达93%，优秀率达59%。",
                       header="2021中法学院热点问题解答 · dated 2021-06-30")]
    question = analyse_question("2019年法语专业四级考试的优秀率是多少？")
    answer = make_answer(question, "2019年的优秀率为59%。[1]", sources)
    assert answer.abstained  # "2019级" is a class, not the year the rate is of
    assert "2021" in answer.withdrawn[0].withdrawn_because


def test_the_right_years_page_keeps_its_answer():
    sources = [_source(1, "在2019年全国高校法语专业四级考试中，中法学院2017级学生通过率达96%，优秀率达48%。",
                       header="2020中法学院热点问题解答 · dated 2020-07-10")]
    question = analyse_question("2019年法语专业四级考试的优秀率是多少？")
    answer = make_answer(question, "2019年的优秀率为48%。[1]", sources)
    assert not answer.abstained and answer.supported and "48%" in answer.text


def test_supported_means_every_shown_sentence_is_supported():
    sources = [_source(1, "The web interface listens on port 8501 of 127.0.0.1.")]
    question = analyse_question("Which port does the web interface use?")
    answer = make_answer(question, "The web interface listens on port 8501 [1]. It is very fast and reliable [1].",
                         sources)
    assert not answer.abstained and not answer.supported  # the second sentence is shown, flagged
    assert [s.supported for s in answer.sentences] == [True, False]
    strict = make_answer(question, "It is very fast and reliable [1].", sources,
                         AnswerPolicy(decline_unsupported=True))
    assert strict.abstained  # nothing supported left
    lenient = make_answer(question, "It is very fast and reliable [1].", sources, AnswerPolicy(decline_unsupported=False))
    assert not lenient.abstained and not lenient.supported  # kept, flagged: no invented fact in it


def test_the_model_saying_the_documents_lack_the_answer_is_a_refusal():
    sources = [_source(1, "The web interface listens on port 8501 of 127.0.0.1.")]
    answer = make_answer(analyse_question("What does the licence cost?"),
                         "The documents do not mention the cost of a licence.", sources)
    assert answer.abstained


@pytest.mark.parametrize("draft", ["[1] [2][3]", "U.S [1]. U.S [1].", "[1]."])
def test_an_answer_made_of_markers_and_fragments_is_not_an_answer(draft):
    sources = [_source(1, "Chunks are 256 tokens long (KB_CHUNK_TOKENS)."), _source(2, "Other."), _source(3, "More.")]
    answer = make_answer(analyse_question("How long is a chunk?"), draft, sources)
    assert answer.abstained and answer.withdrawn_draft


def test_a_bare_yes_is_an_answer():
    sources = [_source(1, "Yes, the index files are stored without pickle.")]
    answer = make_answer(analyse_question("Is pickle avoided?"), "Yes [1].", sources)
    assert not answer.abstained


def test_a_bare_figure_is_an_answer_when_a_passage_states_it():
    # The 0.5B model through the model server answered "Which port ...?" with "[1]: [8501]".
    sources = [_source(1, "The web interface listens on port 8501 and binds to 127.0.0.1 by default.")]
    question = analyse_question("Which port does the web interface listen on?")
    for draft in ("[1]: [8501]", "8501 [1]."):
        answer = make_answer(question, draft, sources)
        assert not answer.abstained and "8501" in answer.text
    assert make_answer(question, "8080 [1].", sources).abstained  # a bare figure no passage states


def test_passages_of_the_asked_year_come_first_and_a_cohort_is_not_a_year():
    from retrieval.named_years import prefer_named_years

    def hit(rank: int, text: str, header: str = "") -> Hit:
        return Hit(Chunk(f"p{rank}.html", None, (), 0, len(text), text, header=header), 1.0 / rank, rank)

    hits = [hit(1, "在2021年的考试中，中法学院2019级学生通过率达93%，优秀率达59%。", "dated 2021-07-10"),
            hit(2, "学费为每年5000元。"),
            hit(3, "在2019年的考试中，中法学院2017级学生通过率达96%，优秀率达48%。", "dated 2020-07-10")]
    assert [h.chunk.source for h in prefer_named_years(hits, [2019])] == ["p3.html", "p2.html", "p1.html"]
    assert prefer_named_years(hits, []) == hits


def test_a_figure_from_another_quarters_document_is_withdrawn_unless_the_scope_chose_it():
    header = "2023 Q3 INTC · Intel Corporation · quarter ended September 30, 2023"
    sources = [_source(1, "| Net revenue | 14,158 | 15,338 |", header=header, source="2023 Q3 INTC.pdf")]
    question = analyse_question("What revenue did Intel report for Q4 2023?")
    answer = make_answer(question, "Intel reported net revenue of $14,158 million [1].", sources)
    assert answer.abstained and "2023 Q3" in answer.withdrawn[0].withdrawn_because
    fiscal = analyse_question("What revenue did Intel report for the fourth quarter of fiscal 2023?")
    assert not make_answer(fiscal, "Intel reported net revenue of $14,158 million [1].", sources).withdrawn
    scoped = make_answer(question, "Intel reported net revenue of $14,158 million [1].", sources,
                         scoped=("2023 Q3 INTC.pdf",))
    assert not scoped.withdrawn


def test_a_figure_copied_from_a_sentence_about_something_else_is_withdrawn():
    sources = [_source(1, "Restructuring charges: employee severance and benefit arrangements of $607 million. "
                          "The company employed about 124,800 people at year end.")]
    question = analyse_question("How many employees did Intel let go under its 2022 Restructuring Program?")
    strict = AnswerPolicy(figure_context_min=0.6)
    copied = make_answer(question, "Intel let go of 607 million in severance under its restructuring [1].", sources, strict)
    assert copied.abstained, copied.text
    right = make_answer(analyse_question("What were Intel's employee severance and benefit charges?"),
                        "Employee severance and benefit charges were $607 million [1].", sources, strict)
    assert not right.abstained and right.supported


def test_days_written_as_a_span_or_without_their_year_hold_a_full_date():
    passages = shown("（一）选拔测试时间：2019年1月3-4日", "2015年高水平运动队招生简章：网上报名即日起至2月21日")
    assert missing("测试在2019年1月3日和4日。", passages, cited=(1,)) == []
    assert missing("报名到2015年2月21日结束。", passages, cited=(2,)) == []
    assert missing("报名到2016年2月21日结束。", passages, cited=(2,)) == ["2016年2月21日"]


def test_a_document_the_model_calls_silent_is_quoted_when_its_passage_names_what_was_asked():
    from llm.per_document import quoted_line

    def source(number: int, text: str) -> Source:
        return Source(number, Hit(Chunk("page.md", None, (), 0, len(text), text), 1.0, number), text)

    question = analyse_question("哪些教程页面讲到了用 UploadFile 接收上传的文件？")
    names_it = source(2, "# 请求文件\n\n可以使用 `UploadFile` 接收上传的文件。它比 bytes 更好。")
    assert quoted_line(question, names_it, "请求文件") == "可以使用 `UploadFile` 接收上传的文件。 [2]"
    assert quoted_line(question, source(3, "# 表单\n\n表单数据使用 Form。"), "表单") is None
    # The company every filing is about names no document; a threshold is a judgement, not a name to find.
    intel = analyse_question("Which of Intel's filings describe the Tower Semiconductor acquisition as pending?")
    filing = source(1, "Intel Corporation reported revenue. We agreed to acquire Tower Semiconductor; it is pending.")
    assert quoted_line(intel, filing, "Intel Corporation · quarter ended April 1, 2023") == \
        "We agreed to acquire Tower Semiconductor; it is pending. [1]"
    assert quoted_line(intel, source(1, "Intel Corporation reported revenue."), "Intel Corporation") is None
    threshold = analyse_question("In which filings was net income more than $20 billion?")
    assert quoted_line(threshold, source(1, "Net income was $20,081 million."), "Apple Inc") is None


def test_a_sentence_whose_figure_its_cited_table_writes_is_kept_though_its_words_are_not():
    # A notice's table read one cell per line (the 2015 admissions page of the dated-pages set): the sentence
    # shares too few words with any two of its lines to be supported, yet the passage writes 53.
    table = ("中国人民大学2015年艺术类（美术）专业招生简章\n\n一、招生专业与计划\n\n序号\n\n招生专业名称\n\n招生\n\n计划\n\n"
             "入学后分流专业（方向）\n\n1\n\n绘画\n\n27\n\n中国画、油画\n\n2\n\n设计学类\n\n53\n\n视觉传达设计\n\n"
             "环境设计（景观建筑方向）\n\n3\n\n美术学（艺术管理与策划方向）\n\n10\n\n总计\n\n90")
    sources = [_source(1, table)]
    question = analyse_question("2015年人大美术类招生，设计学类计划招多少人？")
    draft = "2015年人大美术类招生，设计学类计划招53人。[1]"
    kept = make_answer(question, draft, sources)
    assert not kept.abstained and "53" in kept.text and not kept.supported  # shown, flagged as unverified
    assert kept.sentences[0].figures_held  # what lets a question let through on meaning alone keep it (app.checks)
    assert make_answer(question, draft, sources, AnswerPolicy(keep_held_figures=False)).abstained
    assert make_answer(question, "2015年人大美术类招生，设计学类计划招60人。[1]", sources).abstained


def test_a_date_from_another_versions_release_notes_is_withdrawn():
    notes = _source(1, "TiDB 8.5.4 发版说明。发版日期：2025 年 11 月 27 日。修复了统计信息的问题。", header="v8.5.4 · dated 2025-11-27")
    question = analyse_question("TiDB v8.5.8 是什么时候发布的？")
    answer = make_answer(question, "TiDB v8.5.8 是在 2025 年 11 月 27 日发布的 [1]。", [notes])
    assert answer.abstained and "v8.5.4" in answer.withdrawn[0].withdrawn_because
    asked_right = make_answer(analyse_question("TiDB v8.5.4 是什么时候发布的？"), "TiDB v8.5.4 是在 2025 年 11 月 27 日发布的 [1]。",
                              [notes])
    assert not asked_right.abstained and asked_right.supported
