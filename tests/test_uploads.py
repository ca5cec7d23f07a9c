"""Where uploaded files live and what a delete removes; the modes of the files that hold secrets.

Every collection's uploads live under the home (``<home>/documents/<name>/``), the configured
collection's too: never in ``KB_DOCUMENTS_DIR`` or any folder of the user's own. A delete removes
only the files the product stored (it keeps a record of them), never a file put there by hand nor
a folder ``kb ingest`` indexed in place.
"""

from __future__ import annotations

import os
import stat
import sqlite3

import pytest

from app.indexing import UnsafeFileNameError
from team.accounts import Accounts
from team.collections import Library
from team.conversations import Conversations
from tests.conftest import write
from tests.server_helpers import kb

NOTE = b"# Keys\n\nThe spare key hangs by the door.\n"


@pytest.fixture
def library(make_pipeline):
    return Library(make_pipeline(second_embedder="none"))  # the configured collection is "default"


def test_the_configured_collections_uploads_live_under_the_home(library, tmp_path):
    settings = library.base.settings
    report = library.add_documents(settings.collection, [("keys.md", NOTE)])
    assert report.added == ("keys.md",)
    assert (settings.home / "documents" / "default" / "keys.md").read_bytes() == NOTE
    assert not (settings.documents_dir / "keys.md").exists()  # KB_DOCUMENTS_DIR is not an upload folder
    assert stat.S_IMODE((settings.home / "documents" / "default").stat().st_mode) == 0o700
    assert library.documents_dir("default") == settings.home / "documents" / "default"


def test_a_document_delete_removes_only_files_the_product_stored(library, tmp_path):
    own = tmp_path / "own"
    write(own / "handbook.md", "# Handbook\n\nLeave is 25 days a year.\n")
    library.pipeline_for("default").ingest(own, progress=False)  # `kb ingest own`: indexed in place
    library.add_documents("default", [("keys.md", NOTE)])
    by_hand = library.documents_dir("default") / "by-hand.md"
    by_hand.write_text("# Mine\n\nPut here by hand.\n", encoding="utf-8")
    library.add_documents("default", [("more.md", b"# More\n\nThe canteen opens at 11:30.\n")])
    assert {"handbook.md", "keys.md", "by-hand.md", "more.md"} <= set(library.pipeline("default").status().files)

    for source in ("handbook.md", "by-hand.md", "keys.md"):
        assert library.delete_document("default", source)
    assert (own / "handbook.md").is_file() and by_hand.is_file()  # gone from the index, not from the disk
    assert not (library.documents_dir("default") / "keys.md").exists()
    assert set(library.pipeline("default").status().files) == {"more.md"}
    assert not library.delete_document("default", "keys.md")  # nothing left to delete


def test_kb_collections_delete_removes_the_uploads_and_nothing_else(library, tmp_path):
    library.add_documents("default", [("keys.md", NOTE)])
    folder = library.documents_dir("default")
    (folder / "by-hand.md").write_text("# Mine\n", encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "nested.md").write_text("# Nested\n", encoding="utf-8")
    result = kb(library.base.settings.home, "collections", "--delete", "default")
    assert result.returncode == 0, result.stderr
    assert not library.exists("default") and not (folder / "keys.md").exists()
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == ["by-hand.md", "sub", "sub/nested.md"]


def test_kb_ingest_of_a_folder_keeps_the_collections_uploads(library, tmp_path, run_models):
    own = tmp_path / "own"
    write(own / "handbook.md", "# Handbook\n\nLeave is 25 days a year.\n")
    write(own / "old.md", "# Old\n\nThe old canteen closed.\n")
    settings = library.base.settings
    env = {"KB_SECOND_EMBEDDER": "none", "KB_MODEL_CACHE": str(settings.model_cache)}
    assert kb(settings.home, "ingest", str(own), "-q", **env).returncode == 0
    library.add_documents("default", [("keys.md", NOTE)])
    (own / "old.md").unlink()
    again = kb(settings.home, "ingest", str(own), "-q", **env)
    assert again.returncode == 0, again.stderr
    assert "removed 1" in again.stdout  # old.md, gone from the folder
    assert set(library.pipeline("default").status().files) == {"handbook.md", "keys.md"}  # the upload stays


@pytest.mark.parametrize("name", ["invoice\u202efdp.md", "a\u2066b\u2069.md", "c\u200f.md", "d\u061c.md"])
def test_upload_names_with_bidirectional_controls_are_refused(library, name):
    with pytest.raises(UnsafeFileNameError):
        library.add_documents("default", [("fine.md", NOTE), (name, NOTE)])
    folder = library.documents_dir("default")
    assert not folder.exists() or not [p for p in folder.iterdir() if p.suffix == ".md"]  # not even fine.md


def test_the_files_holding_secrets_are_private(tmp_path):
    home = tmp_path / "new-home"
    accounts = Accounts(home)
    accounts.add_user("admin", "admin password", admin=True)
    Conversations(home).create("admin", "guide", "hello")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    files = [p for p in home.iterdir() if p.name.startswith(("accounts.sqlite3", "conversations.sqlite3"))]
    assert {p.name for p in files} >= {"accounts.sqlite3", "conversations.sqlite3"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}


def test_an_existing_world_readable_accounts_file_is_made_private(tmp_path):
    home = tmp_path / "old-home"
    home.mkdir(mode=0o755)
    with sqlite3.connect(home / "accounts.sqlite3"):
        pass
    os.chmod(home / "accounts.sqlite3", 0o644)
    os.chmod(home, 0o755)
    assert not Accounts(home).enabled()
    assert stat.S_IMODE((home / "accounts.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_kb_users_add_creates_a_private_home(tmp_path):
    home = tmp_path / "cli-home"
    result = kb(home, "users", "add", "admin", "--admin", "--password-stdin", stdin="admin password\n")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "accounts.sqlite3").stat().st_mode) == 0o600
