"""Audit log entries: bounded when stored, escaped when printed, so that no entry can forge another.

Every field written to the audit log (``team.accounts``) is cut to ``MAX_FIELD``
characters, ending with a marker that says how long it was: a 100 KB user name
typed into a login form costs 200 characters, not 100 KB per attempt. ``kb audit``
prints each entry on one line (``audit_line``): line breaks, control, format and
bidirectional characters are shown as escapes (``\\n``, ``\\x1b``, ``\\u202e``) and a
backslash as ``\\\\``, so a user name holding "\\n… cli grant handbook: mallory: write"
prints as what it is, one failed login, never as a second entry.
``kb audit --json`` prints the stored text as it is (JSON escapes it by itself).

Deliberately not here: the log's table and who writes to it (``team.accounts``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone

MAX_FIELD = 200
# Categories shown as escapes: control, format (bidirectional marks and isolates among them), surrogates,
# private use, unassigned, and the Unicode line and paragraph separators.
_ESCAPED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True)
class AuditEntry:
    at: float
    user: str
    key_id: str | None
    action: str
    collection: str | None
    detail: str


def bounded(text: str, limit: int = MAX_FIELD) -> str:
    """``text``, or its start with a marker when it is longer than ``limit`` characters (the result never is)."""
    if len(text) <= limit:
        return text
    marker = f"…[truncated, {len(text)} characters]"
    return text[: max(0, limit - len(marker))] + marker


def printable(text: str) -> str:
    """``text`` on one line, every character that could break, hide or reorder the line escaped."""
    out = []
    for ch in text:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def audit_line(entry: AuditEntry) -> str:
    """One entry as ``kb audit`` prints it: when, who (and which key), what, where, details; always one line."""
    when = datetime.fromtimestamp(entry.at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    key = f" (key {printable(entry.key_id)})" if entry.key_id else ""
    where = f" {printable(entry.collection)}" if entry.collection else ""
    detail = f": {printable(entry.detail)}" if entry.detail else ""
    return f"{when}  {printable(entry.user)}{key}  {printable(entry.action)}{where}{detail}"
