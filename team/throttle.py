"""Login throttling: a growing delay per (user name, address) pair, a limit per address, whose address counts.

A failed login costs the (user name, client address) pair it came from, and only it:

- a pair's first ``LOGIN_FREE_FAILURES`` failures are free (typos); after each
  further one the pair waits ``LOGIN_FIRST_DELAY_SECONDS``, doubling, at most
  ``LOGIN_MAX_DELAY_SECONDS``: a delay, never a lock-out. A success starts the
  pair afresh; so does a day without failures;
- an address with ``ADDRESS_FAILURES_ALLOWED`` failures, whatever the names, in
  ``ADDRESS_WINDOW_SECONDS`` waits until the oldest of them ages out, except for
  the users who have logged in from it before: their usual place.

So failures elsewhere, or for other names, never keep a user with the right
password out of their usual place; an attacker at that same address (one NAT)
can only slow the one pair they guess at. A waiting pair or address is refused
before the password is checked. Every attempt is counted as a failure before
its password is checked and forgiven when it was right, so parallel guesses
cannot slip between the check and the count.

``client_address`` says which address counts: the connection's, or, when the
connection comes from a proxy ``KB_TRUSTED_PROXIES`` names, the right-most
address in ``X-Forwarded-For`` that is not a trusted proxy (what the outermost
trusted proxy saw: everything left of it the client may have written itself).

Deliberately not here: passwords, sessions and the audit log (``team.accounts``), HTTP (``server``).
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from team.audit import bounded

LOGIN_FREE_FAILURES = 5
LOGIN_FIRST_DELAY_SECONDS = 5.0
LOGIN_MAX_DELAY_SECONDS = 300.0
LOGIN_PAIR_MEMORY_SECONDS = 24 * 3600.0  # a pair whose last failure is older starts afresh
ADDRESS_FAILURES_ALLOWED = 20
ADDRESS_WINDOW_SECONDS = 300.0
MAX_ADDRESS = 100  # an address is short; anything longer was written by a client, not a proxy

SCHEMA = """
CREATE TABLE IF NOT EXISTS login_pairs (
    user TEXT NOT NULL, address TEXT NOT NULL, failures INTEGER NOT NULL DEFAULT 0, last_failure REAL,
    last_success REAL, PRIMARY KEY (user, address));
CREATE TABLE IF NOT EXISTS login_failures (who TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS login_failures_who ON login_failures (who, at);
CREATE TABLE IF NOT EXISTS login_waits_noted (key TEXT PRIMARY KEY, until REAL NOT NULL);
"""


@dataclass(frozen=True)
class Wait:
    """A login refused before its password is checked."""

    seconds: float
    reason: str  # "this user name from this address" or "this address"
    first: bool  # the first refusal of this wait: the one the audit log records


@dataclass(frozen=True)
class Attempt:
    """A login let through to its password check, counted as a failure until ``forgive`` says otherwise."""

    user: str
    address: str
    failure_row: int


def pair_delay(failures: int) -> float:
    """How long a pair waits after its ``failures``-th failure in a row."""
    if failures <= LOGIN_FREE_FAILURES:
        return 0.0
    return min(LOGIN_FIRST_DELAY_SECONDS * 2 ** (failures - LOGIN_FREE_FAILURES - 1), LOGIN_MAX_DELAY_SECONDS)


def begin(db: sqlite3.Connection, user: str, address: str, now: float) -> Wait | Attempt:
    """Refuse the attempt (``Wait``) or count it as a failure and let its password be checked (``Attempt``)."""
    user, address = bounded(user), bounded(address or "unknown")
    db.execute("DELETE FROM login_failures WHERE at < ?", (now - ADDRESS_WINDOW_SECONDS,))
    db.execute("DELETE FROM login_pairs WHERE last_success IS NULL AND last_failure < ?",
               (now - LOGIN_PAIR_MEMORY_SECONDS,))
    db.execute("DELETE FROM login_waits_noted WHERE until <= ?", (now,))
    row = db.execute("SELECT failures, last_failure, last_success FROM login_pairs WHERE user = ? AND address = ?",
                     (user, address)).fetchone()
    failures, last_failure, known = (row[0], row[1], row[2] is not None) if row else (0, None, False)
    if last_failure is not None and now - last_failure > LOGIN_PAIR_MEMORY_SECONDS:
        failures = 0
    if failures and last_failure is not None and (wait := last_failure + pair_delay(failures) - now) > 0:
        return _wait(db, f"pair\x00{user}\x00{address}", wait, "this user name from this address", now)
    if not known:  # a user's usual place is not limited by what others do from there
        newest = db.execute("SELECT at FROM login_failures WHERE who = ? ORDER BY at DESC LIMIT ?",
                            (f"address:{address}", ADDRESS_FAILURES_ALLOWED)).fetchall()
        if len(newest) >= ADDRESS_FAILURES_ALLOWED and (wait := newest[-1][0] + ADDRESS_WINDOW_SECONDS - now) > 0:
            return _wait(db, f"address\x00{address}", wait, "this address", now)
    db.execute(
        "INSERT INTO login_pairs (user, address, failures, last_failure) VALUES (?, ?, 1, ?) "
        "ON CONFLICT (user, address) DO UPDATE SET last_failure = excluded.last_failure, "
        "failures = CASE WHEN login_pairs.last_failure IS NULL OR login_pairs.last_failure < ? THEN 1 "
        "ELSE login_pairs.failures + 1 END",
        (user, address, now, now - LOGIN_PAIR_MEMORY_SECONDS))
    cursor = db.execute("INSERT INTO login_failures VALUES (?, ?)", (f"address:{address}", now))
    return Attempt(user, address, int(cursor.lastrowid))


def forgive(db: sqlite3.Connection, attempt: Attempt, now: float) -> None:
    """The attempt's password was right: it was no failure, and this address is now the user's known place."""
    db.execute("DELETE FROM login_failures WHERE rowid = ?", (attempt.failure_row,))
    db.execute("UPDATE login_pairs SET failures = 0, last_failure = NULL, last_success = ? WHERE user = ? AND address = ?",
               (now, attempt.user, attempt.address))


def _wait(db: sqlite3.Connection, key: str, seconds: float, reason: str, now: float) -> Wait:
    # One audit entry per wait, not one per refused attempt: hammering a waiting pair cannot flood the log.
    first = db.execute("SELECT 1 FROM login_waits_noted WHERE key = ?", (key,)).fetchone() is None
    if first:
        db.execute("INSERT OR REPLACE INTO login_waits_noted VALUES (?, ?)", (key, now + seconds))
    return Wait(seconds, reason, first)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[str]) -> str:
    """The address a login counts against: ``peer``, or what the outermost trusted proxy saw (module docstring)."""
    peer = peer or "unknown"
    networks = [ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies]
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        host = _host(hop)
        if not _trusted(host, networks):
            return bounded(host, MAX_ADDRESS)
    return bounded(_host(hops[0]), MAX_ADDRESS) if hops else peer  # every hop a proxy: the first one asked


def _host(hop: str) -> str:
    """An address without the port a proxy may add: "192.0.2.1:5000" and "[2001:db8::1]:80" -> the address."""
    if hop.startswith("[") and "]" in hop:
        return hop[1:hop.index("]")]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def _trusted(host: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # not an address: nothing a proxy would write
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:  # "::ffff:127.0.0.1" on a dual-stack socket
        address = address.ipv4_mapped
    return any(address in network for network in networks)
