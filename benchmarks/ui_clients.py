"""Browsers asking in the web UI, for the service benchmarks: one chromium per client, driven by playwright.

``BrowserClient`` opens the page of a running ``kb ui`` (no accounts), waits until
it can ask, and asks questions one after another, timing each as a person would
see it: the first text of the answer on the page (looked for every 0.1 s), and the
answer drawn again with its rating buttons (checked and saved by the service). The
queue positions the page showed ("2 questions are ahead of yours") are kept.

Deliberately not here: logging in (the benchmark's UI runs without accounts), anything the tests check.
"""

from __future__ import annotations

import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
AHEAD = re.compile(r"(\d+) questions? (?:is|are) ahead of yours")
POLL_S = 0.1
# The text of the last chat message (its Markdown: not the avatar's icon name), without the "… ahead of yours"
# notice shown inside it while it waits.
LAST_ANSWER_JS = """() => {
  const messages = document.querySelectorAll('[data-testid="stChatMessage"]');
  if (!messages.length) return [0, '', ''];
  const last = messages[messages.length - 1];
  const notices = [...last.querySelectorAll('[data-testid="stAlert"]')].map(n => n.innerText).join(' ');
  const text = [...last.querySelectorAll('[data-testid="stMarkdownContainer"]')]
    .filter(n => !n.closest('[data-testid="stAlert"]')).map(n => n.innerText).join(' ');
  return [messages.length, text.trim(), notices];
}"""


class BrowserClient:
    """One browser tab on the UI. Playwright's sync API allows one instance per thread, so each browser lives on a
    thread of its own and every call is handed to that thread."""

    def __init__(self, ui_url: str) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1)
        self._thread.submit(self._open, ui_url).result()

    def _open(self, ui_url: str) -> None:
        from playwright.sync_api import sync_playwright

        assert CHROMIUM, "Debian's chromium is missing: run `make browser`"
        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        self.page = self._browser.new_page(viewport={"width": 1400, "height": 1100})
        self.page.goto(ui_url)
        self._box().wait_for(timeout=600_000)

    def _box(self):
        return self.page.get_by_placeholder("Ask a question about your documents")

    def ask(self, question: str) -> dict:
        return self._thread.submit(self._ask, question).result()

    def _ask(self, question: str) -> dict:
        page = self.page
        messages_before, _, _ = page.evaluate(LAST_ANSWER_JS)
        rated_before = page.locator('[data-testid="stFeedback"]').count()
        started = time.perf_counter()
        self._box().fill(question)
        page.keyboard.press("Enter")
        first_token, positions, answered = None, [], False
        while time.perf_counter() - started < 1800:
            count, text, notices = page.evaluate(LAST_ANSWER_JS)
            for match in AHEAD.finditer(notices):
                if not positions or positions[-1] != int(match.group(1)):
                    positions.append(int(match.group(1)))
            if first_token is None and count >= messages_before + 2 and text:
                first_token = time.perf_counter()
            if page.locator('[data-testid="stFeedback"]').count() > rated_before:
                answered = True
                break
            time.sleep(POLL_S)
        finished = time.perf_counter()
        return {"question": question, "client": "web UI", "answered": answered, "cited": answered,
                "first_token_s": round((first_token or finished) - started, 2),
                "total_s": round(finished - started, 2), "queue_positions": positions}

    def new_conversation(self) -> None:
        """The sidebar's "New conversation": the next question starts without the earlier ones as its history."""
        def click() -> None:
            button = self.page.get_by_role("button", name="New conversation")
            if button.is_enabled():
                button.click()
                self.page.wait_for_timeout(1000)

        self._thread.submit(click).result()

    def close(self) -> None:
        def shut() -> None:
            self._browser.close()
            self._playwright.stop()

        self._thread.submit(shut).result()
        self._thread.shutdown()
