"""The generator's fair queue (app.turns), alone and through the pipeline."""

from __future__ import annotations

import threading

from app.pipeline import QueuePosition
from app.turns import GenerationTurns
from tests.conftest import write


def test_waiting_questions_are_served_round_robin_by_requester():
    turns = GenerationTurns()
    a0 = turns.join("a")  # generating
    a1, a2, a3 = turns.join("a"), turns.join("a"), turns.join("a")
    b1 = turns.join("b")
    assert turns.position(a0) == 0
    # b's first question goes after a's first waiting one, not after all three.
    assert [turns.position(t) for t in (a1, b1, a2, a3)] == [1, 2, 3, 4]
    served, current = [], a0
    for _ in range(4):  # each one generating in turn leaves; who is served next?
        turns.leave(current)
        current = next(t for t in (a1, a2, a3, b1) if t.served and t not in served)
        served.append(current)
    assert served == [a1, b1, a2, a3]


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
    assert all(isinstance(event, str) for event in rest) and "8501" in "".join(rest)
    assert stream.answer is not None and "8501" in stream.answer.text
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
