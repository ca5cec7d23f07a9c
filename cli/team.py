"""``kb users``, ``kb keys``, ``kb audit``, ``kb feedback``: a team's accounts and ratings from the command line.

Accounts: ``team.accounts``. Ratings given in the web UI become an evaluation set:
``kb feedback export`` (``team.feedback``).

Passwords are read from a prompt (never a flag, which would land in the shell's
history), or from standard input with ``--password-stdin`` for scripts.
An API key is printed once, when it is created; only its hash is kept.
``kb audit`` prints one line per entry whatever its fields hold (``team.audit.audit_line``
escapes line breaks and control characters); ``--json`` prints them exactly.

Deliberately not here: the accounts' rules (``team.accounts``), the export's (``team.feedback``), the server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Annotated, Optional

import typer

from team import feedback as feedback_export
from team.accounts import AccountError, Accounts
from team.audit import audit_line, printable
from cli.support import settings_or_exit as _settings
from team.conversations import Conversations

users = typer.Typer(no_args_is_help=True, help="Users of `kb serve`: accounts are on once one exists.")
keys = typer.Typer(no_args_is_help=True, help="API keys: scoped to a user, optionally to collections; revocable.")
feedback = typer.Typer(no_args_is_help=True, help="Thumbs up and down given in the web UI.")

PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")]


def _accounts() -> Accounts:
    settings = _settings()
    return Accounts(settings.home, audit_questions=settings.audit_questions)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _run(action) -> None:
    try:
        action()
    except AccountError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _when(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if timestamp else "-"


@users.command("add")
def users_add(name: str, admin: Annotated[bool, typer.Option("--admin", help="May do everything.")] = False,
              password_stdin: PasswordStdin = False) -> None:
    """Add a user (the first one turns accounts on; make it an admin)."""
    accounts = _accounts()

    def add() -> None:
        if not accounts.enabled() and not admin:
            raise AccountError("the first user must be an admin (--admin): nobody could grant access otherwise")
        user = accounts.add_user(name, _password(password_stdin), admin=admin)
        accounts.audit("cli", "add user", detail=f"{user.name} ({user.role})")
        typer.echo(f"added {user.role} {user.name}")

    _run(add)


@users.command("list")
def users_list() -> None:
    """Users, their roles and grants."""
    for user in _accounts().users():
        grants = ", ".join(f"{collection} ({access})" for collection, access in sorted(user.grants.items()))
        typer.echo(f"{user.name}  {user.role}  {grants or ('every collection' if user.role == 'admin' else 'no collections')}")


@users.command("passwd")
def users_passwd(name: str, password_stdin: PasswordStdin = False) -> None:
    """Set a user's password (ends their sessions)."""
    accounts = _accounts()
    _run(lambda: (accounts.set_password(name, _password(password_stdin)), accounts.audit("cli", "set password", detail=name)))
    typer.echo(f"password of {name} changed")


@users.command("grant")
def users_grant(name: str, collection: str,
                write: Annotated[bool, typer.Option("--write", help="May upload and delete documents too.")] = False) -> None:
    """Let a user read (or, with --write, change) a collection."""
    accounts = _accounts()
    access = "write" if write else "read"
    _run(lambda: (accounts.grant(name, collection, access), accounts.audit("cli", "grant", collection, f"{name}: {access}")))
    typer.echo(f"{name} may {access} {collection}")


@users.command("revoke")
def users_revoke(name: str, collection: str) -> None:
    """Take a user's access to a collection away."""
    accounts = _accounts()
    if not accounts.revoke(name, collection):
        typer.echo(f"error: {name} had no grant on {collection}", err=True)
        raise typer.Exit(2)
    accounts.audit("cli", "revoke", collection, name)
    typer.echo(f"{name} may no longer use {collection}")


@users.command("remove")
def users_remove(name: str) -> None:
    """Remove a user with their grants, keys and sessions."""
    accounts = _accounts()
    _run(lambda: (accounts.remove_user(name), accounts.audit("cli", "remove user", detail=name)))
    typer.echo(f"removed {name}")


@keys.command("create")
def keys_create(
    user: str,
    collection: Annotated[Optional[list[str]], typer.Option("--collection", "-c", help="Limit the key to this collection (repeatable).")] = None,
    label: Annotated[str, typer.Option("--label", help="What the key is for.")] = "",
) -> None:
    """Create an API key; it is printed once and cannot be shown again."""
    accounts = _accounts()

    def create() -> None:
        record, key = accounts.create_key(user, collection, label)
        accounts.audit("cli", "create key", detail=f"{record.id} for {user}")
        scope = ", ".join(record.collections) if record.collections else "all of the user's collections"
        typer.echo(f"key {record.id} for {user} ({scope}); copy it now, it is not stored:", err=True)
        typer.echo(key)

    _run(create)


@keys.command("list")
def keys_list(user: Annotated[Optional[str], typer.Argument(help="Only this user's keys.")] = None) -> None:
    """API keys (never the keys themselves)."""
    for key in _accounts().keys(user):
        state = f"revoked {_when(key.revoked)}" if key.revoked else f"last used {_when(key.last_used)}"
        scope = ",".join(key.collections) if key.collections else "*"
        typer.echo(f"{key.id}  {key.user}  collections {scope}  {printable(key.label) or '-'}  created {_when(key.created)}  {state}")


@keys.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key at once."""
    accounts = _accounts()
    _run(lambda: (accounts.revoke_key(key_id), accounts.audit("cli", "revoke key", detail=key_id)))
    typer.echo(f"revoked {key_id}")


def audit(
    limit: Annotated[int, typer.Option("--limit", "-n", help="The newest this many entries.")] = 50,
    user: Annotated[Optional[str], typer.Option("--user")] = None,
    collection: Annotated[Optional[str], typer.Option("--collection", "-c")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The audit log: who asked which collection, uploaded, deleted, granted, logged in."""
    for entry in _accounts().audit_log(limit, user, collection):
        # --json: the stored text exactly, for programs (JSON escapes line breaks and control characters itself).
        typer.echo(json.dumps(asdict(entry), ensure_ascii=False) if as_json else audit_line(entry))


@feedback.command("export")
def feedback_export_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="The JSON-lines file to write (kb eval-qa reads it).")],
    collection: Annotated[Optional[str], typer.Option("--collection", "-c", help="Only this collection's answers.")] = None,
    rating: Annotated[str, typer.Option("--rating", help="down, up or all.")] = "all",
) -> None:
    """Write the rated answers as a regression set: `kb eval-qa FILE` asks them again."""
    wanted = {"down": -1, "up": 1, "all": None}
    if rating not in wanted:
        typer.echo("error: --rating is down, up or all", err=True)
        raise typer.Exit(2)
    result = feedback_export.export(Conversations(_settings().home), out, collection, wanted[rating])
    typer.echo(f"wrote {result.written} questions ({result.down} rated down, {result.up} up) to {out}")
    for reason in result.left_out:
        typer.echo(f"  left out {reason}", err=True)
