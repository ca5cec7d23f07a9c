"""``kb serve`` without accounts, on a loopback port: the official openai client, httpx for REST, bad input.

One server for the run, shared with the fuzzing (``shared_server``: loading its models takes
about 20 s). The first test creates the collection ``guide`` through the API and uploads the
sample documents into it, the way a team would.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from openai import NotFoundError, OpenAI

from app.indexing import MAX_NAME_BYTES
from tests.conftest import REPO, SAMPLE_DATA, SHARED_SERVER_UPLOAD_MB, make_encrypted_pdf, make_pdf
from tests.server_helpers import kb_process, wait_for_job

UPLOAD_LIMIT_MB = SHARED_SERVER_UPLOAD_MB


@pytest.fixture(scope="module")
def server(shared_server):
    return shared_server


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def guide(http):
    """The collection ``guide`` holding the sample documents, made through the API."""
    assert http.post("/v1/collections", json={"name": "guide"}).status_code == 201
    files = [("files", (path.name, path.read_bytes())) for path in sorted(SAMPLE_DATA.iterdir()) if path.is_file()]
    response = http.post("/v1/collections/guide/documents", files=files)
    assert response.status_code == 202, response.text
    job = wait_for_job(http, response.json())
    assert job["status"] == "done" and not job["failures"], job
    return "guide"


@pytest.fixture(scope="module")
def openai_client(server):
    return OpenAI(base_url=f"{server.url}/v1", api_key="not-needed-without-accounts", max_retries=0)


def test_the_openai_client_gets_an_answer_with_its_citations(openai_client, http, guide):
    assert "guide" in [model.id for model in openai_client.models.list()]
    response = openai_client.chat.completions.create(
        model=guide, messages=[{"role": "user", "content": "How do I start the web UI?"}])
    kb_field = response.model_extra["kb"]
    assert response.choices[0].message.content == kb_field["text"]
    assert not kb_field["abstained"] and kb_field["citations"], kb_field
    citation = kb_field["citations"][0]
    assert citation["source"] in {path.name for path in SAMPLE_DATA.iterdir()}
    assert citation["passage"] and citation["location"].startswith(citation["source"])
    assert f"[{citation['number']}]" in kb_field["text"]
    assert all({"supported", "citations", "start_char"} <= set(s) for s in kb_field["sentences"])
    for start, end in citation["supported_spans"]:
        assert 0 <= start < end <= len(citation["passage"])
    for cited in kb_field["citations"]:  # a PDF's citation says where to get its page drawn; a text's does not
        assert (cited["page_url"] is None) == (cited["page"] is None)
        if cited["page_url"]:
            page = http.get(cited["page_url"])
            assert page.status_code == 200 and page.headers["content-type"] == "image/png"


def test_a_streamed_answer_ends_with_the_checked_answer(openai_client, guide):
    stream = openai_client.chat.completions.create(
        model=guide, stream=True,
        messages=[{"role": "system", "content": "ignored"},
                  {"role": "user", "content": "Which command indexes a folder?"}])
    pieces, last = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        last = chunk
    assert pieces and last.choices[0].finish_reason == "stop"
    final = last.model_extra["kb"]
    assert final["text"] and ("kb ingest" in final["text"] or final["abstained"] or final["withdrawn_draft"])
    assert final["citations"] or final["closest_passages"]


def test_a_follow_up_is_answered_with_the_conversation(http, guide):
    response = http.post("/v1/chat/completions", json={"model": guide, "messages": [
        {"role": "user", "content": "Which port does the web interface listen on?"},
        {"role": "assistant", "content": "It listens on port 8501 [1]."},
        {"role": "user", "content": "And which address does it bind to?"},
    ]})
    assert response.status_code == 200, response.text
    cited = response.json()["kb"]["citations"] or response.json()["kb"]["closest_passages"]
    # The follow-up alone names nothing; searched with the question it follows, it finds the web UI's settings.
    assert any("127.0.0.1" in c["passage"] or "KB_UI_HOST" in c["passage"] for c in cited), cited


def test_embeddings_come_from_the_collections_embedder(openai_client, guide):
    result = openai_client.embeddings.create(model=guide, input=["port 8501", "端口"])  # the client asks for base64
    assert len(result.data) == 2 and len(result.data[0].embedding) == 384
    assert abs(sum(x * x for x in result.data[0].embedding) - 1.0) < 1e-3  # normalised


def test_search_returns_passages_without_generating(http, guide):
    response = http.post(f"/v1/collections/{guide}/search", json={"query": "web interface port", "top_k": 3})
    assert response.status_code == 200
    hits = response.json()["hits"]
    assert len(hits) == 3 and hits[0]["rank"] == 1 and hits[0]["passage"]
    assert any("8501" in hit["passage"] for hit in hits)


def test_documents_are_listed_with_title_pages_chunks_and_failures(http, guide, tmp_path):
    make_pdf(tmp_path / "broken.pdf", ["text"])
    broken = (tmp_path / "broken.pdf").read_bytes()[:300]  # cut off: no cross-reference table, no pages
    locked = make_encrypted_pdf(tmp_path / "locked.pdf", ["secret"], user_password="pw").read_bytes()
    response = http.post(f"/v1/collections/{guide}/documents",
                         files=[("files", ("broken.pdf", broken)), ("files", ("locked.pdf", locked))])
    job = wait_for_job(http, response.json())
    assert job["status"] == "done" and {f["source"] for f in job["failures"]} == {"broken.pdf", "locked.pdf"}
    documents = {d["source"]: d for d in http.get(f"/v1/collections/{guide}/documents").json()}
    pdf = documents["quick-reference.pdf"]
    assert pdf["title"] == "kbqa Quick Reference" and pdf["pages"] >= 1 and pdf["chunks"] >= 1 and pdf["failure"] is None
    assert "password" in documents["locked.pdf"]["failure"].lower() and documents["broken.pdf"]["failure"]
    # A failed file can be deleted like any other; it is gone from the list.
    assert http.delete(f"/v1/collections/{guide}/documents/locked.pdf").status_code == 204
    assert http.delete(f"/v1/collections/{guide}/documents/broken.pdf").status_code == 204
    remaining = {d["source"] for d in http.get(f"/v1/collections/{guide}/documents").json()}
    assert remaining == {path.name for path in SAMPLE_DATA.iterdir() if path.is_file()}


def test_two_uploads_at_once_are_both_indexed(http):
    assert http.post("/v1/collections", json={"name": "twice"}).status_code == 201
    jobs, errors = [], []

    def upload(name: str, text: str) -> None:
        response = http.post("/v1/collections/twice/documents", files=[("files", (name, text.encode()))])
        (jobs if response.status_code == 202 else errors).append(response.json())

    threads = [threading.Thread(target=upload, args=("alpha.md", "# Alpha\n\nThe alpha valve opens at 40 bar.\n")),
               threading.Thread(target=upload, args=("beta.md", "# Beta\n\nThe beta pump runs at 1450 rpm.\n"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(jobs) == 2
    assert all(wait_for_job(http, job)["status"] == "done" for job in jobs)
    documents = http.get("/v1/collections/twice/documents").json()
    assert sorted(d["source"] for d in documents) == ["alpha.md", "beta.md"]
    for query, source in (("alpha valve bar", "alpha.md"), ("beta pump rpm", "beta.md")):
        hits = http.post("/v1/collections/twice/search", json={"query": query, "top_k": 1}).json()["hits"]
        assert hits[0]["source"] == source
    # Re-index a document: a job that reads it again; the collection keeps both.
    job = wait_for_job(http, http.post("/v1/collections/twice/documents/alpha.md/reindex").json())
    assert job["status"] == "done" and "added 1" in job["summary"]
    assert http.get("/v1/collections/twice").json()["documents"] == 2
    assert http.delete("/v1/collections/twice").status_code == 204
    assert http.get("/v1/collections/twice").status_code == 404


@pytest.mark.parametrize("name", ["../escape.md", "/etc/escape.md", "sub/dir.md", "nul\x00.md", "..",
                                  ".hidden.md", "x" * (MAX_NAME_BYTES + 1) + ".md", "program.exe",
                                  # bidirectional controls: "invoice\u202efdp.md" shows as "invoicedm.pdf"
                                  "invoice\u202efdp.md", "a\u2066b\u2069.md", "c\u200e.md", "d\u200f.md",
                                  "e\u061c.md", "f\u2067.md", "g\u2068.md", "h\u202a.md", "del\x7f.md"])
def test_unsafe_upload_names_are_refused_and_nothing_is_written(http, server, guide, name):
    before = sorted(p.relative_to(server.home.parent) for p in server.home.parent.rglob("*"))
    # The body by hand: httpx would percent-encode a NUL in a file name, and the server must see it raw.
    parts = b"".join(
        b"--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"" + file_name.encode() + b"\"\r\n"
        b"Content-Type: text/markdown\r\n\r\n" + body + b"\r\n"
        for file_name, body in (("fine.md", b"# Fine\n"), (name, b"# Escape\n")))
    response = http.post(f"/v1/collections/{guide}/documents", content=parts + b"--B--\r\n",
                         headers={"content-type": "multipart/form-data; boundary=B"})
    assert response.status_code == 400 and response.json()["error"]["message"]
    after = sorted(p.relative_to(server.home.parent) for p in server.home.parent.rglob("*"))
    assert [p for p in after if p not in before and "server.log" not in str(p)] == []  # not even fine.md


def test_unknown_routes_and_wrong_methods_answer_in_the_error_shape(http):
    for response, status in ((http.get("/v1/no-such-route"), 404), (http.get("/nothing/here"), 404),
                             (http.delete("/v1/models"), 405), (http.put("/v1/collections"), 405)):
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == status and error["message"] and error["type"], error
    assert "GET" in http.delete("/v1/models").headers["allow"]  # a 405 still says what is allowed


def test_a_jobs_report_counts_only_the_files_of_that_job(http):
    assert http.post("/v1/collections", json={"name": "reports"}).status_code == 201
    bad = [("files", (f"bad-{n}.pdf", b"%PDF-1.7 nothing else")) for n in range(4)]
    first = wait_for_job(http, http.post("/v1/collections/reports/documents", files=bad).json())
    assert first["status"] == "done" and len(first["failures"]) == 4 and "failed 4" in first["summary"]
    good = [("files", ("good.md", b"# Good\n\nThe good valve opens at 40 bar.\n"))]
    second = wait_for_job(http, http.post("/v1/collections/reports/documents", files=good).json())
    assert second["status"] == "done" and second["failures"] == [], second
    assert "added 1" in second["summary"] and "failed 0" in second["summary"], second["summary"]
    # The document list still shows the four failures: they were not forgotten, only not reported again.
    listed = http.get("/v1/collections/reports/documents").json()
    assert sum(1 for d in listed if d["failure"]) == 4
    assert http.delete("/v1/collections/reports").status_code == 204


def test_uploads_to_the_configured_collection_stay_in_the_home_and_a_delete_removes_only_them(http, server):
    """The server's configured collection is ``default`` and it runs in the repository, where KB_DOCUMENTS_DIR
    (``data``) is the repository's sample folder: an upload must never land there."""
    repo_data = sorted(p.name for p in (REPO / "data").iterdir())
    assert http.post("/v1/collections", json={"name": "default"}).status_code == 201
    job = http.post("/v1/collections/default/documents",
                    files=[("files", ("uploaded-once.md", b"# Uploaded\n\nThe spare key hangs by the door.\n"))])
    assert wait_for_job(http, job.json())["status"] == "done"
    uploads = server.home / "documents" / "default"
    assert (uploads / "uploaded-once.md").is_file()
    assert sorted(p.name for p in (REPO / "data").iterdir()) == repo_data
    # Files of somebody's own in the same folder, put there by hand (a subfolder too), are not the product's.
    (uploads / "by-hand.md").write_text("# Mine\n", encoding="utf-8")
    (uploads / "sub").mkdir()
    (uploads / "sub" / "nested.md").write_text("# Nested\n", encoding="utf-8")
    assert http.delete("/v1/collections/default").status_code == 204
    assert not (uploads / "uploaded-once.md").exists()
    assert (uploads / "by-hand.md").is_file() and (uploads / "sub" / "nested.md").is_file()
    assert http.get("/v1/collections/default").status_code == 404


