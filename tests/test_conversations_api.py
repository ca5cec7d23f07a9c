"""Saved conversations through ``kb serve``: asking into one, reading, renaming, rating, exporting, deleting.

Without accounts on the run's ``shared_server`` (collections ``handbook`` and ``travel`` of its own, made
through the API: the other modules' names stay free); with accounts on a server of this module's own, where
alice's conversations must answer bob exactly like ids that do not exist, and a conversation goes out of
sight with the grant on its collection.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from team.accounts import Accounts
from tests.server_helpers import RETRIED, get_retrying, start_server, wait_for_job

HANDBOOK = "# Leave\n\nEvery employee gets 25 days of paid leave per year. Unused days expire on 31 March.\n"
TRAVEL = "# Travel\n\nTrain tickets are booked through the travel desk at least two days ahead.\n"
QUESTION = "How many days of paid leave does an employee get?"
ADMIN_PASSWORD, ALICE_PASSWORD, BOB_PASSWORD = "admin's long password", "alice's long password", "bob's long password"


def send(client: httpx.Client, method: str, path: str, attempts: int = 5, **options) -> httpx.Response:
    """A request as a robust client sends it: GET, PUT and PATCH (asking again changes nothing) are retried when
    the connection broke; anything else only when it could not connect (nothing was sent)."""
    if method == "GET" and not options:
        return get_retrying(client, path, attempts)
    retried = RETRIED if method in ("PUT", "PATCH") else (httpx.ConnectError,)
    for attempt in range(attempts):
        try:
            return client.request(method, path, **options)
        except retried:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def make_collection(client: httpx.Client, name: str, text: str) -> None:
    assert send(client, "POST", "/v1/collections", json={"name": name}).status_code == 201
    files = [("files", (f"{name}.md", text.encode()))]
    response = send(client, "POST", f"/v1/collections/{name}/documents", files=files)
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json())
    assert job["status"] == "done" and not job["failures"], job


def ask(client: httpx.Client, collection: str, conversation, *, stream: bool = False, question: str = QUESTION,
        earlier: tuple[tuple[str, str], ...] = ()) -> httpx.Response | dict:
    """The response (not streamed) or the final streamed event (its ``kb`` field or its ``error``)."""
    messages = [message for q, a in earlier for message in ({"role": "user", "content": q},
                                                             {"role": "assistant", "content": a})]
    body = {"model": collection, "stream": stream, "conversation": conversation,
            "messages": messages + [{"role": "user", "content": question}]}
    if not stream:
        return send(client, "POST", "/v1/chat/completions", json=body)
    events = []
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events[-1]


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and error["message"], error
    return error["message"]


def ids(client: httpx.Client, query: str = "") -> list[int]:
    return [c["id"] for c in send(client, "GET", f"/v1/conversations{query}").json()]


# ----- without accounts ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def http(shared_server):
    with httpx.Client(base_url=shared_server.url, timeout=300) as client:
        make_collection(client, "handbook", HANDBOOK)
        make_collection(client, "travel", TRAVEL)
        yield client


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_answer_asked_into_a_new_conversation_is_saved_as_it_was_shown(http, stream):
    before = set(ids(http))
    result = ask(http, "handbook", "new", stream=stream)
    final = result["kb"] if stream else result.json()["kb"]
    assert set(ids(http)) - before == {final["conversation_id"]}, final  # one new conversation, the one named
    assert final["citations"] or final["closest_passages"], final
    assert any("25 days" in c["passage"] for c in final["citations"] + final["closest_passages"])

    saved = send(http, "GET", f"/v1/conversations/{final['conversation_id']}").json()
    assert saved["collection"] == "handbook" and saved["title"] == QUESTION
    [turn] = saved["turns"]
    assert turn["id"] == final["turn_id"] and turn["question"] == QUESTION and turn["rating"] is None
    for field in ("text", "abstained", "citations", "closest_passages", "sentences", "withdrawn_draft"):
        assert turn["answer"][field] == final[field], field
    assert turn["answer"]["conversation_id"] == final["conversation_id"]
    assert final["conversation_id"] in ids(http, "?collection=handbook")
    assert final["conversation_id"] not in ids(http, "?collection=travel")


def test_a_follow_up_asked_with_the_id_is_appended(http):
    first = ask(http, "handbook", "new").json()["kb"]
    follow_up = "And when do unused days expire?"
    final = ask(http, "handbook", first["conversation_id"], stream=True, question=follow_up,
                earlier=((QUESTION, first["text"]),))["kb"]
    assert final["conversation_id"] == first["conversation_id"] and final["turn_id"] > first["turn_id"]
    turns = send(http, "GET", f"/v1/conversations/{first['conversation_id']}").json()["turns"]
    assert [(t["id"], t["question"]) for t in turns] == [(first["turn_id"], QUESTION), (final["turn_id"], follow_up)]
    assert turns[1]["answer"]["text"] == final["text"]
    assert send(http, "GET", "/v1/conversations").json()[0]["id"] == first["conversation_id"]  # continued last


def test_a_conversation_is_renamed_rated_exported_and_deleted(http):
    final = ask(http, "handbook", "new").json()["kb"]
    conversation, turn = final["conversation_id"], final["turn_id"]
    base = f"/v1/conversations/{conversation}"

    renamed = send(http, "PATCH", base, json={"title": "Leave 假期"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Leave 假期"
    rated = send(http, "PUT", f"{base}/turns/{turn}/rating", json={"rating": -1, "note": "it is 25 days, said once"})
    assert rated.status_code == 200, rated.text
    assert (rated.json()["rating"], rated.json()["note"]) == (-1, "it is 25 days, said once")
    saved = send(http, "GET", base).json()
    assert saved["title"] == "Leave 假期" and saved["turns"][0]["rating"] == -1

    markdown = send(http, "GET", f"{base}/export?format=markdown")
    assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/markdown")
    disposition = markdown.headers["content-disposition"]
    assert disposition.startswith("attachment;") and 'filename="Leave.md"' in disposition
    assert "filename*=UTF-8''Leave-%E5%81%87%E6%9C%9F.md" in disposition
    assert markdown.text.startswith("# Leave 假期") and f"## {QUESTION}" in markdown.text
    assert final["text"] in markdown.text and "Rated 👎: it is 25 days, said once" in markdown.text
    exported = send(http, "GET", f"{base}/export?format=json")
    assert exported.headers["content-type"].startswith("application/json")
    assert 'filename="Leave.json"' in exported.headers["content-disposition"]
    document = exported.json()
    assert document["title"] == "Leave 假期" and document["collection"] == "handbook"
    assert [(t["question"], t["answer"], t["rating"]) for t in document["turns"]] == [(QUESTION, final["text"], -1)]

    cleared = send(http, "PUT", f"{base}/turns/{turn}/rating", json={"rating": None})
    assert cleared.json()["rating"] is None

    assert send(http, "DELETE", base).status_code == 204
    for method, path in (("GET", base), ("GET", f"{base}/export"), ("DELETE", base),
                         ("PATCH", base), ("PUT", f"{base}/turns/{turn}/rating")):
        options = {"json": {"title": "x"}} if method == "PATCH" else {"json": {"rating": 1}} if method == "PUT" else {}
        assert error_of(send(http, method, path, **options), 404) == f"no conversation {conversation}"
    assert conversation not in ids(http)
    # Asking into it now is refused before anything is answered.
    assert error_of(ask(http, "handbook", conversation), 404)


def test_malformed_requests_are_refused_and_change_nothing(http):
    final = ask(http, "handbook", "new").json()["kb"]
    conversation, turn = final["conversation_id"], final["turn_id"]
    base = f"/v1/conversations/{conversation}"
    for rating in (5, 0, "up"):
        assert "rating" in error_of(send(http, "PUT", f"{base}/turns/{turn}/rating", json={"rating": rating}), 400)
    assert error_of(send(http, "PUT", f"{base}/turns/{turn}/rating", json={"rating": 1, "note": "x" * 2001}), 400)
    for title in ("", "   ", "x" * 201):
        assert "title" in error_of(send(http, "PATCH", base, json={"title": title}), 400)
    assert error_of(send(http, "GET", f"{base}/export?format=pdf"), 400)
    assert error_of(send(http, "GET", f"/v1/conversations/{2**64}"), 400)  # beyond any id: a 4xx, not a crash
    # A conversation of another collection, an unknown one, a turn of another conversation: 404.
    assert error_of(ask(http, "travel", conversation), 404)
    unknown = {"model": "handbook", "stream": True, "conversation": 10**12,
               "messages": [{"role": "user", "content": QUESTION}]}
    assert error_of(send(http, "POST", "/v1/chat/completions", json=unknown), 404)  # streamed: before the stream
    other = ask(http, "handbook", "new").json()["kb"]
    assert error_of(send(http, "PUT", f"/v1/conversations/{other['conversation_id']}/turns/{turn}/rating",
                         json={"rating": 1}), 404)
    saved = send(http, "GET", base).json()
    assert saved["title"] == QUESTION and [(t["id"], t["rating"]) for t in saved["turns"]] == [(turn, None)]


def test_a_client_that_leaves_mid_stream_saves_nothing(http):
    before = ids(http)
    body = {"model": "handbook", "stream": True, "conversation": "new",
            "messages": [{"role": "user", "content": "Until when can unused leave days be taken?"}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        next(response.iter_lines())  # the first event, then hang up
    # This question waits for the generator's turn the abandoned one held: once it is answered, that one is over.
    answered = ask(http, "handbook", None)
    assert answered.status_code == 200 and answered.json()["kb"]["conversation_id"] is None
    assert ids(http) == before


# ----- with accounts ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """alice and bob may both read ``handbook``; alice ``travel`` too. The admin makes and fills both."""
    home = tmp_path_factory.mktemp("conversations") / "home"
    accounts = Accounts(home)
    accounts.add_user("admin", ADMIN_PASSWORD, admin=True)
    keys = {"admin": accounts.create_key("admin")[1]}
    for name, password in (("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)):
        accounts.add_user(name, password)
        accounts.grant(name, "handbook", "read")
        keys[name] = accounts.create_key(name)[1]
    accounts.grant("alice", "travel", "read")
    server = start_server(home, home.parent / "server.log")
    clients = {who: httpx.Client(base_url=server.url, timeout=300, headers={"Authorization": f"Bearer {key}"})
               for who, key in keys.items()}
    try:
        make_collection(clients["admin"], "handbook", HANDBOOK)
        make_collection(clients["admin"], "travel", TRAVEL)
        yield home, clients
    finally:
        for client in clients.values():
            client.close()
        server.stop()


def test_another_users_conversation_answers_like_one_that_does_not_exist(team):
    _, clients = team
    alice, bob = clients["alice"], clients["bob"]
    final = ask(alice, "handbook", "new").json()["kb"]
    conversation, turn, missing = final["conversation_id"], final["turn_id"], 10**12
    requests = {
        "read": lambda c, n: send(c, "GET", f"/v1/conversations/{n}"),
        "rename": lambda c, n: send(c, "PATCH", f"/v1/conversations/{n}", json={"title": "mine now"}),
        "delete": lambda c, n: send(c, "DELETE", f"/v1/conversations/{n}"),
        "rate": lambda c, n: send(c, "PUT", f"/v1/conversations/{n}/turns/{turn}/rating", json={"rating": 1}),
        "export": lambda c, n: send(c, "GET", f"/v1/conversations/{n}/export?format=json"),
    }
    for action, request in requests.items():
        theirs, none = error_of(request(bob, conversation), 404), error_of(request(bob, missing), 404)
        assert theirs.replace(str(conversation), "N") == none.replace(str(missing), "N"), action
    assert error_of(requests["read"](clients["admin"], conversation), 404)  # an admin reads no one else's either
    assert error_of(ask(bob, "handbook", conversation), 404)  # bob may ask handbook, not into alice's conversation
    assert conversation not in ids(bob)
    saved = send(alice, "GET", f"/v1/conversations/{conversation}").json()  # and nothing happened to it
    assert saved["title"] == QUESTION and [(t["id"], t["rating"]) for t in saved["turns"]] == [(turn, None)]


def test_a_conversation_goes_out_of_sight_with_the_grant_on_its_collection(team):
    home, clients = team
    alice = clients["alice"]
    kept = ask(alice, "handbook", "new").json()["kb"]["conversation_id"]
    final = ask(alice, "travel", "new", question="How are train tickets booked?").json()["kb"]
    conversation = final["conversation_id"]
    base = f"/v1/conversations/{conversation}"
    assert {kept, conversation} <= set(ids(alice))
    assert Accounts(home).revoke("alice", "travel")
    try:
        assert conversation not in ids(alice) and kept in ids(alice)
        assert ids(alice, "?collection=travel") == []
        for response in (send(alice, "GET", base), send(alice, "GET", f"{base}/export"),
                         send(alice, "PATCH", base, json={"title": "still mine?"}), send(alice, "DELETE", base),
                         send(alice, "PUT", f"{base}/turns/{final['turn_id']}/rating", json={"rating": 1})):
            assert error_of(response, 404) == f"no conversation {conversation}"
    finally:
        Accounts(home).grant("alice", "travel", "read")
    # Given back, it is there again as it was: losing the grant hid it, the requests above changed nothing.
    saved = send(alice, "GET", base).json()
    assert saved["title"] == "How are train tickets booked?"
    assert [(t["id"], t["rating"]) for t in saved["turns"]] == [(final["turn_id"], None)]
