"""Rare paths of ``kb serve`` forced with a generator that fails mid-answer (the one fake here: a real model
does not fail on demand). The app runs in uvicorn on a loopback port, as ``kb serve`` runs it."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
import uvicorn

from app.pipeline import Pipeline
from llm.generator import GenerationError, Generator, GeneratorInfo
from retrieval.rerank import load_reranker
from server.app import build_service, create_app
from tests.conftest import write
from tests.server_helpers import free_port


class FailingGenerator(Generator):
    """Streams two pieces, then fails as a model server that went away would."""

    info = GeneratorInfo("failing", 4096, 1, 0, False)

    def count_tokens(self, text: str) -> int:
        return len(text) // 3 + 1

    def stream_chat(self, messages, max_tokens, temperature):
        yield "The web interface "
        yield "listens on "
        raise GenerationError("the model server at http://gpu-box:8000/v1 stopped answering")


@pytest.fixture
def failing_server(make_settings, e5, tmp_path):
    settings = make_settings(second_embedder="none", collection="guide")
    write(tmp_path / "docs" / "guide.md", "# Ports\n\nThe web interface listens on port 8501 by default.\n")
    pipeline = Pipeline(settings, e5, load_reranker("none"), FailingGenerator)
    pipeline.ingest(tmp_path / "docs", progress=False)
    server = uvicorn.Server(uvicorn.Config(create_app(build_service(settings, pipeline)), host="127.0.0.1",
                                           port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}", pipeline
    server.should_exit = True
    thread.join(timeout=10)


def test_a_generator_failure_is_a_503_or_the_streams_last_event_and_the_turn_is_given_back(failing_server):
    url, pipeline = failing_server
    body = {"model": "guide", "messages": [{"role": "user", "content": "Which port does the web interface listen on?"}]}
    with httpx.Client(base_url=url, timeout=60) as client:
        whole = client.post("/v1/chat/completions", json=body)
        assert whole.status_code == 503 and "stopped answering" in whole.json()["error"]["message"]
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert last["error"]["code"] == 503 and "stopped answering" in last["error"]["message"]
    assert "listens on " in "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-2])
    assert not pipeline.turns.busy and pipeline.turns.waiting == 0
