"""Login throttling: nobody can lock out a user who has the right password from their usual place.

Failures count per (user name, address) pair and back off with a doubling, capped delay; an
address that fails too often is limited, except for the users who logged in from it before; an
``X-Forwarded-For`` header is believed only from a proxy ``KB_TRUSTED_PROXIES`` names.

The account store is used on a real SQLite file with a clock the test moves (no waiting, no timed
assertions); the server tests run a real ``kb serve`` on loopback and reach it from several loopback
source addresses (127.0.0.2, 127.0.0.3, …), which Linux routes like 127.0.0.1.
"""

from __future__ import annotations

import json

import httpx
import pytest

from team.accounts import Accounts, AuthenticationError, LoginThrottledError
from team.throttle import (ADDRESS_FAILURES_ALLOWED, LOGIN_FIRST_DELAY_SECONDS, LOGIN_FREE_FAILURES,
                           LOGIN_MAX_DELAY_SECONDS, client_address)
from tests.server_helpers import kb, start_server

PASSWORD = "bob's long password"
ADMIN_PASSWORD = "correct horse battery"


class Clock:
    """The time the account store sees; the test moves it."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def accounts(tmp_path, clock):
    store = Accounts(tmp_path / "home", clock=clock)
    store.add_user("admin", ADMIN_PASSWORD, admin=True)
    store.add_user("bob", PASSWORD)
    return store


def fail(accounts: Accounts, name: str, address: str) -> None:
    with pytest.raises(AuthenticationError) as refused:
        accounts.login(name, "a wrong guess", client=address)
    assert not isinstance(refused.value, LoginThrottledError), refused.value


def test_failures_elsewhere_never_lock_out_a_user_at_their_usual_place(tmp_path):
    accounts = Accounts(tmp_path / "home")  # the real clock: nothing here waits for it
    accounts.add_user("admin", ADMIN_PASSWORD, admin=True)
    for attacker in ("203.0.113.7", "203.0.113.8"):
        for _ in range(LOGIN_FREE_FAILURES):
            fail(accounts, "admin", attacker)
        for made_up in ("root", "administrator", "nobody"):
            fail(accounts, made_up, attacker)
    caller, _ = accounts.login("admin", ADMIN_PASSWORD, client="198.51.100.4")
    assert caller.name == "admin"


def test_a_pair_backs_off_with_a_doubling_delay_up_to_a_cap(accounts, clock):
    for _ in range(LOGIN_FREE_FAILURES):  # typos are free
        fail(accounts, "bob", "192.0.2.1")
    expected = LOGIN_FIRST_DELAY_SECONDS
    waits = []
    for _ in range(8):
        fail(accounts, "bob", "192.0.2.1")
        with pytest.raises(LoginThrottledError) as throttled:  # even the right password waits
            accounts.login("bob", PASSWORD, client="192.0.2.1")
        waits.append(throttled.value.retry_after)
        clock.now += throttled.value.retry_after
    assert waits[:3] == [expected, 2 * expected, 4 * expected]
    assert all(later >= earlier for earlier, later in zip(waits, waits[1:]))
    assert max(waits) == LOGIN_MAX_DELAY_SECONDS  # capped: a delay, never a lock-out
    accounts.login("bob", PASSWORD, client="192.0.2.1")  # once the delay is over
    # A success starts the pair afresh: its next typos are free again.
    for _ in range(LOGIN_FREE_FAILURES):
        fail(accounts, "bob", "192.0.2.1")
    accounts.login("bob", PASSWORD, client="192.0.2.1")


def test_an_address_is_limited_except_for_users_who_logged_in_from_it_before(accounts, clock):
    accounts.login("bob", PASSWORD, client="192.0.2.9")  # bob's usual place
    for number in range(ADDRESS_FAILURES_ALLOWED):  # spraying made-up names from one address
        fail(accounts, f"user{number}", "192.0.2.9")
    with pytest.raises(LoginThrottledError):
        accounts.login("user-next", "guess", client="192.0.2.9")
    with pytest.raises(LoginThrottledError):  # a user who never logged in from there waits too
        accounts.login("admin", ADMIN_PASSWORD, client="192.0.2.9")
    caller, _ = accounts.login("bob", PASSWORD, client="192.0.2.9")  # bob is not locked out
    assert caller.name == "bob"
    accounts.login("admin", ADMIN_PASSWORD, client="192.0.2.10")  # nor is anybody elsewhere
    clock.now += 3600
    accounts.login("admin", ADMIN_PASSWORD, client="192.0.2.9")  # the limit passes


def test_throttled_logins_are_in_the_audit_log_once_per_delay(accounts, clock):
    for _ in range(LOGIN_FREE_FAILURES + 1):
        fail(accounts, "bob", "192.0.2.1")
    for _ in range(5):  # hammering while throttled adds one entry, not five
        with pytest.raises(LoginThrottledError):
            accounts.login("bob", PASSWORD, client="192.0.2.1")
    throttled = [e for e in accounts.audit_log() if e.action == "login throttled"]
    assert [(e.user, e.detail.split(";")[0]) for e in throttled] == [("bob", "192.0.2.1")]
    clock.now += LOGIN_FIRST_DELAY_SECONDS
    fail(accounts, "bob", "192.0.2.1")
    with pytest.raises(LoginThrottledError):
        accounts.login("bob", PASSWORD, client="192.0.2.1")
    assert len([e for e in accounts.audit_log() if e.action == "login throttled"]) == 2


@pytest.mark.parametrize("peer, forwarded, trusted, expected", [
    ("127.0.0.1", ["6.6.6.6"], [], "127.0.0.1"),  # nobody trusted: the header is ignored
    ("192.0.2.5", ["6.6.6.6"], ["127.0.0.1"], "192.0.2.5"),  # not from the proxy: ignored
    ("127.0.0.1", ["6.6.6.6, 198.51.100.2"], ["127.0.0.1"], "198.51.100.2"),  # the proxy's entry, not the client's
    ("127.0.0.1", ["6.6.6.6", "198.51.100.2, 10.1.2.3"], ["127.0.0.1", "10.0.0.0/8"], "198.51.100.2"),
    ("127.0.0.1", ["10.1.2.3"], ["127.0.0.1", "10.0.0.0/8"], "10.1.2.3"),  # all trusted: the left-most
    ("127.0.0.1", [], ["127.0.0.1"], "127.0.0.1"),
    ("::1", ["2001:db8::7"], ["::1"], "2001:db8::7"),
])
def test_the_client_address_believes_forwarded_for_only_from_trusted_proxies(peer, forwarded, trusted, expected):
    assert client_address(peer, forwarded, trusted) == expected


# ----- a real server, reached from several loopback addresses -------------------------------------


def from_address(url: str, source: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=120, transport=httpx.HTTPTransport(local_address=source))


def login(client: httpx.Client, name: str, password: str, forwarded: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.post("/v1/auth/login", json={"username": name, "password": password}, headers=headers)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """``kb serve`` behind a proxy on 127.0.0.1 (``KB_TRUSTED_PROXIES``); other loopback addresses are clients."""
    home = tmp_path_factory.mktemp("proxied") / "home"
    for args, password in ((("admin", "--admin"), ADMIN_PASSWORD), (("bob",), PASSWORD)):
        assert kb(home, "users", "add", *args, "--password-stdin", stdin=password + "\n").returncode == 0
    server = start_server(home, home.parent / "server.log", KB_TRUSTED_PROXIES="127.0.0.1")
    yield server
    server.stop()


def test_an_attacker_cannot_lock_the_admin_out_of_the_api(proxied):
    with from_address(proxied.url, "127.0.0.2") as attacker, from_address(proxied.url, "127.0.0.3") as admin:
        for _ in range(LOGIN_FREE_FAILURES + 1):
            assert login(attacker, "admin", "guess").status_code == 401
        throttled = login(attacker, "admin", ADMIN_PASSWORD)
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
        assert throttled.json()["error"]["type"] == "rate_limited"
        assert login(admin, "admin", ADMIN_PASSWORD).status_code == 200


def test_forwarded_for_does_not_bypass_the_address_limit_unless_from_a_trusted_proxy(proxied):
    with from_address(proxied.url, "127.0.0.4") as direct:  # not the proxy: its header is ignored
        for number in range(ADDRESS_FAILURES_ALLOWED):
            assert login(direct, f"made-up-{number}", "guess", forwarded=f"198.51.100.{number}").status_code == 401
        assert login(direct, "made-up-next", "guess", forwarded="198.51.100.250").status_code == 429
    with httpx.Client(base_url=proxied.url, timeout=120) as proxy:  # 127.0.0.1, the trusted proxy
        assert login(proxy, "bob", PASSWORD, forwarded="6.6.6.6, 127.0.0.4").status_code == 429  # the client is .4
        assert login(proxy, "bob", PASSWORD, forwarded="127.0.0.4, 203.0.113.5").status_code == 200
    entries = [json.loads(line) for line in kb(proxied.home, "audit", "--json", "--limit", "5").stdout.splitlines()]
    assert ("bob", "login", "203.0.113.5") in {(e["user"], e["action"], e["detail"]) for e in entries}


def test_kb_ui_lets_streamlits_server_believe_only_the_trusted_proxies(monkeypatch, tmp_path):
    from app.settings import load_settings
    from cli.main import ui_process

    monkeypatch.delenv("KB_TRUSTED_PROXIES", raising=False)
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # uvicorn's own setting, whatever the environment held
    _, environment = ui_process(load_settings(home=tmp_path))
    assert environment["FORWARDED_ALLOW_IPS"] == ""  # nobody's X-Forwarded-For (uvicorn trusts loopback by default)
    monkeypatch.setenv("KB_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")
    command, environment = ui_process(load_settings(home=tmp_path))
    assert environment["FORWARDED_ALLOW_IPS"] == "127.0.0.1,10.0.0.0/8"
    assert command[command.index("--server.address") + 1] == "127.0.0.1"


def test_only_the_front_key_lets_a_client_name_the_browser_a_login_comes_from(proxied):
    """The web UI forwards every browser's login from its own address and names the browser in X-KB-Client,
    with the service's front key. Without the key (or with a wrong one) the header is ignored: a client naming
    a fresh address for each guess would escape the per-address limit."""
    import os
    import stat

    from team.front_key import FRONT_KEY_FILE, read_front_key

    key_file = proxied.home / FRONT_KEY_FILE
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600  # a credential: the owner's alone
    key = read_front_key(key_file)
    assert key and len(key) >= 40

    def named(client: httpx.Client, name: str, password: str, browser: str, front_key: str | None):
        headers = {"X-KB-Client": browser, **({"X-KB-Front-Key": front_key} if front_key else {})}
        return client.post("/v1/auth/login", json={"username": name, "password": password}, headers=headers)

    with from_address(proxied.url, "127.0.0.6") as intruder:
        for number in range(ADDRESS_FAILURES_ALLOWED):
            forged = "wrong-" + key[6:] if number % 2 else None
            assert named(intruder, f"guess-{number}", "guess", f"203.0.113.{number}", forged).status_code == 401
        # Every failure counted against 127.0.0.6, whatever browser it named: the address now waits.
        assert named(intruder, "guess-next", "guess", "203.0.113.200", None).status_code == 429
    with from_address(proxied.url, "127.0.0.7") as web_ui:
        # The UI with the key: each browser is its own address (one browser's failures never slow another)...
        for _ in range(LOGIN_FREE_FAILURES + 1):
            assert named(web_ui, "bob", "guess", "browser\tA", key).status_code == 401
        assert named(web_ui, "bob", PASSWORD, "browser\tA", key).status_code == 429
        assert named(web_ui, "bob", PASSWORD, "198.51.100.9", key).status_code == 200
    entries = [json.loads(line) for line in kb(proxied.home, "audit", "--json", "--limit", "20").stdout.splitlines()]
    details = {(e["user"], e["action"], e["detail"]) for e in entries}
    assert ("bob", "login", "198.51.100.9") in details
    assert ("bob", "login failed", "browserA") in details  # printable characters only
    assert not any("203.0.113." in e["detail"] for e in entries)  # named without the key: not believed
