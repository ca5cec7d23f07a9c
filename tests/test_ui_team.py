"""The web UI for a team, under AppTest with the real pipeline: log in, switch collection, upload, ask, open a
citation, rate, reload and find the conversation; conversations renamed, exported, deleted; failed logins that
lock nobody else out; uploads kept under the home, reported per upload, and written to the audit log.

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
from tests.conftest import REPO, SAMPLE_DATA, make_pdf

APP = str(REPO / "ui" / "streamlit_app.py")
PASSWORD = "carol's password"


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


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


def test_a_team_member_logs_in_switches_uploads_asks_rates_and_finds_the_conversation_again(home, tmp_path, ui_service):
    make_collections(tmp_path)
    accounts = Accounts(home)
    accounts.add_user("admin", "admin password", admin=True)
    accounts.add_user("carol", PASSWORD)
    accounts.grant("carol", "guide", "read")
    accounts.grant("carol", "other", "write")

    ui_service()
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
    # The audit log has what the API's would: the login, the upload, the question (not its text by default).
    entries = {(e.user, e.action, e.collection, e.detail) for e in accounts.audit_log()}
    assert ("carol", "upload", "other", "parking.docx, broken.pdf") in entries
    assert ("carol", "ask", "guide", "") in entries
    assert any(e.user == "carol" and e.action == "login failed" and e.detail.startswith("web UI session ")
               for e in accounts.audit_log())
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


def test_conversations_without_accounts_are_renamed_exported_and_deleted(home, tmp_path, ui_service):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_DATA, docs)
    Pipeline.from_settings(load_settings()).ingest(docs, progress=False)
    ui_service()
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


def logged_in_as(app: AppTest, name: str) -> bool:
    """Past the login form: carol has no collection yet, so the page says so, to her by name."""
    return not app.text_input and any(i.value.startswith(f"{name}, no collection is shared with you") for i in app.info)


def test_failed_logins_for_a_made_up_name_lock_nobody_else_out(home, monkeypatch, ui_service):
    from streamlit.runtime.context import ContextProxy

    # As a browser on the same machine (or behind a proxy nobody declared): Streamlit gives no address.
    monkeypatch.setattr(ContextProxy, "ip_address", property(lambda self: None))
    accounts = Accounts(home)
    accounts.add_user("admin", "admin password", admin=True)
    accounts.add_user("carol", PASSWORD)
    ui_service()
    attacker = AppTest.from_file(APP, default_timeout=600).run()
    for _ in range(12):
        log_in(attacker, "no-such-user", "guess")
    assert attacker.error and not attacker.exception
    carol = AppTest.from_file(APP, default_timeout=600).run()  # another browser
    log_in(carol, "carol", PASSWORD)
    assert not carol.exception and not carol.error and logged_in_as(carol, "carol")
    log_in(attacker, "carol", PASSWORD)  # even from the attacker's own browser: another (name, address) pair
    assert logged_in_as(attacker, "carol")
    throttled = [e for e in accounts.audit_log() if e.action == "login throttled"]
    assert throttled and {e.user for e in throttled} == {"no-such-user"}


def test_uploads_stay_under_the_home_are_reported_per_upload_and_audited(home, tmp_path, monkeypatch, ui_service):
    monkeypatch.setenv("KB_AUDIT_QUESTIONS", "true")
    ui_service()
    app = AppTest.from_file(APP, default_timeout=600).run()
    assert not app.exception

    def upload(*files: tuple[str, bytes]) -> None:
        app.sidebar.file_uploader[0].set_value([(name, data, "text/markdown") for name, data in files]).run()
        next(b for b in app.sidebar.button if b.label == "Add to knowledge base").click().run()
        assert not app.exception

    upload(("broken.pdf", b"%PDF-1.7 nothing else"), ("parking.md", b"# Parking\n\nVisitors park on level -2.\n"))
    assert [e.value for e in app.sidebar.error if "broken.pdf" in e.value]  # the failure, by file
    assert any("1 added" in s.value for s in app.sidebar.success)
    upload(("canteen.md", b"# Canteen\n\nThe canteen opens at 11:30.\n"))
    assert not app.sidebar.error  # broken.pdf failed once: it is not this upload's failure
    [success] = [s.value for s in app.sidebar.success]
    assert "1 added" in success and "time:" not in success and "failed" not in success
    uploads = home / "documents" / "default"
    assert sorted(p.name for p in uploads.iterdir() if not p.name.startswith(".")) == ["broken.pdf", "canteen.md",
                                                                                       "parking.md"]
    assert not (tmp_path / "docs").exists()  # KB_DOCUMENTS_DIR is not where uploads go
    # A file indexed with a problem is reported as a warning, by file (here: a PDF pypdf rejects, read by pdfium).
    good = make_pdf(tmp_path / "good.pdf", ["Recovered text survives."]).read_bytes()
    upload(("damaged.pdf", good[: good.rfind(b"startxref")]))
    assert any("damaged.pdf" in w.value and "recovered with pdfium" in w.value for w in app.sidebar.warning)

    app.chat_input[0].set_value("What is the capital of Mongolia?").run()  # refused without generating
    assert not app.exception
    entries = {(e.user, e.action, e.collection, e.detail) for e in Accounts(home).audit_log()}
    assert ("local", "upload", "default", "canteen.md") in entries
    assert ("local", "ask", "default", "What is the capital of Mongolia?") in entries
    app.sidebar.button(key="delete-canteen.md").click().run()
    assert not (uploads / "canteen.md").exists()
    assert ("local", "delete document", "default", "canteen.md") in {
        (e.user, e.action, e.collection, e.detail) for e in Accounts(home).audit_log()}


def test_an_open_page_loses_what_the_service_takes_away(home, tmp_path, ui_service):
    """The page holds nothing of its own: a grant revoked, then a password changed (which ends every session),
    take effect on the user's next click in a page that is already open."""
    (tmp_path / "other-docs").mkdir()
    (tmp_path / "other-docs" / "note.md").write_text("# Note\n\nThe canteen opens at 11:30.\n", encoding="utf-8")
    Pipeline.from_settings(load_settings(collection="other")).ingest(tmp_path / "other-docs", progress=False)
    accounts = Accounts(home)
    accounts.add_user("admin", "admin password", admin=True)
    accounts.add_user("carol", PASSWORD)
    accounts.grant("carol", "other", "write")
    ui_service()
    app = AppTest.from_file(APP, default_timeout=600).run()
    log_in(app, "carol", PASSWORD)
    assert "Collection **other**: 1 documents" in sidebar_text(app) and app.sidebar.file_uploader

    accounts.revoke("carol", "other")
    app.run()
    assert not app.exception and logged_in_as(app, "carol")  # nothing listed, no uploader, no documents
    assert not app.sidebar.file_uploader and "Collection **other**" not in sidebar_text(app)

    accounts.set_password("carol", "a new password for carol")
    app.run()
    assert not app.exception
    assert [t.label for t in app.text_input] == ["User name", "Password"]  # the session ended: log in again
