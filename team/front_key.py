"""The key a front end (the web UI) shows the service to name the browser a login comes from.

The web UI is a client of ``kb serve``: every login it forwards arrives from the
UI's own address, so the login throttle (``team.throttle``) would count every
browser's failures against one address. The UI therefore names the browser's
address in ``X-KB-Client``, and the service believes that header only from a
request that also carries this key in ``X-KB-Front-Key``: any other client
could otherwise name a fresh address for each guess.

The key is 32 random bytes, URL-safe, kept in ``<home>/front.key`` (mode 0600,
in the home's 0700 folder), made by the service the first time it starts and
read by a UI with the same ``KB_HOME``. A UI on another machine gets a copy of
the file (``KB_FRONT_KEY_FILE``). It is a client's credential, so the file
holds it as such; the service compares in constant time. Deleting the file and
restarting the service changes it.

Worked example::

    key = ensure_front_key(home)          # service start: made once, then read
    client = forwarded_client(headers.get("x-kb-front-key"), headers.get("x-kb-client"), key)
    # -> "203.0.113.7" when the key matches, None otherwise (then the connection's address counts)

Deliberately not here: the throttle itself, proxies' ``X-Forwarded-For`` (``team.throttle``).
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from team.audit import bounded
from team.sqlite_file import private_folder
from team.throttle import MAX_ADDRESS

FRONT_KEY_FILE = "front.key"


def ensure_front_key(home: Path) -> str:
    """The home's front key, made (0600, written whole or not at all) when there is none."""
    path = Path(home) / FRONT_KEY_FILE
    existing = read_front_key(path)
    if existing:
        return existing
    private_folder(path.parent)
    key = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write(key + "\n")
    try:
        os.link(temporary, path)  # never replaces a key another process made meanwhile
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return read_front_key(path) or key


def read_front_key(path: Path) -> str | None:
    """The key in ``path``; None when the file is missing or empty (a UI then forwards no address)."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError, PermissionError):
        return None
    return text or None


def forwarded_client(front_key: str | None, client: str | None, expected: str | None) -> str | None:
    """The client a front end names, when it showed the right key; None otherwise."""
    if not (front_key and client and expected):
        return None
    if not hmac.compare_digest(front_key.encode(), expected.encode()):
        return None
    cleaned = "".join(ch for ch in client if ch.isprintable()).strip()
    return bounded(cleaned, MAX_ADDRESS) or None
