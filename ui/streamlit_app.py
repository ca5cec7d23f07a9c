"""Streamlit web UI: log in, pick a collection, ask with cited answers, keep and rate conversations.

Start it with ``kb ui`` (binds to 127.0.0.1 unless ``KB_UI_HOST`` says
otherwise; another address only once accounts exist). Settings come from ``KB_*`` environment variables, read here at the
edge and passed to the pipeline. Models load once per process
(``st.cache_resource``), never per rerun, and every collection's pipeline shares
them (``team.collections``).

- Accounts (``team.accounts``): once a user exists (``kb users add``), the page
  asks for a user name and password first and shows only the collections the
  user was granted; uploading and deleting need write access. Without accounts
  the one local user may do everything, as before. Failed logins back off per
  user name and browser address (``client_address``), never for every user at once.
- The audit log records what the API's records: logins, questions (their text
  only with ``KB_AUDIT_QUESTIONS=true``), uploads and deletions.
- The answer streams as it is generated; while other questions are being
  answered first, the page says how many are ahead. When complete it is
  replaced by the version with checked citations (``ui.rendering``).
- Each source can be shown on its page, the supporting words highlighted (PDF),
  or in its section (text documents), with the original to download; a document
  in the sidebar opens its passages as the index holds them (``ui.document_view``).
- Conversations are saved per user and collection (``team.conversations``),
  listed in the sidebar, renamable, deletable, exportable as Markdown or JSON;
  every answer takes a thumbs up or down with an optional note.

The sidebar shows the generator's notice, if any (e.g. a GPU the llama.cpp
build cannot use, with the command that fixes it), once, above the documents.

Deliberately not here: any retrieval, prompting or ingest logic (all in
``app.pipeline``), the panels' details (``ui.sidebar``).
"""

from __future__ import annotations

import uuid

import streamlit as st

from team.permissions import LOCAL_CALLER, Action, Caller
from team.accounts import Accounts, AuthenticationError
from team.collections import Library
from team.conversations import Conversations, SavedTurn
from app.pages import DocumentViewer
from app.pipeline import KbError, Pipeline, QueuePosition, Turn
from app.settings import Settings, load_settings
from ui.rendering import render_answer, render_sources
from ui.sidebar import collection_picker, conversations_panel, documents_panel


@st.cache_resource(show_spinner="Loading the models (once per server start)…")
def get_library(settings_json: str) -> Library:
    pipeline = Pipeline.from_settings(Settings.model_validate_json(settings_json))
    pipeline.warm_up()
    return Library(pipeline)


def session_id() -> str:
    """This browser session's random id (Streamlit keeps session state per browser tab)."""
    return st.session_state.setdefault("session_id", uuid.uuid4().hex)


def client_address() -> str:
    """The address a login from this page counts against (``team.throttle``) and the audit log names.

    Streamlit's server gives the connection's address, after ``KB_TRUSTED_PROXIES`` (``kb ui`` hands
    them to it), and none for a loopback one; then this browser session stands for it, so one person's
    failures never count against everybody using the page, as one shared key for all of them did.
    """
    address = st.context.ip_address
    if isinstance(address, str) and address:  # (a test harness's stand-in client gives no string)
        return address
    return f"web UI session {session_id()[:12]}"


def current_caller(accounts: Accounts) -> Caller | None:
    """Who is using the page; None after drawing the login form (accounts on, nobody logged in)."""
    if not accounts.enabled():
        return LOCAL_CALLER
    token = st.session_state.get("session_token")
    if token:
        try:
            return accounts.caller_for_token(token)
        except AuthenticationError:
            st.session_state.pop("session_token", None)  # ended or revoked: log in again
    with st.form("login"):
        st.subheader("Log in")
        name = st.text_input("User name")
        password = st.text_input("Password", type="password")
        if st.form_submit_button("Log in", type="primary"):
            try:
                _, token = accounts.login(name.strip(), password, client=client_address())
            except AuthenticationError as exc:  # wrong password, or throttled after repeated failures
                st.error(str(exc))
            else:
                st.session_state["session_token"] = token
                st.rerun()
    return None


def requester(caller: Caller) -> str:
    """Whose turn it is in the generator's queue: the user, or this browser session without accounts."""
    if caller is not LOCAL_CALLER:
        return caller.requester
    return "session:" + session_id()


def render_turn(turn: SavedTurn, store: Conversations, user: str, viewer: DocumentViewer) -> None:
    with st.chat_message("user"):
        st.markdown(turn.question)
    with st.chat_message("assistant"):
        render_answer(turn.answer)
        render_sources(turn.answer, viewer, key=f"turn-{turn.id}")
        rating_key = f"rating-{turn.id}"
        if rating_key not in st.session_state and turn.rating:
            st.session_state[rating_key] = 1 if turn.rating > 0 else 0
        rating = st.feedback("thumbs", key=rating_key)
        stored = None if rating is None else (1 if rating == 1 else -1)
        if stored != turn.rating:
            store.rate(user, turn.id, stored, turn.note)
        if stored is not None:
            note = st.text_input("Note (optional): what was wrong, or what the right answer is", value=turn.note,
                                 key=f"note-{turn.id}")
            if note != turn.note:
                store.rate(user, turn.id, stored, note)


