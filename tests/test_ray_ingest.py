"""Distributed ingest on a local Ray (2 CPUs) into Milvus: a driver killed with SIGKILL mid-run, run again,
ends with every file once, no passage twice, the same passages as a plain ingest, and a broken file reported.

The store is Milvus Lite in its server mode (``milvus-lite server``), as a deployment shares one: the test
reads the collection while the driver writes it, and kills the driver once some files are saved."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from retrieval.backend import StoreConfig, open_collection
from tests.conftest import REPO, write

FILES = 40


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def milvus_server(tmp_path):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "server.db"),
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # up to a minute on a busy machine
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield uri
    finally:
        _kill_group(server.pid)
        server.wait(timeout=60)


def _kill_group(pid: int) -> None:
    """SIGKILL to the process group the test started (the driver and what Ray started under it)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # all gone already


def _driver(home, uri, folder, model_cache) -> subprocess.Popen:
    environment = {**os.environ, "KB_HOME": str(home), "KB_STORE": "milvus", "KB_MILVUS_URI": uri,
                   "KB_SECOND_EMBEDDER": "none", "KB_CHECKPOINT_SECONDS": "0", "KB_MODEL_CACHE": str(model_cache),
                   "KB_COLLECTION": "ray"}
    # A session of its own: Ray's helper processes die with the group when the test kills it.
    return subprocess.Popen([sys.executable, "-m", "cli", "ingest", str(folder), "--json", "--ray", "local"],
                            cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)


def test_a_killed_ray_driver_run_again_completes_with_no_duplicate_and_no_loss(
        tmp_path, milvus_server, make_pipeline, e5, model_cache):
    folder = tmp_path / "docs"
    for n in range(FILES):
        paragraphs = [f"The cistern at site {n} holds {n * 7 + part} litres; its pump {n} was serviced in week "
                      f"{(n + part) % 52}, and the filter of part {part} is type F{n}." for part in range(10)]
        write(folder / f"note-{n:02d}.md", f"# Note {n}\n\n" + "\n\n".join(paragraphs) + "\n")
    write(folder / "broken.pdf", "%PDF-1.4 not really a PDF")
    home = tmp_path / "home"
    config = StoreConfig(kind="milvus", milvus_uri=milvus_server)
    collection_folder = home / "collections" / "ray"

    first = _driver(home, milvus_server, folder, model_cache)
    try:
        saved = 0
        while first.poll() is None and saved < 3:
            time.sleep(0.2)
            if (collection_folder / "milvus.json").is_file():
                saved = len(open_collection(collection_folder, config, e5.identity).files)
        assert first.poll() is None, "the driver finished before it could be killed: give it more files"
    finally:
        _kill_group(first.pid)
        first.wait(timeout=60)
    assert 3 <= len(open_collection(collection_folder, config, e5.identity).files) < FILES

    again = _driver(home, milvus_server, folder, model_cache)
    output, _ = again.communicate(timeout=600)
    _kill_group(again.pid)  # whatever of Ray's may still linger
    report = json.loads(output)
    assert again.returncode == 0 and [f["source"] for f in report["failed"]] == ["broken.pdf"]
    assert len(report["unchanged"]) + len(report["added"]) == FILES and not report["updated"]

    distributed = open_collection(collection_folder, config, e5.identity)
    db_count = distributed._db.count(distributed.name)  # the rows Milvus holds, not what the manifest says
    assert len(distributed.files) == FILES and distributed.chunk_count == db_count
    plain = make_pipeline(store="milvus", milvus_uri=milvus_server, second_embedder="none", collection="plain")
    plain.ingest(folder, progress=False)
    reference = plain.collection()
    for source in reference.files:
        assert distributed.chunks_of(source) == reference.chunks_of(source)
    hits = distributed.search_keywords(["f17"], k=5)
    assert {distributed.chunk(i).source for i, _ in hits} == {"note-17.md"}


def test_ray_without_an_address_starts_one_here():
    from cli.main import _ray_without_address

    assert _ray_without_address(["ingest", "docs", "--ray"]) == ["ingest", "docs", "--ray", "local"]
    assert _ray_without_address(["ingest", "docs", "--ray", "--json"]) == ["ingest", "docs", "--ray", "local", "--json"]
    assert _ray_without_address(["ingest", "docs", "--ray", "auto"]) == ["ingest", "docs", "--ray", "auto"]
