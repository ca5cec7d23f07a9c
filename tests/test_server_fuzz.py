"""Fuzzing ``kb serve`` from its own OpenAPI schema (schemathesis): no request may get a 5xx.

Every operation gets requests that fit the schema and requests that do not
(wrong types, missing fields, odd strings); operations on a collection get them
once more aimed at a collection that exists, so the fuzzing reaches past
"no such collection". The server (the run's ``shared_server``) runs without accounts (every route open)
with a tiny collection of its own; deleting it is left out, so later cases still find it.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.server_helpers import wait_for_job

EXAMPLES = 20


@pytest.fixture(scope="module")
def server(shared_server):
    with httpx.Client(base_url=shared_server.url, timeout=120) as client:
        assert client.post("/v1/collections", json={"name": "kept"}).status_code == 201
        job = client.post("/v1/collections/kept/documents",
                          files=[("files", ("notes.md", b"# Notes\n\nThe pump runs at 1450 rpm.\n"))]).json()
        assert wait_for_job(client, job)["status"] == "done"
    return shared_server


def test_no_request_the_schema_allows_or_forbids_gets_a_server_error(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    server_errors, calls = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        aimed = [{}] + ([{"path_parameters": {"name": "kept"}}] if "{name}" in operation.path else [])
        if operation.method.upper() == "DELETE" and operation.path == "/v1/collections/{name}":
            aimed = [{}]  # random names only: "kept" must survive for the rest
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for extra in aimed:
                @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode, **extra))
                def call(case) -> None:
                    nonlocal calls
                    calls += 1
                    response = case.call(base_url=server.url, timeout=120)
                    if response.status_code >= 500:
                        server_errors.append(f"{operation.label} ({mode}): {response.status_code} {response.text[:300]}")

                try:
                    call()
                except Unsatisfiable:  # nothing to make invalid (e.g. GET /v1/models takes no input)
                    assert mode is GenerationMode.NEGATIVE, operation.label
    assert calls > 300
    assert not server_errors, "\n".join(server_errors[:10])
