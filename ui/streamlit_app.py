"""Streamlit web UI: log in, pick a collection, ask with cited answers, keep and rate conversations.

A client of the service (``kb serve``, through ``client.service``): the UI loads
no model and opens no index. Its login is the service's, its questions wait in the
service's one queue with the API's (``app.turns``) and show their place in it,
and the service's audit log records what is done here. ``kb ui`` starts the
service itself when none answers at ``KB_SERVICE_URL`` (``cli.ui_launch``).

- Accounts: once a user exists (``kb users add``), the page asks for a user name
  and password and shows only the collections the service lists for that user;
  uploading and deleting need write access (the service checks; the page only
  hides what the user could not use). A login names the browser's address to the
  service with the front key (``team.front_key``), so failed logins back off per
  user name and browser, never for everybody using the page. Without accounts the
  one local user may do everything.
- The answer streams as it is generated; while other questions are answered first
  (the UI's or the API's), the page says how many are ahead. When complete it is
  replaced by the version with checked citations (``ui.rendering``), which the
  service saved in the conversation.
- Each source can be shown on its page, the supporting words highlighted (PDF),
  or in its section (text documents), with the original to download; a document
  in the sidebar opens its passages as the index holds them (``ui.document_view``).
- Conversations are the service's, per user and collection: listed in the
  sidebar, renamable, deletable, exportable as Markdown or JSON; every answer
  takes a thumbs up or down with an optional note.

The sidebar shows the generator's notice, if any (e.g. a GPU the llama.cpp
build cannot use, with the command that fixes it), once, above the documents.

Deliberately not here: any retrieval, prompting or ingest logic (the service's), the panels' details
(``ui.sidebar``), starting the service (``kb ui``).
"""

from __future__ import annotations

import uuid

import streamlit as st

from app.settings import Settings, SettingsError, load_settings
from client.service import ServiceClient
from client.types import (CollectionInfo, Conversation, Me, NotLoggedInError, QueueUpdate, SavedTurn, ServiceError,
                          ServiceUnavailableError)
from team.front_key import FRONT_KEY_FILE, read_front_key
from ui.rendering import render_answer, render_sources
from ui.sidebar import collection_picker, conversations_panel, documents_panel


@st.cache_resource
def shared_service(url: str, front_key: str | None) -> ServiceClient:
    """One client (and its connection pool) for every browser session of this UI process."""
    return ServiceClient(url, front_key=front_key)


def session_id() -> str:
    """This browser session's random id (Streamlit keeps session state per browser tab)."""
    return st.session_state.setdefault("session_id", uuid.uuid4().hex)


def client_address() -> str:
    """The browser a login from this page comes from, for the service's throttle and audit log.

    Streamlit's server gives the connection's address, after ``KB_TRUSTED_PROXIES`` (``kb ui`` hands
    them to it), and none for a loopback one; then this browser session stands for it, so one person's
    failures never count against everybody using the page, as one shared key for all of them did.
    """
    address = st.context.ip_address
    if isinstance(address, str) and address:  # (a test harness's stand-in client gives no string)
        return address
    return f"web UI session {session_id()[:12]}"


def current_user(service: ServiceClient) -> tuple[ServiceClient, Me] | None:
    """The service as this page's user, and who that is; None after drawing the login form."""
    caller = service.as_user(st.session_state.get("session_token"))
    try:
        return caller, caller.me()
    except NotLoggedInError:
        st.session_state.pop("session_token", None)  # none yet, or ended or revoked: log in (again)
    with st.form("login"):
        st.subheader("Log in")
        name = st.text_input("User name")
        password = st.text_input("Password", type="password")
        if st.form_submit_button("Log in", type="primary"):
            try:
                session = service.login(name.strip(), password, client=client_address())
            except ServiceError as exc:  # wrong password, or a wait after repeated failures
                st.error(str(exc))
            else:
                st.session_state["session_token"] = session.token
                st.rerun()
    return None


def requester(me: Me) -> str | None:
    """Whose turn it is in the service's queue: with accounts the service knows the user; without, this browser."""
    return None if me.accounts else "session:" + session_id()


def collection_info(service: ServiceClient, name: str, me: Me) -> CollectionInfo:
    """The collection's counts and models; the configured one is shown empty before its first document."""
    try:
        return service.collection(name)
    except ServiceError as exc:
        if exc.status != 404 or me.accounts:
            raise
    return CollectionInfo(name=name, access="write", documents=0, chunks=0, embedder="", embedder_runs_on="",
                          reranker="", generator="", generator_runs_on="", generator_notice=None, accepts=(),
                          exists=False)


def render_turn(turn: SavedTurn, conversation: Conversation, service: ServiceClient) -> None:
    with st.chat_message("user"):
        st.markdown(turn.question)
    with st.chat_message("assistant"):
        render_answer(turn.answer)
        render_sources(turn.answer, service, conversation.summary.collection, key=f"turn-{turn.id}")
        rating_key = f"rating-{turn.id}"
        if rating_key not in st.session_state and turn.rating:
            st.session_state[rating_key] = 1 if turn.rating > 0 else 0
        rating = st.feedback("thumbs", key=rating_key)
        stored = None if rating is None else (1 if rating == 1 else -1)
        if stored != turn.rating:
            service.rate(conversation.summary.id, turn.id, stored, turn.note)
        if stored is not None:
            note = st.text_input("Note (optional): what was wrong, or what the right answer is", value=turn.note,
                                 key=f"note-{turn.id}")
            if note != turn.note:
                service.rate(conversation.summary.id, turn.id, stored, note)


