"""Users, grants, API keys, sessions and the audit log, in one SQLite file in the collection home.

``<home>/accounts.sqlite3`` (schema version in ``meta``, ``team.sqlite_file``; a newer
one is refused). Accounts are on as soon as one user exists:
``kb users add alice --admin``.

- Passwords: argon2id (argon2-cffi's defaults: 64 MiB, 3 passes), re-hashed on
  login when those parameters change.
- API keys: ``kb_<id>_<secret>`` with 32 random bytes of secret, shown once.
  Stored is the SHA-256 of the whole key: a key is random, not chosen by a
  person, so a slow hash adds nothing and would slow every request down. A key
  belongs to a user and may be limited to some collections; revoking it is
  immediate.
- Sessions (the web UI's login): random tokens, stored hashed like keys,
  valid for 12 hours.
- Login attempts (``team.throttle``): failures count per (user name, client
  address) pair, which then waits a doubling, capped delay; an address that fails
  too often waits, except for users who logged in from it before. A waiting
  attempt gets ``LoginThrottledError`` (how long to wait), whatever the password,
  and the audit log records it once per wait.
- Grants and keys name collections by the rule collection names follow
  (``app.settings.COLLECTION_NAME``): "../handbook" is refused, not stored.
- Audit log: append-only (triggers refuse UPDATE and DELETE): who asked which
  collection, uploaded, deleted, granted, created keys, logged in, failed to or
  was throttled. Question texts only with ``KB_AUDIT_QUESTIONS=true``. Every field
  is bounded (``team.audit``).
- The file is private (0600, its folder 0700: ``team.sqlite_file``).

Deliberately not here: what a role may do (``team.permissions``), HTTP (``server.deps``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.settings import COLLECTION_NAME
from core.errors import KbError
from team import throttle
from team.audit import AuditEntry, bounded
from team.permissions import GRANTS, Caller, Grant
from team.sqlite_file import SQLiteFile

__all__ = ["AccountError", "Accounts", "ApiKey", "AuditEntry", "AuthenticationError", "LoginThrottledError", "User"]

SCHEMA_VERSION = 1  # the throttle's tables were added, none changed: files stay readable by the previous version
SESSION_SECONDS = 12 * 3600
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
MIN_PASSWORD_LENGTH = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'member')), created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE, collection TEXT NOT NULL,
    access TEXT NOT NULL CHECK (access IN ('read', 'write')), PRIMARY KEY (user, collection));
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    key_hash TEXT NOT NULL, label TEXT NOT NULL DEFAULT '', collections TEXT,
    created REAL NOT NULL, revoked REAL, last_used REAL);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, user TEXT NOT NULL, key_id TEXT,
    action TEXT NOT NULL, collection TEXT, detail TEXT NOT NULL DEFAULT '');
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
""" + throttle.SCHEMA
_COLLECTION = re.compile(COLLECTION_NAME)


class AccountError(KbError, ValueError):
    """A request the account store refuses (unknown user, weak password, …); the message says why."""


class AuthenticationError(KbError):
    """A wrong, revoked or expired key or token, or a wrong password."""


