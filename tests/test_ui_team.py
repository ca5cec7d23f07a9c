"""The web UI for a team, under AppTest with the real pipeline: log in, switch collection, upload, ask, open a
citation, rate, reload and find the conversation; conversations renamed, exported, deleted.

Answers come from the small built-in generator (Qwen2.5-Coder-0.5B) to keep the
runs short; what is checked is the page, not the model.
"""

from __future__ import annotations

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from team.accounts import Accounts
from team.conversations import Conversations
from app.pipeline import Pipeline
from app.settings import load_settings
from tests.conftest import REPO, SAMPLE_DATA

APP = str(REPO / "ui" / "streamlit_app.py")
PASSWORD = "carol's password"


@pytest.fixture
def home(streamlit_env):
    return streamlit_env / "home"


def sidebar_text(app: AppTest) -> str:
    return "\n".join(str(m.value) for m in app.sidebar.markdown) + "\n".join(str(c.value) for c in app.sidebar.caption)


def make_collections(tmp_path) -> None:
    """'guide' with the sample documents, 'other' with one note: made the way `kb ingest -c` makes them."""
    base = Pipeline.from_settings(load_settings(collection="guide"))
    shutil.copytree(SAMPLE_DATA, tmp_path / "guide-docs")
    base.ingest(tmp_path / "guide-docs", progress=False)
    other = base.with_settings(collection="other")
    (tmp_path / "other-docs").mkdir()
    (tmp_path / "other-docs" / "note.md").write_text("# Note\n\nThe canteen opens at 11:30.\n", encoding="utf-8")
    other.ingest(tmp_path / "other-docs", progress=False)
    (tmp_path / "secret-docs").mkdir()
    (tmp_path / "secret-docs" / "pay.md").write_text("# Pay\n\nSalaries are reviewed in March.\n", encoding="utf-8")
    base.with_settings(collection="secret").ingest(tmp_path / "secret-docs", progress=False)


def log_in(app: AppTest, name: str, password: str) -> AppTest:
    app.text_input[0].set_value(name)
    app.text_input[1].set_value(password)
    return app.button[0].click().run()


def test_a_team_member_logs_in_switches_uploads_asks_rates_and_finds_the_conversation_again(home, tmp_path):
    make_collections(tmp_path)
    accounts = Accounts(home)
    accounts.add_user("admin", "admin password", admin=True)
    accounts.add_user("carol", PASSWORD)
    accounts.grant("carol", "guide", "read")
    accounts.grant("carol", "other", "write")

    app = AppTest.from_file(APP, default_timeout=600).run()
    assert not app.exception
    assert [t.label for t in app.text_input] == ["User name", "Password"] and not app.chat_input  # nothing before login
    log_in(app, "carol", "wrong password")
    assert "wrong user name or password" in app.error[0].value
    log_in(app, "carol", PASSWORD)
    assert not app.exception
    assert "Logged in as **carol**" in sidebar_text(app)
    picker = app.sidebar.selectbox(key="collection_picker")
    assert picker.options == ["guide", "other"]  # not "secret"
    # Read-only on "guide": no uploader, no delete buttons.
    picker.set_value("guide").run()
    assert not app.sidebar.file_uploader and not [b for b in app.sidebar.button if b.key and b.key.startswith("delete-")]

    # Write access on "other": upload a Word document, see it indexed.
    app.sidebar.selectbox(key="collection_picker").set_value("other").run()
    import docx

    document = docx.Document()
    document.add_heading("Parking", level=1)
    document.add_paragraph("Visitors park on level -2 of the garage.")
    docx_path = tmp_path / "parking.docx"
    document.save(str(docx_path))
    app.sidebar.file_uploader[0].set_value(
        [("parking.docx", docx_path.read_bytes(), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
         ("broken.pdf", b"%PDF-1.7 nothing else", "application/pdf")]).run()
    next(b for b in app.sidebar.button if b.label == "Add to knowledge base").click().run()
    assert not app.exception
    assert any("broken.pdf" in e.value for e in app.sidebar.error)  # the failure, by file
    assert "2 documents" in sidebar_text(app)  # note.md and parking.docx

    # Ask in "guide"; the answer is saved, rated down with a note.
    app.sidebar.selectbox(key="collection_picker").set_value("guide").run()
    app.chat_input[0].set_value("Which port does the web interface listen on?").run()
    assert not app.exception
    expanders = [e.label for e in app.expander]
    assert any(label.startswith("[") for label in expanders) or "Closest passages found" in expanders  # a citation
    app.feedback[0].set_value(0).run()  # thumbs down
    app.text_input(key=next(t.key for t in app.text_input if t.key and t.key.startswith("note-"))).set_value(
        "It should say 8501").run()
    store = Conversations(home)
    [conversation] = store.list("carol", "guide")
    [turn] = store.turns("carol", conversation.id)
    assert turn.rating == -1 and turn.note == "It should say 8501"
    assert conversation.title == "Which port does the web interface listen on?"

    # Reload: a new session, log in again, the conversation is in the sidebar and opens with its rating.
    again = AppTest.from_file(APP, default_timeout=600).run()
    log_in(again, "carol", PASSWORD)
    again.sidebar.selectbox(key="collection_picker").set_value("guide").run()
    opener = again.sidebar.button(key=f"open-{conversation.id}")
    assert opener.label == conversation.title
    opener.click().run()
    assert not again.exception
    assert [m.value for m in again.chat_message[0].markdown][0] == "Which port does the web interface listen on?"
    assert again.feedback[0].value == 0 and again.text_input(key=f"note-{turn.id}").value == "It should say 8501"


def test_conversations_without_accounts_are_renamed_exported_and_deleted(home, tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_DATA, docs)
    Pipeline.from_settings(load_settings()).ingest(docs, progress=False)
    app = AppTest.from_file(APP, default_timeout=600).run()
    assert not app.exception and not app.text_input  # no login without accounts
    app.chat_input[0].set_value("How do I start the web UI?").run()
    store = Conversations(home)
    [conversation] = store.list("local")
    app.sidebar.text_input(key=f"title-{conversation.id}").set_value("Starting the UI").run()
    assert store.get("local", conversation.id).title == "Starting the UI"
    downloads = {d.label for d in app.sidebar.get("download_button")}
    assert downloads == {"Markdown", "JSON"}
    exported = json.loads(store.export_json("local", conversation.id))
    assert exported["title"] == "Starting the UI" and exported["turns"][0]["question"] == "How do I start the web UI?"
    assert store.export_markdown("local", conversation.id).startswith("# Starting the UI")
    app.sidebar.button(key=f"forget-{conversation.id}").click().run()
    assert not app.exception and store.list("local") == []