def main() -> None:
    st.set_page_config(page_title="kbqa – ask your documents", page_icon="📚", layout="wide")
    try:
        settings = load_settings()
        library = get_library(settings.model_dump_json())
    except (KbError, ValueError) as exc:  # settings, models that cannot load
        st.error(f"kbqa cannot start: {exc}")
        st.stop()
        return
    accounts = Accounts(settings.home, audit_questions=settings.audit_questions)
    caller = current_caller(accounts)
    if caller is None:
        return
    st.title("Ask your documents")

    names = [name for name in library.names() if caller.may(Action.READ, name)]
    if caller is LOCAL_CALLER and settings.collection not in names:
        names.insert(0, settings.collection)  # the configured collection, even before its first ingest
    if not names:
        st.info(f"{caller.name}, no collection is shared with you yet: ask an admin to grant you one.")
        return
    if caller is not LOCAL_CALLER:
        st.sidebar.caption(f"Logged in as **{caller.name}**")
        if st.sidebar.button("Log out"):
            accounts.logout(st.session_state.pop("session_token"))
            st.rerun()
    collection = collection_picker(names, st.session_state.get("collection", settings.collection))
    if st.session_state.get("collection") != collection:  # switched: a conversation belongs to one collection
        st.session_state["collection"] = collection
        st.session_state["conversation"] = None
    pipeline = library.pipeline_for(collection)  # uploads go to its folder under the home, even before it exists
    try:
        status = pipeline.status()
    except KbError as exc:  # e.g. built with another embedder: say so instead of a traceback
        st.error(f"The index cannot be used: {exc}")
        st.stop()
        return

    st.sidebar.header("Knowledge base")
    st.sidebar.write(f"Collection **{status.name}**: {len(status.files)} documents, {status.chunks} passages")
    st.sidebar.caption(f"Embedder: {status.embedder} on {status.embedder_runs_on} · reranker: {pipeline.reranker.name}")
    info = library.base.generator_info  # one generator for every collection, loaded at start by the base pipeline
    st.sidebar.caption(f"Generator: {info.model if info else 'the language model'} on {library.base.generator_runs_on}")
    if info is not None and info.notice:  # e.g. a GPU this llama.cpp build cannot use, with the command that fixes it
        st.sidebar.warning(info.notice, icon="⚠️")
    store = Conversations(settings.home)
    conversations_panel(store, caller.name, collection)
    only = documents_panel(library, status, caller.may(Action.WRITE, collection), pipeline.viewer(),
                           audit=lambda action, detail: accounts.audit(caller.name, action, collection, detail))
    if not status.exists or status.chunks == 0:
        st.info(
            "The knowledge base is empty. Add files in the sidebar under **Documents**, "
            f"or run `kb ingest <folder>` (collection `{status.name}`) and reload this page."
        )

    conversation = st.session_state.get("conversation")
    history = store.turns(caller.name, conversation) if conversation is not None else []
    for turn in history:
        render_turn(turn, store, caller.name, pipeline.viewer())

    question = st.chat_input("Ask a question about your documents (English or 中文)")
    if not question:
        return
    accounts.audit(caller.name, "ask", collection, question if accounts.audit_questions else "")
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        waiting, placeholder = st.empty(), st.empty()
        try:
            # The conversation so far, so that a follow-up ("and its weight?") is understood.
            earlier = [Turn(turn.question, turn.answer.text) for turn in history]
            stream = pipeline.ask_stream(question, earlier, only or None, requester=requester(caller))

            def text_pieces():
                for event in stream.events():
                    if isinstance(event, QueuePosition):
                        ahead = "1 question is" if event.ahead == 1 else f"{event.ahead} questions are"
                        waiting.info(f"{ahead} ahead of yours; yours is next after them…", icon="⏳")
                    else:
                        waiting.empty()
                        yield event

            with placeholder.container():
                st.write_stream(text_pieces())
        except KbError as exc:
            placeholder.error(f"Could not answer: {exc}")
            return
        answer = stream.answer
        render_answer(answer, into=placeholder)  # the checked version replaces the raw stream
        render_sources(answer)
    if conversation is None:
        conversation = store.create(caller.name, collection, question)
        st.session_state["conversation"] = conversation
    store.add_turn(caller.name, conversation, question, answer)
    st.rerun()  # drawn again from the store, with its rating buttons, and listed in the sidebar


main()