def test_an_oversized_upload_gets_413_with_the_limit(http, guide):
    response = http.post(f"/v1/collections/{guide}/documents",
                         files=[("files", ("big.md", b"a" * (UPLOAD_LIMIT_MB * 1024 * 1024 + 1)))])
    assert response.status_code == 413 and f"{UPLOAD_LIMIT_MB} MB" in response.json()["error"]["message"]


@pytest.mark.parametrize("body, status", [
    ("{not json", 400),
    (json.dumps({"model": "guide", "messages": []}), 400),
    (json.dumps({"model": "guide"}), 400),
    (json.dumps({"model": "guide", "messages": [{"role": "user", "content": "   "}]}), 400),
    (json.dumps({"model": "guide", "messages": [{"role": "assistant", "content": "hi"}]}), 400),
    (json.dumps({"model": "guide", "messages": [{"role": "wizard", "content": "hi"}]}), 400),
    (json.dumps({"model": "no-such-collection", "messages": [{"role": "user", "content": "hi"}]}), 404),
    (json.dumps({"model": "../../etc", "messages": [{"role": "user", "content": "hi"}]}), 404),
    (json.dumps({"model": "guide", "messages": [{"role": "user", "content": "hi"}], "documents": ["nope.md"]}), 400),
])
def test_malformed_chat_requests_get_a_4xx_with_a_message(http, guide, body, status):
    response = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_the_openai_client_sees_an_unknown_collection_as_not_found(openai_client, guide):
    with pytest.raises(NotFoundError):
        openai_client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


