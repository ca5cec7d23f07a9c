"""The command line: the console scripts as a user starts them (real processes), then the commands
themselves, run in this process through typer's runner (``tests.server_helpers.kb``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm.models import QWEN_0_5B
from tests.conftest import SAMPLE_DATA, make_pdf, write
from tests.server_helpers import kb

BIN = Path(sys.executable).parent


def run(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def env(tmp_path, model_cache) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    # The command line, not answer quality: the small generator, no second embedder (faster loads and ingests).
    values.update({"KB_HOME": str(tmp_path / "home"), "KB_MODEL_CACHE": str(model_cache),
                   "KB_LLM_MODEL": QWEN_0_5B.name, "KB_SECOND_EMBEDDER": "none"})
    return values


def test_ingest_status_search_and_remove(tmp_path, env, run_models):
    docs = tmp_path / "docs"
    write(docs / "pumps.md", "# Pumps\n\nThe pump runs at 3000 rpm and needs oil every month.\n")
    make_pdf(docs / "manual.pdf", ["Chapter one.", "Turn the red valve clockwise to close it."])
    (docs / "scan.pdf").write_bytes(b"%PDF-1.4\n%%EOF")

    # The two console scripts, started as a user starts them.
    done = run([str(BIN / "ingest"), str(docs), "--json"], env)  # the `ingest` console script
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(report["added"]) == ["manual.pdf", "pumps.md"]
    assert [f["source"] for f in report["failed"]] == ["scan.pdf"]
    assert report["failed"][0]["reason"]
    status = run([str(BIN / "kb"), "status"], env)
    assert "2 documents" in status.stdout and "manual.pdf" in status.stdout
    # where the models run, without loading the generator: no GPU here, this CPU has bf16 or not
    assert "embedder runs on CPU" in status.stdout and "generator runs on CPU" in status.stdout

    home = tmp_path / "home"
    again = kb(home, "ingest", str(docs), "--quiet", KB_SECOND_EMBEDDER="none")
    assert again.returncode == 0
    assert "unchanged 2" in again.stdout and "failed 1" in again.stdout
    assert "not indexed: scan.pdf" in again.stderr

    found = kb(home, "search", "how do I close the valve", "-k", "1", KB_SECOND_EMBEDDER="none")
    assert found.returncode == 0
    assert "manual.pdf, page 2" in found.stdout

    removed = kb(home, "remove", "pumps.md", KB_SECOND_EMBEDDER="none")
    assert "removed: pumps.md" in removed.stdout
    assert "1 documents" in kb(home, "status", KB_SECOND_EMBEDDER="none").stdout


@pytest.mark.answer_quality  # the default generator: the 0.5B one answered this with citation markers alone
def test_ask_answers_with_sources(tmp_path, run_models):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_DATA, docs)
    home = tmp_path / "home"
    assert kb(home, "ingest", str(docs), "-q", KB_SECOND_EMBEDDER="none").returncode == 0
    asked = kb(home, "ask", "How many tokens long is a chunk?", "--json", KB_SECOND_EMBEDDER="none")
    assert asked.returncode == 0, asked.stderr
    payload = json.loads(asked.stdout)
    assert "256" in payload["answer"]["text"]
    assert {(c["source"], c["page"]) for c in payload["answer"]["citations"]} >= {("quick-reference.pdf", 2)}
    assert payload["timings"]["first_token_ms"] > 0


def test_bad_settings_and_missing_folder_exit_with_a_message(tmp_path):
    home = tmp_path / "home"
    bad = kb(home, "ingest", str(tmp_path), KB_CHUNK_TOKENS="lots")
    assert bad.returncode == 2
    assert "KB_CHUNK_TOKENS" in bad.stderr
    missing = kb(home, "ingest", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    unknown = kb(home, "status", KB_EMBEDDING_MODEL="org/some-hub-model")
    assert unknown.returncode == 2 and "nothing is downloaded" in unknown.stderr


def test_index_built_with_another_embedder_is_refused(tmp_path, minilm_dir, run_models):
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nApples are red.\n")
    home = tmp_path / "home"
    assert kb(home, "ingest", str(docs), "-q", KB_EMBEDDING_MODEL=str(minilm_dir), KB_SECOND_EMBEDDER="none").returncode == 0
    refused = kb(home, "search", "apples", KB_SECOND_EMBEDDER="none")
    assert refused.returncode == 3
    assert "was built with embedder" in refused.stderr
