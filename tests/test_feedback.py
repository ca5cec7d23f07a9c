"""Ratings become a regression set: the conversation store, `kb feedback export`, and `kb eval-qa` reading it."""

from __future__ import annotations

import json

import pytest

from team.conversations import ConversationNotFoundError, Conversations, answer_from_json, answer_to_json
from team.feedback import export, gold_answer
from team.conversations import RatedTurn, SavedTurn
from core.types import Answer, Citation, EvidenceSpan, SentenceSupport
from evaluation.answers import select_items
from evaluation.qa_sets import read_qa_set
from tests.server_helpers import kb

PORT_PASSAGE = "The web interface listens on port 8501 of 127.0.0.1."
OTHER_PASSAGE = "Run kb ingest data to index the sample documents."


def answer(text: str, cited: bool = True) -> Answer:
    sources = (
        Citation(1, "quick-reference.pdf", 2, (), 0, 52, PORT_PASSAGE, 0.71, document="kbqa Quick Reference"),
        Citation(2, "user-guide.md", None, ("Guide", "Ingest"), 0, 51, OTHER_PASSAGE, 0.42),
    )
    sentence = SentenceSupport(text, 0, len(text), (1,), True, 1.0, (EvidenceSpan(1, 0, 52),))
    return Answer("Which port?", text, sources[:1] if cited else (), sources, cited, (sentence,))


def test_an_answer_survives_the_store_unchanged():
    original = answer("The web interface listens on port 8501 [1].")
    assert answer_from_json(answer_to_json(original)) == original


def test_conversations_belong_to_their_user(tmp_path):
    store = Conversations(tmp_path)
    mine = store.create("carol", "guide", "  Ports   and\naddresses ")
    turn = store.add_turn("carol", mine, "Which port?", answer("Port 8501 [1]."))
    assert store.get("carol", mine).title == "Ports and addresses"
    for attempt in (lambda: store.turns("dave", mine), lambda: store.rename("dave", mine, "x"),
                    lambda: store.delete("dave", mine), lambda: store.rate("dave", turn, 1)):
        with pytest.raises(ConversationNotFoundError):
            attempt()
    store.rate("carol", turn, -1, "should say 8501")
    assert [(t.rating, t.note) for t in store.turns("carol", mine)] == [(-1, "should say 8501")]
    store.delete("carol", mine)
    assert store.list("carol") == [] and store.rated() == []


def test_rated_answers_are_exported_in_the_format_eval_qa_reads(tmp_path):
    store = Conversations(tmp_path)
    conversation = store.create("carol", "guide", "Ports")
    wrong = store.add_turn("carol", conversation, "Which port does the web interface listen on?",
                           answer("It listens on port 8080 [1]."))
    right = store.add_turn("carol", conversation, "Which port does the UI use?", answer("Port 8501 [1]."))
    vague = store.add_turn("carol", conversation, "Is it fast?", answer("Yes [1]."))
    store.rate("carol", wrong, -1, "It should say 8501")
    store.rate("carol", right, 1)
    store.rate("carol", vague, -1)  # nothing to check against: left out, and said so
    out = tmp_path / "feedback.jsonl"
    result = export(store, out)
    assert (result.written, result.down, result.up) == (2, 1, 1)
    assert result.left_out == (f"feedback-{vague}: thumbs down without the right answer in its note",)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["answer"] for line in lines] == [["8501"], ["8501"]]
    assert lines[0]["positive"] == [PORT_PASSAGE] and lines[0]["negative"] == [OTHER_PASSAGE]
    assert lines[0]["given_answer"] == "It listens on port 8080 [1]." and lines[0]["rating"] == "down"

    qa_set = read_qa_set(out)
    items = select_items(qa_set, None)
    assert [item.question for item in items] == ["Which port does the web interface listen on?", "Which port does the UI use?"]
    assert not items[0].is_correct("It listens on port 8080.") and items[0].is_correct("Port 8501.")


def rated(note: str, given: str = "It listens on port 8080 [1].", rating: int = -1) -> RatedTurn:
    return RatedTurn(SavedTurn(7, "Which port does the web interface listen on?", answer(given), 0.0, rating, note),
                     "carol", "guide", 1)


@pytest.mark.parametrize("note, gold", [
    # A quoted sentence is not a gold string to find verbatim (its period included): its facts are.
    ('It should say "The web interface listens on port 8501 of 127.0.0.1."', ["8501", "127.0.0.1"]),
    ("the right answer is “The web interface listens on port 8501.”", ["8501"]),
    ("「端口是 8501。」", ["8501"]),
    ('the answer is "Acme Corp."', ["Acme Corp"]),  # a short quoted phrase, without its trailing punctuation
    ("It should say 8501.", ["8501"]),
    ("Acme Corp.", ["Acme Corp"]),  # a short note as a whole, without its trailing punctuation
    ('It should mention the "Quick Reference Guide" that Acme Corp publishes every year for its teams.',
     ["Quick Reference Guide"]),
])
def test_gold_answers_from_notes_are_short_facts(note, gold):
    assert gold_answer(rated(note)) == gold


def test_a_note_quoting_the_right_sentence_scores_a_right_answer_right(tmp_path):
    store = Conversations(tmp_path)
    conversation = store.create("carol", "guide", "Ports")
    turn = store.add_turn("carol", conversation, "Which port does the web interface listen on?",
                          answer("It listens on port 8080 [1]."))
    store.rate("carol", turn, -1, 'It should say "The web interface listens on port 8501."')
    up = store.add_turn("carol", conversation, "Which command indexes the sample documents?",
                        answer("Run kb ingest data to index the sample documents, then open the web interface [1]."))
    store.rate("carol", up, 1)  # a whole answer sentence is no gold string either
    out = tmp_path / "feedback.jsonl"
    export(store, out)
    items = select_items(read_qa_set(out), None)
    port = next(item for item in items if "port" in item.question)
    assert port.is_correct("The web interface listens on port 8501 [1].")
    assert port.is_correct("Port 8501.") and not port.is_correct("It listens on port 8080.")
    assert all(item.question != "Which command indexes the sample documents?" or
               item.is_correct("You run kb ingest data to index the sample documents.") for item in items)


def test_kb_feedback_export_then_kb_eval_qa(tmp_path, run_models):
    home = tmp_path / "home"
    (home / "collections" / "handbook").mkdir(parents=True)  # the team's own: must stay as it is
    (home / "collections" / "handbook" / "marker").write_text("kept", encoding="utf-8")
    store = Conversations(home)
    conversation = store.create("carol", "guide", "Ports")
    turn = store.add_turn("carol", conversation, "Which port does the web interface listen on?", answer("Port 8080 [1]."))
    store.rate("carol", turn, -1, "the right answer is “8501”")
    out = tmp_path / "regression.jsonl"
    exported = kb(home, "feedback", "export", "--out", str(out), "--rating", "down")
    assert exported.returncode == 0 and "wrote 1 questions (1 rated down, 0 up)" in exported.stdout
    measured = kb(home, "eval-qa", str(out), "--retrieval-only", "--quiet")
    assert measured.returncode == 0, measured.stderr
    summary = json.loads(measured.stdout.strip().splitlines()[-1])
    assert summary["questions"] == 1
    # The evaluation's collections are not left behind in the team's home, and nothing of the team's is gone.
    assert sorted(p.name for p in (home / "collections").iterdir()) == ["handbook"]
    assert (home / "collections" / "handbook" / "marker").read_text(encoding="utf-8") == "kept"
