"""``kb serve`` with accounts: keys, grants, the permission matrix, login throttling, the audit log.

Users and keys are made with the ``kb users``/``kb keys`` commands before the
server starts, as an admin would; collections are made and filled through the
API by the admin. bob may read ``shared`` and write ``team``; ``secret`` is
not his, and must look exactly like ``nope``, which does not exist.
"""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest
from openai import AuthenticationError, OpenAI

from team.accounts import LOGIN_FAILURES_ALLOWED, Accounts
from team.binding import check_bind
from tests.server_helpers import kb, start_server, wait_for_job

ADMIN_PASSWORD = "correct horse battery"
BOB_PASSWORD = "bob's long password"


def _key(home, *args: str) -> str:
    result = kb(home, "keys", "create", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    home = tmp_path_factory.mktemp("team") / "home"
    refused = kb(home, "users", "add", "bob", "--password-stdin", stdin=BOB_PASSWORD + "\n")
    assert refused.returncode == 2 and "first user must be an admin" in refused.stderr
    for args, password in ((("admin", "--admin"), ADMIN_PASSWORD), (("bob",), BOB_PASSWORD)):
        result = kb(home, "users", "add", *args, "--password-stdin", stdin=password + "\n")
        assert result.returncode == 0, result.stderr
    keys = {"admin": _key(home, "admin"), "bob": _key(home, "bob", "--label", "laptop"),
            "admin-shared-only": _key(home, "admin", "--collection", "shared"), "revoked": _key(home, "bob")}
    server = start_server(home, home.parent / "server.log")
    admin = httpx.Client(base_url=server.url, timeout=300, headers={"Authorization": f"Bearer {keys['admin']}"})
    for name, text in (("shared", "# Holidays\n\nThe office closes on 24 December.\n"),
                       ("secret", "# Salaries\n\nThe salary review is in March.\n"), ("team", "# Team\n\nStand-up at 9:30.\n")):
        assert admin.post("/v1/collections", json={"name": name}).status_code == 201
        job = admin.post(f"/v1/collections/{name}/documents", files=[("files", (f"{name}.md", text.encode()))]).json()
        assert wait_for_job(admin, job)["status"] == "done"
    for args in (("bob", "shared"), ("bob", "team", "--write")):
        assert kb(home, "users", "grant", *args).returncode == 0
    revoked_id = keys["revoked"].split("_")[1]
    assert kb(home, "keys", "revoke", revoked_id).returncode == 0
    yield server, keys
    admin.close()
    server.stop()


def client(team, who: str) -> httpx.Client:
    server, keys = team
    return httpx.Client(base_url=server.url, timeout=300, headers={"Authorization": f"Bearer {keys[who]}"})


@pytest.mark.parametrize("authorization", [None, "Bearer kb_0000_wrong", "Bearer nonsense", "Basic YWRtaW46eA=="])
def test_a_missing_or_wrong_key_gets_401(team, authorization):
    server, _ = team
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.get(f"{server.url}/v1/models", headers=headers)
    assert response.status_code == 401 and response.json()["error"]["message"]


def test_a_revoked_key_gets_401_through_the_openai_client(team):
    server, keys = team
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{server.url}/v1", api_key=keys["revoked"], max_retries=0).models.list()


def test_a_member_sees_only_the_collections_granted(team):
    server, keys = team
    bob = OpenAI(base_url=f"{server.url}/v1", api_key=keys["bob"], max_retries=0)
    assert sorted(model.id for model in bob.models.list()) == ["shared", "team"]
    answer = bob.chat.completions.create(model="shared", messages=[{"role": "user", "content": "When does the office close?"}])
    kb_field = answer.model_extra["kb"]
    assert kb_field["citations"] or kb_field["closest_passages"]


# Every way to touch a collection: a collection outside bob's grants must answer exactly like a missing one.
REQUESTS = {
    "chat": lambda c, name: c.post("/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": "hi"}]}),
    "embeddings": lambda c, name: c.post("/v1/embeddings", json={"model": name, "input": "hi"}),
    "search": lambda c, name: c.post(f"/v1/collections/{name}/search", json={"query": "salary"}),
    "get": lambda c, name: c.get(f"/v1/collections/{name}"),
    "documents": lambda c, name: c.get(f"/v1/collections/{name}/documents"),
    "jobs": lambda c, name: c.get(f"/v1/collections/{name}/jobs"),
    "upload": lambda c, name: c.post(f"/v1/collections/{name}/documents", files=[("files", ("x.md", b"# X\n"))]),
    "delete document": lambda c, name: c.delete(f"/v1/collections/{name}/documents/{name}.md"),
    "reindex": lambda c, name: c.post(f"/v1/collections/{name}/documents/{name}.md/reindex"),
    "delete collection": lambda c, name: c.delete(f"/v1/collections/{name}"),
}