def test_questions_at_once_wait_in_the_queue_and_learn_their_position(server, guide):
    results: dict[int, list] = {}

    def ask(number: int) -> None:
        events = []
        with httpx.Client(base_url=server.url, timeout=300) as client, client.stream(
                "POST", "/v1/chat/completions", json={"model": guide, "stream": True, "user": f"user-{number}",
                                                      "messages": [{"role": "user", "content": "List the kb commands."}]}
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    events.append(json.loads(line[6:]))
        results[number] = events

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(events[-1]["choices"][0]["finish_reason"] == "stop" for events in results.values())
    positions = [e["kb"]["queue_position"] for events in results.values() for e in events[:-1] if "kb" in e]
    assert positions and max(positions) >= 1  # three at once cannot all generate at once


def test_a_client_that_leaves_mid_stream_does_not_block_the_next_question(server, guide):
    with httpx.Client(base_url=server.url, timeout=300) as client:
        with client.stream("POST", "/v1/chat/completions", json={
                "model": guide, "stream": True, "messages": [{"role": "user", "content": "List the kb commands."}]},
        ) as response:
            next(response.iter_lines())  # the first event, then hang up
        # Had the abandoned stream kept its turn, this question would wait for ever (the client's timeout).
        answer = client.post("/v1/chat/completions", json={
            "model": guide, "messages": [{"role": "user", "content": "Which port does the web interface use?"}]})
        assert answer.status_code == 200 and answer.json()["kb"]["text"]


@pytest.mark.parametrize("command, variable", [("serve", "KB_SERVE_HOST"), ("ui", "KB_UI_HOST")])
def test_binding_a_network_address_without_accounts_is_refused(tmp_path, command, variable):
    result = kb_process(tmp_path / "home", command, **{variable: "0.0.0.0"})
    assert result.returncode == 2
    assert "accounts are off" in result.stderr and "kb users add" in result.stderr and variable in result.stderr


def test_the_openapi_schema_documents_the_kb_field(http):
    schema = http.get("/openapi.json").json()
    assert {"citations", "abstained", "sentences"} <= set(schema["components"]["schemas"]["KbAnswer"]["properties"])
    assert {"/v1/models", "/v1/embeddings", "/v1/collections/{name}/documents", "/v1/jobs/{job_id}"} <= set(schema["paths"])



def test_a_client_that_waits_between_polls_keeps_its_connection(server):
    """A client polling a job every few seconds reuses its keep-alive connection; the server must not close it
    under the client after 5 s idle (uvicorn's default), which a busy machine turns into 'connection reset'."""
    import http.client
    import time
    from urllib.parse import urlsplit

    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() and connection.sock is not None
        first_socket = connection.sock
        time.sleep(7)  # idle longer than uvicorn's default keep-alive
        connection.request("GET", "/healthz")  # http.client does not reconnect: a closed socket fails here
        response = connection.getresponse()
        assert response.status == 200 and response.read()
        assert connection.sock is first_socket
    finally:
        connection.close()


def test_a_cited_pdf_page_is_drawn_with_its_highlight_and_the_original_can_be_fetched(http, tmp_path):
    from tests.test_pages import OTHER_EN, TARGET_EN, _check_highlight, _draw
    from ingest.page_images import render_page

    pdf = _draw(tmp_path / "launch plan.pdf", [(700, TARGET_EN), (150, OTHER_EN)])
    alone = _draw(tmp_path / "alone.pdf", [(700, TARGET_EN)])
    assert http.post("/v1/collections", json={"name": "pages"}).status_code == 201
    job = http.post("/v1/collections/pages/documents", files=[("files", (pdf.name, pdf.read_bytes())),
                                                            ("files", ("notes.md", b"# Notes\n\nThe valve opens at 40 bar.\n"))])
    assert wait_for_job(http, job.json())["status"] == "done"
    base = "/v1/collections/pages/documents/launch%20plan.pdf"

    passages = http.get(f"{base}/passages").json()
    assert passages[0]["page"] == 1 and passages[0]["boxes"]
    start = passages[0]["start_char"] + passages[0]["text"].index("The launch")
    end = passages[0]["start_char"] + passages[0]["text"].index("42.") + 3
    page = http.get(f"{base}/pages/1", params={"spans": f"{start}-{end}", "width": 800})
    assert page.status_code == 200 and page.headers["content-type"] == "image/png"
    assert page.headers["x-page-count"] == "1" and int(page.headers["x-highlighted"]) > 0
    _check_highlight(page.content, render_page(alone, 1, max_width=800).png)

    original = http.get(f"{base}/file")
    assert original.status_code == 200 and original.content == pdf.read_bytes()
    assert "attachment" in original.headers["content-disposition"]

    notes = http.get("/v1/collections/pages/documents/notes.md/passages").json()
    section = http.get("/v1/collections/pages/documents/notes.md/section",
                       params={"start": notes[0]["start_char"], "end": notes[0]["end_char"]}).json()
    assert section["text"][section["passage_start"]:section["passage_end"]] == notes[0]["text"]

    # Bad requests: clear 4xx answers in the error shape.
    for path, status in ((f"{base}/pages/2", 404), (f"{base}/pages/1?spans=9-3", 400), (f"{base}/pages/1?spans=x", 400),
                         (f"{base}/pages/1?width=99999", 400), ("/v1/collections/pages/documents/nope.pdf/pages/1", 404),
                         ("/v1/collections/pages/documents/notes.md/pages/1", 404),
                         ("/v1/collections/pages/documents/..%2F..%2Fetc%2Fpasswd/file", 404)):
        response = http.get(path)
        assert response.status_code == status, (path, response.text)
        assert response.json()["error"]["message"], path
    assert http.delete("/v1/collections/pages").status_code == 204


def test_nothing_the_service_sends_loads_from_another_host(http):
    """Air-gapped sites: the CDN-hosted API explorers are off; the schema names no outside host."""
    assert http.get("/docs").status_code == 404 and http.get("/redoc").status_code == 404
    schema = http.get("/openapi.json").text
    assert "cdn." not in schema and "https://" not in schema and "http://" not in schema
