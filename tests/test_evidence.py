"""Evidence for abstention: keyword coverage of the question and the answer-next-to-question check."""

from __future__ import annotations

import pytest

from llm.answer_support import answer_support
from core.types import Evidence
from retrieval.evidence import AbstentionPolicy
from retrieval.keyword_index import KeywordIndex
from retrieval.question import analyse_question
from text.keywords import keyword_tokens

QUESTION = "Super Bowl 2021 location"
ANSWER_PASSAGE = "Feb 7, 2021. Super Bowl 2021 will take place at Raymond James Stadium in Tampa, Florida."
DISTRACTOR = "Reserve your spot in Las Vegas for Super Bowl LVIII! Tickets for the big game are on sale."


def test_coverage_asks_whether_every_important_question_word_is_somewhere_in_the_passages():
    index = KeywordIndex()
    index.add(0, ANSWER_PASSAGE)
    index.add(1, DISTRACTOR)
    index.add(2, "The 2021 season ended in February.")
    assert index.coverage(keyword_tokens("Super Bowl 2021 stadium"), [0]) == 1.0
    # "location" is in no chunk at all, so it weighs most; "2021" is missing from the distractor too.
    assert 0 < index.coverage(keyword_tokens(QUESTION), [1]) < index.coverage(keyword_tokens(QUESTION), [0]) < 1.0
    assert index.coverage(keyword_tokens(QUESTION), [0, 1, 2]) == index.coverage(keyword_tokens(QUESTION), [0])
    assert index.coverage(keyword_tokens("volcano eruption"), [0, 1]) == 0.0
    chinese = KeywordIndex()
    chinese.add(0, "京沪高铁全长约一千三百公里。")
    assert chinese.coverage(keyword_tokens("京沪高铁有多长"), [0]) > chinese.coverage(keyword_tokens("成渝高铁有多长"), [0])


def test_answer_must_stand_next_to_the_question_words():
    right = answer_support(analyse_question(QUESTION), "It was held in Tampa, Florida [1].", [ANSWER_PASSAGE, DISTRACTOR])
    wrong = answer_support(analyse_question(QUESTION), "It was held in Las Vegas [1].", [ANSWER_PASSAGE, DISTRACTOR])
    invented = answer_support(analyse_question(QUESTION), "It was held in Miami [1].", [ANSWER_PASSAGE, DISTRACTOR])
    assert right.score > wrong.score > invented.score == 0.0
    assert right.question_share > wrong.question_share  # "2021" is not next to "Las Vegas"
    nothing_new = answer_support(analyse_question(QUESTION), "Super Bowl 2021 location.", [ANSWER_PASSAGE])
    assert nothing_new.answer_terms == 0 and nothing_new.score == 0.0

    zh_passage = "2022年世界杯在卡塔尔举行，阿根廷队夺得冠军。2018年的冠军是法国队。"
    assert answer_support(analyse_question("2022年世界杯冠军是谁？"), "阿根廷队。", [zh_passage]).score > \
        answer_support(analyse_question("2022年世界杯冠军是谁？"), "巴西队。", [zh_passage]).score


def test_policy_thresholds():
    policy = AbstentionPolicy(min_coverage=0.5, min_dense=0.8)
    assert policy.supports(Evidence(coverage=0.6, best_keyword=0.3, best_dense=0.85))
    assert not policy.supports(Evidence(coverage=0.4, best_keyword=0.3, best_dense=0.85))
    assert not policy.supports(Evidence(coverage=0.9, best_keyword=0.3, best_dense=0.7))


def test_low_coverage_is_forgiven_only_for_a_close_passage_holding_every_name_and_number():
    policy = AbstentionPolicy(min_coverage=0.45, reworded_min_dense=0.86)
    reworded = Evidence(coverage=0.16, best_keyword=0.1, best_dense=0.90)
    assert policy.supports(reworded)
    assert not policy.supports(Evidence(coverage=0.16, best_keyword=0.1, best_dense=0.90, missing_specifics=("2021",)))
    assert not policy.supports(Evidence(coverage=0.16, best_keyword=0.1, best_dense=0.80))
    assert not AbstentionPolicy(min_coverage=0.45).supports(reworded)  # no cosine threshold: coverage alone


def test_an_answer_let_through_on_meaning_alone_needs_one_supported_sentence():
    policy = AbstentionPolicy(min_coverage=0.45, reworded_min_dense=0.86)
    reworded = Evidence(coverage=0.16, best_keyword=0.1, best_dense=0.90)
    covered = Evidence(coverage=0.8, best_keyword=0.5, best_dense=0.90)
    assert not policy.keeps_answer(reworded, grounded_share=0.0)
    assert policy.keeps_answer(reworded, grounded_share=0.5)
    assert policy.keeps_answer(reworded, grounded_share=None)  # nothing checkable ("不能。")
    assert policy.keeps_answer(covered, grounded_share=0.0)  # covered questions are judged before generation only


def test_an_acronym_spelled_out_or_a_word_on_the_cover_is_not_missing(tmp_path):
    import numpy as np

    from core.types import Chunk, Hit
    from retrieval.embedders import EmbedderIdentity
    from retrieval.evidence import measure_evidence
    from text.keywords import spelled_out
    from retrieval.store import Collection

    pages = ["FORM 10-Q\nQuarterly report of Acme Corporation", "Acme at a glance",
             "Diluted earnings per share $ 1.26", "Research and development 3,870"]
    chunks = [Chunk("acme.pdf", n, (), 0, len(text), text) for n, text in enumerate(pages, start=1)]
    collection = Collection.open(tmp_path, EmbedderIdentity("test", 4, "v1"), create=True)
    collection.put_file("acme.pdf", "sha", chunks, np.eye(4, dtype=np.float32), pages=4)
    ids = collection.chunk_ids_of(["acme.pdf"])
    statement = [Hit(chunk=collection.chunk(ids[2]), chunk_id=ids[2], first_stage_score=1.0, first_stage_rank=1, dense_score=0.9,
                     keyword_score=1.0)]

    def missing(question: str) -> tuple[str, ...]:
        return measure_evidence(collection, analyse_question(question), statement).missing_specifics

    assert missing("Show Acme's diluted EPS in these 10-Qs") == ()  # spelled out; "FORM 10-Q" on the cover
    assert missing("Acme's diluted EPS in the 10-K")  # a form the cover does not name
    assert spelled_out("r&d", pages[3]) and not spelled_out("ai", "an important point")  # two letters need "&"
    assert missing("Acme's ROE for the quarter") == ("roe",)
    # Coverage, too, takes the acronym as the words that spell it out: the passage covers "diluted EPS" whole.
    assert measure_evidence(collection, analyse_question("diluted EPS"), statement).coverage == pytest.approx(1.0)
    assert measure_evidence(collection, analyse_question("diluted ROE"), statement).coverage < 0.6

