"""The generator's fair queue (app.turns), alone and through the pipeline."""

from __future__ import annotations

import threading

import pytest

from app.pipeline import QueuePosition
from app.turns import GenerationTurns, QueueFullError
from tests.conftest import write


def test_waiting_questions_are_served_round_robin_by_requester():
    turns = GenerationTurns()
    a0 = turns.join("a")  # generating
    a1, a2, a3 = turns.join("a"), turns.join("a"), turns.join("a")
    b1 = turns.join("b")
    assert turns.position(a0) == 0
    # b's first question goes right after the one generating: a was served last, b never.
    assert [turns.position(t) for t in (b1, a1, a2, a3)] == [1, 2, 3, 4]
    served, current = [], a0
    for _ in range(4):  # each one generating in turn leaves; who is served next?
        turns.leave(current)
        current = next(t for t in (a1, a2, a3, b1) if t.served and t not in served)
        served.append(current)
    assert served == [b1, a1, a2, a3]


def test_six_questions_and_one_more_from_a_colleague():
    """Issue 23's case: A sends 6, B one 1.5 s later; B is served second, after A's generating one, and
    later joiners alternate with A's remaining questions."""
    turns = GenerationTurns()
    a = [turns.join("a") for _ in range(6)]
    b1 = turns.join("b")
    assert turns.position(b1) == 1
    turns.leave(a[0])
    assert b1.served
    c1 = turns.join("c")
    turns.leave(b1)
    assert a[1].served and turns.position(c1) == 1  # c, never served, goes before a's third


def test_a_requester_may_have_only_so_many_questions_waiting():
    turns = GenerationTurns(max_waiting=2)
    busy = turns.join("a")  # generating: not waiting
    waiting = [turns.join("a"), turns.join("a")]
    with pytest.raises(QueueFullError, match="KB_MAX_WAITING_PER_USER=2"):
        turns.join("a")
    other = turns.join("b")  # others are not limited by a's questions
    turns.leave(busy)
    assert other.served  # b had not been served yet
    turns.leave(other)
    assert waiting[0].served
    turns.check_room("a")  # one of a's is being answered: room for one more again


def test_a_waiter_that_gives_up_leaves_the_queue():
    turns = GenerationTurns()
    busy = turns.join("a")
    gone, kept = turns.join("b"), turns.join("c")
    assert turns.position(kept) == 2
    turns.leave(gone)
    assert turns.position(kept) == 1
    turns.leave(busy)
    assert kept.served and turns.position(kept) == 0


def test_a_question_waiting_for_the_generator_streams_its_position_then_its_answer(make_pipeline, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "guide.md", "# Ports\n\nThe web interface listens on port 8501 by default.\n")
    pipeline = make_pipeline()
    pipeline.ingest(docs, progress=False)
    holder = pipeline.turns.join("someone else")  # another question is being generated
    stream = pipeline.ask_stream("Which port does the web interface listen on?", requester="me")
    events = stream.events()
    assert next(events) == QueuePosition(1)
    released = threading.Timer(0.3, pipeline.turns.leave, args=(holder,))
    released.start()
    rest = list(events)
    # then the answer's text (what the small model says is not this test's business: that it comes, in turn)
    assert rest and all(isinstance(event, str) for event in rest) and "".join(rest).strip()
    assert stream.answer is not None and stream.answer.text.strip()
    assert not pipeline.turns.busy and pipeline.turns.waiting == 0


def test_closing_a_stream_while_it_waits_gives_its_place_up(make_pipeline, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "guide.md", "# Ports\n\nThe web interface listens on port 8501 by default.\n")
    pipeline = make_pipeline()
    pipeline.ingest(docs, progress=False)
    holder = pipeline.turns.join("someone else")
    stream = pipeline.ask_stream("Which port does the web interface listen on?")
    assert next(stream.events()) == QueuePosition(1)
    stream.close()
    assert pipeline.turns.waiting == 0
    pipeline.turns.leave(holder)
    assert not pipeline.turns.busy


def test_an_ingest_gives_way_while_a_question_is_answered(make_pipeline, tmp_path):
    """One process, one set of cores: the ingest embeds nothing while a question holds the generator."""
    from retrieval.store import Collection

    write(tmp_path / "docs" / "guide.md", "# Ports\n\nThe web interface listens on port 8501 by default.\n")
    pipeline = make_pipeline(second_embedder="none", ingest_give_way_seconds=600)
    answering = pipeline.turns.join("a user")  # a question is being generated
    reports = []
    ingest = threading.Thread(target=lambda: reports.append(pipeline.ingest(tmp_path / "docs", progress=False)))
    ingest.start()
    ingest.join(timeout=5)
    assert ingest.is_alive() and not reports  # waiting before its first batch, not embedding
    assert not Collection.exists(pipeline.settings.collection_dir) or pipeline.status().chunks == 0
    pipeline.turns.leave(answering)
    ingest.join(timeout=300)
    assert reports and reports[0].added == ("guide.md",)