def open_conversation(service: ServiceClient, collection: str) -> Conversation | None:
    conversation_id = st.session_state.get("conversation")
    if conversation_id is None:
        return None
    try:
        conversation = service.conversation(conversation_id)
    except ServiceError as exc:
        if exc.status != 404:
            raise
        conversation = None  # deleted meanwhile (another tab)
    if conversation is None or conversation.summary.collection != collection:
        st.session_state["conversation"] = None
        return None
    return conversation


def ask(service: ServiceClient, collection: str, question: str, conversation: Conversation | None,
        only: list[str], me: Me) -> None:
    """Streams the answer under the question; the service saves it in the conversation (a new one if none)."""
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        waiting, placeholder = st.empty(), st.empty()
        history = [(turn.question, turn.answer.text) for turn in conversation.turns] if conversation else []
        answers = []

        def text_pieces():
            for event in service.ask(collection, question, history, only,
                                     conversation=conversation.summary.id if conversation else "new",
                                     user=requester(me)):
                if isinstance(event, QueueUpdate):
                    ahead = "1 question is" if event.ahead == 1 else f"{event.ahead} questions are"
                    waiting.info(f"{ahead} ahead of yours; yours is next after them…", icon="⏳")
                elif isinstance(event, str):
                    waiting.empty()
                    yield event
                else:
                    waiting.empty()
                    answers.append(event)

        try:
            with placeholder.container():
                st.write_stream(text_pieces())
        except ServiceError as exc:
            waiting.empty()
            placeholder.error(f"Could not answer: {exc}")
            return
        if not answers:
            placeholder.error("Could not answer: the service ended the answer early; please ask again.")
            return
        answer = answers[0]
        render_answer(answer, into=placeholder)  # the checked version replaces the raw stream
        render_sources(answer)
    if answer.conversation_id is not None:
        st.session_state["conversation"] = answer.conversation_id
    st.rerun()  # drawn again from the service, with its rating buttons, and listed in the sidebar


def page(settings: Settings) -> None:
    front_key = read_front_key(settings.front_key_file or settings.home / FRONT_KEY_FILE)
    service = shared_service(settings.service_address, front_key)
    signed_in = current_user(service)  # the first request: a service that does not answer is said so in main()
    if signed_in is None:
        return
    caller, me = signed_in
    st.title("Ask your documents")

    collections = {entry.name: entry for entry in caller.collections()}
    names = list(collections)
    if not me.accounts and settings.collection not in names:
        names.insert(0, settings.collection)  # the configured collection, even before its first document
    if not names:
        st.info(f"{me.user}, no collection is shared with you yet: ask an admin to grant you one.")
        return
    if me.accounts:
        st.sidebar.caption(f"Logged in as **{me.user}**")
        if st.sidebar.button("Log out"):
            caller.logout()
            st.session_state.pop("session_token", None)
            st.rerun()
    collection = collection_picker(names, st.session_state.get("collection", settings.collection))
    if st.session_state.get("collection") != collection:  # switched: a conversation belongs to one collection
        st.session_state["collection"] = collection
        st.session_state["conversation"] = None
    try:
        info = collection_info(caller, collection, me)
        documents = caller.documents(collection) if info.exists else []
    except ServiceError as exc:  # e.g. built with another embedder: say so instead of a traceback
        st.error(f"The index cannot be used: {exc}")
        return

    st.sidebar.header("Knowledge base")
    st.sidebar.write(f"Collection **{info.name}**: {info.documents} documents, {info.chunks} passages")
    if info.exists:
        st.sidebar.caption(f"Embedder: {info.embedder} on {info.embedder_runs_on} · reranker: {info.reranker}")
        st.sidebar.caption(f"Generator: {info.generator or 'the language model'} on {info.generator_runs_on}")
    if info.generator_notice:  # e.g. a GPU this llama.cpp build cannot use, with the command that fixes it
        st.sidebar.warning(info.generator_notice, icon="⚠️")
    conversations_panel(caller, collection)
    may_write = collections[collection].writable if collection in collections else not me.accounts
    only = documents_panel(caller, info, documents, may_write)
    if info.chunks == 0:
        st.info(
            "The knowledge base is empty. Add files in the sidebar under **Documents**, "
            f"or run `kb ingest <folder>` (collection `{info.name}`) and reload this page."
        )

    conversation = open_conversation(caller, collection)
    for turn in conversation.turns if conversation else ():
        render_turn(turn, conversation, caller)

    question = st.chat_input("Ask a question about your documents (English or 中文)")
    if question:
        ask(caller, collection, question, conversation, only, me)


def main() -> None:
    st.set_page_config(page_title="kbqa – ask your documents", page_icon="📚", layout="wide")
    try:
        settings = load_settings()
    except (SettingsError, ValueError) as exc:  # wrong settings: say which
        st.error(f"kbqa cannot start: {exc}")
        return
    try:
        page(settings)
    except ServiceUnavailableError as exc:  # not started, stopped or restarting (the client tried a few times)
        st.error(f"The kbqa service at {settings.service_address} does not answer ({exc}). Start it with `kb serve` "
                 "(`kb ui` starts one by itself when none is running), then reload this page.")
    except NotLoggedInError:
        st.session_state.pop("session_token", None)  # the session ended meanwhile
        st.rerun()


main()
