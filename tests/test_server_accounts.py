"""``kb serve`` with accounts: keys, grants, the permission matrix, login throttling, the audit log.

Users and keys are made with the ``kb users``/``kb keys`` commands before the
server starts, as an admin would; collections are made and filled through the
API by the admin. bob may read ``shared`` and write ``team``; ``secret`` is
not his, and must look exactly like ``nope``, which does not exist.
"""

from __future__ import annotations

import json
import sqlite3
import stat

import httpx
import pytest
from openai import AuthenticationError, OpenAI

from team.accounts import Accounts
from team.throttle import LOGIN_FREE_FAILURES
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
    "page": lambda c, name: c.get(f"/v1/collections/{name}/documents/{name}.md/pages/1?spans=0-5"),
    "passages": lambda c, name: c.get(f"/v1/collections/{name}/documents/{name}.md/passages"),
    "section": lambda c, name: c.get(f"/v1/collections/{name}/documents/{name}.md/section?start=0&end=10"),
    "original file": lambda c, name: c.get(f"/v1/collections/{name}/documents/{name}.md/file"),
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
        for _ in range(LOGIN_FREE_FAILURES + 1):
            assert anyone.post("/v1/auth/login", json={"username": "admin", "password": "guess"}).status_code == 401
        throttled = anyone.post("/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
        # Only that (name, address) pair waits: bob, from the same address, logs in.
        assert anyone.post("/v1/auth/login", json={"username": "bob", "password": BOB_PASSWORD}).status_code == 200


def test_without_trusted_proxies_x_forwarded_for_is_not_believed(team):
    server, _ = team
    with httpx.Client(base_url=server.url, timeout=60) as anyone:
        response = anyone.post("/v1/auth/login", json={"username": "forwarded-test", "password": "guess"},
                               headers={"X-Forwarded-For": "6.6.6.6"})
    assert response.status_code == 401
    entries = [json.loads(line) for line in kb(server.home, "audit", "--json", "--user", "forwarded-test").stdout.splitlines()]
    assert [(e["action"], e["detail"]) for e in entries] == [("login failed", "127.0.0.1")]


def test_a_forged_user_name_cannot_forge_audit_lines_and_is_stored_bounded(team):
    server, _ = team
    forged = "x\n2030-01-01 00:00:00 UTC  cli  grant handbook: mallory: write\x1b[2J"
    with httpx.Client(base_url=server.url, timeout=60) as anyone:
        assert anyone.post("/v1/auth/login", json={"username": forged, "password": "guess"}).status_code == 401
        huge = "y" * 100_000
        assert anyone.post("/v1/auth/login", json={"username": huge, "password": "guess"}).status_code == 401
    printed = kb(server.home, "audit", "--limit", "1000").stdout
    assert not [line for line in printed.splitlines() if "mallory" in line and "login failed" not in line]
    assert "x\\n2030-01-01" in printed and "\\x1b[2J" in printed and "\x1b" not in printed
    entries = [json.loads(line) for line in kb(server.home, "audit", "--json", "--limit", "1000").stdout.splitlines()]
    assert forged in {e["user"] for e in entries}  # --json: exact
    long_one = next(e for e in entries if e["user"].startswith("yyyy"))
    assert len(long_one["user"]) <= 200 and "truncated" in long_one["user"]
    with sqlite3.connect(server.home / "accounts.sqlite3") as db:
        assert max(len(row[0]) for row in db.execute("SELECT user FROM audit")) <= 200


def test_grants_and_keys_name_only_possible_collections(team):
    server, _ = team
    for args in (("users", "grant", "bob", "../handbook"), ("users", "grant", "bob", ".hidden"),
                 ("keys", "create", "bob", "-c", "../x"), ("keys", "create", "bob", "-c", "a/b")):
        result = kb(server.home, *args)
        assert result.returncode == 2 and "cannot name a collection" in result.stderr, (args, result.stderr)
    assert "../handbook" not in Accounts(server.home).user("bob").grants
    assert all(key.collections is None or "../x" not in key.collections for key in Accounts(server.home).keys("bob"))


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


def test_the_secrets_files_are_private(team):
    server, _ = team
    home = server.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    secrets = [p for p in home.iterdir() if p.name.startswith(("accounts.sqlite3", "conversations.sqlite3"))]
    assert any(p.name == "accounts.sqlite3" for p in secrets)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in secrets} == {p.name: 0o600 for p in secrets}
    uploads = home / "documents" / "team"
    assert stat.S_IMODE(uploads.stat().st_mode) == stat.S_IMODE((home / "documents").stat().st_mode) == 0o700


def test_a_network_address_is_allowed_once_accounts_exist(team, tmp_path):
    server, _ = team
    check_bind("0.0.0.0", Accounts(server.home).enabled())  # no error: every request needs a key
    with pytest.raises(Exception, match="accounts are off"):
        check_bind("0.0.0.0", Accounts(tmp_path).enabled())


def test_a_job_is_cancelled_only_by_who_may_write_its_collection(team):
    with client(team, "admin") as admin:
        [secret_job] = admin.get("/v1/collections/secret/jobs").json()
        [shared_job] = admin.get("/v1/collections/shared/jobs").json()
    with client(team, "bob") as bob:
        assert bob.delete(f"/v1/jobs/{secret_job['id']}").status_code == 404  # not even its existence
        assert bob.delete(f"/v1/jobs/{shared_job['id']}").status_code == 403  # read grant only
        assert bob.delete("/v1/jobs/job-nonexistent").status_code == 404
    with client(team, "admin") as admin:
        cancelled = admin.delete(f"/v1/jobs/{shared_job['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "done"  # finished: stays as it was