class LoginThrottledError(AuthenticationError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class User:
    name: str
    role: str
    grants: dict[str, Grant]
    created: float


@dataclass(frozen=True)
class ApiKey:
    id: str
    user: str
    label: str
    collections: tuple[str, ...] | None
    created: float
    revoked: float | None
    last_used: float | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Accounts:
    """The account store of one home (see the module docstring)."""

    def __init__(self, home: Path, audit_questions: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(home) / "accounts.sqlite3"
        self.audit_questions = audit_questions
        self._clock = clock  # the throttle's delays are tested by moving it, never by waiting
        self._hasher = PasswordHasher()  # argon2id
        self._file = SQLiteFile(self.path, _SCHEMA, SCHEMA_VERSION)

    def _db(self):
        return self._file.transaction()

    # ----- users ---------------------------------------------------------------
    def enabled(self) -> bool:
        """Accounts are on once a user exists."""
        if not self.path.exists():
            return False
        with self._db() as db:
            return db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None

    def add_user(self, name: str, password: str, admin: bool = False) -> User:
        if not re.match(NAME_PATTERN, name):
            raise AccountError(f"{name!r} cannot be a user name: 1-64 letters, digits, '.', '_', '@' or '-'")
        self._check_password(password)
        with self._db() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"a user named {name!r} exists already")
            db.execute("INSERT INTO users VALUES (?, ?, ?, ?)",
                       (name, self._hasher.hash(password), "admin" if admin else "member", self._clock()))
        return self.user(name)

    def _check_password(self, password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")

    def user(self, name: str) -> User:
        with self._db() as db:
            row = db.execute("SELECT name, role, created FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise AccountError(f"no user named {name!r}")
            grants = dict(db.execute("SELECT collection, access FROM grants WHERE user = ?", (name,)).fetchall())
        return User(row[0], row[1], grants, row[2])

    def users(self) -> list[User]:
        with self._db() as db:
            names = [row[0] for row in db.execute("SELECT name FROM users ORDER BY name")]
        return [self.user(name) for name in names]

    def set_password(self, name: str, password: str) -> None:
        self._check_password(password)
        with self._db() as db:
            if not db.execute("UPDATE users SET password_hash = ? WHERE name = ?",
                              (self._hasher.hash(password), name)).rowcount:
                raise AccountError(f"no user named {name!r}")
            db.execute("DELETE FROM sessions WHERE user = ?", (name,))  # a changed password ends every session

    def remove_user(self, name: str) -> None:
        with self._db() as db:  # grants, keys and sessions go with it (ON DELETE CASCADE)
            if not db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount:
                raise AccountError(f"no user named {name!r}")

    def grant(self, name: str, collection: str, access: Grant) -> None:
        if access not in GRANTS:
            raise AccountError(f"access must be read or write, not {access!r}")
        _check_collection_name(collection)
        self.user(name)
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO grants VALUES (?, ?, ?)", (name, collection, access))

    def revoke(self, name: str, collection: str) -> bool:
        with self._db() as db:
            return bool(db.execute("DELETE FROM grants WHERE user = ? AND collection = ?", (name, collection)).rowcount)

    # ----- keys and sessions ---------------------------------------------------
    def create_key(self, user: str, collections: list[str] | None = None, label: str = "") -> tuple[ApiKey, str]:
        """A new key for ``user``; returns its record and the key itself, which is not stored and cannot be shown again."""
        for collection in collections or ():
            _check_collection_name(collection)
        self.user(user)
        key_id = secrets.token_hex(6)
        key = f"kb_{key_id}_{secrets.token_urlsafe(32)}"
        with self._db() as db:
            db.execute("INSERT INTO api_keys (id, user, key_hash, label, collections, created) VALUES (?, ?, ?, ?, ?, ?)",
                       (key_id, user, _digest(key), bounded(label), json.dumps(sorted(collections)) if collections else None,
                        self._clock()))
        return self.key(key_id), key

    def key(self, key_id: str) -> ApiKey:
        with self._db() as db:
            row = db.execute("SELECT id, user, label, collections, created, revoked, last_used FROM api_keys WHERE id = ?",
                             (key_id,)).fetchone()
        if row is None:
            raise AccountError(f"no API key {key_id!r}")
        return ApiKey(row[0], row[1], row[2], tuple(json.loads(row[3])) if row[3] else None, row[4], row[5], row[6])

    def keys(self, user: str | None = None) -> list[ApiKey]:
        with self._db() as db:
            ids = [row[0] for row in db.execute(
                "SELECT id FROM api_keys WHERE ? IS NULL OR user = ? ORDER BY created", (user, user))]
        return [self.key(key_id) for key_id in ids]

    def revoke_key(self, key_id: str) -> None:
        with self._db() as db:
            if not db.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                              (self._clock(), key_id)).rowcount:
                raise AccountError(f"no active API key {key_id!r}")

    def login(self, name: str, password: str, client: str = "") -> tuple[Caller, str]:
        """Check a password; returns the caller and a new session token.

        ``client`` is the address the attempt counts against (``team.throttle.client_address``;
        the web UI's browser session where it has none): failures back off per (name, client).
        """
        now = self._clock()
        with self._db() as db:  # one short transaction: the slow password check runs outside it
            attempt = throttle.begin(db, name, client, now)
        if isinstance(attempt, throttle.Wait):
            if attempt.first:
                self.audit(name, "login throttled", detail=f"{client}; {attempt.reason} waits {attempt.seconds:.0f} s")
            raise LoginThrottledError(attempt.seconds)
        with self._db() as db:
            row = db.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
        ok = False
        if row is not None:
            try:
                ok = self._hasher.verify(row[0], password)
            except (VerificationError, InvalidHashError):
                ok = False
        else:
            self._hasher.hash(password)  # as slow as a wrong password: the timing does not tell names apart
        if not ok:
            self.audit(name, "login failed", detail=client)
            raise AuthenticationError("wrong user name or password")
        token = f"kbs_{secrets.token_urlsafe(32)}"
        with self._db() as db:
            throttle.forgive(db, attempt, now)
            if self._hasher.check_needs_rehash(row[0]):
                db.execute("UPDATE users SET password_hash = ? WHERE name = ?", (self._hasher.hash(password), name))
            db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (_digest(token), name, now, now + SESSION_SECONDS))
        self.audit(name, "login", detail=client)
        return self.caller_for_token(token), token

    def logout(self, token: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (_digest(token),))

    def caller_for_token(self, token: str) -> Caller:
        """The caller an API key or session token stands for; ``AuthenticationError`` when it stands for nobody."""
        now = self._clock()
        with self._db() as db:
            if token.startswith("kb_") and token.count("_") >= 2:
                key_id = token.split("_", 2)[1]
                row = db.execute("SELECT key_hash, user, collections, revoked FROM api_keys WHERE id = ?",
                                 (key_id,)).fetchone()
                if row is None or row[3] is not None or not hmac.compare_digest(row[0], _digest(token)):
                    raise AuthenticationError("invalid or revoked API key")
                db.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (now, key_id))
                name, scope = row[1], frozenset(json.loads(row[2])) if row[2] else None
            elif token.startswith("kbs_"):
                row = db.execute("SELECT user FROM sessions WHERE token_hash = ? AND expires > ?",
                                 (_digest(token), now)).fetchone()
                if row is None:
                    raise AuthenticationError("the session has ended; log in again")
                name, scope, key_id = row[0], None, None
            else:
                raise AuthenticationError("invalid or revoked API key")
        user = self.user(name)
        return Caller(name=user.name, admin=user.role == "admin", grants=user.grants, key_collections=scope,
                      key_id=key_id if token.startswith("kb_") else None)

    # ----- audit -----------------------------------------------------------------
    def audit(self, user: str, action: str, collection: str | None = None, detail: str = "",
              key_id: str | None = None) -> None:
        """Append an entry; every field is bounded (``team.audit.MAX_FIELD``), whatever a client sent."""
        with self._db() as db:
            db.execute("INSERT INTO audit (at, user, key_id, action, collection, detail) VALUES (?, ?, ?, ?, ?, ?)",
                       (self._clock(), bounded(user), None if key_id is None else bounded(key_id), bounded(action),
                        None if collection is None else bounded(collection), bounded(detail)))

    def audit_log(self, limit: int | None = None, user: str | None = None,
                  collection: str | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries (all when None), oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT at, user, key_id, action, collection, detail FROM audit "
                "WHERE (? IS NULL OR user = ?) AND (? IS NULL OR collection = ?) ORDER BY id DESC LIMIT ?",
                (user, user, collection, collection, -1 if limit is None else limit)).fetchall()
        return [AuditEntry(*row) for row in reversed(rows)]


def _check_collection_name(collection: str) -> None:
    """The rule every collection name follows (``app.settings.COLLECTION_NAME``), for names in grants and keys."""
    if not _COLLECTION.fullmatch(collection):
        raise AccountError(f"{collection!r} cannot name a collection: 1-64 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit")
