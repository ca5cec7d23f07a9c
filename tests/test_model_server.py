"""Generation through a model server: llama-cpp-python's own OpenAI-compatible server on a loopback port.

The server runs the small built-in model (Qwen2.5-Coder-0.5B, from its registry
packages) in a separate process, exactly as a team would run a model server;
the pipeline talks to it over HTTP with ``KB_LLM_BASE_URL``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.pipeline import Pipeline
from llm.generator import GenerationError
from llm.model_server import ServerGenerator, estimate_tokens
from llm.models import QWEN_0_5B, resolve_model_path
from retrieval.rerank import load_reranker
from tests.conftest import write
from tests.server_helpers import free_port, wait_until_up


@pytest.fixture(scope="module")
def model_server(model_cache, tmp_path_factory):
    model = resolve_model_path(QWEN_0_5B.name, model_cache)
    port = free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")  # a pipe would fill up and stall it
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "4096", "--n_threads", "2"],
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    wait_until_up(f"{url}/models", server, Path(log.name), "the model server", timeout=120)
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


def test_a_conversation_through_the_model_server_is_streamed_and_cited(model_server, make_settings, e5, tmp_path):
    settings = make_settings(llm_base_url=model_server, second_embedder="none", max_answer_tokens=96)
    pipeline = Pipeline(settings, embedder=e5, reranker=load_reranker(settings.reranker), second_embedder=None,
                        generator_factory=lambda: ServerGenerator(settings.llm_base_url, context_window=4096))
    write(tmp_path / "docs" / "guide.md",
          "# Web interface\n\nThe web interface listens on port 8501 and binds to 127.0.0.1 by default.\n")
    write(tmp_path / "docs" / "garden.md", "# Garden\n\nTomatoes need six hours of direct sunlight a day.\n")
    pipeline.ingest(tmp_path / "docs", progress=False)

    stream = pipeline.ask_stream("Which port does the web interface listen on?")
    pieces = list(stream)
    answer = stream.answer
    assert len(pieces) > 1  # streamed piece by piece, not in one block
    assert "8501" in answer.text and not answer.abstained
    assert [citation.source for citation in answer.citations] == ["guide.md"]
    assert pipeline.generator_info.server == model_server
    # The server's tokenizer counts the prompt, not an estimate.
    assert pipeline.generator.count_tokens("hello world 你好") == 4 < estimate_tokens("hello world 你好")


def test_a_server_that_is_down_gives_a_clear_error():
    address = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(GenerationError, match=f"cannot reach the model server at {address}"):
        ServerGenerator(address)


def test_a_server_that_does_not_answer_times_out_instead_of_hanging():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    address = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    with pytest.raises(GenerationError, match="did not answer within 1 s"):  # a hang would never raise
        ServerGenerator(address, timeout=1.0)
    listener.close()