@pytest.mark.parametrize("action", sorted(REQUESTS))
def test_outside_a_grant_a_collection_looks_like_one_that_does_not_exist(team, action):
    with client(team, "bob") as bob:
        hidden, missing = REQUESTS[action](bob, "secret"), REQUESTS[action](bob, "nope")
    assert hidden.status_code == missing.status_code == 404, (hidden.text, missing.text)
    assert hidden.json()["error"]["message"].replace("secret", "X") == missing.json()["error"]["message"].replace("nope", "X")
    with client(team, "admin") as admin:  # and nothing happened to it
        assert [d["source"] for d in admin.get("/v1/collections/secret/documents").json()] == ["secret.md"]


@pytest.mark.parametrize("action", ["upload", "delete document", "reindex", "delete collection"])
def test_a_read_grant_does_not_allow_changes(team, action):
    with client(team, "bob") as bob:
        response = REQUESTS[action](bob, "shared")
    expected = "only admins" if action == "delete collection" else "read-only"
    assert response.status_code == 403 and expected in response.json()["error"]["message"]


def test_a_write_grant_allows_uploads_but_not_deleting_the_collection(team):
    with client(team, "bob") as bob:
        job = bob.post("/v1/collections/team/documents", files=[("files", ("notes.md", b"# Notes\n\nRetro on Fridays.\n"))])
        assert job.status_code == 202 and wait_for_job(bob, job.json())["status"] == "done"
        assert bob.delete("/v1/collections/team").status_code == 403
        assert bob.post("/v1/collections", json={"name": "mine"}).status_code == 403


def test_a_key_limited_to_a_collection_sees_only_it(team):
    with client(team, "admin-shared-only") as limited:
        assert [m["id"] for m in limited.get("/v1/models").json()["data"]] == ["shared"]
        assert limited.get("/v1/collections/secret/documents").status_code == 404


def test_login_gives_a_session_and_failed_logins_are_throttled(team):
    server, _ = team
    with httpx.Client(base_url=server.url, timeout=60) as anyone:
        session = anyone.post("/v1/auth/login", json={"username": "bob", "password": BOB_PASSWORD})
        assert session.status_code == 200
        me = anyone.get("/v1/auth/me", headers={"Authorization": f"Bearer {session.json()['token']}"}).json()
        assert me == {"user": "bob", "admin": False, "accounts": True}
        for _ in range(LOGIN_FAILURES_ALLOWED):
            assert anyone.post("/v1/auth/login", json={"username": "admin", "password": "guess"}).status_code == 401
        throttled = anyone.post("/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0


def test_the_audit_log_says_who_did_what_without_the_question(team):
    server, _ = team
    with client(team, "bob") as bob:
        bob.post("/v1/chat/completions", json={"model": "shared", "messages": [{"role": "user", "content": "When does the office close?"}]})
    result = kb(server.home, "audit", "--json", "--limit", "1000")
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    actions = {(e["user"], e["action"], e["collection"]) for e in entries}
    assert {("bob", "ask", "shared"), ("admin", "upload", "secret"), ("admin", "create collection", "team"),
            ("cli", "grant", "team"), ("cli", "revoke key", None), ("admin", "login failed", None)} <= actions
    asks = [e for e in entries if e["action"] == "ask"]
    assert all(e["detail"] == "" and e["key_id"] for e in asks)  # which key, not what was asked


def test_secrets_are_stored_hashed_and_the_audit_log_is_append_only(team):
    server, keys = team
    stored = (server.home / "accounts.sqlite3").read_bytes()
    assert keys["admin"].encode() not in stored and ADMIN_PASSWORD.encode() not in stored
    with sqlite3.connect(server.home / "accounts.sqlite3") as db:
        assert all(row[0].startswith("$argon2id$") for row in db.execute("SELECT password_hash FROM users"))
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM audit")


def test_a_network_address_is_allowed_once_accounts_exist(team, tmp_path):
    server, _ = team
    check_bind("0.0.0.0", Accounts(server.home).enabled())  # no error: every request needs a key
    with pytest.raises(Exception, match="accounts are off"):
        check_bind("0.0.0.0", Accounts(tmp_path).enabled())
