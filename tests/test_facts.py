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
