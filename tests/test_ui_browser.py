"""The web UI once in a real browser: Debian's chromium, driven by playwright, at 1400x1100.

`kb ui` runs as its own process with accounts on, and starts the service it is a
client of. Dana logs in and asks while the API is busy answering an admin's
questions: the page shows her place in the service's one queue. She opens a
citation, rates the answer, reloads the page, logs in again and opens the saved
conversation from the sidebar. A screenshot is kept in the test's folder. The
sidebar's icon buttons are measured: each icon lies wholly inside its button
(they used to be clipped at this size).

`make test` installs chromium (Makefile: `browser`); without it this test fails
with the command to run, it is not skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from urllib.parse import urljoin

import httpx
import pytest

from team.accounts import Accounts
from team.conversations import Conversations
from llm.models import QWEN_0_5B
from tests.conftest import REPO, SAMPLE_DATA
from tests.server_helpers import free_port, wait_until_up
from tests.test_pages import _light, _pixels, _strong

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PASSWORD = "dana's password"
QUESTION = "Which port does the web interface listen on?"
# Questions the sample documents answer, so that each is generated (one they do not answer is refused at once).
API_QUESTIONS = ("How do I start the web UI?", "Which port does the web interface listen on?",
                 "How do I add documents to the knowledge base?", "网页界面使用哪个端口？")


@pytest.fixture
def ui_server(tmp_path, model_cache, make_pipeline):
    assert CHROMIUM, "Debian's chromium is missing: run `make browser` (or apt-get install chromium)"
    env = {**os.environ, "KB_HOME": str(tmp_path / "home"), "KB_DOCUMENTS_DIR": str(tmp_path / "docs"),
           "KB_MODEL_CACHE": str(model_cache), "KB_LLM_MODEL": QWEN_0_5B.name, "KB_COLLECTION": "guide",
           "KB_UI_PORT": str(free_port()), "KB_SERVE_PORT": str(free_port())}
    shutil.copytree(SAMPLE_DATA, tmp_path / "docs")
    make_pipeline(collection="guide").ingest(tmp_path / "docs", progress=False)  # the run's embedders, in KB_HOME
    accounts = Accounts(tmp_path / "home")
    accounts.add_user("admin", "admin password", admin=True)
    accounts.add_user("dana", PASSWORD)
    accounts.grant("dana", "guide", "write")
    log = (tmp_path / "ui.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "ui"], env=env, cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['KB_UI_PORT']}"
    wait_until_up(f"{url}/_stcore/health", process, tmp_path / "ui.log", "kb ui", timeout=600)
    yield url, f"http://127.0.0.1:{env['KB_SERVE_PORT']}"
    process.terminate()
    process.wait(timeout=60)
    log.close()
    assert not _answers(f"http://127.0.0.1:{env['KB_SERVE_PORT']}/healthz"), "kb ui left its service running"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def keep_the_api_busy(service: str, questions: int) -> tuple[threading.Event, list[threading.Thread]]:
    """An admin asks ``questions`` questions at once through the API; the event is set once the first one's
    answer has begun (the generator is busy and the others wait in the queue)."""
    generating = threading.Event()
    token = httpx.post(f"{service}/v1/auth/login", json={"username": "admin", "password": "admin password"},
                       timeout=60).json()["token"]

    def ask(number: int) -> None:
        body = {"model": "guide", "stream": True,
                "messages": [{"role": "user", "content": API_QUESTIONS[number % len(API_QUESTIONS)]}]}
        with httpx.stream("POST", f"{service}/v1/chat/completions", json=body, timeout=600,
                          headers={"Authorization": f"Bearer {token}"}) as response:
            for line in response.iter_lines():
                if '"content"' in line and '"content": ""' not in line:
                    generating.set()

    threads = [threading.Thread(target=ask, args=(number,), daemon=True) for number in range(questions)]
    for thread in threads:
        thread.start()
    return generating, threads


def log_in(page) -> None:
    page.get_by_label("User name").fill("dana", timeout=300_000)  # the first page load loads the models
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Logged in as").wait_for(timeout=120_000)


def test_in_chromium_a_user_logs_in_asks_while_the_api_is_busy_rates_and_finds_the_conversation_after_a_reload(
        ui_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ui_server, service = ui_server

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(ui_server)
        log_in(page)
        generating, api_questions = keep_the_api_busy(service, 4)
        assert generating.wait(timeout=600), "the API's questions were never answered"
        page.get_by_placeholder("Ask a question about your documents").fill(QUESTION)
        page.keyboard.press("Enter")
        # One model, one queue: the page shows how many questions (the API's) are ahead of Dana's.
        expect(page.get_by_text("ahead of yours")).to_be_visible(timeout=120_000)
        # The answer is saved and drawn again with its rating buttons.
        thumbs_down = page.locator('[data-testid="stFeedback"] button').nth(1)
        thumbs_down.wait_for(timeout=300_000)
        citation = page.locator('[data-testid="stExpander"] summary').first
        citation.click()
        expect(page.locator('[data-testid="stExpander"]').first.locator('[data-testid="stMarkdownContainer"]').last
               ).not_to_be_empty()
        # "Show page" on a PDF source (cited, or among the closest passages when the small model's draft was
        # withdrawn): the page image, with the supporting words (orange) or the passage (blue) highlighted.
        expander = page.locator('[data-testid="stExpander"]').filter(has_text=".pdf, page").first
        expander.locator("summary").click()
        expander.get_by_text("Show page").first.click()
        image = expander.locator('[data-testid="stImage"] img').first
        image.wait_for(timeout=120_000)
        drawn = page.request.get(urljoin(page.url, image.get_attribute("src")))
        assert drawn.ok and drawn.headers["content-type"] == "image/png"
        pixels = _pixels(drawn.body())
        assert _strong(pixels).sum() + _light(pixels).sum() > 200, "the page image has no highlight"
        expect(expander).to_contain_text("Page 2 of 3")
        page.screenshot(path=str(tmp_path / "page-shown.png"), full_page=True)

        thumbs_down.click()
        page.get_by_label("Note (optional)").fill("It should say 8501")
        page.keyboard.press("Enter")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(tmp_path / "answered.png"), full_page=True)
        store = Conversations(tmp_path / "home")
        [conversation] = store.list("dana", "guide")
        [turn] = store.turns("dana", conversation.id)
        assert turn.rating is not None and turn.note == "It should say 8501"

        # Icon-only buttons in the sidebar: the icon lies inside its button.
        icons = page.locator('[data-testid="stSidebar"] button [data-testid="stIconMaterial"]:visible')
        assert icons.count() >= 4  # the conversation's and the three documents' delete buttons
        for index in range(icons.count()):
            icon = icons.nth(index)
            icon.scroll_into_view_if_needed()
            box = icon.bounding_box()
            button = icon.locator("xpath=ancestor::button[1]").bounding_box()
            assert box and button and box["width"] > 8
            assert button["x"] - 0.5 <= box["x"] and box["x"] + box["width"] <= button["x"] + button["width"] + 0.5

        page.reload()
        log_in(page)
        page.locator('[data-testid="stSidebar"]').get_by_role("button", name=QUESTION).click()
        expect(page.locator('[data-testid="stChatMessage"]').first).to_contain_text(QUESTION, timeout=60_000)
        page.screenshot(path=str(tmp_path / "reloaded.png"), full_page=True)
        browser.close()
    for thread in api_questions:
        thread.join(timeout=600)
    # Air-gapped: everything the page loaded came from the UI's own server.
    outside = [url for url in requested if not url.startswith((ui_server, "data:", "blob:"))]
    assert not outside, outside[:5]
